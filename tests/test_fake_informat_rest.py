"""The REST fake itself, spoken to with plain httpx: what it answers must be what the reference
(section 12) says Informat's REST APIs answer, or the REST source's tests prove nothing."""

from __future__ import annotations

import json
import socket
import ssl

import httpx
import pytest

from tests.fakes.informat_rest_server import CLIENT_ID, CLIENT_SECRET, rest_view

STUDENT_SCOPE = "api_informat_sas_leerlingen.leerlingen.{}"
STAFF_SCOPE = "api_informat_sas_personeel.personeel.{}"


@pytest.fixture
def http(rest_ca):
    with httpx.Client(verify=ssl.create_default_context(cafile=str(rest_ca.ca_file))) as client:
        yield client


def token(http, server, *scopes: str, secret: str = CLIENT_SECRET) -> httpx.Response:
    return http.post(
        server.token_url,
        data={
            "client_id": CLIENT_ID,
            "client_secret": secret,
            "grant_type": "client_credentials",
            "scope": " ".join(scopes),
        },
    )


def get(http, server, path: str, instelnr: str, bearer: str, **params: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {bearer}", "InstituteNo": instelnr}
    if path.startswith("/employees"):
        headers["Api-Version"] = "2"
    return http.get(server.url + path, params=params or {"schoolYear": "2025-26"}, headers=headers)


def bearer(http, server, *scopes: str) -> str:
    answer = token(http, server, *scopes)
    assert answer.status_code == 200, answer.text
    return answer.json()["access_token"]


def test_the_token_endpoint_speaks_client_credentials_over_tls(http, rest_server):
    assert rest_server.token_url.startswith("https://127.0.0.1:")
    answer = token(http, rest_server, STUDENT_SCOPE.format("030569"))
    body = answer.json()
    assert answer.status_code == 200
    assert body["token_type"] == "Bearer" and body["expires_in"] == rest_server.token_lifetime
    assert token(http, rest_server, STUDENT_SCOPE.format("030569"), secret="fout").json() == {
        "error": "invalid_client"
    }
    rest_server.refused_apis.add(("030577", "leerlingen"))
    refused = token(http, rest_server, STUDENT_SCOPE.format("030577"))
    assert (refused.status_code, refused.json()) == (400, {"error": "invalid_scope"})
    assert token(http, rest_server, STAFF_SCOPE.format("030577")).status_code == 200


def test_plain_http_gets_no_answer(http, rest_server):
    with socket.create_connection(("127.0.0.1", rest_server.port), timeout=5) as raw:
        raw.sendall(b"POST /connect/token HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        try:
            reply = raw.recv(100)
        except ConnectionResetError:
            reply = b""
        assert not reply.startswith(b"HTTP/")
    assert rest_server.requests == []  # never reached the application
    assert token(http, rest_server, STAFF_SCOPE.format("030569")).status_code == 200


def test_scopes_are_checked_per_instellingsnummer(http, rest_server):
    only_569 = bearer(http, rest_server, STUDENT_SCOPE.format("030569"))
    assert get(http, rest_server, "/1/students", "030569", only_569).status_code == 200
    other = get(http, rest_server, "/1/students", "030577", only_569)
    assert other.status_code == 403
    assert other.json() == {
        "errors": [{"code": "MNA001", "message": "Geen toegang tot instelling 030577"}]
    }
    assert get(http, rest_server, "/employees", "030569", only_569).status_code == 403


def test_headers_and_parameters_are_checked(http, rest_server):
    staff = bearer(http, rest_server, STAFF_SCOPE.format("030569"))
    assert get(http, rest_server, "/employees", "030569", "no-such-token").status_code == 401
    short = get(http, rest_server, "/employees", "30569", staff)
    assert (short.status_code, short.json()["errors"][0]["code"]) == (400, "BR001")
    no_version = http.get(
        rest_server.url + "/employees",
        params={"schoolYear": "2025-26"},
        headers={"Authorization": f"Bearer {staff}", "InstituteNo": "030569"},
    )
    assert (no_version.status_code, no_version.json()["errors"][0]["code"]) == (400, "BR002")
    no_year = http.get(
        rest_server.url + "/employees",
        headers={"Authorization": f"Bearer {staff}", "InstituteNo": "030569", "Api-Version": "2"},
    )
    assert no_year.json()["errors"][0]["code"] == "BR035B"
    other_year = get(http, rest_server, "/employees", "030569", staff, schoolYear="2024-25")
    assert other_year.json() == []


def test_the_answers_have_the_reference_shapes(http, rest_server, synthetic):
    pupils = bearer(http, rest_server, STUDENT_SCOPE.format("030569"))
    students = get(http, rest_server, "/1/students", "030569", pupils).json()["students"]
    assert {"pPersoon", "persoonId", "naam", "voornaam", "geboortedatum", "geslacht"} <= set(
        students[0]
    )
    assert isinstance(students[0]["pPersoon"], int)
    registrations = get(http, rest_server, "/1/registrations", "030569", pupils).json()
    registration = registrations["registrations"][0]
    assert {"inschrijvingsId", "pInschr", "pPersoon", "instelnr", "status", "inschrKlassen"} <= set(
        registration
    )
    klas = next(r for r in registrations["registrations"] if r["inschrKlassen"])["inschrKlassen"][0]
    assert set(klas) == {
        "klasId",
        "pKlas",
        "klasCode",
        "klas",
        "groepType",
        "klasnummer",
        "begindatum",
        "einddatum",
    }
    staff = bearer(http, rest_server, STAFF_SCOPE.format("030569"))
    employees = get(http, rest_server, "/employees", "030569", staff).json()
    assert isinstance(employees, list) and isinstance(employees[0]["isActief"], bool)


def test_the_rest_view_holds_the_same_school_as_the_web_service_rows(synthetic):
    view = rest_view(synthetic)
    assert set(view) == {"030569", "030577"}
    registrations = sum(len(v["registrations"]) for v in view.values())
    assert registrations == len(synthetic.rows["Lln"])
    klassen = sum(len(r["inschrKlassen"]) for v in view.values() for r in v["registrations"])
    assert klassen == len(synthetic.rows["Subgroepen"])
    assert sum(len(v["employees"]) for v in view.values()) == len(synthetic.rows["Leerkrachten"])
    pupil = synthetic.notable["class_change"]
    (reg,) = [r for r in view["030569"]["registrations"] if str(r["pPersoon"]) == pupil]
    assert sorted(k["groepType"] for k in reg["inschrKlassen"]).count(0) == 2


@pytest.mark.parametrize(
    ("fault", "status"), [("401", 401), ("403", 403), ("429:3", 429), ("503", 503)]
)
def test_faults_answer_as_injected_then_stop(http, rest_server, fault, status):
    staff = bearer(http, rest_server, STAFF_SCOPE.format("030569"))
    rest_server.inject(fault, path="/employees")
    failed = get(http, rest_server, "/employees", "030569", staff)
    assert failed.status_code == status
    if status == 429:
        assert failed.headers["Retry-After"] == "3"
        assert failed.json()["errors"][0]["code"] == "MNA429"
    assert get(http, rest_server, "/employees", "030569", staff).status_code == 200


def test_a_truncated_answer_promises_more_than_it_sends(http, rest_server):
    staff = bearer(http, rest_server, STAFF_SCOPE.format("030569"))
    rest_server.inject("truncated", path="/employees")
    with pytest.raises(httpx.RemoteProtocolError):
        get(http, rest_server, "/employees", "030569", staff)
    rest_server.inject("malformed", path="/employees")
    with pytest.raises(json.JSONDecodeError):
        get(http, rest_server, "/employees", "030569", staff).json()


def test_expired_tokens_are_refused(http, rest_server):
    staff = bearer(http, rest_server, STAFF_SCOPE.format("030569"))
    rest_server.expire_tokens()
    refused = get(http, rest_server, "/employees", "030569", staff)
    assert refused.status_code == 401
    assert "invalid_token" in refused.headers["WWW-Authenticate"]
