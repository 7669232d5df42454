"""Logging: plain text for people, JSON lines for log collectors; never a secret or a national
number.

Every secret read from the configuration registers itself here and is replaced by ``[secret]`` in
any log line, in every form it can take there: raw, URL-encoded, XML/HTML character references,
JSON-escaped, and any mixture of those character by character. Anything shaped like a Belgian
national number (rijksregisternummer, 11 digits, with or without its usual separators) becomes
``[national number]``. The filter sits on the handler, so it also covers messages of libraries
that log through ``logging``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, TextIO

from provisioner.files import create_private

LOG = logging.getLogger("provisioner")
_NATIONAL_NUMBER = re.compile(r"(?<!\d)\d{2}\.?\d{2}\.?\d{2}[-.]?\d{3}\.?\d{2}(?!\d)")

# How a line can spell a character other than as itself: URL-encoded (UTF-8 bytes as %XX, a space
# as +), as an XML or HTML character reference, or JSON-escaped.
_ENCODED = re.compile(
    r"(?:%[0-9A-Fa-f]{2})+|&#[0-9]{1,7};|&#[xX][0-9A-Fa-f]{1,6};|&(?:amp|lt|gt|quot|apos);"
    r"|\\[uU][0-9A-Fa-f]{4}(?:\\[uU][dD][c-fC-F][0-9A-Fa-f]{2})?|\\[\\\"/]|\+"
)
_NAMED = {"&amp;": "&", "&lt;": "<", "&gt;": ">", "&quot;": '"', "&apos;": "'"}
_PREFIX = 4
"""Secrets are found by their first characters; shorter ones are not registered."""
_SECRETS: dict[str, set[str]] = {}
"""Every registered secret (as the decoded text spells it), by its first characters."""


def _decode(encoded: str) -> list[str]:
    """The characters one encoded encoded of :data:`_ENCODED` stands for."""
    if encoded == "+":
        return [" "]
    if encoded.startswith("%"):
        # Byte by byte, so that every character keeps the place it came from.
        return list(bytes.fromhex(encoded.replace("%", "")).decode("utf-8", "replace"))
    if encoded.startswith("&#"):
        number = int(encoded[3:-1], 16) if encoded[2] in "xX" else int(encoded[2:-1])
        return [chr(number)] if number <= 0x10FFFF else [encoded]
    if encoded.startswith("&"):
        return [_NAMED[encoded]]
    if encoded[1] in "uU":
        return list(bytes.fromhex(encoded[2:6] + encoded[8:12]).decode("utf-16-be", "replace"))
    return [encoded[1]]


def _decoded(text: str) -> tuple[str, Sequence[int], Sequence[int]]:
    """*text* with every encoded character decoded, and where each decoded character starts and
    ends in *text*."""
    chars: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    position = 0
    for match in _ENCODED.finditer(text):
        for i in range(position, match.start()):
            chars.append(text[i])
            starts.append(i)
            ends.append(i + 1)
        decoded = _decode(match.group())
        chars.extend(decoded)
        # A token that stands for several characters (UTF-8 bytes) is replaced whole or not at
        # all: each of its characters spans the whole token.
        starts.extend([match.start()] * len(decoded))
        ends.extend([match.end()] * len(decoded))
        position = match.end()
    for i in range(position, len(text)):
        chars.append(text[i])
        starts.append(i)
        ends.append(i + 1)
    return "".join(chars), starts, ends


def _spelled(secret: str) -> str:
    """A secret as :func:`_decoded` reads it back from a line that holds it raw."""
    return _decoded(secret)[0]


def register_secret(value: str) -> None:
    """Make *value* unloggable in every form (short values are left alone: they would mask
    ordinary words)."""
    if len(value) < _PREFIX:
        return
    for spelling in {value, _spelled(value)}:
        if len(spelling) >= _PREFIX:
            _SECRETS.setdefault(spelling[:_PREFIX], set()).add(spelling)


def redact(text: str) -> str:
    """*text* with every registered secret, in any of its forms, replaced by ``[secret]``: the
    line is decoded once and looked up by its characters, which stays fast when a first night
    registers thousands of initial passwords."""
    if _SECRETS and len(text) >= _PREFIX:
        text = _without_secrets(text)
    return _NATIONAL_NUMBER.sub("[national number]", text)


def _without_secrets(text: str) -> str:
    if _ENCODED.search(text) is None:  # most lines: nothing encoded, nothing to map back
        plain, starts, ends = text, range(len(text)), range(1, len(text) + 1)
    else:
        plain, starts, ends = _decoded(text)
    cuts: list[tuple[int, int]] = []
    lookup, i, last = _SECRETS.get, 0, len(plain) - _PREFIX
    while i <= last:
        candidates = lookup(plain[i : i + _PREFIX])
        if candidates:
            # The longest, so that a secret containing another is replaced whole.
            found = max((len(s) for s in candidates if plain.startswith(s, i)), default=0)
            if found:
                cuts.append((starts[i], ends[i + found - 1]))
                i += found
                continue
        i += 1
    if not cuts:
        return text
    pieces: list[str] = []
    position = 0
    for start, end in cuts:
        if start < position:  # two secrets inside one encoded token
            start = position
        pieces.append(text[position:start] + "[secret]")
        position = max(position, end)
    return "".join(pieces) + text[position:]


class _Redacting(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = ()
        fields = getattr(record, "fields", None)
        if fields:
            record.fields = _redact_fields(fields)
        return True


def _redact_fields(value: Any) -> Any:
    """Every text inside a log line's fields, redacted; the structure stays as it was."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact(str(k)): _redact_fields(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redact_fields(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value))


class _JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="seconds"),
            "level": record.levelname.lower(),
            "message": record.getMessage(),
        }
        line.update(getattr(record, "fields", None) or {})
        return json.dumps(line, ensure_ascii=False)


def setup(form: Literal["text", "json"], *, verbose: bool, stream: TextIO | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(_Redacting())
    if form == "json":
        handler.setFormatter(_JsonLines())
        level = logging.INFO
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        level = logging.INFO if verbose else logging.WARNING
    handler.setLevel(level)
    LOG.handlers[:] = [handler]
    LOG.setLevel(level)
    LOG.propagate = False


@contextmanager
def also_to(path: Path) -> Iterator[None]:
    """Meanwhile every line (progress included) also goes, as JSON lines, to the new private
    file *path* (a run folder's log); what the terminal shows stays as it was set up."""
    stream = os.fdopen(create_private(path), "w", encoding="utf-8")
    handler = logging.StreamHandler(stream)
    handler.addFilter(_Redacting())
    handler.setFormatter(_JsonLines())
    level = LOG.level
    LOG.addHandler(handler)
    LOG.setLevel(logging.INFO)
    try:
        yield
    finally:
        LOG.removeHandler(handler)
        LOG.setLevel(level)
        stream.close()


def event(message: str, level: int = logging.INFO, **fields: Any) -> None:
    """One log line; *fields* become JSON keys in JSON lines (and stay out of the text form)."""
    LOG.log(level, message, extra={"fields": fields})
