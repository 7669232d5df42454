"""A plan document's JSON text in pieces, never as one string.

A plan of 60,000 changes is some 60 MB of JSON: built as one string, then encoded, then joined
with a newline, it is held three or four times over. These functions yield the same text a piece
at a time — the document's other members whole, its ``changes`` a batch at a time — so a plan is
written, printed and sealed with a few batches in memory. Their text is byte for byte what
:func:`json.dumps` makes of the whole document (tests/test_plan_serialisation.py holds them to it,
for plans and for any JSON document).
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
    """``json.dumps(document, indent=1, ensure_ascii=False)``, in pieces: each member of the
    document whole, its changes a batch at a time."""
    if not document or any(type(name) is not str for name in document):
        yield _slow(document, "")
        return
    separator = "{\n "
    for name, value in document.items():
        yield separator + _encode_text(name) + ": "
        separator = ",\n "
        if name == STREAMED and type(value) is list and value:
            for start in range(0, len(value), BATCH):
                batch = value[start : start + BATCH]
                yield ("[\n  " if start == 0 else ",\n  ") + ",\n  ".join(
                    _indented(change, "  ") for change in batch
                )
            yield "\n ]"
        else:
            yield _indented(value, " ")
    yield "\n}"


_encode_text = json.encoder.encode_basestring  # json's own (C) encoder of a string, non-ASCII kept
_SLOW = json.JSONEncoder(indent=1, ensure_ascii=False)


def _indented(value: Any, indent: str) -> str:
    """What ``json.dumps(value, indent=1, ensure_ascii=False)`` makes of *value* where it
    stands at *indent*. The standard library's encoder with an indent is pure Python and walks
    the document through generators; this writes the plan's own kinds of value — text, lists,
    dicts of text keys, true, false, null — directly, and leaves anything else (numbers, a
    subclass, a key that is not text) to that encoder, so the text is the same."""
    kind = type(value)
    if kind is str:
        return _encode_text(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if kind is dict:
        if not value:
            return "{}"
        inner = indent + " "
        members = []
        for name, member in value.items():
            if type(name) is not str:  # json turns numbers into keys its own way
                return _slow(value, indent)
            members.append(inner + _encode_text(name) + ": " + _indented(member, inner))
        return "{\n" + ",\n".join(members) + "\n" + indent + "}"
    if kind is list or kind is tuple:
        if not value:
            return "[]"
        inner = indent + " "
        return (
            "[\n"
            + ",\n".join(inner + _indented(item, inner) for item in value)
            + "\n"
            + indent
            + "]"
        )
    return _slow(value, indent)


def _slow(value: Any, indent: str) -> str:
    """The standard library's text for *value*, its lines after the first indented by
    *indent*: JSON text never holds a raw line feed inside a string (it is escaped), so
    indenting every line feed is exact."""
    return _SLOW.encode(value).replace("\n", "\n" + indent)


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
