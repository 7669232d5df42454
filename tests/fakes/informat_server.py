"""A local stand-in for Informat's ``wsInformat.asmx``, faithful to the wire, for tests.

It answers the three transports Informat's ASMX service offers (HTTP GET, HTTP POST form and
SOAP 1.1) with the same envelopes, element names, empty-value forms, error texts and quirks as the
real service (see ``shared/reference/informat-webservice.md``), from rows built by
:mod:`tests.fakes.synthetic` or loaded from disk. It keeps its own table of operations on purpose:
a test double must not share the client's assumptions.

Quirks reproduced (each is asserted in ``tests/test_fake_informat.py``):

- operation names are case-sensitive; GET/POST parameter names are not (SOAP element names are);
- extra GET/POST parameters are ignored, a missing one is HTTP 500 ``Missing parameter: x.``;
  a missing SOAP element is null, i.e. treated as empty;
- wrong credentials: HTTP 500 text (GET/POST) or a ``soap:Server`` fault (SOAP);
- an instelnr without rights, another school year, or a wrongly formatted ``referentiedatum``
  or ``gewijzigdSinds`` give an empty answer, never an error;
- ``instelnr`` is accepted with five or six digits and always answered with six;
- duplicates are served as they are in the data.

:meth:`InformatServer.rewrite` serves awkward values in given fields of given rows (a date in
another form, an impossible date, an empty or missing key, whitespace), as a real database has
them, without a hand-written data set.

Only 127.0.0.1 is ever bound. Run ``python -m tests.fakes.informat_server --pupils 300`` to try a
client against it by hand.
"""

from __future__ import annotations

import argparse
import html
import re
import signal
import socket
import ssl
import struct
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlencode, urlsplit

from lxml import etree

from .faults import take
from .loopback import LoopbackServer
from .synthetic import SyntheticData, generate, load_data, save_data

NAMESPACE = "http://InformatSoftware.be/wsInfSoft/wsInformat"
SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
XSD = "http://www.w3.org/2001/XMLSchema"
SOAP_ACTION_PREFIX = NAMESPACE + "/"

PATHS = ("/wsInformat.asmx", "/wsInfSoft/wsInformat.asmx")
"""Both service paths the real host answers; IIS matches paths case-insensitively."""

DEFAULT_LOGIN = "webservices@school.be"
DEFAULT_PASSWORD = "geheim"  # a fixed test credential for a local fake

MISSING: Any = type("Missing", (), {"__repr__": lambda _self: "MISSING"})()
"""A value for :meth:`InformatServer.rewrite` that leaves the element out altogether."""

NL = "\r\n"
"""ASMX runs on Windows: its indented XML and its error texts use CRLF line ends."""


# --- the operations, from the wire facts -----------------------------------------------------------
@dataclass(frozen=True)
class FakeOperation:
    """One operation as the fake knows it: wire name, declared parameters, item element."""

    name: str
    params: tuple[str, ...]
    item: str
    nested: Mapping[str, str] = field(default_factory=dict)

    @property
    def root(self) -> str:
        """``ArrayOf`` + item with its first letter upper-cased (XmlSerializer's rule)."""
        return "ArrayOf" + self.item[0].upper() + self.item[1:]


_COMMON = ("login", "paswoord", "schooljaar", "instelnr")
_RELATIES = {"Relaties": "Relatie"}
_COMNRS = {"Comnrs": "Comnr"}
_EMAILS = {"Emails": "Email"}


def _op(
    name: str,
    extras: tuple[str, ...],
    item: str,
    nested: Mapping[str, str] | None = None,
    params: tuple[str, ...] | None = None,
) -> FakeOperation:
    return FakeOperation(
        name, params if params is not None else _COMMON + extras, item, nested or {}
    )


OPERATIONS: dict[str, FakeOperation] = {
    op.name: op
    for op in (
        # Verified from help pages and public clients (reference §3).
        _op("Lln", ("referentiedatum", "hoofdstructuur"), "wsInschrijving"),
        _op("LlnExtra", ("referentiedatum", "hoofdstructuur"), "wsLeerling"),
        _op("Subgroepen", ("hoofdstructuur",), "wsKlasgroep"),
        _op("Adressen", ("hoofdstructuur", "referentiedatum", "gewijzigdSinds"), "wsAdres"),
        _op("Relaties", ("hoofdstructuur", "gewijzigdSinds"), "WsRelaties", _RELATIES),
        _op("ComnummersRelatie", ("hoofdstructuur", "gewijzigdSinds"), "WsComnummers", _COMNRS),
        _op(
            "EmailRelatie",
            ("referentiedatum", "hoofdstructuur", "gewijzigdSinds"),
            "WsEmailadressen",
            _EMAILS,
        ),
        _op("AdressenEmail", ("hoofdstructuur",), "WsAdressenEmail"),
        _op(
            "SmartschoolUsers",
            (),
            "User",
            params=(
                "login",
                "paswoord",
                "smartschoolplatform",
                "schooljaar",
                "instelnr",
                "discimusVestigingsnr",
                "referentiedatum",
            ),
        ),
        _op("Leerkrachten", ("personeelsgroep_is_een_optie",), "wsPersoneelslid"),
        _op("LeerkrachtenVrijevelden", (), "wsPersoneelVrijVeld"),
        # Parameters from the Infofiche, item element a guess agreed with the client's table.
        _op("Rekeningnummers", ("hoofdstructuur", "gewijzigdSinds"), "WsRekeningnummers"),
        _op("Inschrijvingen", ("hoofdstructuur", "preRegistrationId"), "WsInschrijving"),
        _op(
            "LeerkrachtenOpdrachten", ("ReferentiedatumNPRE", "Met_NSU_Uren"), "wsPersoneelOpdracht"
        ),
        _op("LeerkrachtenBenoemingen", (), "wsPersoneelBenoeming"),
        _op("LeerkrachtenDienstonderbrekingen", (), "wsPersoneelDienstonderbreking"),
        _op("LeerkrachtenNascholingen", ("begindatum", "einddatum"), "wsPersoneelNascholing"),
        _op("LeerkrachtenDiplomas", (), "wsPersoneelDiploma"),
        _op("Internen", ("referentiedatum", "hoofdstructuur"), "wsIntern"),
        _op(
            "InternaatInschrijvingen",
            ("referentiedatum", "hoofdstructuur"),
            "wsInternaatInschrijving",
        ),
        _op("InternenAdressen", ("hoofdstructuur", "referentiedatum", "gewijzigdSinds"), "wsAdres"),
        _op(
            "InternenEmailRelatie",
            ("referentiedatum", "hoofdstructuur", "gewijzigdSinds"),
            "WsEmailadressen",
            _EMAILS,
        ),
        _op(
            "InternenComnummersRelatie",
            ("hoofdstructuur", "gewijzigdSinds"),
            "WsComnummers",
            _COMNRS,
        ),
        _op("InternenRelaties", ("hoofdstructuur", "gewijzigdSinds"), "WsRelaties", _RELATIES),
    )
}
"""Every data operation the fake serves (the same names and parameters as the client's table)."""

AUTHENTICATE = FakeOperation("AuthenticateUser", ("sUserName", "sPassword"), "boolean")
"""``AuthenticateUser`` answers a bare ``<boolean>``; it is not a data set."""

FAULTS = (
    "503",
    "502",
    "504",
    "500",
    "html",
    "html500",
    "malformed",
    "truncated",
    "truncated_xml",
    "empty_body",
    "reset",
    "soap_fault",
    "echo",
    "echo_html",
    "echo_fault",
    "echo_200",
    "doctype",
)
"""Fault names :meth:`InformatServer.inject` accepts, plus ``"slow:SECONDS"``,
``"junk:MEGABYTES"`` and ``"big:MEGABYTES"``.

The ``echo`` faults answer an error that repeats the request, as misconfigured proxies and debug
pages do: the query string or form body, and the password raw, URL-encoded (``quote`` and
``quote_plus``) and XML-escaped; ``echo`` as ASMX's HTTP 500 text, ``echo_html`` as an HTML error
page (in its title), ``echo_fault`` as a SOAP fault, ``echo_200`` as a 200 answer that is not XML.
``doctype`` answers a normal-looking array with a DOCTYPE that declares an entity; ``junk:N``
streams N MB of elements that are not items, ``big:N`` N MB of items without announcing the size,
both generated while sending (the server holds none of it)."""


# --- error texts -----------------------------------------------------------------------------------
def missing_parameter_text(name: str, transport: str) -> str:
    """ASMX's answer to a GET/POST without a declared parameter (HTTP 500, text/plain)."""
    reader = "UrlParameterReader" if transport == "get" else "HtmlFormParameterReader"
    return (
        NL.join(
            (
                f"System.InvalidOperationException: Missing parameter: {name}.",
                "   at System.Web.Services.Protocols.ValueCollectionParameterReader.Read("
                "NameValueCollection collection)",
                f"   at System.Web.Services.Protocols.{reader}.Read(HttpRequest request)",
                "   at System.Web.Services.Protocols.HttpServerProtocol.ReadParameters()",
                "   at System.Web.Services.Protocols.WebServiceHandler.CoreProcessRequest()",
            )
        )
        + NL
    )


def unrecognized_text(tail: str) -> str:
    """ASMX's answer to an unknown (or wrongly cased) operation over GET/POST."""
    return (
        NL.join(
            (
                "System.InvalidOperationException: Request format is unrecognized for URL unexpectedly "
                f"ending in '{tail}'.",
                "   at System.Web.Services.Protocols.WebServiceHandlerFactory.CoreGetHandler(Type type, "
                "HttpContext context, HttpRequest request, HttpResponse response)",
                "   at System.Web.Services.Protocols.WebServiceHandlerFactory.GetHandler(HttpContext "
                "context, String verb, String url, String filePath)",
            )
        )
        + NL
    )


LOGIN_ERROR = "Ongeldige login of paswoord."


def exception_text(message: str, op: FakeOperation) -> str:
    """An exception thrown inside an operation, as GET/POST show it (HTTP 500, text/plain)."""
    signature = ", ".join(f"String {p}" for p in op.params)
    return f"System.Exception: {message}{NL}   at wsInfSoft.wsInformat.{op.name}({signature}){NL}"


def soap_fault(code: str, message: str) -> bytes:
    """A SOAP 1.1 fault envelope (``code`` is ``Client`` or ``Server``)."""
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<soap:Envelope xmlns:soap="{SOAP_ENV}" xmlns:xsi="{XSI}" xmlns:xsd="{XSD}">'
        f"<soap:Body><soap:Fault><faultcode>soap:{code}</faultcode>"
        f"<faultstring>{_esc(message)}</faultstring><detail /></soap:Fault></soap:Body>"
        "</soap:Envelope>"
    ).encode()


def login_fault_text() -> str:
    """``faultstring`` of a wrong login over SOAP."""
    return f"Server was unable to process request. ---> {LOGIN_ERROR}"


def unknown_action_text(action: str) -> str:
    """``faultstring`` of an unknown SOAPAction (the value as sent, without its quotes)."""
    return (
        "System.Web.Services.Protocols.SoapException: Server did not recognize the value of HTTP "
        f"Header SOAPAction: {action}.{NL}"
        "   at System.Web.Services.Protocols.Soap11ServerProtocolHelper.RouteRequest()"
        f"{NL}   at System.Web.Services.Protocols.SoapServerProtocol.RouteRequest("
        "SoapServerMessage message)"
    )


_HTML_LOGIN = (
    '<!DOCTYPE html>\n<html lang="nl"><head><meta charset="utf-8"><title>Aanmelden - '
    'Informat</title></head>\n<body><form method="post" action="/login">'
    '<input name="username"><input name="password" type="password">'
    "<button>Aanmelden</button></form></body></html>\n"
)
_HTML_500 = (
    "<!DOCTYPE html>\r\n<html>\r\n    <head>\r\n        <title>Runtime Error</title>\r\n"
    '        <meta name="viewport" content="width=device-width" />\r\n    </head>\r\n'
    "    <body bgcolor=\"white\">\r\n            <span><H1>Server Error in '/wsInfSoft' "
    "Application.<hr width=100% size=1 color=silver></H1>\r\n            <h2> <i>Runtime "
    "Error</i> </h2></span>\r\n    </body>\r\n</html>\r\n"
)
_STATUS_TEXT = {
    "500": "Internal Server Error",
    "502": "Bad Gateway",
    "503": "Service Unavailable",
    "504": "Gateway Timeout",
}


# --- rendering -------------------------------------------------------------------------------------
def _esc(text: str) -> str:
    """Escape element text as XmlSerializer does (quotes stay, a CR becomes ``&#xD;``)."""
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    if "\r" in text:
        text = text.replace("\r", "&#xD;")
    return text


def _fields(
    row: Mapping[str, Any], nested: Mapping[str, str], pad: str, sep: str, step: str
) -> list[str]:
    """The child elements of one row or nested child, each on its own line when pretty."""
    out: list[str] = []
    for key, value in row.items():
        if key[0] == "_" or value is MISSING:
            continue
        if value is None:
            out.append(f'{pad}<{key} xsi:nil="true" />')
        elif isinstance(value, str):
            out.append(f"{pad}<{key}>{_esc(value)}</{key}>" if value else f"{pad}<{key} />")
        elif isinstance(value, list):
            if not value:
                out.append(f"{pad}<{key} />")
                continue
            child = nested.get(key) or (key[:-1] if key.endswith("s") else key + "Item")
            inner = pad + step
            out.append(f"{pad}<{key}>")
            for entry in value:
                if entry is None:
                    out.append(f'{inner}<{child} xsi:nil="true" />')
                else:
                    out.append(f"{inner}<{child}>")
                    out.extend(_fields(entry, {}, inner + step, sep, step))
                    out.append(f"{inner}</{child}>")
            out.append(f"{pad}</{key}>")
        else:  # numbers and the like from hand-written data: their text form
            out.append(f"{pad}<{key}>{_esc(str(value))}</{key}>")
    return out


def render_item(op: FakeOperation, row: Mapping[str, Any], *, pretty: bool) -> bytes:
    """One item element, indented two spaces per level (GET/POST) or on one line (SOAP)."""
    if pretty:
        lines = [f"  <{op.item}>", *_fields(row, op.nested, "    ", NL, "  "), f"  </{op.item}>"]
        return NL.join(lines).encode()
    return "".join((f"<{op.item}>", *_fields(row, op.nested, "", "", ""), f"</{op.item}>")).encode()


_XML_DECL = b'<?xml version="1.0" encoding="utf-8"?>'
_NS_ATTRS = f'xmlns:xsi="{XSI}" xmlns:xsd="{XSD}" xmlns="{NAMESPACE}"'


def array_body(op: FakeOperation, items: list[bytes]) -> bytes:
    """A GET/POST answer: the ``ArrayOf…`` document, self-closing when empty."""
    if not items:
        return _XML_DECL + f"{NL}<{op.root} {_NS_ATTRS} />".encode()
    nl = NL.encode()
    return b"".join(
        (
            _XML_DECL,
            nl,
            f"<{op.root} {_NS_ATTRS}>".encode(),
            nl,
            nl.join(items),
            nl,
            f"</{op.root}>".encode(),
        )
    )


def soap_body(op: FakeOperation, items: list[bytes]) -> bytes:
    """A SOAP 1.1 answer: ``<OpResponse><OpResult>items</OpResult></OpResponse>``, one line."""
    head = (
        f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{SOAP_ENV}" '
        f'xmlns:xsi="{XSI}" xmlns:xsd="{XSD}"><soap:Body>'
        f'<{op.name}Response xmlns="{NAMESPACE}">'
    ).encode()
    tail = f"</{op.name}Response></soap:Body></soap:Envelope>".encode()
    if not items:
        return head + f"<{op.name}Result />".encode() + tail
    return b"".join(
        (head, f"<{op.name}Result>".encode(), *items, f"</{op.name}Result>".encode(), tail)
    )


# --- requests and faults ---------------------------------------------------------------------------
@dataclass(frozen=True)
class RequestRecord:
    """What a client sent, as the server saw it."""

    transport: str
    """``"get"``, ``"post"`` or ``"soap"``."""
    method: str
    path: str
    """The URL path (without the query string)."""
    op: str | None
    """Operation named by the URL or SOAPAction, exactly as sent (may be unknown)."""
    params: dict[str, str | None]
    """Parameter names as sent, with their values. GET/POST: names that differ only in case are
    merged, values comma-joined (ASP.NET's NameValueCollection); SOAP: the child elements of the
    request element in the service namespace, ``None`` for ``xsi:nil``."""
    headers: dict[str, str]
    body: bytes
    query: str = ""


@dataclass
class _Fault:
    kind: str
    op: str | None
    instelnr: str | None
    remaining: int | None
    seconds: float = 0.0


class _Params:
    """GET/POST parameters: ASP.NET collections match names case-insensitively and join repeats."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self.raw: dict[str, str] = {}
        self._folded: dict[str, str] = {}
        for name, value in pairs:
            key = name.casefold()
            if key in self._folded:
                first = self._folded[key]
                self.raw[first] = f"{self.raw[first]},{value}"
            else:
                self._folded[key] = name
                self.raw[name] = value

    def get(self, name: str) -> str | None:
        first = self._folded.get(name.casefold())
        return None if first is None else self.raw[first]


class _ServiceError(Exception):
    """An exception "inside" the operation: HTTP 500 text or a soap:Server fault."""


_REFDATE = re.compile(r"(\d{2})-(\d{2})-(\d{4})")
_CHANGED = re.compile(r"(\d{1,2})-(\d{1,2})-(\d{4})")
_INVALID = object()


def _parse_date(value: str, pattern: re.Pattern[str]) -> str | object:
    """ISO date for a ``dd-mm-yyyy`` value, or ``_INVALID`` (Informat then answers nothing)."""
    match = pattern.fullmatch(value)
    if not match:
        return _INVALID
    day, month, year = (int(g) for g in match.groups())
    try:
        return date(year, month, day).isoformat()
    except ValueError:
        return _INVALID


def _six(instelnr: str | None) -> str | None:
    """``30569`` and ``030569`` are the same institution; anything else matches nothing."""
    if instelnr is None or not instelnr.isascii() or not instelnr.isdigit():
        return None
    return str(int(instelnr)).zfill(6)


# --- the HTTP layer --------------------------------------------------------------------------------
class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64
    app: InformatServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like IIS
    timeout = 60  # an idle keep-alive connection ends its thread eventually
    server: _HTTPServer

    def do_GET(self) -> None:
        self.server.app._dispatch(self, "GET")

    def do_POST(self) -> None:
        self.server.app._dispatch(self, "POST")

    def version_string(self) -> str:
        return "Microsoft-IIS/10.0"

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.app.verbose:
            super().log_message(format, *args)


# --- the server ------------------------------------------------------------------------------------
class InformatServer(LoopbackServer):
    """A local ``wsInformat.asmx`` on 127.0.0.1 serving synthetic rows.

    ``data`` is a :class:`~tests.fakes.synthetic.SyntheticData`, a directory written by
    :func:`~tests.fakes.synthetic.save_data`, or a dict (``{operation: rows}`` or
    ``{"rows": …, "notable": …, "schooljaar": …}``); or several school years, one of those per
    school year (``{"2025-26": data, "2026-27": next_year}``, see
    :func:`~tests.fakes.synthetic.next_school_year` and
    :func:`~tests.fakes.synthetic.as_served_on`): each call is answered from the year it asks
    for, and any other year gets the empty answer Informat gives. :attr:`rows`,
    :meth:`rewrite` and :attr:`data` are about the first year given (or ``schooljaar``). ``accounts`` maps login -> (password,
    instelnrs with rights); the default is ``webservices@school.be`` / ``geheim`` with rights on
    every instelnr in the data. ``today`` (what an empty ``referentiedatum`` means) defaults to the
    data's notional today, else the real date. ``filter_today`` names operations without a
    ``referentiedatum`` parameter whose rows are nevertheless limited to today's (unknown for the
    real service; by default none, so e.g. ``Subgroepen`` also returns ended class memberships).
    """

    thread_name = "informat-fake"
    handler = _Handler
    server_class = _HTTPServer

    def __init__(
        self,
        data: SyntheticData | Mapping[str, Any] | str | Path,
        *,
        accounts: Mapping[str, tuple[str, Collection[str]]] | None = None,
        today: date | None = None,
        port: int = 0,
        schooljaar: str | None = None,
        filter_today: Iterable[str] = (),
        cache_bytes: int = 768 * 1024 * 1024,
        verbose: bool = False,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        by_year = _by_school_year(data)
        self.data = by_year[0][1] if by_year else _coerce(data)  # type: ignore[arg-type]
        self.tls = tls
        self.schooljaar = schooljaar or (by_year[0][0] if by_year else self.data.schooljaar)
        if by_year and schooljaar:
            self.data = dict(by_year).get(schooljaar, self.data)
        """The school year :attr:`rows` (and :meth:`rewrite`) belong to: the first one given."""
        self.years: dict[str, dict[str, list[dict[str, Any]]]] = {}
        """Rows per school year served; a school year not in here gets an empty answer."""
        self._by_instelnr: dict[str, dict[str, dict[str, list[int]]]] = {}
        for year, year_data in by_year or [(self.schooljaar, self.data)]:
            self.years[year] = self._indexed(year, year_data)
        if self.schooljaar not in self.years:
            raise ValueError(f"schooljaar {self.schooljaar} is not among {sorted(self.years)}")
        self.rows: dict[str, list[dict[str, Any]]] = self.years[self.schooljaar]
        """The rows of :attr:`schooljaar`, per operation."""
        everywhere = {
            r["_instelnr"] for rows in self.years.values() for op in rows.values() for r in op
        }
        for _year, year_data in by_year or [(self.schooljaar, self.data)]:
            everywhere |= {_six(i) for i in year_data.instelnrs} - {None}  # type: ignore[misc]
        if accounts is None:
            accounts = {DEFAULT_LOGIN: (DEFAULT_PASSWORD, everywhere)}
        self.accounts: dict[str, tuple[str, Collection[str]]] = dict(accounts)
        """login -> (password, instelnrs with rights); tests may add accounts while serving."""
        self.today = today
        """What an empty ``referentiedatum`` means; tests may change it while serving."""
        self.port = port
        self.filter_today = frozenset(filter_today)
        unknown = self.filter_today - OPERATIONS.keys()
        if unknown:
            raise ValueError(f"filter_today names unknown operations: {sorted(unknown)}")
        self.verbose = verbose
        self.requests: list[RequestRecord] = []
        """Every request, in arrival order (appends happen under a lock)."""
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self._render_lock = threading.Lock()
        self._originals: dict[tuple[str, int], dict[str, Any]] = {}
        self._items: dict[tuple[str, str, bool], list[bytes]] = {}
        self._bodies: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        self._cache_bytes = cache_bytes
        self.cache_hits = 0
        self.cache_misses = 0

    def _indexed(self, year: str, data: SyntheticData) -> dict[str, list[dict[str, Any]]]:
        """The rows of one school year per operation, each with its six-digit ``_instelnr``,
        indexed by instelnr."""
        rows: dict[str, list[dict[str, Any]]] = {
            name: list(data.rows.get(name, [])) for name in OPERATIONS
        }
        for name, op_rows in rows.items():
            for i, row in enumerate(op_rows):
                inst = row.get("_instelnr") or row.get("instelnr") or row.get("Instelnr")
                if _six(inst) is None:
                    raise ValueError(
                        f"{year} {name}: a row without a valid _instelnr: {row!r:.200}"
                    )
                if inst != row.get("_instelnr") or len(inst) != 6:
                    # Hand-written rows may leave it out: copy rather than touch the caller's data.
                    op_rows[i] = {**row, "_instelnr": _six(inst)}
        self._by_instelnr[year] = {}
        for name, op_rows in rows.items():
            index: dict[str, list[int]] = {}
            for i, row in enumerate(op_rows):
                index.setdefault(row["_instelnr"], []).append(i)
            self._by_instelnr[year][name] = index
        return rows

    # --- lifecycle -------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT/wsInformat.asmx`` (the path public clients use)."""
        return f"{self.scheme}://127.0.0.1:{self.port}{PATHS[0]}"

    @property
    def url_wsinfsoft(self) -> str:
        """The same service under ``/wsInfSoft/wsInformat.asmx`` (the help pages' path)."""
        return f"{self.scheme}://127.0.0.1:{self.port}{PATHS[1]}"

    @property
    def effective_today(self) -> date:
        """What an empty ``referentiedatum`` stands for."""
        if self.today is not None:
            return self.today
        if self.data.today:
            return date.fromisoformat(self.data.today)
        return date.today()

    # --- test hooks ------------------------------------------------------------------------------
    def inject(
        self,
        fault: str,
        *,
        op: str | None = None,
        instelnr: str | None = None,
        times: int | None = 1,
    ) -> None:
        """Make the next ``times`` matching requests fail with ``fault`` (``None``: until cleared).

        ``op`` and ``instelnr`` narrow the match (instelnr with five or six digits).
        """
        seconds = 0.0
        if fault.startswith(("slow:", "junk:", "big:")):
            kind, _, amount = fault.partition(":")
            try:
                seconds = float(amount)  # seconds to wait, or megabytes of junk to send
            except ValueError:
                what = "seconds" if kind == "slow" else "megabytes"
                raise ValueError(f"{kind} fault needs {what}, got {fault!r}") from None
        elif fault in FAULTS:
            kind = fault
        else:
            raise ValueError(f"unknown fault {fault!r}; choose from {FAULTS} or 'slow:SECONDS'")
        if times is not None and times < 1:
            raise ValueError("times must be at least 1 (or None for always)")
        with self._lock:
            self._faults.append(
                _Fault(kind, op, _six(instelnr) if instelnr else None, times, seconds)
            )

    def rewrite(self, op: str, where: Mapping[str, str], values: Mapping[str, Any]) -> int:
        """Serve *values* in the rows of *op* whose fields equal *where*; returns how many rows.

        A value is served as written (``"2011-02-31"``, ``" 2011-01-10 "``); ``""`` is an empty
        element, ``None`` ``xsi:nil``, :data:`MISSING` no element at all. Rows are replaced, never
        changed in place, so the data the server was made from stays as it was; the originals come
        back with :meth:`restore_rows`.
        """
        rows = self.rows[op]
        changed = 0
        with self._render_lock, self._lock:
            for i, row in enumerate(rows):
                if all(row.get(name) == wanted for name, wanted in where.items()):
                    self._originals.setdefault((op, i), row)
                    rows[i] = {**row, **values}
                    changed += 1
            self._forget_rendered(op)
        if not changed:
            raise ValueError(f"{op}: no row has {dict(where)!r}")
        return changed

    def restore_rows(self) -> None:
        """Serve every row :meth:`rewrite` changed as it was before."""
        with self._render_lock, self._lock:
            for (op, i), row in self._originals.items():
                self.rows[op][i] = row
                self._forget_rendered(op)
            self._originals.clear()

    def _forget_rendered(self, op: str) -> None:
        for pretty in (False, True):
            self._items.pop((self.schooljaar, op, pretty), None)
        for cached in [k for k in self._bodies if k[0] == op]:
            del self._bodies[cached]

    def clear_faults(self) -> None:
        """Forget every injected fault."""
        with self._lock:
            self._faults.clear()

    def clear_requests(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self.requests.clear()

    def cache_info(self) -> dict[str, int]:
        """Body cache statistics: hits, misses, bodies held and their bytes."""
        with self._lock:
            return {
                "hits": self.cache_hits,
                "misses": self.cache_misses,
                "bodies": len(self._bodies),
                "bytes": sum(len(b) for b in self._bodies.values()),
            }

    def _take_fault(self, op: str | None, instelnr: str | None) -> _Fault | None:
        with self._lock:
            return take(
                self._faults,
                lambda f: f.op in (None, op) and f.instelnr in (None, _six(instelnr)),
            )

    # --- dispatch --------------------------------------------------------------------------------
    def _dispatch(self, h: _Handler, method: str) -> None:
        try:
            self._dispatch_inner(h, method)
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True  # the client went away mid-answer; nothing to tell it

    def _dispatch_inner(self, h: _Handler, method: str) -> None:
        split = urlsplit(h.path)
        path = unquote(split.path)
        body = self._read_body(h) if method == "POST" else b""
        base = next(
            (
                p
                for p in PATHS
                if path.casefold() == p.casefold() or path.casefold().startswith(p.casefold() + "/")
            ),
            None,
        )
        if base is None:
            self._send(
                h,
                404,
                "text/html",
                b"<html><head><title>404 - File or directory not "
                b"found.</title></head><body><h2>404 - File or directory not found."
                b"</h2></body></html>",
            )
            return
        rest = path[len(base) :]
        headers = {k: v for k, v in h.headers.items()}
        if rest in ("", "/"):
            if method == "GET":
                self._send(h, 200, "text/html; charset=utf-8", self._help_page())
                return
            self._soap(h, split.path, body, headers, split.query)
            return
        op_name = rest[1:]
        transport = "get" if method == "GET" else "post"
        if transport == "get":
            pairs = parse_qsl(
                split.query, keep_blank_values=True, encoding="utf-8", errors="replace"
            )
        else:
            # HttpPost reads the form only, never the query string.
            ctype = h.headers.get("Content-Type", "").split(";")[0].strip().lower()
            pairs = (
                parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
                if ctype == "application/x-www-form-urlencoded"
                else []
            )
        params = _Params(pairs)
        self._record(
            RequestRecord(
                transport, method, split.path, op_name, dict(params.raw), headers, body, split.query
            )
        )
        if self._apply_fault(h, op_name, params.get, transport):
            return
        op = OPERATIONS.get(op_name) or (AUTHENTICATE if op_name == AUTHENTICATE.name else None)
        if op is None:
            tail = "/" + op_name.rsplit("/", 1)[-1]
            self._send(h, 500, "text/plain; charset=utf-8", unrecognized_text(tail).encode())
            return
        values: dict[str, str | None] = {}
        for name in op.params:
            value = params.get(name)
            if value is None:
                self._send(
                    h,
                    500,
                    "text/plain; charset=utf-8",
                    missing_parameter_text(name, transport).encode(),
                )
                return
            values[name] = value
        try:
            answer = self._answer(op, values, pretty=True)
        except _ServiceError as exc:
            self._send(h, 500, "text/plain; charset=utf-8", exception_text(str(exc), op).encode())
            return
        self._send(h, 200, "text/xml; charset=utf-8", answer)

    def _soap(
        self, h: _Handler, path: str, body: bytes, headers: dict[str, str], query: str
    ) -> None:
        raw_action = h.headers.get("SOAPAction")
        ctype = h.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if raw_action is None and ctype != "text/xml":
            self._record(RequestRecord("soap", "POST", path, None, {}, headers, body, query))
            self._send(
                h,
                500,
                "text/plain; charset=utf-8",
                f"System.InvalidOperationException: Request format is invalid: "
                f"{ctype or '(none)'}.{NL}".encode(),
            )
            return
        action = (raw_action or "").strip()
        if len(action) >= 2 and action[0] == action[-1] == '"':
            action = action[1:-1]
        op_name = (
            action[len(SOAP_ACTION_PREFIX) :] if action.startswith(SOAP_ACTION_PREFIX) else None
        )
        op = OPERATIONS.get(op_name or "") or (
            AUTHENTICATE if op_name == AUTHENTICATE.name else None
        )
        params: dict[str, str | None] = {}
        problem: str | None = None
        try:
            root = etree.fromstring(
                body, etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
            )
            envelope_ok = root.tag == f"{{{SOAP_ENV}}}Envelope"
            soap_body_el = root.find(f"{{{SOAP_ENV}}}Body") if envelope_ok else None
            request = (
                next(iter(soap_body_el.iterchildren(etree.Element)), None)
                if soap_body_el is not None
                else None
            )
            if request is None:
                problem = (
                    "Server was unable to read request. ---> There is an error in XML "
                    "document (1, 1). ---> Root element is missing or has no Body."
                )
            else:
                for child in request.iterchildren(etree.Element):
                    qname = etree.QName(child)
                    # Parameters are element-qualified in the service namespace; others are
                    # invisible to XmlSerializer (so the argument stays null).
                    if qname.namespace == NAMESPACE:
                        nil = child.get(f"{{{XSI}}}nil") == "true"
                        params[qname.localname] = None if nil else (child.text or "")
                if op is not None and request.tag != f"{{{NAMESPACE}}}{op.name}":
                    qname = etree.QName(request)
                    problem = (
                        "Server was unable to read request. ---> There is an error in XML "
                        f"document ({request.sourceline or 1}, 2). ---> <{qname.localname} "
                        f"xmlns='{qname.namespace or ''}'> was not expected."
                    )
        except etree.XMLSyntaxError as exc:
            line, col = exc.position if exc.position else (1, 1)
            problem = (
                "Server was unable to read request. ---> There is an error in XML document "
                f"({line}, {col}). ---> {exc.msg}"
            )
        self._record(
            RequestRecord(
                "soap",
                "POST",
                path,
                op_name if op_name else action or None,
                params,
                headers,
                body,
                query,
            )
        )
        if self._apply_fault(h, op_name, params.get, "soap"):
            return
        if op is None:
            self._send(
                h, 500, "text/xml; charset=utf-8", soap_fault("Client", unknown_action_text(action))
            )
            return
        if problem is not None:
            self._send(h, 500, "text/xml; charset=utf-8", soap_fault("Client", problem))
            return
        # A missing element is a null argument; the service treats it like an empty string.
        values = {name: params.get(name) for name in op.params}
        try:
            answer = self._answer(op, values, pretty=False)
        except _ServiceError as exc:
            self._send(
                h,
                500,
                "text/xml; charset=utf-8",
                soap_fault("Server", f"Server was unable to process request. ---> {exc}"),
            )
            return
        self._send(h, 200, "text/xml; charset=utf-8", answer)

    # --- the service itself ----------------------------------------------------------------------
    def _answer(
        self, op: FakeOperation, values: Mapping[str, str | None], *, pretty: bool
    ) -> bytes:
        """The body for a call that got past parameter binding; raises :class:`_ServiceError`."""
        if op is AUTHENTICATE:
            ok = self._authorised(values.get("sUserName"), values.get("sPassword")) is not None
            text = "true" if ok else "false"
            if pretty:
                return _XML_DECL + f'{NL}<boolean xmlns="{NAMESPACE}">{text}</boolean>'.encode()
            return (
                f'<?xml version="1.0" encoding="utf-8"?><soap:Envelope xmlns:soap="{SOAP_ENV}" '
                f'xmlns:xsi="{XSI}" xmlns:xsd="{XSD}"><soap:Body><AuthenticateUserResponse '
                f'xmlns="{NAMESPACE}"><AuthenticateUserResult>{text}</AuthenticateUserResult>'
                "</AuthenticateUserResponse></soap:Body></soap:Envelope>"
            ).encode()
        rights = self._authorised(values.get("login"), values.get("paswoord"))
        if rights is None:
            raise _ServiceError(LOGIN_ERROR)
        key = self._effective_key(op, values, rights)
        build = soap_body if not pretty else array_body
        if key is None:
            return build(op, [])
        cache_key = (op.name, pretty, *key)
        with self._lock:
            cached = self._bodies.get(cache_key)
            if cached is not None:
                self._bodies.move_to_end(cache_key)
                self.cache_hits += 1
                return cached
            self.cache_misses += 1
        year = key[0]
        items = self._items_for(year, op, pretty)
        rows = self.years[year][op.name]
        body = build(op, [items[i] for i in self._select(year, op, rows, key[1:])])
        with self._lock:
            self._bodies[cache_key] = body
            total = sum(len(b) for b in self._bodies.values())
            while total > self._cache_bytes and len(self._bodies) > 1:
                _, dropped = self._bodies.popitem(last=False)
                total -= len(dropped)
        return body

    def _authorised(self, login: str | None, password: str | None) -> frozenset[str] | None:
        """The account's instelnrs (six digits), or ``None`` for a wrong login or password."""
        account = self.accounts.get(login or "")
        if account is None or login is None or account[0] != password:
            return None
        return frozenset(filter(None, (_six(i) for i in account[1])))

    def _effective_key(
        self, op: FakeOperation, values: Mapping[str, str | None], rights: frozenset[str]
    ) -> tuple[Any, ...] | None:
        """The filters that decide the answer, or ``None`` when it is empty anyway."""
        instelnr = _six(values.get("instelnr"))
        if instelnr is None or instelnr not in rights:
            return None
        year = values.get("schooljaar") or ""
        if year not in self.years:
            return None
        refdate: str | None = None
        if "referentiedatum" in op.params:
            raw = values.get("referentiedatum") or ""
            if raw:
                parsed = _parse_date(raw, _REFDATE)
                if parsed is _INVALID:
                    return None  # a wrong format is no error: just nothing
                refdate = str(parsed)
            else:
                refdate = self.effective_today.isoformat()
        elif op.name in self.filter_today:
            refdate = self.effective_today.isoformat()
        changed: str | None = None
        if "gewijzigdSinds" in op.params and values.get("gewijzigdSinds"):
            parsed = _parse_date(values.get("gewijzigdSinds") or "", _CHANGED)
            if parsed is _INVALID:
                return None
            changed = str(parsed)
        hoofdstructuur = (
            (values.get("hoofdstructuur") or None) if "hoofdstructuur" in op.params else None
        )
        pre_registration = (
            (values.get("preRegistrationId") or None) if "preRegistrationId" in op.params else None
        )
        return (year, instelnr, refdate, changed, hoofdstructuur, pre_registration)

    def _select(
        self, year: str, op: FakeOperation, rows: list[dict[str, Any]], key: tuple[Any, ...]
    ) -> list[int]:
        instelnr, refdate, changed, hoofdstructuur, pre_registration = key
        chosen = []
        for i in self._by_instelnr[year][op.name].get(instelnr, ()):
            row = rows[i]
            if refdate is not None:
                van, tot = row.get("_van"), row.get("_tot")
                if (van is not None and van > refdate) or (tot is not None and tot < refdate):
                    continue
            if changed is not None:
                gewijzigd = row.get("_gewijzigd")
                if gewijzigd is not None and gewijzigd < changed:
                    continue
            if hoofdstructuur is not None and row.get("_hoofdstructuur") != hoofdstructuur:
                continue
            if pre_registration is not None and row.get("PreRegistrationId") != pre_registration:
                continue
            chosen.append(i)
        return chosen

    def _items_for(self, year: str, op: FakeOperation, pretty: bool) -> list[bytes]:
        """Every row of ``op`` rendered once (lazily), so answers are joins of cached bytes."""
        key = (year, op.name, pretty)
        items = self._items.get(key)
        if items is None:
            with self._render_lock:
                items = self._items.get(key)
                if items is None:
                    rows = self.years[year][op.name]
                    items = [render_item(op, row, pretty=pretty) for row in rows]
                    self._items[key] = items
        return items

    # --- faults ----------------------------------------------------------------------------------
    def _apply_fault(
        self, h: _Handler, op_name: str | None, lookup: Callable[[str], str | None], transport: str
    ) -> bool:
        """Answer with an injected fault if one matches; ``False`` lets the request through."""
        fault = self._take_fault(op_name, lookup("instelnr"))
        if fault is None:
            return False
        kind = fault.kind
        if kind == "slow":
            time.sleep(fault.seconds)
            return False
        if kind.startswith("echo"):
            self._send_echo(h, kind, op_name, lookup, transport)
            return True
        if kind in ("junk", "big"):
            self._send_stream(h, op_name, int(fault.seconds * (1 << 20)), junk=kind == "junk")
            return True
        if kind == "doctype":
            op = OPERATIONS.get(op_name or "") or OPERATIONS["Lln"]
            self._send(
                h,
                200,
                "text/xml; charset=utf-8",
                _XML_DECL
                + (
                    f'{NL}<!DOCTYPE {op.root} [<!ENTITY naam "Janssens">]>{NL}'
                    f"<{op.root} {_NS_ATTRS}>{NL}  <{op.item}>{NL}    <p_persoon>1</p_persoon>"
                    f"{NL}    <Naam>&naam;</Naam>{NL}  </{op.item}>{NL}</{op.root}>"
                ).encode(),
            )
            return True
        if kind in _STATUS_TEXT:
            self._send(
                h, int(kind), "text/plain; charset=utf-8", f"{kind} {_STATUS_TEXT[kind]}".encode()
            )
        elif kind == "html":
            self._send(h, 200, "text/html; charset=utf-8", _HTML_LOGIN.encode())
        elif kind == "html500":
            self._send(h, 500, "text/html; charset=utf-8", _HTML_500.encode())
        elif kind == "malformed":
            self._send(
                h,
                200,
                "text/xml; charset=utf-8",
                _XML_DECL
                + NL.encode()
                + (
                    f"<ArrayOfWsInschrijving {_NS_ATTRS}>{NL}  <wsInschrijving>{NL}    "
                    f"<p_persoon>1</Naam>{NL}  </wsInschrijving>{NL}</ArrayOfWsInschrijving>"
                ).encode(),
            )
        elif kind == "soap_fault":
            self._send(
                h,
                500,
                "text/xml; charset=utf-8",
                soap_fault(
                    "Server",
                    "Server was unable to process request. ---> Timeout expired.  The "
                    "timeout period elapsed prior to completion of the operation or the server is "
                    "not responding.",
                ),
            )
        elif kind == "empty_body":
            self._send(h, 200, "text/xml; charset=utf-8", b"")
        elif kind == "reset":
            # SO_LINGER 0: closing sends a TCP RST instead of a polite FIN.
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.close_connection = True
        elif kind in ("truncated", "truncated_xml"):
            full = self._normal_body(op_name, lookup, transport)
            if kind == "truncated":
                # Promise the whole body, send half of it, hang up.
                self._send(
                    h,
                    200,
                    "text/xml; charset=utf-8",
                    full[: len(full) // 2],
                    declared_length=len(full),
                    close=True,
                )
            else:
                self._send(h, 200, "text/xml; charset=utf-8", _cut_mid_item(full))
        return True

    def _send_echo(
        self,
        h: _Handler,
        kind: str,
        op_name: str | None,
        lookup: Callable[[str], str | None],
        transport: str,
    ) -> None:
        """An error that repeats the request, password included in every usual form."""
        password = lookup("paswoord") or lookup("sPassword") or ""
        login = lookup("login") or lookup("sUserName") or ""
        query = urlencode([("login", login), ("paswoord", password), ("instelnr", "030569")])
        echoed = (
            f"Invalid request {PATHS[0]}/{op_name}?{query} (form body {query}; "
            f"paswoord {password!r}, quoted {quote(password, safe='')}, "
            f"plus-quoted {quote_plus(password)}, lower-case hex "
            f"{re.sub('%[0-9A-F]{2}', lambda m: m.group(0).lower(), quote(password))}, "
            f"XML <paswoord>{_esc(password)}</paswoord>, bare {_esc(password)})"
        )
        if kind == "echo":
            text = f"System.ArgumentException: {echoed}{NL}   at wsInformat.{op_name}(){NL}"
            self._send(h, 500, "text/plain; charset=utf-8", text.encode())
        elif kind == "echo_html":
            page = (
                f"<!DOCTYPE html>{NL}<html><head><title>Bad Request - {html.escape(echoed)}"
                f"</title></head><body><pre>{html.escape(echoed)}</pre></body></html>{NL}"
            )
            self._send(h, 500, "text/html; charset=utf-8", page.encode())
        elif kind == "echo_fault":
            message = f"Server was unable to process request. ---> {echoed}"
            self._send(h, 500, "text/xml; charset=utf-8", soap_fault("Server", message))
        else:
            self._send(h, 200, "text/plain; charset=utf-8", echoed.encode())

    def _send_stream(self, h: _Handler, op_name: str | None, size: int, *, junk: bool) -> None:
        """*size* bytes inside the right root, written as they are made: elements that are not
        items, announced with a Content-Length (``junk``), or well-formed items whose size is not
        announced, the answer ending when the connection closes (``big``)."""
        op = OPERATIONS.get(op_name or "") or OPERATIONS["Lln"]
        head = _XML_DECL + f"{NL}<{op.root} {_NS_ATTRS}>{NL}".encode()
        tail = f"</{op.root}>{NL}".encode()
        if junk:
            element = f"  <wsReclame><Tekst>{'x' * 40}</Tekst></wsReclame>{NL}".encode()
        else:
            element = (
                f"  <{op.item}><p_persoon>1</p_persoon><Naam>{'x' * 40}</Naam></{op.item}>{NL}"
            ).encode()
        count = max(1, (size - len(head) - len(tail)) // len(element))
        h.send_response(200)
        h.send_header("Content-Type", "text/xml; charset=utf-8")
        if junk:
            h.send_header("Content-Length", str(len(head) + count * len(element) + len(tail)))
        h.send_header("Connection", "close")
        h.close_connection = True  # a client that refuses the junk hangs up halfway
        h.end_headers()
        h.wfile.write(head)
        batch = element * 1024
        for _ in range(count // 1024):
            h.wfile.write(batch)
        h.wfile.write(element * (count % 1024))
        h.wfile.write(tail)

    def _normal_body(
        self, op_name: str | None, lookup: Callable[[str], str | None], transport: str
    ) -> bytes:
        """What an untroubled call would have answered, for the truncation faults."""
        op = OPERATIONS.get(op_name or "")
        if op is None:
            return array_body(OPERATIONS["Lln"], [])
        values = {name: lookup(name) for name in op.params}
        try:
            return self._answer(op, values, pretty=transport != "soap")
        except _ServiceError:
            return array_body(op, [])

    # --- HTTP plumbing ---------------------------------------------------------------------------
    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self.requests.append(record)

    @staticmethod
    def _read_body(h: _Handler) -> bytes:
        if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(h.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(h.rfile.read(size))
                h.rfile.readline()
        length = int(h.headers.get("Content-Length") or 0)
        return h.rfile.read(length) if length > 0 else b""

    @staticmethod
    def _send(
        h: _Handler,
        status: int,
        content_type: str,
        body: bytes,
        *,
        declared_length: int | None = None,
        close: bool = False,
    ) -> None:
        h.send_response(status)
        h.send_header("Cache-Control", "private, max-age=0")
        h.send_header("Content-Type", content_type)
        h.send_header(
            "Content-Length", str(len(body) if declared_length is None else declared_length)
        )
        h.send_header("X-AspNet-Version", "4.0.30319")
        h.send_header("X-Powered-By", "ASP.NET")
        if close:
            h.send_header("Connection", "close")
            h.close_connection = True
        h.end_headers()
        h.wfile.write(body)

    def _help_page(self) -> bytes:
        items = "".join(f'<li><a href="?op={name}">{name}</a></li>' for name in OPERATIONS)
        return (
            "<html><head><title>wsInformat Web Service</title></head><body>"
            "<h1>wsInformat</h1><p>Local Informat test double. Operations:</p>"
            f"<ul>{items}</ul></body></html>"
        ).encode()


def _cut_mid_item(body: bytes) -> bytes:
    """The body cut off inside an item, as a dropped proxy connection leaves it."""
    first_item = body.find(b"\n  <")
    if first_item < 0:  # no indented items (SOAP, or an empty array): just half of it
        return body[: max(1, len(body) // 2)]
    # From the middle on, just after the next tag: "...<Naam>" never closes.
    middle = max(first_item + 4, len(body) // 2)
    tag_end = body.find(b">", middle)
    return body[: tag_end + 1] if tag_end > 0 else body[:middle]


_SCHOOLJAAR = re.compile(r"^\d{4}-\d{2}$")


def _by_school_year(data: object) -> list[tuple[str, SyntheticData]]:
    """``{"2025-26": data, "2026-27": data}`` as (school year, data) pairs in the order given;
    ``[]`` for data of one school year (any other form :func:`_coerce` takes)."""
    if not isinstance(data, Mapping) or not data or "rows" in data:
        return []
    if not all(isinstance(k, str) and _SCHOOLJAAR.match(k) for k in data):
        return []
    return [(year, _coerce(value)) for year, value in data.items()]


def _coerce(data: SyntheticData | Mapping[str, Any] | str | Path) -> SyntheticData:
    if isinstance(data, SyntheticData):
        return data
    if isinstance(data, str | Path):
        return load_data(data)
    if "rows" in data and isinstance(data["rows"], Mapping):
        return SyntheticData(
            rows=dict(data["rows"]),
            notable=dict(data.get("notable", {})),
            schooljaar=data.get("schooljaar", "2025-26"),
            instelnrs=tuple(data.get("instelnrs", ())),
            today=data.get("today", ""),
        )
    unknown = set(data) - OPERATIONS.keys()
    if unknown:
        raise ValueError(f"unknown operations in data: {sorted(unknown)}")
    return SyntheticData(rows={k: list(v) for k, v in data.items()})


# --- command line ----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """Serve synthetic data until Ctrl-C (``python -m tests.fakes.informat_server``)."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.informat_server",
        description="Local Informat wsInformat.asmx test server.",
    )
    parser.add_argument("--pupils", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--schooljaar", default="2025-26")
    parser.add_argument(
        "--instelnr",
        action="append",
        dest="instelnrs",
        help="repeat for several (default 030569 and 030577)",
    )
    parser.add_argument(
        "--data",
        type=Path,
        help="serve this directory (save_data format); generated into it if empty",
    )
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument(
        "--today", type=date.fromisoformat, help="what an empty referentiedatum means (YYYY-MM-DD)"
    )
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    if args.data is not None and (args.data / "meta.json").exists():
        data = load_data(args.data)
    else:
        data = generate(
            args.pupils,
            instelnrs=tuple(args.instelnrs or ("030569", "030577")),
            schooljaar=args.schooljaar,
            seed=args.seed,
        )
        if args.data is not None:
            save_data(data, args.data)
    server = InformatServer(data, port=args.port, today=args.today, verbose=args.verbose)
    server.start()
    print(server.url, flush=True)
    print(f"  also {server.url_wsinfsoft}", flush=True)
    print(
        f"  login {DEFAULT_LOGIN!r} password {DEFAULT_PASSWORD!r}, schooljaar "
        f"{data.schooljaar}, instelnrs {', '.join(data.instelnrs)}, today "
        f"{server.effective_today.isoformat()}",
        flush=True,
    )
    for name, value in data.notable.items():
        print(f"  {name}: {value}", flush=True)
    # Ctrl-C (SIGINT) stops it, also when it was started from a shell that ignores SIGINT for its
    # background jobs (a child inherits that, and Python then leaves SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
