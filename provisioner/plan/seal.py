"""The seal of a saved plan: an HMAC-SHA256 over the whole file, with a key kept beside the state
store, so that a plan edited after ``plan --out`` (a change added, a policy block removed, its
time moved) is refused by ``apply``.

The key is made on first use (``plan --out`` with a state store) as ``<state store>.plan-key``,
readable by its owner only. Whoever can read the key can seal a plan: that is the account the
connector runs as, and nobody else may read it. Deleting the key file invalidates every saved plan
(the next ``plan --out`` makes a new key): that is how the key is rotated.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provisioner.errors import ConfigError
from provisioner.files import (
    BINARY,
    NOFOLLOW,
    WINDOWS,
    access_problems,
    create_private,
    refuse_link,
)
from provisioner.plan.jsontext import canonical_pieces

ALGORITHM = "HMAC-SHA256"
KEY_SUFFIX = ".plan-key"
_KEY_BYTES = 32
_DOMAIN = b"provisioner plan seal 1\0"
"""Prefixed to what is MACed: the key signs plans and nothing else."""


@dataclass(frozen=True)
class PlanKey:
    path: Path
    secret: bytes = b""

    @property
    def id(self) -> str:
        """A short name of the key that says nothing about it: which key sealed a plan."""
        return hashlib.sha256(b"provisioner plan key id\0" + self.secret).hexdigest()[:16]

    def __repr__(self) -> str:  # never the secret, not even in a traceback
        return f"PlanKey({str(self.path)!r}, id={self.id})"


def key_path(state: Path) -> Path:
    """Where the plan key of a state store lives: beside it, named after it."""
    return state.with_name(state.name + KEY_SUFFIX)


def load_key(path: Path, *, create: bool) -> PlanKey:
    """The plan key at *path*; made (exclusively, mode 0600) when missing and *create* is set.
    A key that is a link, belongs to another user or is readable by others is refused."""
    if create:
        try:
            fd = create_private(path)
        except FileExistsError:
            pass  # made by an earlier (or a parallel) run: use that one
        except OSError as exc:
            raise ConfigError(f"cannot create the plan key {path}: {exc.strerror}") from None
        else:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(secrets.token_hex(_KEY_BYTES) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
    refuse_link(path)
    try:
        fd = os.open(path, os.O_RDONLY | NOFOLLOW | BINARY)
    except FileNotFoundError:
        raise ConfigError(
            f"there is no plan key {path}: saved plans are sealed with it, so this plan was made "
            "with a key that has since been deleted (which invalidates every saved plan) or on "
            "another installation; make a new plan with plan --out"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read the plan key {path}: {exc.strerror}") from None
    with os.fdopen(fd, "r", encoding="ascii", errors="replace") as handle:
        _check_private(path, os.fstat(handle.fileno()))
        text = handle.read().strip()
    try:
        secret = bytes.fromhex(text)
    except ValueError:
        secret = b""
    if len(secret) < _KEY_BYTES:
        raise ConfigError(
            f"the plan key {path} is damaged; delete it (every saved plan becomes invalid) and "
            "make a new plan with plan --out"
        )
    return PlanKey(path, secret)


def _check_private(path: Path, info: os.stat_result, *, windows: bool = WINDOWS) -> None:
    """Anyone who can read the key can seal a plan: only its owner may. (On Windows the folder's
    access list decides; see docs/security.md.)"""
    if windows:
        return
    problems = access_problems(info, stat.S_IRWXG | stat.S_IRWXO, "readable or writable by others")
    if problems:
        raise ConfigError(
            f"the plan key {path} is " + " and ".join(problems) + ": whoever can read it can "
            "make a plan that apply accepts. Delete it (every saved plan becomes invalid) and "
            "make a new plan with plan --out, which creates a private one"
        )


def canonical(document: dict[str, Any]) -> bytes:
    """The bytes the MAC is over: the document without its seal, as JSON with sorted keys and
    no whitespace, so that re-indenting the file does not matter but any value does."""
    return b"".join(_canonical_pieces(document))


def _canonical_pieces(document: dict[str, Any]) -> Iterator[bytes]:
    """:func:`canonical` in pieces, so that a large plan is MACed without its whole text in
    memory."""
    body = {name: value for name, value in document.items() if name != "seal"}
    yield _DOMAIN
    pieces = canonical_pieces(body)
    while True:
        try:
            piece = next(pieces, None)
        except ValueError as exc:  # NaN or an infinity; not an encoding error, as before
            raise ConfigError(f"the plan holds a value JSON does not allow: {exc}") from None
        if piece is None:
            return
        yield piece.encode("utf-8")


def _mac(document: dict[str, Any], key: PlanKey) -> str:
    mac = hmac.new(key.secret, digestmod=hashlib.sha256)
    for piece in _canonical_pieces(document):
        mac.update(piece)
    return mac.hexdigest()


def seal(document: dict[str, Any], key: PlanKey) -> dict[str, str]:
    """The seal to store in *document* under ``"seal"``."""
    return {"alg": ALGORITHM, "key_id": key.id, "mac": _mac(document, key)}


def check_seal(document: dict[str, Any], key: PlanKey, where: Path) -> None:
    """Refuse *document* (read from *where*) unless its seal was made with *key* over exactly
    what it holds now."""
    refuse = f"refusing the plan {where}: "
    again = "make a new plan with plan --out, review it and apply that one"
    found = document.get("seal")
    if not isinstance(found, dict) or not found:
        raise ConfigError(
            refuse + "it has no seal (it was not saved by plan --out of this version, or the "
            f"seal was removed); {again}"
        )
    if found.get("alg") != ALGORITHM:
        raise ConfigError(refuse + f"its seal is not {ALGORITHM} ({found.get('alg')!r}); {again}")
    if found.get("key_id") != key.id:
        raise ConfigError(
            refuse + f"it was sealed with another plan key (key id {found.get('key_id')!r}; the "
            f"key in {key.path} has id {key.id!r}). The key was replaced or deleted since the "
            f"plan was saved, which invalidates every saved plan; {again}"
        )
    mac = found.get("mac")
    expected = _mac(document, key).encode("ascii")
    if not isinstance(mac, str) or not hmac.compare_digest(mac.encode("utf-8"), expected):
        raise ConfigError(
            refuse + "it was changed after it was saved (its seal does not match what it "
            f"holds now); {again}"
        )
