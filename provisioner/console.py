"""The command's own output streams, where the platform needs a hand with them."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import TextIO


def utf8_output(streams: Sequence[TextIO], *, windows: bool = os.name == "nt") -> None:
    """On Windows, output that goes to a file or a pipe (a scheduled task's log) is encoded in
    the ANSI code page, cp1252, which has no →, no … and no Cyrillic or Greek name: the first such
    character would stop the run with a UnicodeEncodeError. Such streams are switched to UTF-8; a
    console already takes Unicode, and other systems are left as they are."""
    if not windows:
        return
    for stream in streams:
        if not isinstance(stream, io.TextIOWrapper) or stream.isatty():
            continue
        if stream.encoding.lower().replace("-", "").replace("_", "") != "utf8":
            stream.reconfigure(encoding="utf-8")
