"""Parameter values as Informat wants them on the wire.

Informat answers a wrongly formatted date with silently wrong or empty results, never an error,
so every value is checked here before anything is sent.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass

from provisioner.sources.informat.operations import PARAMETER_OPTIONS, Operation

_SCHOOLJAAR = re.compile(r"^(20\d\d)-(\d\d)$")
_DAY = re.compile(r"^(\d{1,2})([-/.])(\d{1,2})\2(\d{4})$")
_ISO_DAY = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")


def check_schooljaar(value: str) -> str:
    """``auto`` or ``20XX-YY`` where YY is the year after 20XX."""
    if value == "auto":
        return value
    match = _SCHOOLJAAR.match(value)
    if not match or (int(match.group(1)) + 1) % 100 != int(match.group(2)):
        raise ValueError(f"schooljaar must be 'auto' or like 2025-26, not {value!r}")
    return value


def resolve_schooljaar(value: str, today: dt.date) -> str:
    """``auto`` is the school year that starts on 1 September: 2025-26 until 31 August 2026."""
    if value != "auto":
        return value
    start = today.year if today.month >= 9 else today.year - 1
    return f"{start}-{(start + 1) % 100:02d}"


def normalise_instelnr(value: str) -> str:
    """Informat accepts 30569 and 030569 but always answers with six digits; so do we."""
    text = str(value).strip()
    if not text.isdigit() or len(text) > 6:
        raise ValueError(f"instelnr must be up to six digits, not {value!r}")
    return text.zfill(6)


def parse_day(value: str) -> dt.date:
    """A date written as dd-mm-yyyy with ``-``, ``/`` or ``.`` as separator, or as yyyy-mm-dd."""
    text = value.strip()
    try:
        if match := _DAY.match(text):
            return dt.date(int(match.group(4)), int(match.group(3)), int(match.group(1)))
        if match := _ISO_DAY.match(text):
            return dt.date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        raise ValueError(f"{value!r} is not a real date") from None
    raise ValueError(f"expected a date like 15-01-2025 (or 'today'), not {value!r}")


def check_day_option(value: str) -> str:
    """Empty, ``today`` or a date; checked now, resolved when the query is made."""
    if value not in ("", "today"):
        parse_day(value)
    return value


def _resolve_day(value: str, today: dt.date) -> dt.date | None:
    if value == "":
        return None
    return today if value == "today" else parse_day(value)


def dd_mm_yyyy(day: dt.date | None) -> str:
    """``referentiedatum`` format: zero-padded dd-mm-yyyy."""
    return "" if day is None else f"{day.day:02d}-{day.month:02d}-{day.year}"


def d_m_yyyy(day: dt.date | None) -> str:
    """``gewijzigdSinds`` format as the public clients send it: d-m-yyyy without zero padding."""
    return "" if day is None else f"{day.day}-{day.month}-{day.year}"


@dataclass(frozen=True)
class QueryOptions:
    """Every option a parameter can take its value from, already in wire format."""

    login: str = ""
    password: str = ""
    schooljaar: str = ""
    referentiedatum: str = ""
    hoofdstructuur: str = ""
    gewijzigd_sinds: str = ""
    personeelsgroep: str = ""
    referentiedatum_npre: str = ""
    met_nsu_uren: str = ""
    pre_registration_id: str = ""
    smartschoolplatform: str = ""
    discimusvestigingsnr: str = ""
    begindatum: str = ""
    einddatum: str = ""

    @classmethod
    def resolve(cls, today: dt.date, **raw: str) -> QueryOptions:
        """Turn configured values (``auto``, ``today``, dates in any separator) into wire values."""
        days = {
            "referentiedatum": dd_mm_yyyy,
            "referentiedatum_npre": dd_mm_yyyy,
            "begindatum": dd_mm_yyyy,
            "einddatum": dd_mm_yyyy,
            "gewijzigd_sinds": d_m_yyyy,
        }
        values = dict(raw)
        for name, fmt in days.items():
            if name in values:
                values[name] = fmt(_resolve_day(values[name], today))
        if "schooljaar" in values:
            values["schooljaar"] = resolve_schooljaar(values["schooljaar"], today)
        return cls(**values)


def wire_parameters(op: Operation, options: QueryOptions, instelnr: str) -> list[tuple[str, str]]:
    """Every declared parameter of *op*, in wire casing and order; unset ones are sent empty,
    because ASMX answers a missing parameter with HTTP 500."""
    values: Mapping[str, str] = {**vars(options), "instelnr": instelnr}
    return [(name, values[PARAMETER_OPTIONS[name]]) for name in op.params]
