"""One file of extra persons behind the :class:`~provisioner.sources.base.Source` protocol.

The file's rows join the data set its kind's mappings read (``Leerkrachten`` for staff, ``Lln``
for pupils), with the key under ``p_persoon`` and the school from the ``instelnr`` column, so the
default mappings render them unchanged. The file is its own unit: a file that cannot be trusted
as a whole is a :class:`~provisioner.sources.base.Block` (the night waits; nobody in it leaves),
a bad row a :class:`~provisioner.sources.base.ValueProblem` that holds only its person.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provisioner.errors import ConfigError
from provisioner.files import private_dir, write_private
from provisioner.model import Dataset, Record, SourceRows
from provisioner.sources.base import (
    Block,
    DatasetInfo,
    Fields,
    Progress,
    SourceRead,
    ValueProblem,
)
from provisioner.sources.files.parser import BrokenFile, Table, parse
from provisioner.sources.files.settings import DATASET_KEY, FileConfig
from provisioner.sources.informat.params import normalise_instelnr

INSTELNR_COLUMNS = ("instelnr", "instellingsnummer")
"""The column that names a row's school (any case)."""
UNKNOWN_SCHOOL = "(none)"
"""The school of a row that names none: its person is held (reports show it so)."""
KEY_CHARACTERS = re.compile(r"[A-Za-z0-9._-]+")
MAX_FILE_BYTES = 64 << 20
"""A file of extra persons is a few hundred rows; anything this large is not one."""


@dataclass
class FileRows:
    """What one file holds, judged: rows for the mappings, and what is wrong."""

    rows: list[tuple[str, Record]] = field(default_factory=list)
    columns: frozenset[str] = frozenset()
    problems: list[ValueProblem] = field(default_factory=list)
    block: Block | None = None


class FileSource:
    def __init__(self, config: FileConfig, *, today: dt.date | None = None, **_seams: Any) -> None:
        self.config = config
        self._today = today

    @property
    def name(self) -> str:
        return self.config.name

    def for_school_year(self, _school_year: str) -> FileSource:
        """The same file: it lists the persons it lists, whatever the school year."""
        return self

    def datasets(self) -> Mapping[str, DatasetInfo]:
        dataset = self.config.dataset
        return {dataset: DatasetInfo(dataset, DATASET_KEY)}

    def default_datasets(self) -> Sequence[str]:
        return [self.config.dataset]

    def units(self) -> Sequence[str]:
        return [self.name]

    def describe(self) -> str:
        return f"the file {self.config.path}"

    def read(
        self,
        fields: Fields,
        *,
        progress: Callable[[Progress], None] = lambda _p: None,
        save: Path | None = None,
    ) -> SourceRead:
        dataset = self.config.dataset
        foreign = sorted(set(fields) - {dataset})
        if foreign:
            raise ConfigError(
                f"{self.describe()} offers only the data set {dataset}, not {', '.join(foreign)}"
            )
        if dataset not in fields:
            # Not read by the mappings: the file is not even opened.
            return SourceRead(
                SourceRows([], {}, origin=self.name), self._day(), "", {}, dated=False
            )
        wanted = fields[dataset]
        progress(Progress("start", dataset, self.name))
        data, judged = b"", FileRows()
        try:
            data = self._bytes()
            judged = judge(self.config, parse(data, self.config.path.suffix), wanted)
        except BrokenFile as broken:
            judged.block = Block(
                dataset, self.name, f"({self.config.path}) {broken.reason}", broken.hint
            )
        if save is not None and data:
            # By the file's name in the configuration: unique, where two paths may end alike.
            write_private(private_dir(save) / f"{self.name}{self.config.path.suffix}", data)
        progress(Progress("done", dataset, self.name, len(judged.rows)))
        rows = SourceRows(
            schools=list(dict.fromkeys(school for school, _r in judged.rows)),
            datasets={
                dataset: Dataset(
                    DATASET_KEY,
                    judged.rows if judged.block is None else [],
                    fields_seen=judged.columns,
                    kept=None if wanted is None else frozenset(wanted),
                )
            },
            origin=self.name,
        )
        digest = hashlib.sha256(self.name.encode() + b"\0" + data).hexdigest()
        return SourceRead(
            rows=rows,
            as_of=self._day(),
            digest=digest,
            counts={dataset: {self.name: len(rows.datasets[dataset].rows)}},
            description=f"{self.name} from {self.config.path}",
            blocks=[judged.block] if judged.block else [],
            problems=judged.problems if judged.block is None else [],
            dated=False,
        )

    def _day(self) -> dt.date:
        return self._today or dt.date.today()

    def _bytes(self) -> bytes:
        path = self.config.path
        try:
            with path.open("rb") as handle:
                data = handle.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            raise BrokenFile(
                "does not exist", "is the share or folder it is on available?"
            ) from None
        except OSError as exc:
            raise BrokenFile(f"cannot be read ({exc.strerror})") from None
        if len(data) > MAX_FILE_BYTES:
            raise BrokenFile(f"is larger than {MAX_FILE_BYTES >> 20} MB: not a list of persons")
        return data


def judge(config: FileConfig, table: Table, wanted: Any) -> FileRows:
    """The rows of *table* as records of the file's data set, keeping only the *wanted* fields
    (None: all), with a problem for every row that is wrong and a block when the file is."""
    dataset, unit = config.dataset, config.name
    by_fold = {c.casefold(): c for c in table.columns}
    key_column = by_fold.get(config.key.casefold())
    if key_column is None:
        raise BrokenFile(
            f"has no column {config.key!r} (the person key) in its header "
            f"(columns: {', '.join(table.columns) or 'none'})"
        )
    school_column = next((by_fold[c] for c in INSTELNR_COLUMNS if c in by_fold), None)
    if school_column is None and not config.instelnr:
        raise BrokenFile(
            "has no instelnr column, and its configuration names no instelnr for all its rows"
        )
    fields = {c for c in table.columns if c not in (key_column, school_column)}
    # A field the mappings read that the file lacks holds every person of the file (a ``where``
    # on it would otherwise make them all leavers); a field read only to search by does not.
    missing = sorted(set(wanted or ()) - fields - {DATASET_KEY})
    if not table.rows:
        raise BrokenFile("has no rows below its header")
    kept = sorted(fields if wanted is None else set(wanted) & fields)
    judged = FileRows(columns=frozenset({*fields, DATASET_KEY}))
    first_line: dict[str, int] = {}

    def problem(key: str | None, school: str, reason: str) -> None:
        judged.problems.append(
            ValueProblem(dataset, school if key is None else unit, key, "", reason)
        )

    for row in table.rows:
        raw_key = row.values.get(key_column, "")
        raw_school = row.values.get(school_column, "") if school_column else config.instelnr
        try:
            school = normalise_instelnr(raw_school) if raw_school else config.instelnr
            school_problem = "" if school else "no instelnr"
            school = school or UNKNOWN_SCHOOL
        except ValueError:
            school, school_problem = raw_school, f"{raw_school!r} is not an instellingsnummer"
        key_problem = _key_problem(raw_key, config.prefix, key_column)
        if key_problem:
            # Nobody can tell whose row it is: the leavers of its school wait for the night.
            if school_problem:
                raise BrokenFile(f"line {row.line}: {key_problem}, and {school_problem}")
            problem(None, school, f"line {row.line}: {key_problem}")
            continue
        record: Record = {DATASET_KEY: raw_key}
        for column in missing:
            judged.problems.append(
                ValueProblem(
                    dataset, unit, raw_key, column, f"the file has no column {column!r}: add it"
                )
            )
        if row.problem:
            problem(raw_key, school, row.problem)  # its other values may be in the wrong place
        else:
            record.update({f: row.values[f] for f in kept if row.values.get(f)})
            if school_problem:
                problem(raw_key, school, f"line {row.line}: {school_problem}")
        if raw_key in first_line:
            problem(
                raw_key,
                school,
                f"line {row.line}: the key {raw_key} is also on line {first_line[raw_key]}",
            )
        first_line.setdefault(raw_key, row.line)
        judged.rows.append((school, record))
    return judged


def _key_problem(key: str, prefix: str, column: str) -> str:
    if not key:
        return f"no {column}"
    if not KEY_CHARACTERS.fullmatch(key):
        return f"the key {key!r} holds characters other than letters, digits, '.', '_' or '-'"
    if not key.startswith(prefix) or key == prefix:
        return f"the key {key!r} does not start with this file's prefix {prefix!r}"
    return ""
