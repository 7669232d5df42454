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
import re
import sys
from typing import Any, Literal, TextIO

LOG = logging.getLogger("provisioner")
_SECRETS: set[str] = set()
# One pattern that matches every registered secret in any of its forms, rebuilt when a secret is
# registered (rarely) because redact runs on every log line (often).
_SECRET_PATTERN: re.Pattern[str] | None = None
_NATIONAL_NUMBER = re.compile(r"(?<!\d)\d{2}\.?\d{2}\.?\d{2}[-.]?\d{3}\.?\d{2}(?!\d)")
_NAMED_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;"}


def _any_case_hex(number: int, width: int) -> str:
    return "".join(f"[{d}{d.lower()}]" if d.isalpha() else d for d in f"{number:0{width}X}")


def _char_forms(char: str) -> str:
    """A regular expression for one character of a secret in every form a log line or an echoed
    request can show it: raw, URL-encoded (``%21``, ``%c3%a9``; ``+`` for a space), as an XML or
    HTML character reference (``&#33;``, ``&#x21;``, ``&amp;``) or JSON-escaped (``\\u0021``)."""
    code = ord(char)
    forms = [re.escape(char), f"&#0*{code};", f"&#[xX]0*{_any_case_hex(code, 1)};"]
    if not (char.isascii() and char.isalnum()):  # quote() leaves letters and digits alone
        forms.append("".join(f"%{_any_case_hex(byte, 2)}" for byte in char.encode("utf-8")))
    if char == " ":
        forms.append(r"\+")
    if char in _NAMED_ENTITIES:
        forms.append(re.escape(_NAMED_ENTITIES[char]))
    if char == "'":
        forms.append("&#[xX]27;")
    if not (char.isascii() and char.isalnum()):
        units = char.encode("utf-16-be")  # JSON writes a character beyond U+FFFF as two units
        forms.append(
            "".join(
                rf"\\[uU]{_any_case_hex(int.from_bytes(units[i : i + 2]), 4)}"
                for i in range(0, len(units), 2)
            )
        )
    if char in '"\\/':
        forms.append(re.escape("\\" + char))
    # Longest first: an escaped backslash must win over a bare one, or half an escape is left.
    return "(?:" + "|".join(sorted(forms, key=len, reverse=True)) + ")"


def register_secret(value: str) -> None:
    """Make *value* unloggable in every form (short values are left alone: they would mask
    ordinary words)."""
    global _SECRET_PATTERN
    if len(value) >= 4 and value not in _SECRETS:
        _SECRETS.add(value)
        alternatives = ["".join(_char_forms(c) for c in secret) for secret in _SECRETS]
        # Longest first, so that a secret containing another is replaced whole.
        alternatives.sort(key=len, reverse=True)
        _SECRET_PATTERN = re.compile("|".join(alternatives))


def redact(text: str) -> str:
    if _SECRET_PATTERN is not None:
        text = _SECRET_PATTERN.sub("[secret]", text)
    return _NATIONAL_NUMBER.sub("[national number]", text)


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
    LOG.handlers[:] = [handler]
    LOG.setLevel(level)
    LOG.propagate = False


def event(message: str, level: int = logging.INFO, **fields: Any) -> None:
    """One log line; *fields* become JSON keys in JSON lines (and stay out of the text form)."""
    LOG.log(level, message, extra={"fields": fields})
