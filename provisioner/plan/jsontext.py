"""A plan document's JSON text in pieces, never as one string.

A plan of 60,000 changes is some 60 MB of JSON: built as one string, then encoded, then joined
with a newline, it is held three or four times over. These functions yield the same text a piece
at a time — its ``changes`` and any other long list or dict a batch at a time — so a plan is
written, printed and sealed with a few batches in memory; its changes can even be made JSON-ready
a batch at a time as they are written (:class:`Converted`). Their text is byte for byte what
:func:`json.dumps` makes of the whole document (tests/test_plan_serialisation.py holds them to it,
for plans and for any JSON document).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TextIO, overload

from provisioner.gcpause import paused_gc

BATCH = 500
"""Entries encoded per piece: enough to keep the per-piece cost small, few enough to stay small."""
STREAMED = "changes"
"""The member of a plan document that grows with the plan the most; it may be :class:`Converted`."""
OPENED = 2
"""Dicts this near the top (the document, and its header and observations) are written a member
at a time; below that a list or dict of more than :data:`BATCH` entries (a header's ``people``,
``account_schools``: one entry per account) is written a batch of entries at a time."""


class Converted(Sequence[Any]):
    """*items* made JSON-ready by *convert* only when a writer reaches them: a plan's changes
    written a batch at a time, so that their JSON data never exists for all of them at once.
    Only :func:`indented_pieces` and :func:`canonical_pieces` take it, as the document's
    :data:`STREAMED` member."""

    def __init__(self, items: Sequence[Any], convert: Callable[[Any], Any]) -> None:
        self._items = items
        self._convert = convert

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return [self._convert(item) for item in self._items[index]]
        return self._convert(self._items[index])


def indented_pieces(document: dict[str, Any]) -> Iterator[str]:
    """``json.dumps(document, indent=1, ensure_ascii=False)``, in pieces: the document, its
    header and observations a member at a time, their long lists and dicts (the changes, the
    header's names of every account) a batch of entries at a time."""
    if not document or any(type(name) is not str for name in document):
        yield _slow(document, "")
        return
    yield from _pieces(document, "", 0)


def _pieces(value: Any, indent: str, depth: int) -> Iterator[str]:
    """``_indented(value, indent)`` in pieces (see :func:`indented_pieces`)."""
    kind = type(value)
    if kind is dict and value and all(type(name) is str for name in value):
        inner = indent + " "
        if depth < OPENED:
            separator = "{\n"
            for name, member in value.items():
                yield separator + inner + _encode_text(name) + ": "
                separator = ",\n"
                yield from _pieces(member, inner, depth + 1)
            yield "\n" + indent + "}"
            return
        if len(value) > BATCH:
            entries = iter(value.items())
            for start in range(0, len(value), BATCH):
                yield ("{\n" if start == 0 else ",\n") + ",\n".join(
                    inner + _encode_text(name) + ": " + _indented(member, inner)
                    for name, member in itertools.islice(entries, BATCH)
                )
            yield "\n" + indent + "}"
            return
    elif kind is Converted and not value:
        yield "[]"
        return
    elif kind is Converted or ((kind is list or kind is tuple) and len(value) > BATCH):
        inner = indent + " "
        for start in range(0, len(value), BATCH):
            yield ("[\n" if start == 0 else ",\n") + ",\n".join(
                inner + _indented(item, inner) for item in value[start : start + BATCH]
            )
        yield "\n" + indent + "]"
        return
    yield _indented(value, indent)


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
        streamed = type(value) is Converted or (name == STREAMED and isinstance(value, list))
        if streamed and not value:
            yield "[]"
        elif streamed:
            yield "["
            for start in range(0, len(value), BATCH):
                text = encoder.encode(value[start : start + BATCH])
                yield ("" if start == 0 else ",") + text[1:-1]
            yield "]"
        else:
            yield encoder.encode(value)
    yield "}" if document else "{}"


@paused_gc()  # the pieces' lists and dicts die young and hold no cycles
def write_indented(document: dict[str, Any], handle: TextIO) -> None:
    """Write ``json.dumps(document, indent=1, ensure_ascii=False) + "\\n"`` to *handle*."""
    for piece in indented_pieces(document):
        handle.write(piece)
    handle.write("\n")
