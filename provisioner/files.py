"""Files the connector writes: private, never through a planted link, never half-written.

Plans, reports, hand-out sheets, the state store, snapshots and run folders hold names of pupils
(sheets: passwords). Each is created readable by its owner only (0600; directories 0700), also
when a file of that name was there before with a wider mode, and never by following a symbolic
link someone planted in its place: a file is written to a temporary name beside it (opened with
``O_EXCL | O_NOFOLLOW``) and renamed over the old one, which replaces a link instead of writing
through it.

Windows has neither modes nor ``O_NOFOLLOW``: there a file inherits the folder's access list
(keep the folder private to the service account, see docs/security.md), a link in place of the
file is refused by an explicit check, and the rename still replaces it atomically.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, TextIO

from provisioner.errors import ConfigError

WINDOWS = os.name == "nt"
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
"""0 where the platform has no such flag (Windows): :func:`refuse_link` stands in for it."""
BINARY = getattr(os, "O_BINARY", 0)
"""Windows opens a descriptor from ``os.open`` in text mode unless told otherwise: its C library
would then write every line feed as CR LF (a snapshot's bytes, and so its checksum, would change)
and stop reading at a Ctrl-Z. 0 elsewhere, where there is no such mode."""


STAMP = "%Y-%m-%dT%H%M%SZ"
"""How a file or folder is named by the time it was made, in UTC (``2026-12-01T023000Z``): run
folders, snapshots, state backups. Expiry reads the time back from the name, never from the
file's own date."""


def stamp(when: dt.datetime) -> str:
    """*when* as :data:`STAMP` names it."""
    return when.astimezone(dt.UTC).strftime(STAMP)


def stamped_time(text: str) -> dt.datetime:
    """The time a :data:`STAMP` in a name stands for."""
    return dt.datetime.strptime(text, STAMP).replace(tzinfo=dt.UTC)


def refuse_link(path: Path) -> None:
    """A symbolic link where a file is to be written is an attack or a mistake: refuse it."""
    if path.is_symlink():
        raise ConfigError(f"{path} is a symbolic link; refusing to write through it")


def write_private(path: Path, data: str | bytes) -> Path:
    """Write *data* to *path* (mode 0600) via a temporary file and an atomic rename; an existing
    file or link of that name is replaced, never written through. A file that cannot be written
    is a :class:`ConfigError` that says why, with nothing left behind."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    return write_private_with(path, lambda handle: handle.write(payload))


def write_private_text(path: Path, write: Callable[[TextIO], object]) -> Path:
    """:func:`write_private` of the UTF-8 text *write* writes to the handle it is given, a piece
    at a time: for a file too large to build as one string first (a plan). Line feeds are
    written as they are, on Windows too."""

    def text(handle: BinaryIO) -> None:
        wrapper = io.TextIOWrapper(handle, encoding="utf-8", newline="", write_through=False)
        write(wrapper)
        wrapper.flush()
        wrapper.detach()  # the binary handle stays open: write_private_with syncs and closes it

    return write_private_with(path, text)


def write_private_with(path: Path, write: Callable[[BinaryIO], object]) -> Path:
    """:func:`write_private` of the bytes *write* writes to the binary handle it is given."""
    refuse_link(path)
    try:
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise ConfigError(_cannot_write(path, exc)) from None
    try:
        with os.fdopen(fd, "wb") as handle:  # mkstemp: O_EXCL, mode 0600, never a link
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        Path(temporary).unlink(missing_ok=True)
        raise ConfigError(_cannot_write(path, exc)) from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _cannot_write(path: Path, exc: OSError) -> str:
    """One line for the coordinator instead of a traceback: a folder that does not exist, one
    this user may not write in, a full disk, or (Windows) a file another program holds open."""
    return (
        f"cannot write {path}: {exc.strerror or exc}; check that the folder {path.parent} "
        "exists, that this user may write in it, that the disk is not full, and that no other "
        "program holds the file open"
    )


def create_private(path: Path) -> int:
    """Open a new file *path* for writing (mode 0600); fails when anything of that name exists,
    a link included. The caller owns the descriptor."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | NOFOLLOW | BINARY, 0o600)


def open_private(path: Path, flags: int = os.O_RDWR) -> int:
    """Open or create *path* (mode 0600, never through a link) and tighten its mode if an older
    file was wider: for files that must be kept, not replaced (the state store, a lock file)."""
    refuse_link(path)
    fd = os.open(path, flags | os.O_CREAT | NOFOLLOW | BINARY, 0o600)
    if not WINDOWS:
        os.fchmod(fd, 0o600)
    return fd


def private_dir(path: Path) -> Path:
    """Make *path* (and its parents) if missing, mode 0700, and refuse it when others could
    plant or swap files in it (see :func:`check_private_dir`)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    check_private_dir(path)
    return path


def check_private_dir(path: Path, *, windows: bool = WINDOWS) -> None:
    """Refuse a directory that is a link, not owned by this user, or writable by group or
    world. On Windows only the link is checked (ownership and modes are access lists there)."""
    if path.is_symlink():
        raise ConfigError(f"{path} is a symbolic link; give the real directory")
    if windows:
        return
    problems = access_problems(path.stat(), stat.S_IWGRP | stat.S_IWOTH, "writable by others")
    if problems:
        fix = f"; fix it with: chown $USER {path} && chmod 700 {path}"
        raise ConfigError(f"{path} is " + " and ".join(problems) + fix)


def access_problems(info: os.stat_result, others: int, described: str) -> list[str]:
    """Why a file or folder (its *info*) is not private to this user: another owner, or any of
    the mode bits *others* (group and world rights), *described* for the message."""
    problems = []
    # os.geteuid does not exist on Windows, where access lists take the place of owner and mode
    # (the callers skip this check there); without it, the owner is not compared.
    geteuid = getattr(os, "geteuid", None)
    if geteuid is not None and info.st_uid != geteuid():
        problems.append(f"owned by user id {info.st_uid}, not by this user ({geteuid()})")
    if info.st_mode & others:
        problems.append(f"{described} (mode {stat.S_IMODE(info.st_mode):04o})")
    return problems
