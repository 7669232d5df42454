"""Informat's REST APIs behind the :class:`~provisioner.sources.base.Source` protocol.

A read fetches, per school, only the endpoints the requested data sets are made from, then makes
the data sets (:mod:`.datasets`). A school that is refused, or whose answer makes a data set
without rows, is a :class:`~provisioner.sources.base.Block` for that school, never "zero people";
every other failure fails the whole read. ``fetch --save DIR`` keeps the raw JSON answers in the
web service's snapshot layout (``students/030569.json``), and a snapshot can be the source.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from provisioner.errors import ConfigError, SourceError
from provisioner.model import Dataset, SourceRows
from provisioner.sources.base import Block, DatasetInfo, Fields, Progress, SourceRead, ValueProblem
from provisioner.sources.informat.params import (
    dd_mm_yyyy,
    parse_day,
    resolve_schooljaar,
)
from provisioner.sources.informat.parser import normalise_date
from provisioner.sources.informat.reader import each_at_once
from provisioner.sources.informat.snapshot import Snapshot, SnapshotWriter
from provisioner.sources.informat.source import EMPTY_ANSWER, preview_day
from provisioner.sources.informat_rest.client import RestAnswer, RestClient, SchoolRefused
from provisioner.sources.informat_rest.datasets import (
    DATASETS,
    DEFAULT_DATASETS,
    DERIVED,
    ENDPOINTS,
    Api,
    RestDataset,
    dataset,
    needed_endpoints,
)
from provisioner.sources.informat_rest.settings import InformatRestConfig

API = "informat_rest"
"""The manifest's ``api``: a web-service snapshot is not read as a REST one, nor the reverse."""
REFUSED = "was refused by Informat"
EMPTY_HINT = "Informat's REST API gives an empty list when there is nothing (or nothing yet)"
_NO_NAME = "the REST API does not give a school's name: give it under school_names"

Item = dict[str, Any]


class InformatRestSource:
    def __init__(
        self,
        config: InformatRestConfig,
        *,
        today: dt.date | None = None,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] | None = None,
        transport: Any = None,
    ) -> None:
        """``today``, ``sleep``, ``clock`` and ``transport`` (httpx's) are seams for tests."""
        self.config = config
        self._today = today
        self._seams = {
            k: v
            for k, v in {"sleep": sleep, "clock": clock, "transport": transport}.items()
            if v is not None
        }

    def for_school_year(self, school_year: str) -> InformatRestSource:
        """The registrations of *school_year* as they stand on its first day (or on the
        configured ``referentiedatum`` inside it, or today once it has begun), like the web
        service's preview: the read is dated by that day."""
        day = preview_day(school_year, self._today or dt.date.today(), self.config.referentiedatum)
        settings = dataclasses.replace(
            self.config, schooljaar=school_year, referentiedatum=dd_mm_yyyy(day)
        )
        return InformatRestSource(settings, today=day, **self._seams)

    def datasets(self) -> Mapping[str, DatasetInfo]:
        unnamed = set(self.config.instelnrs) - set(self.config.school_names)
        return {
            name: DatasetInfo(
                name,
                spec.key,
                spec.search_fields,
                documented_fields=frozenset(spec.fields) if spec.fields else None,
                verified=spec.verified,
                unavailable={
                    **spec.unavailable,
                    **{
                        f: _NO_NAME
                        for f, origin in spec.fields.items()
                        if origin == "config.school_names" and unnamed
                    },
                },
            )
            for name, spec in DATASETS.items()
        }

    def default_datasets(self) -> Sequence[str]:
        return self.config.datasets or DEFAULT_DATASETS

    def units(self) -> Sequence[str]:
        return self.config.instelnrs

    def describe(self) -> str:
        return f"Informat REST {self._origin()}"

    def _origin(self) -> str:
        if self.config.snapshot is not None:
            return f"snapshot {self.config.snapshot}"
        return self.config.students_url

    def read(
        self,
        fields: Fields,
        *,
        progress: Callable[[Progress], None] = lambda _p: None,
        save: Path | None = None,
    ) -> SourceRead:
        specs = [dataset(name) for name in fields]
        kept = {s.name: _kept(fields[s.name]) for s in specs}
        endpoints = list(
            dict.fromkeys(e for s in specs for e in needed_endpoints(s.name, kept[s.name]))
        )
        today = self._today or dt.date.today()
        if self.config.snapshot is not None:
            if save is not None:
                raise ConfigError(
                    "--save reads from the REST API; this configuration reads a snapshot"
                )
            answers, refused, schooljaar, as_of = self._from_snapshot(endpoints)
        else:
            answers, refused, schooljaar = self._from_api(endpoints, today, save, progress, fields)
            as_of = today
        day = _reference_day(self.config.referentiedatum, as_of)
        made = _Made(self.config, specs, kept, answers, refused, day)
        digest = hashlib.sha256()
        for (endpoint, nr), answer in sorted(answers.items()):
            digest.update(f"{endpoint}/{nr}={answer.sha256}\n".encode())
        for (nr, api), reason in sorted(refused.items()):
            digest.update(f"refused {api}/{nr}: {reason}\n".encode())
        digest.update(f"day={day} names={sorted(self.config.school_names.items())}".encode())
        return SourceRead(
            rows=made.rows(),
            as_of=as_of,
            digest=digest.hexdigest(),
            counts=made.counts(),
            description=f"Informat REST {schooljaar} from {self._origin()}",
            blocks=made.blocks(),
            problems=made.problems,
            unit_names=dict(self.config.school_names),
        )

    def _from_api(
        self,
        endpoints: Sequence[str],
        today: dt.date,
        save: Path | None,
        progress: Callable[[Progress], None],
        datasets: Collection[str],
    ) -> tuple[dict[tuple[str, str], RestAnswer], dict[tuple[str, Api], str], str]:
        """The answers of *endpoints* per school; progress is told per data set and school (a
        school's data sets are done when its endpoints are)."""
        schooljaar = resolve_schooljaar(self.config.schooljaar, today)
        answers: dict[tuple[str, str], RestAnswer] = {}
        refused: dict[tuple[str, Api], str] = {}
        writer = _RestSnapshotWriter(save) if save is not None else None
        try:
            with RestClient(self.config, **self._seams) as client:

                def read_school(nr: str) -> None:
                    """One school's endpoints, one after the other (its token is shared)."""
                    for name in datasets:
                        progress(Progress("start", name, nr))
                    for name in endpoints:
                        endpoint = ENDPOINTS[name]
                        if (nr, endpoint.api) in refused:
                            continue
                        try:
                            answer = client.fetch(endpoint, nr, {"schoolYear": schooljaar})
                        except SchoolRefused as exc:
                            refused[(nr, endpoint.api)] = exc.reason
                            continue
                        answers[(name, nr)] = answer
                        if writer is not None:
                            with writer.opener(name, nr) as out:
                                out.write(answer.body)
                            writer.add(name, nr, answer.sha256, len(answer.body), len(answer.items))
                    for name in datasets:
                        progress(Progress("done", name, nr))

                # Schools at once, as the web service's calls: a scholengroep of a hundred
                # schools would otherwise wait for each in turn. Each school writes only its
                # own keys; the first failure fails the read, the others are not started.
                each_at_once(read_school, self.config.instelnrs, self.config.concurrency)
            if writer is not None:
                day = _reference_day(self.config.referentiedatum, today)
                writer.commit(
                    {
                        "api": API,
                        "schooljaar": schooljaar,
                        "instelnrs": list(self.config.instelnrs),
                        "parameters": {"referentiedatum": dd_mm_yyyy(day)},
                        "refused": [
                            {"instelnr": nr, "api": api, "reason": reason}
                            for (nr, api), reason in sorted(refused.items())
                        ],
                    }
                )
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        return answers, refused, schooljaar

    def _from_snapshot(
        self, endpoints: Sequence[str]
    ) -> tuple[dict[tuple[str, str], RestAnswer], dict[tuple[str, Api], str], str, dt.date]:
        assert self.config.snapshot is not None
        snapshot = Snapshot(self.config.snapshot)
        if snapshot.manifest.get("api") != API:
            raise SourceError(
                f"{self.config.snapshot} is a snapshot of the web service, not of the REST API"
            )
        if self.config.schooljaar not in ("auto", snapshot.schooljaar):
            raise SourceError(
                f"snapshot {self.config.snapshot} holds schooljaar {snapshot.schooljaar}, "
                f"the configuration asks for {self.config.schooljaar}"
            )
        refused: dict[tuple[str, Api], str] = {
            (r["instelnr"], r["api"]): r["reason"] for r in snapshot.manifest.get("refused", [])
        }
        answers: dict[tuple[str, str], RestAnswer] = {}
        for nr in self.config.instelnrs:
            for name in endpoints:
                endpoint = ENDPOINTS[name]
                if (nr, endpoint.api) in refused:
                    continue
                entry = snapshot.entry(name, nr)
                path = snapshot.directory / entry.file
                try:
                    body = path.read_bytes()
                except OSError as exc:
                    raise SourceError(
                        f"snapshot file {path} cannot be read: {exc.strerror}"
                    ) from None
                if hashlib.sha256(body).hexdigest() != entry.sha256:
                    raise SourceError(
                        f"snapshot file {path} changed since it was saved (hash mismatch)"
                    )
                parsed = json.loads(body)
                items = parsed[endpoint.wrapper] if endpoint.wrapper else parsed
                answers[(name, nr)] = RestAnswer(items, body, entry.sha256)
        return answers, refused, snapshot.schooljaar, snapshot.as_of


class _RestSnapshotWriter(SnapshotWriter):
    def relative_path(self, dataset: str, instelnr: str) -> str:
        return f"{dataset}/{instelnr}.json"


def _kept(fields: Collection[str] | None) -> frozenset[str] | None:
    return None if fields is None else frozenset(fields)


def _reference_day(configured: str, today: dt.date) -> dt.date:
    return today if configured in ("", "today") else parse_day(configured)


class _Made:
    """The data sets made from the answers of one read, per school in configured order."""

    def __init__(
        self,
        config: InformatRestConfig,
        specs: Sequence[RestDataset],
        kept: Mapping[str, frozenset[str] | None],
        answers: Mapping[tuple[str, str], RestAnswer],
        refused: Mapping[tuple[str, Api], str],
        day: dt.date,
    ) -> None:
        self.config = config
        self.specs = specs
        self.kept = kept
        self.answers = answers
        self.refused = refused
        self.day = day.isoformat()
        self.problems: list[ValueProblem] = []
        self.per_school: dict[str, dict[str, list[Item]]] = {s.name: {} for s in specs}
        self.seen: dict[str, set[str]] = {s.name: set() for s in specs}
        self.seen_at: dict[tuple[str, str], set[str]] = {}
        """Per data set and school the fields that had a value in some row."""
        for spec in specs:
            for nr in config.instelnrs:
                self.per_school[spec.name][nr] = list(self._make(spec, nr))

    def _items(self, endpoint: str, nr: str) -> list[Item]:
        answer = self.answers.get((endpoint, nr))
        return answer.items if answer is not None else []

    def _make(self, spec: RestDataset, nr: str) -> Iterable[Item]:
        if spec.name not in DERIVED:
            for item in self._items(spec.name, nr):
                scalars = {k: v for k, v in item.items() if not isinstance(v, list | dict)}
                yield from self._row(spec, nr, {spec.name: scalars}, {})
            return
        if spec.endpoints[0] == "registrations":
            students = {str(s.get("pPersoon")): s for s in self._items("students", nr)}
            for reg in self._items("registrations", nr):
                context = {"registrations": reg, "students": students.get(str(reg.get("pPersoon")))}
                klassen = [k for k in reg.get("inschrKlassen") or () if isinstance(k, dict)]
                if spec.name == "Lln":
                    if self._current(reg):
                        yield from self._row(spec, nr, context, {"klassen": self._class(klassen)})
                else:
                    for klas in klassen:
                        yield from self._row(spec, nr, context, {"klassen": klas})
            return
        source = spec.endpoints[0]
        for item in self._items(source, nr):
            yield from self._row(spec, nr, {source: item}, {})

    def _current(self, reg: Item) -> bool:
        """Registered on the reference day, as the web service's ``Lln`` with its
        ``referentiedatum``; an unreadable date counts as current (its person is held)."""
        begin, end = _day(reg.get("begindatum")), _day(reg.get("einddatum"))
        return (begin is None or begin <= self.day) and (end is None or end >= self.day)

    def _class(self, klassen: list[Item]) -> Item | None:
        """The official class (groepType 0) on the reference day, else the last one begun."""
        main = [k for k in klassen if str(k.get("groepType")) == "0"]
        for klas in main:
            begin, end = _day(klas.get("begindatum")), _day(klas.get("einddatum"))
            if (begin is None or begin <= self.day) and (end is None or end >= self.day):
                return klas
        return max(main, key=lambda k: _day(k.get("begindatum")) or "", default=None)

    def _row(
        self, spec: RestDataset, nr: str, context: Mapping[str, Any], more: Mapping[str, Any]
    ) -> Iterable[Item]:
        objects = {**context, **more}
        sources = spec.fields or {f: f"{spec.name}.{f}" for f in objects[spec.name]}
        values: dict[str, str] = {}
        for name, origin in sources.items():
            value = self._value(origin, objects, nr)
            if value is not None:
                values[name] = value
        key = values.get(spec.key)
        self.seen[spec.name].update(values)
        self.seen_at.setdefault((spec.name, nr), set()).update(values)
        if key is None:
            self.problems.append(
                ValueProblem(spec.name, nr, None, spec.key, "the row has no person key")
            )
            return
        kept = self.kept[spec.name]
        record: Item = {}
        for name, value in values.items():
            if kept is not None and name not in kept and name != spec.key:
                continue
            if "datum" in name.lower():  # dates (BegindatumKlas too): read tolerantly, as ISO
                try:
                    value = normalise_date(value)
                except ValueError as exc:
                    self.problems.append(ValueProblem(spec.name, nr, key, name, str(exc)))
                    continue
                if value is None:
                    continue
            record[name] = value
        yield record

    def _value(self, origin: str, objects: Mapping[str, Any], nr: str) -> str | None:
        if origin == "unit":
            return nr
        if origin == "config.school_names":
            return self.config.school_names.get(nr)
        where, _, name = origin.partition(".")
        item = objects.get(where)
        if not isinstance(item, dict):
            return None
        value = _text(item.get(name))
        if value is not None and name == "isActief":
            value = "J" if value == "true" else "N"
        if value is not None and name == "instelnr":
            value = value.zfill(6)
        return value

    def rows(self) -> SourceRows:
        nrs = self.config.instelnrs
        return SourceRows(
            schools=list(nrs),
            datasets={
                spec.name: Dataset(
                    key=spec.key,
                    rows=[(nr, r) for nr in nrs for r in self.per_school[spec.name][nr]],
                    fields_seen=frozenset(self.seen[spec.name]),
                    kept=self.kept[spec.name],
                )
                for spec in self.specs
            },
        )

    def counts(self) -> dict[str, dict[str, int]]:
        return {
            name: {nr: len(rows) for nr, rows in per.items()}
            for name, per in self.per_school.items()
        }

    def blocks(self) -> list[Block]:
        blocks: list[Block] = []
        for spec in self.specs:
            apis = {ENDPOINTS[e].api for e in spec.endpoints}
            for nr in self.config.instelnrs:
                reason = next(
                    (self.refused[(nr, a)] for a in apis if (nr, a) in self.refused), None
                )
                if reason is not None:
                    blocks.append(Block(spec.name, nr, REFUSED, reason))
                elif not self.per_school[spec.name][nr]:
                    blocks.append(Block(spec.name, nr, EMPTY_ANSWER, EMPTY_HINT))
                elif missing := self._unconfirmed(spec, nr):
                    blocks.append(
                        Block(
                            spec.name,
                            nr,
                            f"gave no {', '.join(missing)} in any row",
                            f"the REST field names of {spec.name} are unverified; compare "
                            "'provisioner fetch --save' with docs/informat.md's correspondence "
                            "table",
                        )
                    )
        return blocks

    def _unconfirmed(self, spec: RestDataset, nr: str) -> list[str]:
        """Of a data set whose REST field names are a best guess, the kept fields that no row of
        this school has: a wrong guess would make every value empty (``Actief``: everybody a
        leaver), so the school is blocked rather than read that way."""
        kept = self.kept[spec.name]
        if spec.verified or spec.name not in DERIVED or kept is None:
            return []
        seen = self.seen_at.get((spec.name, nr), set())
        return sorted(
            f for f in kept if f not in seen and _from_api(spec.fields.get(f, "config.unknown"))
        )


def _from_api(origin: str) -> bool:
    """Whether a field comes from an API's answer (not from the configuration or the unit)."""
    return "." in origin and not origin.startswith("config.")


def _text(value: Any) -> str | None:
    """A JSON value as the web service would give it: text, or None for no value."""
    if value is None or isinstance(value, list | dict):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value)
    return text if text.strip() else None


def _day(value: Any) -> str | None:
    """The ISO day of a date value, None for none or an unreadable one."""
    text = _text(value)
    if text is None:
        return None
    try:
        normalised = normalise_date(text)
    except ValueError:
        return None
    return normalised[:10] if normalised else None
