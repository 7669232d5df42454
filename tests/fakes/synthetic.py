"""Deterministic synthetic Informat data for the fake ``wsInformat.asmx`` server.

:func:`generate` builds a school community (pupils, parents, staff, classes) and turns it into the
rows every Informat operation would answer, already in the wire form of that operation. The same
arguments always give the same data: everything comes from one ``random.Random(seed)``, no set or
hash order is ever used.

Row contract (shared with :mod:`tests.fakes.informat_server`)
-------------------------------------------------------------
A row is a dict, field name in exact wire casing -> value:

- ``str``: element text; ``""`` renders ``<Field />``;
- ``None``: renders ``<Field xsi:nil="true" />``;
- absent key: the element is omitted (the null-string form);
- ``list``: a per-person container; each entry a dict (one child element) or ``None``
  (``<Child xsi:nil="true" />``); ``[]`` renders ``<Container />``.

Keys starting with ``_`` are server-internal and never rendered: ``_instelnr`` (six digits, which
instelnr answers the row, on every row), ``_hoofdstructuur`` (``"311"``/``"312"``), ``_gewijzigd``
(ISO date, for ``gewijzigdSinds``), ``_van``/``_tot`` (ISO dates or ``None`` = open: the row's
validity for ``referentiedatum``).

Dates are written as the operation writes them: ``Lln`` ``YYYY-MM-DD``; ``Leerkrachten`` and the
other ``Leerkrachten*`` sets ``DD.MM.YYYY``; every other set xs:dateTime ``2025-09-01T00:00:00``.

The data's notional "today" is 15 January, mid school year (:attr:`SyntheticData.today`); the
fake server uses it as its default today. The dated facts below hold for any reference day from
3 November to 27 March (the ``future_leaver``'s last day), so tests may pick their own day in
that window. Change dates (``_gewijzigd``, ``Gewijzigd``) never lie after today, and a quarter
of them fall in the six weeks before it.

The next school year: :func:`next_school_year` makes it from a year's rows (pupils promoted,
graduates gone, first-graders and newcomers, a class gone and one new, one staff member leaving
and one joining), and :func:`as_served_on` what Informat serves of both years on a given day
around the change (June, July-August, from 1 September).

Notable facts (:attr:`SyntheticData.notable`, all values strings)
----------------------------------------------------------------
Pupils (value: ``p_persoon``; all of them are registered in ``instelnrs[0]``):

``pupil``
    An ordinary pupil: one realised (``voorlopig`` 0) registration in ``instelnrs[0]``, one class.
``double_registration``
    Two ``Lln`` rows in ``instelnrs[0]``: ``voorlopig`` "0" and ``voorlopig`` "4" (begun 1 October,
    so both are visible today).
``two_schools_pupil``
    Realised and current in ``instelnrs[0]`` and ``instelnrs[1]`` (only with two or more instelnrs).
``school_changer``
    Left ``instelnrs[0]`` on 31 October, started in ``instelnrs[1]`` on 3 November (two or more
    instelnrs only).
``leaver``
    Left mid-year: ``einddatum`` 24 October, before today.
``leaver_before_start``
    ``begindatum`` 30 June, ``einddatum`` 29 August: gone before 1 September.
``future_leaver``
    ``einddatum`` 27 March: still there today.
``pre_registration``
    Only row is ``voorlopig`` "4" with ``begindatum`` 20 April (after today), no class.
``not_realised``
    ``voorlopig`` "1" (niet gerealiseerd), no class.
``same_day``
    ``begindatum == einddatum`` (1 September).
``long_name``
    ``Naam + " " + Voornaam`` is longer than 64 characters.
``duplicate_name``
    Two different pupils (``"p1,p2"``) with the same ``Naam`` and ``Voornaam``.
``diacritics``
    ``Naam`` "Çelik", ``Voornaam`` "Zoë".
``apostrophe``
    ``Naam`` "D'Hondt", ``Voornaam`` "Noémie".
``class_change``
    Two ``Groeptype`` 0 rows in ``Subgroepen``: the old class ended 13 October, the new one
    started 14 October (``Lln`` shows the new class).
``hoofdstructuur_312``
    Registered in a class of hoofdstructuur 312.
``no_relations`` / ``nil_relation`` / ``single_relation``
    ``Relaties`` is empty (``<Relaties />``) / holds a ``<Relatie xsi:nil="true" />`` among real
    ones / holds exactly one ``Relatie``.
``boarder``
    Has rows in ``Internen`` and the other internen sets.

Staff (value: ``p_persoon``):

``staff``
    An ordinary active staff member of ``instelnrs[0]``.
``two_schools_staff``
    ``Leerkrachten`` rows in ``instelnrs[0]`` and ``instelnrs[1]`` (first instelnr only if there
    is one).
``inactive_staff``
    ``Actief`` "N".
``staff_with_particle``
    ``Naam`` "Van den Bossche", ``Voornaam`` "Marie-Louise", teacher code "VDB"; titularis of at
    least one class.
``staff_empty_code``
    Has a ``CODE`` free field whose ``WaardeVrijVeld`` is ``""``.

Classes (value: ``Klascode`` in ``instelnrs[0]``):

``class_two_titularissen``
    Its ``Klastitularis`` names two staff members, comma-separated.
"""

from __future__ import annotations

import functools
import gc
import json
import random
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

Row = dict[str, Any]

# fmt: off
OPERATION_NAMES: tuple[str, ...] = (
    "Lln", "LlnExtra", "Subgroepen", "Adressen", "Relaties", "ComnummersRelatie", "EmailRelatie",
    "AdressenEmail", "Rekeningnummers", "Inschrijvingen", "SmartschoolUsers", "Leerkrachten",
    "LeerkrachtenVrijevelden", "LeerkrachtenOpdrachten", "LeerkrachtenBenoemingen",
    "LeerkrachtenDienstonderbrekingen", "LeerkrachtenNascholingen", "LeerkrachtenDiplomas",
    "Internen", "InternaatInschrijvingen", "InternenAdressen", "InternenEmailRelatie",
    "InternenComnummersRelatie", "InternenRelaties",
)
# fmt: on
"""Every operation the generator produces rows for (the fake server's table has the same names)."""

MIN_PUPILS = 30
"""Below this the notable facts would not fit."""


@dataclass
class SyntheticData:
    """Rows per operation plus the named facts tests look up."""

    rows: dict[str, list[Row]]
    notable: dict[str, str] = field(default_factory=dict)
    schooljaar: str = "2025-26"
    instelnrs: tuple[str, ...] = ()
    today: str = ""
    """The data's notional today (ISO); ``""`` when unknown."""
    seed: int | None = None
    pupils: int | None = None


# --- name and place pools ------------------------------------------------------------------------
# Common Flemish surnames come first and carry most of the weight; the rest exercise particles,
# apostrophes, hyphens and non-Dutch letters.
# fmt: off
_SURNAMES_COMMON: tuple[str, ...] = (
    "Peeters", "Janssens", "Maes", "Jacobs", "Mertens", "Willems", "Claes", "Goossens", "Wouters",
    "De Smet", "Dubois", "Lambert", "Dupont", "Hermans", "Van Acker", "Van den Bossche",
    "Vanden Eynde", "Van de Velde", "De Clercq", "D'Hondt", "De Backer", "Verhaegen", "Vermeulen",
    "Desmet", "Claeys", "Michiels", "Aerts", "Coppens", "Segers", "Verstraete", "Van Damme",
    "De Vos", "Van der Linden", "Vandenberghe", "Vanhoutte", "De Wilde", "Martens", "Smets",
    "Pauwels", "Verbeke", "Lemmens", "Leroy", "Van Hecke", "De Cock", "Cools", "Hendrickx",
)
_SURNAMES_RARE: tuple[str, ...] = (
    "El Amrani", "El Idrissi", "Benali", "Bouzid", "Çelik", "Yılmaz", "Demir", "Öztürk", "N'Diaye",
    "Diallo", "Nowak", "Kowalczyk", "Novák", "Dvořák", "Popescu", "Ivanov", "Nguyen", "O'Brien",
    "Müller", "Søndergaard", "Van Hoeck-De Wilde", "de Ghellinck", "'t Kint", "Op de Beeck",
    "In 't Ven", "Ter Beek", "Van 't Hof", "Dell'Aquila", "García López",
)
# fmt: on
_SURNAMES = _SURNAMES_COMMON + _SURNAMES_RARE
_SURNAME_CUM = tuple(
    float(i + 1) * 3
    if i < len(_SURNAMES_COMMON)
    else 3 * len(_SURNAMES_COMMON) + (i + 1 - len(_SURNAMES_COMMON))
    for i in range(len(_SURNAMES))
)

# fmt: off
_MALE: tuple[str, ...] = (
    "Lucas", "Louis", "Noah", "Arthur", "Liam", "Jules", "Adam", "Victor", "Mohamed", "Matteo",
    "Maël", "Jiří", "Søren", "Ølaf", "Jan", "Pieter-Jan", "Jean-Luc", "Ibrahim", "Emre", "Yusuf",
    "Ruben", "Wout", "Seppe", "Rémi", "Thibault", "Lars", "Finn", "Stan", "Kobe", "Mathis", "Ayoub",
    "Bilal", "Jonas", "Tuur", "Warre", "Bram", "Senne", "Arne", "Łukasz", "François",
)
_FEMALE: tuple[str, ...] = (
    "Emma", "Olivia", "Louise", "Mila", "Marie", "Elena", "Noor", "Lotte", "Zoë", "Noémie", "Anaïs",
    "Chloë", "Marie-Louise", "Ella", "Lina", "Fien", "Nina", "Yasmine", "Aïcha", "Fatima-Zahra",
    "Amélie", "Hélène", "Eline", "Saar", "Febe", "Ines", "Júlia", "Renée", "Ayşe", "Elif", "Sofía",
    "Jana", "Lore", "Hanne", "Ine", "Margaux", "Célestine", "Björk", "Maëlle",
)
_ADULT_MALE: tuple[str, ...] = (
    "Jan", "Peter", "Koen", "Bart", "Tom", "Kristof", "Wim", "Steven", "Dirk", "Geert", "Hassan",
    "Mustafa", "Frédéric", "Jiří", "Søren", "Luc", "Johan", "Filip", "Pieter", "Davy",
)
_ADULT_FEMALE: tuple[str, ...] = (
    "An", "Els", "Sofie", "Katrien", "Veerle", "Sarah", "Inge", "Leen", "Nathalie", "Fatima",
    "Hülya", "Hélène", "Ann-Sophie", "Griet", "Nele", "Evelien", "Joke", "Tine", "Anaïs",
    "Isabelle",
)
_PLACES: tuple[tuple[str, str], ...] = (
    ("9000", "Gent"), ("9100", "Sint-Niklaas"), ("9300", "Aalst"), ("8000", "Brugge"),
    ("9160", "Lokeren"), ("8500", "Kortrijk"), ("9060", "Zelzate"), ("9200", "Dendermonde"),
    ("2000", "Antwerpen"), ("9080", "Lochristi"), ("9040", "Sint-Amandsberg"),
    ("9050", "Gentbrugge"), ("9070", "Destelbergen"), ("9820", "Merelbeke"), ("9031", "Drongen"),
    ("9940", "Evergem"),
)
# fmt: on
_BIRTHPLACES: tuple[str, ...] = (
    *(p[1] for p in _PLACES),
    "Casablanca",
    "Istanbul",
    "Kraków",
    "Praha",
    "Liège",
    "Bruxelles",
    "Tanger",
    "København",
)
# fmt: off
_STREETS: tuple[str, ...] = (
    "Kerkstraat", "Stationsstraat", "Molenstraat", "Dorpsstraat", "Schoolstraat", "Nieuwstraat",
    "Kortrijksesteenweg", "Brusselsesteenweg", "Sint-Pietersnieuwstraat", "Coupure Links",
    "Rue de l'Église", "Vlaanderenstraat", "Onderbergen", "Sleepstraat", "Dampoortstraat",
    "Hogeweg", "Ter Platen", "Koning Albertlaan", "Sint-Denijslaan", "Oudenaardsesteenweg",
)
# fmt: on
_LEVENSBESCHOUWING: tuple[str, ...] = (
    "Rooms-katholieke godsdienst",
    "Islamitische godsdienst",
    "Niet-confessionele zedenleer",
    "Protestants-evangelische godsdienst",
    "Orthodoxe godsdienst",
)
_LB_CUM = (70.0, 85.0, 95.0, 98.0, 100.0)
# fmt: off
_NATIONALITEIT = (
    "Belg", "Belg", "Belg", "Belg", "Belg", "Belg", "Marokkaan", "Turk", "Pool", "Nederlander",
    "Tsjech", "Roemeen", "Fransman", "Deen",
)
_BEROEPEN = (
    "Bediende", "Arbeider", "Zelfstandige", "Leerkracht", "Verpleegkundige", "Ingenieur", "Student",
    "Werkzoekend", "Ambtenaar", "Arts", "Chauffeur",
)
_DIPLOMAS = (
    "Master in de wiskunde", "Bachelor in het onderwijs: secundair onderwijs",
    "Master in de taal- en letterkunde", "Master in de geschiedenis",
    "Educatieve master in de wetenschappen en technologie", "Bachelor lichamelijke opvoeding",
    "Master in de biochemie en biotechnologie", "Specifieke lerarenopleiding",
)
_VAKKEN = (
    ("WIS", "Wiskunde"), ("NED", "Nederlands"), ("FRA", "Frans"), ("ENG", "Engels"),
    ("GES", "Geschiedenis"), ("AAR", "Aardrijkskunde"), ("LO", "Lichamelijke opvoeding"),
    ("BIO", "Biologie"), ("CHE", "Chemie"), ("FYS", "Fysica"), ("LAT", "Latijn"),
    ("GOD", "Godsdienst"), ("ECO", "Economie"), ("INF", "Informatica"),
)
# fmt: on

# Official classes: per leerjaar the study options (afdcode, afdeling). The first option of a
# leerjaar is used first, so small schools still get the classic "1A", "3STWA", "6WEWI".
_OPTIONS: dict[int, tuple[tuple[str, str], ...]] = {
    1: (("1A", "Eerste leerjaar A"), ("1B", "Eerste leerjaar B")),
    2: (
        ("2LAT", "Latijn"),
        ("2STEM", "STEM-wetenschappen"),
        ("2ECO", "Economie en organisatie"),
        ("2B", "Tweede leerjaar B"),
    ),
    3: (
        ("3STWA", "STEM-wetenschappen"),
        ("3LAT", "Latijn"),
        ("3ECWE", "Economische wetenschappen"),
        ("3HUWE", "Humane wetenschappen"),
        ("3MW", "Maatschappij en welzijn"),
    ),
    4: (
        ("4STWA", "STEM-wetenschappen"),
        ("4LAT", "Latijn"),
        ("4ECWE", "Economische wetenschappen"),
        ("4HUWE", "Humane wetenschappen"),
        ("4MW", "Maatschappij en welzijn"),
    ),
    5: (
        ("5WEWI", "Wetenschappen-wiskunde"),
        ("5LAWI", "Latijn-wiskunde"),
        ("5ECMT", "Economie-moderne talen"),
        ("5HUWE", "Humane wetenschappen"),
    ),
    6: (
        ("6WEWI", "Wetenschappen-wiskunde"),
        ("6LAWI", "Latijn-wiskunde"),
        ("6ECMT", "Economie-moderne talen"),
        ("6HUWE", "Humane wetenschappen"),
    ),
}
_OPTIONS_312: tuple[tuple[str, str, int], ...] = (
    ("OV3LOG", "Opleidingsvorm 3 - Logistiek medewerker", 3),
    ("OV4KA", "Opleidingsvorm 4 - Kantoor", 4),
)
_SCHOOL_NAMES = (
    "Sint-Jozefscollege",
    "Onze-Lieve-Vrouwinstituut",
    "Sint-Barbaracollege",
    "Heilig-Hartinstituut",
    "Sint-Lievenscollege",
    "Atheneum Voskenslaan",
)


# --- small helpers -------------------------------------------------------------------------------
def _ymd(d: date) -> str:
    return d.isoformat()


def _dmy(d: date) -> str:
    return f"{d.day:02d}.{d.month:02d}.{d.year}"


def _dt(d: date) -> str:
    return d.isoformat() + "T00:00:00"


_ASCII_MAP = str.maketrans(
    {"ø": "o", "Ø": "O", "ł": "l", "Ł": "L", "ı": "i", "ß": "ss", "æ": "ae", "œ": "oe", "đ": "d"}
)


def ascii_fold(text: str) -> str:
    """Strip diacritics the way account-name rules do (``Çelik`` -> ``Celik``, ``Ølaf`` -> ``Olaf``)."""
    text = text.translate(_ASCII_MAP)
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


@functools.lru_cache(maxsize=4096)
def _login_part(text: str) -> str:
    # Cached: the same few hundred names come back for every pupil.
    return ascii_fold(text).lower().replace(" ", "").replace("'", "")


def _teacher_code(naam: str) -> str:
    """``Van den Bossche`` -> ``VDB``, ``Peeters`` -> ``PEE``, ``De Smet`` -> ``DSM``."""
    words = [w for w in ascii_fold(naam).replace("-", " ").replace("'", " ").split() if w]
    code = "".join(w[0] for w in words).upper()
    tail = words[-1].upper() if words else "X"
    i = 1
    while len(code) < 3 and i < len(tail):
        code += tail[i]
        i += 1
    return code[:3].ljust(3, "X")


class _Ids:
    """Distinct integer identifiers drawn from one pool, so no two persons ever share an id."""

    def __init__(self, rng: random.Random, count: int) -> None:
        self._ids = rng.sample(range(100_000, 9_999_999), count)
        self._next = 0

    def take(self) -> str:
        value = self._ids[self._next]
        self._next += 1
        return str(value)


@dataclass(slots=True)
class _School:
    instelnr: str
    name: str
    vestigingen: tuple[tuple[str, str], ...]
    classes: list[_Klas] = field(default_factory=list)
    staff: list[_Staff] = field(default_factory=list)


@dataclass(slots=True)
class _Klas:
    instelnr: str
    pklas: str
    code: str
    naam: str
    afdcode: str
    afdeling: str
    padfjaar: str
    graad: str
    leerjaar: str
    nr_admgr: str
    vestcode: str
    vestiging: str
    hoofdstructuur: str
    titularis: str | None = None
    groups: list[_Klas] = field(default_factory=list)
    groeptype: str = "0"


@dataclass(slots=True)
class _Inschrijving:
    pinschr: str
    school: _School
    klas: _Klas | None
    begin: date
    end: date | None
    voorlopig: str
    klasnr: str
    hs: str
    gewijzigd: date
    groups: list[_Klas] = field(default_factory=list)
    class_history: list[tuple[_Klas, date, date | None]] = field(default_factory=list)
    pre_registration_id: str | None = None


@dataclass(slots=True)
class _Relatie:
    prelatie: str
    type: str
    naam: str
    voornaam: str
    geslacht: str
    geboortedatum: date
    gsm: str
    email: str | None
    uuid: str
    toegevoegd: date
    gewijzigd: date


@dataclass(slots=True)
class _Pupil:
    pid: str
    naam: str
    voornaam: str
    geslacht: str
    geboortedatum: date
    geboorteplaats: str
    rijksregnr: str
    stamnr: str
    stamnr_kort: str
    nationaliteit: str
    levensbeschouwing: str
    straat: str
    nr: str
    bus: str | None
    postcode: str
    gemeente: str
    padres: str
    gsm: str | None
    email: str | None
    username: str
    inschrijvingen: list[_Inschrijving] = field(default_factory=list)
    relaties: list[_Relatie | None] = field(default_factory=list)
    boarder: bool = False
    gewijzigd: date = date(2000, 1, 1)


@dataclass(slots=True)
class _Staff:
    pid: str
    naam: str
    voornaam: str
    geslacht: str
    geboortedatum: date
    geboorteplaats: str
    rijksregnr: str
    stamnummer: str
    actief: str
    code: str
    username: str
    schools: list[_School] = field(default_factory=list)
    diploma: str = ""
    in_dienst: date = date(2000, 9, 1)


class _Generator:
    """Holds the random source and counters while one data set is built."""

    def __init__(self, pupils: int, instelnrs: Sequence[str], schooljaar: str, seed: int) -> None:
        if pupils < MIN_PUPILS:
            raise ValueError(f"pupils must be at least {MIN_PUPILS}, got {pupils}")
        if not instelnrs:
            raise ValueError("at least one instelnr is needed")
        self.rng = random.Random(seed)
        self.n_pupils = pupils
        self.n_staff = max(15, pupils // 10)
        self.instelnrs = tuple(str(int(i)).zfill(6) for i in instelnrs)
        if len(set(self.instelnrs)) != len(self.instelnrs):
            raise ValueError(f"duplicate instelnr in {instelnrs!r}")
        self.schooljaar = schooljaar
        try:
            self.year = int(schooljaar[:4])
        except ValueError:
            raise ValueError(f"schooljaar must look like 2025-26, got {schooljaar!r}") from None
        self.start = date(self.year, 9, 1)
        self.today = date(self.year + 1, 1, 15)
        # Persons, relations and registrations all come from one id pool: ids never collide.
        self.ids = _Ids(self.rng, pupils * 8 + self.n_staff * 2 + 10_000)
        self.usernames: dict[str, int] = {}
        self.rr_seq = 0
        self.notable: dict[str, str] = {}
        self.particle: _Staff | None = None
        self.active_staff: list[_Staff] = []

    # --- helpers ---------------------------------------------------------------------------------
    # random() scaled by hand is several times faster than randrange()/choice(), and just as
    # deterministic; that matters at 100,000 pupils.
    def _rint(self, a: int, b: int | None = None) -> int:
        """A random integer in ``[a, b)`` (``[0, a)`` with one argument)."""
        if b is None:
            a, b = 0, a
        return a + int(self.rng.random() * (b - a))

    def _pick(self, seq: Sequence[Any]) -> Any:
        return seq[int(self.rng.random() * len(seq))]

    def _surname(self) -> str:
        return self.rng.choices(_SURNAMES, cum_weights=_SURNAME_CUM)[0]

    def _rijksregnr(self) -> str:
        # Obviously fake: starts with "99" and is a plain counter.
        self.rr_seq += 1
        return f"99{self.rr_seq:09d}"

    def _username(self, voornaam: str, naam: str) -> str:
        base = f"{_login_part(voornaam)}.{_login_part(naam)}"
        seen = self.usernames.get(base, 0) + 1
        self.usernames[base] = seen
        return base if seen == 1 else f"{base}{seen}"

    def _date_between(self, lo: date, hi: date) -> date:
        return lo + timedelta(days=self._rint((hi - lo).days + 1))

    def _changed(self, lo: date) -> date:
        """A change date between ``lo`` and today; a quarter of them in the last six weeks."""
        if self.rng.random() < 0.25:
            lo = max(lo, self.today - timedelta(days=45))
        return self._date_between(min(lo, self.today), self.today)

    def _gsm(self) -> str:
        r = self.rng
        digits = f"{self._rint(470, 500)}{self._rint(1000000):06d}"
        form = r.random()
        if form < 0.6:
            return f"0{digits[:3]} {digits[3:5]} {digits[5:7]} {digits[7:]}"
        if form < 0.8:
            return f"+32 {digits[:3]} {digits[3:5]} {digits[5:7]} {digits[7:]}"
        return f"0{digits[:3]}/{digits[3:5]}.{digits[5:7]}.{digits[7:]}"

    def _guid(self) -> str:
        # A random (version 4) GUID, formatted by hand: uuid.UUID is slow at 100,000 pupils.
        h = f"{self.rng.getrandbits(128):032x}"
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"

    # --- schools, staff, classes -----------------------------------------------------------------
    def build_schools(self) -> list[_School]:
        schools = []
        for i, inst in enumerate(self.instelnrs):
            vest = (
                (("1", "Hoofdschool"), ("2", "Campus Zuid")) if i == 0 else (("1", "Hoofdschool"),)
            )
            schools.append(_School(inst, _SCHOOL_NAMES[i % len(_SCHOOL_NAMES)], vest))
        return schools

    def build_staff(self, schools: list[_School]) -> list[_Staff]:
        r = self.rng
        staff: list[_Staff] = []
        codes: dict[str, int] = {}
        for i in range(self.n_staff):
            female = r.random() < 0.6
            naam, voornaam = self._surname(), self._pick(_ADULT_FEMALE if female else _ADULT_MALE)
            if i == 2:
                naam, voornaam, female = "Van den Bossche", "Marie-Louise", True
            code = _teacher_code(naam)
            n = codes.get(code, 0) + 1
            codes[code] = n
            if n > 1:  # a second "PEE" becomes "PEE2", as schools do by hand
                code = f"{code}{n}"
            born = self._date_between(date(self.year - 64, 1, 1), date(self.year - 23, 12, 31))
            member = _Staff(
                pid=self.ids.take(),
                naam=naam,
                voornaam=voornaam,
                geslacht="2" if female else "1",
                geboortedatum=born,
                geboorteplaats=self._pick(_BIRTHPLACES),
                rijksregnr=self._rijksregnr(),
                stamnummer=str(self._rint(10**10, 10**11)),
                actief="N" if (i == 1 or (i > 3 and r.random() < 0.03)) else "J",
                code=code,
                username=self._username(voornaam, naam),
                diploma=self._pick(_DIPLOMAS),
                in_dienst=self._date_between(date(self.year - 30, 9, 1), self.start),
            )
            staff.append(member)
        # The notable staff work in the first school; then a few for every school in turn, then
        # the rest spread roughly like the pupils (the first school a bit bigger).
        weights = [2.0 if i == 0 else 1.0 for i in range(len(schools))]
        for i, member in enumerate(staff):
            if i < 5:
                school = schools[0]
            elif i < 5 + 6 * len(schools):
                school = schools[(i - 5) % len(schools)]
            else:
                school = r.choices(schools, weights=weights)[0]
            member.schools.append(school)
            school.staff.append(member)
        if len(schools) > 1:
            staff[0].schools.append(schools[1])
            schools[1].staff.append(staff[0])
        self.notable.update(
            staff=staff[3].pid,
            two_schools_staff=staff[0].pid,
            inactive_staff=staff[1].pid,
            staff_with_particle=staff[2].pid,
        )
        self.notable["staff_empty_code"] = staff[4].pid
        self.particle = staff[2]
        self.active_staff = [s for s in staff if s.actief == "J"]
        return staff

    def build_classes(self, schools: list[_School], pupils_per_school: list[int]) -> None:
        r = self.rng
        for si, (school, n) in enumerate(zip(schools, pupils_per_school, strict=True)):
            # Fall back on anybody active if a tiny school has no active staff of its own.
            titularissen = [s for s in school.staff if s.actief == "J"] or self.active_staff
            per_year = max(1, round(n / 6 / 22))
            specs: list[tuple[str, str, int, str]] = []
            for leerjaar in range(1, 7):
                options = _OPTIONS[leerjaar]
                for c in range(per_year):
                    afdcode, afdeling = options[c % len(options)]
                    specs.append((afdcode, afdeling, leerjaar, "311"))
            if si == 0:
                specs.extend((a, b, lj, "312") for a, b, lj in _OPTIONS_312)
            used: dict[str, int] = {}
            for afdcode, _afdeling, _lj, _hs in specs:
                used[afdcode] = used.get(afdcode, 0) + 1
            seen: dict[str, int] = {}
            for afdcode, afdeling, leerjaar, hs in specs:
                seen[afdcode] = seen.get(afdcode, 0) + 1
                code = afdcode if used[afdcode] == 1 else f"{afdcode}{seen[afdcode]}"
                vestcode, vestiging = school.vestigingen[
                    0 if leerjaar <= 2 or len(school.vestigingen) == 1 else 1
                ]
                klas = _Klas(
                    instelnr=school.instelnr,
                    pklas=self.ids.take(),
                    code=code,
                    naam=f"{code} {afdeling}",
                    afdcode=afdcode,
                    afdeling=afdeling,
                    padfjaar=self.ids.take(),
                    graad=str((leerjaar + 1) // 2),
                    leerjaar=str(leerjaar),
                    nr_admgr=f"{leerjaar}{sum(map(ord, afdcode)) % 1000:03d}{1 if hs == '311' else 2}",
                    vestcode=vestcode,
                    vestiging=vestiging,
                    hoofdstructuur=hs,
                )
                first = self._pick(titularissen)
                klas.titularis = f"{first.naam} {first.voornaam}"
                school.classes.append(klas)
                # Klasgroepen (Groeptype 1) from the third year on: "3LAT-a", "5WEWI-wis8".
                if leerjaar >= 3:
                    suffixes = ["a", "b"] + (["wis8"] if leerjaar >= 5 else [])
                    for suffix in suffixes:
                        group = _Klas(
                            instelnr=school.instelnr,
                            pklas=self.ids.take(),
                            code=f"{code}-{suffix}",
                            naam=f"{code} groep {suffix}",
                            afdcode=afdcode,
                            afdeling=afdeling,
                            padfjaar=klas.padfjaar,
                            graad=klas.graad,
                            leerjaar=klas.leerjaar,
                            nr_admgr=klas.nr_admgr,
                            vestcode=vestcode,
                            vestiging=vestiging,
                            hoofdstructuur=hs,
                            groeptype="1",
                        )
                        teacher = self._pick(titularissen)
                        # Sub-groups often have no titularis at all (element omitted).
                        group.titularis = (
                            f"{teacher.naam} {teacher.voornaam}" if r.random() < 0.5 else None
                        )
                        klas.groups.append(group)
        # Guaranteed facts: a class with two titularissen, and one taught by "Van den Bossche".
        first_school = schools[0]
        particle = self.particle
        assert particle is not None, "build_staff runs first"
        official = [k for k in first_school.classes if k.hoofdstructuur == "311"]
        official[0].titularis = f"{particle.naam} {particle.voornaam}"
        two = official[-1]
        other = next(s for s in first_school.staff if s.actief == "J" and s is not particle)
        two.titularis = f"{other.naam} {other.voornaam}, {particle.naam} {particle.voornaam}"
        self.notable["class_two_titularissen"] = two.code
        for school in schools:
            for klas in school.classes:
                if r.random() < 0.12 and klas is not two:
                    extra = self._pick(
                        [s for s in school.staff if s.actief == "J"] or self.active_staff
                    )
                    name = f"{extra.naam} {extra.voornaam}"
                    if klas.titularis != name:
                        klas.titularis = f"{klas.titularis}, {name}"

    # --- pupils ----------------------------------------------------------------------------------
    def build_pupils(self, schools: list[_School], pupils_per_school: list[int]) -> list[_Pupil]:
        r = self.rng
        rand = r.random
        pupils: list[_Pupil] = []
        # The notable pupils come first and all live in the first school.
        school_of = [schools[0]] * pupils_per_school[0]
        for school, n in zip(schools[1:], pupils_per_school[1:], strict=True):
            school_of.extend([school] * n)
        sept = self.start
        late_lo, late_hi = sept + timedelta(days=14), self.today - timedelta(days=3)
        official = {
            s.instelnr: [k for k in s.classes if k.hoofdstructuur == "311"] for s in schools
        }
        special = [k for k in schools[0].classes if k.hoofdstructuur == "312"]
        for i in range(self.n_pupils):
            school = school_of[i]
            # About 8% of the first school's pupils are in hoofdstructuur 312.
            if school is schools[0] and rand() < 0.08 and i >= 20:
                klas = self._pick(special)
            else:
                klas = self._pick(official[school.instelnr])
            female = rand() < 0.5
            naam = self._surname()
            voornaam = self._pick(_FEMALE if female else _MALE)
            leerjaar = int(klas.leerjaar)
            born_year = self.year - 11 - leerjaar + (1 if rand() < 0.03 else 0)
            if rand() < 0.15:
                born_year -= 1  # repeated a year
            born = date(born_year, 1, 1) + timedelta(days=self._rint(365))
            seq = i + 1  # stamboeknummers count up
            postcode, gemeente = self._pick(_PLACES)
            pupil = _Pupil(
                pid=self.ids.take(),
                naam=naam,
                voornaam=voornaam,
                geslacht="V" if female else "M",
                geboortedatum=born,
                geboorteplaats=self._pick(_BIRTHPLACES),
                rijksregnr=self._rijksregnr(),
                stamnr=f"{self.year - leerjaar + 1}{seq:05d}",
                stamnr_kort=str(seq),
                nationaliteit=self._pick(_NATIONALITEIT),
                levensbeschouwing=r.choices(_LEVENSBESCHOUWING, cum_weights=_LB_CUM)[0],
                straat=self._pick(_STREETS),
                nr=str(self._rint(1, 250)),
                bus=(None if rand() < 0.8 else ("" if rand() < 0.5 else f"B{self._rint(1, 9)}")),
                postcode=postcode,
                gemeente=gemeente,
                padres=self.ids.take(),
                gsm=self._gsm() if rand() < 0.6 else None,
                email=None,
                username="",
            )
            if rand() < 0.4:
                pupil.email = f"{_login_part(voornaam)}{self._rint(1, 99)}@example.be"
            begin = sept if rand() < 0.96 else self._date_between(late_lo, late_hi)
            pupil.inschrijvingen.append(self._inschrijving(school, klas, begin))
            pupil.relaties = self._relaties(naam)
            pupil.boarder = rand() < 0.04
            pupil.gewijzigd = self._changed(date(self.year - 2, 1, 1))
            pupils.append(pupil)
        self._special_pupils(pupils, schools)
        for pupil in pupils:
            pupil.username = self._username(pupil.voornaam, pupil.naam)
        return pupils

    def _inschrijving(
        self,
        school: _School,
        klas: _Klas | None,
        begin: date,
        end: date | None = None,
        voorlopig: str = "0",
    ) -> _Inschrijving:
        r = self.rng
        ins = _Inschrijving(
            pinschr=self.ids.take(),
            school=school,
            klas=klas,
            begin=begin,
            end=end,
            voorlopig=voorlopig,
            klasnr="" if klas is None or r.random() < 0.05 else str(self._rint(1, 29)),
            hs=klas.hoofdstructuur if klas else "311",
            gewijzigd=self._changed(min(begin, self.today) - timedelta(days=60)),
        )
        if klas is not None:
            ins.class_history.append((klas, begin, end))
            # Zero, one or two klasgroepen per pupil.
            if klas.groups:
                k = self._pick((0, 1, 1, 2))
                ins.groups = r.sample(klas.groups, min(k, len(klas.groups)))
        return ins

    def _relaties(self, naam: str) -> list[_Relatie | None]:
        r = self.rng
        n = r.choices((0, 1, 2, 3), cum_weights=(4, 26, 90, 100))[0]
        out: list[_Relatie | None] = []
        for j in range(n):
            if j == 0:
                kind, female = ("Moeder", True) if r.random() < 0.9 else ("Vader", False)
            elif j == 1:
                kind, female = (
                    ("Vader", False)
                    if out and out[0] and out[0].type == "Moeder"
                    else ("Moeder", True)
                )
            else:
                kind = self._pick(
                    ("Plusvader", "Plusmoeder", "Grootmoeder", "Voogd", "trajectbegeleider")
                )
                female = kind in ("Plusmoeder", "Grootmoeder") or r.random() < 0.5
            rel_naam = naam if kind == "Vader" and r.random() < 0.9 else self._surname()
            voornaam = self._pick(_ADULT_FEMALE if female else _ADULT_MALE)
            added = self._date_between(date(self.year - 8, 1, 1), self.today)
            email = (
                f"{_login_part(voornaam)}.{_login_part(rel_naam)}@example.be"
                if r.random() < 0.8
                else None
            )
            out.append(
                _Relatie(
                    prelatie=self.ids.take(),
                    type=kind,
                    naam=rel_naam,
                    voornaam=voornaam,
                    geslacht="V" if female else "M",
                    geboortedatum=self._date_between(
                        date(self.year - 60, 1, 1), date(self.year - 28, 12, 31)
                    ),
                    gsm=self._gsm(),
                    email=email,
                    uuid=self._guid(),
                    toegevoegd=added,
                    gewijzigd=self._changed(added),
                )
            )
        if out and r.random() < 0.02:
            out.insert(self._rint(len(out) + 1), None)  # a nil <Relatie>, as Informat sends
        return out

    def _special_pupils(self, pupils: list[_Pupil], schools: list[_School]) -> None:
        y, sept = self.year, self.start
        first = schools[0]
        official = [k for k in first.classes if k.hoofdstructuur == "311"]
        notable = self.notable
        p = pupils

        # The notable pupils all started on 1 September; their dates are changed from there.
        for pupil in p[:20]:
            ins = pupil.inschrijvingen[0]
            assert ins.klas is not None
            ins.begin, ins.class_history = sept, [(ins.klas, sept, None)]
        notable["pupil"] = p[19].pid

        # Realised row plus an application ("aanmelding") in the same school.
        p[0].inschrijvingen.append(self._inschrijving(first, None, date(y, 10, 1), voorlopig="4"))
        notable["double_registration"] = p[0].pid

        if len(schools) > 1:
            second = schools[1]
            other = [k for k in second.classes if k.hoofdstructuur == "311"]
            p[1].inschrijvingen.append(self._inschrijving(second, other[0], sept))
            notable["two_schools_pupil"] = p[1].pid
            left = p[2].inschrijvingen[0]
            assert left.klas is not None
            left.end, left.class_history = date(y, 10, 31), [(left.klas, sept, date(y, 10, 31))]
            p[2].inschrijvingen.append(self._inschrijving(second, other[-1], date(y, 11, 3)))
            notable["school_changer"] = p[2].pid

        def end_at(pupil: _Pupil, begin: date, end: date) -> None:
            ins = pupil.inschrijvingen[0]
            ins.begin, ins.end = begin, end
            assert ins.klas is not None
            ins.class_history = [(ins.klas, begin, end)]

        end_at(p[3], sept, date(y, 10, 24))
        notable["leaver"] = p[3].pid
        end_at(p[4], date(y, 6, 30), date(y, 8, 29))
        notable["leaver_before_start"] = p[4].pid
        end_at(p[5], sept, date(y + 1, 3, 27))
        notable["future_leaver"] = p[5].pid
        end_at(p[18], sept, sept)
        notable["same_day"] = p[18].pid

        p[6].inschrijvingen = [self._inschrijving(first, None, date(y + 1, 4, 20), voorlopig="4")]
        p[6].inschrijvingen[0].pre_registration_id = self._guid()
        notable["pre_registration"] = p[6].pid
        p[7].inschrijvingen = [self._inschrijving(first, None, sept, voorlopig="1")]
        notable["not_realised"] = p[7].pid

        p[8].naam = "Van den Bossche-Vanden Eynde de Ghellinck d'Elseghem Vaernewyck"
        p[8].voornaam = "Marie-Louise Anaïs Noémie"
        notable["long_name"] = p[8].pid
        for dup in (p[9], p[10]):
            dup.naam, dup.voornaam, dup.geslacht = "Peeters", "Lotte", "V"
        notable["duplicate_name"] = f"{p[9].pid},{p[10].pid}"
        p[11].naam, p[11].voornaam, p[11].geslacht = "Çelik", "Zoë", "V"
        notable["diacritics"] = p[11].pid
        p[12].naam, p[12].voornaam, p[12].geslacht = "D'Hondt", "Noémie", "V"
        notable["apostrophe"] = p[12].pid

        # Class change on 14 October: Subgroepen shows both memberships, Lln the new class.
        ins = p[13].inschrijvingen[0]
        old, new = official[0], official[1]
        ins.klas, ins.begin, ins.end = new, sept, None
        ins.class_history = [(old, sept, date(y, 10, 13)), (new, date(y, 10, 14), None)]
        ins.groups = []
        notable["class_change"] = p[13].pid

        hs312 = next(k for k in first.classes if k.hoofdstructuur == "312")
        p[14].inschrijvingen = [self._inschrijving(first, hs312, sept)]
        notable["hoofdstructuur_312"] = p[14].pid

        p[15].relaties = []
        notable["no_relations"] = p[15].pid
        rels = [rel for rel in self._relaties(p[16].naam) if rel is not None]
        while len(rels) < 2:
            rels = [rel for rel in self._relaties(p[16].naam) if rel is not None]
        p[16].relaties = [rels[0], None, *rels[1:]]
        notable["nil_relation"] = p[16].pid
        while True:
            rels = [rel for rel in self._relaties(p[17].naam) if rel is not None]
            if rels:
                p[17].relaties = rels[:1]
                break
        notable["single_relation"] = p[17].pid

        # Keep the other notable pupils out of the internaat, so their facts stay simple.
        for pupil in p[2:19]:
            pupil.boarder = False
        p[1].boarder = True
        notable["boarder"] = p[1].pid

    # --- rows ------------------------------------------------------------------------------------
    def rows(self, staff: list[_Staff], pupils: list[_Pupil]) -> dict[str, list[Row]]:
        """Every operation's rows, pupils and staff in name order as Informat lists them."""
        out: dict[str, list[Row]] = {name: [] for name in OPERATION_NAMES}
        # Informat lists pupils by name; duplicates and specials end up scattered, as in life.
        ordered = sorted(pupils, key=lambda q: (q.naam, q.voornaam, q.pid))
        for pupil in ordered:
            self._pupil_rows(pupil, out)
        for member in sorted(staff, key=lambda s: (s.naam, s.voornaam, s.pid)):
            self._staff_rows(member, out)
        return out

    def _pupil_rows(self, q: _Pupil, out: dict[str, list[Row]]) -> None:
        rand = self.rng.random
        by_school: dict[str, list[_Inschrijving]] = {}
        for ins in q.inschrijvingen:
            by_school.setdefault(ins.school.instelnr, []).append(ins)
        # Father and mother from the relations, for the parent fields of Lln and LlnExtra.
        moeder = next((x for x in q.relaties if x is not None and x.type == "Moeder"), None)
        vader = next((x for x in q.relaties if x is not None and x.type == "Vader"), None)
        for ins in q.inschrijvingen:
            out["Lln"].append(self._lln_row(q, ins, moeder, vader))
            out["Inschrijvingen"].append(self._inschrijvingen_row(q, ins))
            for klas, begin, end in ins.class_history:
                out["Subgroepen"].append(self._subgroep_row(q, ins, klas, begin, end, "0"))
            for group in ins.groups:
                out["Subgroepen"].append(self._subgroep_row(q, ins, group, ins.begin, ins.end, "1"))
        for inst, inschrijvingen in by_school.items():
            van = min(i.begin for i in inschrijvingen).isoformat()
            ends = [i.end for i in inschrijvingen]
            tot = None if any(e is None for e in ends) else max(e for e in ends if e).isoformat()
            hs = inschrijvingen[0].hs
            gew = max(
                [q.gewijzigd, *(x.gewijzigd for x in q.relaties if x is not None)]
            ).isoformat()
            # The internal keys, merged in place (copies of 50-field dicts add up at 100,000).
            person = {
                "_instelnr": inst,
                "_hoofdstructuur": hs,
                "_gewijzigd": q.gewijzigd.isoformat(),
                "_van": van,
                "_tot": tot,
            }
            family = person | {"_gewijzigd": gew}

            extra = self._lln_extra_row(q, inschrijvingen[0], moeder, vader)
            extra.update(person)
            out["LlnExtra"].append(extra)
            adres = self._adres_row(q)
            adres.update(person)
            out["Adressen"].append(adres)
            if vader is not None and moeder is not None and rand() < 0.15:
                second = self._second_adres_row(q, vader)
                second.update(person, _gewijzigd=vader.gewijzigd.isoformat())
                out["Adressen"].append(second)
            relaties = {"PPersoon": q.pid, "Relaties": [self._relatie(x) for x in q.relaties]}
            relaties.update(family)
            out["Relaties"].append(relaties)
            comnrs = {"PPersoon": q.pid, "Comnrs": self._comnrs(q)}
            comnrs.update(family)
            out["ComnummersRelatie"].append(comnrs)
            emails = {"PPersoon": q.pid, "Emails": self._emails(q)}
            emails.update(family)
            out["EmailRelatie"].append(emails)
            adressen_email = self._adressen_email_row(q, moeder)
            adressen_email.update(person)
            out["AdressenEmail"].append(adressen_email)
            if rand() < 0.4:
                titularis = moeder or vader
                rekening: Row = {
                    "PPersoon": q.pid,
                    "PRekening": self.ids.take(),
                    "Iban": f"BE00 9999 {self._rint(10000):04d} {self._rint(10000):04d}",
                    "Bic": self._pick(("GEBABEBB", "KREDBEBB", "BBRUBEBB", "GKCCBEBB")),
                    "Titularis": (
                        f"{titularis.naam} {titularis.voornaam}"
                        if titularis
                        else f"{q.naam} {q.voornaam}"
                    ),
                }
                if titularis:
                    rekening["PRelatie"] = titularis.prelatie
                rekening["Toegevoegd"] = _dt(q.gewijzigd - timedelta(days=200))
                rekening["Gewijzigd"] = _dt(q.gewijzigd)
                rekening.update(person)
                out["Rekeningnummers"].append(rekening)
            user: Row = {
                "PPersoon": q.pid,
                "Naam": q.naam,
                "Voornaam": q.voornaam,
                "Geboortedatum": _dt(q.geboortedatum),
                "Insz": q.rijksregnr,
                "Gebruikersnaam": q.username if rand() < 0.98 else "",
                "Status": "1",
            }
            user.update(person)
            out["SmartschoolUsers"].append(user)
            if q.boarder:
                self._internen_rows(q, inst, hs, van, tot, out, adres, relaties, comnrs, emails)

    def _lln_row(
        self, q: _Pupil, ins: _Inschrijving, moeder: _Relatie | None, vader: _Relatie | None
    ) -> Row:
        rand = self.rng.random
        klas = ins.klas
        school = ins.school
        vestcode, vestiging = (klas.vestcode, klas.vestiging) if klas else school.vestigingen[0]
        row: Row = {
            "p_persoon": q.pid,
            "Naam": q.naam,
            "Voornaam": q.voornaam,
            "geslacht": q.geslacht,
            "geboortedatum": _ymd(q.geboortedatum),
            "geboorteplaats": q.geboorteplaats,
            "rijksregnr": q.rijksregnr,
            "stamnr": q.stamnr,
            "Stamnr_kort": q.stamnr_kort,
        }
        if moeder is not None:
            row |= {"naamMa": moeder.naam, "voornaamMa": moeder.voornaam, "OverledenMa": "0"}
        if vader is not None:
            row |= {
                "naamPa": vader.naam,
                "voornaamPa": vader.voornaam,
                "overledenPa": "1" if rand() < 0.01 else "0",
            }
        row |= {
            "instelnr": school.instelnr,
            "school": school.name,
            "vestcode": vestcode,
            "vestiging": vestiging,
            "begindatum": _ymd(ins.begin),
        }
        if ins.end is not None:
            row["einddatum"] = _ymd(ins.end)
        else:  # an open end comes in all three "no value" forms
            form = rand()
            if form < 0.25:
                row["einddatum"] = ""
            elif form < 0.3:
                row["einddatum"] = None
        if klas is not None:
            row |= {
                "afdeling": klas.afdeling,
                "afdcode": klas.afdcode,
                "afdelingsjaar": klas.leerjaar,
                "Klas": klas.code,
                "Klasnr": ins.klasnr,
                "nr_admgr": klas.nr_admgr,
                "graad": klas.graad,
                "leerjaar": klas.leerjaar,
            }
        else:
            row |= {
                "afdeling": "",
                "afdcode": "",
                "afdelingsjaar": "",
                "Klas": "",
                "Klasnr": "",
                "nr_admgr": "",
                "graad": "",
                "leerjaar": "",
            }
        row["voorlopig"] = ins.voorlopig
        bike = rand()
        if bike < 0.15:
            row["fietsnummer"] = str(self._rint(1, 400))
        elif bike < 0.4:
            row["fietsnummer"] = ""
        row |= {
            "Klascode": klas.code if klas else "",
            "Klasnaam": klas.naam if klas else "",
            "Financierbaarheid": "Financierbaar" if rand() < 0.98 else "Niet financierbaar",
            "Levensbeschouwing": q.levensbeschouwing,
            "PInschrijving": ins.pinschr,
            "PAdfjaar": klas.padfjaar if klas else "0",
            "PInschKlas": str(int(ins.pinschr) + 1) if klas else "0",
            "PKlas": klas.pklas if klas else "0",
            "_instelnr": school.instelnr,
            "_hoofdstructuur": ins.hs,
            "_gewijzigd": ins.gewijzigd.isoformat(),
            "_van": ins.begin.isoformat(),
            "_tot": ins.end.isoformat() if ins.end else None,
        }
        return row

    def _inschrijvingen_row(self, q: _Pupil, ins: _Inschrijving) -> Row:
        klas = ins.klas
        school = ins.school
        vestcode, vestiging = (klas.vestcode, klas.vestiging) if klas else school.vestigingen[0]
        row: Row = {
            "PInschrijving": ins.pinschr,
            "PPersoon": q.pid,
            "Status": ins.voorlopig,
            "Begindatum": _dt(ins.begin),
            "Einddatum": _dt(ins.end) if ins.end else None,
            "Instelnr": school.instelnr,
            "School": school.name,
            "VestCode": vestcode,
            "Vestiging": vestiging,
            "AfdCode": klas.afdcode if klas else "",
            "Afdeling": klas.afdeling if klas else "",
            "Afdelingsjaar": klas.leerjaar if klas else "",
            "NrAdmgr": klas.nr_admgr if klas else "",
            "Graad": klas.graad if klas else "",
            "Leerjaar": klas.leerjaar if klas else "",
            "Financierbaarheid": "Financierbaar",
            "Levensbeschouwing": q.levensbeschouwing,
        }
        if ins.pre_registration_id:
            row["CapaciteitNaam"] = "Eerste leerjaar A"
            row["PreRegistrationId"] = ins.pre_registration_id
        row |= {
            "_instelnr": school.instelnr,
            "_hoofdstructuur": ins.hs,
            "_gewijzigd": ins.gewijzigd.isoformat(),
            "_van": ins.begin.isoformat(),
            "_tot": ins.end.isoformat() if ins.end else None,
        }
        return row

    def _subgroep_row(
        self,
        q: _Pupil,
        ins: _Inschrijving,
        klas: _Klas,
        begin: date,
        end: date | None,
        groeptype: str,
    ) -> Row:
        row: Row = {
            "p_persoon": q.pid,
            "Naam": q.naam,
            "Voornaam": q.voornaam,
            "School": ins.school.name,
            "Instelnr": klas.instelnr,
            "Vestcode": klas.vestcode,
            "Vestiging": klas.vestiging,
            "Klas": klas.naam,
            "BegindatumKlas": _dt(begin),
            "EinddatumKlas": _dt(end) if end else None,
            "Groeptype": groeptype,
            "Klasnr": ins.klasnr if groeptype == "0" else "",
        }
        if klas.titularis is not None:
            row["Klastitularis"] = klas.titularis
        row |= {
            "Klascode": klas.code,
            "Status": ins.voorlopig,
            "PKlas": klas.pklas,
            "PInschrklas": str(int(ins.pinschr) + 1),
            "PInschrijving": ins.pinschr,
            "Graad": klas.graad,
            "Leerjaar": klas.leerjaar,
            "_instelnr": klas.instelnr,
            "_hoofdstructuur": klas.hoofdstructuur,
            "_gewijzigd": ins.gewijzigd.isoformat(),
            "_van": begin.isoformat(),
            "_tot": end.isoformat() if end else None,
        }
        return row

    def _lln_extra_row(
        self, q: _Pupil, ins: _Inschrijving, moeder: _Relatie | None, vader: _Relatie | None
    ) -> Row:
        r = self.rng
        rand = r.random
        initials = ".".join(part[0] for part in q.voornaam.replace("-", " ").split()) + "."
        bis = q.nationaliteit != "Belg" and rand() < 0.3
        row: Row = {
            "pointer": q.pid,
            "naam": q.naam,
            "voornaam": q.voornaam,
            "Tweedevoornaam": self._pick(_FEMALE if q.geslacht == "V" else _MALE)
            if rand() < 0.5
            else "",
            "Sorteernaam": f"{q.naam} {q.voornaam}",
            "geboortedatum": _dt(q.geboortedatum),
            "geboorteplaats": q.geboorteplaats,
            "geboorteland": "België"
            if q.nationaliteit == "Belg"
            else self._pick(("Marokko", "Turkije", "Polen", "Nederland", "Tsjechië", "Roemenië")),
            "geslacht": q.geslacht,
            "initialen": initials,
            "nationaliteit": q.nationaliteit,
            "aanspreektitel": "",
            "aanspreeknaam": q.voornaam,
            "straat": q.straat,
            "nr": q.nr,
        }
        if q.bus is not None:
            row["bus"] = q.bus
        row |= {
            "hfdpostnr": q.postcode,
            "hfdgem": q.gemeente,
            "land": "België",
            "domicilietelefoon": f"09 {self._rint(200, 400)} {self._rint(10, 99)} "
            f"{self._rint(10, 99)}"
            if rand() < 0.3
            else "",
        }
        if q.gsm is not None:
            row["GSMeigen"] = q.gsm
        if vader is not None:
            row["GSMvader"] = vader.gsm
        if moeder is not None:
            row["GSMmoeder"] = moeder.gsm
        row |= {
            "Noodtelefoon": (moeder or vader).gsm if (moeder or vader) else "",
            "telefoonVader": "",
            "telefoonMoeder": "",
            "telefoonWerkVader": self._gsm() if vader is not None and rand() < 0.2 else "",
            "telefoonWerkMoeder": self._gsm() if moeder is not None and rand() < 0.2 else "",
            "Rijksregisternummer": "" if bis else q.rijksregnr,
            "BISnummer": q.rijksregnr if bis else "",
            "Stamnummer": q.stamnr,
        }
        if vader is not None:
            row |= {"VoornaamVader": vader.voornaam, "NaamVader": vader.naam}
        if moeder is not None:
            row |= {"VoornaamMoeder": moeder.voornaam, "NaamMoeder": moeder.naam}
        row["EmailSchool"] = f"{q.username}@lln.example.be"
        if q.email:
            row["EmailEigen"] = q.email
        row["EmailOuders"] = (
            ", ".join(x.email for x in (moeder, vader) if x is not None and x.email) or ""
        )
        if moeder is not None and moeder.email:
            row["EmailMoeder"] = moeder.email
        if vader is not None and vader.email:
            row["EmailVader"] = vader.email
        row["EmailPrive"] = q.email or ""
        row |= {
            "Levensbeschouwing": q.levensbeschouwing,
            "Huisdokter": f"Dr. {self._surname()}" if rand() < 0.7 else "",
            "TelefoonHuisdokter": "09 222 33 44" if rand() < 0.5 else "",
            "Verblijfstype": "Intern" if q.boarder else "Extern",
            "Internaat": "Internaat Sint-Jozef" if q.boarder else "",
            "Llnkaartnr": str(self._rint(100000, 999999)) if rand() < 0.7 else "",
        }
        bike = rand()
        if bike < 0.15:
            row["Fietsnummer"] = str(self._rint(1, 400))
        elif bike < 0.5:
            row["Fietsnummer"] = ""
        row["TelefoonInstelling"] = "09 225 11 22"
        if rand() < 0.05:
            row["TelefoonInstelling"] = None  # a nil now and then, the third empty form
        row["PSchoolVest"] = ins.klas.vestcode if ins.klas else "1"
        return row

    def _adres_row(self, q: _Pupil) -> Row:
        row: Row = {
            "p_persoon": q.pid,
            "PAdres": q.padres,
            "Domicilie": "1",
            "nickname": f"{q.naam} {q.voornaam}",
            "straat": q.straat,
            "nr": q.nr,
        }
        if q.bus is not None:
            row["dombus"] = q.bus
        row |= {
            "dlpostnr": q.postcode,
            "dlgem": q.gemeente,
            "Landcode": "B",
            "Begindatum": _dt(q.geboortedatum + timedelta(days=30)),
            "Einddatum": None,
        }
        return row

    def _second_adres_row(self, q: _Pupil, ouder: _Relatie) -> Row:
        postcode, gemeente = self._pick(_PLACES)
        return {
            "p_persoon": q.pid,
            "PAdres": str(int(q.padres) + 1),
            "Domicilie": "0",
            "nickname": f"{q.naam} {q.voornaam}",
            "straat": self._pick(_STREETS),
            "nr": str(self._rint(1, 120)),
            "dombus": "",
            "dlpostnr": postcode,
            "dlgem": gemeente,
            "Landcode": "B",
            "Begindatum": _dt(ouder.toegevoegd),
            "Einddatum": None,
        }

    def _relatie(self, x: _Relatie | None) -> Row | None:
        if x is None:
            return None
        rand = self.rng.random
        child: Row = {
            "PRelatie": x.prelatie,
            "Type": x.type,
            "Naam": x.naam,
            "Voornaam": x.voornaam,
            "Geslacht": x.geslacht,
        }
        if rand() < 0.7:
            child["Insz"] = self._rijksregnr()
        child |= {
            "Geboortedatum": _dt(x.geboortedatum),
            "Overleden": "0",
            "Beroep": self._pick(_BEROEPEN) if rand() < 0.6 else "",
            "BurgerlijkeStaat": self._pick(
                ("Gehuwd", "Samenwonend", "Gescheiden", "Ongehuwd", "Weduwe")
            ),
            "Nationaliteit": "Belg",
        }
        if x.type in ("Moeder", "Vader") and rand() < 0.8:
            child["Lpv"] = "1" if x.type == "Moeder" else "2"
        opm = rand()
        if opm < 0.05:
            child["Opmerking"] = "Contact enkel via e-mail & smartschool <graag>."
        elif opm < 0.15:
            child["Opmerking"] = ""
        child |= {
            "Toegevoegd": _dt(x.toegevoegd),
            "Gewijzigd": _dt(x.gewijzigd),
            "RelatieUuid": x.uuid,
        }
        return child

    def _comnrs(self, q: _Pupil) -> list[Row | None]:
        out: list[Row | None] = []
        if q.gsm:
            out.append({"Nummer": q.gsm, "Type": "Eigen", "Soort": "Gsm"})
        for x in q.relaties:
            if x is None or len(out) >= 3:
                continue
            out.append(
                {
                    "Nummer": x.gsm,
                    "Type": x.type,
                    "Soort": "Gsm" if self.rng.random() < 0.85 else "Werk",
                    "PRelatie": x.prelatie,
                }
            )
        if out and self.rng.random() < 0.03:
            out.insert(0, None)
        return out

    def _emails(self, q: _Pupil) -> list[Row | None]:
        out: list[Row | None] = []
        if q.email:
            out.append({"Adres": q.email, "Type": "Eigen"})
        for x in q.relaties:
            if x is None or x.email is None or len(out) >= 3:
                continue
            out.append({"Adres": x.email, "Type": "Privé", "PRelatie": x.prelatie})
        if out and self.rng.random() < 0.03:
            out.append(None)
        return out

    def _adressen_email_row(self, q: _Pupil, moeder: _Relatie | None) -> Row:
        email = moeder.email if moeder is not None else None
        row: Row = {
            "PPersoon": q.pid,
            "PAdres": q.padres,
            "AdressenUUID": self._guid(),
            "Facturatie": "1",
            "Percentage": "100",
            "EMail": email or "",
            "Schoolcom": "1",
            "AdresToegevoegd": _dt(q.gewijzigd - timedelta(days=400)),
            "AdresGewijzigd": _dt(q.gewijzigd),
        }
        if email and moeder is not None:
            row |= {
                "EMailToegevoegd": _dt(moeder.toegevoegd),
                "EMailGewijzigd": _dt(moeder.gewijzigd),
            }
        else:
            # A non-nullable .NET DateTime without a value is written as DateTime.MinValue.
            row |= {"EMailToegevoegd": "0001-01-01T00:00:00", "EMailGewijzigd": None}
        return row

    def _internen_rows(
        self,
        q: _Pupil,
        inst: str,
        hs: str,
        van: str,
        tot: str | None,
        out: dict[str, list[Row]],
        adres: Row,
        relaties: Row,
        comnrs: Row,
        emails: Row,
    ) -> None:
        begin = date.fromisoformat(van)
        pinschr = self.ids.take()
        common = {
            "_instelnr": inst,
            "_hoofdstructuur": hs,
            "_gewijzigd": q.gewijzigd.isoformat(),
            "_van": van,
            "_tot": tot,
        }
        end = _dt(date.fromisoformat(tot)) if tot else None
        groep = f"Leefgroep {self._rint(1, 6)}"
        out["Internen"].append(
            {
                "p_persoon": q.pid,
                "Naam": q.naam,
                "Voornaam": q.voornaam,
                "geslacht": q.geslacht,
                "geboortedatum": _dt(q.geboortedatum),
                "Internaat": "Internaat Sint-Jozef",
                "Groep": groep,
                "Kamer": f"K{self._rint(1, 40):02d}",
                "begindatum": _dt(begin),
                "einddatum": end,
                "Verblijfsregeling": "Week",
            }
            | common
        )
        out["InternaatInschrijvingen"].append(
            {
                "p_persoon": q.pid,
                "PInschrijving": pinschr,
                "Internaat": "Internaat Sint-Jozef",
                "begindatum": _dt(begin),
                "einddatum": end,
                "Status": "0",
                "Verblijfsregeling": "Week",
            }
            | common
        )
        out["InternenAdressen"].append(dict(adres))
        out["InternenRelaties"].append(dict(relaties))
        out["InternenComnummersRelatie"].append(dict(comnrs))
        out["InternenEmailRelatie"].append(dict(emails))

    def _staff_rows(self, s: _Staff, out: dict[str, list[Row]]) -> None:
        r = self.rng
        rand = r.random
        postcode, gemeente = self._pick(_PLACES)
        straat, nr = self._pick(_STREETS), str(self._rint(1, 200))
        personeelslid = f"{s.naam} {s.voornaam}"
        school_email = f"{_login_part(s.voornaam)}.{_login_part(s.naam)}@school.example.be"
        gewijzigd = self._changed(date(self.year - 2, 1, 1)).isoformat()
        # The notable "staff" member has a row in every staff set, however small the data.
        full = s.pid == self.notable.get("staff")
        for school in s.schools:
            inst = school.instelnr
            base = {
                "_instelnr": inst,
                "_hoofdstructuur": "311",
                "_gewijzigd": gewijzigd,
                "_van": None,
                "_tot": None,
            }
            row: Row = {
                "p_persoon": s.pid,
                "Stamnummer": s.stamnummer,
                "Naam": s.naam,
                "Voornaam": s.voornaam,
                "Geboortedatum": _dmy(s.geboortedatum),
                "Geboorteplaats": s.geboorteplaats,
                "Geslacht": s.geslacht,
                "Rijksregnr": s.rijksregnr,
                "Diploma": s.diploma,
                "Schooljaar": self.schooljaar,
                "Instelnr": inst,
                "Thuistelefoon": "" if rand() < 0.7 else "09 123 45 67",
                "Gsm": self._gsm(),
            }
            if rand() < 0.6:
                row["Prive_email"] = f"{_login_part(s.voornaam)}{self._rint(10, 99)}@example.com"
            row["School_email"] = school_email
            if rand() < 0.1:
                row["Opmerking"] = "Deeltijds: ma-di-do.\nVervanging tot de krokusvakantie."
            row |= {
                "Actief": s.actief,
                "Gebruikersnaam": s.username,
                "Wachtwoord": "",
                "GebruikersnaamAd": _login_part(s.voornaam)[:1] + _login_part(s.naam)[:15],
                "Straat": straat,
                "Nr": nr,
                "Bus": "",
                "Dlpostnr": postcode,
                "Dlgem": gemeente,
                "Landcode": "B",
                "Adres": f"{straat} {nr}, {postcode} {gemeente}",
                "Iban": f"BE00 9999 {self._rint(10000):04d} {self._rint(10000):04d}",
                "Bic": "GEBABEBB",
            }
            out["Leerkrachten"].append(row | base)
            code_value = "" if s.pid == self.notable.get("staff_empty_code") else s.code
            common = {"pPersoon": s.pid, "Personeelslid": personeelslid, "Stamnummer": s.stamnummer}
            out["LeerkrachtenVrijevelden"].append(
                common
                | {
                    "OmschrijvingVrijVeld": "CODE",
                    "WaardeVrijVeld": code_value,
                    "Datatype": "Tekst",
                    "Rubriek": "Algemeen",
                }
                | base
            )
            out["LeerkrachtenVrijevelden"].append(
                common
                | {
                    "OmschrijvingVrijVeld": "Lokaal",
                    "WaardeVrijVeld": f"{self._pick('ABC')}{self._rint(1, 4)}{self._rint(1, 20):02d}",
                    "Datatype": "Tekst",
                    "Rubriek": "Algemeen",
                }
                | base
            )
            if rand() < 0.5:
                out["LeerkrachtenVrijevelden"].append(
                    common
                    | {
                        "OmschrijvingVrijVeld": "Datum in dienst",
                        "WaardeVrijVeld": _dmy(s.in_dienst),
                        "Datatype": "Datum",
                        "Rubriek": "Loopbaan",
                    }
                    | base
                )
            for _ in range(self._pick((1, 1, 2))):
                vakcode, vak = self._pick(_VAKKEN)
                uren = self._rint(2, 23)
                opdracht: Row = {
                    "Instelnr": inst,
                    "Hfd": "311",
                    "p_persoon": s.pid,
                    "Personeelslid": personeelslid,
                    "Stamnummer": s.stamnummer,
                    "Prestatieuren": str(uren),
                    "Breuk": f"{uren}/22",
                    "Begindatum": _dmy(self.start),
                    "Einddatum": _dmy(date(self.year + 1, 8, 31)),
                    "Ambtcode": "302",
                    "Ambtomschrijving": "Leraar secundair onderwijs",
                    "Vakcode": vakcode,
                    "Vakomschrijving": vak,
                    "Graad": str(self._rint(1, 4)),
                    "Lesgroep": "",
                    "Opdrachttype": "Lesopdracht",
                    "POpdr": self.ids.take(),
                }
                out["LeerkrachtenOpdrachten"].append(opdracht | base)
            if rand() < 0.6 or full:
                vakcode, vak = self._pick(_VAKKEN)
                out["LeerkrachtenBenoemingen"].append(
                    {
                        "PPersoon": s.pid,
                        "Personeelslid": personeelslid,
                        "Stamnummer": s.stamnummer,
                        "Instelnr": inst,
                        "Hoofdstructuur": "311",
                        "PBenoeming": self.ids.take(),
                        "Ambtcode": "302",
                        "Ambtomschrijving": "Leraar secundair onderwijs",
                        "Vakcode": vakcode,
                        "Vakomschrijving": vak,
                        "Ingangsdatum": _dmy(s.in_dienst),
                        "Einddatum": "",
                        "Teller": str(self._rint(6, 23)),
                        "Noemer": "22",
                        "Graad": str(self._rint(1, 4)),
                    }
                    | base
                )
            if rand() < 0.1 or full:
                b = self._date_between(self.start, self.today)
                out["LeerkrachtenDienstonderbrekingen"].append(
                    {
                        "p_persoon": s.pid,
                        "Personeelslid": personeelslid,
                        "Code": "ZIE",
                        "Omschrijving": "Ziekteverlof",
                        "Begindatum": _dmy(b),
                        "Einddatum": _dmy(b + timedelta(days=self._rint(1, 30))),
                    }
                    | base
                )
            if rand() < 0.3 or full:
                b = self._date_between(self.start, self.today)
                out["LeerkrachtenNascholingen"].append(
                    {
                        "p_persoon": s.pid,
                        "Personeelslid": personeelslid,
                        "Omschrijving": self._pick(
                            (
                                "Eerste hulp",
                                "Differentiëren in de klas",
                                "ICT: Smartschool voor gevorderden",
                            )
                        ),
                        "Organisator": "Pedagogische begeleidingsdienst",
                        "Begindatum": _dmy(b),
                        "Einddatum": _dmy(b),
                        "Uren": str(self._pick((3, 6))),
                    }
                    | base
                )
            out["LeerkrachtenDiplomas"].append(
                {
                    "p_persoon": s.pid,
                    "Personeelslid": personeelslid,
                    "Diploma": s.diploma,
                    "Instelling": self._pick(
                        (
                            "Universiteit Gent",
                            "KU Leuven",
                            "Arteveldehogeschool",
                            "Odisee",
                            "HOGENT",
                        )
                    ),
                    "Datum": _dmy(date(s.geboortedatum.year + 23, 6, 30)),
                    "Niveau": "Master"
                    if s.diploma.startswith(("Master", "Educatieve"))
                    else "Bachelor",
                }
                | base
            )
            out["SmartschoolUsers"].append(
                {
                    "PPersoon": s.pid,
                    "Naam": s.naam,
                    "Voornaam": s.voornaam,
                    "Geboortedatum": _dt(s.geboortedatum),
                    "Insz": s.rijksregnr,
                    "Gebruikersnaam": s.username,
                    "Status": "1" if s.actief == "J" else "0",
                }
                | base
            )


def generate(
    pupils: int = 300,
    *,
    instelnrs: Sequence[str] = ("030569", "030577"),
    schooljaar: str = "2025-26",
    seed: int = 1,
) -> SyntheticData:
    """Build a deterministic school community: same arguments, identical rows.

    ``pupils`` counts persons, not rows (some have several registrations); staff is
    ``max(15, pupils // 10)``. The first instelnr holds the notable cases (see the module
    docstring) and a little more than its share of pupils.
    """
    # Millions of small objects and no cycles: the cyclic GC would only add a quarter to the time.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _generate(pupils, instelnrs, schooljaar, seed)
    finally:
        if gc_was_enabled:
            gc.enable()


def _generate(pupils: int, instelnrs: Sequence[str], schooljaar: str, seed: int) -> SyntheticData:
    gen = _Generator(pupils, instelnrs, schooljaar, seed)
    schools = gen.build_schools()
    staff = gen.build_staff(schools)
    n_schools = len(schools)
    # The first school needs room for the 20 notable pupils.
    share = (
        pupils // n_schools
        if n_schools == 1
        else min(pupils // n_schools, (pupils - 20) // (n_schools - 1))
    )
    per_school = [pupils - share * (n_schools - 1)] + [share] * (n_schools - 1)
    gen.build_classes(schools, per_school)
    pupil_list = gen.build_pupils(schools, per_school)
    rows = gen.rows(staff, pupil_list)
    return SyntheticData(
        rows=rows,
        notable=dict(gen.notable),
        schooljaar=schooljaar,
        instelnrs=gen.instelnrs,
        today=gen.today.isoformat(),
        seed=seed,
        pupils=pupils,
    )


def save_data(data: SyntheticData, directory: str | Path) -> Path:
    """Write one ``<Operation>.json`` per operation plus ``meta.json``; returns the directory."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in data.rows.items():
        with (out / f"{name}.json").open("w", encoding="utf-8") as fh:
            json.dump(rows, fh, ensure_ascii=False, separators=(",", ":"))
    meta = {
        "format": 1,
        "schooljaar": data.schooljaar,
        "instelnrs": list(data.instelnrs),
        "today": data.today,
        "seed": data.seed,
        "pupils": data.pupils,
        "operations": list(data.rows),
        "notable": data.notable,
    }
    (out / "meta.json").write_text(
        json.dumps(meta, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    return out


def load_data(directory: str | Path) -> SyntheticData:
    """Read what :func:`save_data` wrote."""
    src = Path(directory)
    meta = json.loads((src / "meta.json").read_text(encoding="utf-8"))
    rows: dict[str, list[Row]] = {}
    for name in meta.get("operations", []):
        path = src / f"{name}.json"
        rows[name] = json.loads(path.read_text(encoding="utf-8")) if path.exists() else []
    return SyntheticData(
        rows=rows,
        notable=dict(meta.get("notable", {})),
        schooljaar=meta.get("schooljaar", "2025-26"),
        instelnrs=tuple(meta.get("instelnrs", ())),
        today=meta.get("today", ""),
        seed=meta.get("seed"),
        pupils=meta.get("pupils"),
    )


# --- the next school year --------------------------------------------------------------------------
# Made from the rows of a year, not from the generator's objects, so that it works on any
# SyntheticData (generated, loaded from disk, or changed by a test) and keeps every continuing
# person's rows exactly as they were but for the new registration.

_PERSON_KEYS = ("p_persoon", "pointer", "PPersoon", "pPersoon")
_REGISTRATION_OPS = ("Lln", "Inschrijvingen", "Subgroepen")
_STAFF_OPS = frozenset(name for name in OPERATION_NAMES if name.startswith("Leerkrachten"))
_LAST_GRADE = 6
_NEW_IDS = (20_000_000, 89_999_999)
"""Ids of persons, registrations and classes made for the next year: eight digits, so they never
meet the generator's (at most seven) nor the tests' hand-made ``99999991``."""


def school_year_label(first_year: int) -> str:
    """``2026`` → ``"2026-27"``."""
    return f"{first_year}-{(first_year + 1) % 100:02d}"


def _first_year(schooljaar: str) -> int:
    try:
        return int(schooljaar[:4])
    except ValueError:
        raise ValueError(f"schooljaar must look like 2025-26, got {schooljaar!r}") from None


def _person_of(row: Row) -> str | None:
    for name in _PERSON_KEYS:
        if name in row:
            return row[name]
    return None


@dataclass
class _Class:
    """An official class as the rows of a year show it: a template row per registration set."""

    instelnr: str
    code: str
    leerjaar: int
    hs: str
    lln: Row
    sub: Row
    ins: Row


class _NextYear:
    """Holds the random source, the new ids and the classes while the next year is made."""

    def __init__(self, data: SyntheticData, seed: int) -> None:
        self.data = data
        self.year = _first_year(data.schooljaar)
        self.start = date(self.year + 1, 9, 1)
        self.last_day = date(self.year + 1, 6, 30)
        # A string seed is hashed the same way in every run (unlike hash()).
        self.rng = random.Random(f"next-year {data.schooljaar} {seed}")
        used = {str(v) for rows in data.rows.values() for row in rows for v in row.values()}
        self._ids = (str(i) for i in range(*_NEW_IDS) if str(i) not in used)
        self._skip = 0
        self.new_classes: list[_Class] = []

    def new_id(self) -> str:
        # Spread over the range (not 20000000, 20000001 …) while staying deterministic.
        for _ in range(self._rint(1, 50)):
            next(self._ids)
        return next(self._ids)

    def _rint(self, a: int, b: int) -> int:
        return a + int(self.rng.random() * (b - a))

    # --- classes -------------------------------------------------------------------------------
    def classes(self) -> dict[tuple[str, str], _Class]:
        """Every official class that has a realised registration, by (instelnr, Klascode)."""
        subs: dict[tuple[str, str], Row] = {}
        for row in self.data.rows.get("Subgroepen", []):
            if row.get("Groeptype") == "0":
                subs.setdefault((row["_instelnr"], row["Klascode"]), row)
        ins = {r["PInschrijving"]: r for r in self.data.rows.get("Inschrijvingen", [])}
        found: dict[tuple[str, str], _Class] = {}
        for row in self.data.rows["Lln"]:
            key = (row["_instelnr"], row.get("Klascode") or "")
            if row.get("voorlopig") != "0" or not key[1] or key in found:
                continue
            # Hand-written data may have no Subgroepen: the class row is made from Lln's.
            sub = subs.get(key) or {
                "Instelnr": key[0],
                "Klas": row.get("Klasnaam", key[1]),
                "Klascode": key[1],
                "PKlas": row.get("PKlas", ""),
                "Graad": row.get("graad", ""),
                "Leerjaar": row.get("leerjaar", ""),
            }
            found[key] = _Class(
                key[0],
                key[1],
                int(row["leerjaar"]),
                row.get("_hoofdstructuur", "311"),
                row,
                sub,
                ins.get(row.get("PInschrijving", ""), {}),
            )
        return found

    def promotions(self, classes: dict[tuple[str, str], _Class]) -> dict[tuple[str, str], _Class]:
        """Each class below the last grade → the class its pupils go to: the i-th class (by
        code) of a grade in a school and hoofdstructuur goes to the i-th of the next grade; a
        grade with no class next year gets a new one (``OV3LOG`` → ``OV4LOG``)."""
        grades: dict[tuple[str, str, int], list[_Class]] = {}
        for klas in sorted(classes.values(), key=lambda k: k.code):
            grades.setdefault((klas.instelnr, klas.hs, klas.leerjaar), []).append(klas)
        moves: dict[tuple[str, str], _Class] = {}
        for (instelnr, hs, leerjaar), group in sorted(grades.items()):
            if leerjaar >= _LAST_GRADE:
                continue
            higher = grades.get((instelnr, hs, leerjaar + 1))
            if not higher:
                higher = [self._raised(k) for k in group]
                grades[(instelnr, hs, leerjaar + 1)] = higher
            for i, klas in enumerate(group):
                moves[(instelnr, klas.code)] = higher[i % len(higher)]
        return moves

    def _raised(self, klas: _Class) -> _Class:
        """A new class one grade above *klas*: its code with the grade digit raised."""
        leerjaar = klas.leerjaar + 1
        code = re.sub(r"\d", str(leerjaar), klas.code, count=1)
        if code == klas.code:
            code = f"{klas.code}-{leerjaar}"
        afdeling = klas.lln.get("afdeling", "")
        pklas = self.new_id()
        grades = {"graad": str((leerjaar + 1) // 2), "leerjaar": str(leerjaar)}
        lln = {
            **klas.lln,
            "afdcode": code,
            "afdelingsjaar": str(leerjaar),
            "Klas": code,
            **grades,
            "Klascode": code,
            "Klasnaam": f"{code} {afdeling}",
            "PAdfjaar": self.new_id(),
            "PKlas": pklas,
        }
        sub = {
            **klas.sub,
            "Klas": f"{code} {afdeling}",
            "Klascode": code,
            "PKlas": pklas,
            "Graad": grades["graad"],
            "Leerjaar": grades["leerjaar"],
        }
        ins = {
            **klas.ins,
            "AfdCode": code,
            "Afdelingsjaar": str(leerjaar),
            "Graad": grades["graad"],
            "Leerjaar": grades["leerjaar"],
        }
        new = _Class(klas.instelnr, code, leerjaar, klas.hs, lln, sub, ins)
        self.new_classes.append(new)
        return new

    # --- registrations -------------------------------------------------------------------------
    def registration_rows(self, lln: Row, klas: _Class, ins: Row | None) -> dict[str, Row]:
        """The new year's Lln, Inschrijvingen and Subgroepen rows of one pupil in *klas*, made
        from their current Lln row (and Inschrijvingen row, if any)."""
        pinschr = self.new_id()
        begin = self.start.isoformat()
        dated = {"_hoofdstructuur": klas.hs, "_gewijzigd": begin, "_van": begin, "_tot": None}
        new_lln = {k: v for k, v in lln.items() if k != "einddatum"}
        for name in (
            "afdeling",
            "afdcode",
            "afdelingsjaar",
            "Klas",
            "nr_admgr",
            "graad",
            "leerjaar",
            "vestcode",
            "vestiging",
            "Klascode",
            "Klasnaam",
            "PAdfjaar",
            "PKlas",
        ):
            if name in klas.lln:
                new_lln[name] = klas.lln[name]
        new_lln |= {
            "begindatum": _ymd(self.start),
            "voorlopig": "0",
            "PInschrijving": pinschr,
            "PInschKlas": str(int(pinschr) + 1),
            **dated,
        }
        new_ins = dict(ins or klas.ins)
        new_ins |= {
            "PInschrijving": pinschr,
            "PPersoon": lln["p_persoon"],
            "Status": "0",
            "Begindatum": _dt(self.start),
            "Einddatum": None,
        }
        for name in ("VestCode", "Vestiging", "AfdCode", "Afdeling", "Afdelingsjaar", "NrAdmgr"):
            if name in klas.ins:
                new_ins[name] = klas.ins[name]
        new_ins |= {"Graad": klas.lln["graad"], "Leerjaar": klas.lln["leerjaar"], **dated}
        sub = {
            **klas.sub,
            "p_persoon": lln["p_persoon"],
            "Naam": lln["Naam"],
            "Voornaam": lln["Voornaam"],
            "School": lln.get("school", klas.sub.get("School", "")),
            "BegindatumKlas": _dt(self.start),
            "EinddatumKlas": None,
            "Groeptype": "0",
            "Klasnr": lln.get("Klasnr", ""),
            "Status": "0",
            "PInschrklas": str(int(pinschr) + 1),
            "PInschrijving": pinschr,
            **dated,
        }
        return {"Lln": new_lln, "Inschrijvingen": new_ins, "Subgroepen": sub}

    # --- new persons ---------------------------------------------------------------------------
    def new_name(self, female: bool) -> tuple[str, str]:
        naam = self.rng.choice(_SURNAMES_COMMON)
        return naam, self.rng.choice(_FEMALE if female else _MALE)

    def cloned(self, rows: list[tuple[str, Row]], pid: str, naam: str, voornaam: str) -> list:
        """Copies of one person's rows (operation, row) as a new person: key, names, national
        number and login changed; everything else (parents, address) as the template's."""
        old_pid = _person_of(rows[0][1])
        old = next((r for _op, r in rows if "Naam" in r and "Voornaam" in r), rows[0][1])
        old_naam, old_voornaam = old.get("Naam"), old.get("Voornaam")
        national = f"98{self._rint(0, 10**9):09d}"
        login = f"{_login_part(voornaam)}.{_login_part(naam)}"
        out = []
        for op, row in rows:
            new = {}
            for name, value in row.items():
                if value == old_pid:
                    value = pid
                elif name.lower() == "naam" and value == old_naam:
                    value = naam
                elif name.lower() == "voornaam" and value == old_voornaam:
                    value = voornaam
                elif name in ("rijksregnr", "Insz", "Rijksregisternummer", "Rijksregnr"):
                    value = national if value else value
                elif name in ("Gebruikersnaam", "GebruikersnaamAd") and value:
                    value = login
                elif name == "School_email" and value:
                    value = f"{login}@school.example.be"
                elif name == "Personeelslid":
                    value = f"{naam} {voornaam}"
                new[name] = value
            out.append((op, new))
        return out


def next_school_year(
    data: SyntheticData,
    *,
    seed: int = 1,
    stoppers_per_school: int = 2,
    newcomers_per_school: int = 2,
) -> SyntheticData:
    """The data of the school year after *data*'s (2025-26 → 2026-27), as Informat serves it
    once that year has begun: deterministic for the same *data* and *seed*.

    - **Promoted**: every pupil with a realised registration that runs to the end of the year
      (not ended by 30 June) moves up one grade: the i-th class of a grade (by code, per school
      and hoofdstructuur) goes to the i-th class of the next grade (``1A`` → ``2LAT``,
      ``5WEWI`` → ``6WEWI`` with the generator's classes). A grade that has no class yet gets a
      new one, its code's grade digit raised (``OV3LOG`` → ``OV4LOG``): a **new class**. A class
      no class moves into (``OV3LOG``: no hoofdstructuur-312 class in the grade below) and that
      gets no newcomers is **gone**.
    - **Graduates**: the pupils of the last grade (6) are not in the new year.
    - **Stoppers**: *stoppers_per_school* pupils of other grades per school leave the school
      between the years (one registration only, chosen at random).
    - **First-graders**: as many new pupils per school as it had graduates (at least 3), spread
      over its first-grade classes; and *newcomers_per_school* **newcomers** per school in a
      class of grades 2-6. Their rows copy a graduate's of the same school (parents, address)
      under a new ``p_persoon``, name and national number.
    - **Registrations** of the new year begin on 1 September of its first year: ``Lln``
      ``begindatum``, ``Inschrijvingen`` ``Begindatum``, ``Subgroepen`` ``BegindatumKlas``
      and the validity (``_van``) of every pupil row; new ``PInschrijving`` ids. Only official
      classes (``Groeptype`` 0) are in the new year's ``Subgroepen``.
    - **Staff**: the same, but one active staff member who is no class titular leaves and one
      joins (a copy of another's rows with a new ``p_persoon``, name and teacher code).

    :attr:`SyntheticData.notable` of the result names what changed (comma-separated values):
    ``graduates``, ``stoppers``, ``first_graders``, ``newcomers`` (p_persoon), ``promotions``
    (``instelnr:FROM>TO`` per class), ``classes_gone`` and ``classes_new``
    (``instelnr:Klascode``), ``staff_left`` and ``staff_joined``; plus the staff facts of
    *data* whose person is still there. Its ``today`` is 15 January of the new year.
    """
    work = _NextYear(data, seed)
    classes = work.classes()
    moves = work.promotions(classes)
    last = work.last_day.isoformat()
    ins_rows = {r["PInschrijving"]: r for r in data.rows.get("Inschrijvingen", [])}

    # Who is registered to the end of the year, and where.
    current: dict[tuple[str, str], Row] = {}
    for row in data.rows["Lln"]:
        key = (row["p_persoon"], row["_instelnr"])
        klas = (row["_instelnr"], row.get("Klascode") or "")
        if row.get("voorlopig") != "0" or klas not in classes or key in current:
            continue
        if (row.get("_tot") or "9999") < last or (row.get("_van") or "") > last:
            continue
        current[key] = row
    graduates = sorted(
        {pid for (pid, inst), row in current.items() if int(row["leerjaar"]) >= _LAST_GRADE}
    )
    registrations_of: dict[str, int] = {}
    for pid, _inst in current:
        registrations_of[pid] = registrations_of.get(pid, 0) + 1
    stoppers: list[str] = []
    for instelnr in data.instelnrs or sorted({inst for _p, inst in current}):
        candidates = sorted(
            pid
            for (pid, inst), row in current.items()
            if inst == instelnr
            and int(row["leerjaar"]) < _LAST_GRADE
            and registrations_of[pid] == 1
            and pid not in data.notable.values()
        )
        stoppers += work.rng.sample(candidates, min(stoppers_per_school, len(candidates)))
    gone = set(graduates) | set(stoppers)
    continuing = {key: row for key, row in current.items() if key[0] not in gone}

    rows: dict[str, list[Row]] = {name: [] for name in data.rows}
    for name in _REGISTRATION_OPS:
        rows.setdefault(name, [])
    registered: dict[tuple[str, str], _Class] = {}
    for (pid, inst), lln in sorted(continuing.items(), key=lambda kv: _name_order(kv[1])):
        if int(lln["leerjaar"]) >= _LAST_GRADE:
            continue  # a pupil in the last grade in one school only: gone from there
        klas = moves[(inst, lln["Klascode"])]
        registered[(pid, inst)] = klas
        for op, row in work.registration_rows(
            lln, klas, ins_rows.get(lln["PInschrijving"])
        ).items():
            rows[op].append(row)

    # Person rows of every other pupil data set, of the persons who stay, valid from 1 September.
    begin = work.start.isoformat()
    for name, op_rows in data.rows.items():
        if name in _REGISTRATION_OPS or name in _STAFF_OPS:
            continue
        for row in op_rows:
            if (_person_of(row), row.get("_instelnr")) in registered:
                rows[name].append({**row, "_van": begin, "_tot": None})

    # New pupils: first-graders in every school, and a few newcomers in higher grades.
    next_classes: dict[tuple[str, int], list[_Class]] = {}
    for klas in sorted({id(k): k for k in moves.values()}.values(), key=lambda k: k.code):
        next_classes.setdefault((klas.instelnr, klas.leerjaar), []).append(klas)
    for klas in sorted(classes.values(), key=lambda k: k.code):
        if klas.leerjaar == 1 and klas.hs == "311":
            next_classes.setdefault((klas.instelnr, 1), []).append(klas)
    first_graders: list[str] = []
    newcomers: list[str] = []
    for instelnr in sorted({inst for _p, inst in current}):
        templates = [pid for pid in graduates if (pid, instelnr) in current] or sorted(
            pid for pid, inst in current if inst == instelnr
        )
        if not templates:
            continue
        graduated_here = sum((pid, instelnr) in current for pid in graduates)
        places = [
            *([1] * max(3, graduated_here)),
            *(work._rint(2, _LAST_GRADE + 1) for _ in range(newcomers_per_school)),
        ]
        for n, leerjaar in enumerate(places):
            choices = next_classes.get((instelnr, leerjaar)) or next_classes.get((instelnr, 1))
            if not choices:
                continue
            klas = choices[n % len(choices)]
            template = templates[n % len(templates)]
            pid = work.new_id()
            female = work.rng.random() < 0.5
            naam, voornaam = work.new_name(female)
            own = [
                (op, r)
                for op, op_rows in data.rows.items()
                if op not in _STAFF_OPS
                for r in op_rows
                if _person_of(r) == template and r.get("_instelnr") == instelnr
            ]
            lln = next(r for op, r in own if op == "Lln" and r["p_persoon"] == template)
            for op, row in work.cloned(own, pid, naam, voornaam):
                if op in _REGISTRATION_OPS:
                    continue
                rows[op].append({**row, "_van": begin, "_tot": None})
            ((_op, new_lln),) = work.cloned([("Lln", lln)], pid, naam, voornaam)
            born = date(work.year + 1 - 11 - leerjaar, 1 + n % 12, 1 + n % 28)
            new_lln |= {"geslacht": "V" if female else "M", "geboortedatum": _ymd(born)}
            ins = ins_rows.get(lln["PInschrijving"])
            for op, row in work.registration_rows(new_lln, klas, ins).items():
                rows[op].append(row)
            (first_graders if leerjaar == 1 else newcomers).append(pid)

    # Staff: one leaves, one joins; the rest as they were.
    staff_rows = {name: list(data.rows.get(name, [])) for name in _STAFF_OPS if name in data.rows}
    titulars = {
        part.strip()
        for row in data.rows.get("Subgroepen", [])
        for part in (row.get("Klastitularis") or "").split(",")
    }
    names = {
        r["p_persoon"]: f"{r['Naam']} {r['Voornaam']}" for r in staff_rows.get("Leerkrachten", [])
    }
    active = sorted(
        {
            r["p_persoon"]
            for r in staff_rows.get("Leerkrachten", [])
            if r.get("Actief") == "J" and r["p_persoon"] not in data.notable.values()
        },
        key=lambda pid: (names[pid] in titulars, pid),  # who teaches no class leaves first
    )
    staff_left = staff_joined = ""
    if len(active) >= 2:
        staff_left, model = active[0], work.rng.choice(active[1:])
        staff_joined = work.new_id()
        naam, voornaam = work.new_name(work.rng.random() < 0.6)
        code = f"{ascii_fold(naam).upper().replace(' ', '')[:3]}{work._rint(2, 9)}"
        own = [(op, r) for op in staff_rows for r in staff_rows[op] if _person_of(r) == model]
        for op, row in work.cloned(own, staff_joined, naam, voornaam):
            if row.get("OmschrijvingVrijVeld") == "CODE":
                row["WaardeVrijVeld"] = code
            staff_rows[op].append(row)
        for op in staff_rows:
            staff_rows[op] = [r for r in staff_rows[op] if _person_of(r) != staff_left]
        # The newcomer takes over the classes of the one who left, if any.
        for row in rows["Subgroepen"]:
            if names[staff_left] in (row.get("Klastitularis") or ""):
                row["Klastitularis"] = row["Klastitularis"].replace(
                    names[staff_left], f"{naam} {voornaam}"
                )
    label = school_year_label(work.year + 1)
    for op, op_rows in staff_rows.items():
        rows[op] = [{**r, "Schooljaar": label} if "Schooljaar" in r else r for r in op_rows]
    for name in ("Lln", "Inschrijvingen", "Subgroepen"):
        rows[name].sort(key=_name_order)

    staying = {_person_of(r) for op_rows in rows.values() for r in op_rows}
    used = {(k.instelnr, k.code) for k in registered.values()}
    used |= {(r["_instelnr"], r["Klascode"]) for r in rows["Lln"]}
    notable = {
        key: value
        for key, value in data.notable.items()
        if key.startswith(("staff", "two_schools_staff", "inactive_staff")) and value in staying
    }
    notable |= {
        "graduates": ",".join(graduates),
        "stoppers": ",".join(sorted(stoppers)),
        "first_graders": ",".join(first_graders),
        "newcomers": ",".join(newcomers),
        "promotions": ",".join(
            f"{inst}:{code}>{k.code}" for (inst, code), k in sorted(moves.items())
        ),
        "classes_gone": ",".join(f"{i}:{c}" for i, c in sorted(classes) if (i, c) not in used),
        "classes_new": ",".join(
            f"{k.instelnr}:{k.code}" for k in work.new_classes if (k.instelnr, k.code) in used
        ),
        "staff_left": staff_left,
        "staff_joined": staff_joined,
    }
    return SyntheticData(
        rows=rows,
        notable=notable,
        schooljaar=label,
        instelnrs=data.instelnrs,
        today=date(work.year + 2, 1, 15).isoformat(),
        seed=seed,
        pupils=len({r["p_persoon"] for r in rows["Lln"]}),
    )


def _name_order(row: Row) -> tuple[str, str, str]:
    return (row.get("Naam", ""), row.get("Voornaam", ""), row.get("p_persoon", ""))


def as_served_on(day: date, this_year: SyntheticData, next_year: SyntheticData) -> dict:
    """What Informat serves on *day* around the change from *this_year* to *next_year* (made
    by :func:`next_school_year`), for :class:`~tests.fakes.informat_server.InformatServer`:
    ``{schooljaar: data}``, the year a nightly run asks for (``schooljaar: auto``) first.

    - **Until 30 June**: *this_year* as it is.
    - **From 1 July**: *this_year* with the registrations of the graduates and stoppers ended
      on 30 June (``einddatum``, ``Einddatum``, ``EinddatumKlas`` and the rows' validity), so a
      read with a ``referentiedatum`` after it no longer finds them; everybody else is still
      registered in the old year through the summer.
    - **From 1 September**: the same two years, *next_year* first.

    *next_year* is served throughout (Informat holds the new year's registrations before it
    begins; they begin on 1 September, so only a ``referentiedatum`` inside the new year finds
    them). Both years' ``today`` is *day*: what an empty ``referentiedatum`` stands for.
    """
    year = _first_year(this_year.schooljaar)
    if _first_year(next_year.schooljaar) != year + 1:
        raise ValueError(f"{next_year.schooljaar} is not the year after {this_year.schooljaar}")
    old = this_year
    if day >= date(year + 1, 7, 1):
        leaving = {
            pid
            for key in ("graduates", "stoppers")
            for pid in next_year.notable.get(key, "").split(",")
            if pid
        }
        old = _ended(this_year, leaving, date(year + 1, 6, 30))
    new = next_year
    old = SyntheticData(**{**vars(old), "today": day.isoformat()})
    new = SyntheticData(**{**vars(new), "today": day.isoformat()})
    if day >= date(year + 1, 9, 1):
        return {new.schooljaar: new, old.schooljaar: old}
    return {old.schooljaar: old, new.schooljaar: new}


def _ended(data: SyntheticData, persons: set[str], last: date) -> SyntheticData:
    """*data* with every registration and row of *persons* ended on *last* (where it ran on)."""
    iso = last.isoformat()
    ends = {"Lln": ("einddatum", _ymd(last)), "Inschrijvingen": ("Einddatum", _dt(last))}
    ends["Subgroepen"] = ("EinddatumKlas", _dt(last))
    rows: dict[str, list[Row]] = {}
    for name, op_rows in data.rows.items():
        out = []
        for row in op_rows:
            if _person_of(row) in persons and (row.get("_tot") is None or row["_tot"] > iso):
                row = {**row, "_tot": iso}
                if name in ends:
                    field_name, value = ends[name]
                    row[field_name] = value
            out.append(row)
        rows[name] = out
    return SyntheticData(**{**vars(data), "rows": rows})
