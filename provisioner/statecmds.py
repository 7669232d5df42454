"""``provisioner state backup|restore|rebuild``: the state store is precious.

The state store remembers what the directory cannot tell: every name ever given (so that no name
is given twice), the day each leaver left and each account was disabled (the deletion grace), and
the run history. This module keeps it safe:

- ``state backup`` copies it with SQLite's online backup (consistent even while a night reads or
  writes it) together with the plan key, as two private files: ``state-<time>.db`` and
  ``state-<time>.db.plan-key`` (the key file is named as :func:`~provisioner.plan.seal.key_path`
  names a store's key, so a backup is itself a store with its key beside it);
- ``state restore`` puts such a backup back, after checking it is a sound provisioner state store,
  and keeps the store it replaces aside (``state.db.replaced-<time>``);
- ``state rebuild`` recovers, when the store is lost and there is no backup, what the directory
  still shows: anchors and ids, the names the managed accounts hold, kinds and schools where the
  mappings make them readable, and disabled accounts with their deletion grace restarted today
  (never shortened).

See docs/state.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provisioner.config import Config, load_config
from provisioner.errors import ConfigError
from provisioner.files import (
    create_private,
    private_dir,
    refuse_link,
    stamp,
    stamped_time,
    write_private,
)
from provisioner.lock import run_lock
from provisioner.mapping.engine import CompiledAccount
from provisioner.model import ObservedState
from provisioner.pipeline import mapped_attributes, open_target, prepare_config
from provisioner.plan.seal import key_path
from provisioner.state import SCHEMA_VERSION, SIDE_FILES, StateError, StateStore

BACKUP_FOLDER = "backups"
"""Where ``state backup`` puts its files by default: this folder beside the state store."""
BACKUP_KEEP_DAYS = 30
"""Backups hold the usernames of minors: by default one month of them is kept."""
_REQUIRED_TABLES = frozenset({"anchors", "issued_names", "runs"})


def add_state_commands(commands: argparse._SubParsersAction[Any]) -> None:
    """Register ``provisioner state backup|restore|rebuild``."""
    state = commands.add_parser(
        "state",
        help="back up, restore or rebuild the state store",
        description="The state store remembers every name ever given, the leaver clocks and the "
        "run history: back it up every day, restore a backup, or rebuild what the directory "
        "still shows when it is lost without one (see docs/state.md).",
    )
    tasks = state.add_subparsers(dest="task", required=True, metavar="TASK")

    backup = tasks.add_parser(
        "backup",
        help="copy the state store and the plan key, consistently, to private files",
        description="Copy the state store with SQLite's online backup (safe while another run "
        "uses it) and the plan key beside it, both readable by this user only. By default into "
        "the folder backups/ beside the state store, named by the time (UTC). Prints where the "
        "files went: copy them to another machine.",
    )
    backup.add_argument("--config", required=True, type=Path, metavar="FILE")
    backup.add_argument(
        "--to",
        type=Path,
        metavar="FILE",
        help="the backup file to write (must not exist); its plan key goes to FILE.plan-key",
    )
    backup.add_argument(
        "--keep-days",
        type=int,
        default=BACKUP_KEEP_DAYS,
        metavar="N",
        help=f"remove this store's backups older than N days from the backup folder "
        f"(default {BACKUP_KEEP_DAYS}; 0 keeps every backup); only files named as this command "
        "names them are removed",
    )
    backup.set_defaults(handler=run_state_backup)

    restore = tasks.add_parser(
        "restore",
        help="put a backup of the state store (and its plan key) back",
        description="Check that FILE is a sound provisioner state store (integrity check, a "
        "schema this version knows), bring it up to date, and put it in place of the state "
        "store, which is kept aside as state.db.replaced-<time>. The plan key beside the backup "
        "(FILE.plan-key) is restored too. A store that holds runs newer than the backup's is "
        "not replaced unless --force: those nights would be forgotten.",
    )
    restore.add_argument("--config", required=True, type=Path, metavar="FILE")
    restore.add_argument("backup", type=Path, metavar="FILE")
    restore.add_argument(
        "--force",
        action="store_true",
        help="replace the state store even when it holds newer runs than the backup",
    )
    restore.set_defaults(handler=run_state_restore)

    rebuild = tasks.add_parser(
        "rebuild",
        help="recover a lost state store from what the directory shows (no backup)",
        description="Read the directory (nothing is written there) and make a new state store "
        "from what it shows: the anchors and ids of the managed accounts and groups, every name "
        "they hold, kinds and schools where the mappings make them readable, disabled accounts "
        "with their deletion grace restarted from today (never shortened) and archived groups. "
        "The run history, hold clocks, exact leaver days and the names of deleted accounts "
        "cannot be recovered. Refuses when a state store exists, unless --force (it is then "
        "kept aside as state.db.replaced-<time>).",
    )
    rebuild.add_argument("--config", required=True, type=Path, metavar="FILE")
    rebuild.add_argument(
        "--force", action="store_true", help="set an existing state store aside and rebuild"
    )
    rebuild.set_defaults(handler=run_state_rebuild)


# -- backup ---------------------------------------------------------------------------------------


def run_state_backup(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    state = _state_path(config)
    if not state.exists():
        raise StateError(f"there is no state store {state} to back up (state: in {config.path})")
    if args.keep_days < 0:
        raise ConfigError("--keep-days cannot be negative (0 keeps every backup)")
    destination = args.to if args.to is not None else default_backup_path(state)
    copied = backup_store(state, destination)
    print(f"backed up the state store {state} to {copied.store}")
    if copied.key is not None:
        print(f"and its plan key to {copied.key}")
    else:
        print(f"(no plan key {key_path(state)} yet: nothing was saved with plan --out)")
    if args.keep_days:
        for removed in prune_backups(copied.store.parent, state, args.keep_days):
            print(f"removed the backup {removed}, older than {args.keep_days} days")
    print("Copy both to another machine; they hold the usernames of minors: keep them private.")
    return 0


def prune_backups(
    folder: Path, state: Path, keep_days: int, now: dt.datetime | None = None
) -> list[Path]:
    """Remove from *folder* the backups of *state* (named as :func:`default_backup_path` names
    them) made more than *keep_days* days before *now*, with their plan keys; the time is read
    from the name, never from the file's date. Returns the removed backups."""
    now = now or dt.datetime.now(dt.UTC)
    stem, suffix = state.stem or "state", state.suffix or ".db"
    pattern = re.compile(
        re.escape(stem) + r"-(\d{4}-\d{2}-\d{2}T\d{6}Z)(?:-\d+)?" + re.escape(suffix)
    )
    removed = []
    for path in sorted(folder.iterdir()):
        match = pattern.fullmatch(path.name)
        if not match or path.is_symlink() or not path.is_file():
            continue
        made = stamped_time(match[1])
        if now - made > dt.timedelta(days=keep_days):
            path.unlink()
            key_path(path).unlink(missing_ok=True)
            removed.append(path)
    return removed


@dataclass(frozen=True)
class Backup:
    store: Path
    key: Path | None
    """The plan key's copy, or None when the store had no key yet."""


def default_backup_path(state: Path, when: dt.datetime | None = None) -> Path:
    """``<state folder>/backups/<state name>-<time>.db``, the time in UTC like the run folders
    (``-2``, ``-3`` … after it for another backup within the same second)."""
    stem, suffix, made = state.stem or "state", state.suffix or ".db", _stamp(when)
    folder = state.parent / BACKUP_FOLDER
    path = folder / f"{stem}-{made}{suffix}"
    number = 1
    while os.path.lexists(path):  # a second backup within the same second
        number += 1
        path = folder / f"{stem}-{made}-{number}{suffix}"
    return path


def backup_store(state: Path, destination: Path) -> Backup:
    """Copy the state store *state* to the new file *destination* with SQLite's online backup (a
    consistent copy while another connection reads or writes it; it waits out a writer's lock)
    and its plan key to ``key_path(destination)``; both mode 0600, never written through a link,
    never over an existing file. A default destination's folder is made private (0700)."""
    folder = destination.parent
    try:
        if folder.name == BACKUP_FOLDER and folder.parent == state.parent:
            private_dir(folder)
        elif not folder.is_dir():
            raise ConfigError(f"the folder {folder} for the backup does not exist")
    except OSError as exc:
        raise StateError(f"cannot make the backup folder {folder}: {exc.strerror}") from None
    os.close(_new_private(destination))
    try:
        # Read-write, not read-only: a run that crashed may have left a journal that SQLite
        # must roll back before anyone reads the file. The backup itself writes nothing there.
        _copy_database(sqlite3.connect(state, timeout=30), destination)
    except sqlite3.DatabaseError as exc:
        destination.unlink(missing_ok=True)
        raise StateError(f"the backup of {state} failed: {exc}") from None
    except BaseException:
        destination.unlink(missing_ok=True)
        raise
    key = key_path(state)
    if not key.exists():
        return Backup(destination, None)
    copy = key_path(destination)
    refuse_link(key)
    with os.fdopen(_new_private(copy), "wb") as handle:
        handle.write(key.read_bytes())
        handle.flush()
        os.fsync(handle.fileno())
    return Backup(destination, copy)


def _copy_database(source: sqlite3.Connection, destination: Path) -> None:
    """Copy the open database *source* into *destination* with SQLite's online backup (a
    consistent copy while others read and write), then close both."""
    try:
        target = sqlite3.connect(destination)
        try:
            source.backup(target)
        finally:
            target.close()
    finally:
        source.close()


def _new_private(path: Path) -> int:
    """Create *path* (mode 0600) and return its open descriptor for writing; refuse when
    anything of that name exists, a link included."""
    try:
        return create_private(path)
    except FileExistsError:
        raise StateError(f"{path} exists already; a backup never overwrites a file") from None
    except OSError as exc:
        raise StateError(f"cannot write {path}: {exc.strerror}") from None


# -- restore --------------------------------------------------------------------------------------


def run_state_restore(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    state = _state_path(config)
    with run_lock(config, f"provisioner state restore --config {args.config}"):
        restored = restore_store(args.backup, state, force=args.force)
    print(f"restored the state store {state} from {args.backup}")
    if restored.replaced is not None:
        print(f"the store it replaced is kept as {restored.replaced}")
    if restored.key:
        print(f"restored the plan key {key_path(state)}")
    else:
        print(
            f"the backup has no plan key beside it ({key_path(args.backup)}): plans saved with "
            "plan --out before now may be refused; make a new plan"
        )
    return 0


@dataclass(frozen=True)
class Restored:
    replaced: Path | None
    """Where the store that was replaced is kept, or None when there was none."""
    key: bool
    """The plan key was restored too."""


def restore_store(backup: Path, state: Path, *, force: bool = False) -> Restored:
    """Put the backup *backup* in place of *state* (see ``state restore``). The caller holds the
    run lock."""
    check_backup(backup)
    if state.exists() and not force:
        newer = _newer_runs(state, backup)
        if newer:
            raise StateError(
                f"the state store {state} holds {newer} run(s) newer than the backup {backup}: "
                "restoring it would forget them (and the names those nights gave). Choose a "
                "newer backup, or give --force if the store is known to be wrong"
            )
    moment = _stamp()
    incoming = state.with_name(f"{state.name}.restoring-{moment}")
    os.close(_new_private(incoming))
    try:
        _copy_database(sqlite3.connect(_read_only_uri(backup), uri=True), incoming)
        StateStore(incoming).close()  # brought up to this version's schema, 0600
    except BaseException:
        _remove_with_side_files(incoming)
        raise
    replaced = _set_aside(state, moment)
    os.replace(incoming, state)
    key = key_path(backup)
    if key.exists():
        refuse_link(key)
        current = key_path(state)
        secret = key.read_bytes()
        if current.exists() and current.read_bytes() != secret:
            os.replace(current, current.with_name(f"{current.name}.replaced-{moment}"))
        write_private(current, secret)
    return Restored(replaced, key.exists())


def check_backup(path: Path) -> None:
    """Refuse anything but a sound provisioner state store this version can read."""
    if not path.is_file():
        raise StateError(f"there is no backup file {path}")
    problem = None
    try:
        db = sqlite3.connect(_read_only_uri(path), uri=True)
        try:
            integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        finally:
            db.close()
    except sqlite3.DatabaseError as exc:
        damaged = "malformed" in str(exc)
        problem = f"it is {'damaged' if damaged else 'not an SQLite database'} ({exc})"
    else:
        if integrity != "ok":
            problem = f"it is damaged (integrity check: {integrity})"
        elif version < 1 or not tables >= _REQUIRED_TABLES:
            problem = "it is an SQLite database but no provisioner state store"
        elif version > SCHEMA_VERSION:
            problem = (
                f"it has schema version {version}, newer than this provisioner knows "
                f"({SCHEMA_VERSION}): restore it with the provisioner version that made it"
            )
    if problem:
        raise StateError(f"refusing to restore {path}: {problem}; nothing was changed")


def _newer_runs(state: Path, backup: Path) -> int:
    """How many runs the current store has that the backup lacks and that started no earlier
    than the backup's newest run (times are to the second: a night can start in the second a
    backup was made). A store that cannot be read has nothing to lose: 0."""
    query = "SELECT id, started, command FROM runs"
    try:
        backup_db = sqlite3.connect(_read_only_uri(backup), uri=True)
        try:
            known = set(backup_db.execute(query).fetchall())
        finally:
            backup_db.close()
        current = sqlite3.connect(_read_only_uri(state), uri=True)
        try:
            runs = current.execute(query).fetchall()
        finally:
            current.close()
    except sqlite3.DatabaseError:
        return 0
    last = max((started for _, started, _ in known), default="")
    return sum(1 for run in runs if run not in known and run[1] >= last)


# -- rebuild --------------------------------------------------------------------------------------


def run_state_rebuild(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    state = _state_path(config)
    if config.target is None:
        raise ConfigError(f"{config.path}: state rebuild reads the directory: configure a target")
    seams: Mapping[str, Any] = getattr(args, "seams", {})
    source_seams: Mapping[str, Any] = getattr(args, "source_seams", {})
    today = source_seams.get("today") or dt.date.today()
    with run_lock(config, f"provisioner state rebuild --config {args.config}"):
        if state.exists() and not args.force:
            raise StateError(
                f"the state store {state} exists: rebuild only replaces a lost one. Restore a "
                "backup with provisioner state restore, or give --force to set this store aside "
                "and rebuild it from the directory"
            )
        prepared = prepare_config(config, **source_seams)
        target = open_target(prepared, **seams)
        assert target is not None  # a target is configured
        try:
            account_attributes, _ = mapped_attributes(prepared)
            observed = target.read(account_attributes | target.name_attributes)
            name_attributes = target.name_attributes
            description = target.describe()
        finally:
            target.close()
        recovered = recover(
            observed,
            list(prepared.compiled.accounts.values()),
            name_attributes=name_attributes,
            today=today,
        )
        replaced = write_rebuilt(state, recovered, description)
    print(recovered.describe(state, description))
    if replaced is not None:
        print(f"the store it replaced is kept as {replaced}")
    print(f"Next: provisioner plan --config {args.config} should show nothing to do (exit 0).")
    return 0


@dataclass
class Recovered:
    """What a rebuilt state store gets from the directory."""

    account_ids: dict[str, str] = field(default_factory=dict)
    group_ids: dict[str, str] = field(default_factory=dict)
    names: list[tuple[str, str, str]] = field(default_factory=list)
    """(anchor, attribute, value): the username and the target's name attributes of each
    managed account, enabled or disabled."""
    kinds: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    """Anchor → (account kind, school or None), where the mappings make them readable."""
    disabled: list[str] = field(default_factory=list)
    """Anchors of disabled accounts: their deletion grace restarts today."""
    archived: dict[str, dt.date] = field(default_factory=dict)
    today: dt.date = field(default_factory=dt.date.today)
    unknown_kind: int = 0
    """Disabled accounts whose kind cannot be read: never deleted automatically."""

    def describe(self, state: Path, description: str) -> str:
        lines = [
            f"rebuilt the state store {state} from {description}:",
            f"  {len(self.account_ids)} account(s) and {len(self.group_ids)} group(s) with "
            "their anchors and ids",
            f"  {len(self.names)} name(s) in use, recorded as issued",
            f"  {len(self.kinds)} account kind(s) read from the anchors and OUs",
            f"  {len(self.disabled)} disabled account(s): their deletion grace counts from "
            f"{self.today} (restarted, never shortened)",
            f"  {len(self.archived)} archived group(s)",
        ]
        if self.unknown_kind:
            lines.append(
                f"  {self.unknown_kind} disabled account(s) of unknown kind: never deleted "
                "automatically; delete them by hand when their time has come"
            )
        lines.append(
            "Not recoverable: the run history, hold clocks, the exact days leavers left, and "
            "the names of accounts deleted before (they could be given again)."
        )
        return "\n".join(lines)


def recover(
    observed: ObservedState,
    accounts: Iterable[CompiledAccount],
    *,
    name_attributes: Iterable[str],
    today: dt.date,
) -> Recovered:
    """What the directory's managed objects (*observed*) tell a state store, read with the
    mappings' account kinds (*accounts*)."""
    naming = {name.casefold() for name in name_attributes}
    readers = KindReader(list(accounts))
    found = Recovered(today=today)
    for account in observed.accounts:
        anchor = account.anchor
        if not anchor:
            continue  # not the connector's (yet): the plan adopts or leaves it
        found.account_ids[anchor] = account.id
        if account.username:
            found.names.append((anchor, "username", account.username))
        found.names += [
            (anchor, attribute, value)
            for attribute, value in sorted(account.attributes.items())
            if attribute.casefold() in naming and value
        ]
        kind = readers.kind(anchor, account.ou)
        if kind is not None:
            found.kinds[anchor] = (kind, readers.school(kind, account.ou))
        if not account.enabled:
            found.disabled.append(anchor)
            found.unknown_kind += kind is None
    for group in observed.groups:
        if not group.key:
            continue
        found.group_ids[group.key] = group.id
        if group.archived is not None:
            # The day the directory shows (Entra's mark) was written when it was archived: the
            # grace is not shortened by it; none shown (AD's archive OU): from today.
            found.archived[group.key] = _day(group.archived) or today
    return found


class KindReader:
    """The account kind (and school) of an account, from what the mappings put in its anchor
    and OU: the kind whose anchor starts with its literal prefix (``lln-{{ key }}``), or else
    whose OU starts with its literal first OU name (``[Leerlingen, …]``); the school from the OU
    level the mappings fill with ``{{ instelnr }}``. None when that does not tell one kind."""

    def __init__(self, accounts: list[CompiledAccount]) -> None:
        self.only = accounts[0].name if len(accounts) == 1 else None
        self.prefixes = {
            a.name: prefix.casefold()
            for a in accounts
            if a.spec.anchor is not None and (prefix := _literal_prefix(a.spec.anchor.text))
        }
        self.heads = {
            a.name: a.spec.ou[0].text.strip().casefold()
            for a in accounts
            if a.spec.ou and not _has_template(a.spec.ou[0].text)
        }
        self.school_level = {
            a.name: level
            for a in accounts
            for level, part in enumerate(a.spec.ou)
            if "".join(part.text.split()) == "{{instelnr}}"
        }

    def kind(self, anchor: str, ou: tuple[str, ...]) -> str | None:
        if self.only is not None:
            return self.only
        by_anchor = [k for k, p in self.prefixes.items() if anchor.casefold().startswith(p)]
        if len(by_anchor) == 1:
            return by_anchor[0]
        head = ou[0].casefold() if ou else None
        by_ou = [k for k, h in self.heads.items() if h == head]
        return by_ou[0] if len(by_ou) == 1 else None

    def school(self, kind: str, ou: tuple[str, ...]) -> str | None:
        level = self.school_level.get(kind)
        head = self.heads.get(kind)
        # Only in the kind's own place: a disabled account in the disabled-accounts OU says none.
        if level is None or level >= len(ou) or (head is not None and ou[0].casefold() != head):
            return None
        return ou[level]


def write_rebuilt(state: Path, found: Recovered, description: str) -> Path | None:
    """Make the rebuilt store beside *state* and put it in place (an existing store is kept
    aside); the rebuild is a run in its history. Returns where the replaced store went."""
    moment = _stamp()
    incoming = state.with_name(f"{state.name}.rebuilding-{moment}")
    os.close(_new_private(incoming))
    try:
        with StateStore(incoming) as store:
            run = store.start_run("state rebuild")
            with store.transaction():
                store.remember_anchors("account", found.account_ids.items())
                store.remember_anchors("group", found.group_ids.items())
                store.issue_values(found.names, current=True)
                store.remember_kinds(
                    (anchor, kind, school) for anchor, (kind, school) in found.kinds.items()
                )
                store.record_disabled(found.disabled, found.today, seen=True)
                store.record_archived(found.archived, seen=True)
            store.finish_run(
                run,
                "ok",
                {
                    "rebuilt_from": description,
                    "accounts": len(found.account_ids),
                    "groups": len(found.group_ids),
                    "names": len(found.names),
                    "kinds": len(found.kinds),
                    "disabled": len(found.disabled),
                    "archived": len(found.archived),
                },
            )
    except BaseException:
        _remove_with_side_files(incoming)
        raise
    replaced = _set_aside(state, moment)
    os.replace(incoming, state)
    return replaced


# -- helpers --------------------------------------------------------------------------------------


def _state_path(config: Config) -> Path:
    if config.state is None:
        raise ConfigError(f"{config.path}: no state store configured (state: state.db)")
    return config.state


def _stamp(when: dt.datetime | None = None) -> str:
    """A time for file names, in UTC, like the run folders: 2026-12-01T023000Z."""
    return stamp(when or dt.datetime.now(dt.UTC))


def _read_only_uri(path: Path) -> str:
    return path.resolve().as_uri() + "?mode=ro"


def _set_aside(state: Path, moment: str) -> Path | None:
    """Move *state* and its SQLite side files to ``<name>.replaced-<moment>``: a journal left
    behind would otherwise be played into the store that takes its place (also the journal of a
    store that is itself lost). Returns where the store went; None when there was none."""
    aside = state.with_name(f"{state.name}.replaced-{moment}")
    existed = state.exists()
    for suffix in ("", *SIDE_FILES):
        side = state.with_name(state.name + suffix)
        if os.path.lexists(side):
            os.replace(side, aside.with_name(aside.name + suffix))
    return aside if existed else None


def _remove_with_side_files(path: Path) -> None:
    for suffix in ("", *SIDE_FILES):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def _literal_prefix(template: str) -> str:
    """The text before a template's first ``{{`` or ``{%``."""
    cut = min((i for i in (template.find("{{"), template.find("{%")) if i >= 0), default=-1)
    return template[:cut] if cut >= 0 else ""


def _has_template(text: str) -> bool:
    return "{{" in text or "{%" in text


def _day(text: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text) if text else None
    except ValueError:
        return None
