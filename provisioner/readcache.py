"""The last read of the directory, kept in the state store as the base of an incremental read.

A full read of 50,000 managed objects takes longer than a whole night should. So a target keeps
what it read together with a *watermark*: where the directory's history stood just before the
read began (AD: the DC's invocation id and its highest committed USN; Microsoft Graph: the delta
links). The next night it asks only for what changed since the watermark and folds that into the
objects it kept; the result must be exactly what a full read would have given.

A full read is made instead whenever the kept read cannot be trusted as a base:

- there is none yet (the first night, a new or rebuilt state store);
- it was made for another scope: other mappings (other attributes), another managed root or
  domain list, another target (the ``scope`` the target computes, with the mappings' hash);
- its full read is older than ``full_read_every`` days (default 7; 0: every read is a full read),
  so that nothing the incremental reads could miss lives on for long;
- it is asked for (``plan --full-read``, ``run --full-read``);
- the target finds the watermark unusable (another DC answered, an expired delta link).

A night that read incrementally usually changed a few hundred of tens of thousands of objects:
it writes only those (with the watermark), against the objects as last written whole, until they
are more than :data:`CHANGES_AT_MOST` of all; then, after every full read, and when an object is
gone (so that nothing of it stays behind), everything is written whole again. A target that
cannot tell which of its objects changed has them all written.

The targets only see :class:`~provisioner.targets.base.ReadBase`: this module is the state
store's side of it. What is kept is the directory's own objects as the target read them (the
attributes the mappings use, as the directory holds them): no more than the directory holds.
"""

from __future__ import annotations

import datetime as dt
import json
import zlib
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from provisioner import log
from provisioner.model import ObservedState
from provisioner.state import StateStore
from provisioner.targets.base import LastRead

CHANGES_AT_MOST = 0.1
"""The share of the objects kept as changes since they were written whole; beyond it (and
beyond 16 changes) they are written whole again, so the changes stay small to read and write."""


class ReadCache:
    """The kept read of one target in the state store at *path* (see the module)."""

    def __init__(
        self,
        path: Path | None,
        target: str,
        *,
        mappings: str,
        full_read_every: int,
        full_read: bool = False,
        keeps: bool = True,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        expect: Callable[[ObservedState], object] = lambda _observed: None,
    ) -> None:
        """*target* names the directory (as the plan does); *mappings* is the mappings' hash,
        part of every scope; *full_read_every* in days (0: always a full read); *full_read*: a
        full read was asked for; *keeps*: the new read is kept (False for a dry run, which
        leaves the state store as it found it); *expect* is told what an incremental read will
        most likely give (:meth:`expect`)."""
        self._path = path
        self._target = target
        self._mappings = mappings
        self._full_read_every = full_read_every
        self._full_read = full_read
        self._keeps = keeps
        self._now = now
        self._expect = expect
        self._full_read_at: dt.datetime | None = None
        self._since_whole: tuple[str, set[str]] | None = None
        """The scope of the base :meth:`last` gave, and the keys changed in it since its
        objects were written whole."""
        self.why_full = ""
        """Why the last call of :meth:`last` gave no base (for the log), or ""."""

    @property
    def keeps(self) -> bool:
        """True when a read made now is kept and may be the next one's base: a target takes no
        watermark otherwise (a dry run, ``full_read_every: 0``, no state store yet)."""
        return (
            self._keeps
            and self._full_read_every > 0
            and self._path is not None
            and self._path.exists()
        )

    def _scope(self, scope: str) -> str:
        return f"{self._mappings}|{scope}"

    def last(self, scope: str) -> LastRead | None:
        """The kept read when it may be the base of an incremental read of *scope* (which the
        target computes from what it reads: root, attributes, format), else None with
        :attr:`why_full` saying why a full read is due."""
        why_full, kept = self._judged(scope)
        self.why_full = why_full or ""
        if kept is None:
            return None
        self._full_read_at = kept["full_read_at"]

        def decode() -> Any:
            objects, changed = _decoded(kept)
            self._since_whole = (scope, changed)
            return objects

        return _last_read(kept, decode)

    def guess(self, scope: str) -> LastRead | None:
        """The last read kept of *scope* however old, also when a full read is asked for: never
        a base, only what a full read will most likely give once the changes since are folded
        in (the target compares the full read with it). None when none is kept of *scope*."""
        kept = self._kept()
        if kept is None or kept["scope"] != self._scope(scope):
            return None
        return _last_read(kept, lambda: _decoded(kept)[0])

    def _kept(self) -> dict[str, Any] | None:
        """The read kept for this target, still compressed; None without one."""
        if self._path is None or not self._path.exists():
            return None
        with StateStore(self._path) as store:
            return store.last_read(self._target)

    def _judged(self, scope: str) -> tuple[str | None, dict[str, Any] | None]:
        """Why a full read is due and None, or None and the kept read that may be the base."""
        if self._full_read:
            return "a full read was asked for", None
        if self._full_read_every == 0:
            return "full_read_every is 0", None
        if self._path is None or not self._path.exists():
            return "no earlier read is kept (no state store yet)", None
        kept = self._kept()
        if kept is None:
            return "no earlier read is kept", None
        if kept["scope"] != self._scope(scope):
            return "the mappings or the managed scope changed since the last read", None
        age = self._now() - kept["full_read_at"]
        if age >= dt.timedelta(days=self._full_read_every):
            return (
                f"the last full read was {age.days} day(s) ago (full_read_every: "
                f"{self._full_read_every})"
            ), None
        return None, kept

    def expect(self, observed: ObservedState) -> None:
        """Pass on what an incremental read will most likely give."""
        self._expect(observed)

    def keep(
        self,
        scope: str,
        watermark: Mapping[str, Any],
        objects: Any,
        *,
        full: bool,
        changed: Collection[str] | None = None,
    ) -> None:
        """Keep *objects* (JSON-able, as the target will want them back), read from
        *watermark* on, as the base of the next read. *full*: they were read in full now (else
        they are the last base with the changes folded in). *changed*: the keys of *objects*
        (a mapping) that may differ from the base :meth:`last` gave, and the keys gone from it;
        only those are written then (None: all). Nothing is kept by a dry run, nor without a
        state store: a preview or a first plan leaves no file behind."""
        if not self.keeps:
            return
        now = self._now()
        full_read_at = now if full or self._full_read_at is None else self._full_read_at
        whole: bytes | None = None
        changes: bytes | None = None
        keys = self._changed_since_whole(scope, objects, changed) if not full else None
        if keys is None:
            whole = _encoded(objects)
        elif keys:
            changes = _encoded({key: objects.get(key) for key in sorted(keys)})
        with StateStore(self._path) as store:
            store.keep_read(
                self._target,
                scope=self._scope(scope),
                watermark=watermark,
                full_read_at=full_read_at,
                objects=whole,
                changes=changes,
            )
        log.event(
            "kept the directory's read for the next night",
            target=self._target,
            full=full,
            whole=whole is not None,
            bytes=len(whole or changes or b""),
        )

    def _changed_since_whole(
        self, scope: str, objects: Any, changed: Collection[str] | None
    ) -> set[str] | None:
        """The keys of *objects* that may differ from the objects last written whole, when so
        few that only they are written; else None (all are written)."""
        if changed is None or not isinstance(objects, Mapping) or self._since_whole is None:
            return None
        base_scope, since = self._since_whole
        if base_scope != scope:
            return None
        keys = since | set(changed)
        if len(keys) > max(16, CHANGES_AT_MOST * len(objects)):
            return None
        if any(key not in objects for key in keys):
            return None  # an object gone from the directory leaves the state store at once
        return keys


def _encoded(objects: Any) -> bytes:
    return zlib.compress(json.dumps(objects, separators=(",", ":")).encode(), 1)


def _last_read(kept: Mapping[str, Any], decode: Callable[[], Any]) -> LastRead:
    return LastRead(
        watermark=kept["watermark"],
        full_read_at=kept["full_read_at"],
        read_at=kept["read_at"],
        decode=decode,
    )


def _decoded(kept: Mapping[str, Any]) -> tuple[Any, set[str]]:
    """The objects of a kept read as the state store gives it (:meth:`StateStore.last_read`),
    with its changes folded in, and the keys they changed."""
    objects = json.loads(zlib.decompress(kept["objects"]))
    changes = json.loads(zlib.decompress(kept["changes"])) if kept["changes"] else {}
    for key, changed in changes.items():
        if changed is None:
            objects.pop(key, None)
        else:
            objects[key] = changed
    return objects, set(changes)
