"""Unique names: the candidates a naming scheme makes, whether a held name still fits them, and
who holds which name.

A scheme cuts the wanted name (the username template's result) to a length and, when that is
taken, puts a numbered suffix in place of its end: ``jan.peeters``, ``jan.peeters2`` … The
username is cut to ``max_length`` (20 for sAMAccountName); the ``{{ name }}`` of a unique
attribute (``mail: "{{ name }}@school.be"``) to ``name_length`` (64), with a suffix of its own.
Names compare without case, as the directories do.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass

MAX_SUFFIX = 10_000
"""How many suffixes are tried before a person is held for want of a free name."""


@dataclass(frozen=True)
class Scheme:
    length: int
    suffix: str
    """With ``{n}``: ``"{n}"`` makes jan.peeters2, ``"-{n}"`` jan.peeters-2."""
    first: int

    def ending(self, n: int) -> str:
        return self.suffix.replace("{n}", str(n))

    def plain(self, base: str) -> str:
        """*base* cut to the length, without a trailing dot or hyphen."""
        return base[: self.length].rstrip(".-")

    def numbered(self, base: str, n: int | None) -> str:
        """The name with suffix *n* (None: without): the suffix replaces the end of the base, so
        the name never exceeds the length."""
        if n is None:
            return self.plain(base)
        ending = self.ending(n)
        return base[: self.length - len(ending)].rstrip(".-") + ending

    def candidates(self, base: str, start: int | None = None) -> Iterator[tuple[int | None, str]]:
        """(suffix number, name): without a suffix first, then numbered from *start* (where the
        names that may still be free begin; default: the first number)."""
        yield None, self.plain(base)
        for n in range(start or self.first, self.first + MAX_SUFFIX):
            yield n, self.numbered(base, n)

    def number(self, held: str, base: str) -> int | None:
        """The suffix number with which this scheme makes *held* from *base*; None when no
        number does (the base itself, or a name the scheme cannot make from it)."""
        folded = held.casefold()
        _head, _, tail = self.suffix.partition("{n}")
        if not folded.endswith(tail.casefold()):
            return None
        body = folded[: len(folded) - len(tail)]
        digits = len(body) - len(body.rstrip("0123456789"))
        # jan.peeters12 may be suffix 12, or 2 of a base ending in 1: try each split.
        for width in range(1, digits + 1):
            n = int(body[len(body) - width :])
            if n >= self.first and self.numbered(base, n).casefold() == folded:
                return n
        return None

    def fits(self, held: str, base: str) -> bool:
        """True when *held* is one of the names this scheme makes from *base*: the person keeps
        it (jan.peeters2 stays jan.peeters2 when the first Jan Peeters leaves)."""
        return held.casefold() == self.plain(base).casefold() or self.number(held, base) is not None


SENTINEL = "qqzxnameqqzx"
"""Stands in for ``name`` to find a unique attribute's fixed parts (``…@school.be``); lower case
ASCII letters only, so that the usual filters (lower, trim) leave it as it is."""


def name_in(value: str, rendered_with_sentinel: str) -> str | None:
    """The ``name`` inside *value*, given the attribute's template rendered with
    :data:`SENTINEL` as its name: ``jan.peeters2`` in ``jan.peeters2@school.be`` for
    ``qqzxnameqqzx@school.be``. None when *value* does not have the template's fixed parts (the
    template changed, e.g. another mail domain)."""
    if rendered_with_sentinel.count(SENTINEL) != 1:
        return None
    head, _, tail = rendered_with_sentinel.partition(SENTINEL)
    folded, head_f, tail_f = value.casefold(), head.casefold(), tail.casefold()
    if len(value) <= len(head) + len(tail):
        return None
    if not (folded.startswith(head_f) and folded.endswith(tail_f)):
        return None
    return value[len(head) : len(value) - len(tail)]


class NameBook:
    """Who holds which name in this run, and every name ever given.

    One book for usernames and the values of unique attributes alike: a name is free for a
    person when nobody else holds it in this run and it was never given to anyone else (the
    state store's issued names and what the directory holds, minus the person's own)."""

    def __init__(self, issued: Collection[str], own: Mapping[str, Collection[str]]) -> None:
        self.claimed: dict[str, str] = {}
        """Casefolded name → the anchor holding it in this run."""
        self.issued = {name.casefold() for name in issued}
        self.own = {anchor: {n.casefold() for n in names} for anchor, names in own.items()}
        self._owners: dict[str, set[str]] | None = None
        """Casefolded name → the anchors it is their own of; made when first needed."""

    def free(self, name: str, anchor: str) -> bool:
        folded = name.casefold()
        holder = self.claimed.get(folded)
        if holder is not None:
            return holder == anchor
        return folded not in self.issued or folded in self.own.get(anchor, ())

    def unavailable(self, name: str) -> bool:
        """True when *name* is free for nobody new: held in this run or given before. (A person
        may still get their own name back; the suffix search skips past these names.)"""
        folded = name.casefold()
        return folded in self.claimed or folded in self.issued

    def given_to_none_of(self, name: str, anchors: Collection[str]) -> bool:
        """True when *name* can be given to none of *anchors*: another anchor holds it in this
        run, or it was given before and is none of theirs."""
        folded = name.casefold()
        holder = self.claimed.get(folded)
        if holder is not None:
            return holder not in anchors
        if folded not in self.issued:
            return False
        if self._owners is None:
            self._owners = {}
            for anchor, names in self.own.items():
                for owned in names:
                    self._owners.setdefault(owned, set()).add(anchor)
        return not any(anchor in anchors for anchor in self._owners.get(folded, ()))

    def inherit(self, anchor: str, former: str) -> None:
        """*anchor* is the new anchor of the account that had *former*: its names are its own."""
        names = self.own.get(former)
        if names:  # (every account of a first run names a former anchor that owns nothing)
            self.own.setdefault(anchor, set()).update(names)
            self._owners = None

    def claim(self, name: str, anchor: str) -> None:
        self.claimed[name.casefold()] = anchor
