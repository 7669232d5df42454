"""Jinja filters for mapping templates: ASCII names, usernames, initials, dates, left().

ICT coordinators build usernames and attributes from Informat data with these, for example
``{{ (Lln.Voornaam ~ "." ~ Lln.Naam) | username(20) }}``. Every filter reads ``None`` (a field
without a value) as "no value" and returns ``""``; any other non-text value goes through ``str()``.

Uniqueness (jan.peeters, jan.peeters2, …) is not decided here: these filters are pure functions of
their input, so the same person always gets the same candidate name.
"""

from __future__ import annotations

import datetime as dt
import operator
import re
import unicodedata
from collections.abc import Callable

SAM_ACCOUNT_NAME_MAX = 20
"""Active Directory allows at most 20 characters in a sAMAccountName (the pre-Windows 2000 logon
name); a longer one is refused. Pass it as ``username(SAM_ACCOUNT_NAME_MAX)`` where the result is
used as sAMAccountName; a UPN local part may be longer."""

USERNAME_PATTERN: re.Pattern[str] = re.compile(r"\A[a-z0-9_]+(?:[.-][a-z0-9_]+)*\Z")
"""What a non-empty ``username()`` result always matches: ``[a-z0-9._-]`` only, no leading or
trailing ``.``/``-`` and never two of them in a row. Anchored, so ``match`` is enough. Such a name
is valid both as sAMAccountName (length aside) and as the local part of a UPN or e-mail address."""

# Characters NFKD leaves alone (or turns into something unhelpful) but that have an obvious ASCII
# spelling in names. Applied *after* NFKD, so that composed forms such as ǿ (ø + acute) or ǽ
# (æ + acute) first lose their accent and then get their letter folded.
_LETTERS = {
    "ß": "ss",
    "ẞ": "SS",
    "ø": "o",
    "Ø": "O",
    "æ": "ae",
    "Æ": "AE",
    "œ": "oe",
    "Œ": "OE",
    "ł": "l",
    "Ł": "L",
    "đ": "d",
    "Đ": "D",
    "ð": "d",
    "Ð": "D",
    "þ": "th",
    "Þ": "Th",  # as in Þór → Thor: Þ nearly always starts a capitalised name
    "ı": "i",  # Turkish dotless i; the dotted capital İ already decomposes to I + dot
    "ħ": "h",  # Maltese
    "Ħ": "H",
    # Typographic apostrophes and quotes, as pasted from Word or typed on a phone. The ASCII
    # backtick is here too: on a Belgian AZERTY keyboard it is a common slip for an apostrophe.
    "’": "'",
    "‘": "'",
    "‚": "'",
    "‛": "'",
    "ʼ": "'",
    "ʻ": "'",
    "ʽ": "'",
    "ꞌ": "'",
    "′": "'",
    "`": "'",
    "“": '"',
    "”": '"',
    "„": '"',
    "‟": '"',
    "″": '"',
    # Unicode hyphens and dashes: "Marie‐Louise" with U+2010 must stay hyphenated, not become
    # "MarieLouise" because the dash was dropped as non-ASCII.
    "‐": "-",
    "‑": "-",
    "‒": "-",
    "–": "-",
    "—": "-",
    "―": "-",
    "−": "-",
}

# Cyrillic (ICAO 9303, as in passports) and Greek (ELOT 743), letter by letter: a pupil named
# Олена or Ελένη gets "olena"/"eleni" rather than an empty name. Accented forms (ё, й, ά) reach
# this table as the plain letter after NFKD. CJK, Arabic, Hebrew … have no such short table (no
# transliteration is installed); a name in those scripts folds to "" and the ``fallback`` of
# ``username`` takes over.
_CYRILLIC = {
    "а": "a",
    "б": "b",
    "в": "v",
    "г": "g",
    "д": "d",
    "е": "e",
    "з": "z",
    "и": "i",
    "й": "i",
    "к": "k",
    "л": "l",
    "м": "m",
    "н": "n",
    "о": "o",
    "п": "p",
    "р": "r",
    "с": "s",
    "т": "t",
    "у": "u",
    "ф": "f",
    "ы": "y",
    "э": "e",
    "є": "ie",
    "і": "i",
    "ї": "i",
    "ґ": "g",
    "ј": "j",
    "ћ": "c",
    "ў": "u",
    "ђ": "d",
    "ж": "zh",
    "х": "kh",
    "ц": "ts",
    "ч": "ch",
    "ш": "sh",
    "щ": "shch",
    "ъ": "ie",
    "ь": "",
    "ю": "iu",
    "я": "ia",
    "љ": "lj",
    "њ": "nj",
    "џ": "dz",
}
_GREEK = {
    "α": "a",
    "β": "v",
    "γ": "g",
    "δ": "d",
    "ε": "e",
    "ζ": "z",
    "η": "i",
    "ι": "i",
    "κ": "k",
    "λ": "l",
    "μ": "m",
    "ν": "n",
    "ξ": "x",
    "ο": "o",
    "π": "p",
    "ρ": "r",
    "σ": "s",
    "ς": "s",
    "τ": "t",
    "υ": "y",
    "φ": "f",
    "ω": "o",
    "θ": "th",
    "χ": "ch",
    "ψ": "ps",
}
_LETTERS |= {
    letter: spelling
    for lower, ascii_ in (_CYRILLIC | _GREEK).items()
    for letter, spelling in ((lower, ascii_), (lower.upper(), ascii_.capitalize()))
}

# Applied *before* NFKD: spacing accents that NFKD would turn into a space plus a combining mark,
# which would split a name in two ("Zoe¨" → "Zoe "). The acute accent ´ is typed as an apostrophe
# often enough ("D´Hondt") to be read as one; the other spacing accents are dropped.
_SPACING_ACCENTS = {"´": "'"} | dict.fromkeys("¨¯¸˘˙˚˛˜˝", "")


def _replacer(table: dict[str, str]) -> Callable[[str], str]:
    """``text → text`` with every key of ``table`` replaced by its value.

    A regex with a callback per match, not str.translate: translate looks up every character of
    the text in the dict, which costs more than the NFKD itself, while most names have no or one
    character to replace (measured 3x faster on a 40-character name).
    """
    pattern = re.compile("[" + re.escape("".join(table)) + "]")
    lookup = table.__getitem__

    def replace(text: str) -> str:
        return pattern.sub(lambda match: lookup(match[0]), text)

    return replace


_replace_spacing_accents = _replacer(_SPACING_ACCENTS)
_replace_letters = _replacer(_LETTERS)


def _text(value: object) -> str:
    """None → "", text as is, anything else through str()."""
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _fold(text: str) -> str:
    if text.isascii():
        # Fast path for most names: only the backtick needs mapping.
        return text.replace("`", "'") if "`" in text else text
    text = _replace_letters(unicodedata.normalize("NFKD", _replace_spacing_accents(text)))
    # What is left that is not ASCII is a combining mark (é → e + ´) or a character without an
    # ASCII equivalent (emoji, CJK, Greek, …): both are dropped.
    return text.encode("ascii", "ignore").decode("ascii")


def ascii_fold(value: object) -> str:
    """Unicode name → ASCII, keeping case: é→e, ß→ss, ø→o, Ł→L, ’→'; unknown characters dropped."""
    return _fold(_text(value))


# After folding and lower-casing: everything but letters, digits, dot, hyphen and underscore goes,
# which removes spaces inside names ("Van den Bossche") and apostrophes ("D'Hondt") at once.
_NOT_USERNAME = re.compile(r"[^a-z0-9._-]+")
_SEPARATOR_RUN = re.compile(r"[.-]{2,}")


def _one_separator(match: re.Match[str]) -> str:
    # A run such as "..", ".-", "-." or "--" becomes one character; a dot wins because callers put
    # it between first name and last name ("Ab-.Cd" → "ab.cd").
    return "." if "." in match.group() else "-"


def username(value: object, max_length: int | None = None, fallback: object = None) -> str:
    """A name valid as sAMAccountName and UPN local part: "Noémie.D'Hondt" → "noemie.dhondt".

    Folded to ASCII and lower case; spaces, apostrophes and all other characters except ``a-z``,
    ``0-9``, ``.``, ``-`` and ``_`` are removed; runs of ``.``/``-`` collapse to one (``.`` if
    the run has one); no leading or trailing ``.``/``-``. ``max_length`` cuts the result (use
    ``SAM_ACCOUNT_NAME_MAX`` for a sAMAccountName), after which a trailing ``.``/``-`` is removed.
    The result matches ``USERNAME_PATTERN`` or is empty.

    Cyrillic and Greek letters are transliterated; other scripts (CJK, Arabic …) and emoji are
    dropped. When nothing is left, ``fallback`` is used instead (made a username the same way),
    e.g. ``username(fallback="lln" ~ key)``: "王 伟" → "lln123456", so a name without Latin
    letters never gives an empty username.
    """
    if max_length is not None and operator.index(max_length) < 0:
        raise ValueError(f"username: max_length must be 0 or more, not {max_length!r}")
    name = _username(value, max_length)
    if not name and fallback is not None:
        name = _username(fallback, max_length)
    return name


def _username(value: object, max_length: int | None) -> str:
    name = _NOT_USERNAME.sub("", _fold(_text(value)).lower())
    if ".." in name or "-" in name:  # skip the second regex for the common "jan.peeters"
        name = _SEPARATOR_RUN.sub(_one_separator, name)
    name = name.strip(".-")
    if max_length is not None and len(name) > max_length:
        name = name[:max_length].rstrip(".-")
    return name


_NAME_PARTS = re.compile(r"[\s-]+")


def initials(value: object, separator: str = "") -> str:
    """First letter of each name part (split on spaces and hyphens), upper case ASCII, each
    followed by ``separator``: "Jan-Pieter Marie" → "JPM", ("Zoë Anaïs", ".") → "Z.A."."""
    letters = []
    for part in _NAME_PARTS.split(_fold(_text(value))):
        # The first *letter*: "'t Kint" → "TK". A part without letters (digits, dropped emoji)
        # gives no initial.
        letter = next((char for char in part if char.isalpha()), None)
        if letter is not None:
            letters.append(letter.upper() + separator)
    return "".join(letters)


# ASCII digits only: re's \d would also accept Arabic-Indic and other Unicode digits.
_ISO_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})(?:T([0-9]{2}):([0-9]{2}):([0-9]{2}))?")


def format_date(value: object, fmt: str = "%d-%m-%Y") -> str:
    """An ISO date ``YYYY-MM-DD`` (optionally ``THH:MM:SS``) written with strftime ``fmt``:
    ("2012-03-07", "%d%m") → "0703". Empty is "". Anything else raises ValueError."""
    if isinstance(value, dt.date):  # also dt.datetime; str() of those would need parsing again
        return value.strftime(fmt)
    text = _text(value).strip()
    if not text:
        return ""
    match = _ISO_DATE.fullmatch(text)
    try:
        if match is None:
            raise ValueError
        moment = dt.datetime(*(int(part) for part in match.groups(default="0")))
    except ValueError:
        raise ValueError(
            f"date: {value!r} is not a date like 2012-03-07 or 2012-03-07T08:30:00"
        ) from None
    return moment.strftime(fmt)


def left(value: object, length: int) -> str:
    """The first ``length`` characters, without the "..." that Jinja's ``truncate`` adds."""
    if operator.index(length) < 0:
        raise ValueError(f"left: length must be 0 or more, not {length!r}")
    return _text(value)[:length]


FILTERS: dict[str, Callable[..., str]] = {
    "ascii": ascii_fold,
    "username": username,
    "initials": initials,
    "date": format_date,
    "left": left,
}
"""The filters mapping templates can use, by the name they are used with."""
