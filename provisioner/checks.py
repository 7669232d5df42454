"""Value checks shared by configuration sections. They raise ValueError; the loader adds the file,
the line and the key to the message."""

from __future__ import annotations


def positive(value: float) -> float:
    if value <= 0:
        raise ValueError("must be more than 0")
    return value
