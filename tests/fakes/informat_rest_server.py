"""A local stand-in for Informat's OAuth2 REST APIs (the reference's section 12), for tests.

One server on 127.0.0.1, over TLS like the real hosts, answers the identity server's token
endpoint and both APIs:

- ``POST /connect/token`` (client credentials): a bearer token for the scopes asked, each
  ``api_informat_sas_leerlingen.leerlingen.{instelnr}`` or
  ``api_informat_sas_personeel.personeel.{instelnr}``; ``invalid_client`` for wrong credentials,
  ``invalid_scope`` when a scope is not granted to the client;
- ``GET /1/students`` → ``{"students": [...]}``, ``GET /1/registrations`` →
  ``{"registrations": [...]}`` with their ``inschrKlassen``, ``GET /employees`` (header
  ``Api-Version: 2``) → a bare array, ``GET /employees/OwnFields`` → a bare array;
  each needs ``Authorization: Bearer``, ``InstituteNo`` (six digits) whose scope the token holds
  (else 403), and ``schoolYear``; another school year answers an empty list.

Errors come as ``{"errors": [{"code": …, "message": …}]}``. The data is made from the same
synthetic rows as the web-service fake (:func:`rest_view`), so one synthetic school can be served
both ways. Faults (:meth:`InformatRestServer.inject`): ``401``, ``403``, ``429`` (with
``Retry-After``), ``503``, ``slow:SECONDS``, ``truncated`` (a body cut off), ``malformed`` (a
complete body that is no JSON), ``empty`` (an empty array); :meth:`expire_tokens` makes every
issued token expire on the server's side.
"""

from __future__ import annotations

import json
import secrets
import ssl
import sys
import threading
import time
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .faults import take
from .loopback import LoopbackServer
from .synthetic import SyntheticData

CLIENT_ID = "provisioner-test"
CLIENT_SECRET = "rest-geheim"  # a fixed test credential for a local fake
SCOPE_FORMS = {
    "leerlingen": "api_informat_sas_leerlingen.leerlingen.{}",
    "personeel": "api_informat_sas_personeel.personeel.{}",
}
PATHS = {
    "/1/students": ("leerlingen", "students", "students"),
    "/1/registrations": ("leerlingen", "registrations", "registrations"),
    "/employees": ("personeel", "employees", None),
    "/employees/OwnFields": ("personeel", "ownfields", None),
}
"""path → (API, what it answers, the member holding the array or None for a bare array)."""
FAULTS = ("401", "403", "429", "503", "slow", "truncated", "malformed", "empty")


# --- the data, as the REST APIs shape it -----------------------------------------------------------
def _int(value: str) -> int | str:
    return int(value) if value.isdigit() else value


def _guid(*parts: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "informat:" + "/".join(parts)))


def _iso(value: Any) -> str | None:
    """The REST APIs write dates as ``2025-09-01T00:00:00``."""
    if not value:
        return None
    text = str(value)
    if "." in text:  # DD.MM.YYYY of the Leerkrachten sets
        day, month, year = text.split(".")
        text = f"{year}-{month}-{day}"
    return text[:10] + "T00:00:00"


def rest_view(data: SyntheticData) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Per instelnr, what each REST endpoint answers, made from the web service's rows of the
    same synthetic school: one student per person, one registration per ``Lln`` row with its
    ``Subgroepen`` rows as ``inschrKlassen``, one employee per ``Leerkrachten`` row, one own
    field per ``LeerkrachtenVrijevelden`` row."""
    view: dict[str, dict[str, list[dict[str, Any]]]] = {}

    def of(instelnr: str) -> dict[str, list[dict[str, Any]]]:
        return view.setdefault(
            instelnr, {"students": [], "registrations": [], "employees": [], "ownfields": []}
        )

    klassen: dict[str, list[dict[str, Any]]] = {}
    for row in data.rows.get("Subgroepen", []):
        klassen.setdefault(row["PInschrijving"], []).append(
            {
                "klasId": _guid("klas", row["_instelnr"], row["Klascode"]),
                "pKlas": _int(row["PKlas"]),
                "klasCode": row["Klascode"],
                "klas": row["Klas"],
                "groepType": int(row["Groeptype"]),
                "klasnummer": _int(row["Klasnr"]) if row.get("Klasnr") else None,
                "begindatum": row["_van"] + "T00:00:00",
                "einddatum": row["_tot"] + "T00:00:00" if row["_tot"] else None,
            }
        )
    students: set[tuple[str, str]] = set()
    for row in data.rows.get("Lln", []):
        nr, pid = row["_instelnr"], row["p_persoon"]
        if (nr, pid) not in students:
            students.add((nr, pid))
            of(nr)["students"].append(
                {
                    "pPersoon": int(pid),
                    "persoonId": _guid("persoon", pid),
                    "naam": row["Naam"],
                    "voornaam": row["Voornaam"],
                    "geboortedatum": _iso(row.get("geboortedatum")),
                    "geslacht": row.get("geslacht"),
                    "rijksregisternr": row.get("rijksregnr"),
                    "adressen": [],
                    "relaties": [],
                    "comnrs": [],
                    "emails": [],
                }
            )
        of(nr)["registrations"].append(
            {
                "inschrijvingsId": _guid("inschrijving", row["PInschrijving"]),
                "pInschr": int(row["PInschrijving"]),
                "pPersoon": int(pid),
                "persoonId": _guid("persoon", pid),
                "instelnr": str(int(nr)),  # as a number would print: without the leading zero
                "hfdstructuur": _int(row["_hoofdstructuur"]),
                "stamnr": row.get("stamnr"),
                "vestCode": row.get("vestcode"),
                "begindatum": row["_van"] + "T00:00:00",
                "einddatum": row["_tot"] + "T00:00:00" if row["_tot"] else None,
                "afdCode": row.get("afdcode") or None,
                "nrAdmgrp": row.get("nr_admgr") or None,
                "status": int(row["voorlopig"]),
                "graad": _int(row["graad"]) if row.get("graad") else None,
                "leerjaar": _int(row["leerjaar"]) if row.get("leerjaar") else None,
                "finCode": 1,
                "isOkan": False,
                "inschrKlassen": klassen.get(row["PInschrijving"], []),
            }
        )
    for row in data.rows.get("Leerkrachten", []):
        of(row["_instelnr"])["employees"].append(
            {
                "pPersoon": int(row["p_persoon"]),
                "persoonId": _guid("persoon", row["p_persoon"]),
                "stamnummer": row.get("Stamnummer"),
                "naam": row["Naam"],
                "voornaam": row["Voornaam"],
                "geboortedatum": _iso(row.get("Geboortedatum")),
                "geslacht": row.get("Geslacht"),
                "rijksregisternr": row.get("Rijksregnr"),
                "email": row.get("School_email"),
                "isActief": row.get("Actief") == "J",
            }
        )
    for row in data.rows.get("LeerkrachtenVrijevelden", []):
        of(row["_instelnr"])["ownfields"].append(
            {
                "pPersoon": int(row["pPersoon"]),
                "omschrijving": row["OmschrijvingVrijVeld"],
                "waarde": row["WaardeVrijVeld"],
                "datatype": row.get("Datatype"),
                "rubriek": row.get("Rubriek"),
            }
        )
    for nr in data.instelnrs:
        of(str(nr).zfill(6))
    return view


# --- the server ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RestRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    form: dict[str, str]


@dataclass
class _Fault:
    kind: str
    path: str | None
    instelnr: str | None
    remaining: int | None
    seconds: float = 0.0


@dataclass
class _Token:
    client: str
    scopes: frozenset[str]
    expires: float


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    app: InformatRestServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up on a slow answer closed its end: expected, not worth a trace.
        if not isinstance(sys.exc_info()[1], ConnectionError | ssl.SSLError | TimeoutError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60
    server: _HTTPServer

    def do_GET(self) -> None:
        self.server.app._dispatch(self, "GET")

    def do_POST(self) -> None:
        self.server.app._dispatch(self, "POST")

    def log_message(self, format: str, *args: Any) -> None:
        pass


class InformatRestServer(LoopbackServer):
    """Informat's token endpoint and REST APIs on 127.0.0.1, serving :func:`rest_view` of *data*.

    ``clients`` maps client_id → (secret, instelnrs whose scopes it is granted); by default
    :data:`CLIENT_ID` / :data:`CLIENT_SECRET` with every scope of every instelnr in the data.
    ``refused_apis`` names (instelnr, API) pairs whose scope the clients are not granted whatever
    ``clients`` says. Tokens live ``token_lifetime`` seconds."""

    thread_name = "informat-rest-fake"
    handler = _Handler
    server_class = _HTTPServer

    def __init__(
        self,
        data: SyntheticData,
        *,
        tls: Any,
        clients: Mapping[str, tuple[str, Collection[str]]] | None = None,
        token_lifetime: int = 3600,
        port: int = 0,
    ) -> None:
        self.data = data
        self.tls = tls
        self.port = port
        self.schooljaar = data.schooljaar
        self.view = rest_view(data)
        everywhere = set(self.view)
        self.clients: dict[str, tuple[str, Collection[str]]] = dict(
            clients or {CLIENT_ID: (CLIENT_SECRET, everywhere)}
        )
        self.refused_apis: set[tuple[str, str]] = set()
        self.token_lifetime = token_lifetime
        self.requests: list[RestRequest] = []
        self._tokens: dict[str, _Token] = {}
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def token_url(self) -> str:
        return f"{self.url}/connect/token"

    # --- test controls ---------------------------------------------------------------------------
    def inject(
        self,
        fault: str,
        *,
        path: str | None = None,
        instelnr: str | None = None,
        times: int | None = 1,
    ) -> None:
        """Make the next *times* matching requests fail with *fault* (None: until cleared).
        ``429:SECONDS`` sets the Retry-After, ``slow:SECONDS`` delays the answer."""
        kind, _, amount = fault.partition(":")
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; choose from {FAULTS}")
        seconds = float(amount) if amount else (1.0 if kind == "429" else 0.0)
        with self._lock:
            self._faults.append(_Fault(kind, path, instelnr, times, seconds))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self.requests.clear()
            self._tokens.clear()
            self.refused_apis.clear()

    def expire_tokens(self) -> None:
        """Every token issued so far expires now (the client still thinks it valid)."""
        with self._lock:
            for token in self._tokens.values():
                token.expires = 0.0

    def token_requests(self) -> int:
        return sum(1 for r in self.requests if r.path == "/connect/token")

    def _take_fault(self, path: str, instelnr: str | None) -> _Fault | None:
        with self._lock:
            return take(
                self._faults, lambda f: f.path in (None, path) and f.instelnr in (None, instelnr)
            )

    # --- HTTP ------------------------------------------------------------------------------------
    def _dispatch(self, h: _Handler, method: str) -> None:
        parts = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        form = dict(parse_qsl(body.decode("utf-8", "replace"))) if method == "POST" else {}
        request = RestRequest(
            method, parts.path, dict(parse_qsl(parts.query)), dict(h.headers.items()), form
        )
        with self._lock:
            self.requests.append(request)
        if parts.path == "/connect/token" and method == "POST":
            self._token(h, form)
        elif parts.path in PATHS and method == "GET":
            self._api(h, request)
        else:
            self._errors(h, 404, "DNF001", f"{method} {parts.path} bestaat niet")

    def _token(self, h: _Handler, form: Mapping[str, str]) -> None:
        if form.get("grant_type") != "client_credentials":
            self._json(h, 400, {"error": "unsupported_grant_type"})
            return
        client = self.clients.get(form.get("client_id", ""))
        if client is None or client[0] != form.get("client_secret"):
            self._json(h, 400, {"error": "invalid_client"})
            return
        granted = {
            form_.format(str(nr).zfill(6))
            for nr in client[1]
            for api, form_ in SCOPE_FORMS.items()
            if (str(nr).zfill(6), api) not in self.refused_apis
        }
        asked = set(form.get("scope", "").split())
        if not asked or not asked <= granted:
            self._json(h, 400, {"error": "invalid_scope"})
            return
        value = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[value] = _Token(
                form["client_id"], frozenset(asked), time.monotonic() + self.token_lifetime
            )
        self._json(
            h,
            200,
            {"access_token": value, "token_type": "Bearer", "expires_in": self.token_lifetime},
        )

    def _api(self, h: _Handler, request: RestRequest) -> None:
        api, what, wrapper = PATHS[request.path]
        instelnr = request.headers.get("InstituteNo", "")
        fault = self._take_fault(request.path, instelnr)
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.seconds)
            fault = None
        auth = request.headers.get("Authorization", "")
        token = (
            self._tokens.get(auth.removeprefix("Bearer ")) if auth.startswith("Bearer ") else None
        )
        if (fault and fault.kind == "401") or token is None or token.expires <= time.monotonic():
            self._send(h, 401, b"", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
            return
        if len(instelnr) != 6 or not instelnr.isdigit():
            self._errors(h, 400, "BR001", "InstituteNo moet zes cijfers zijn")
            return
        if api == "personeel" and request.headers.get("Api-Version") != "2":
            self._errors(h, 400, "BR002", "Api-Version 2 is vereist")
            return
        if (fault and fault.kind == "403") or SCOPE_FORMS[api].format(instelnr) not in token.scopes:
            self._errors(h, 403, "MNA001", f"Geen toegang tot instelling {instelnr}")
            return
        if fault and fault.kind == "429":
            self._errors(
                h, 429, "MNA429", "Te veel aanvragen", headers={"Retry-After": f"{fault.seconds:g}"}
            )
            return
        if fault and fault.kind == "503":
            self._send(h, 503, b"Service Unavailable", content_type="text/plain")
            return
        year = request.query.get("schoolYear", "")
        if not year:
            self._errors(h, 400, "BR035B", "schoolYear is verplicht")
            return
        items = self.view.get(instelnr, {}).get(what, []) if year == self.schooljaar else []
        if fault and fault.kind == "empty":
            items = []
        body = json.dumps({wrapper: items} if wrapper else items, ensure_ascii=False).encode()
        if fault and fault.kind == "malformed":
            self._send(h, 200, body[: len(body) // 2])
        elif fault and fault.kind == "truncated":
            self._send(h, 200, body[: len(body) // 2], declared=len(body), close=True)
        else:
            self._send(h, 200, body)

    def _errors(
        self, h: _Handler, status: int, code: str, message: str, headers: Mapping[str, str] = {}
    ) -> None:
        self._json(h, status, {"errors": [{"code": code, "message": message}]}, headers)

    def _json(self, h: _Handler, status: int, value: Any, headers: Mapping[str, str] = {}) -> None:
        self._send(h, status, json.dumps(value).encode(), headers=headers)

    def _send(
        self,
        h: _Handler,
        status: int,
        body: bytes,
        *,
        content_type: str = "application/json; charset=utf-8",
        headers: Mapping[str, str] = {},
        declared: int | None = None,
        close: bool = False,
    ) -> None:
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(declared if declared is not None else len(body)))
        for name, value in headers.items():
            h.send_header(name, value)
        if close:
            h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.write(body)
        h.wfile.flush()
        if close:
            h.close_connection = True
