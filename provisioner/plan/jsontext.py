"""A plan document's JSON text in pieces, never as one string.

A plan of 60,000 changes is some 60 MB of JSON: built as one string, then encoded, then joined
with a newline, it is held three or four times over. These functions yield the same text a piece
at a time — the document's other members whole, its ``changes`` a batch at a time — so a plan is
written, printed and sealed with a few batches in memory. Their text is byte for byte what
:func:`json.dumps` makes of the whole document (the tests hold them to it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, TextIO

BATCH = 500
"""Changes encoded per call: enough to keep the per-call cost small, few enough to stay small."""
STREAMED = "changes"
"""The one member of a plan document that grows with the plan: the others are encoded whole."""


def indented_pieces(document: dict[str, Any]) -> Iterator[str]:
    """``json.dumps(document, indent=1, ensure_ascii=False)``, in pieces.

    A value encoded on its own with ``indent=1`` is the same text as where it sits in the
    document except that each line after its first is indented by its depth: one space for a
    member of the document, two for a change. JSON text never holds a raw line feed inside a
    string (it is escaped), so indenting every line feed is exact."""
    encoder = json.JSONEncoder(indent=1, ensure_ascii=False)
    if not document:
        yield "{}"
        return
    separator = "{\n "
    for name, value in document.items():
        yield separator + encoder.encode(name) + ": "
        separator = ",\n "
        if name == STREAMED and isinstance(value, list) and value:
            yield "["
            for start in range(0, len(value), BATCH):
                text = encoder.encode(value[start : start + BATCH])
                # "[\n {…},\n {…}\n]": its items one level deeper, after a comma from the second on
                items = text[2:-2].replace("\n", "\n ")
                yield ("\n " if start == 0 else ",\n ") + items
            yield "\n ]"
        else:
            yield encoder.encode(value).replace("\n", "\n ")
    yield "\n}"


def canonical_pieces(document: dict[str, Any]) -> Iterator[str]:
    """``json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    allow_nan=False)``, in pieces: what the seal is over. Raises ValueError for a value JSON
    does not allow (NaN, an infinity), as that does."""
    encoder = json.JSONEncoder(
        sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    separator = "{"
    for name in sorted(document):
        value = document[name]
        yield separator + encoder.encode(name) + ":"
        separator = ","
        if name == STREAMED and isinstance(value, list) and value:
            yield "["
            for start in range(0, len(value), BATCH):
                text = encoder.encode(value[start : start + BATCH])
                yield ("" if start == 0 else ",") + text[1:-1]
            yield "]"
        else:
            yield encoder.encode(value)
    yield "}" if document else "{}"


def write_indented(document: dict[str, Any], handle: TextIO) -> None:
    """Write ``json.dumps(document, indent=1, ensure_ascii=False) + "\\n"`` to *handle*."""
    for piece in indented_pieces(document):
        handle.write(piece)
    handle.write("\n")
