"""The state store: what the connector must remember between runs, in one SQLite file.

- anchors: source anchor ↔ the target's immutable id (objectGUID, Entra object id) as last seen.
  Recorded when a plan is applied, for later correlation and for people looking into the file; the
  planner finds managed objects by the anchor attribute in the directory itself;
- issued names: every username, mail address and other name ever given (also the old ones of a
  renamed account), so a name is never given to someone else;
- account kinds and schools, and leaver clocks: since when someone is gone from the source,
  and since when their account is disabled (the deletion grace counts from that day);
- group lifecycle: the day a group was archived, and the day it was deleted;
- hold clocks: since when a person is held (a problem with their data);
- runs: when, what, and how it ended.

When a deleted account's delete is applied, the store forgets its person but for the names they
were given (:meth:`StateStore.forget_person`). Backup, restore and rebuild:
:mod:`provisioner.statecmds` and docs/state.md.

Writes happen in explicit transactions. ``with store.transaction():`` makes everything inside it
one transaction: committed together at the end, or not at all when an exception leaves the block.
A write method called outside one runs in a transaction of its own, so a call with many rows is
still one commit (one wait for the disk), not one per row. Nested, a ``transaction()`` or a write
method joins the outer transaction as a savepoint: if it fails, its own writes are undone and the
exception goes on; what it wrote is committed only with the outer transaction.

The schema has a version from the start; :data:`MIGRATIONS` brings any older file up to date, one
step at a time, each in its own transaction.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from provisioner.errors import ProvisionerError
from provisioner.files import open_private

MIGRATIONS: list[str] = [
    # 1: the first schema
    """
    CREATE TABLE anchors (
        kind TEXT NOT NULL,               -- account or group
        anchor TEXT NOT NULL,
        target_id TEXT NOT NULL,
        first_seen TEXT NOT NULL,
        PRIMARY KEY (kind, anchor)
    );
    CREATE UNIQUE INDEX anchors_by_target ON anchors (target_id);
    CREATE TABLE issued_names (
        name_folded TEXT PRIMARY KEY,     -- compared without case, like sAMAccountName
        name TEXT NOT NULL,
        anchor TEXT NOT NULL,
        issued TEXT NOT NULL
    );
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        started TEXT NOT NULL,
        finished TEXT,
        command TEXT NOT NULL,
        outcome TEXT,                     -- ok, failed, blocked
        summary TEXT                      -- JSON: counts per action, errors, approvals
    );
    """,
    # 2: the leaver lifecycle: which kind each account is, and since when a leaver is gone
    """
    CREATE TABLE account_kinds (
        anchor TEXT PRIMARY KEY,
        kind TEXT NOT NULL               -- the mappings' account kind: pupils, staff
    );
    CREATE TABLE leavers (
        anchor TEXT PRIMARY KEY,
        since TEXT NOT NULL              -- the first day the source no longer had the person
    );
    """,
    # 3: the school of each account, for limits and counts per school
    """
    ALTER TABLE account_kinds ADD COLUMN school TEXT;
    """,
    # 4: held persons (a problem with their data): since when, so that a hold cannot last unseen
    """
    CREATE TABLE held (
        kind TEXT NOT NULL,              -- the mappings' account kind
        person TEXT NOT NULL,            -- the person key in the source
        since TEXT NOT NULL,             -- the first day the person was held
        PRIMARY KEY (kind, person)
    );
    """,
    # 5: names besides the username (mail, userPrincipalName): which attribute a name was given as
    """
    ALTER TABLE issued_names ADD COLUMN attribute TEXT NOT NULL DEFAULT 'username';
    """,
    # 6: the deletion grace counts from the disable; groups are archived before they are deleted
    """
    -- the day the account was disabled by the connector (or first seen disabled)
    ALTER TABLE leavers ADD COLUMN disabled TEXT;
    CREATE TABLE group_lifecycle (
        key TEXT PRIMARY KEY,            -- the group's key
        archived TEXT,                   -- the day it was archived (moved or marked)
        deleted TEXT                     -- the day the connector deleted it
    );
    """,
    # 7: the last read of the directory, the base of the next night's incremental read
    """
    CREATE TABLE last_read (
        target TEXT PRIMARY KEY,         -- the directory, as a plan names it
        scope TEXT NOT NULL,             -- what was read: the mappings, the managed scope
        watermark TEXT NOT NULL,         -- JSON: where the directory's history stood before it
        full_read_at TEXT NOT NULL,      -- when everything was last read in full
        read_at TEXT NOT NULL,
        objects BLOB NOT NULL            -- zlib-compressed JSON: the objects as read
    );
    """,
    # 8: the source's answers as last parsed, reused when an answer comes back the same
    """
    CREATE TABLE kept_answers (
        key TEXT PRIMARY KEY,            -- the source's own: data set, unit, fields kept
        answer BLOB NOT NULL             -- as the source encodes it
    );
    """,
    # 9: the kept read's objects apart from what every night rewrites (the watermark, the objects
    # changed since they were written), so that a night writes only what changed
    """
    CREATE TABLE last_read_objects (
        target TEXT PRIMARY KEY,         -- the directory, as a plan names it
        objects BLOB NOT NULL            -- zlib-compressed JSON: the objects, as last written whole
    );
    INSERT INTO last_read_objects (target, objects) SELECT target, objects FROM last_read;
    CREATE TABLE last_read_since (
        target TEXT PRIMARY KEY,
        scope TEXT NOT NULL,
        watermark TEXT NOT NULL,
        full_read_at TEXT NOT NULL,
        read_at TEXT NOT NULL,
        changes BLOB                     -- zlib-compressed JSON, key: object (null: gone), or NULL
    );
    INSERT INTO last_read_since (target, scope, watermark, full_read_at, read_at)
        SELECT target, scope, watermark, full_read_at, read_at FROM last_read;
    DROP TABLE last_read;
    ALTER TABLE last_read_since RENAME TO last_read;
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)
SIDE_FILES = ("-journal", "-wal", "-shm")


class StateError(ProvisionerError):
    pass


_ENDED_WELL = frozenset({"ok", "applied", "nothing", "waiting"})
"""Run outcomes after which the persons counted are the drop guard's baseline (``ok`` is how
older versions named them)."""


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class StateStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        # Usernames of minors: readable by the owner only, also a file made before with a wider
        # mode, and never through a link planted in its place. SQLite's side files (journal,
        # write-ahead log) hold the same data: tightened too when they are there; SQLite makes
        # new ones with the database file's mode.
        try:
            for file in (path, *(path.with_name(path.name + s) for s in SIDE_FILES)):
                if file == path or os.path.lexists(file):
                    os.close(open_private(file))
        except OSError as exc:
            raise StateError(f"state store {path} cannot be opened: {exc.strerror}") from None
        self._depth = 0  # how many transaction() blocks are open; 0: none
        try:
            # isolation_level=None: sqlite3 begins no transaction by itself; transaction() does.
            self.db = sqlite3.connect(path, isolation_level=None)
            self.db.execute("PRAGMA foreign_keys = ON")
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise StateError(f"state store {path} cannot be opened: {exc}") from None
        if version > SCHEMA_VERSION:
            raise StateError(
                f"state store {path} has schema version {version}; this provisioner knows up to "
                f"{SCHEMA_VERSION}: upgrade provisioner rather than risk the file"
            )
        for number in range(version, SCHEMA_VERSION):
            self._migrate(number + 1, MIGRATIONS[number])

    def _migrate(self, version: int, script: str) -> None:
        try:
            with self.transaction():
                for statement in filter(str.strip, script.split(";")):
                    self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version = {version:d}")
        except sqlite3.DatabaseError as exc:
            raise StateError(
                f"state store {self.path}: migration to {version} failed: {exc}"
            ) from None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One explicit transaction: COMMIT at the end of the block, ROLLBACK on an exception.

        Nested inside another, it joins that one as a savepoint: an exception undoes only what was
        written inside this block (and propagates); the rest commits with the outer transaction.
        """
        if self._depth:
            savepoint = f"nested_{self._depth}"
            self.db.execute(f"SAVEPOINT {savepoint}")
            self._depth += 1
            try:
                yield
            except BaseException:
                if self.db.in_transaction:
                    self.db.execute(f"ROLLBACK TO {savepoint}")
                    self.db.execute(f"RELEASE {savepoint}")
                raise
            else:
                self.db.execute(f"RELEASE {savepoint}")
            finally:
                self._depth -= 1
            return
        # IMMEDIATE: take the write lock now, so a second process waits here instead of failing
        # halfway through a step when its read lock cannot be upgraded.
        self.db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
            self.db.execute("COMMIT")
        except BaseException:
            # Also when COMMIT itself failed (a reader held the file too long): never leave the
            # connection inside a half-done transaction. SQLite may have rolled back already.
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise
        finally:
            self._depth = 0

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    # -- anchors -----------------------------------------------------------------------------

    def remember_anchors(self, kind: str, pairs: Iterable[tuple[str, str]]) -> None:
        """Record many (anchor, target id) pairs at once, as seen when reading the target. An
        object whose anchor was changed by hand keeps its id: the stale pairing is dropped."""
        now = _now()
        pairs = list(pairs)
        with self.transaction():
            self.db.executemany(
                "DELETE FROM anchors WHERE target_id = ? AND NOT (kind = ? AND anchor = ?)",
                [(target_id, kind, anchor) for anchor, target_id in pairs],
            )
            self.db.executemany(
                "INSERT INTO anchors (kind, anchor, target_id, first_seen) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (kind, anchor) DO UPDATE SET target_id = excluded.target_id",
                [(kind, anchor, target_id, now) for anchor, target_id in pairs],
            )

    def anchor_ids(self, kind: str) -> dict[str, str]:
        """Anchor → the target's id, of every object of *kind* ("account", "group") recorded."""
        return dict(
            self.db.execute("SELECT anchor, target_id FROM anchors WHERE kind = ?", (kind,))
        )

    def target_id(self, kind: str, anchor: str) -> str | None:
        row = self.db.execute(
            "SELECT target_id FROM anchors WHERE kind = ? AND anchor = ?", (kind, anchor)
        ).fetchone()
        return row[0] if row else None

    # -- names -------------------------------------------------------------------------------

    def issue_names(self, names: Iterable[tuple[str, str]], attribute: str = "username") -> None:
        """Record (anchor, name) pairs given as *attribute*; a name already recorded keeps its
        first holder."""
        self.issue_values((anchor, attribute, name) for anchor, name in names)

    def issue_values(
        self, values: Iterable[tuple[str, str, str]], *, current: bool = False
    ) -> None:
        """Record (anchor, attribute, value) triples: the username and every other name (mail,
        userPrincipalName) an account was given; a value already recorded keeps its first
        holder. *current*: the account holds these now (a name given back to its holder is
        dated anew, so that it is the one :meth:`issued_to` answers)."""
        now = _now()
        refresh = (
            " ON CONFLICT (name_folded) DO UPDATE SET issued = excluded.issued"
            " WHERE issued_names.anchor = excluded.anchor"
            if current
            else " ON CONFLICT DO NOTHING"
        )
        with self.transaction():
            self.db.executemany(
                "INSERT INTO issued_names (name_folded, name, anchor, issued, attribute) "
                "VALUES (?, ?, ?, ?, ?)" + refresh,
                [
                    (value.casefold(), value, anchor, now, attribute)
                    for anchor, attribute, value in values
                    if value
                ],
            )

    def move_anchor(self, old: str, new: str) -> None:
        """An account carried over from anchor *old* to *new* (``anchor_was`` of the mappings):
        its issued names, kind, school and id are kept under the new anchor. A leaver clock of
        the old anchor stops: the person is in the source."""
        with self.transaction():
            self.db.execute("UPDATE issued_names SET anchor = ? WHERE anchor = ?", (new, old))
            for statement in (
                "UPDATE OR IGNORE account_kinds SET anchor = ? WHERE anchor = ?",
                "UPDATE OR IGNORE anchors SET anchor = ? WHERE kind = 'account' AND anchor = ?",
            ):
                self.db.execute(statement, (new, old))
            # What could not move (the new anchor was already known) goes with the old anchor.
            self.db.execute("DELETE FROM account_kinds WHERE anchor = ?", (old,))
            self.db.execute("DELETE FROM anchors WHERE kind = 'account' AND anchor = ?", (old,))
            self.db.execute("DELETE FROM leavers WHERE anchor = ?", (old,))

    def forget_person(self, anchor: str) -> None:
        """The account of *anchor* was deleted after its grace: keep only what "names are never
        reused" needs. Its kind, school, leaver clock, hold clock and directory id go; its issued
        names stay (taken for good, and given back should the person return)."""
        with self.transaction():
            for statement in (
                "DELETE FROM account_kinds WHERE anchor = ?",
                "DELETE FROM leavers WHERE anchor = ?",
                "DELETE FROM anchors WHERE kind = 'account' AND anchor = ?",
                # Holds are kept by the source's person key; where the anchor is that key. Any
                # other hold of someone no longer in the source is released by the next run.
                "DELETE FROM held WHERE person = ?",
            ):
                self.db.execute(statement, (anchor,))

    def issued_names(self) -> set[str]:
        return {row[0] for row in self.db.execute("SELECT name FROM issued_names")}

    # -- the leaver lifecycle --------------------------------------------------------------

    def remember_kinds(self, accounts: Iterable[tuple[str, str, str]]) -> None:
        """(anchor, account kind, school) of the accounts the mappings want now."""
        with self.transaction():
            self.db.executemany(
                "INSERT INTO account_kinds (anchor, kind, school) VALUES (?, ?, ?) "
                "ON CONFLICT (anchor) DO UPDATE SET kind = excluded.kind, school = excluded.school",
                list(accounts),
            )

    def kinds(self) -> dict[str, str]:
        return dict(self.db.execute("SELECT anchor, kind FROM account_kinds").fetchall())

    def schools(self) -> dict[str, str]:
        """The school each account was last seen in (a leaver keeps the school it left)."""
        return dict(
            self.db.execute("SELECT anchor, school FROM account_kinds WHERE school IS NOT NULL")
        )

    def leavers(self) -> dict[str, dt.date]:
        """Since when each known leaver is gone from the source."""
        return {
            anchor: dt.date.fromisoformat(since)
            for anchor, since in self.db.execute("SELECT anchor, since FROM leavers")
        }

    def track_leavers(self, gone: Iterable[str], present: Iterable[str], day: dt.date) -> None:
        """Start the clock for people who just left, stop it for people who came back."""
        with self.transaction():
            self.db.executemany(
                "INSERT OR IGNORE INTO leavers (anchor, since) VALUES (?, ?)",
                [(anchor, day.isoformat()) for anchor in gone],
            )
            self.db.executemany("DELETE FROM leavers WHERE anchor = ?", [(a,) for a in present])

    def disabled_since(self) -> dict[str, dt.date]:
        """The day each leaver's account was disabled (or first seen disabled), where known."""
        return {
            anchor: dt.date.fromisoformat(day)
            for anchor, day in self.db.execute(
                "SELECT anchor, disabled FROM leavers WHERE disabled IS NOT NULL"
            )
        }

    def record_disabled(self, anchors: Iterable[str], day: dt.date, *, seen: bool = False) -> None:
        """The accounts of these leavers were disabled on *day* (their deletion grace starts).
        *seen*: they were found disabled already (by hand, or before this version): a day
        recorded before is kept."""
        with self.transaction():
            self.db.executemany(
                "INSERT INTO leavers (anchor, since, disabled) VALUES (?1, ?2, ?2) "
                "ON CONFLICT (anchor) DO UPDATE SET "
                "disabled = COALESCE(CASE WHEN ?3 THEN leavers.disabled END, excluded.disabled)",
                [(anchor, day.isoformat(), seen) for anchor in anchors],
            )

    def archived_groups(self) -> dict[str, dt.date]:
        """Group key → the day it was archived, of the groups recorded as archived."""
        return {
            key: dt.date.fromisoformat(day)
            for key, day in self.db.execute(
                "SELECT key, archived FROM group_lifecycle WHERE archived IS NOT NULL"
            )
        }

    def deleted_groups(self) -> dict[str, dt.date]:
        """Group key → the day the connector deleted it (until a group of that key is made)."""
        return {
            key: dt.date.fromisoformat(day)
            for key, day in self.db.execute(
                "SELECT key, deleted FROM group_lifecycle WHERE deleted IS NOT NULL"
            )
        }

    def record_archived(self, archived: Mapping[str, dt.date], *, seen: bool = False) -> None:
        """These groups were archived on the given days. *seen*: found archived already: a day
        recorded before is kept."""
        with self.transaction():
            self.db.executemany(
                "INSERT INTO group_lifecycle (key, archived) VALUES (?1, ?2) "
                "ON CONFLICT (key) DO UPDATE SET "
                "archived = COALESCE(CASE WHEN ?3 THEN group_lifecycle.archived END, "
                "excluded.archived)",
                [(key, day.isoformat(), seen) for key, day in archived.items()],
            )

    def record_restored(self, keys: Iterable[str]) -> None:
        """These groups are in use again (restored from the archive, or made anew)."""
        with self.transaction():
            self.db.executemany("DELETE FROM group_lifecycle WHERE key = ?", [(k,) for k in keys])

    def record_group_deleted(self, key: str, day: dt.date) -> None:
        with self.transaction():
            self.db.execute(
                "INSERT INTO group_lifecycle (key, deleted) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET archived = NULL, deleted = excluded.deleted",
                (key, day.isoformat()),
            )

    def held_since(self) -> dict[tuple[str, str], dt.date]:
        """(account kind, person key) → the first day of each current hold."""
        return {
            (kind, person): dt.date.fromisoformat(since)
            for kind, person, since in self.db.execute("SELECT kind, person, since FROM held")
        }

    def track_held(
        self,
        held: Iterable[tuple[str, str]],
        released: Iterable[tuple[str, str]],
        day: dt.date,
    ) -> None:
        """Start the hold clock of persons newly held, stop it for persons no longer held."""
        with self.transaction():
            self.db.executemany(
                "INSERT OR IGNORE INTO held (kind, person, since) VALUES (?, ?, ?)",
                [(kind, person, day.isoformat()) for kind, person in held],
            )
            self.db.executemany(
                "DELETE FROM held WHERE kind = ? AND person = ?",
                [(kind, person) for kind, person in released],
            )

    def issued_to(self) -> dict[str, str]:
        """The last username issued to each anchor (after a rename: the new one): a person who
        returns gets it back."""
        return dict(
            self.db.execute(
                "SELECT anchor, name FROM issued_names WHERE attribute = 'username' "
                "ORDER BY issued, rowid"
            )
        )

    def issued_by_anchor(self) -> dict[str, set[str]]:
        """Every name (casefolded) each anchor was ever given: its own, which it may get back."""
        own: dict[str, set[str]] = {}
        for anchor, folded in self.db.execute("SELECT anchor, name_folded FROM issued_names"):
            own.setdefault(anchor, set()).add(folded)
        return own

    # -- runs --------------------------------------------------------------------------------

    def start_run(self, command: str) -> int:
        with self.transaction():
            cursor = self.db.execute(
                "INSERT INTO runs (started, command) VALUES (?, ?)", (_now(), command)
            )
        return int(cursor.lastrowid or 0)

    def finish_run(self, run: int, outcome: str, summary: dict[str, Any]) -> None:
        with self.transaction():
            self.db.execute(
                "UPDATE runs SET finished = ?, outcome = ?, summary = ? WHERE id = ?",
                (_now(), outcome, json.dumps(summary, sort_keys=True), run),
            )

    def runs(self, limit: int = 20) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT id, started, finished, command, outcome, summary FROM runs "
            "ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        keys = ("id", "started", "finished", "command", "outcome", "summary")
        result = [dict(zip(keys, row, strict=True)) for row in rows]
        for run in result:
            run["summary"] = json.loads(run["summary"]) if run["summary"] else None
        return result

    def last_run_started(self) -> str | None:
        """When the newest run in the history started (ISO 8601, UTC), or None without runs."""
        row = self.db.execute("SELECT MAX(started) FROM runs").fetchone()
        return row[0] if row else None

    def last_successful_persons(self) -> tuple[str, dict[str, int]] | None:
        """(when, persons per school) of the last apply that ended well and recorded them."""
        for run in self.runs(limit=50):
            summary = run["summary"] or {}
            if run["outcome"] in _ENDED_WELL and summary.get("persons"):
                return run["started"], summary["persons"]
        return None

    # -- the last read of the directory ----------------------------------------------------------

    def last_read(self, target: str) -> dict[str, Any] | None:
        """The last read kept for *target* (:meth:`keep_read`), or None: ``scope``,
        ``watermark`` (decoded), ``full_read_at``, ``read_at``, ``objects`` as last written
        whole and ``changes`` since then (or None), both still compressed: only a read that
        will use them pays for decoding them."""
        row = self.db.execute(
            "SELECT scope, watermark, full_read_at, read_at, changes, objects FROM last_read "
            "JOIN last_read_objects USING (target) WHERE target = ?",
            (target,),
        ).fetchone()
        if row is None:
            return None
        scope, watermark, full_read_at, read_at, changes, objects = row
        return {
            "scope": scope,
            "watermark": json.loads(watermark),
            "full_read_at": dt.datetime.fromisoformat(full_read_at),
            "read_at": dt.datetime.fromisoformat(read_at),
            "objects": objects,
            "changes": changes,
        }

    def keep_read(
        self,
        target: str,
        *,
        scope: str,
        watermark: Mapping[str, Any],
        full_read_at: dt.datetime,
        objects: bytes | None = None,
        changes: bytes | None = None,
    ) -> None:
        """Keep the read of *target* just made, replacing the one before: *objects* whole (then
        *changes* are since them, usually None), or, with *objects* None, only the *changes*
        since the objects kept before, which stay as they are (there must be some)."""
        with self.transaction():
            if objects is not None:
                self.db.execute(
                    "INSERT OR REPLACE INTO last_read_objects (target, objects) VALUES (?, ?)",
                    (target, objects),
                )
            elif not self.db.execute(
                "SELECT 1 FROM last_read_objects WHERE target = ?", (target,)
            ).fetchone():
                raise StateError(f"no read of {target} is kept to keep its changes against")
            self.db.execute(
                "INSERT OR REPLACE INTO last_read "
                "(target, scope, watermark, full_read_at, read_at, changes) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (
                    target,
                    scope,
                    json.dumps(watermark, sort_keys=True),
                    full_read_at.isoformat(timespec="seconds"),
                    _now(),
                    changes,
                ),
            )

    def forget_reads(self) -> None:
        """Drop every kept read: the next read of each directory is a full one, and the next
        read of the source parses every answer."""
        with self.transaction():
            self.db.execute("DELETE FROM last_read")
            self.db.execute("DELETE FROM last_read_objects")
            self.db.execute("DELETE FROM kept_answers")

    # -- the source's answers as last parsed -----------------------------------------------------

    def kept_answers(self) -> dict[str, bytes]:
        """The answers the source kept on its last read (:meth:`keep_answers`), by key."""
        return dict(self.db.execute("SELECT key, answer FROM kept_answers"))

    def keep_answers(self, answers: Mapping[str, bytes]) -> None:
        """Keep *answers* in place of those kept before: an answer no longer read (a school
        left out of the configuration) is no longer kept."""
        with self.transaction():
            self.db.execute("DELETE FROM kept_answers")
            self.db.executemany(
                "INSERT INTO kept_answers (key, answer) VALUES (?, ?)", answers.items()
            )
