"""Answers parsed on the last read, reused when Informat sends the very same bytes again.

Parsing is most of a read's CPU: the answers of a 50,000-pupil scholengroep are some 140 MB of
XML, of which the mappings keep a few fields (about 2 MB once compressed). On most nights most
schools' answers have not changed by a byte. So the records parsed from each answer are kept in
the state store (by the pipeline, through :class:`~provisioner.sources.base.KeptAnswers`) with the
SHA-256 of the bytes they came from, and the next read reuses them when the new answer's bytes
hash the same. The same bytes parsed by the same parser give the same records, so nothing is
trusted that a parse would not give: the key holds the operation, the instelnr, the fields kept
and a hash of the parser's own code, and the bytes decide.

While an answer is downloaded its bytes are held back from the parser as long as they agree
with the kept answer's, megabyte by megabyte (the kept answer keeps the hash of each prefix). At
the first megabyte that differs, the held bytes go to the parser and the rest streams to it as
usual; an answer that ends the same is not parsed at all. A kept answer that cannot be decoded is
no answer: the bytes are parsed.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provisioner.sources.informat import operations, parser
from provisioner.sources.informat.operations import Operation
from provisioner.sources.informat.parser import RawAnswer, Record, UnreadableValue

BLOCK = 1 << 20
"""The bytes between two kept prefix hashes."""

_PARSER_CODE = hashlib.sha256(
    b"".join(Path(module.__file__ or "").read_bytes() for module in (parser, operations))
).hexdigest()[:16]
"""Another parser, or another operations table, may make other records of the same bytes."""


def answer_key(origin: str, op: Operation, instelnr: str, fields: Collection[str] | None) -> str:
    """Where the answer of *op* for *instelnr* is kept, read with *fields* kept (None: all)."""
    kept = "*" if fields is None else ",".join(sorted(fields))
    return f"informat|{_PARSER_CODE}|{origin}|{op.name}|{instelnr}|{kept}"


class Prefixes:
    """SHA-256 of the bytes fed so far, and of every whole megabyte prefix of them."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()
        self._filled = 0
        self.size = 0
        self.hashes: list[str] = []

    def update(self, chunk: bytes) -> None:
        self.size += len(chunk)
        view = memoryview(chunk)
        while len(view) >= BLOCK - self._filled:
            room = BLOCK - self._filled
            self._digest.update(view[:room])
            self.hashes.append(self._digest.hexdigest())
            view, self._filled = view[room:], 0
        self._digest.update(view)
        self._filled += len(view)

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


@dataclass
class KeptAnswer:
    """One answer as parsed on the last read, with the hashes of the bytes it was parsed from."""

    sha256: str
    size: int
    prefixes: list[str]
    records: list[Record]
    fields_seen: list[str]
    problems: list[list[str | None]]

    def agrees(self, read: Prefixes) -> bool:
        """Whether the bytes read so far may still be those this answer was parsed from."""
        done = len(read.hashes)
        return read.size <= self.size and (
            done == 0 or (done <= len(self.prefixes) and read.hashes[-1] == self.prefixes[done - 1])
        )

    def same(self, read: Prefixes) -> bool:
        """Whether the whole answer read is byte for byte the one kept."""
        return read.size == self.size and read.hexdigest() == self.sha256

    def answer(self) -> RawAnswer:
        return RawAnswer(
            self.records,
            self.sha256,
            self.size,
            frozenset(self.fields_seen),
            [UnreadableValue(key, str(name), str(reason)) for key, name, reason in self.problems],
            prefixes=self.prefixes,
        )


def encode(answer: RawAnswer) -> bytes:
    """*answer* as kept (compressed JSON)."""
    kept = {
        "sha256": answer.sha256,
        "size": answer.size,
        "prefixes": answer.prefixes,
        "records": answer.records,
        "fields_seen": sorted(answer.fields_seen),
        "problems": [[p.key, p.field, p.reason] for p in answer.problems],
    }
    return zlib.compress(json.dumps(kept, separators=(",", ":")).encode(), 1)


def decode(blob: bytes | None) -> KeptAnswer | None:
    """The kept answer in *blob*; None for none, or for one that cannot be read (then the
    answer is parsed again, as on a first night)."""
    if blob is None:
        return None
    try:
        kept: Any = json.loads(zlib.decompress(blob))
        answer = KeptAnswer(**kept)
    except (ValueError, TypeError, zlib.error):
        return None
    well_formed = (
        isinstance(answer.sha256, str)
        and isinstance(answer.size, int)
        and isinstance(answer.prefixes, list)
        and isinstance(answer.records, list)
        and all(isinstance(record, dict) for record in answer.records)
        and isinstance(answer.fields_seen, list)
        and all(isinstance(p, list) and len(p) == 3 for p in answer.problems)
    )
    return answer if well_formed else None
