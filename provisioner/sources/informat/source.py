"""Informat's web service (wsInformat.asmx) behind the :class:`~provisioner.sources.base.Source`
protocol: the operations table as data sets, the reader's answers as neutral rows, and Informat's
own rule for an untrustworthy answer (a school that answered with no rows) as a block."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from provisioner.errors import ConfigError
from provisioner.model import SourceRows
from provisioner.sources.base import (
    Block,
    DatasetInfo,
    Fields,
    KeptAnswers,
    Progress,
    SourceRead,
)
from provisioner.sources.informat.operations import (
    DEFAULT_DATASETS,
    DOCUMENTED_FIELDS,
    OPERATIONS,
    SEARCH_FIELDS,
    operation,
)
from provisioner.sources.informat.params import check_schooljaar, dd_mm_yyyy, parse_day
from provisioner.sources.informat.reader import read_source
from provisioner.sources.informat.settings import InformatConfig

EMPTY_ANSWER = "answered with no rows"
EMPTY_ANSWER_HINT = (
    "Informat answers that way when the web-service account has no rights on an instellingsnummer"
)

_DATASETS = {
    name: DatasetInfo(
        name,
        op.key,
        SEARCH_FIELDS.get(name, ()),
        documented_fields=DOCUMENTED_FIELDS.get(name),
        verified=op.verified,
    )
    for name, op in OPERATIONS.items()
}


class InformatSource:
    def __init__(
        self,
        config: InformatConfig,
        *,
        today: dt.date | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        """``today`` and ``sleep`` (the pause between retries) are seams for tests."""
        self.config = config
        self._today = today
        self._sleep = sleep

    def for_school_year(self, school_year: str) -> InformatSource:
        """Informat asked for *school_year* with a ``referentiedatum`` inside it: the
        registrations of a year to come begin on 1 September, so a read with today's date in
        the summer would find nobody. The day is the configured ``referentiedatum`` if that
        lies inside the year, else 1 September, or today once the year has begun; the read is
        dated by it (its ``as_of``)."""
        day = preview_day(school_year, self._today or dt.date.today(), self.config.referentiedatum)
        settings = dataclasses.replace(
            self.config, schooljaar=school_year, referentiedatum=dd_mm_yyyy(day)
        )
        return InformatSource(settings, today=day, sleep=self._sleep)

    def datasets(self) -> Mapping[str, DatasetInfo]:
        return _DATASETS

    def default_datasets(self) -> Sequence[str]:
        return self.config.datasets or DEFAULT_DATASETS

    def units(self) -> Sequence[str]:
        return self.config.instelnrs

    def describe(self) -> str:
        return f"Informat {self._origin()}"

    def _origin(self) -> str:
        if self.config.snapshot is not None:
            return f"snapshot {self.config.snapshot}"
        return str(self.config.url)

    def read(
        self,
        fields: Fields,
        *,
        progress: Callable[[Progress], None] = lambda _p: None,
        save: Path | None = None,
        kept: KeptAnswers | None = None,
    ) -> SourceRead:
        data = read_source(
            self.config,
            [operation(name) for name in fields],
            fields=fields,
            save=save,
            today=self._today,
            progress=progress,
            sleep=self._sleep,
            kept=kept,
        )
        rows = data.as_source_rows()
        return SourceRead(
            rows=rows,
            as_of=data.as_of,
            digest=data.source_hash(),
            counts=data.counts(),
            description=f"Informat {data.schooljaar} from {self._origin()}",
            blocks=[
                Block(dataset, instelnr, EMPTY_ANSWER, EMPTY_ANSWER_HINT)
                for dataset, instelnr in data.empty()
            ],
            problems=data.problems(),
            unit_names=_school_names(rows),
        )

    def read_keeping(
        self,
        fields: Fields,
        kept: KeptAnswers,
        *,
        progress: Callable[[Progress], None] = lambda _p: None,
    ) -> SourceRead:
        """:meth:`read`, with the answers that came back unchanged since the last read taken
        from *kept* rather than parsed again (:mod:`.kept`)."""
        return self.read(fields, progress=progress, kept=kept)


def preview_day(school_year: str, today: dt.date, configured: str = "") -> dt.date:
    """The day a preview of *school_year* reads: the *configured* ``referentiedatum`` if that
    lies inside the year, else 1 September, or *today* once the year has begun. A
    :class:`ConfigError` for a name that is no school year, ``auto``, or a year that ended."""
    try:
        check_schooljaar(school_year)
    except ValueError as exc:
        raise ConfigError(f"--schooljaar: {exc}") from None
    if school_year == "auto":
        raise ConfigError("--schooljaar: name the school year to preview, like 2026-27")
    first = int(school_year[:4])
    start, end = dt.date(first, 9, 1), dt.date(first + 1, 6, 30)
    if today > end:
        raise ConfigError(
            f"school year {school_year} ended on {end:%d-%m-%Y}: a preview shows a year to "
            "come (or the current one)"
        )
    if configured not in ("", "today") and start <= parse_day(configured) <= end:
        return parse_day(configured)
    return max(start, today)


_SCHOOL_NAME_FIELDS = ("school", "School")
"""Where Informat's data sets carry the school's name (Lln, Subgroepen, Inschrijvingen)."""


def _school_names(rows: SourceRows) -> dict[str, str]:
    """Each instelnr's name, from the first row read that carries one (only fields the
    mappings use are kept, so a name is found when they use it)."""
    names: dict[str, str] = {}
    for dataset in rows.datasets.values():
        for instelnr, record in dataset.rows:
            if instelnr in names:
                continue
            name = next((record[f] for f in _SCHOOL_NAME_FIELDS if record.get(f)), None)
            if isinstance(name, str):
                names[instelnr] = name
    return names
