"""The Informat Infofiche as one table of operations.

Every data set is one row: its wire name (case-sensitive), every parameter in wire casing and wire
order, the item element, the person key, and how its dates are written. The reader, the snapshot
code and the Informat source all work from this table; there is no per-data-set code.

Rows marked ``verified=False`` could not be confirmed from public sources (see
``docs/informat.md``): their parameters follow the Infofiche's documented
parameters, and their item element is a best guess. The parser reports an answer whose items carry
another name, so a wrong guess shows up as a clear error naming the element to put here.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from provisioner.errors import ConfigError

NAMESPACE = "http://InformatSoftware.be/wsInfSoft/wsInformat"

DateFormat = Literal["ymd", "dmy", "datetime", "any"]
"""How an operation is known or believed to write dates: ``ymd`` 2012-03-07, ``dmy`` 07.03.1980,
``datetime`` 2023-09-01T00:00:00 (xs:dateTime), ``any`` unknown. Documentation only: the parser
reads every unambiguous form in every date field (``parser.normalise_date``), because a form
nobody confirmed must not stop a night."""

# Wire parameter name -> the option of :class:`~provisioner.sources.informat.params.QueryOptions`
# that supplies its value. Wire names are matched exactly as written here.
PARAMETER_OPTIONS: Mapping[str, str] = {
    "login": "login",
    "paswoord": "password",
    "schooljaar": "schooljaar",
    "instelnr": "instelnr",
    "referentiedatum": "referentiedatum",
    "hoofdstructuur": "hoofdstructuur",
    "gewijzigdSinds": "gewijzigd_sinds",
    "personeelsgroep_is_een_optie": "personeelsgroep",
    "ReferentiedatumNPRE": "referentiedatum_npre",
    "Met_NSU_Uren": "met_nsu_uren",
    "preRegistrationId": "pre_registration_id",
    "smartschoolplatform": "smartschoolplatform",
    "discimusVestigingsnr": "discimusvestigingsnr",
    "begindatum": "begindatum",
    "einddatum": "einddatum",
}

_COMMON = ("login", "paswoord", "schooljaar", "instelnr")


@dataclass(frozen=True)
class Operation:
    name: str
    """Operation name on the wire; ASMX matches it case-sensitively."""
    params: tuple[str, ...]
    """Every declared parameter in wire casing and order; all are always sent."""
    item: str
    """Element name of one row (``wsInschrijving``)."""
    key: str
    """Field that holds the person key (``p_persoon``, ``pointer``, ``PPersoon``, ``pPersoon``)."""
    date_format: DateFormat
    date_fields: frozenset[str] = frozenset()
    dates_verified: bool = False
    """The reference confirms *date_format* (Lln, Leerkrachten, Inschrijvingen); elsewhere it is
    inferred from a typed help page or unknown."""
    nested: Mapping[str, str] = field(default_factory=dict)
    """Per-person containers and their child element (``Relaties`` -> ``Relatie``)."""
    area: Literal["leerlingen", "personeel", "internen"] = "leerlingen"
    verified: bool = True

    @property
    def root(self) -> str:
        """Root of a GET/POST answer: ``ArrayOf`` + the item with its first letter upper-cased."""
        return "ArrayOf" + self.item[0].upper() + self.item[1:]


def _op(
    name: str,
    extras: tuple[str, ...],
    item: str,
    key: str,
    date_format: DateFormat,
    dates: str = "",
    *,
    nested: Mapping[str, str] | None = None,
    area: Literal["leerlingen", "personeel", "internen"] = "leerlingen",
    verified: bool = True,
    dates_verified: bool = False,
    params: tuple[str, ...] | None = None,
) -> Operation:
    return Operation(
        name=name,
        params=params if params is not None else _COMMON + extras,
        item=item,
        key=key,
        date_format=date_format,
        date_fields=frozenset(dates.split()),
        dates_verified=dates_verified,
        nested=nested or {},
        area=area,
        verified=verified,
    )


_RELATIE_DATES = "Geboortedatum Toegevoegd Gewijzigd"

# fmt: off
# Columns: name, extra parameters after login/paswoord/schooljaar/instelnr, item element, person
# key, date format, date fields. Correct a row here when the WSDL says otherwise. Date formats are
# dates_verified only where the reference (section 7) confirms them; "datetime" without it is
# inferred from a help page that types the field dateTime, "any" is unknown.
OPERATIONS: Mapping[str, Operation] = {op.name: op for op in (
    # pupils
    _op("Lln", ("referentiedatum", "hoofdstructuur"), "wsInschrijving", "p_persoon", "ymd", "geboortedatum begindatum einddatum", dates_verified=True),
    _op("LlnExtra", ("referentiedatum", "hoofdstructuur"), "wsLeerling", "pointer", "any", "geboortedatum"),
    _op("Subgroepen", ("hoofdstructuur",), "wsKlasgroep", "p_persoon", "any", "BegindatumKlas EinddatumKlas"),
    _op("Adressen", ("hoofdstructuur", "referentiedatum", "gewijzigdSinds"), "wsAdres", "p_persoon", "any", "Begindatum Einddatum"),
    _op("Relaties", ("hoofdstructuur", "gewijzigdSinds"), "WsRelaties", "PPersoon", "any", _RELATIE_DATES, nested={"Relaties": "Relatie"}),
    _op("ComnummersRelatie", ("hoofdstructuur", "gewijzigdSinds"), "WsComnummers", "PPersoon", "any", nested={"Comnrs": "Comnr"}),
    _op("EmailRelatie", ("referentiedatum", "hoofdstructuur", "gewijzigdSinds"), "WsEmailadressen", "PPersoon", "any", nested={"Emails": "Email"}),
    _op("AdressenEmail", ("hoofdstructuur",), "WsAdressenEmail", "PPersoon", "datetime", "AdresToegevoegd AdresGewijzigd EMailToegevoegd EMailGewijzigd"),
    _op("Rekeningnummers", ("hoofdstructuur", "gewijzigdSinds"), "WsRekeningnummers", "PPersoon", "any", "Toegevoegd Gewijzigd", verified=False),
    _op("Inschrijvingen", ("hoofdstructuur", "preRegistrationId"), "WsInschrijving", "PPersoon", "datetime", "Begindatum Einddatum", verified=False, dates_verified=True),
    _op("SmartschoolUsers", (), "User", "PPersoon", "datetime", "Geboortedatum",
        params=("login", "paswoord", "smartschoolplatform", "schooljaar", "instelnr", "discimusVestigingsnr", "referentiedatum")),
    # staff
    _op("Leerkrachten", ("personeelsgroep_is_een_optie",), "wsPersoneelslid", "p_persoon", "dmy", "Geboortedatum", area="personeel", dates_verified=True),
    _op("LeerkrachtenVrijevelden", (), "wsPersoneelVrijVeld", "pPersoon", "any", area="personeel"),
    _op("LeerkrachtenOpdrachten", ("ReferentiedatumNPRE", "Met_NSU_Uren"), "wsPersoneelOpdracht", "p_persoon", "any", "Begindatum Einddatum", area="personeel", verified=False),
    _op("LeerkrachtenBenoemingen", (), "wsPersoneelBenoeming", "PPersoon", "any", "Ingangsdatum Einddatum", area="personeel", verified=False),
    _op("LeerkrachtenDienstonderbrekingen", (), "wsPersoneelDienstonderbreking", "p_persoon", "any", "Begindatum Einddatum", area="personeel", verified=False),
    _op("LeerkrachtenNascholingen", ("begindatum", "einddatum"), "wsPersoneelNascholing", "p_persoon", "any", "Begindatum Einddatum", area="personeel", verified=False),
    _op("LeerkrachtenDiplomas", (), "wsPersoneelDiploma", "p_persoon", "any", "Datum", area="personeel", verified=False),
    # boarding school (internaat)
    _op("Internen", ("referentiedatum", "hoofdstructuur"), "wsIntern", "p_persoon", "any", "geboortedatum begindatum einddatum", area="internen", verified=False),
    _op("InternaatInschrijvingen", ("referentiedatum", "hoofdstructuur"), "wsInternaatInschrijving", "p_persoon", "any", "begindatum einddatum", area="internen", verified=False),
    _op("InternenAdressen", ("hoofdstructuur", "referentiedatum", "gewijzigdSinds"), "wsAdres", "p_persoon", "any", area="internen", verified=False),
    _op("InternenEmailRelatie", ("referentiedatum", "hoofdstructuur", "gewijzigdSinds"), "WsEmailadressen", "PPersoon", "any", nested={"Emails": "Email"}, area="internen", verified=False),
    _op("InternenComnummersRelatie", ("hoofdstructuur", "gewijzigdSinds"), "WsComnummers", "PPersoon", "any", nested={"Comnrs": "Comnr"}, area="internen", verified=False),
    _op("InternenRelaties", ("hoofdstructuur", "gewijzigdSinds"), "WsRelaties", "PPersoon", "any", _RELATIE_DATES, nested={"Relaties": "Relatie"}, area="internen", verified=False),
)}
# fmt: on

DEFAULT_DATASETS: tuple[str, ...] = (
    "Lln",
    "LlnExtra",
    "Subgroepen",
    "SmartschoolUsers",
    "Leerkrachten",
    "LeerkrachtenVrijevelden",
)
"""What ``fetch`` reads when neither the command line nor the configuration names data sets."""


SEARCH_FIELDS: Mapping[str, tuple[str, ...]] = {
    "Lln": ("stamnr", "Stamnr_kort"),
    "LlnExtra": ("Stamnummer",),
    "Leerkrachten": ("Stamnummer",),
}
"""Identifiers a coordinator may search a person by (``provisioner explain``), besides the key."""


def operation(name: str) -> Operation:
    """The operation called *name*; a wrong name or casing is an error that names the right one."""
    try:
        return OPERATIONS[name]
    except KeyError:
        by_fold = {n.casefold(): n for n in OPERATIONS}
        hint = by_fold.get(name.casefold()) or next(
            iter(difflib.get_close_matches(name, OPERATIONS, n=1)), None
        )
        suffix = f" (did you mean {hint}? names are case-sensitive)" if hint else ""
        raise ConfigError(f"unknown Informat data set {name!r}{suffix}") from None


# fmt: off
# The fields each data set is documented to hold (docs/informat.md, the reference's section 5;
# docs/mappings.md has them with their meaning). Informat leaves an empty element out, so a
# documented field may be in no row today; a field neither documented nor in any row is a typo.
# Nested data sets list their container and the fields of its entries. Data sets missing here
# have no documented list: only their answers say what they hold.
_DOCUMENTED: Mapping[str, str] = {
    "Lln": """p_persoon Naam Voornaam geslacht geboortedatum geboorteplaats rijksregnr stamnr
        Stamnr_kort naamMa voornaamMa OverledenMa naamPa voornaamPa overledenPa instelnr school
        vestcode vestiging begindatum einddatum afdeling afdcode afdelingsjaar Klas Klasnr
        nr_admgr graad leerjaar voorlopig fietsnummer Klascode Klasnaam Financierbaarheid
        Levensbeschouwing PInschrijving PAdfjaar PInschKlas PKlas""",
    "LlnExtra": """pointer naam voornaam Tweedevoornaam Sorteernaam geboortedatum geboorteplaats
        geboorteland geslacht initialen nationaliteit aanspreektitel aanspreeknaam straat nr bus
        hfdpostnr hfdgem land dlpostnr dlgem domicilietelefoon GSMeigen GSMvader GSMmoeder
        Noodtelefoon telefoonVader telefoonMoeder telefoonWerkVader telefoonWerkMoeder
        Rijksregisternummer BISnummer Stamnummer VoornaamVader NaamVader VoornaamMoeder
        NaamMoeder EmailSchool EmailEigen EmailOuders EmailMoeder EmailVader EmailPrive
        Levensbeschouwing Huisdokter TelefoonHuisdokter Verblijfstype Internaat Llnkaartnr
        Fietsnummer TelefoonInstelling PSchoolVest""",
    "Relaties": """PPersoon Relaties PRelatie Type Naam Voornaam Geslacht Insz Geboortedatum
        Overleden Beroep BurgerlijkeStaat Nationaliteit Lpv Opmerking Toegevoegd Gewijzigd
        RelatieUuid""",
    "ComnummersRelatie": "PPersoon Comnrs Nummer Type Soort PRelatie",
    "EmailRelatie": "PPersoon Emails Adres Type PRelatie",
    "Adressen": "p_persoon Domicilie nickname straat nr dombus dlpostnr dlgem",
    "AdressenEmail": """PPersoon PAdres AdressenUUID Facturatie Percentage EMail Schoolcom
        AdresToegevoegd AdresGewijzigd EMailToegevoegd EMailGewijzigd""",
    "SmartschoolUsers": "PPersoon Naam Voornaam Geboortedatum Insz Gebruikersnaam Status",
    "Subgroepen": """p_persoon Naam Voornaam School Instelnr Vestcode Vestiging Klas BegindatumKlas
        EinddatumKlas Groeptype Klasnr Klastitularis Klascode Status PKlas PInschrklas
        PInschrijving Graad Leerjaar""",
    "Inschrijvingen": """PInschrijving PPersoon Status Begindatum Einddatum Instelnr School VestCode
        Vestiging AfdCode Afdeling Afdelingsjaar NrAdmgr Graad Leerjaar Financierbaarheid
        Levensbeschouwing CapaciteitNaam PreRegistrationId""",
    "Leerkrachten": """p_persoon Stamnummer Naam Voornaam Geboortedatum Geboorteplaats Geslacht
        Rijksregnr Diploma Schooljaar Instelnr Thuistelefoon Gsm Prive_email School_email
        Opmerking Actief Gebruikersnaam Wachtwoord GebruikersnaamAd WachtwoordAd Straat Nr Bus
        Dlpostnr Dlgem Landcode Adres Iban Bic""",
    "LeerkrachtenVrijevelden": """pPersoon Personeelslid Stamnummer OmschrijvingVrijVeld
        WaardeVrijVeld Datatype Rubriek""",
    "LeerkrachtenOpdrachten": """Instelnr Hfd p_persoon Personeelslid Stamnummer Prestatieuren
        Breuk Tbsob AfstandWachtgeld Begindatum Einddatum ATO RW Bekw Graad Leerjaar Vorm
        Ambtcode Ambtomschrijving Vakcode CodeBarema Lesgroep Opmerking InNPRE Vacature Stagevak
        UrenVanSg UrenVanSchool Opdrachttype POpdr""",
    "LeerkrachtenBenoemingen": """PPersoon Personeelslid Stamnummer Instelnr Hoofdstructuur
        PBenoeming Ambtcode Ambtomschrijving Vakcode Vakomschrijving Gelijkvakcode
        Gelijkvakomschrijving Ingangsdatum Einddatum Teller Noemer Bekwaamheidsbewijs Graad
        Onderwijsvorm Opleidingsvorm Opmerking""",
}
# fmt: on

DOCUMENTED_FIELDS: Mapping[str, frozenset[str]] = {
    name: frozenset(fields.split()) for name, fields in _DOCUMENTED.items()
}
"""Per data set the fields the reference documents (the person key always among them)."""
