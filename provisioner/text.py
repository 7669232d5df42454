"""Source data shown to people: characters that would change what a reader sees made visible.

A value from the source (a class code, a name) can hold a line break that adds lines to the text
plan, a right-to-left override that shows a name backwards in a report, or another control
character a terminal acts on. :func:`visible` writes each of them as text instead; every rendering
of user data (text plan, HTML report, validate and explain, password sheets) goes through it.
:func:`hidden_characters` tells the naming rules which characters a name may not hold.
"""

from __future__ import annotations

import re

BIDI_CONTROLS = frozenset(
    "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
)
"""Characters that change the direction text is shown in (the Unicode bidi controls)."""

# Exactly: the C0 and C1 controls and DEL (Unicode category Cc), the bidi controls, the line and
# paragraph separators (Zl, Zp: they break lines) and lone surrogates (Cs: they cannot even be
# printed). One pattern, so that the common case (nothing to write out) is a single search.
_HIDDEN = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff" + "".join(sorted(BIDI_CONTROLS)) + "]"
)
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _shown_as(char: str) -> str:
    """How the hidden character *char* is written out."""
    if char in _NAMED:
        return _NAMED[char]
    if ord(char) <= 0x9F:
        return f"\\x{ord(char):02x}"
    return f"<U+{ord(char):04X}>"


def visible(text: str) -> str:
    """*text* with every control, bidi-control and line-separator character written out:
    a line break as ``\\n``, U+202E as ``<U+202E>``, other controls as ``\\xNN``. Everything else
    (accents, other scripts) is kept; a text that needs nothing is returned as it is. Applying it
    twice changes nothing more."""
    if _HIDDEN.search(text) is None:
        return text
    return _HIDDEN.sub(lambda match: _shown_as(match.group()), text)


def hidden_characters(text: str) -> list[str]:
    """The characters of *text* that :func:`visible` would write out, each in its visible form
    and once, in order: what a name must not hold."""
    return list(dict.fromkeys(_shown_as(char) for char in _HIDDEN.findall(text)))
