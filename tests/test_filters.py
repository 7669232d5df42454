"""Template filters: golden names, properties over any text, and errors that name the value."""

import datetime as dt
import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from provisioner.mapping.filters import (
    FILTERS,
    SAM_ACCOUNT_NAME_MAX,
    USERNAME_PATTERN,
    ascii_fold,
    format_date,
    initials,
    left,
    username,
)

# (input, username(input)): the names ICT coordinators actually meet, and some they should not.
USERNAME_GOLDEN = [
    # The examples the mapping documentation promises.
    ("Zoë.Çelik", "zoe.celik"),
    ("Jiří.Novák", "jiri.novak"),
    ("Marie-Louise.Van den Bossche", "marie-louise.vandenbossche"),
    ("Noémie.D'Hondt", "noemie.dhondt"),
    ("Søren.Ølaf", "soren.olaf"),
    ("  Jan . Peeters ", "jan.peeters"),
    ("Ab-.Cd", "ab.cd"),
    # Particles: spaces inside a surname disappear, whatever the capitals.
    ("Van den Bossche", "vandenbossche"),
    ("Vanden Eynde", "vandeneynde"),
    ("De Smet", "desmet"),
    ("Van Acker", "vanacker"),
    ("El Amrani", "elamrani"),
    ("Lotte.van der Linden", "lotte.vanderlinden"),
    # Apostrophes, straight and typographic.
    ("D'Hondt", "dhondt"),
    ("'t Kint", "tkint"),
    ("N'Diaye", "ndiaye"),
    ("D’Hondt", "dhondt"),
    ("‘t Kint", "tkint"),
    ("Noémie.D´Hondt", "noemie.dhondt"),
    ("O`Brien", "obrien"),
    # Diacritics and letters NFKD does not decompose.
    ("Zoë", "zoe"),
    ("Çelik", "celik"),
    ("Jiří", "jiri"),
    ("Noémie", "noemie"),
    ("Maël", "mael"),
    ("Anaïs", "anais"),
    ("Søren", "soren"),
    ("Ølaf", "olaf"),
    ("Straße", "strasse"),
    ("Łukasz", "lukasz"),
    ("Þór", "thor"),
    ("Œuvre", "oeuvre"),
    ("Ærø", "aero"),
    ("Đorđević", "dordevic"),
    ("Yıldız", "yildiz"),
    ("İbrahim Şahin", "ibrahimsahin"),
    ("Ĳsbrand", "ijsbrand"),
    # Hyphens are kept, Unicode hyphens become ASCII ones, doubled ones collapse.
    ("Marie-Louise", "marie-louise"),
    ("Jan-Pieter.Peeters-Janssens", "jan-pieter.peeters-janssens"),
    ("Marie‐Louise", "marie-louise"),  # U+2010 HYPHEN
    ("Marie – Louise", "marie-louise"),  # en dash with spaces
    ("Marie--Louise", "marie-louise"),
    ("-Jan.Peeters-", "jan.peeters"),
    ("Jan..Peeters", "jan.peeters"),
    ("Jan.-.Peeters", "jan.peeters"),
    (".Jan.", "jan"),
    # Digits stay; other punctuation goes; underscore is a valid account character.
    ("Jan2.Peeters", "jan2.peeters"),
    ("2024", "2024"),
    ("jan_peeters", "jan_peeters"),
    ("Jan@Peeters.be", "janpeeters.be"),
    ("Jan/Peeters\\(x)", "janpeetersx"),
    # Emoji, CJK and Arabic have no ASCII spelling here: dropped (see the fallback tests).
    ("Zoë 😀", "zoe"),
    ("王.Wang", "wang"),
    ("李小龍", ""),
    ("محمد", ""),
    # Greek and Cyrillic are spelled letter by letter (ELOT 743, ICAO 9303).
    ("Ελένη", "eleni"),
    ("Σωκράτης.Παππάς", "sokratis.pappas"),
    ("Олена.Шевченко", "olena.shevchenko"),
    ("Юлия.Щербакова", "iuliia.shcherbakova"),
    ("Йосип.Їжак", "iosip.izhak"),
    ("Ђорђе.Љубић", "dorde.ljubic"),
    ("Jan\u200b.Peeters", "jan.peeters"),  # zero-width space pasted from a web page
    ("Jan\u00a0Peeters", "janpeeters"),  # no-break space
    # Nothing.
    ("", ""),
    (None, ""),
    ("   ", ""),
    ("'.-", ""),
]


@pytest.mark.parametrize(("name", "expected"), USERNAME_GOLDEN)
def test_username_golden(name, expected):
    assert username(name) == expected


@pytest.mark.parametrize(
    ("name", "max_length", "expected"),
    [
        ("Jan.Peeters", 6, "jan.pe"),
        ("Jan.Peeters", 4, "jan"),  # "jan." loses its trailing dot
        ("Jan.Peeters", 3, "jan"),
        ("Jan.Peeters", 0, ""),
        ("Jan.Peeters", 100, "jan.peeters"),
        ("Marie-Louise", 7, "marie-l"),
        ("Marie-Louise", 6, "marie"),  # "marie-" loses its trailing hyphen
        (
            "Marie-Louise.Van den Bossche",
            SAM_ACCOUNT_NAME_MAX,
            "marie-louise.vandenb",
        ),
        (
            "Anne-Sophie-Charlotte.Vanden Heuvel-Verstraeten",
            SAM_ACCOUNT_NAME_MAX,
            "anne-sophie-charlott",
        ),
        ("Maximiliaan-Alexander.X", SAM_ACCOUNT_NAME_MAX, "maximiliaan-alexande"),
        ("Bartholomeus-Johannes.Peeters", SAM_ACCOUNT_NAME_MAX, "bartholomeus-johanne"),
        ("Abcdefghijklmnopqrs.T", SAM_ACCOUNT_NAME_MAX, "abcdefghijklmnopqrs"),  # dot at 20
        ("Zoë.Çelik", SAM_ACCOUNT_NAME_MAX, "zoe.celik"),
        (None, SAM_ACCOUNT_NAME_MAX, ""),
    ],
)
def test_username_max_length(name, max_length, expected):
    result = username(name, max_length)
    assert result == expected
    assert len(result) <= max_length


def test_sam_account_name_limit_is_twenty():
    assert SAM_ACCOUNT_NAME_MAX == 20


def test_username_rejects_a_negative_max_length():
    with pytest.raises(ValueError, match="max_length"):
        username("Jan", -1)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("王 伟", "lln123456789"),  # CJK: no transliteration here
        ("李小龍.王", "lln123456789"),
        ("محمد.علي", "lln123456789"),  # Arabic, right to left
        ("\u202eمحمد\u202c", "lln123456789"),  # with direction marks pasted along
        ("😀🎉", "lln123456789"),  # emoji only
        ("", "lln123456789"),
        (None, "lln123456789"),
        (" . - ", "lln123456789"),  # only separators: nothing is left
        ("Олена.Шевченко", "olena.shevchenko"),  # Cyrillic is spelled, no fallback
        ("Ελένη.Παππά", "eleni.pappa"),  # Greek too
        ("王.Wang", "wang"),  # some Latin letters: those, no fallback
    ],
)
def test_username_falls_back_when_nothing_of_the_name_is_left(name, expected):
    result = username(name, SAM_ACCOUNT_NAME_MAX, fallback="lln123456789")
    assert result == expected
    assert USERNAME_PATTERN.match(result)


def test_username_fallback_is_made_a_username_too_and_cut():
    assert username("王", 6, fallback="Pers 123456789") == "pers12"
    assert username("王", fallback=None) == ""  # no fallback given: empty, as before
    assert username("王", fallback="") == ""


@given(st.text(), st.integers(min_value=1, max_value=30))
def test_username_with_a_fallback_is_never_empty(text, max_length):
    result = username(text, max_length, fallback="lln1")
    assert result and USERNAME_PATTERN.match(result) and len(result) <= max_length


def test_username_converts_non_text():
    assert username(12345) == "12345"
    assert username(12.5) == "12.5"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Zoë Çelik", "Zoe Celik"),
        ("Jiří Novák", "Jiri Novak"),
        ("Straße", "Strasse"),
        ("STRAẞE", "STRASSE"),
        ("Søren Ølaf", "Soren Olaf"),
        ("Æsa Ærø", "AEsa AEro"),
        ("Œuvre cœur", "OEuvre coeur"),
        ("Łukasz Wałęsa", "Lukasz Walesa"),
        ("Đorđe", "Dorde"),
        ("Guðrún", "Gudrun"),
        ("Þór þorn", "Thor thorn"),
        ("Yıldız", "Yildiz"),
        ("Åse Ångström", "Ase Angstrom"),
        ("Dvořák", "Dvorak"),
        ("D’Hondt ‘t Kint ʼs", "D'Hondt 't Kint 's"),
        ("D´Hondt", "D'Hondt"),
        ("O`Brien", "O'Brien"),
        ("„Jan“", '"Jan"'),
        ("Marie‐Louise Marie‑Louise", "Marie-Louise Marie-Louise"),
        ("Zoë 😀 王", "Zoe  "),
        ("Jan\u00a0Peeters", "Jan Peeters"),
        ("Zoe¨", "Zoe"),  # a spacing diaeresis must not turn into a space
        ("ǿ ǽ Ǿ", "o ae O"),  # accented forms of ø and æ: accent off, then the letter
        ("ﬁne", "fine"),  # compatibility ligature
        ("", ""),
        (None, ""),
        (42, "42"),
    ],
)
def test_ascii_fold(name, expected):
    assert ascii_fold(name) == expected


@pytest.mark.parametrize(
    ("name", "separator", "expected"),
    [
        ("Jan-Pieter Marie", "", "JPM"),
        ("Zoë Anaïs", ".", "Z.A."),
        ("van den Bossche", "", "VDB"),
        ("Marie-Louise", ".", "M.L."),
        ("Łukasz", "", "L"),
        ("Þór", "", "T"),
        ("Œuvre", "", "O"),
        ("'t Kint", "", "TK"),
        ("  Jan   Peeters  ", "", "JP"),
        ("Jan – Pieter", "", "JP"),  # en dash
        ("Jan 😀 王 Pieter", "", "JP"),
        ("Jan 2", "", "J"),
        ("", ".", ""),
        (None, ".", ""),
    ],
)
def test_initials(name, separator, expected):
    assert initials(name, separator) == expected


@pytest.mark.parametrize(
    ("value", "fmt", "expected"),
    [
        ("2012-03-07", "%d%m", "0703"),
        ("2012-03-07", "%d-%m-%Y", "07-03-2012"),
        ("2012-03-07T08:30:15", "%Y%m%d %H%M%S", "20120307 083015"),
        ("2012-03-07T00:00:00", "%d/%m/%Y", "07/03/2012"),
        (" 2012-03-07 ", "%Y", "2012"),
        (dt.date(2012, 3, 7), "%d%m%y", "070312"),
        (dt.datetime(2012, 3, 7, 8, 30), "%H:%M", "08:30"),
        ("", "%d%m", ""),
        (None, "%d%m", ""),
    ],
)
def test_format_date(value, fmt, expected):
    assert format_date(value, fmt) == expected


def test_format_date_default_is_flemish_day_month_year():
    assert format_date("2012-03-07") == "07-03-2012"


@pytest.mark.parametrize(
    "value",
    [
        "07.03.1980",
        "morgen",
        "2012-02-30",  # no such day
        "2012-3-7",
        "2012-03-07T25:00:00",
        "2012-03-07 08:30:00",
        "2012-03-07T08:30",
        "٢٠١٢-٠٣-٠٧",  # Arabic-Indic digits: int() would accept them, the filter does not
        20120307,
    ],
)
def test_format_date_names_the_bad_value(value):
    with pytest.raises(ValueError, match=re.escape(repr(value)) + " is not a date"):
        format_date(value)


@pytest.mark.parametrize(
    ("value", "length", "expected"),
    [
        ("Peeters", 3, "Pee"),
        ("Peeters", 0, ""),
        ("Pe", 3, "Pe"),
        ("Zoë", 3, "Zoë"),
        (None, 3, ""),
        (2012, 2, "20"),
    ],
)
def test_left(value, length, expected):
    assert left(value, length) == expected


def test_left_rejects_a_negative_length():
    # Python slicing would silently cut from the end instead.
    with pytest.raises(ValueError, match="length"):
        left("Peeters", -2)


def test_filters_table():
    expected = {
        "ascii": ascii_fold,
        "username": username,
        "initials": initials,
        "date": format_date,
        "left": left,
    }
    assert expected == FILTERS


def test_filters_work_in_jinja():
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment()
    env.filters.update(FILTERS)
    template = env.from_string(
        '{{ (first ~ "." ~ last) | username(20) }} {{ first | initials(".") }} '
        '{{ born | date("%d%m") }} {{ last | left(3) | ascii }}'
    )
    rendered = template.render(first="Zoë", last="Çelik", born="2012-03-07")
    assert rendered == "zoe.celik Z. 0703 Cel"


@pytest.mark.parametrize("name", ["jan.peeters", "a", "a-b.c_d", "x1.y2-z3", "_"])
def test_username_pattern_accepts_usernames(name):
    assert USERNAME_PATTERN.match(name)


@pytest.mark.parametrize(
    "name",
    ["", "Jan", ".jan", "jan.", "-jan", "jan-", "jan..p", "jan.-p", "jan--p", "jan p", "jan\n"],
)
def test_username_pattern_rejects_the_rest(name):
    assert not USERNAME_PATTERN.match(name)


# Properties over any text: st.text() draws from all of Unicode, including lone combining marks,
# control characters and characters that NFKD expands into several others. Random Unicode rarely
# puts two separators side by side, so half of the texts come from a small alphabet of the
# characters the rules are about.
NAME_CHARS = (
    "aZé .-_'’´¨`ß\u00a0\u2010–ǿ\u0301😀王"  # no-break space, U+2010 hyphen, combining acute
)
texts = st.text() | st.text(alphabet=NAME_CHARS)


@given(texts)
@example("Zoë..-.Çelik--")
@example("ǿ´¨`")
def test_username_is_valid_or_empty(text):
    result = username(text)
    assert result == "" or USERNAME_PATTERN.match(result)


@given(texts, st.integers(min_value=0, max_value=40))
@example("Jan.Peeters", 4)
def test_username_respects_max_length(text, max_length):
    result = username(text, max_length)
    assert len(result) <= max_length
    assert result == "" or USERNAME_PATTERN.match(result)
    assert username(text).startswith(result)


@given(texts)
def test_username_is_idempotent(text):
    once = username(text)
    assert username(once) == once


@given(texts, st.integers(min_value=0, max_value=40))
def test_username_with_max_length_is_idempotent(text, max_length):
    once = username(text, max_length)
    assert username(once, max_length) == once


@given(texts)
def test_ascii_fold_is_ascii(text):
    assert ascii_fold(text).isascii()


@given(texts)
def test_ascii_fold_is_idempotent(text):
    once = ascii_fold(text)
    assert ascii_fold(once) == once


@given(st.text(alphabet=st.characters(max_codepoint=127)))
def test_ascii_fold_keeps_ascii(text):
    # The backtick is the one ASCII character that changes: it is read as an apostrophe.
    assert ascii_fold(text) == text.replace("`", "'")


@given(texts)
def test_initials_are_upper_case_ascii_letters(text):
    result = initials(text)
    assert result == "" or (result.isascii() and result.isalpha() and result.isupper())
