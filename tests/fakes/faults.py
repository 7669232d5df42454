"""Faults the test servers inject into their next matching answers, counted down as used."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar


class Counted(Protocol):
    remaining: int | None
    """Answers it still spoils; None: until cleared."""


F = TypeVar("F", bound=Counted)


def take(faults: list[F], matches: Callable[[F], bool]) -> F | None:
    """The first of *faults* that *matches*, counted down and dropped once used up. The
    caller holds the lock that guards *faults*."""
    for fault in faults:
        if not matches(fault):
            continue
        if fault.remaining is not None:
            fault.remaining -= 1
            if fault.remaining == 0:
                faults.remove(fault)
        return fault
    return None
