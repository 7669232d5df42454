"""Read data sets for every configured instelnr, from the web service or from a snapshot.

The result is all-or-nothing: when one call fails, the whole read fails, because a partial source
looks exactly like "these people left". An instelnr that answers with no rows is not an error
(Informat answers an instelnr the account has no rights on with an empty list) but it is reported
as such, so that later stages can refuse to act on it. A value that cannot be read is no failure of
the read: its record comes without it, and the value is listed as a problem of its person.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import hashlib
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from provisioner import log
from provisioner.errors import ConfigError, SourceError
from provisioner.model import Dataset, SourceRows
from provisioner.sources.base import KeptAnswers, Progress, ValueProblem
from provisioner.sources.informat.client import InformatClient
from provisioner.sources.informat.kept import answer_key, decode, encode
from provisioner.sources.informat.operations import DEFAULT_DATASETS, Operation, operation
from provisioner.sources.informat.parser import RawAnswer, Record
from provisioner.sources.informat.settings import InformatConfig
from provisioner.sources.informat.snapshot import Snapshot, SnapshotWriter
from provisioner.sources.informat.workers import ParseWorkers


@dataclass
class SourceData:
    """What the source holds: records per data set and instelnr."""

    schooljaar: str
    instelnrs: list[str]
    datasets: list[str]
    as_of: dt.date
    """The day the data describes: today for a live read, the reference day of a snapshot (so a
    plan made from a snapshot is the same whenever it is made)."""
    answers: dict[str, dict[str, list[Record]]] = field(default_factory=dict)
    fields_seen: dict[str, set[str]] = field(default_factory=dict)
    """Per data set, every field name that occurred, also those not kept."""
    hashes: dict[tuple[str, str], str] = field(default_factory=dict)
    """SHA-256 of every raw answer, by (data set, instelnr)."""
    kept: dict[str, frozenset[str]] = field(default_factory=dict)
    """Data sets read with only some fields kept: those fields."""
    unreadable: dict[tuple[str, str], list[ValueProblem]] = field(default_factory=dict)
    """Values that could not be read, by (data set, instelnr)."""

    def add(self, dataset: str, instelnr: str, answer: RawAnswer) -> None:
        self.answers.setdefault(dataset, {})[instelnr] = answer.records
        self.fields_seen.setdefault(dataset, set()).update(answer.fields_seen)
        self.hashes[(dataset, instelnr)] = answer.sha256
        self.unreadable[(dataset, instelnr)] = [
            ValueProblem(dataset, instelnr, p.key, p.field, p.reason) for p in answer.problems
        ]

    def problems(self) -> list[ValueProblem]:
        """Every value that could not be read, by data set and instelnr in configuration order
        (answers arrive in any order), then in answer order."""
        return [
            problem
            for dataset in self.datasets
            for nr in self.instelnrs
            for problem in self.unreadable.get((dataset, nr), ())
        ]

    def source_hash(self) -> str:
        """One hash over every answer read: equal hashes, equal source data."""
        digest = hashlib.sha256()
        for (dataset, instelnr), sha in sorted(self.hashes.items()):
            digest.update(f"{dataset}/{instelnr}={sha}\n".encode())
        return digest.hexdigest()

    def records(self, dataset: str) -> list[Record]:
        """All records of *dataset*, every instelnr in configuration order."""
        per_school = self.answers[dataset]
        return [r for instelnr in self.instelnrs for r in per_school[instelnr]]

    def counts(self) -> dict[str, dict[str, int]]:
        """``{"Lln": {"030569": 612, ...}, ...}``"""
        return {
            dataset: {nr: len(self.answers[dataset][nr]) for nr in self.instelnrs}
            for dataset in self.datasets
        }

    def as_source_rows(self) -> SourceRows:
        """The source-neutral view the mapping engine reads: rows with their school, and the
        person key of each data set."""
        return SourceRows(
            schools=list(self.instelnrs),
            datasets={
                name: Dataset(
                    key=operation(name).key,
                    rows=[(nr, r) for nr in self.instelnrs for r in self.answers[name][nr]],
                    fields_seen=frozenset(self.fields_seen.get(name, ())),
                    kept=self.kept.get(name),
                )
                for name in self.datasets
            },
        )

    def empty(self) -> list[tuple[str, str]]:
        """(data set, instelnr) pairs that answered with no rows at all."""
        return [
            (dataset, nr)
            for dataset in self.datasets
            for nr in self.instelnrs
            if not self.answers[dataset][nr]
        ]


def choose_datasets(requested: Sequence[str], config: InformatConfig) -> list[Operation]:
    """Data sets named on the command line, else in the configuration, else the defaults."""
    names = list(requested) or config.datasets or list(DEFAULT_DATASETS)
    unique = list(dict.fromkeys(names))
    return [operation(name) for name in unique]


def read_source(
    config: InformatConfig,
    datasets: Sequence[Operation],
    *,
    fields: Mapping[str, Collection[str] | None] | None = None,
    save: Path | None = None,
    today: dt.date | None = None,
    progress: Callable[[Progress], None] = lambda _p: None,
    sleep: Callable[[float], None] | None = None,
    kept: KeptAnswers | None = None,
) -> SourceData:
    """Read *datasets* for every configured instelnr.

    *fields* limits what is kept per data set (the person key is always kept); *save* writes the
    raw answers as a snapshot; *kept* holds the answers parsed on the last read, reused where an
    answer is byte for byte the same, and gets every answer read now (:mod:`.kept`). Work runs
    concurrently, at most ``config.concurrency`` calls at once.
    """
    today = today or dt.date.today()
    fields = fields or {}
    if config.snapshot is not None:
        if save is not None:
            raise ConfigError(
                "--save reads from the web service; this configuration reads a snapshot"
            )
        return _read_snapshot(config, datasets, fields, progress)

    options = config.query_options(today)
    data = SourceData(
        options.schooljaar, list(config.instelnrs), [op.name for op in datasets], today
    )
    data.kept = _kept(fields)
    writer = SnapshotWriter(save) if save is not None else None
    jobs = [(op, nr) for op in datasets for nr in config.instelnrs]
    extra = {"sleep": sleep} if sleep is not None else {}
    reused: list[bool] = []  # per answer read with kept answers: whether it was the same
    try:
        with InformatClient(config, options, **extra) as client:

            def run(job: tuple[Operation, str]) -> None:
                op, instelnr = job
                progress(Progress("start", op.name, instelnr))
                key = answer_key(config.url or "", op, instelnr, fields.get(op.name))
                blob = kept.last(key) if kept is not None else None
                last = decode(blob)
                answer = client.fetch(
                    op,
                    instelnr,
                    fields=fields.get(op.name),
                    sink=(lambda: writer.opener(op.name, instelnr)) if writer else None,
                    kept=last,
                )
                if kept is not None:
                    unchanged = last is not None and answer.sha256 == last.sha256
                    if blob is None or not unchanged:
                        blob = encode(answer)
                    kept.keep(key, blob)
                    reused.append(unchanged)
                data.add(op.name, instelnr, answer)
                if writer is not None:
                    writer.add(op.name, instelnr, answer.sha256, answer.size, len(answer.records))
                progress(Progress("done", op.name, instelnr, len(answer.records)))

            each_at_once(run, jobs, config.concurrency)
        if kept is not None:
            log.event(
                f"{sum(reused)} of {len(reused)} Informat answers were the same as on the last "
                "read, byte for byte: their records were not parsed again",
                reused=sum(reused),
                answers=len(reused),
            )
        if writer is not None:
            writer.commit(
                {
                    "schooljaar": data.schooljaar,
                    "instelnrs": data.instelnrs,
                    "transport": config.transport,
                    "parameters": _public_parameters(config, today),
                }
            )
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    return data


T = TypeVar("T")


def each_at_once(work: Callable[[T], None], items: Sequence[T], at_once: int) -> None:
    """*work* for every item, *at_once* at a time (calls to one service: each mostly waits for
    its answer); the first error is raised once every started call has ended, and no call is
    started after an error (the read fails anyway)."""
    failed = threading.Event()

    def guarded(item: T) -> None:
        if failed.is_set():
            return
        try:
            work(item)
        except BaseException:
            failed.set()
            raise

    with ThreadPoolExecutor(max_workers=at_once, thread_name_prefix="informat") as pool:
        # The caller's context variables (a log context) go along into each call.
        futures = [pool.submit(contextvars.copy_context().run, guarded, item) for item in items]
        _done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for future in pending:
            future.cancel()
    for future in futures:
        if not future.cancelled() and (error := future.exception()) is not None:
            raise error


def _kept(fields: Mapping[str, Collection[str] | None]) -> dict[str, frozenset[str]]:
    return {name: frozenset(kept) for name, kept in fields.items() if kept is not None}


def _public_parameters(config: InformatConfig, today: dt.date) -> dict[str, str]:
    """The query parameters worth recording with a snapshot: everything but the credentials."""
    options = vars(config.query_options(today))
    return {k: v for k, v in options.items() if k not in ("login", "password") and v}


def _read_snapshot(
    config: InformatConfig,
    datasets: Sequence[Operation],
    fields: Mapping[str, Collection[str] | None],
    progress: Callable[[Progress], None],
) -> SourceData:
    assert config.snapshot is not None
    snapshot = Snapshot(config.snapshot)
    if config.schooljaar not in ("auto", snapshot.schooljaar):
        raise SourceError(
            f"snapshot {config.snapshot} holds schooljaar {snapshot.schooljaar}, "
            f"the configuration asks for {config.schooljaar}"
        )
    data = SourceData(
        snapshot.schooljaar, list(config.instelnrs), [op.name for op in datasets], snapshot.as_of
    )
    data.kept = _kept(fields)

    def run(job: tuple[Operation, str]) -> None:
        op, nr = job
        progress(Progress("start", op.name, nr))
        answer = snapshot.read(
            op, nr, fields=fields.get(op.name), max_bytes=config.max_answer_bytes, workers=workers
        )
        data.add(op.name, nr, answer)
        progress(Progress("done", op.name, nr, len(answer.records)))

    # The answers are parsed as downloaded ones are: several at once, each in a worker.
    jobs = [(op, nr) for op in datasets for nr in config.instelnrs]
    with ParseWorkers(config.concurrency) as workers:
        each_at_once(run, jobs, config.concurrency)
    return data
