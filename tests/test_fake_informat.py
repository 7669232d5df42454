"""The project's fake Informat server and its synthetic data, checked with raw httpx and lxml.

Nothing here uses the project's own client: these tests pin down what the fake puts on the wire,
so that the client's tests against it mean something.
"""

from __future__ import annotations

import hashlib
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from xml.sax.saxutils import escape

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from tests.fakes.informat_server import (
    DEFAULT_LOGIN,
    DEFAULT_PASSWORD,
    NAMESPACE,
    OPERATIONS,
    SOAP_ENV,
    XSI,
    InformatServer,
    array_body,
    render_item,
    soap_body,
)
from tests.fakes.synthetic import (
    MIN_PUPILS,
    OPERATION_NAMES,
    SyntheticData,
    generate,
    load_data,
    save_data,
)
from tests.strategies import XML_TEXT

PUPILS = 120
TODAY = date(2026, 1, 15)  # the generator's notional today for 2025-26
NS = f"{{{NAMESPACE}}}"
ROOT = Path(__file__).resolve().parents[1]

YMD = re.compile(r"\d{4}-\d{2}-\d{2}")
DMY = re.compile(r"\d{2}\.\d{2}\.\d{4}")
DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}")
ANY_DATE = re.compile(rf"{YMD.pattern}|{DMY.pattern}|{DATETIME.pattern}")


# --- fixtures and helpers --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def data() -> SyntheticData:
    return generate(PUPILS)


@pytest.fixture(scope="module")
def fake(data):
    with InformatServer(data) as server:
        yield server


@pytest.fixture
def server(fake):
    fake.clear_faults()
    fake.clear_requests()
    yield fake
    fake.clear_faults()


@pytest.fixture(scope="module")
def http():
    with httpx.Client(timeout=10) as client:
        yield client


def params(op: str, **overrides: str) -> dict[str, str]:
    """Every declared parameter of ``op``, empty unless given, with valid credentials."""
    values = dict.fromkeys(OPERATIONS[op].params, "")
    values.update(
        login=DEFAULT_LOGIN, paswoord=DEFAULT_PASSWORD, schooljaar="2025-26", instelnr="030569"
    )
    values.update(overrides)
    return values


def get(http, server, op: str, **overrides: str) -> httpx.Response:
    return http.get(f"{server.url}/{op}", params=params(op, **overrides))


def post(http, server, op: str, **overrides: str) -> httpx.Response:
    return http.post(f"{server.url}/{op}", data=params(op, **overrides))


def envelope(op: str, values: dict[str, str | None], *, qualified: bool = True) -> bytes:
    """A SOAP 1.1 request; ``qualified=False`` leaves the parameters outside the namespace."""
    children = "".join(
        f'<{k} xsi:nil="true" />' if v is None else f"<{k}>{escape(v)}</{k}>"
        for k, v in values.items()
    )
    request = (
        f'<{op} xmlns="{NAMESPACE}">{children}</{op}>'
        if qualified
        else f'<i:{op} xmlns:i="{NAMESPACE}">{children}</i:{op}>'
    )
    return (
        f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{SOAP_ENV}" '
        f'xmlns:xsi="{XSI}"><soap:Body>{request}</soap:Body></soap:Envelope>'
    ).encode()


def soap(
    http,
    server,
    op: str,
    values: dict[str, str | None] | None = None,
    *,
    action: str | None = None,
    qualified: bool = True,
    url: str | None = None,
) -> httpx.Response:
    values = params(op) if values is None else values
    return http.post(
        url or server.url_wsinfsoft,
        content=envelope(op, values, qualified=qualified),
        headers={
            "Content-Type": "text/xml; charset=utf-8",
            "SOAPAction": f'"{NAMESPACE}/{action or op}"',
        },
    )


def items(response: httpx.Response) -> list[etree._Element]:
    """The item elements of a GET/POST or SOAP answer (namespace-aware, strict)."""
    assert response.status_code == 200, response.text[:500]
    root = etree.fromstring(response.content)
    if root.tag == f"{{{SOAP_ENV}}}Envelope":
        (result,) = root.find(f"{{{SOAP_ENV}}}Body")[0]
        return list(result)
    return list(root)


def as_dict(item: etree._Element) -> dict[str, str | None]:
    return {etree.QName(c).localname: c.text for c in item}


def keys(response: httpx.Response, key: str = "p_persoon") -> list[str]:
    return [as_dict(i)[key] for i in items(response)]


def visible(rows: list[dict], instelnr: str, day: date | None = TODAY) -> list[dict]:
    iso = day.isoformat() if day else None
    return [
        r
        for r in rows
        if r["_instelnr"] == instelnr
        and (
            iso is None
            or (
                (r.get("_van") is None or r["_van"] <= iso)
                and (r.get("_tot") is None or iso <= r["_tot"])
            )
        )
    ]


# --- the generator ---------------------------------------------------------------------------------
def test_generate_is_deterministic_and_depends_on_the_seed():
    a, b, c = generate(60, seed=5), generate(60, seed=5), generate(60, seed=6)
    assert a == b
    assert a.rows != c.rows
    assert generate(60, seed=5, schooljaar="2024-25").today == "2025-01-15"


def test_sizes_scale_and_small_inputs_are_refused():
    small, big = generate(MIN_PUPILS), generate(2000)
    assert len({r["p_persoon"] for r in small.rows["Lln"]}) == MIN_PUPILS
    assert len({r["p_persoon"] for r in small.rows["Leerkrachten"]}) == 15
    assert len({r["p_persoon"] for r in big.rows["Lln"]}) == 2000
    assert len({r["p_persoon"] for r in big.rows["Leerkrachten"]}) == 200
    with pytest.raises(ValueError, match="at least"):
        generate(MIN_PUPILS - 1)


def test_every_operation_has_rows_with_the_internal_keys(data):
    assert set(OPERATION_NAMES) == set(OPERATIONS) == set(data.rows)
    for name, rows in data.rows.items():
        assert rows, f"{name} has no rows"
        for row in rows:
            assert re.fullmatch(r"\d{6}", row["_instelnr"]), name
            assert row["_instelnr"] in ("030569", "030577")
            for key in ("instelnr", "Instelnr"):
                if key in row:
                    assert row[key] == row["_instelnr"]
            for value in row.values():
                assert value is None or isinstance(value, str | list), (name, value)
    assert {r["_hoofdstructuur"] for r in data.rows["Lln"]} == {"311", "312"}


def test_dates_are_in_the_wire_format_of_their_operation(data):
    for name, rows in data.rows.items():
        wanted = YMD if name == "Lln" else DMY if name.startswith("Leerkrachten") else DATETIME
        seen = 0
        for row in rows:
            values = [v for k, v in row.items() if not k.startswith("_")]
            for child in (c for v in values if isinstance(v, list) for c in v if c):
                values.extend(child.values())
            for value in values:
                if isinstance(value, str) and ANY_DATE.fullmatch(value):
                    assert wanted.fullmatch(value), (name, value)
                    seen += 1
        if name not in (
            "ComnummersRelatie",
            "EmailRelatie",
            "InternenComnummersRelatie",
            "InternenEmailRelatie",
        ):
            assert seen, f"{name} has no dates at all"


def test_notable_pupils(data):
    n, lln = data.notable, data.rows["Lln"]
    today = data.today

    def rows(key: str, op: str = "Lln", field: str = "p_persoon") -> list[dict]:
        return [r for r in data.rows[op] if r[field] == n[key]]

    assert data.today == TODAY.isoformat()
    double = rows("double_registration")
    assert [(r["_instelnr"], r["voorlopig"]) for r in double] == [("030569", "0"), ("030569", "4")]
    assert {r["_instelnr"] for r in rows("two_schools_pupil")} == {"030569", "030577"}
    assert all(r["voorlopig"] == "0" and r.get("_tot") is None for r in rows("two_schools_pupil"))
    changer = rows("school_changer")
    assert [(r["_instelnr"], r["begindatum"], r.get("einddatum")) for r in changer] == [
        ("030569", "2025-09-01", "2025-10-31"),
        ("030577", "2025-11-03", None),
    ]
    (leaver,) = rows("leaver")
    assert "2025-09-01" < leaver["einddatum"] < today
    (early,) = rows("leaver_before_start")
    assert early["einddatum"] < "2025-09-01"
    (future,) = rows("future_leaver")
    assert future["einddatum"] > today
    (pre,) = rows("pre_registration")
    assert pre["voorlopig"] == "4" and pre["begindatum"] > today and pre["Klascode"] == ""
    assert [r["voorlopig"] for r in rows("not_realised")] == ["1"]
    (same,) = rows("same_day")
    assert same["begindatum"] == same["einddatum"]
    (long_name,) = rows("long_name")
    assert len(f"{long_name['Naam']} {long_name['Voornaam']}") > 64
    first, second = n["duplicate_name"].split(",")
    assert first != second
    names = {(r["Naam"], r["Voornaam"]) for r in lln if r["p_persoon"] in (first, second)}
    assert len(names) == 1
    assert [(r["Naam"], r["Voornaam"]) for r in rows("diacritics")] == [("Çelik", "Zoë")]
    assert [(r["Naam"], r["Voornaam"]) for r in rows("apostrophe")] == [("D'Hondt", "Noémie")]
    classes = [r for r in rows("class_change", "Subgroepen") if r["Groeptype"] == "0"]
    assert len(classes) == 2 and classes[0]["Klascode"] != classes[1]["Klascode"]
    assert classes[0]["EinddatumKlas"] == "2025-10-13T00:00:00"
    assert [r["_hoofdstructuur"] for r in rows("hoofdstructuur_312")] == ["312"]
    assert rows("no_relations", "Relaties", "PPersoon")[0]["Relaties"] == []
    assert None in rows("nil_relation", "Relaties", "PPersoon")[0]["Relaties"]
    assert len(rows("single_relation", "Relaties", "PPersoon")[0]["Relaties"]) == 1
    assert rows("boarder", "Internen")
    (plain,) = rows("pupil")
    assert plain["voorlopig"] == "0" and plain["Klascode"] and plain["_instelnr"] == "030569"


def test_notable_staff_and_classes(data):
    n = data.notable
    staff = data.rows["Leerkrachten"]
    assert {r["Instelnr"] for r in staff if r["p_persoon"] == n["two_schools_staff"]} == {
        "030569",
        "030577",
    }
    assert {r["Actief"] for r in staff} == {"J", "N"}
    assert [r["Actief"] for r in staff if r["p_persoon"] == n["inactive_staff"]] == ["N"]
    (particle,) = [r for r in staff if r["p_persoon"] == n["staff_with_particle"]]
    assert (particle["Naam"], particle["Voornaam"]) == ("Van den Bossche", "Marie-Louise")
    vrij = data.rows["LeerkrachtenVrijevelden"]
    codes = {
        (r["pPersoon"], r["_instelnr"]): r["WaardeVrijVeld"]
        for r in vrij
        if r["OmschrijvingVrijVeld"] == "CODE"
    }
    assert set(codes) == {(r["p_persoon"], r["_instelnr"]) for r in staff}
    assert codes[(n["staff_with_particle"], "030569")] == "VDB"
    assert codes[(n["staff_empty_code"], "030569")] == ""
    assert {r["OmschrijvingVrijVeld"] for r in vrij} > {"CODE"}
    groups = data.rows["Subgroepen"]
    assert {r["Groeptype"] for r in groups} == {"0", "1"}
    assert any(re.fullmatch(r"\dLAT-a|\dSTWA-a", r["Klascode"]) for r in groups)
    (two,) = {
        r["Klastitularis"]
        for r in groups
        if r["Klascode"] == n["class_two_titularissen"] and r["_instelnr"] == "030569"
    }
    staff_names = {f"{r['Naam']} {r['Voornaam']}" for r in staff}
    assert len(two.split(", ")) == 2 and set(two.split(", ")) <= staff_names
    assert any("Van den Bossche Marie-Louise" in r.get("Klastitularis", "") for r in groups)
    users = {r["PPersoon"]: r["Gebruikersnaam"] for r in data.rows["SmartschoolUsers"]}
    assert users[n["staff"]] and users[n["pupil"]]
    assert all(re.fullmatch(r"[a-z-]+\.[a-z-]+\d*", u) for u in users.values() if u)
    assert users[n["diacritics"]] == "zoe.celik"


def test_names_identifiers_and_the_three_empty_forms(data):
    lln, extra = data.rows["Lln"], data.rows["LlnExtra"]
    surnames = {r["Naam"] for r in generate(1500).rows["Lln"]}
    assert {
        "Van den Bossche",
        "D'Hondt",
        "Vanden Eynde",
        "De Smet",
        "Van Acker",
        "Verhaegen",
        "El Amrani",
        "Çelik",
        "N'Diaye",
    } <= surnames
    firsts = {r["Voornaam"] for r in generate(1500).rows["Lln"]}
    assert {"Zoë", "Jiří", "Noémie", "Maël", "Søren", "Anaïs", "Marie-Louise"} <= firsts
    assert all(r["rijksregnr"].startswith("99") for r in lln)
    assert all(r["Insz"].startswith("99") for r in data.rows["SmartschoolUsers"])
    for rows, field, wanted in (
        (lln, "einddatum", {"absent", "empty", "nil", "value"}),
        (lln, "fietsnummer", {"absent", "empty", "value"}),
        (extra, "TelefoonInstelling", {"nil", "value"}),
        (extra, "bus", {"absent", "empty"}),
    ):
        forms = Counter(
            "absent"
            if field not in r
            else "nil"
            if r[field] is None
            else "empty"
            if r[field] == ""
            else "value"
            for r in rows
        )
        assert wanted <= set(forms), (field, forms)
    for rows in (lln, extra):
        assert any(None in r.values() for r in rows)
        assert any("" in r.values() for r in rows)
    assert len(lln[0]) - 5 >= 35 and len(extra[0]) - 5 >= 45  # minus the internal keys
    for op, container in (
        ("Relaties", "Relaties"),
        ("ComnummersRelatie", "Comnrs"),
        ("EmailRelatie", "Emails"),
    ):
        sizes = Counter(len([c for c in r[container] if c]) for r in data.rows[op])
        assert set(sizes) <= {0, 1, 2, 3} and {0, 1, 2} <= set(sizes), (op, sizes)
    assert any(c and c["Type"] == "Privé" for r in data.rows["EmailRelatie"] for c in r["Emails"])


def test_save_and_load_round_trip(data, tmp_path):
    save_data(data, tmp_path / "d")
    assert (tmp_path / "d" / "meta.json").exists()
    assert (tmp_path / "d" / "Lln.json").exists()
    assert load_data(tmp_path / "d") == data


# --- wire format -----------------------------------------------------------------------------------
TINY = {
    "schooljaar": "2025-26",
    "today": "2026-01-15",
    "rows": {
        "Relaties": [
            {
                "PPersoon": "1",
                "Relaties": [
                    {"PRelatie": "7", "Type": "Moeder", "Opmerking": 'a & b <c> "d"\r\ne'},
                    None,
                ],
                "_instelnr": "030569",
            },
            {"PPersoon": "2", "Relaties": [], "Extra": "", "Nil": None, "_instelnr": "030569"},
        ],
        "Lln": [
            {
                "p_persoon": "1",
                "Naam": "Çelik",
                "Klasnr": "",
                "einddatum": None,
                "instelnr": "030569",
            }
        ],
    },
}
ARRAY_ATTRS = (
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
    'xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
    'xmlns="http://InformatSoftware.be/wsInfSoft/wsInformat"'
)


@pytest.fixture(scope="module")
def tiny():
    with InformatServer(TINY) as server:
        yield server


def test_get_answer_is_byte_exact_asmx(tiny, http):
    response = get(http, tiny, "Relaties")
    assert response.headers["content-type"] == "text/xml; charset=utf-8"
    assert response.text == "\r\n".join(
        (
            '<?xml version="1.0" encoding="utf-8"?>',
            f"<ArrayOfWsRelaties {ARRAY_ATTRS}>",
            "  <WsRelaties>",
            "    <PPersoon>1</PPersoon>",
            "    <Relaties>",
            "      <Relatie>",
            "        <PRelatie>7</PRelatie>",
            "        <Type>Moeder</Type>",
            '        <Opmerking>a &amp; b &lt;c&gt; "d"&#xD;\ne</Opmerking>',
            "      </Relatie>",
            '      <Relatie xsi:nil="true" />',
            "    </Relaties>",
            "  </WsRelaties>",
            "  <WsRelaties>",
            "    <PPersoon>2</PPersoon>",
            "    <Relaties />",
            "    <Extra />",
            '    <Nil xsi:nil="true" />',
            "  </WsRelaties>",
            "</ArrayOfWsRelaties>",
        )
    )
    # XML parsers see the value exactly as stored.
    opmerking = items(response)[0].find(f"{NS}Relaties/{NS}Relatie/{NS}Opmerking").text
    assert opmerking == 'a & b <c> "d"\r\ne'


def test_soap_answer_is_byte_exact_asmx(tiny, http):
    response = soap(http, tiny, "Lln")
    assert response.headers["content-type"] == "text/xml; charset=utf-8"
    assert response.content.decode() == (
        '<?xml version="1.0" encoding="utf-8"?><soap:Envelope '
        'xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xmlns:xsd="http://www.w3.org/2001/XMLSchema"><soap:Body>'
        f'<LlnResponse xmlns="{NAMESPACE}"><LlnResult><wsInschrijving><p_persoon>1</p_persoon>'
        '<Naam>Çelik</Naam><Klasnr /><einddatum xsi:nil="true" /><instelnr>030569</instelnr>'
        "</wsInschrijving></LlnResult></LlnResponse></soap:Body></soap:Envelope>"
    )


def test_empty_answers_are_self_closing_roots(tiny, http):
    assert get(http, tiny, "Subgroepen").text == (
        f'<?xml version="1.0" encoding="utf-8"?>\r\n<ArrayOfWsKlasgroep {ARRAY_ATTRS} />'
    )
    assert post(http, tiny, "Leerkrachten").text.endswith(
        f"<ArrayOfWsPersoneelslid {ARRAY_ATTRS} />"
    )
    response = soap(http, tiny, "SmartschoolUsers")
    assert "<SmartschoolUsersResponse xmlns=" in response.text
    assert "<SmartschoolUsersResult /></SmartschoolUsersResponse>" in response.text


def test_three_transports_and_both_paths_serve_the_same_items(server, http, data):
    get_ids = keys(get(http, server, "Lln"))
    assert get_ids == [r["p_persoon"] for r in visible(data.rows["Lln"], "030569")]
    assert keys(post(http, server, "Lln")) == get_ids
    assert keys(soap(http, server, "Lln")) == get_ids
    assert keys(soap(http, server, "Lln", url=server.url)) == get_ids
    alt = http.get(f"{server.url_wsinfsoft}/Lln", params=params("Lln"))
    assert keys(alt) == get_ids
    # IIS matches the .asmx path case-insensitively (the operation name is another matter).
    loud = server.url.replace("/wsInformat.asmx", "/WSINFORMAT.ASMX")
    assert keys(http.get(f"{loud}/Lln", params=params("Lln"))) == get_ids
    assert get(http, server, "Lln").content == post(http, server, "Lln").content
    assert [r.transport for r in server.requests] == [
        "get",
        "post",
        "soap",
        "soap",
        "get",
        "get",
        "get",
        "post",
    ]
    assert server.url.startswith("http://127.0.0.1:")


@pytest.mark.parametrize("op", sorted(OPERATIONS))
def test_every_operation_answers_with_its_root_and_item(server, http, data, op):
    spec = OPERATIONS[op]
    response = get(http, server, op)
    root = etree.fromstring(response.content)
    assert root.tag == f"{NS}{spec.root}"
    assert {c.tag for c in root} <= {f"{NS}{spec.item}"}
    assert len(root) == len(
        visible(data.rows[op], "030569", TODAY if "referentiedatum" in spec.params else None)
    )
    assert root.nsmap == {"xsi": XSI, "xsd": "http://www.w3.org/2001/XMLSchema", None: NAMESPACE}


# --- names and parameters --------------------------------------------------------------------------
def test_operation_names_are_case_sensitive(server, http):
    for response in (
        http.get(f"{server.url}/lln", params=params("Lln")),
        http.post(f"{server.url}/lln", data=params("Lln")),
    ):
        assert response.status_code == 500
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
        assert response.text.splitlines()[0] == (
            "System.InvalidOperationException: Request format is unrecognized for URL "
            "unexpectedly ending in '/lln'."
        )
    wrong = http.get(f"{server.url}/LeerkrachtenVrijeVelden", params=params("Lln"))
    assert wrong.status_code == 500 and "ending in '/LeerkrachtenVrijeVelden'" in wrong.text
    fault = soap(http, server, "Lln", action="lln")
    assert fault.status_code == 500
    root = etree.fromstring(fault.content)
    assert root.findtext(".//faultcode") == "soap:Client"
    assert (
        f"Server did not recognize the value of HTTP Header SOAPAction: {NAMESPACE}/lln."
    ) in root.findtext(".//faultstring")


def test_get_post_parameter_names_are_case_insensitive_and_extras_ignored(server, http, data):
    expected = keys(get(http, server, "Lln"))
    shouted = {k.upper(): v for k, v in params("Lln").items()} | {
        "gewijzigdSinds": "1-1-2010",
        "bogus": "x",
    }
    assert keys(http.get(f"{server.url}/Lln", params=shouted)) == expected
    assert keys(http.post(f"{server.url}/Lln", data=shouted)) == expected
    assert server.requests[-1].params["INSTELNR"] == "030569"
    # ASP.NET joins repeated names with a comma: two logins are no login at all.
    twice = [*params("Lln").items(), ("Login", DEFAULT_LOGIN)]
    response = http.get(f"{server.url}/Lln", params=twice)
    assert response.status_code == 500 and "Ongeldige login of paswoord." in response.text
    assert server.requests[-1].params["login"] == f"{DEFAULT_LOGIN},{DEFAULT_LOGIN}"


@pytest.mark.parametrize("transport", ["get", "post"])
def test_a_missing_parameter_is_asmx_http_500(server, http, transport):
    values = params("Lln")
    del values["hoofdstructuur"]
    values["HOOFDSTRUCTUUR_X"] = ""
    if transport == "get":
        response = http.get(f"{server.url}/Lln", params=values)
    else:
        response = http.post(f"{server.url}/Lln", data=values)
    assert response.status_code == 500
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    lines = response.text.splitlines()
    assert lines[0] == "System.InvalidOperationException: Missing parameter: hoofdstructuur."
    assert lines[1].startswith("   at System.Web.Services.Protocols.")


def test_post_reads_the_form_only(server, http):
    response = http.post(f"{server.url}/Lln", params=params("Lln"))
    assert response.status_code == 500
    assert response.text.startswith("System.InvalidOperationException: Missing parameter: login.")


def test_soap_parameters_are_case_sensitive_and_missing_ones_are_null(server, http, data):
    values = params("Lln")
    shouting = {("Login" if k == "login" else k): v for k, v in values.items()}
    response = soap(http, server, "Lln", shouting)
    assert response.status_code == 500
    assert etree.fromstring(response.content).findtext(".//faultcode") == "soap:Server"
    # Without referentiedatum and hoofdstructuur: null, i.e. today and everything.
    short = {k: v for k, v in values.items() if k not in ("referentiedatum", "hoofdstructuur")}
    assert keys(soap(http, server, "Lln", short)) == keys(get(http, server, "Lln"))
    assert list(server.requests[-2].params) == list(short)
    nil = dict(values, referentiedatum=None)
    assert keys(soap(http, server, "Lln", nil)) == keys(get(http, server, "Lln"))
    assert server.requests[-2].params["referentiedatum"] is None
    # Parameters outside the service namespace are invisible to XmlSerializer.
    unqualified = soap(http, server, "Lln", values, qualified=False)
    assert unqualified.status_code == 500 and "Ongeldige login" in unqualified.text


def test_soap_request_that_cannot_be_read_is_a_client_fault(server, http):
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": f'"{NAMESPACE}/Lln"'}
    broken = http.post(server.url, content=b"<soap:Envelope", headers=headers)
    wrong_body = http.post(server.url, content=envelope("LlnExtra", params("Lln")), headers=headers)
    for response in (broken, wrong_body):
        assert response.status_code == 500
        root = etree.fromstring(response.content)
        assert root.findtext(".//faultcode") == "soap:Client"
        assert root.findtext(".//faultstring").startswith("Server was unable to read request.")
    assert "was not expected" in wrong_body.text


@pytest.mark.parametrize("transport", ["get", "post", "soap"])
def test_wrong_credentials(server, http, transport):
    if transport == "soap":
        response = soap(http, server, "Lln", params("Lln", paswoord="fout"))
        assert response.status_code == 500
        assert response.headers["content-type"] == "text/xml; charset=utf-8"
        root = etree.fromstring(response.content)
        assert root.findtext(".//faultcode") == "soap:Server"
        assert root.findtext(".//faultstring") == (
            "Server was unable to process request. ---> Ongeldige login of paswoord."
        )
        return
    call = get if transport == "get" else post
    for response in (
        call(http, server, "Lln", paswoord="fout"),
        call(http, server, "Lln", login="iemand@school.be"),
    ):
        assert response.status_code == 500
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
        lines = response.text.splitlines()
        assert lines[0] == "System.Exception: Ongeldige login of paswoord."
        assert lines[1].startswith("   at wsInfSoft.wsInformat.Lln(String login, ")


def test_instelnr_rights_digits_and_schooljaar(server, http, data):
    six = get(http, server, "Lln", instelnr="030577")
    five = get(http, server, "Lln", instelnr="30577")
    assert five.content == six.content
    assert {as_dict(i)["instelnr"] for i in items(five)} == {"030577"}
    leerkrachten = get(http, server, "Leerkrachten", instelnr="30577")
    assert {as_dict(i)["Instelnr"] for i in items(leerkrachten)} == {"030577"}
    for other in (
        {"instelnr": "099999"},
        {"instelnr": "abc"},
        {"instelnr": ""},
        {"schooljaar": "2024-25"},
        {"schooljaar": "2025-2026"},
    ):
        response = get(http, server, "Lln", **other)
        assert response.status_code == 200 and items(response) == [], other
    server.accounts["beperkt@school.be"] = ("ander", {"30569"})
    try:
        mine = get(http, server, "Lln", login="beperkt@school.be", paswoord="ander")
        theirs = get(
            http, server, "Lln", login="beperkt@school.be", paswoord="ander", instelnr="030577"
        )
        assert items(mine) and items(theirs) == []
        assert (
            items(
                soap(
                    http,
                    server,
                    "Lln",
                    params("Lln", login="beperkt@school.be", paswoord="ander", instelnr="030577"),
                )
            )
            == []
        )
    finally:
        del server.accounts["beperkt@school.be"]


# --- filters ---------------------------------------------------------------------------------------
def test_referentiedatum(server, http, data):
    n = data.notable
    today = set(keys(get(http, server, "Lln")))
    assert today == set(keys(get(http, server, "Lln", referentiedatum="15-01-2026")))
    assert n["leaver"] not in today and n["leaver_before_start"] not in today
    assert n["future_leaver"] in today and n["double_registration"] in today
    assert n["pre_registration"] not in today
    october = set(keys(get(http, server, "Lln", referentiedatum="01-10-2025")))
    assert n["leaver"] in october and n["pre_registration"] not in october
    april = set(keys(get(http, server, "Lln", referentiedatum="21-04-2026")))
    assert n["pre_registration"] in april and n["future_leaver"] not in april
    august = set(keys(get(http, server, "Lln", referentiedatum="29-08-2025")))
    assert n["leaver_before_start"] in august
    moved = set(keys(get(http, server, "Lln", referentiedatum="15-01-2026", instelnr="030577")))
    assert n["school_changer"] in moved and n["school_changer"] not in today
    extra = set(keys(get(http, server, "LlnExtra", referentiedatum="01-10-2025"), "pointer"))
    assert n["leaver"] in extra
    # A wrongly formatted date is no error: just an empty answer (the real service's trap).
    for wrong in ("2026-01-15", "15/01/2026", "1-1-2026", "31-02-2026", "vandaag"):
        response = get(http, server, "Lln", referentiedatum=wrong)
        assert response.status_code == 200 and items(response) == [], wrong


def test_subgroepen_ignores_referentiedatum_unless_told_to_filter(server, http, data):
    n = data.notable
    everything = keys(get(http, server, "Subgroepen"))
    assert n["leaver"] in everything and everything.count(n["class_change"]) == 2
    # Subgroepen declares no referentiedatum: sending one anyway changes nothing.
    extra = http.get(
        f"{server.url}/Subgroepen", params=params("Subgroepen") | {"referentiedatum": "01-10-2025"}
    )
    assert keys(extra) == everything
    with InformatServer(data, filter_today=["Subgroepen"]) as filtering:
        today = keys(get(http, filtering, "Subgroepen"))
    assert n["leaver"] not in today and today.count(n["class_change"]) == 1
    assert n["pupil"] in today


def test_hoofdstructuur(server, http, data):
    everything = keys(get(http, server, "Lln"))
    only_311 = keys(get(http, server, "Lln", hoofdstructuur="311"))
    only_312 = keys(get(http, server, "Lln", hoofdstructuur="312"))
    assert only_312 and only_311 and sorted(only_311 + only_312) == sorted(everything)
    assert data.notable["hoofdstructuur_312"] in only_312
    assert keys(get(http, server, "Lln", hoofdstructuur="999")) == []


def test_gewijzigd_sinds(server, http, data):
    def relaties(since: str) -> list[str]:
        return keys(get(http, server, "Relaties", gewijzigdSinds=since), "PPersoon")

    everything = relaties("")
    assert relaties("1-1-2010") == everything
    recent = relaties("1-1-2026")
    assert relaties("01-01-2026") == recent
    assert 0 < len(recent) < len(everything)
    assert recent == [
        r["PPersoon"]
        for r in data.rows["Relaties"]
        if r["_instelnr"] == "030569" and r["_gewijzigd"] >= "2026-01-01"
    ]
    assert relaties("1-1-2030") == []
    assert relaties("2026-01-01") == []  # wrong format: empty, no error


@settings(max_examples=25, deadline=None)
@given(st.dates(min_value=date(2025, 6, 1), max_value=date(2026, 8, 31)))
def test_referentiedatum_selects_exactly_the_rows_valid_that_day(fake, http, data, day):
    answer = keys(get(http, fake, "Lln", referentiedatum=day.strftime("%d-%m-%Y")))
    assert answer == [r["p_persoon"] for r in visible(data.rows["Lln"], "030569", day)]


@settings(max_examples=200, deadline=None)
@given(XML_TEXT, XML_TEXT)
def test_any_text_survives_the_wire(naam, opmerking):
    op = OPERATIONS["Relaties"]
    row = {"PPersoon": naam, "Relaties": [{"Opmerking": opmerking}, None], "_instelnr": "030569"}
    for body in (
        array_body(op, [render_item(op, row, pretty=True)]),
        soap_body(op, [render_item(op, row, pretty=False)]),
    ):
        root = etree.fromstring(body)
        (item,) = root.iter(f"{NS}WsRelaties")
        assert (item.findtext(f"{NS}PPersoon") or "") == naam
        relatie = item.find(f"{NS}Relaties")[0]
        assert (relatie.findtext(f"{NS}Opmerking") or "") == opmerking


def test_duplicates_and_empty_forms_on_the_wire(server, http, data):
    n = data.notable
    lln = get(http, server, "Lln")
    assert keys(lln).count(n["double_registration"]) == 2
    text = lln.text
    assert "<einddatum />" in text and '<einddatum xsi:nil="true" />' in text
    assert "<Klasnr />" in text
    assert sum(1 for i in items(lln) if i.find(f"{NS}einddatum") is None) > 10
    relaties = get(http, server, "Relaties").text
    assert "<Relaties />" in relaties and '<Relatie xsi:nil="true" />' in relaties
    emails = get(http, server, "EmailRelatie")
    assert "<Type>Privé</Type>".encode() in emails.content  # raw UTF-8 on the wire
    single = next(
        i
        for i in items(get(http, server, "Relaties"))
        if as_dict(i)["PPersoon"] == n["single_relation"]
    )
    assert len(single.find(f"{NS}Relaties")) == 1


# --- faults ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("code", ["500", "502", "503", "504"])
def test_http_status_faults(server, http, code):
    server.inject(code)
    response = get(http, server, "Lln")
    assert response.status_code == int(code)
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text.startswith(code)
    assert items(get(http, server, "Lln"))  # consumed: the next call is fine


def test_html_and_malformed_faults(server, http):
    server.inject("html")
    page = get(http, server, "Lln")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<title>" in page.text
    server.inject("html500")
    yellow = get(http, server, "Lln")
    assert yellow.status_code == 500 and "<title>Runtime Error</title>" in yellow.text
    server.inject("malformed")
    malformed = get(http, server, "Lln")
    assert malformed.status_code == 200
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(malformed.content)
    server.inject("soap_fault")
    fault = get(http, server, "Lln")
    assert fault.status_code == 500 and fault.headers["content-type"].startswith("text/xml")
    assert etree.fromstring(fault.content).findtext(".//faultcode") == "soap:Server"
    server.inject("empty_body")
    empty = get(http, server, "Lln")
    assert empty.status_code == 200 and empty.content == b""


@pytest.mark.parametrize("transport", ["get", "soap"])
def test_truncation_faults(server, http, transport):
    def call() -> httpx.Response:
        return get(http, server, "Lln") if transport == "get" else soap(http, server, "Lln")

    full = call().content
    server.inject("truncated")
    with pytest.raises(httpx.RemoteProtocolError):
        call()
    server.inject("truncated_xml")
    cut = call()
    assert cut.status_code == 200 and int(cut.headers["content-length"]) == len(cut.content)
    assert full.startswith(cut.content) and len(cut.content) < len(full)
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(cut.content)
    assert call().content == full


def test_reset_and_slow_faults(server, http):
    server.inject("reset")
    with pytest.raises(httpx.TransportError):
        get(http, server, "Lln")
    server.inject("slow:0.6")
    with pytest.raises(httpx.ReadTimeout):
        http.get(f"{server.url}/Lln", params=params("Lln"), timeout=0.2)
    server.inject("slow:0.3")
    started = time.monotonic()
    assert items(get(http, server, "Lln"))
    assert time.monotonic() - started >= 0.3


def test_faults_match_operation_and_instelnr_and_are_consumed(server, http):
    server.inject("503", op="Lln", instelnr="30577", times=2)
    assert get(http, server, "Lln").status_code == 200
    assert get(http, server, "LlnExtra", instelnr="030577").status_code == 200
    assert get(http, server, "Lln", instelnr="030577").status_code == 503
    assert soap(http, server, "Lln", params("Lln", instelnr="030577")).status_code == 503
    assert get(http, server, "Lln", instelnr="030577").status_code == 200
    server.inject("502", times=None)
    assert [get(http, server, "Lln").status_code for _ in range(3)] == [502, 502, 502]
    server.clear_faults()
    assert get(http, server, "Lln").status_code == 200
    with pytest.raises(ValueError, match="unknown fault"):
        server.inject("teapot")
    with pytest.raises(ValueError, match="seconds"):
        server.inject("slow:soon")


# --- bookkeeping, size, concurrency ----------------------------------------------------------------
def test_requests_are_recorded_as_sent(server, http):
    get(http, server, "Lln", instelnr="30569")
    post(http, server, "SmartschoolUsers")
    soap(http, server, "Leerkrachten")
    first, second, third = server.requests
    assert (first.transport, first.method, first.op, first.path) == (
        "get",
        "GET",
        "Lln",
        "/wsInformat.asmx/Lln",
    )
    assert first.params == params("Lln", instelnr="30569")
    assert list(second.params) == list(OPERATIONS["SmartschoolUsers"].params)
    assert (third.transport, third.op, third.path) == (
        "soap",
        "Leerkrachten",
        "/wsInfSoft/wsInformat.asmx",
    )
    assert third.params["personeelsgroep_is_een_optie"] == ""
    assert third.headers["SOAPAction"] == f'"{NAMESPACE}/Leerkrachten"'
    server.clear_requests()
    assert server.requests == []


def test_bodies_are_cached_per_effective_request(server, http):
    before = server.cache_info()
    first = get(http, server, "LlnExtra")
    again = get(http, server, "LlnExtra", referentiedatum="15-01-2026")  # same effective date
    after = server.cache_info()
    assert first.content == again.content
    assert after["hits"] >= before["hits"] + 1


def test_concurrent_requests(server, http):
    def one(i: int) -> bytes:
        op = ("Lln", "LlnExtra", "Relaties", "Subgroepen")[i % 4]
        return hashlib.sha256(get(http, server, op).content).digest()

    with ThreadPoolExecutor(8) as pool:
        digests = list(pool.map(one, range(32)))
    assert len(set(digests)) == 4
    assert len(server.requests) == 32


def test_a_body_over_100_megabytes_is_served_intact(http):
    big = "x" * 1_050_000
    rows = {"Lln": [{"p_persoon": str(i), "Naam": big, "_instelnr": "030569"} for i in range(100)]}
    with InformatServer(rows) as server:
        response = get(http, server, "Lln")
    assert response.status_code == 200
    assert len(response.content) == int(response.headers["content-length"]) > 100_000_000
    assert response.content.count(b"<wsInschrijving>") == 100
    assert response.content.endswith(b"</ArrayOfWsInschrijving>")


def test_authenticate_user(server, http):
    ok = http.get(
        f"{server.url}/AuthenticateUser",
        params={"sUserName": DEFAULT_LOGIN, "sPassword": DEFAULT_PASSWORD},
    )
    assert ok.status_code == 200 and ok.text.endswith(
        f'<boolean xmlns="{NAMESPACE}">true</boolean>'
    )
    bad = http.post(
        f"{server.url}/AuthenticateUser", data={"sUserName": DEFAULT_LOGIN, "sPassword": "fout"}
    )
    assert bad.text.endswith(">false</boolean>")


def test_other_paths_and_the_help_page(server, http):
    assert http.get(server.url).headers["content-type"].startswith("text/html")
    assert http.get(server.url.replace("wsInformat.asmx", "other.asmx")).status_code == 404


def test_data_from_a_directory(data, tmp_path, http):
    save_data(data, tmp_path)
    with InformatServer(tmp_path) as server:
        assert keys(get(http, server, "Lln"))


def test_fake_table_matches_the_clients_agreed_table():
    # The fake keeps its own table on purpose; this catches the two drifting apart.
    from provisioner.sources.informat.operations import OPERATIONS as client

    assert set(client) == set(OPERATIONS)
    for name, op in OPERATIONS.items():
        assert (op.params, op.item, op.root, dict(op.nested)) == (
            client[name].params,
            client[name].item,
            client[name].root,
            dict(client[name].nested),
        ), name


def test_command_line_serves_until_interrupted(http):
    process = subprocess.Popen(  # our own module, fixed arguments
        [sys.executable, "-m", "tests.fakes.informat_server", "--pupils", "40", "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    watchdog = threading.Timer(30, process.kill)
    watchdog.start()
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/wsInformat\.asmx", url), url
        response = http.get(f"{url}/Lln", params=params("Lln"))
        assert len(items(response)) > 10
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()
