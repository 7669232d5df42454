"""``provisioner fields DATASET``: what a data set holds now, field by field.

Every field the source's answer holds, how many rows have a value, and one example value, masked
where it is personal data (national numbers, addresses, phone numbers, e-mail, birth dates, bank
accounts, passwords): the coordinator sees the field's shape, not a person. Documented fields no
row has today are listed apart, as Informat leaves empty elements out.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provisioner.config import load_config
from provisioner.errors import ConfigError
from provisioner.model import SOURCE_FIELD
from provisioner.pipeline import open_configured_source
from provisioner.sources.base import DatasetInfo, SourceRead
from provisioner.text import visible

_EXAMPLE_LENGTH = 40  # an example longer than this is cut: the shape is what matters


@dataclass
class FieldSummary:
    name: str
    """The field's name; a field of a nested entry as ``Container.Field`` (``Relaties.Naam``)."""
    rows: int = 0
    """Rows (for a nested field: entries) with a value."""
    example: str = ""
    """One value, masked where it is personal data."""
    documented: bool = True


@dataclass
class DatasetFields:
    dataset: str
    description: str
    rows: int
    fields: list[FieldSummary]
    documented_missing: list[str] = field(default_factory=list)
    """Documented fields no row has today."""
    documented: bool = True
    """False: the source has no documented list for this data set."""
    verified: bool = True
    """False: the data set's format could not be confirmed."""
    unavailable: dict[str, str] = field(default_factory=dict)
    """Fields a data set of this name has elsewhere that this source cannot give → why."""


# ---------------------------------------------------------------------------------------------
# masking

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_NATIONAL_NUMBER = re.compile(r"^\d{2}\.?\d{2}\.?\d{2}[-.]?\d{3}\.?\d{2}$")
_PHONE = re.compile(r"^(\+|00|0)[\d\s/.()-]{7,}$")
_IBAN = re.compile(r"^[A-Z]{2}\d{2}(\s?[A-Z0-9]{4}){2,7}(\s?[A-Z0-9]{1,4})?$")
_YEAR = re.compile(r"(?<!\d)(1[89]|20)\d{2}(?!\d)")

# Field names, lower-cased, by the kind of personal data they hold. A part of the name is enough:
# "telefoonWerkMoeder" is a phone number, "EmailOuders" an e-mail address.
_BY_NAME: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("secret", ("wachtwoord", "paswoord", "password")),
    ("text", ("opmerking",)),
    ("email", ("email", "mail")),
    ("birth", ("geboortedatum", "birth")),
    ("national", ("rijksreg", "insz", "bisnummer")),
    ("phone", ("telefoon", "gsm", "phone")),
    ("address", ("straat", "adres", "postnr", "gemeente", "iban", "rekening")),
)
_EXACT: Mapping[str, str] = {
    "nummer": "phone",  # ComnummersRelatie: Comnr.Nummer
    "nr": "address",
    "bus": "address",
    "dombus": "address",
    "hfdgem": "address",
    "dlgem": "address",
    "bic": "address",
}
# Names with one of the parts above that hold no personal data (dates of a change, keys).
_NOT_PERSONAL = frozenset(
    {
        "adressenuuid",
        "padres",
        "adrestoegevoegd",
        "adresgewijzigd",
        "emailtoegevoegd",
        "emailgewijzigd",
        "prekening",
    }
)


def personal_kind(name: str, value: str) -> str | None:
    """The kind of personal data field *name* holds, by its name and by the shape of *value*;
    None when it holds none that must be masked."""
    lowered = name.rsplit(".", 1)[-1].lower()
    by_name: str | None = None
    if lowered not in _NOT_PERSONAL:
        by_name = _EXACT.get(lowered) or next(
            (kind for kind, parts in _BY_NAME if any(part in lowered for part in parts)), None
        )
    if by_name in ("secret", "text"):
        return by_name
    # The value's shape first: an "Adres" that holds an e-mail address is masked as one.
    if _EMAIL.match(value):
        return "email"
    if by_name is not None:
        return by_name
    digits = len(re.sub(r"\D", "", value))
    if _NATIONAL_NUMBER.match(value) and digits == 11:
        return "national"
    if _PHONE.match(value) and digits >= 9:
        return "phone"
    if _IBAN.match(value):
        return "address"
    return None


def mask(name: str, value: str) -> str:
    """*value* as an example of field *name*: unchanged unless it is personal data, then only its
    shape (``j***@s***.be``, ``20**-**-**``, ``0*** ** ** **``)."""
    kind = personal_kind(name, value)
    if kind is None:
        return value
    if kind == "secret":
        return "********"
    if kind == "text":  # remarks may say anything about a child
        return "(free text, not shown)"
    if kind == "email" and _EMAIL.match(value):
        local, domain = value.split("@", 1)
        host, _dot, tld = domain.rpartition(".")
        return f"{local[:1]}***@{host[:1]}***.{tld}"
    if kind == "birth":
        masked = re.sub(r"\d", "*", value)
        year = _YEAR.search(value)
        if year:  # the century stays: it says how the year is written
            start = year.start()
            masked = masked[:start] + value[start : start + 2] + masked[start + 2 :]
        return masked
    # Everything else keeps its first character and its punctuation.
    return value[:1] + re.sub(r"[^\W_]", "*", value[1:])


# ---------------------------------------------------------------------------------------------
# summary


def _has_value(value: Any) -> bool:
    return value is not None and value != "" and value != [] and value != {}


def summarise(dataset: str, info: DatasetInfo, read: SourceRead) -> DatasetFields:
    """Every field of *dataset* in *read*, with its count and a masked example."""
    rows = read.rows.datasets[dataset].rows
    found: dict[str, FieldSummary] = {}

    def note(name: str, value: Any) -> None:
        summary = found.setdefault(name, FieldSummary(name))
        if not _has_value(value):
            return
        summary.rows += 1
        if isinstance(value, list):
            summary.example = "(entries: see below)"
        elif not summary.example and not isinstance(value, dict):
            text = " ".join(str(value).split())
            shown = mask(name, text)
            if len(shown) > _EXAMPLE_LENGTH:
                shown = shown[: _EXAMPLE_LENGTH - 1] + "…"
            summary.example = shown

    for _school, record in rows:
        for name, value in record.items():
            if name == SOURCE_FIELD:  # which source the row came from: not one of its fields
                continue
            note(name, value)
            if isinstance(value, list):  # a nested container: its entries' fields too
                for entry in value:
                    if isinstance(entry, dict):
                        for child, child_value in entry.items():
                            note(f"{name}.{child}", child_value)
    # Fields that occurred only empty are in the answer too (fields_seen), with no value; the
    # element of a nested container's entries (Relatie in Relaties) is none.
    containers = {name for name, s in found.items() if "." not in name and s.rows} & {
        name.split(".", 1)[0] for name in found if "." in name
    }
    present = {name.rsplit(".", 1)[-1] for name in found}
    for name in sorted(read.rows.datasets[dataset].fields_seen - present):
        if not any(c != name and c.startswith(name) for c in containers):
            found[name] = FieldSummary(name)
    documented = info.documented_fields
    for summary in found.values():
        bare = summary.name.rsplit(".", 1)[-1]
        summary.documented = documented is None or bare in documented
    with_values = {name.rsplit(".", 1)[-1] for name, s in found.items() if s.rows}
    unavailable = {f: why for f, why in info.unavailable.items() if f not in with_values}
    missing = sorted(
        (documented or frozenset()) - with_values - unavailable.keys(), key=str.casefold
    )
    return DatasetFields(
        dataset=dataset,
        description=read.description,
        rows=len(rows),
        fields=sorted(found.values(), key=lambda s: s.name.casefold()),
        documented_missing=missing,
        documented=documented is not None,
        verified=info.verified,
        unavailable=unavailable,
    )


# ---------------------------------------------------------------------------------------------
# rendering


def render_text(summary: DatasetFields) -> str:
    out = [f"{summary.dataset}: {summary.rows} rows ({summary.description})"]
    if not summary.verified:
        out.append(
            f"note: the format of {summary.dataset} is unverified (no public source confirms "
            "it): the fields below are what the answer holds, the documentation may differ"
        )
    if not summary.documented:
        out.append(f"note: {summary.dataset} has no documented field list; these are its answers'")
    out.append("")
    width = max((len(s.name) for s in summary.fields), default=5)
    out.append(f"  {'field':<{width}}  {'rows':>7}  example")
    for item in summary.fields:
        flag = "" if item.documented else "   (not documented)"
        example = item.example or "(always empty)"
        out.append(f"  {item.name:<{width}}  {item.rows:>7}  {example}{flag}")
    if summary.documented_missing:
        out += [
            "",
            f"Documented fields no row has today ({len(summary.documented_missing)}): the source "
            "leaves empty values out, so a mapping may use them; they are empty for now:",
        ]
        out += [f"  {name}   (documented, in no row)" for name in summary.documented_missing]
    if summary.unavailable:
        out += [
            "",
            f"Fields of {summary.dataset} this source cannot give ({len(summary.unavailable)}): "
            "a mapping that reads one gets an empty value",
        ]
        out += [f"  {name}: {why}" for name, why in sorted(summary.unavailable.items())]
    out += ["", "Personal values are masked."]
    if any("." in item.name for item in summary.fields):
        out.append("A nested field (Container.Field) counts entries, not rows.")
    out += [
        f"A mapping refers to a field as {summary.dataset}.<field>; names are case-sensitive.",
    ]
    return "\n".join(visible(line) for line in out)


def render_json(summary: DatasetFields) -> str:
    return json.dumps(
        {
            "dataset": summary.dataset,
            "source": summary.description,
            "rows": summary.rows,
            "verified": summary.verified,
            "documented": summary.documented,
            "fields": [
                {
                    "name": s.name,
                    "rows": s.rows,
                    "example": s.example or None,
                    "documented": s.documented,
                }
                for s in summary.fields
            ],
            "documented_missing": summary.documented_missing,
            "unavailable": summary.unavailable,
        },
        indent=2,
        ensure_ascii=False,
    )


# ---------------------------------------------------------------------------------------------
# command


def _offered(name: str, offered: Iterable[str]) -> str:
    """*name* as the source offers it; a wrong name is an error naming the closest and all."""
    names = sorted(offered)
    if name in names:
        return name
    by_fold = {n.casefold(): n for n in names}
    close = [by_fold[name.casefold()]] if name.casefold() in by_fold else []
    close = close or difflib.get_close_matches(name, names, n=3)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise ConfigError(
        f"the source offers no data set {name!r} ({hint}names are case-sensitive; it offers: "
        f"{', '.join(names)})"
    )


def run_fields(args: argparse.Namespace) -> int:
    """Read one data set whole (every field) and show what it holds."""
    config = load_config(args.config)
    source = open_configured_source(config, **args.source_seams)
    offered = source.datasets()
    dataset = _offered(args.dataset, offered)
    read = source.read({dataset: None})
    summary = summarise(dataset, offered[dataset], read)
    print(render_json(summary) if args.json else render_text(summary))
    # A school that answered with no rows shows fewer fields than the data set has: said.
    for block in read.blocks:
        hint = f"; {block.hint}" if block.hint else ""
        print(
            visible(f"warning: {block.dataset} for {block.unit} {block.reason}{hint}"),
            file=sys.stderr,
        )
    return 0


def add_fields_command(commands: Any) -> None:
    """Register ``provisioner fields`` on the command line's subparsers."""
    fields = commands.add_parser(
        "fields",
        help="show every field a data set holds now, with counts and a masked example",
        description="Read one data set (every field) and list each field it holds, how many "
        "rows have a value and one example value (personal data masked), then the documented "
        "fields no row has today. Use it to find the name to write in a mapping. Nothing is "
        "written anywhere.",
    )
    fields.add_argument("--config", required=True, type=Path, metavar="FILE")
    fields.add_argument("dataset", metavar="DATASET", help="a data set name, e.g. SmartschoolUsers")
    fields.add_argument("--json", action="store_true", help="print the fields as JSON")
    fields.set_defaults(handler=run_fields)
