"""Logging: plain text for people, JSON lines for log collectors; never a secret or a national
number.

Every secret read from the configuration registers itself here and is replaced by ``[secret]`` in
any log line; anything shaped like a Belgian national number (rijksregisternummer, 11 digits,
with or without its usual separators) becomes ``[national number]``. The filter sits on the
handler, so it also covers messages of libraries that log through ``logging``.
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
_NATIONAL_NUMBER = re.compile(r"(?<!\d)\d{2}\.?\d{2}\.?\d{2}[-.]?\d{3}\.?\d{2}(?!\d)")


def register_secret(value: str) -> None:
    """Make *value* unloggable (short values are left alone: they would mask ordinary words)."""
    if len(value) >= 4:
        _SECRETS.add(value)


def redact(text: str) -> str:
    for secret in sorted(_SECRETS, key=len, reverse=True):
        text = text.replace(secret, "[secret]")
    return _NATIONAL_NUMBER.sub("[national number]", text)


class _Redacting(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = ()
        fields = getattr(record, "fields", None)
        if fields:
            record.fields = json.loads(redact(json.dumps(fields, ensure_ascii=False)))
        return True


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
