"""One run at a time: an operating-system lock around every command that writes.

``apply``, ``password reset`` and ``plan`` with a target read the state store and the directory
and (but for ``plan``) write them. Two such runs at once made twin groups and password sheets
with passwords that were never set, so each holds exclusive locks for its whole run:

- one on the state store: the file ``<state>.lock`` beside it (``state.db.lock``);
- one per part of the directory it manages, in a per-user private directory (see
  :func:`lock_directory`), named by the SHA-256 of a normalised key that is derived from the
  configuration alone, without connecting (see :func:`target_locks`). Two configurations with
  different state stores that write one directory therefore collide too.

The locks are the operating system's (``flock`` on Linux and macOS, ``msvcrt.locking`` on
Windows): they belong to the open file, so the OS drops them when the process ends, however it
ends — a killed run never leaves a stale lock behind and nothing ever guesses whether a pid is
still alive. The lock files are kept, not deleted (deleting one would let a third run lock a new
file of the same name while the second still waits on the old one); the pid, command and start
time of the holder are written into them after the lock is taken, for the message of a run that
finds it taken. ``plan`` creates these lock files and writes nothing else.

A run that finds a lock taken waits up to ``lock.wait`` seconds (default 0) and then stops with
exit code 1, naming the run that holds it. Locks are taken in one fixed order (sorted by path),
so two runs never wait for each other in a circle.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import re
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

from provisioner import log
from provisioner.errors import ConfigError, ProvisionerError
from provisioner.files import open_private, private_dir

if TYPE_CHECKING:
    from provisioner.config import Config, TargetConfig

POLL_SECONDS = 0.2
"""How often a waiting run tries the lock again."""
ANNOUNCE_AFTER = 1.0
"""Seconds a waiting run waits for the holder's details before it says whom it waits for."""
WINDOWS_LOCK_OFFSET = 1 << 20
"""Windows locks byte ranges and refuses to read a locked one: the lock is taken on one byte far
beyond the holder's details so that a waiting run can still read them."""
HOLDER_BYTES = 4096


class LockBusy(ProvisionerError):
    """Another run holds a lock this run needs (exit code 1)."""


@dataclass(frozen=True)
class LockFile:
    path: Path
    what: str
    """What the lock protects, for the coordinator: "the state store /srv/state.db"."""


class Locker(Protocol):
    """The platform's non-blocking exclusive lock on an open file."""

    def try_lock(self, fd: int) -> bool:
        """Take the lock; False when another open file holds it."""
        ...

    def unlock(self, fd: int) -> None: ...


class FlockLocker:
    """``flock(LOCK_EX | LOCK_NB)``: whole-file, advisory, tied to the open file description."""

    def __init__(self) -> None:
        import fcntl

        self._fcntl = fcntl

    def try_lock(self, fd: int) -> bool:
        try:
            self._fcntl.flock(fd, self._fcntl.LOCK_EX | self._fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def unlock(self, fd: int) -> None:
        self._fcntl.flock(fd, self._fcntl.LOCK_UN)


class MsvcrtLocker:
    """``msvcrt.locking(LK_NBLCK)`` on one byte at :data:`WINDOWS_LOCK_OFFSET` (a region past the
    end of a file may be locked). Windows releases it when the process ends."""

    def __init__(self, msvcrt: ModuleType | Any | None = None) -> None:
        if msvcrt is None:
            import msvcrt  # type: ignore[no-redef]  # Windows only
        self._msvcrt = msvcrt

    def try_lock(self, fd: int) -> bool:
        os.lseek(fd, WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        try:
            self._msvcrt.locking(fd, self._msvcrt.LK_NBLCK, 1)
        except OSError:  # EACCES / EDEADLOCK: another open file has the byte locked
            return False
        return True

    def unlock(self, fd: int) -> None:
        os.lseek(fd, WINDOWS_LOCK_OFFSET, os.SEEK_SET)
        self._msvcrt.locking(fd, self._msvcrt.LK_UNLCK, 1)


def platform_locker() -> Locker:
    return MsvcrtLocker() if os.name == "nt" else FlockLocker()


# -- what is locked -------------------------------------------------------------------------------


def normalise_dn(dn: str) -> str:
    """``OU=Leerlingen, DC=School,DC=be`` and ``ou=leerlingen,dc=school,dc=be`` name one entry."""
    parts = re.split(r"(?<!\\),", dn)
    return ",".join("=".join(side.strip() for side in part.split("=", 1)).lower() for part in parts)


def target_locks(target: TargetConfig) -> list[tuple[str, str]]:
    """``(normalised key, description)`` for each part of the directory the target config
    manages; derived from the configuration alone, without connecting.

    Active Directory: the managed root's DN (not the URL: another DC, ``ldaps://`` or start TLS,
    another port all reach the same domain). Entra ID: each managed domain (a domain belongs to
    one tenant, however the tenant is spelled) and the tenant's group prefix; both with the Graph
    endpoint, which tells national clouds (and test servers) apart."""
    if target.ad is not None:
        root = normalise_dn(target.ad.root_dn)
        return [(f"ad\n{root}", f"Active Directory below {target.ad.root_dn}")]
    if target.entra is not None:
        entra = target.entra
        graph = entra.graph_root.lower()
        keys = [
            (f"entra\n{graph}\ndomain\n{domain.lower()}", f"Entra ID accounts @{domain}")
            for domain in entra.domains
        ]
        keys.append(
            (
                f"entra\n{graph}\ntenant\n{entra.tenant_id.lower()}\ngroups\n"
                f"{entra.group_prefix.lower()}",
                f"Entra ID groups {entra.group_prefix}… of tenant {entra.tenant_id}",
            )
        )
        return keys
    return []


def lock_directory(configured: Path | None = None) -> Path:
    """Where target locks live: ``lock.directory`` from the configuration, else a per-user
    directory that does not depend on the session (a scheduled run and a coordinator's shell
    must find the same one): ``%LOCALAPPDATA%\\provisioner\\locks`` on Windows,
    ``~/.cache/provisioner/locks`` elsewhere."""
    if configured is not None:
        return configured
    if os.name == "nt" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "provisioner" / "locks"
    return Path.home() / ".cache" / "provisioner" / "locks"


def lock_files(config: Config) -> list[LockFile]:
    """Every lock a writing run of *config* holds, in the order they are taken."""
    if config.target is None or config.state is None:
        return []
    state = config.state
    files = [LockFile(state.with_name(state.name + ".lock"), f"the state store {state}")]
    directory = lock_directory(config.lock.directory)
    for key, what in target_locks(config.target):
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
        files.append(LockFile(directory / f"{digest}.lock", what))
    return sorted({f.path: f for f in files}.values(), key=lambda f: str(f.path))


# -- taking them ----------------------------------------------------------------------------------


def holder_details(command: str, *, started: dt.datetime | None = None) -> bytes:
    details = {
        "pid": os.getpid(),
        "command": command,
        "started": (started or dt.datetime.now().astimezone()).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
    }
    return (json.dumps(details) + "\n").encode("utf-8")


def describe_holder(raw: bytes) -> str:
    """The holder as a message names it (pid 1234, `provisioner apply`, started at …)."""
    try:
        details = json.loads(raw.decode("utf-8"))
        started = dt.datetime.fromisoformat(details["started"])
        parts = [f"pid {int(details['pid'])}", f"`{details['command']}`"]
        if details.get("host") and details["host"] != socket.gethostname():
            parts.append(f"on {details['host']}")
        parts.append(f"started at {started:%Y-%m-%d %H:%M:%S}")
        return ", ".join(parts)
    except (ValueError, KeyError, TypeError, AttributeError):
        # The holder has the lock but has not written its details yet (a split second).
        return "its details are not written yet"


class RunLock:
    """Exclusive locks on *files*, taken in order; waits up to *wait* seconds for them in all,
    trying again every :data:`POLL_SECONDS`. *clock*, *sleep* and *locker* are seams for tests."""

    def __init__(
        self,
        files: Sequence[LockFile],
        *,
        command: str,
        wait: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
        locker: Locker | None = None,
    ) -> None:
        self.files = list(files)
        self.command = command
        self.wait = wait
        self.clock = clock
        self.sleep = sleep
        self.locker = locker or platform_locker()
        self._held: list[int] = []

    def acquire(self) -> None:
        deadline = self.clock() + self.wait
        try:
            for lock in self.files:
                self._take(lock, deadline)
        except BaseException:
            self.release()
            raise

    def _take(self, lock: LockFile, deadline: float) -> None:
        fd = _open_lock_file(lock.path)
        announced = False
        busy_since = self.clock()
        try:
            while not self._try(lock, fd):
                details = _read_start(fd)
                holder = describe_holder(details)
                # The holder writes its details just after taking the lock: in that split second
                # a run gives them a moment, so that its message can say whom it met.
                known = bool(details) or self.clock() - busy_since >= ANNOUNCE_AFTER
                if self.clock() >= deadline and known:
                    waited = f" (waited {self.wait:g} s)" if self.wait else ""
                    raise LockBusy(
                        f"another run ({holder}) holds the lock on {lock.what}{waited}; it is "
                        "still running — wait for it or stop it"
                    )
                if known and not announced:  # someone at a terminal should know why it waits
                    log.event(
                        f"another run ({holder}) holds the lock on {lock.what}; waiting up to "
                        f"{self.wait:g} s for it to finish",
                        logging.WARNING,
                        lock=str(lock.path),
                    )
                    announced = True
                self.sleep(min(POLL_SECONDS, max(deadline - self.clock(), POLL_SECONDS / 4)))
        except BaseException:
            os.close(fd)
            raise
        self._held.append(fd)
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, holder_details(self.command))

    def _try(self, lock: LockFile, fd: int) -> bool:
        try:
            return self.locker.try_lock(fd)
        except OSError as exc:  # not "taken" but "impossible": ENOLCK on some network shares
            raise ConfigError(
                f"cannot lock {lock.path}: {exc.strerror or exc}; the folder's file system may "
                "not support locks: keep the state store and lock: directory: on a local disk"
            ) from None

    def release(self) -> None:
        while self._held:
            fd = self._held.pop()
            try:
                os.ftruncate(fd, 0)  # a finished run leaves no details behind
                self.locker.unlock(fd)
            finally:
                os.close(fd)  # closing drops the lock in any case

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _open_lock_file(path: Path) -> int:
    try:
        return open_private(path, os.O_RDWR)  # binary on Windows too (files.BINARY)
    except OSError as exc:
        raise ConfigError(
            f"cannot open the lock file {path}: {exc.strerror or exc}; check that this user may "
            "write in that folder"
        ) from None


def _read_start(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, HOLDER_BYTES)


@contextmanager
def run_lock(
    config: Config,
    command: str,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], object] = time.sleep,
    locker: Locker | None = None,
) -> Iterator[RunLock | None]:
    """Hold every lock a writing run of *config* needs (none without a target) for the block."""
    files = lock_files(config)
    if not files:
        yield None
        return
    directory = lock_directory(config.lock.directory)
    if any(lock.path.parent == directory for lock in files):
        try:
            private_dir(directory)  # 0700, ours: nobody else can hold or swap our lock files
        except OSError as exc:
            raise ConfigError(
                f"cannot make the lock folder {directory}: {exc.strerror or exc}; set "
                "lock: directory: to a folder this user owns"
            ) from None
    with RunLock(
        files, command=command, wait=config.lock.wait, clock=clock, sleep=sleep, locker=locker
    ) as held:
        yield held
