"""Several sources read as one: Informat beside files of extra persons.

Every configured source is read (at the same time: each mostly waits for its own service or
disk), and their rows are merged per data set. Each person comes from exactly one source: a key
that two sources both deliver for one data set is never merged silently but holds that person,
naming both. Blocks, problems, counts and digests are the union of the parts', and each record
names its source, which the mappings see as ``{{ source }}``."""

from __future__ import annotations

import contextvars
import dataclasses
import datetime as dt
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from provisioner.errors import ConfigError
from provisioner.files import private_dir, write_private
from provisioner.model import SOURCE_FIELD, Dataset, SourceRows
from provisioner.sources.base import (
    DatasetInfo,
    Fields,
    KeptAnswers,
    Progress,
    Source,
    SourceRead,
    ValueProblem,
)

MANIFEST = "manifest.json"
SNAPSHOT_FORMAT = "several sources"
"""The manifest of a snapshot of several sources: each source's own snapshot in a folder of its
name (``informat/``, ``files/``)."""


class CompositeSource:
    def __init__(self, parts: Sequence[tuple[str, Source]], *, subfolders: bool = True) -> None:
        """*parts*: (name, source) in configured order; the first is preferred for a data set's
        description. *subfolders*: ``fetch --save DIR`` keeps each part's snapshot in ``DIR/name``
        (else all in DIR, for parts that never write the same file name)."""
        self.parts = list(parts)
        self._subfolders = subfolders
        self._datasets: dict[str, DatasetInfo] = {}
        for name, source in self.parts:
            for dataset, info in source.datasets().items():
                known = self._datasets.get(dataset)
                if known is None:
                    self._datasets[dataset] = info
                    continue
                if known.key != info.key:
                    raise ConfigError(
                        f"source {name} keys {dataset} by {info.key}, another source by "
                        f"{known.key}: their persons cannot be told apart"
                    )
                self._datasets[dataset] = _together(known, info)

    def for_school_year(self, school_year: str) -> CompositeSource:
        parts: list[tuple[str, Source]] = []
        for name, source in self.parts:
            for_school_year = getattr(source, "for_school_year", None)
            if for_school_year is None:
                raise ConfigError(
                    f"source {name} ({source.describe()}) cannot read another school year: "
                    "plan --schooljaar needs sources that can"
                )
            parts.append((name, for_school_year(school_year)))
        return CompositeSource(parts, subfolders=self._subfolders)

    def datasets(self) -> Mapping[str, DatasetInfo]:
        return self._datasets

    def default_datasets(self) -> Sequence[str]:
        return list(dict.fromkeys(d for _n, s in self.parts for d in s.default_datasets()))

    def units(self) -> Sequence[str]:
        return list(dict.fromkeys(u for _n, s in self.parts for u in s.units()))

    def describe(self) -> str:
        return " + ".join(source.describe() for _n, source in self.parts)

    def read(
        self,
        fields: Fields,
        *,
        progress: Callable[[Progress], None] = lambda _p: None,
        save: Path | None = None,
    ) -> SourceRead:
        return self._read(fields, progress, save, None)

    def read_keeping(
        self,
        fields: Fields,
        kept: KeptAnswers,
        *,
        progress: Callable[[Progress], None] = lambda _p: None,
    ) -> SourceRead:
        """:meth:`read`, each part that can reuse what it parsed on the last read doing so."""
        return self._read(fields, progress, None, kept)

    def _read(
        self,
        fields: Fields,
        progress: Callable[[Progress], None],
        save: Path | None,
        kept: KeptAnswers | None,
    ) -> SourceRead:
        def read_part(name: str, source: Source) -> SourceRead:
            offered = source.datasets()
            own = {dataset: wanted for dataset, wanted in fields.items() if dataset in offered}
            keeping = getattr(source, "read_keeping", None)
            if kept is not None and keeping is not None:
                return keeping(own, kept, progress=progress)  # type: ignore[no-any-return]
            where = save / name if save is not None and self._subfolders else save
            return source.read(own, progress=progress, save=where)

        if save is not None:
            private_dir(save)  # before the parts make their folders in it: owner only
        with ThreadPoolExecutor(max_workers=len(self.parts), thread_name_prefix="source") as pool:
            # The caller's context variables (a log context) go along into each read.
            futures = [
                pool.submit(contextvars.copy_context().run, read_part, name, source)
                for name, source in self.parts
            ]
            # Whole or failed: the first part that failed fails the read, as alone it would.
            reads = [future.result() for future in futures]
        if save is not None:
            # Written last, as Informat's: ``run`` expires a snapshot folder by its manifest.
            manifest = {
                "format": SNAPSHOT_FORMAT,
                "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "sources": {
                    name: f"{name}/" if self._subfolders else "" for name, _s in self.parts
                },
            }
            write_private(save / MANIFEST, json.dumps(manifest, indent=2) + "\n")
        return merge([(name, read) for (name, _s), read in zip(self.parts, reads, strict=True)])


def _together(first: DatasetInfo, second: DatasetInfo) -> DatasetInfo:
    """One data set offered by two sources: searchable by what either searches by, documented
    by what either documents (a source without a list, a file, documents nothing)."""
    documented = [d for d in (first.documented_fields, second.documented_fields) if d is not None]
    return dataclasses.replace(
        first,
        search_fields=tuple(dict.fromkeys((*first.search_fields, *second.search_fields))),
        documented_fields=frozenset().union(*documented) if documented else None,
        verified=first.verified and second.verified,
    )


def merge(reads: Sequence[tuple[str, SourceRead]]) -> SourceRead:
    """One read of several: rows per data set in part order, each record naming its source."""
    first_name, first = reads[0]
    origin = first.rows.origin or first_name
    datasets: dict[str, Dataset] = {}
    owner: dict[str, dict[str, str]] = {}
    """Per data set, each key → the part that delivered it first."""
    problems: list[ValueProblem] = []
    for name, read in reads:
        part_origin = read.rows.origin or name
        for dataset_name, dataset in read.rows.datasets.items():
            merged = datasets.get(dataset_name)
            if merged is None:
                merged = datasets[dataset_name] = Dataset(
                    dataset.key, [], frozenset(), frozenset() if dataset.kept is not None else None
                )
            merged.fields_seen |= dataset.fields_seen
            if merged.kept is not None and dataset.kept is not None:
                merged.kept |= dataset.kept
            else:
                merged.kept = None
            if part_origin != origin:
                for _school, record in dataset.rows:
                    record.setdefault(SOURCE_FIELD, part_origin)
            # Two parts with one key: compared as sets, as a large source has many rows (a part
            # judges its own duplicates).
            key_field = dataset.key
            sources = {
                str(r[key_field]): r.get(SOURCE_FIELD) or origin
                for _s, r in dataset.rows
                if r.get(key_field) is not None
            }
            earlier = owner.setdefault(dataset_name, {})
            both = sources.keys() & earlier.keys()
            for school, record in dataset.rows if both else ():
                key = str(record.get(key_field))
                if key in both:
                    source = record.get(SOURCE_FIELD) or origin
                    problems.append(_collision(dataset_name, school, key, earlier[key], source))
            for key, source in sources.items():
                earlier.setdefault(key, source)
            merged.rows += dataset.rows
        problems += read.problems
    counts: dict[str, dict[str, int]] = {}
    for _name, read in reads:
        for dataset_name, per_unit in read.counts.items():
            into = counts.setdefault(dataset_name, {})
            for unit, count in per_unit.items():
                into[unit] = into.get(unit, 0) + count
    dated = [read.as_of for _n, read in reads if read.dated]
    digest = hashlib.sha256()
    for name, read in reads:
        digest.update(f"{name}\0{read.digest}\0".encode())
    return SourceRead(
        rows=SourceRows(
            schools=list(dict.fromkeys(s for _n, read in reads for s in read.rows.schools)),
            datasets=datasets,
            origin=origin,
        ),
        as_of=dated[0] if dated else dt.date.today(),
        digest=digest.hexdigest(),
        counts=counts,
        description="; ".join(read.description for _n, read in reads),
        blocks=[block for _n, read in reads for block in read.blocks],
        problems=problems,
        unit_names={k: v for _n, read in reads for k, v in read.unit_names.items()},
        dated=bool(dated),
    )


def _collision(dataset: str, school: str, key: str, first: str, second: str) -> ValueProblem:
    return ValueProblem(
        dataset,
        school,
        key,
        "",
        f"the key {key} comes from two sources, {first} and {second}: a person must come from "
        "one (remove them from one of the two)",
    )
