"""What every source offers the pipeline: its data sets, and a read that returns neutral rows.

The mapping engine and the planner see a source only through :class:`Source` and the
:class:`SourceRead` it returns; how the data is reached (a SOAP web service, a REST API, a file)
stays inside the source's own package. A source also judges its own answers: what makes a read
untrustworthy for some unit (Informat: a school that answered with no rows) comes back as a
:class:`Block`, never as "zero people".
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from provisioner.model import SourceRows


@dataclass(frozen=True)
class DatasetInfo:
    """One data set a source offers."""

    name: str
    key: str
    """The field that holds the person key."""
    search_fields: tuple[str, ...] = ()
    """Identifiers people search a person by (``provisioner explain``), besides the key."""
    documented_fields: frozenset[str] | None = None
    """The fields the source's documentation says the data set holds (None: no such list).
    A field in no row today may still be documented: a source may leave empty values out."""
    verified: bool = True
    """False where the data set's format could not be confirmed (its documented fields and
    element names are a best guess): ``provisioner fields`` says so."""
    unavailable: Mapping[str, str] = field(default_factory=dict)
    """Fields a data set of this name holds in another source that this source cannot give
    (field → why): a mapping that reads one gets a warning naming it, and an empty value."""


@dataclass(frozen=True)
class Progress:
    """One step of a read, for a progress display."""

    event: Literal["start", "done"]
    dataset: str
    unit: str
    """The part of the source being read: an instellingsnummer, a file."""
    records: int = 0


@dataclass(frozen=True)
class Block:
    """A reason not to act on a data set's answer for one unit (a school)."""

    dataset: str
    unit: str
    reason: str
    """What is wrong, after "<data set> for <unit>": ``answered with no rows``."""
    hint: str = ""
    """What may cause it, or what to check."""


@dataclass(frozen=True)
class ValueProblem:
    """A value of one row that could not be read (an impossible date, a number that is none).
    The row is still delivered, with that field empty; the problem holds only its person."""

    dataset: str
    unit: str
    key: str | None
    """The row's person key, or None when the key itself could not be read: then nobody knows
    whose row it was, and that unit's leaver actions wait for the night."""
    field: str
    """The field whose value is wrong; empty when the row as a whole is (a row of a file with
    too few values, a key two sources both deliver): such a problem always holds its person."""
    reason: str
    """What is wrong, without the personal value where it is personal data:
    ``not a date in a form Informat uses ('2011-02-31')``."""


@dataclass
class SourceRead:
    """The neutral result of a read: what the mapping engine and the planner get."""

    rows: SourceRows
    as_of: dt.date
    """The day the data describes: today for a live read, the recorded day of a snapshot."""
    digest: str
    """One hash over everything read: equal digests, equal source data."""
    counts: dict[str, dict[str, int]]
    """Rows per data set and unit."""
    description: str = ""
    """Where the data came from, for people: ``Informat 2025-26 from https://…``."""
    blocks: list[Block] = field(default_factory=list)
    problems: list[ValueProblem] = field(default_factory=list)
    """Values that could not be read, each holding only its person."""
    unit_names: dict[str, str] = field(default_factory=dict)
    """Names of the units for people (a school's name by its instellingsnummer), where the
    data read holds them; reports show a unit by name where they can."""
    dated: bool = True
    """False for data that describes no particular day (a file of extra persons): read together
    with a dated source, the read is dated by that one (``as_of``)."""

    @property
    def units(self) -> list[str]:
        return self.rows.schools


Fields = Mapping[str, Collection[str] | None]
"""Per data set the fields to keep (None: all of them)."""


class KeptAnswers:
    """What sources parsed on the last read, kept in the state store by the pipeline: key →
    bytes, as each source encodes them. A source may reuse what it kept for an answer that came
    back byte for byte the same, and keeps what it reads now (:meth:`keep`, from any thread);
    what is kept replaces the last read's once the whole read has succeeded."""

    def __init__(self, last: Mapping[str, bytes] | None = None) -> None:
        self._last = dict(last or {})
        self._lock = threading.Lock()
        self.new: dict[str, bytes] = {}

    def last(self, key: str) -> bytes | None:
        return self._last.get(key)

    def keep(self, key: str, kept: bytes) -> None:
        with self._lock:
            self.new[key] = kept

    @property
    def changed(self) -> bool:
        """True when what is kept now differs from the last read's (else nothing to write)."""
        return self.new != self._last


class Source(Protocol):
    def datasets(self) -> Mapping[str, DatasetInfo]:
        """Every data set this source offers, by name."""
        ...

    def default_datasets(self) -> Sequence[str]:
        """What ``fetch`` reads when neither the command line nor the mappings name data sets."""
        ...

    def units(self) -> Sequence[str]:
        """The parts read separately (schools), in configured order."""
        ...

    def describe(self) -> str:
        """The source in a few words, for people."""
        ...

    def read(
        self,
        fields: Fields,
        *,
        progress: Callable[[Progress], None] = lambda _p: None,
        save: Path | None = None,
    ) -> SourceRead:
        """Read the data sets named in *fields*, keeping only those fields (the person key
        always). The read is whole or fails: a partial source looks exactly like "these people
        left". *save* keeps the raw answers as a snapshot (where the source can)."""
        ...


class SchoolYearSource(Protocol):
    """A source that can also read a school year other than the one it is configured for:
    ``plan --schooljaar`` previews the next year with it. A source without this method cannot
    preview, and the pipeline says so."""

    def for_school_year(self, school_year: str) -> Source:
        """The same source reading *school_year* as it will stand on its first day (or on
        today, when today lies inside it): the read's ``as_of`` is that day. Raises
        :class:`~provisioner.errors.ConfigError` for a year it cannot read (an ended one, a
        name it does not know)."""
        ...


class KeepingSource(Protocol):
    """A source that can reuse what it parsed on the last read (Informat: an answer that came
    back byte for byte the same is not parsed again). The pipeline reads through this method
    when the source has it and a state store keeps the answers; a source without it is read
    with :meth:`Source.read`."""

    def read_keeping(
        self,
        fields: Fields,
        kept: KeptAnswers,
        *,
        progress: Callable[[Progress], None] = lambda _p: None,
    ) -> SourceRead:
        """:meth:`Source.read`, reusing what *kept* holds of the last read and keeping there
        what is read now."""
        ...
