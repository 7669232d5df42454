"""Source data shown to people: characters that would change what a reader sees made visible.

A value from the source (a class code, a name) can hold a line break that adds lines to the text
plan, a right-to-left override that shows a name backwards in a report, or another control
character a terminal acts on. :func:`visible` writes each of them as text instead; every rendering
of user data (text plan, HTML report, validate and explain, password sheets) goes through it.
:func:`hidden_characters` tells the naming rules which characters a name may not hold.
"""

from __future__ import annotations

import unicodedata

BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
"""Characters that change the direction text is shown in (the Unicode bidi controls)."""

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _shown_as(char: str) -> str | None:
    """How *char* is written by :func:`visible`, or None when it is shown as it is."""
    if char in _NAMED:
        return _NAMED[char]
    category = unicodedata.category(char)
    if category == "Cc":  # C0 and C1 controls, DEL
        return f"\\x{ord(char):02x}"
    # Bidi controls reorder what follows; line and paragraph separators break lines; a lone
    # surrogate cannot even be printed.
    if char in BIDI_CONTROLS or category in ("Zl", "Zp", "Cs"):
        return f"<U+{ord(char):04X}>"
    return None


def visible(text: str) -> str:
    """*text* with every control, bidi-control and line-separator character written out:
    a line break as ``\\n``, U+202E as ``<U+202E>``, other controls as ``\\xNN``. Everything else
    (accents, other scripts) is kept; a text that needs nothing is returned as it is. Applying it
    twice changes nothing more."""
    if all(_shown_as(char) is None for char in text):
        return text
    return "".join(_shown_as(char) or char for char in text)


def hidden_characters(text: str) -> list[str]:
    """The characters of *text* that :func:`visible` would write out, each in its visible form
    and once, in order: what a name must not hold."""
    found: list[str] = []
    for char in text:
        shown = _shown_as(char)
        if shown is not None and shown not in found:
            found.append(shown)
    return found
