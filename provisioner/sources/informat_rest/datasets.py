"""What the REST source offers: its endpoints, and the data sets made from their answers.

The web service's data sets (``Lln``, ``Subgroepen``, ``Leerkrachten``,
``LeerkrachtenVrijevelden``) are offered under their own names with their own field names, so
the same mappings read either source; each is made from REST objects by the correspondence table
below (``docs/informat.md`` shows it). Fields of those data sets that REST does not hold are
listed with the reason, so that ``validate`` names them. REST's own objects are offered too, under
their REST names (``students``, ``registrations``, ``employees``), for what only REST has.

Every value arrives as text, the way the web service gives it: numbers as digits, ``true`` and
``false``, dates as ISO days; an empty value is no value (the field is absent).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from provisioner.errors import ConfigError

Api = Literal["leerlingen", "personeel"]

SCOPES: Mapping[Api, str] = {
    "leerlingen": "api_informat_sas_leerlingen.leerlingen.{instelnr}",
    "personeel": "api_informat_sas_personeel.personeel.{instelnr}",
}
"""The scope of each API for one school (the reference's section 12.1)."""


@dataclass(frozen=True)
class Endpoint:
    name: str
    """Where its answers go in a snapshot, and the name of REST's own data set of it."""
    api: Api
    path: str
    wrapper: str | None
    """The answer's member holding the array (``{"students": [...]}``); None: a bare array."""
    headers: Mapping[str, str] = field(default_factory=dict)
    verified: bool = True
    """False where no public source shows the answer's fields (best guess)."""


ENDPOINTS: Mapping[str, Endpoint] = {
    e.name: e
    for e in (
        Endpoint("students", "leerlingen", "/1/students", "students"),
        Endpoint("registrations", "leerlingen", "/1/registrations", "registrations"),
        Endpoint("employees", "personeel", "/employees", None, {"Api-Version": "2"}),
        Endpoint(
            "ownfields", "personeel", "/employees/OwnFields", None, {"Api-Version": "2"}, False
        ),
    )
}


@dataclass(frozen=True)
class RestDataset:
    name: str
    key: str
    endpoints: tuple[str, ...]
    """The endpoints it is made from, the first one always needed."""
    fields: Mapping[str, str]
    """Its field → where it comes from: ``endpoint.field`` (``registrations.stamnr``,
    ``klassen.klasCode`` for an ``inschrKlassen`` row), or ``config.school_names``."""
    unavailable: Mapping[str, str] = field(default_factory=dict)
    """Web-service fields with no REST counterpart → why."""
    verified: bool = True
    search_fields: tuple[str, ...] = ()


_NOT_IN_REST = "the REST API has no such field (the web service has)"
_PARENTS = "parents are REST's students.relaties, not fields of a registration"

# fmt: off
DERIVED: Mapping[str, RestDataset] = {d.name: d for d in (
    RestDataset("Lln", "p_persoon", ("registrations", "students"), {
        "p_persoon": "registrations.pPersoon", "Naam": "students.naam",
        "Voornaam": "students.voornaam", "geslacht": "students.geslacht",
        "geboortedatum": "students.geboortedatum", "rijksregnr": "students.rijksregisternr",
        "stamnr": "registrations.stamnr", "instelnr": "registrations.instelnr",
        "school": "config.school_names", "vestcode": "registrations.vestCode",
        "begindatum": "registrations.begindatum", "einddatum": "registrations.einddatum",
        "afdcode": "registrations.afdCode", "nr_admgr": "registrations.nrAdmgrp",
        "graad": "registrations.graad", "leerjaar": "registrations.leerjaar",
        "voorlopig": "registrations.status", "PInschrijving": "registrations.pInschr",
        "Klas": "klassen.klasCode", "Klascode": "klassen.klasCode", "Klasnaam": "klassen.klas",
        "Klasnr": "klassen.klasnummer", "PKlas": "klassen.pKlas",
    }, {
        "Stamnr_kort": _NOT_IN_REST, "geboorteplaats": _NOT_IN_REST,
        "naamMa": _PARENTS, "voornaamMa": _PARENTS, "OverledenMa": _PARENTS,
        "naamPa": _PARENTS, "voornaamPa": _PARENTS, "overledenPa": _PARENTS,
        "vestiging": "REST gives the vestiging's code only (vestcode)",
        "afdeling": "REST gives the afdeling's code only (afdcode)",
        "afdelingsjaar": _NOT_IN_REST, "fietsnummer": _NOT_IN_REST,
        "Financierbaarheid": "REST gives a code (registrations.finCode), not the text",
        "Levensbeschouwing": _NOT_IN_REST, "PAdfjaar": _NOT_IN_REST, "PInschKlas": _NOT_IN_REST,
    }, search_fields=("stamnr",)),
    RestDataset("Subgroepen", "p_persoon", ("registrations", "students"), {
        "p_persoon": "registrations.pPersoon", "Naam": "students.naam",
        "Voornaam": "students.voornaam", "School": "config.school_names",
        "Instelnr": "registrations.instelnr", "Vestcode": "registrations.vestCode",
        "Klas": "klassen.klas", "BegindatumKlas": "klassen.begindatum",
        "EinddatumKlas": "klassen.einddatum", "Groeptype": "klassen.groepType",
        "Klasnr": "klassen.klasnummer", "Klascode": "klassen.klasCode",
        "Status": "registrations.status", "PKlas": "klassen.pKlas",
        "PInschrijving": "registrations.pInschr", "Graad": "registrations.graad",
        "Leerjaar": "registrations.leerjaar",
    }, {
        "Klastitularis": "the REST API does not say who a class's titularis is",
        "Vestiging": "REST gives the vestiging's code only (Vestcode)",
        "PInschrklas": _NOT_IN_REST,
    }),
    RestDataset("Leerkrachten", "p_persoon", ("employees",), {
        "p_persoon": "employees.pPersoon", "Stamnummer": "employees.stamnummer",
        "Naam": "employees.naam", "Voornaam": "employees.voornaam",
        "Geboortedatum": "employees.geboortedatum", "Geslacht": "employees.geslacht",
        "Rijksregnr": "employees.rijksregisternr", "Instelnr": "unit",
        "Actief": "employees.isActief", "School_email": "employees.email",
    }, {
        f: _NOT_IN_REST for f in (
            "Geboorteplaats", "Diploma", "Schooljaar", "Thuistelefoon", "Gsm", "Prive_email",
            "Opmerking", "Gebruikersnaam", "Wachtwoord", "GebruikersnaamAd", "WachtwoordAd",
            "Straat", "Nr", "Bus", "Dlpostnr", "Dlgem", "Landcode", "Adres", "Iban", "Bic",
        )
    }, verified=False, search_fields=("Stamnummer",)),
    RestDataset("LeerkrachtenVrijevelden", "pPersoon", ("ownfields",), {
        "pPersoon": "ownfields.pPersoon", "OmschrijvingVrijVeld": "ownfields.omschrijving",
        "WaardeVrijVeld": "ownfields.waarde", "Datatype": "ownfields.datatype",
        "Rubriek": "ownfields.rubriek",
    }, {
        "Personeelslid": _NOT_IN_REST, "Stamnummer": _NOT_IN_REST,
    }, verified=False),
)}
# fmt: on

OWN: Mapping[str, RestDataset] = {
    name: RestDataset(name, "pPersoon", (name,), {}, verified=ENDPOINTS[name].verified)
    for name in ("students", "registrations", "employees")
}
"""REST's own objects, every scalar field as it comes (``registrations`` without its
``inschrKlassen``, which make ``Subgroepen``)."""

DATASETS: Mapping[str, RestDataset] = {**DERIVED, **OWN}

DEFAULT_DATASETS: tuple[str, ...] = ("Lln", "Subgroepen", "Leerkrachten", "LeerkrachtenVrijevelden")


def dataset(name: str) -> RestDataset:
    """The data set called *name*; a wrong name is an error that names the nearest one."""
    try:
        return DATASETS[name]
    except KeyError:
        hint = next(iter(difflib.get_close_matches(name, DATASETS, n=1)), None)
        suffix = f" (did you mean {hint}?)" if hint else ""
        known = ", ".join(DATASETS)
        raise ConfigError(
            f"unknown Informat REST data set {name!r}{suffix}; this source offers {known}"
        ) from None


def needed_endpoints(name: str, kept: frozenset[str] | None) -> list[str]:
    """The endpoints data set *name* must read to give the fields *kept* (None: all of them):
    ``Subgroepen`` needs the students only for the pupils' names."""
    spec = dataset(name)
    first, *others = spec.endpoints
    wanted = spec.fields.values() if kept is None else [spec.fields.get(f, "") for f in kept]
    return [first, *(e for e in others if any(w.startswith(f"{e}.") for w in wanted))]
