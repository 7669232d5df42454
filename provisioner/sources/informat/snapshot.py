"""Snapshots: the raw Informat answers of one fetch, kept so a run can be reproduced offline.

Layout of a snapshot directory::

    manifest.json           what was fetched, with parameters (never credentials) and hashes
    Lln/030569.xml          one raw answer per data set and instelnr, byte for byte

The manifest is written last, so an interrupted save is not mistaken for a snapshot. The data is
about minors: the directory is readable by its owner only (0700, its files 0600), every file is
made new (never written through a link), and a link in place of the snapshot directory is refused.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from provisioner.errors import SourceError
from provisioner.files import create_private, refuse_link, write_private
from provisioner.sources.informat.operations import Operation
from provisioner.sources.informat.params import parse_day
from provisioner.sources.informat.parser import DEFAULT_MAX_ANSWER_BYTES, RawAnswer
from provisioner.sources.informat.workers import ParseWorkers

MANIFEST = "manifest.json"
FORMAT = 1
_CHUNK = 1 << 20


@dataclass(frozen=True)
class SnapshotEntry:
    dataset: str
    instelnr: str
    file: str
    sha256: str
    bytes: int
    records: int


class SnapshotWriter:
    """Collects answers in a private temporary directory next to the target, then swaps it in."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        refuse_link(directory)  # replacing it would replace the link, not what it points to
        if directory.exists() and any(directory.iterdir()) and not (directory / MANIFEST).exists():
            raise SourceError(
                f"{directory} exists and is not a snapshot; choose an empty or new directory"
            )
        directory.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._work = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
        self.entries: list[SnapshotEntry] = []

    def relative_path(self, dataset: str, instelnr: str) -> str:
        return f"{dataset}/{instelnr}.xml"

    def opener(self, dataset: str, instelnr: str) -> BinaryIO:
        """A fresh file for one answer; opened again (truncated) when a retry starts over."""
        path = self._work / self.relative_path(dataset, instelnr)
        path.parent.mkdir(mode=0o700, exist_ok=True)
        path.unlink(missing_ok=True)  # a retry starts a new file (inside our private directory)
        return os.fdopen(create_private(path), "wb")

    def add(self, dataset: str, instelnr: str, sha256: str, size: int, records: int) -> None:
        self.entries.append(
            SnapshotEntry(
                dataset, instelnr, self.relative_path(dataset, instelnr), sha256, size, records
            )
        )

    def commit(self, header: dict[str, Any]) -> None:
        manifest = {
            "format": FORMAT,
            "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            **header,
            "answers": [vars(e) for e in sorted(self.entries, key=lambda e: e.file)],
        }
        write_private(self._work / MANIFEST, json.dumps(manifest, indent=2) + "\n")
        refuse_link(self.directory)
        if self.directory.exists():
            shutil.rmtree(self.directory)
        self._work.rename(self.directory)

    def abort(self) -> None:
        shutil.rmtree(self._work, ignore_errors=True)


class Snapshot:
    """A saved snapshot, read back with the same parser as a live answer."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        try:
            manifest = json.loads((directory / MANIFEST).read_text("utf-8"))
        except FileNotFoundError:
            raise SourceError(f"{directory} is not a snapshot: it has no {MANIFEST}") from None
        except (OSError, ValueError) as exc:
            raise SourceError(f"{directory / MANIFEST} cannot be read: {exc}") from None
        if "sources" in manifest:  # a snapshot of several sources (provisioner.sources.composite)
            raise SourceError(
                f"{directory} is a snapshot of several sources: name its Informat folder, "
                f"{directory / 'informat'}"
            )
        if manifest.get("format") != FORMAT:
            raise SourceError(f"{directory}: unknown snapshot format {manifest.get('format')!r}")
        self.manifest: dict[str, Any] = manifest
        self.schooljaar: str = manifest["schooljaar"]
        self.entries = {
            (e["dataset"], e["instelnr"]): SnapshotEntry(**e) for e in manifest["answers"]
        }

    @property
    def as_of(self) -> dt.date:
        """The reference day the snapshot was fetched for, else the day it was made."""
        reference = self.manifest.get("parameters", {}).get("referentiedatum")
        if reference:
            return parse_day(reference)
        return dt.datetime.fromisoformat(self.manifest["created"]).date()

    @property
    def datasets(self) -> list[str]:
        return sorted({dataset for dataset, _ in self.entries})

    def entry(self, dataset: str, instelnr: str) -> SnapshotEntry:
        try:
            return self.entries[(dataset, instelnr)]
        except KeyError:
            have = ", ".join(self.datasets)
            raise SourceError(
                f"snapshot {self.directory} has no {dataset} for {instelnr} (it holds: {have}; "
                f"instelnrs {', '.join(self.manifest.get('instelnrs', []))})"
            ) from None

    def read(
        self,
        op: Operation,
        instelnr: str,
        *,
        fields: Collection[str] | None = None,
        max_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
        workers: ParseWorkers,
    ) -> RawAnswer:
        """One answer of the snapshot, parsed by one of *workers* as a downloaded one is."""
        entry = self.entry(op.name, instelnr)
        path = self.directory / entry.file
        digest = hashlib.sha256()

        def chunks() -> Iterator[bytes]:
            try:
                with path.open("rb") as handle:
                    while chunk := handle.read(_CHUNK):
                        digest.update(chunk)
                        yield chunk
            except OSError as exc:
                raise SourceError(f"snapshot file {path} cannot be read: {exc.strerror}") from None

        what = f"snapshot {entry.file}"
        with workers.parser(op, what, fields=fields, max_bytes=max_bytes) as parser:
            for chunk in chunks():
                parser.feed(chunk)
            records, seen, problems = parser.close()
        if digest.hexdigest() != entry.sha256:
            raise SourceError(f"snapshot file {path} changed since it was saved (hash mismatch)")
        return RawAnswer(records, entry.sha256, entry.bytes, seen, problems)
