"""A local, in-memory, Graph-compatible HTTP server for users, groups, members, owners, delta and
$batch, with the Entra ID token endpoint in front of it.

No installable Graph emulator covers directory writes (reference §11), so the project keeps its
own. It follows the measured behaviour in ``/work/shared/reference/microsoft-graph.md``: the JSON
shapes and error bodies of Graph v1.0, paging through an opaque ``@odata.nextLink``, the
``$filter`` subset the provisioner uses (with the advanced-query rule), ``$batch`` with per-item
statuses and ``dependsOn``, delta links with ``@removed``, throttling with ``Retry-After``, and
Graph's refusal of unknown and read-only properties.

Usage::

    with GraphServer() as graph:
        httpx.get(f"{graph.url}/users", headers={"Authorization": f"Bearer {graph.token}"})

With ``tls=True`` (or a :class:`~tests.fakes.tls.TestCA`) it serves https, and the real
azure-identity credentials get their token from it (reference §3.1)::

    with GraphServer(tls=True) as graph:
        graph.register_app(tenant_id, client_id, secret="s3cret")
        credential = azure.identity.aio.ClientSecretCredential(
            tenant_id, client_id, "s3cret", authority=graph.authority,
            connection_verify=str(graph.ca_file), disable_instance_discovery=True)

The aio credentials only ``POST /{tenant}/oauth2/v2.0/token``; MSAL (the sync credentials) first
reads ``GET /{tenant}/v2.0/.well-known/openid-configuration``. Both are served.

It binds 127.0.0.1 only, on a free port. Time-dependent behaviour (write quota, replication lag)
reads ``server.clock``, which tests may replace so that nothing ever sleeps. Standalone, for
benchmarks in another process: ``python -m tests.fakes.graph_server --port N [--seed-users K]``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import bisect
import contextlib
import hmac
import json
import math
import random
import re
import signal
import ssl
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, unquote, urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from .loopback import LoopbackServer
from .tls import TestCA, make_test_ca

GRAPH_ROOT = "https://graph.microsoft.com/v1.0"
CONTENT_TYPE = (
    "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;"
    "charset=utf-8"
)
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
"""The one scope an application token for Graph is requested with (client credentials)."""
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
"""Microsoft Graph's application id: ``{GRAPH_APP_ID}/.default`` names the same resource."""
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
MAX_BATCH = 20
MAX_BIND = 20
DEFAULT_TOP = 100
MAX_TOP = 999

USER_DEFAULT = (
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
)
"""Graph's default property set for a user (also the 201 reply)."""

USER_WRITABLE = frozenset(
    (
        "accountEnabled",
        "displayName",
        "givenName",
        "surname",
        "mailNickname",
        "userPrincipalName",
        "passwordProfile",
        "employeeId",
        "employeeType",
        "department",
        "jobTitle",
        "usageLocation",
        "companyName",
        "officeLocation",
        "preferredLanguage",
        "mobilePhone",
        "businessPhones",
        "city",
        "country",
        "state",
        "postalCode",
        "streetAddress",
        "onPremisesImmutableId",
        "mail",
    )
)
"""User properties a create or PATCH may set; any other name answers 400, as Graph does."""
USER_PROPS = USER_WRITABLE | {
    "id",
    "createdDateTime",
    "proxyAddresses",
    "assignedLicenses",
    "onPremisesSyncEnabled",
}
"""Every user property the fake knows (``$select``); the ones not writable are read-only."""
GROUP_DEFAULT = (
    "id",
    "createdDateTime",
    "description",
    "displayName",
    "groupTypes",
    "mail",
    "mailEnabled",
    "mailNickname",
    "renewedDateTime",
    "securityEnabled",
    "securityIdentifier",
    "visibility",
)
GROUP_WRITABLE = frozenset(
    (
        "displayName",
        "description",
        "mailEnabled",
        "mailNickname",
        "securityEnabled",
        "groupTypes",
        "visibility",
    )
)
GROUP_PROPS = frozenset(
    (
        *GROUP_DEFAULT,
        "members",
        "proxyAddresses",
        "resourceProvisioningOptions",
        "onPremisesSyncEnabled",
    )
)
_BINDS = {"users": frozenset(), "groups": frozenset(("members@odata.bind", "owners@odata.bind"))}
"""The ``x@odata.bind`` keys a body may carry besides plain ``@odata.*`` annotations."""
_TYPES: dict[str, type] = {
    **dict.fromkeys(("accountEnabled", "mailEnabled", "securityEnabled"), bool),
    **dict.fromkeys(("businessPhones", "groupTypes", "proxyAddresses"), list),
    "passwordProfile": dict,
}
"""JSON types of the writable properties that are not strings."""
_MAX_LENGTH = {
    "displayName": 256,
    "givenName": 64,
    "surname": 64,
    "mailNickname": 64,
    "department": 64,
    "companyName": 64,
    "jobTitle": 128,
    "employeeId": 16,
}
"""Documented maximum lengths (reference §8.1); longer values answer 400."""
_VISIBILITY = frozenset(("Private", "Public", "HiddenMembership"))
FILTERABLE = {
    "users": frozenset(
        (
            "id",
            "userPrincipalName",
            "displayName",
            "givenName",
            "surname",
            "mailNickname",
            "employeeId",
            "onPremisesImmutableId",
            "department",
            "accountEnabled",
            "mail",
            "proxyAddresses",
        )
    ),
    "groups": frozenset(
        (
            "id",
            "displayName",
            "mailNickname",
            "description",
            "securityEnabled",
            "mailEnabled",
            "mail",
            "proxyAddresses",
        )
    ),
}
COLLECTIONS = frozenset(("proxyAddresses",))
"""Filterable properties holding a list: only a lambda (``proxyAddresses/any(p:p eq 'x')``)
reaches into them, a plain comparison answers 400."""
MAX_EXPRESSIONS = 15
"""Expressions one ``$filter`` may hold (each value of an ``in`` list counts, and each clause of
an ``or``); an advanced query is limited by the URL length instead."""
MAX_ADVANCED_FILTER = 2048
"""The longest ``$filter`` of an advanced query (Graph limits its whole URL to 2,048
characters; the fake measures the filter alone)."""
USER_REQUIRED = (
    "accountEnabled",
    "displayName",
    "mailNickname",
    "passwordProfile",
    "userPrincipalName",
)
GROUP_REQUIRED = ("displayName", "mailEnabled", "mailNickname", "securityEnabled")
ALREADY_MEMBER = (
    "One or more added object references already exist for the following modified properties: "
    "'members'."
)
ALREADY_OWNER = (
    "One or more added object references already exist for the following modified properties: "
    "'owners'."
)
LAST_OWNER = "The group must have at least one owner, hence this owner cannot be removed."
SYNCED_OBJECT = (
    "Unable to update the specified properties for on-premises mastered Directory Sync objects "
    "or objects currently undergoing migration."
)
"""Graph's answer (400 ``Request_BadRequest``) to a write to an object Entra Connect syncs."""
NO_USAGE_LOCATION = "License assignment cannot be done for user with invalid usage location."
NO_UNITS = "Subscription with SKU {sku} does not have any available licenses."
UNKNOWN_SKU = "License {sku} does not correspond to a valid company License."
NOT_ASSIGNED = "User does not have a corresponding license."
UNKNOWN_PLAN = "The service plan {plan} is not part of the license {sku}."
"""Graph's answer (400 ``Request_BadRequest``) to removing a group's only owner."""
_ERROR_CODES = {
    429: ("TooManyRequests", "Too many requests."),
    503: ("serviceNotAvailable", "Service unavailable."),
    504: ("GatewayTimeout", "Gateway timeout."),
    500: ("generalException", "General exception while processing."),
}
_LOGGED_HEADERS = (
    "authorization",
    "consistencylevel",
    "content-type",
    "prefer",
    "retry-attempt",
    "client-request-id",
)
_OPTIONS = frozenset(("$select", "$filter", "$top", "$count", "$skiptoken", "$deltatoken"))
"""System query options the fake understands; any other (``$orderby``, ``$expand``, ``$search``,
``$skip``) answers 400 rather than being silently ignored."""
_DELTA_SEGMENTS = frozenset(
    ("delta", "delta()", "microsoft.graph.delta", "microsoft.graph.delta()")
)
"""``/users/delta`` is Graph's shortcut for the function ``microsoft.graph.delta``; msgraph-sdk
sends ``/users/delta()``. Graph takes all four spellings."""
_NICKNAME_BAD = re.compile(r'[@()\\\[\]";:<>,\s]')
_UPN_RE = re.compile(r"[A-Za-z0-9'.\-_!#^~]+@[A-Za-z0-9.\-]+")
_COUNTRY_RE = re.compile(r"[A-Za-z]{2}")
_BIND_RE = re.compile(r"/(?:directoryObjects|users|groups)/([^/?#]+)$")
_STR = r"'((?:[^']|'')*)'"
_LITERAL = rf"(?:{_STR}|(null|true|false))"
_ENTRA_RE = re.compile(
    r"^/(?P<tenant>[^/]+)/"
    r"(?:(?P<token>oauth2/v2\.0/token)|v2\.0/\.well-known/openid-configuration)$"
)
_CMP_RE = re.compile(rf"^\s*(\w+)\s+(eq|ne)\s+{_LITERAL}\s*$")
_FUNC_RE = re.compile(rf"^\s*(startswith|endswith)\(\s*(\w+)\s*,\s*{_STR}\s*\)\s*$", re.I)
_IN_RE = re.compile(rf"^\s*(\w+)\s+in\s+\(((?:\s*{_STR}\s*,)*\s*{_STR}\s*)\)\s*$", re.I)
_ANY_RE = re.compile(rf"^\s*(\w+)/any\(\s*(\w+)\s*:\s*(\w+)\s+eq\s+{_STR}\s*\)\s*$", re.I)
_OR_RE = re.compile(r"\s+or\s+", re.I)
_MAIL_RE = re.compile(r"[A-Za-z0-9'.\-_!#^~+]+@[A-Za-z0-9.\-]+")


class GraphError(Exception):
    """An error answer with Graph's ``{"error": {...}}`` body."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}


class _EntraError(Exception):
    """An error answer of the Entra token endpoint (``{"error", "error_description", ...}``)."""

    def __init__(self, status: int, error: str, code: int, description: str) -> None:
        super().__init__(f"{status} {error}: AADSTS{code}: {description}")
        self.status = status
        self.error = error
        self.code = code
        self.description = description


@dataclass(frozen=True)
class _App:
    """A registered application (service principal) and its credentials."""

    tenant_id: str
    client_id: str
    secret: str | None
    certificate: x509.Certificate | None


class TokenRequest(NamedTuple):
    """One request to the Entra endpoints, as the server saw it."""

    method: str
    path: str
    """``/{tenant}/oauth2/v2.0/token`` or ``/{tenant}/v2.0/.well-known/openid-configuration``."""
    form: dict[str, str]
    """The form fields as sent (secrets and assertions included: this is a test double)."""
    status: int


def _not_found(ident: str) -> GraphError:
    return GraphError(
        404,
        "Request_ResourceNotFound",
        f"Resource '{ident}' does not exist or one of its queried reference-property objects "
        "are not present.",
    )


def _bad(message: str, code: str = "Request_BadRequest") -> GraphError:
    return GraphError(400, code, message)


class GraphRequest(NamedTuple):
    """One request as the server saw it (batch items are logged too, with ``batch_id``)."""

    method: str
    path: str
    """Path below the version root, e.g. ``/users/abc`` (percent-decoded)."""
    query: dict[str, str]
    headers: dict[str, str]
    """A lower-cased subset: authorization, consistencylevel, content-type, prefer, ..."""
    body: Any
    """The parsed JSON body, or ``None``."""
    batch_id: str | None = None
    """The item id when this was an item of a ``$batch``."""


class Reply(NamedTuple):
    """A handler's answer: status, headers and a JSON body (``None``: no body)."""

    status: int
    headers: dict[str, str]
    body: dict[str, Any] | None


@dataclass
class _Fault:
    status: int
    path_contains: str | None
    remaining: int | None
    retry_after: float | int | None


@dataclass
class _Page:
    """Server-side state behind an opaque skiptoken."""

    kind: str
    ids: list[str]
    offset: int
    top: int
    select: list[str] | None
    delta: bool = False
    delta_seq: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    members: tuple[dict[str, Any], ...] | None = None
    """Delta: the ``members@delta`` entries of the group being paged through, frozen when it
    was first reached, and how many of them earlier pages gave."""
    member_offset: int = 0


# --- the HTTP layer --------------------------------------------------------------------------------
class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64
    app: GraphServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60
    wbufsize = -1  # one send per answer (flushed by handle_one_request), no Nagle stalls
    disable_nagle_algorithm = True
    server: _HTTPServer

    def do_GET(self) -> None:
        self.server.app._serve(self, "GET")

    def do_POST(self) -> None:
        self.server.app._serve(self, "POST")

    def do_PATCH(self) -> None:
        self.server.app._serve(self, "PATCH")

    def do_PUT(self) -> None:
        self.server.app._serve(self, "PUT")

    def do_DELETE(self) -> None:
        self.server.app._serve(self, "DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.app.verbose:
            super().log_message(format, *args)


# --- the server ------------------------------------------------------------------------------------
class GraphServer(LoopbackServer):
    """An in-memory Graph v1.0 (users, groups, members, owners, delta, ``$batch``) on 127.0.0.1.

    State is in :attr:`users` and :attr:`groups` (id -> stored properties), :attr:`members` and
    :attr:`owners` (group id -> member or owner ids in order). Every request is appended to
    :attr:`requests`.
    """

    thread_name = "graph-fake"
    handler = _Handler
    server_class = _HTTPServer

    def __init__(
        self,
        *,
        token: str = "test-token",
        port: int = 0,
        seed: int = 0,
        verbose: bool = False,
        tls: bool | TestCA = False,
    ) -> None:
        self.token = token
        """The only bearer token accepted, and the one the token endpoint issues."""
        self.port = port
        self.verbose = verbose
        self.ca: TestCA | None = None
        """The throwaway CA behind the server's certificate when serving TLS (else ``None``)."""
        if tls is not False:
            if tls is True:
                # Kept on the server so the files live as long as it; removed when it is collected.
                self._ca_dir = tempfile.TemporaryDirectory(prefix="graph-fake-ca-")
                tls = make_test_ca(Path(self._ca_dir.name))
            self.ca = tls
            self.tls = tls.server_context()
        self.users: dict[str, dict[str, Any]] = {}
        self.groups: dict[str, dict[str, Any]] = {}
        self.members: dict[str, list[str]] = {}
        self.owners: dict[str, list[str]] = {}
        """Group id -> owner ids (users only, as for a security group; service principals are not
        modelled). Set by ``owners@odata.bind`` on create or PATCH and by ``owners/$ref``."""
        self.directory_roles: dict[str, dict[str, Any]] = {}
        """Activated directory roles: id -> ``{id, displayName, roleTemplateId}``."""
        self.role_members: dict[str, list[str]] = {}
        """Directory role id -> member ids."""
        self.roles_readable = True
        """False: reading directory roles answers 403, as Graph does for an app without
        RoleManagement.Read.Directory (or Directory.Read.All)."""
        self.mail_send_allowed = True
        """False: sendMail answers 403 ErrorAccessDenied, as Graph does for an app without the
        application permission Mail.Send (or one an application access policy keeps out)."""
        self.skus: dict[str, dict[str, Any]] = {}
        """The tenant's subscriptions (``subscribedSkus``): skuId → ``{skuId, skuPartNumber,
        prepaidUnits, servicePlans}``; ``consumedUnits`` is counted from the users. Seed them
        with :meth:`add_sku`."""
        self.skus_readable = True
        """False: ``subscribedSkus`` answers 403, as Graph does for an app without
        Organization.Read.All."""
        self.sent_mail: list[dict[str, Any]] = []
        """Every message sendMail accepted: ``{"from": the sender's UPN, "message": …,
        "saveToSentItems": …}``."""
        self.requests: list[GraphRequest] = []
        self.apps: dict[tuple[str, str], _App] = {}
        """Registered applications by (tenant, client id), both case-folded."""
        self.tokens_issued = 0
        self.graph_resource = "https://graph.microsoft.com"
        """The Graph whose tokens the token endpoint issues: a national cloud's
        (``https://graph.microsoft.us``) makes it refuse the global scope, as that cloud does."""
        """Access tokens the token endpoint handed out (a cached credential asks once)."""
        self.token_requests: list[TokenRequest] = []
        """Every request to the Entra endpoints (token and discovery), with its form and status."""
        self.token_lifetime = 3599
        """``expires_in`` of issued tokens, in seconds (Entra's usual value)."""
        self.clock: Callable[[], float] = time.monotonic
        """Seconds, for the write quota and the replication lag; replace it in tests."""
        self.write_quota: tuple[int, float] | None = None
        """``(limit, window_seconds)``: more writes in a sliding window answer 429."""
        self.lag_member_adds = 0
        """The next N member adds to a group younger than :attr:`lag_seconds` answer 404."""
        self.lag_owner_adds = 0
        """The same for owner adds (``owners/$ref`` or ``owners@odata.bind`` on PATCH)."""
        self.lag_seconds = 5.0
        self.batch_order = "reverse"
        """``"reverse"`` (default, keeps clients from relying on order) or ``"request"``."""
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self._faults: list[_Fault] = []
        self._item_faults: list[_Fault] = []
        self._late_faults: list[_Fault] = []
        self._writes: list[float] = []
        self._created_at: dict[str, float] = {}
        self.delta_token_lifetime = 7 * 24 * 3600.0
        """Seconds (by :attr:`clock`) a deltaLink stays valid: seven days for directory objects;
        an older one answers 400 ``syncStateNotFound``."""
        self.round_trip = 0.0
        """Seconds each answer waits before it is sent (real time, outside the lock): the
        network and service time of a real round trip to Graph, for benchmarks of how many
        requests a read makes one after the other. Requests in flight wait at the same time."""
        self.delta_members_per_page = 500
        """At most this many ``members@delta`` entries in one delta page: a group with more is
        split over pages and appears once per page, as Graph does with large groups."""
        # The change log behind delta: every change gets the next sequence number.
        self._seq = 0
        self._prop_seq: dict[tuple[str, str], dict[str, int]] = {}
        """(kind, id) -> property -> the sequence number of its last change (set on create
        only for the properties given a value)."""
        self._change_log: list[tuple[int, str, str, tuple[str, ...], bool]] = []
        """(seq, kind, id, changed names, created) in order: an incremental round reads only its
        tail, so its cost follows the number of changes, not the size of the directory.
        Membership changes are logged as the name ``members``."""
        self._removed: dict[str, dict[str, int]] = {"users": {}, "groups": {}}
        self._removal_reason: dict[str, str] = {}
        """Deleted id -> ``@removed`` reason: ``changed`` for what Entra keeps restorable for 30
        days (users, Microsoft 365 groups), ``deleted`` for security groups (gone for good)."""
        self._removed_type: dict[str, str] = {}
        """Deleted id -> its ``@odata.type``, for ``members@delta`` entries of removed members."""
        self._member_log: dict[str, list[tuple[int, str, bool]]] = {}
        self._delta_epoch = uuid.uuid4().hex
        """Tokens carry it; :meth:`reset_delta` changes it, so every earlier token answers 410."""
        self._pages: dict[str, _Page] = {}
        from tests.fakes.graph_teams import FakeTeams  # it builds on this module's errors

        self.teams = FakeTeams(self)
        """Teams on Microsoft 365 groups: :mod:`tests.fakes.graph_teams`."""

    # --- lifecycle -------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT/v1.0`` (``https`` with TLS): the SDK adapter's ``base_url``."""
        return f"{self.scheme}://127.0.0.1:{self.port}/v1.0"

    @property
    def authority(self) -> str:
        """``https://127.0.0.1:PORT``: the ``authority`` of an azure-identity credential.

        azure-identity refuses an authority that is not https, so this is only usable with TLS.
        """
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        """The CA certificate clients must trust (``connection_verify=``, httpx ``verify``)."""
        if self.ca is None:
            raise RuntimeError("this GraphServer serves plain http: create it with tls=True")
        return self.ca.ca_file

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client TLS context that trusts this server's certificate (and nothing else)."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def token_endpoint(self, tenant_id: str) -> str:
        """``{authority}/{tenant}/oauth2/v2.0/token``, where a credential gets its tokens."""
        return f"{self.authority}/{tenant_id}/oauth2/v2.0/token"

    def register_app(
        self,
        tenant_id: str,
        client_id: str,
        secret: str | None = None,
        certificate_pem: bytes | str | None = None,
    ) -> None:
        """Register (or replace) an application that may get tokens with a client secret and/or a
        certificate (PEM of the public certificate; a PEM that also holds the key is fine)."""
        if secret is None and certificate_pem is None:
            raise ValueError("an application needs a secret or a certificate")
        certificate = None
        if certificate_pem is not None:
            data = certificate_pem.encode() if isinstance(certificate_pem, str) else certificate_pem
            certificate = x509.load_pem_x509_certificate(data)
        with self._lock:
            self.apps[(tenant_id.casefold(), client_id.casefold())] = _App(
                tenant_id, client_id, secret, certificate
            )

    @property
    def auth_headers(self) -> dict[str, str]:
        """``{"Authorization": "Bearer <token>"}`` for raw clients."""
        return {"Authorization": f"Bearer {self.token}"}

    # --- test hooks ------------------------------------------------------------------------------
    def inject(
        self,
        status: int,
        *,
        path_contains: str | None = None,
        times: int | None = 1,
        retry_after: float | None = None,
        after_apply: bool = False,
    ) -> None:
        """Answer the next ``times`` whole requests (``None``: all) whose path contains
        ``path_contains`` with ``status`` (429/503/504/500), with ``Retry-After`` if given.
        With ``after_apply`` the request is carried out first and only its answer is lost (a
        gateway timeout after the work was done): a retry then meets what it already did."""
        with self._lock:
            fault = _Fault(status, path_contains, times, retry_after)
            (self._late_faults if after_apply else self._faults).append(fault)

    def inject_batch_item(
        self,
        status: int = 429,
        *,
        times: int | None = 1,
        retry_after: float | None = None,
        path_contains: str | None = None,
    ) -> None:
        """Answer the next ``times`` ``$batch`` items with ``status``; the batch itself is 200."""
        with self._lock:
            self._item_faults.append(_Fault(status, path_contains, times, retry_after))

    def clear_faults(self) -> None:
        """Forget injected faults."""
        with self._lock:
            self._faults.clear()
            self._item_faults.clear()
            self._late_faults.clear()

    def clear_requests(self) -> None:
        """Forget the recorded requests."""
        with self._lock:
            self.requests.clear()

    def add_user(self, **props: Any) -> dict[str, Any]:
        """Create a user directly (no request, no quota); returns the stored object."""
        with self._lock:
            return self._create_user(props, seeding=True)

    def seed_users(self, count: int, domain: str = "school.example") -> list[str]:
        """Add ``count`` plain users ``user{i}@domain`` (employeeId ``i``) quickly; their ids.

        For large fixtures and benchmarks: ``add_user`` checks uniqueness by scanning all users,
        so ten thousand of them take about six seconds; this takes a fraction of one.
        """
        with self._lock:
            taken = {str(u.get("userPrincipalName", "")).casefold() for u in self.users.values()}
            ids = []
            for i in range(count):
                upn = f"user{i}@{domain}"
                if upn.casefold() in taken:
                    raise self._conflict("userPrincipalName")
                props = {
                    "accountEnabled": True,
                    "displayName": f"User {i}",
                    "givenName": "User",
                    "surname": str(i),
                    "mailNickname": f"user{i}",
                    "userPrincipalName": upn,
                    "employeeId": str(i),
                    "passwordProfile": {"password": "Seed-Pass-123!"},
                }
                ids.append(self._create_user(props, seeding=True, known_unique=True)["id"])
            return ids

    def seed_classes(self, size: int, prefix: str = "prov-klas-") -> list[str]:
        """A security group ``{prefix}{i}`` for every *size* users (in the order they were
        made), the users as its members and the first of them as its owner; their ids. For
        benchmarks of a school's tenant (``--seed-classes``)."""
        uids = list(self.users)
        return [
            self.add_group(
                members=uids[start : start + size],
                owners=uids[start : start + 1],
                displayName=f"Klas {n}",
                mailNickname=f"{prefix}{n}",
            )["id"]
            for n, start in enumerate(range(0, len(uids), size))
        ]

    def add_group(
        self, members: Sequence[str] = (), owners: Sequence[str] = (), **props: Any
    ) -> dict[str, Any]:
        """Create a security group directly (no request, no quota), with member and owner ids
        (owners must be existing users, as in Graph)."""
        body = {"mailEnabled": False, "securityEnabled": True, **props}
        nickname = re.sub(r"[^A-Za-z0-9._-]", "", str(props.get("displayName", ""))) or "group"
        body.setdefault("mailNickname", nickname)
        with self._lock:
            for oid in owners:
                self._check_owner(oid)
            group = self._create_group(body, seeding=True)
            for mid in members:
                self._add_member(group["id"], mid)
            self.owners[group["id"]] = list(dict.fromkeys(owners))
            return group

    def add_directory_role(self, display_name: str, members: Sequence[str] = ()) -> str:
        """Activate a directory role (Global Administrator …) with member ids; its id."""
        with self._lock:
            rid = self._new_id()
            self.directory_roles[rid] = {
                "id": rid,
                "displayName": display_name,
                "roleTemplateId": str(uuid.uuid5(uuid.NAMESPACE_URL, display_name)),
            }
            self.role_members[rid] = list(members)
            return rid

    # --- serving ---------------------------------------------------------------------------------
    def _serve(self, h: _Handler, method: str) -> None:
        if self.round_trip:
            time.sleep(self.round_trip)
        try:
            length = int(h.headers.get("Content-Length") or 0)
            raw = h.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in h.headers.items()}
            split = urlsplit(h.path)
            query = dict(parse_qsl(split.query, keep_blank_values=True))
            reply = self._outer(method, unquote(split.path), query, headers, raw)
            data = b"" if reply.body is None else json.dumps(reply.body).encode()
            h.send_response(reply.status)
            for k, v in reply.headers.items():
                h.send_header(k, v)
            if reply.body is not None and "Content-Type" not in reply.headers:
                h.send_header("Content-Type", CONTENT_TYPE)
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            if data:
                h.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True

    def _outer(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], raw: bytes
    ) -> Reply:
        """A request from the socket: version root, auth, injected faults, then the handlers."""
        entra = _ENTRA_RE.match(path)
        if entra is not None:
            return self._entra(method, path, entra, headers, raw)
        rid = str(uuid.uuid4())
        crid = headers.get("client-request-id", rid)
        try:
            body = self._parse_body(raw)
            sub = path[len("/v1.0") :] if path.startswith("/v1.0/") else None
            with self._lock:
                self._log(method, sub or path, query, headers, body, None)
            if sub is None:
                raise GraphError(404, "BadRequest", f"Invalid version: {path.split('/')[1:2]}")
            self._check_auth(headers)
            with self._lock:
                self._take_fault(self._faults, sub)
            if sub == "/$batch":
                if method != "POST":
                    raise GraphError(405, "BadRequest", "Only POST is allowed on $batch.")
                reply = self._batch(body)
            else:
                reply = self._execute(method, sub, query, headers, body)
            with self._lock:
                self._take_fault(self._late_faults, sub)
        except GraphError as e:
            reply = self._error_reply(e, rid, crid)
        reply.headers.setdefault("request-id", rid)
        reply.headers.setdefault("client-request-id", crid)
        return reply

    @staticmethod
    def _parse_body(raw: bytes) -> Any:
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise _bad("Unable to read JSON request payload.", "BadRequest") from None

    def _check_auth(self, headers: dict[str, str]) -> None:
        auth = headers.get("authorization", "")
        scheme, _, value = auth.partition(" ")
        if not auth:
            message = "Access token is empty."
        elif scheme.lower() != "bearer" or value.strip() != self.token:
            message = "IDX14100: JWT is not well formed, there are no dots (.)."
        else:
            return
        raise GraphError(
            401,
            "InvalidAuthenticationToken",
            message,
            headers={"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'},
        )

    def _log(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        headers: dict[str, str],
        body: Any,
        batch_id: str | None,
    ) -> None:
        kept = {k: v for k, v in headers.items() if k in _LOGGED_HEADERS}
        self.requests.append(GraphRequest(method, path, dict(query), kept, body, batch_id))

    def _take_fault(self, faults: list[_Fault], path: str) -> None:
        """Raise the first matching injected fault (and count it down)."""
        for fault in faults:
            if fault.path_contains is not None and fault.path_contains not in path:
                continue
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    faults.remove(fault)
            code, message = _ERROR_CODES.get(fault.status, ("UnknownError", "Injected fault."))
            extra = {} if fault.retry_after is None else {"Retry-After": _num(fault.retry_after)}
            raise GraphError(fault.status, code, message, headers=extra)

    @staticmethod
    def _error_reply(e: GraphError, rid: str, crid: str) -> Reply:
        err: dict[str, Any] = {
            "code": e.code,
            "message": e.message,
            "innerError": {
                "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                "request-id": rid,
                "client-request-id": crid,
            },
        }
        if e.details:
            err["details"] = e.details
        return Reply(e.status, dict(e.headers), {"error": err})

    # --- Entra ID: tenant discovery and the token endpoint ----------------------------------------
    def _entra(
        self, method: str, path: str, route: re.Match[str], headers: dict[str, str], raw: bytes
    ) -> Reply:
        """``GET /{tenant}/v2.0/.well-known/openid-configuration`` (MSAL's tenant discovery) and
        ``POST /{tenant}/oauth2/v2.0/token`` (client credentials, reference §3.1)."""
        tenant = route.group("tenant")
        form: dict[str, str] = {}
        if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            form = dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
        trace_id = str(uuid.uuid4())
        expected = "POST" if route.group("token") else "GET"
        with self._lock:  # apps may be registered while serving
            try:
                if method != expected:
                    raise _EntraError(
                        405,
                        "invalid_request",
                        900561,
                        f"The endpoint only accepts {expected} requests. Received a {method} "
                        "request.",
                    )
                if route.group("token"):
                    body = self._token(tenant, form)
                else:
                    self._known_tenant(tenant, "invalid_tenant")
                    body = self._openid_configuration(tenant)
                status = 200
            except _EntraError as e:
                status = e.status
                body = self._entra_error_body(e, trace_id)
            self.token_requests.append(TokenRequest(method, path, form, status))
        reply_headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Cache-Control": "no-store, no-cache",
            "Pragma": "no-cache",
            "x-ms-request-id": trace_id,
        }
        return Reply(status, reply_headers, body)

    def _known_tenant(self, tenant: str, error: str = "invalid_request") -> None:
        if not any(t == tenant.casefold() for t, _ in self.apps):
            raise _EntraError(
                400,
                error,
                90002,
                f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID "
                "and are signing into the correct cloud.",
            )

    def _openid_configuration(self, tenant: str) -> dict[str, Any]:
        base = f"{self.authority}/{tenant}"
        return {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/v2.0",
            "request_uri_parameter_supported": False,
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
        }

    def _token(self, tenant: str, form: dict[str, str]) -> dict[str, Any]:
        """The client credentials grant: a known app, a valid credential, Graph's ``.default``."""
        self._known_tenant(tenant)
        grant = form.get("grant_type")
        if not grant:
            raise _missing("grant_type")
        if grant != "client_credentials":
            raise _EntraError(
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{grant}'.",
            )
        client_id = form.get("client_id")
        if not client_id:
            raise _missing("client_id")
        app = self.apps.get((tenant.casefold(), client_id.casefold()))
        if app is None:
            raise _EntraError(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{tenant}'. This can happen if the application has not been installed by the "
                "administrator of the tenant or consented to by any user in the tenant. You may "
                "have sent your authentication request to the wrong tenant.",
            )
        if "client_assertion" in form or "client_assertion_type" in form:
            if form.get("client_assertion_type") != JWT_BEARER:
                raise _missing("client_assertion_type")
            _verify_assertion(
                app,
                form.get("client_assertion", ""),
                audiences={
                    self.token_endpoint(tenant).casefold(),
                    f"{self.authority}/{tenant}/oauth2/token".casefold(),  # the v1 endpoint
                },
            )
        elif "client_secret" in form:
            given = form["client_secret"].encode()
            if app.secret is None or not hmac.compare_digest(given, app.secret.encode()):
                raise _EntraError(
                    401,
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided. Ensure the secret being sent in the request "
                    "is the client secret value, not the client secret ID, for a secret added to "
                    f"app '{app.client_id}'.",
                )
        else:
            raise _EntraError(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or "
                "'client_secret'.",
            )
        _check_scope(form.get("scope"), tenant, self.graph_resource)
        self.tokens_issued += 1
        return {
            "token_type": "Bearer",
            "expires_in": self.token_lifetime,
            "ext_expires_in": self.token_lifetime,
            "access_token": self.token,
        }

    def _entra_error_body(self, e: _EntraError, trace_id: str) -> dict[str, Any]:
        """Entra's error shape: the AADSTS code leads the description and is in error_codes."""
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        correlation_id = str(uuid.uuid4())
        return {
            "error": e.error,
            "error_description": f"AADSTS{e.code}: {e.description}\r\nTrace ID: {trace_id}\r\n"
            f"Correlation ID: {correlation_id}\r\nTimestamp: {stamp}",
            "error_codes": [e.code],
            "timestamp": stamp,
            "trace_id": trace_id,
            "correlation_id": correlation_id,
            "error_uri": f"{self.authority}/error?code={e.code}",
        }

    # --- $batch ----------------------------------------------------------------------------------
    def _batch(self, body: Any) -> Reply:
        if not isinstance(body, dict) or not isinstance(body.get("requests"), list):
            raise _bad("Invalid batch payload: 'requests' array is required.", "BadRequest")
        items: list[Any] = body["requests"]
        if not items:
            raise _bad("Batch request must contain at least one request.", "BadRequest")
        if len(items) > MAX_BATCH:
            raise _bad(f"Limit of {MAX_BATCH} requests in a batch exceeded.", "BadRequest")
        seen: set[str] = set()
        for item in items:
            if not isinstance(item, dict) or not all(k in item for k in ("id", "method", "url")):
                raise _bad("Each batch request needs 'id', 'method' and 'url'.", "BadRequest")
            iid = str(item["id"])
            if iid in seen:
                raise _bad(f"Batch request ids must be unique: '{iid}'.", "BadRequest")
            for dep in item.get("dependsOn") or []:
                if str(dep) not in seen:
                    raise _bad(
                        f"Request '{iid}' depends on '{dep}', which is not an earlier request.",
                        "BadRequest",
                    )
            seen.add(iid)
        statuses: dict[str, int] = {}
        out: list[dict[str, Any]] = []
        for item in items:
            iid = str(item["id"])
            reply = self._batch_item(item, statuses)
            statuses[iid] = reply.status
            entry: dict[str, Any] = {"id": iid, "status": reply.status, "headers": reply.headers}
            if reply.body is not None:
                entry["headers"] = {"Content-Type": "application/json", **reply.headers}
                entry["body"] = reply.body
            out.append(entry)
        if self.batch_order == "reverse":
            out.reverse()
        return Reply(200, {}, {"responses": out})

    def _batch_item(self, item: dict[str, Any], statuses: dict[str, int]) -> Reply:
        iid = str(item["id"])
        rid = str(uuid.uuid4())
        method = str(item["method"]).upper()
        headers = {str(k).lower(): str(v) for k, v in (item.get("headers") or {}).items()}
        body = item.get("body")
        url = str(item["url"])
        split = urlsplit(url if url.startswith("/") else "/" + url)
        path, query = unquote(split.path), dict(parse_qsl(split.query, keep_blank_values=True))
        try:
            with self._lock:
                self._log(method, path, query, headers, body, iid)
            failed = [d for d in item.get("dependsOn") or [] if not 200 <= statuses[str(d)] < 300]
            if failed:
                raise GraphError(
                    424, "FailedDependency", f"Failed dependency: request '{failed[0]}' failed."
                )
            if "://" in url:
                raise _bad("Invalid request URL: batch URLs must be relative.", "BadRequest")
            if body is not None and "content-type" not in headers:
                raise _bad("Content-Type header must be specified when a body is present.")
            if path == "/$batch":
                raise _bad("Nested batch requests are not supported.", "BadRequest")
            with self._lock:
                self._take_fault(self._item_faults, path)
            return self._execute(method, path, query, headers, body)
        except GraphError as e:
            reply = self._error_reply(e, rid, rid)
            return Reply(reply.status, {k: v for k, v in reply.headers.items()}, reply.body)

    # --- routing ---------------------------------------------------------------------------------
    def _execute(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: Any
    ) -> Reply:
        """Run one request below the version root (from the socket or from a batch)."""
        parts = [p for p in path.split("/") if p]
        with self._lock:
            if method in ("POST", "PATCH", "PUT", "DELETE"):
                self._count_write()
            if parts and parts[0] == "directoryRoles":
                return self._directory_roles(method, parts, query)
            if parts == ["subscribedSkus"] and method == "GET":
                return self._subscribed_skus()
            if len(parts) == 3 and parts[0] == "users" and parts[2] == "assignLicense":
                if method != "POST":
                    raise GraphError(
                        405, "Request_BadRequest", "Specified HTTP method is not allowed."
                    )
                return self._assign_license(self._find("users", parts[1]), body)
            if (
                len(parts) >= 2
                and method in ("PATCH", "DELETE")
                and parts[0] in ("users", "groups")
            ):
                self._refuse_synced(parts[0], parts[1])
            if len(parts) == 3 and parts[0] == "users" and parts[2] == "sendMail":
                if method != "POST":
                    raise GraphError(
                        405, "Request_BadRequest", "Specified HTTP method is not allowed."
                    )
                return self._send_mail(parts[1], body)
            if parts and (teams := self.teams.route(method, parts, body)) is not None:
                return teams
            if not parts or parts[0] not in ("users", "groups"):
                seg = parts[0] if parts else ""
                raise _bad(f"Resource not found for the segment '{seg}'.", "BadRequest")
            kind = parts[0]
            n = len(parts)
            unsupported = sorted(k for k in query if k.startswith("$") and k not in _OPTIONS)
            if unsupported:
                raise _bad(
                    f"Query option '{unsupported[0]}' is not supported by the fake.",
                    "Request_UnsupportedQuery",
                )
            if n == 1 and method == "GET":
                return self._list(kind, query, headers)
            if n == 1 and method == "POST":
                return self._post(kind, body)
            if n == 2 and parts[1] in _DELTA_SEGMENTS and method == "GET":
                return self._delta(kind, query, headers)
            if n == 2 and method == "GET":
                obj = self._find(kind, parts[1])
                return Reply(200, {}, self._render(kind, obj, _select(query, kind), ctx=True))
            if n == 2 and method == "PATCH":
                return self._patch(kind, self._find(kind, parts[1]), body)
            if n == 2 and method == "DELETE":
                self._delete(kind, self._find(kind, parts[1])["id"])
                return Reply(204, {}, None)
            if kind == "groups" and n >= 3 and parts[2] == "members":
                gid = self._find("groups", parts[1])["id"]
                if n == 3 and method == "GET":
                    return self._list_members(gid, query, headers)
                if n == 4 and parts[3] == "$ref" and method == "POST":
                    return self._ref_add(gid, body)
                if n == 5 and parts[4] == "$ref" and method == "DELETE":
                    return self._ref_remove(gid, parts[3])
            if kind == "groups" and n >= 3 and parts[2] == "owners":
                gid = self._find("groups", parts[1])["id"]
                if n == 3 and method == "GET":
                    return self._list_owners(gid, query)
                if n == 4 and parts[3] == "$ref" and method == "POST":
                    return self._owner_add(gid, body)
                if n == 5 and parts[4] == "$ref" and method == "DELETE":
                    return self._owner_remove(gid, parts[3])
            raise GraphError(
                405, "Request_BadRequest", "Specified HTTP method is not allowed for the request."
            )

    # --- licences and Entra Connect's objects ------------------------------------------------------
    def add_sku(
        self, part_number: str, units: int, plans: Sequence[str] = (), *, suspended: int = 0
    ) -> str:
        """A subscription of *units* enabled licences of *part_number* with service plans of
        these names; its skuId."""
        with self._lock:
            sku_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"sku:{part_number}"))
            self.skus[sku_id] = {
                "skuId": sku_id,
                "skuPartNumber": part_number,
                "capabilityStatus": "Enabled",
                "appliesTo": "User",
                "prepaidUnits": {"enabled": units, "suspended": suspended, "warning": 0},
                "servicePlans": [
                    {
                        "servicePlanId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"plan:{name}")),
                        "servicePlanName": name,
                        "provisioningStatus": "Success",
                        "appliesTo": "User",
                    }
                    for name in plans
                ],
            }
            return sku_id

    def consumed(self, sku_id: str) -> int:
        """Users holding a licence of this SKU (Entra ID frees a deleted user's at once)."""
        return sum(
            any(a["skuId"] == sku_id for a in u.get("assignedLicenses") or [])
            for u in self.users.values()
        )

    def _subscribed_skus(self) -> Reply:
        """``GET /subscribedSkus``: every subscription with its units and plans (not paged)."""
        if not self.skus_readable:
            raise GraphError(
                403,
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
            )
        value = [
            {"id": f"tenant_{sku_id}", **sku, "consumedUnits": self.consumed(sku_id)}
            for sku_id, sku in self.skus.items()
        ]
        return Reply(
            200, {}, {"@odata.context": f"{self.url}/$metadata#subscribedSkus", "value": value}
        )

    def _assign_license(self, user: dict[str, Any], body: Any) -> Reply:
        """``POST /users/{id}/assignLicense``: all or nothing, checked as Graph checks it."""
        if not isinstance(body, dict) or not {"addLicenses", "removeLicenses"} <= body.keys():
            raise _bad("One or more parameters of the function import 'assignLicense' are missing.")
        adds, removes = body["addLicenses"] or [], body["removeLicenses"] or []
        self._refuse_synced("users", user["id"])
        held = {a["skuId"]: a for a in user.get("assignedLicenses") or []}
        for sku_id in [str(a.get("skuId")) for a in adds] + [str(r) for r in removes]:
            if sku_id not in self.skus:
                raise _bad(UNKNOWN_SKU.format(sku=sku_id))
        for sku_id in removes:
            if sku_id not in held:
                raise _bad(NOT_ASSIGNED)
        if adds and not user.get("usageLocation"):
            raise _bad(NO_USAGE_LOCATION)
        for add in adds:
            sku = self.skus[add["skuId"]]
            plans = {p["servicePlanId"] for p in sku["servicePlans"]}
            for plan in add.get("disabledPlans") or []:
                if plan not in plans:
                    raise _bad(UNKNOWN_PLAN.format(plan=plan, sku=add["skuId"]))
            new = add["skuId"] not in held or add["skuId"] in removes
            if new and self.consumed(add["skuId"]) >= sku["prepaidUnits"]["enabled"]:
                raise _bad(NO_UNITS.format(sku=add["skuId"]))
        for sku_id in removes:
            held.pop(sku_id)
        for add in adds:
            held[add["skuId"]] = {
                "skuId": add["skuId"],
                "disabledPlans": list(add.get("disabledPlans") or []),
            }
        user["assignedLicenses"] = list(held.values())
        self._touch("users", user["id"], ["assignedLicenses"])
        return Reply(200, {}, self._render("users", user, None, ctx=True))

    def _refuse_synced(self, kind: str, key: str) -> None:
        """Graph refuses writes to what Entra Connect syncs from on-premises AD."""
        obj = self._store(kind).get(key)
        if obj is not None and obj.get("onPremisesSyncEnabled"):
            raise _bad(SYNCED_OBJECT)

    def _send_mail(self, sender: str, body: Any) -> Reply:
        """``POST /users/{id | userPrincipalName}/sendMail``: 202 and the message kept in
        :attr:`sent_mail`; 403 without Mail.Send, 404 for a sender that is no user, 400 for a body
        Graph would refuse (no message, no recipient, a recipient without an address)."""
        if not self.mail_send_allowed:
            raise GraphError(
                403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."
            )
        try:
            user = self._find("users", sender)
        except GraphError:
            raise GraphError(
                404, "ErrorInvalidUser", f"The requested user '{sender}' is invalid."
            ) from None
        message = body.get("message") if isinstance(body, dict) else None
        if not isinstance(message, dict):
            raise GraphError(400, "ErrorInvalidRequest", "Empty Payload. JSON content expected.")
        recipients = message.get("toRecipients")
        if not isinstance(recipients, list) or not recipients:
            raise GraphError(400, "ErrorInvalidRecipients", "At least one recipient isn't valid.")
        for recipient in recipients:
            address = (recipient or {}).get("emailAddress") if isinstance(recipient, dict) else None
            if not isinstance(address, dict) or not isinstance(address.get("address"), str):
                raise GraphError(
                    400, "ErrorInvalidRecipients", "At least one recipient isn't valid."
                )
        content = message.get("body")
        if content is not None and (
            not isinstance(content, dict)
            or str(content.get("contentType", "")).lower() not in ("text", "html")
        ):
            raise GraphError(400, "ErrorInvalidRequest", "The request body is not valid.")
        self.sent_mail.append(
            {
                "from": user.get("userPrincipalName"),
                "message": message,
                "saveToSentItems": body.get("saveToSentItems", True),
            }
        )
        return Reply(202, {}, None)

    def _directory_roles(self, method: str, parts: list[str], query: dict[str, str]) -> Reply:
        """``GET /directoryRoles`` and ``GET /directoryRoles/{id}/members`` (one page)."""
        if method != "GET":
            raise GraphError(
                405, "Request_BadRequest", "Specified HTTP method is not allowed for the request."
            )
        if not self.roles_readable:
            raise GraphError(
                403,
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
            )
        if len(parts) == 1:
            known = ("id", "displayName", "roleTemplateId")
            names = [n for n in query.get("$select", "").split(",") if n] or list(known)
            if unknown := [n for n in names if n not in known]:
                raise _bad(
                    f"Could not find a property named '{unknown[0]}' on type "
                    "'microsoft.graph.directoryRole'.",
                    "BadRequest",
                )
            values = [
                {"id": role["id"], **{n: role[n] for n in names}}
                for role in self.directory_roles.values()
            ]
            context = f"{self.url}/$metadata#directoryRoles"
            return Reply(200, {}, {"@odata.context": context, "value": values})
        if len(parts) == 3 and parts[2] == "members" and parts[1] in self.directory_roles:
            select = _select(query)
            members = [
                self._render_member(mid, select)
                for mid in self.role_members[parts[1]]
                if mid in self.users or mid in self.groups
            ]
            context = f"{self.url}/$metadata#directoryObjects"
            return Reply(200, {}, {"@odata.context": context, "value": members})
        raise _not_found(parts[1] if len(parts) > 1 else "directoryRoles")

    def _count_write(self) -> None:
        if self.write_quota is None:
            return
        limit, window = self.write_quota
        now = self.clock()
        self._writes = [t for t in self._writes if t > now - window]
        if len(self._writes) >= limit:
            wait = max(1, math.ceil(self._writes[0] + window - now))
            raise GraphError(
                429,
                "TooManyRequests",
                "Too many requests.",
                headers={
                    "Retry-After": str(wait),
                    "x-ms-throttle-information": "WriteLimitExceeded",
                    "x-ms-throttle-scope": "Tenant_Application/Write/app/tenant",
                },
            )
        self._writes.append(now)

    # --- objects ---------------------------------------------------------------------------------
    def _new_id(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _touch(self, kind: str, oid: str, names: Sequence[str], *, created: bool = False) -> None:
        """Log a change of ``names`` (all at one sequence number) for delta."""
        self._seq += 1
        changes = self._prop_seq.setdefault((kind, oid), {})
        for name in names:
            changes[name] = self._seq
        self._change_log.append((self._seq, kind, oid, tuple(names), created))

    def _store(self, kind: str) -> dict[str, dict[str, Any]]:
        return self.users if kind == "users" else self.groups

    def _find(self, kind: str, key: str) -> dict[str, Any]:
        store = self._store(kind)
        if key in store:
            return store[key]
        if kind == "users":
            folded = key.casefold()
            for user in store.values():
                if str(user.get("userPrincipalName", "")).casefold() == folded:
                    return user
        raise _not_found(key)

    def _upn_taken(self, upn: Any, but: str | None = None) -> bool:
        folded = str(upn).casefold()
        return any(
            str(u.get("userPrincipalName", "")).casefold() == folded and uid != but
            for uid, u in self.users.items()
        )

    @staticmethod
    def _conflict(prop: str) -> GraphError:
        return GraphError(
            400,
            "Request_BadRequest",
            f"Another object with the same value for property {prop} already exists.",
            details=[{"code": "ObjectConflict", "message": "", "target": prop}],
        )

    def _create_user(
        self, body: dict[str, Any], *, seeding: bool = False, known_unique: bool = False
    ) -> dict[str, Any]:
        props = _properties("users", body, seeding=seeding)
        for name in USER_REQUIRED:
            if props.get(name) in (None, ""):
                raise _bad(f"A value is required for property '{name}' of resource 'User'.")
        # known_unique skips the linear uniqueness scans when bulk seeding checked them at once
        if not known_unique and self._upn_taken(props["userPrincipalName"]):
            raise self._conflict("userPrincipalName")
        imm = props.get("onPremisesImmutableId")
        if imm and not known_unique and self._immutable_id_taken(imm):
            raise self._conflict("onPremisesImmutableId")
        if props.get("mail") and not known_unique and self._address_taken(props["mail"]):
            raise self._conflict("proxyAddresses")
        uid = self._claim_id(props)
        user = {
            "id": uid,
            "businessPhones": [],
            "createdDateTime": _now(),
            "mail": None,
            "assignedLicenses": [],
        }
        if "proxyAddresses" not in props:  # a seeding caller may give them itself
            user["proxyAddresses"] = []
            _set_mail(user, props.get("mail"))
        user.update(props)
        self.users[uid] = user
        self._touch("users", uid, [k for k, v in user.items() if v is not None], created=True)
        return user

    def _address_taken(self, address: str, but: str | None = None) -> bool:
        """Entra keeps a mail address on one object only: in its mail or its proxyAddresses."""
        folded = address.casefold()
        for oid, obj in (*self.users.items(), *self.groups.items()):
            held = [str(obj.get("mail") or "")]
            held += [str(p).partition(":")[2] for p in obj.get("proxyAddresses") or []]
            if oid != but and folded in {h.casefold() for h in held}:
                return True
        return False

    def _immutable_id_taken(self, value: Any, but: str | None = None) -> bool:
        return any(
            u.get("onPremisesImmutableId") == value and uid != but for uid, u in self.users.items()
        )

    def _claim_id(self, props: dict[str, Any]) -> str:
        """A new object id, or the one a seeding caller chose (which must be free)."""
        oid = props.pop("id", None) or self._new_id()
        if oid in self.users or oid in self.groups:
            raise self._conflict("id")
        return str(oid)

    def _post(self, kind: str, body: Any) -> Reply:
        if not isinstance(body, dict):
            raise _bad("A JSON object body is required.", "BadRequest")
        obj = self._create_user(body) if kind == "users" else self._create_group(body)
        rendered = self._render(kind, obj, None, ctx=True)
        return Reply(201, {"Location": f"{self.url}/{kind}/{obj['id']}"}, rendered)

    def _create_group(self, body: dict[str, Any], *, seeding: bool = False) -> dict[str, Any]:
        props = _properties("groups", body, seeding=seeding)
        for name in GROUP_REQUIRED:
            if props.get(name) is None or props.get(name) == "":
                raise _bad(f"A value is required for property '{name}' of resource 'Group'.")
        if props["mailEnabled"] and "Unified" not in (props.get("groupTypes") or []):
            raise _bad(
                "Creating mail-enabled security groups or distribution lists is not "
                "supported through Graph."
            )
        binds = self._resolve_binds(body.get("members@odata.bind"))
        owners = self._resolve_owner_binds(body.get("owners@odata.bind"))
        gid = self._claim_id(props)
        group = {
            "id": gid,
            "createdDateTime": _now(),
            "description": None,
            "groupTypes": [],
            "mail": None,
            "proxyAddresses": [],
            "renewedDateTime": _now(),
            "resourceProvisioningOptions": [],
            "securityIdentifier": "S-1-12-1-"
            + "-".join(str(self._rng.getrandbits(31)) for _ in range(4)),
            "visibility": None,
            **props,
        }
        self.groups[gid] = group
        self.members[gid] = []
        self.owners[gid] = owners
        self._member_log[gid] = []
        self._created_at[gid] = self.clock()
        self._touch("groups", gid, [k for k, v in group.items() if v is not None], created=True)
        for mid in binds:
            self._add_member(gid, mid)
        return group

    def _resolve_binds(self, binds: Any, key: str = "members@odata.bind") -> list[str]:
        """Object ids from an ``x@odata.bind`` list (at most 20, all must exist)."""
        if binds is None:
            return []
        if not isinstance(binds, list):
            raise _bad(f"{key} must be an array of URLs.", "BadRequest")
        if len(binds) > MAX_BIND:
            raise _bad(
                f"The request contains too many object references. Maximum number of "
                f"references allowed is {MAX_BIND}."
            )
        ids: list[str] = []
        for url in binds:
            m = _BIND_RE.search(str(url))
            if m is None:
                raise _bad(f"Invalid object identifier '{url}'.")
            mid = m.group(1)
            if mid not in self.users and mid not in self.groups:
                raise _not_found(mid)
            ids.append(mid)
        return ids

    def _resolve_owner_binds(self, binds: Any) -> list[str]:
        """User ids from ``owners@odata.bind`` (at most 20, all existing users; a repeated URL
        counts once)."""
        ids = self._resolve_binds(binds, "owners@odata.bind")
        for oid in ids:
            self._check_owner(oid)
        return list(dict.fromkeys(ids))

    def _check_owner(self, oid: str) -> None:
        """Only users (and service principals, not modelled) may own a group: a group is 400."""
        if oid in self.groups:
            raise _bad(
                f"The reference target 'Group_{oid}' of type 'Group' is invalid for the 'owners' "
                "reference."
            )
        if oid not in self.users:
            raise _not_found(oid)

    def _patch(self, kind: str, obj: dict[str, Any], body: Any) -> Reply:
        if not isinstance(body, dict):
            raise _bad("A JSON object body is required.", "BadRequest")
        oid = obj["id"]
        props = _properties(kind, body)
        for name in USER_REQUIRED if kind == "users" else GROUP_REQUIRED:
            if name in props and props[name] is None:
                raise _bad(f"Invalid value specified for property '{name}'.")
        upn = props.get("userPrincipalName")
        if kind == "users" and upn is not None and self._upn_taken(upn, but=oid):
            raise self._conflict("userPrincipalName")
        imm = props.get("onPremisesImmutableId")
        if kind == "users" and imm and self._immutable_id_taken(imm, but=oid):
            raise self._conflict("onPremisesImmutableId")
        mail = props.get("mail")
        if kind == "users" and mail and self._address_taken(mail, but=oid):
            raise self._conflict("proxyAddresses")
        binds: list[str] = []
        owners: list[str] = []
        if kind == "groups":
            # all or nothing: every check before anything changes
            binds = self._resolve_binds(body.get("members@odata.bind"))
            owners = self._resolve_owner_binds(body.get("owners@odata.bind"))
            if any(m in self.members[oid] for m in binds):
                raise _bad(ALREADY_MEMBER)
            if any(o in self.owners[oid] for o in owners):
                raise _bad(ALREADY_OWNER)
            if binds:
                self._lag_check(oid)
            if owners:
                self._lag_check(oid, owners=True)
        before = {name: obj.get(name) for name in (*props, "proxyAddresses")}
        if kind == "users" and "mail" in props:
            _set_mail(obj, props["mail"])
        obj.update(props)
        # only real changes reach delta: a PATCH that writes the same value is no change
        if changed := [name for name, old in before.items() if obj.get(name) != old]:
            self._touch(kind, oid, changed)
        for mid in binds:
            self._add_member(oid, mid)
        self.owners.get(oid, []).extend(owners)
        return Reply(204, {}, None)

    def _delete(self, kind: str, oid: str) -> None:
        gone = self._store(kind).pop(oid)
        unified = kind == "groups" and "Unified" in (gone.get("groupTypes") or [])
        self._removal_reason[oid] = "changed" if kind == "users" or unified else "deleted"
        self._removed_type[oid] = f"#microsoft.graph.{'user' if kind == 'users' else 'group'}"
        self._seq += 1
        self._removed[kind][oid] = self._seq
        self._prop_seq.pop((kind, oid), None)
        if kind == "groups":
            self.members.pop(oid, None)
            self.owners.pop(oid, None)
            self.teams.forget(oid)
        for gid, mids in self.members.items():
            if oid in mids:
                self._remove_member(gid, oid)
        for owner_ids in self.owners.values():
            if oid in owner_ids:
                owner_ids.remove(oid)

    # --- membership ------------------------------------------------------------------------------
    def _add_member(self, gid: str, mid: str) -> None:
        self.members[gid].append(mid)
        self._seq += 1
        self._member_log[gid].append((self._seq, mid, True))
        self._change_log.append((self._seq, "groups", gid, ("members",), False))

    def _remove_member(self, gid: str, mid: str) -> None:
        self.members[gid].remove(mid)
        self._seq += 1
        self._member_log[gid].append((self._seq, mid, False))
        self._change_log.append((self._seq, "groups", gid, ("members",), False))

    def _lag_check(self, gid: str, *, owners: bool = False) -> None:
        """Replication lag: a member (or owner) add to a just-created group may not find it yet."""
        if self.clock() - self._created_at[gid] >= self.lag_seconds:
            return
        if owners and self.lag_owner_adds > 0:
            self.lag_owner_adds -= 1
            raise _not_found(gid)
        if not owners and self.lag_member_adds > 0:
            self.lag_member_adds -= 1
            raise _not_found(gid)

    def _ref_add(self, gid: str, body: Any) -> Reply:
        ref = body.get("@odata.id") if isinstance(body, dict) else None
        if not ref:
            raise _bad("The '@odata.id' property is required.", "BadRequest")
        (mid,) = self._resolve_binds([ref])
        self._lag_check(gid)
        if mid in self.members[gid]:
            raise _bad(ALREADY_MEMBER)
        self._add_member(gid, mid)
        return Reply(204, {}, None)

    def _ref_remove(self, gid: str, mid: str) -> Reply:
        if mid not in self.members[gid]:
            raise _not_found(mid)
        self._remove_member(gid, mid)
        return Reply(204, {}, None)

    # --- ownership -------------------------------------------------------------------------------
    def _owner_add(self, gid: str, body: Any) -> Reply:
        ref = body.get("@odata.id") if isinstance(body, dict) else None
        if not ref:
            raise _bad("The '@odata.id' property is required.", "BadRequest")
        (uid,) = self._resolve_owner_binds([ref])
        self._lag_check(gid, owners=True)
        if uid in self.owners[gid]:
            raise _bad(ALREADY_OWNER)
        self.owners[gid].append(uid)
        return Reply(204, {}, None)

    def _owner_remove(self, gid: str, uid: str) -> Reply:
        owners = self.owners[gid]
        if uid not in owners:
            raise _not_found(uid)
        if owners == [uid]:
            raise _bad(LAST_OWNER)
        owners.remove(uid)
        return Reply(204, {}, None)

    # --- rendering -------------------------------------------------------------------------------
    def _render(
        self, kind: str, obj: dict[str, Any], select: list[str] | None, *, ctx: bool = False
    ) -> dict[str, Any]:
        """An object with Graph's default property set, or ``id`` plus the selected ones."""
        names = select or (USER_DEFAULT if kind == "users" else GROUP_DEFAULT)
        out: dict[str, Any] = {}
        if ctx:
            out["@odata.context"] = f"{self.url}/$metadata#{kind}/$entity"
        out["id"] = obj["id"]
        for name in names:
            if name == "members":
                continue
            value = obj.get(name)
            if name == "passwordProfile":
                value = None  # never read back
            out[name] = value
        return out

    def _render_member(self, mid: str, select: list[str] | None) -> dict[str, Any]:
        kind = "users" if mid in self.users else "groups"
        obj = self._store(kind)[mid]
        odata_type = "#microsoft.graph.user" if kind == "users" else "#microsoft.graph.group"
        return {"@odata.type": odata_type, **self._render(kind, obj, select)}

    # --- queries ---------------------------------------------------------------------------------
    def _list(self, kind: str, query: dict[str, str], headers: dict[str, str]) -> Reply:
        if "$skiptoken" in query:
            return self._next_page(query["$skiptoken"], delta=False)
        select = _select(query, kind)
        top = _top(query)
        predicate, advanced, expressions = _parse_filter(query.get("$filter"), kind)
        count = query.get("$count", "").lower() == "true"
        eventual = headers.get("consistencylevel", "").lower() == "eventual"
        if (advanced or count) and not (count and eventual):
            prop = advanced or "$count"
            raise _bad(
                f"Unsupported or invalid query filter clause specified for property '{prop}' of "
                f"resource '{'User' if kind == 'users' else 'Group'}'.",
                "Request_UnsupportedQuery",
            )
        if count and eventual:
            if len(query.get("$filter") or "") > MAX_ADVANCED_FILTER:
                raise _bad(
                    f"The filter is longer than {MAX_ADVANCED_FILTER} characters.",
                    "Request_UnsupportedQuery",
                )
        elif expressions > MAX_EXPRESSIONS:
            raise _bad(
                "Too many child clauses specified in search filter expression containing 'OR' "
                f"operators: {expressions}. Max allowed: {MAX_EXPRESSIONS}.",
                "Request_UnsupportedQuery",
            )
        ids = [oid for oid, obj in self._store(kind).items() if predicate(obj)]
        page = _Page(kind, ids, 0, top, select)
        extra = {"@odata.count": len(ids)} if count else {}
        return self._page_reply(page, f"{self.url}/$metadata#{kind}", f"/{kind}", extra)

    def _list_members(self, gid: str, query: dict[str, str], headers: dict[str, str]) -> Reply:
        if "$skiptoken" in query:
            return self._next_page(query["$skiptoken"], delta=False)
        page = _Page(f"members:{gid}", list(self.members[gid]), 0, _top(query), _select(query))
        return self._page_reply(
            page, f"{self.url}/$metadata#directoryObjects", f"/groups/{gid}/members", {}
        )

    def _list_owners(self, gid: str, query: dict[str, str]) -> Reply:
        if "$skiptoken" in query:
            return self._next_page(query["$skiptoken"], delta=False)
        page = _Page(f"owners:{gid}", list(self.owners[gid]), 0, _top(query), _select(query))
        return self._page_reply(
            page, f"{self.url}/$metadata#directoryObjects", f"/groups/{gid}/owners", {}
        )

    def _page_reply(self, page: _Page, context: str, path: str, extra: dict[str, Any]) -> Reply:
        page.extra = {"context": context, "path": path}
        body: dict[str, Any] = {"@odata.context": context, **extra}
        body["value"] = self._page_values(page)
        if page.offset < len(page.ids):
            token = uuid.uuid4().hex
            self._pages[token] = page
            body["@odata.nextLink"] = f"{self.url}{path}?$skiptoken={token}"
        return Reply(200, {}, body)

    def _page_values(self, page: _Page) -> list[dict[str, Any]]:
        """Render the next ``top`` still-existing objects and advance the page's offset."""
        values: list[dict[str, Any]] = []
        while page.offset < len(page.ids) and len(values) < page.top:
            oid = page.ids[page.offset]
            page.offset += 1
            if page.kind.startswith(("members:", "owners:")):
                relation, gid = page.kind.split(":", 1)
                if oid in (self.members if relation == "members" else self.owners).get(gid, ()):
                    values.append(self._render_member(oid, page.select))
            elif oid in self._store(page.kind):
                values.append(self._render(page.kind, self._store(page.kind)[oid], page.select))
        return values

    def _next_page(self, token: str, *, delta: bool, minimal: bool = False) -> Reply:
        page = self._pages.get(token)
        if page is None or page.delta != delta:
            raise _bad("Invalid paging token.", "Request_BadRequest")
        page = replace(page)  # links stay valid: a retried page GET answers the same page
        if delta:
            if page.extra["epoch"] != self._delta_epoch:
                raise self._resync(page.kind, page.select)
            return self._delta_page(page, minimal=minimal)
        return self._page_reply(page, page.extra["context"], page.extra["path"], {})

    # --- delta -----------------------------------------------------------------------------------
    def reset_delta(self) -> None:
        """Forget every delta state, as Graph may after tenant maintenance: every deltaLink and
        delta nextLink handed out so far answers 410 Gone (a full resync), reference §8.6."""
        with self._lock:
            self._delta_epoch = uuid.uuid4().hex

    def delta_link(self, kind: str = "users", select: Sequence[str] | None = None) -> str:
        """A deltaLink for "now" (what ``$deltatoken=latest`` gives), without a request."""
        with self._lock:
            token = self._delta_token(kind, self._seq, list(select) if select else None, None)
            return f"{self.url}/{kind}/delta?$deltatoken={token}"

    def _delta(self, kind: str, query: dict[str, str], headers: dict[str, str]) -> Reply:
        """``GET /users/delta`` and ``GET /groups/delta``: the first round (every object, or none
        for ``$deltatoken=latest``), then rounds of what changed since the round's token."""
        minimal = "return=minimal" in headers.get("prefer", "").replace(" ", "").lower()
        if "$skiptoken" in query:
            return self._next_page(query["$skiptoken"], delta=True, minimal=minimal)
        top = _max_page_size(headers.get("prefer", ""))
        token = query.get("$deltatoken")
        if token is not None and token != "latest":
            # the token carries the selection and filter; options sent with it are ignored
            state = self._read_delta_token(kind, token)
            since, select, only = state["s"], state["sel"], state["ids"]
            ids = self._changed_since(kind, since, select, only)
            incremental = True
        else:
            if set(query) - {"$select", "$filter", "$deltatoken"}:
                raise _bad("Only $select and $filter are supported on delta.", "BadRequest")
            select = _select(query, kind, allow_members=kind == "groups")
            only = _delta_filter(query.get("$filter"))
            since, incremental = self._seq, False
            # "sync from now": no objects, only a deltaLink
            ids = [] if token == "latest" else [o for o in self._store(kind) if _kept(o, only)]
        page = _Page(kind, ids, 0, top, select, delta=True, delta_seq=self._seq)
        page.extra = {
            "since": since,
            "incremental": incremental,
            "only": only,
            "epoch": self._delta_epoch,
        }
        return self._delta_page(page, minimal=minimal)

    def _delta_token(
        self, kind: str, seq: int, select: list[str] | None, only: list[str] | None
    ) -> str:
        """An opaque-looking token that encodes the round's state: the sequence number it
        stands for, the selection and filter (Graph encodes them too), when it was issued and
        the server's delta epoch."""
        state = {
            "k": kind,
            "s": seq,
            "sel": select,
            "ids": only,
            "t": self.clock(),
            "e": self._delta_epoch,
        }
        raw = json.dumps(state, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def _read_delta_token(self, kind: str, token: str) -> dict[str, Any]:
        try:
            state = json.loads(_b64url(token))
            if not isinstance(state, dict) or state.get("k") != kind:
                raise ValueError("not a token of this collection")
            if not isinstance(state.get("s"), int) or not isinstance(state.get("t"), int | float):
                raise ValueError("no sequence number")
        except (ValueError, binascii.Error):
            raise _bad("Invalid delta token.", "Request_BadRequest") from None
        if state.get("e") != self._delta_epoch:
            raise self._resync(kind, state.get("sel"))
        if self.clock() - state["t"] > self.delta_token_lifetime:
            # what Graph answers for identity objects after seven days (400, not 410)
            raise _bad(
                "The sync state generation is not found. The delta token is expired and data "
                "must be synchronized again.",
                "syncStateNotFound",
            )
        return state

    def _resync(self, kind: str, select: list[str] | None) -> GraphError:
        """410 Gone with a Location to start over (reference: delta query, synchronization
        reset); Graph has been seen answering it with the code ``syncStateNotFound``."""
        location = f"{self.url}/{kind}/delta"
        if select:
            location += "?$select=" + ",".join(select)
        return GraphError(
            410,
            "syncStateNotFound",
            "The sync state generation is not found; a full synchronization is required.",
            headers={"Location": location},
        )

    def _changed_since(
        self, kind: str, since: int, select: list[str] | None, only: list[str] | None
    ) -> list[str]:
        """Objects created, changed in a tracked property, or (groups) changed in membership
        after ``since``, then those removed after it. A change of a property outside the
        selection does not bring an object back, as in Graph."""
        tracked = set(_delta_names(kind, select))
        if _tracks_members(kind, select):
            tracked.add("members")
        store = self._store(kind)
        found: dict[str, None] = {}
        start = bisect.bisect_right(self._change_log, since, key=lambda entry: entry[0])
        for _, k, oid, names, created in self._change_log[start:]:
            if k != kind or oid in found or oid not in store or not _kept(oid, only):
                continue
            if created or not tracked.isdisjoint(names):
                found[oid] = None
        removed = [o for o, seq in self._removed[kind].items() if seq > since and _kept(o, only)]
        return [*found, *removed]

    def _delta_page(self, page: _Page, *, minimal: bool = False) -> Reply:
        kind, since = page.kind, page.extra["since"]
        incremental = page.extra["incremental"]
        names = _delta_names(kind, page.select)
        members = _tracks_members(kind, page.select)
        room = max(1, self.delta_members_per_page)
        values: list[dict[str, Any]] = []
        while page.offset < len(page.ids) and len(values) < page.top:
            oid = page.ids[page.offset]
            obj = self._store(kind).get(oid)
            if obj is None:
                reason = self._removal_reason.get(oid, "changed")
                values.append({"id": oid, "@removed": {"reason": reason}})
                page.offset += 1
                page.members, page.member_offset = None, 0  # deleted while split over pages
                continue
            item = self._delta_item(kind, obj, names, since if incremental else None, minimal)
            if members:
                if page.members is None:  # frozen for the round: later pages continue the list
                    page.members = tuple(self._members_delta(oid, since, incremental))
                    page.member_offset = 0
                left = len(page.members) - page.member_offset
                if left and room == 0:
                    break  # this group's members start on the next page
                take = min(left, room)
                if take:
                    start = page.member_offset
                    item["members@delta"] = list(page.members[start : start + take])
                room -= take
                page.member_offset += take
                values.append(item)
                if page.member_offset < len(page.members):
                    break  # the same group comes again on the next page with the rest
                page.members, page.member_offset = None, 0
            else:
                values.append(item)
            page.offset += 1
        body: dict[str, Any] = {"@odata.context": f"{self.url}/$metadata#{kind}", "value": values}
        if page.offset < len(page.ids):
            token = uuid.uuid4().hex
            self._pages[token] = page
            body["@odata.nextLink"] = f"{self.url}/{kind}/delta?$skiptoken={token}"
        else:
            token = self._delta_token(kind, page.delta_seq, page.select, page.extra["only"])
            body["@odata.deltaLink"] = f"{self.url}/{kind}/delta?$deltatoken={token}"
        return Reply(200, {}, body)

    def _delta_item(
        self,
        kind: str,
        obj: dict[str, Any],
        names: Sequence[str],
        since: int | None,
        minimal: bool,
    ) -> dict[str, Any]:
        """One object of a delta page. The first round (``since`` None) renders the selection
        as a plain GET does. Later rounds render it as Graph documents for user delta: changed
        and unchanged properties alike, but not those never set; with ``Prefer:
        return=minimal`` only those changed since the token."""
        out: dict[str, Any] = {"id": obj["id"]}
        changes = self._prop_seq.get((kind, obj["id"]), {})
        for name in names:
            if name == "id":
                continue
            if since is not None:
                if minimal and changes.get(name, 0) <= since:
                    continue
                if name not in changes and obj.get(name) is None:
                    continue
            out[name] = None if name == "passwordProfile" else obj.get(name)
        return out

    def _members_delta(self, gid: str, since: int, incremental: bool) -> list[dict[str, Any]]:
        """Current members (first round) or the net member changes since ``since``: added ones
        as ``{"@odata.type", "id"}``, removed ones (also by deletion) with ``@removed``."""
        last: dict[str, bool] = {}
        if not incremental:
            last = dict.fromkeys(self.members.get(gid, []), True)
        else:
            for seq, mid, added in self._member_log.get(gid, []):
                if seq > since:
                    last[mid] = added
        out: list[dict[str, Any]] = []
        for mid, added in last.items():
            odata_type = "#microsoft.graph.group" if mid in self.groups else "#microsoft.graph.user"
            if not added and mid not in self.users and mid not in self.groups:
                odata_type = self._removed_type.get(mid, "#microsoft.graph.user")
            entry: dict[str, Any] = {"@odata.type": odata_type, "id": mid}
            if not added:
                entry["@removed"] = {"reason": "deleted"}
            out.append(entry)
        return out


def _delta_names(kind: str, select: list[str] | None) -> tuple[str, ...]:
    """The properties a delta round renders and tracks (``members`` apart)."""
    names = select or (USER_DEFAULT if kind == "users" else GROUP_DEFAULT)
    return tuple(n for n in names if n != "members")


def _tracks_members(kind: str, select: list[str] | None) -> bool:
    """Group delta tracks members by default, or when ``$select`` names them."""
    return kind == "groups" and (select is None or "members" in select)


def _kept(oid: str, only: list[str] | None) -> bool:
    return only is None or oid in only


_DELTA_ID_RE = re.compile(r"^\s*id\s+eq\s+'([^']*)'\s*$", re.I)
MAX_DELTA_IDS = 50


def _delta_filter(text: str | None) -> list[str] | None:
    """The ids of a delta ``$filter`` (``id eq '…' or id eq '…'``, at most 50): the only filter
    Graph takes on users and groups delta."""
    if text is None:
        return None
    ids: list[str] = []
    for clause in _OR_RE.split(text):
        m = _DELTA_ID_RE.match(clause)
        if m is None:
            raise _bad(
                "Unsupported query: delta supports only $filter=id eq '…' joined by 'or'.",
                "Request_UnsupportedQuery",
            )
        ids.append(m.group(1))
    if len(ids) > MAX_DELTA_IDS:
        raise _bad(
            f"Too many ids in the delta filter: {len(ids)}. Max allowed: {MAX_DELTA_IDS}.",
            "Request_UnsupportedQuery",
        )
    return ids


# --- Entra ID helpers ------------------------------------------------------------------------------
def _missing(parameter: str) -> _EntraError:
    return _EntraError(
        400,
        "invalid_request",
        900144,
        f"The request body must contain the following parameter: '{parameter}'.",
    )


def _check_scope(
    scope: str | None, tenant: str, resource_url: str = "https://graph.microsoft.com"
) -> None:
    """Only an application token for this cloud's Graph: ``https://graph.microsoft.com/.default``
    (or *resource_url*'s, for a national cloud).

    Anything else is what a misconfigured client sends, e.g. ``http://127.0.0.1/.default`` when
    the SDK derives the scope from the fake's host (reference §3): Entra refuses both kinds.
    """
    if not scope:
        raise _missing("scope")
    if len(scope.split()) != 1 or not scope.endswith("/.default"):
        raise _EntraError(
            400,
            "invalid_scope",
            1002012,
            f"The provided value for scope {scope} is not valid. Client credential flows must "
            "have a scope value with /.default suffixed to the resource identifier "
            "(application ID URI).",
        )
    resource = scope.removesuffix("/.default").rstrip("/")
    if resource.casefold() not in (resource_url.casefold(), GRAPH_APP_ID):
        raise _EntraError(
            400,
            "invalid_resource",
            500011,
            f"The resource principal named {resource} was not found in the tenant named "
            f"{tenant}. This can happen if the application has not been installed by the "
            "administrator of the tenant or consented to by any user in the tenant. You might "
            "have sent your authentication request to the wrong tenant.",
        )


def _b64url(part: str) -> bytes:
    """Decode one JWT segment; padding is optional (azure-identity sends it, PyJWT does not)."""
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _verify_assertion(app: _App, assertion: str, *, audiences: set[str]) -> None:
    """Check a certificate credential's signed JWT the way Entra does: a registered certificate
    (by thumbprint), an RS256/PS256 signature by its key, ``iss`` = ``sub`` = the client id, the
    token endpoint as ``aud``, and a current validity window (five minutes of clock skew)."""

    def invalid(code: int, description: str) -> _EntraError:
        return _EntraError(401, "invalid_client", code, description)

    try:
        header_b64, payload_b64, signature_b64 = assertion.split(".")
        header = json.loads(_b64url(header_b64))
        claims = json.loads(_b64url(payload_b64))
        signature = _b64url(signature_b64)
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise ValueError("not JSON objects")
    except (ValueError, binascii.Error):
        raise invalid(50027, "JWT token is invalid or malformed.") from None
    alg = header.get("alg")
    if alg not in ("RS256", "PS256"):
        raise invalid(50027, f"JWT token is invalid or malformed: unsupported algorithm {alg}.")
    cert = app.certificate
    used = header.get("x5t#S256") or header.get("x5t")
    if cert is not None and used is not None:
        # x5t is a SHA-1 thumbprint by definition; azure-identity sends x5t#S256 (SHA-256).
        digest = hashes.SHA256() if "x5t#S256" in header else hashes.SHA1()
        if _b64url(str(used)) != cert.fingerprint(digest):
            cert = None
    if cert is None:
        raise invalid(
            700027,
            "Client assertion contains an invalid signature. [Reason - The key was not found., "
            f"Thumbprint of key used by client: '{used}']",
        )
    signed = f"{header_b64}.{payload_b64}".encode()
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise invalid(700027, "Client assertion contains an invalid signature.")
    pad: padding.AsymmetricPadding = (
        padding.PKCS1v15()
        if alg == "RS256"
        else padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
    )
    try:
        key.verify(signature, signed, pad, hashes.SHA256())
    except InvalidSignature:
        raise invalid(
            700027,
            "Client assertion contains an invalid signature. [Reason - The provided signature "
            "value did not match the expected signature value.]",
        ) from None
    client = app.client_id.casefold()
    if str(claims.get("iss", "")).casefold() != client or (
        str(claims.get("sub", "")).casefold() != client
    ):
        raise invalid(
            700027,
            "Client assertion contains an invalid signature. [Reason - The issuer and the "
            f"subject of the assertion must both be the client id '{app.client_id}'.]",
        )
    if str(claims.get("aud", "")).casefold() not in audiences:
        raise invalid(50012, "Client assertion audience claim does not match Realm issuer.")
    now = time.time()
    try:
        not_before, expires = float(claims.get("nbf", 0)), float(claims["exp"])
    except (KeyError, TypeError, ValueError):
        raise invalid(50027, "JWT token is invalid or malformed: no valid 'exp'.") from None
    if not not_before - 300 <= now <= expires + 300:
        raise invalid(700024, "Client assertion is not within its valid time range.")


class AppCertificate(NamedTuple):
    """A throwaway certificate credential for an application."""

    pem: bytes
    """Private key and certificate, the file ``CertificateCredential(certificate_path=)`` reads."""
    certificate_pem: bytes
    """The public certificate alone, what is uploaded to the app registration."""


def make_app_certificate(common_name: str = "provisioner test app") -> AppCertificate:
    """A self-signed RSA certificate valid for two days, as apps use for client credentials."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=2))
        .sign(key, hashes.SHA256())
    )
    certificate_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return AppCertificate(key_pem + certificate_pem, certificate_pem)


# --- property validation ---------------------------------------------------------------------------
def _properties(kind: str, body: dict[str, Any], *, seeding: bool = False) -> dict[str, Any]:
    """The properties of a create or PATCH body, checked the way Graph checks them.

    ``@odata.*`` annotations and the allowed ``x@odata.bind`` keys are left out. An unknown name
    answers 400 rather than being stored silently (a typo in the target must not pass the tests);
    so does a read-only one, except when a test seeds state directly (``seeding``).
    """
    writable = USER_WRITABLE if kind == "users" else GROUP_WRITABLE
    known = USER_PROPS if kind == "users" else GROUP_PROPS
    props: dict[str, Any] = {}
    for name, value in body.items():
        if name.startswith("@odata.") or name in _BINDS[kind]:
            continue
        if name not in known:
            raise _bad(f"Invalid property '{name}'.")
        if name not in writable and not seeding:
            raise _bad(f"Property '{name}' is read-only and cannot be set.")
        if name in writable:
            _check_value(kind, name, value)
        props[name] = value
    return props


def _check_value(kind: str, name: str, value: Any) -> None:
    """400 for a value of the wrong JSON type or one that breaks a documented rule."""
    resource = "User" if kind == "users" else "Group"
    invalid = _bad(f"Invalid value specified for property '{name}' of resource '{resource}'.")
    if value is None:
        if name == "displayName":
            raise invalid  # the one string Graph never lets a client clear
        return
    expected = _TYPES.get(name, str)
    if not isinstance(value, expected) or (
        expected is list and not all(isinstance(v, str) for v in value)
    ):
        raise _bad(
            f"Cannot convert the literal '{value}' to the expected type of property '{name}'.",
            "BadRequest",
        )
    if not isinstance(value, str):
        return
    if len(value) > _MAX_LENGTH.get(name, len(value)) or (name == "displayName" and not value):
        raise invalid
    if name == "mailNickname" and (not value.isascii() or _NICKNAME_BAD.search(value)):
        raise invalid
    if name == "userPrincipalName" and not _UPN_RE.fullmatch(value):
        raise _bad("Property userPrincipalName in payload has a value that does not match schema.")
    if name == "usageLocation" and not _COUNTRY_RE.fullmatch(value):
        raise invalid
    if name == "onPremisesImmutableId" and ("$" in value or "_" in value):
        raise invalid
    if name == "mail" and not _MAIL_RE.fullmatch(value):
        raise invalid  # an address, without accents
    if name == "visibility" and value not in _VISIBILITY:
        raise invalid


def _set_mail(user: dict[str, Any], mail: Any) -> None:
    """What Entra does to a user's proxyAddresses when its mail changes without Exchange Online:
    the new address becomes the primary one (``SMTP:``) and the old primary is dropped, not kept
    as an alias. Other entries (aliases Exchange added) stay, as ``smtp:``."""
    old = str(user.get("mail") or "").casefold()
    kept = [
        "smtp:" + p.partition(":")[2]
        for p in user.get("proxyAddresses") or []
        if p.partition(":")[2].casefold() not in (old, str(mail or "").casefold())
    ]
    user["proxyAddresses"] = ([f"SMTP:{mail}"] if mail else []) + kept


# --- query helpers ---------------------------------------------------------------------------------
def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _num(value: float) -> str:
    """``1`` for 1.0, ``0.5`` for 0.5 (Graph has been seen sending decimals in batches)."""
    return str(int(value)) if float(value).is_integer() else str(value)


def _select(
    query: dict[str, str], kind: str | None = None, *, allow_members: bool = False
) -> list[str] | None:
    """The ``$select`` names, matched case-insensitively to known properties."""
    raw = query.get("$select")
    if not raw:
        return None
    known = (
        USER_PROPS | GROUP_PROPS
        if kind is None
        else (USER_PROPS if kind == "users" else GROUP_PROPS)
    )
    by_fold = {k.casefold(): k for k in known}
    out: list[str] = []
    for name in (n.strip() for n in raw.split(",") if n.strip()):
        real = by_fold.get(name.casefold())
        if real is None or (real == "members" and not allow_members):
            what = "user" if kind == "users" else "group" if kind else "directoryObject"
            raise _bad(
                f"Could not find a property named '{name}' on type 'microsoft.graph.{what}'.",
                "BadRequest",
            )
        out.append(real)
    return out


def _top(query: dict[str, str]) -> int:
    raw = query.get("$top")
    if raw is None:
        return DEFAULT_TOP
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_TOP:
        raise _bad(f"Invalid page size specified: '{raw}'. Must be between 1 and {MAX_TOP}.")
    return int(raw)


def _max_page_size(prefer: str) -> int:
    m = re.search(r"odata\.maxpagesize=(\d+)", prefer)
    return min(int(m.group(1)), MAX_TOP) if m else DEFAULT_TOP


def _parse_filter(
    text: str | None, kind: str
) -> tuple[Callable[[dict[str, Any]], bool], str | None, int]:
    """A predicate for the supported ``$filter`` subset, the property if it is advanced, and
    how many expressions the filter holds (each value of an ``in`` list counts).

    Basic: ``prop eq 'x'`` / ``eq true|false``, ``startswith(prop,'x')``, ``prop in ('x','y')``,
    ``proxyAddresses/any(p:p eq 'x')``, and clauses joined by ``or``. Advanced (need
    ``ConsistencyLevel: eventual`` and ``$count=true``): ``ne``, ``eq null``, ``endswith``.
    Strings compare without case, as in Entra ID.
    """
    if not text:
        return (lambda _obj: True), None, 0
    predicates: list[Callable[[dict[str, Any]], bool]] = []
    advanced: str | None = None
    expressions = 0
    for clause in _split_or(text):
        predicate, clause_advanced, count = _parse_clause(clause, kind)
        predicates.append(predicate)
        advanced = advanced or clause_advanced
        expressions += count
    if len(predicates) == 1:
        return predicates[0], advanced, expressions
    return (lambda obj: any(p(obj) for p in predicates)), advanced, expressions


def _split_or(text: str) -> list[str]:
    """The clauses of a filter joined by ``or`` (outside quotes and parentheses)."""
    clauses: list[str] = []
    depth, quoted, start, i = 0, False, 0, 0
    while i < len(text):
        char = text[i]
        if char == "'":
            quoted = not quoted  # a doubled quote inside a string toggles twice
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        elif not quoted and depth == 0 and (m := _OR_RE.match(text, i)):
            clauses.append(text[start:i])
            i = start = m.end()
            continue
        i += 1
    clauses.append(text[start:])
    return clauses


def _folded(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def _parse_clause(text: str, kind: str) -> tuple[Callable[[dict[str, Any]], bool], str | None, int]:
    m = _CMP_RE.match(text)
    if m:
        prop, op, string, word = m.groups()
        _check_prop(prop, kind)
        value: Any = string.replace("''", "'") if string is not None else _WORDS[word]

        def eq(obj: dict[str, Any]) -> bool:
            return _folded(obj.get(prop)) == _folded(value)

        if op == "eq":
            return eq, (prop if value is None else None), 1
        return (lambda obj: not eq(obj)), prop, 1
    m = _FUNC_RE.match(text)
    if m:
        func, prop, string = m.groups()
        _check_prop(prop, kind)
        needle = string.replace("''", "'").casefold()
        if func.lower() == "startswith":
            return (lambda obj: str(obj.get(prop) or "").casefold().startswith(needle)), None, 1
        return (lambda obj: str(obj.get(prop) or "").casefold().endswith(needle)), prop, 1
    m = _IN_RE.match(text)
    if m:
        prop, listed = m.group(1), m.group(2)
        _check_prop(prop, kind)
        values = {v.replace("''", "'").casefold() for v in re.findall(_STR, listed)}
        count = len(re.findall(_STR, listed))
        return (lambda obj: _folded(obj.get(prop)) in values), None, count
    m = _ANY_RE.match(text)
    if m:
        prop, variable, compared, string = m.groups()
        _check_prop(prop, kind, collection=True)
        if variable != compared:
            raise _bad(f"Could not find a property named '{compared}'.", "BadRequest")
        needle = string.replace("''", "'").casefold()
        return (lambda obj: any(str(v).casefold() == needle for v in obj.get(prop) or [])), None, 1
    raise _bad(f"Invalid filter clause: {text}", "BadRequest")


_WORDS: dict[str, Any] = {"null": None, "true": True, "false": False}


def _check_prop(prop: str, kind: str, *, collection: bool = False) -> None:
    """400 for a property the fake does not filter on, or one used as what it is not (a list
    compared as one value, a value reached into with a lambda)."""
    if prop not in FILTERABLE[kind] or (prop in COLLECTIONS) != collection:
        raise _bad(
            f"Unsupported or invalid query filter clause specified for property '{prop}' of "
            f"resource '{'User' if kind == 'users' else 'Group'}'.",
            "Request_UnsupportedQuery",
        )


# --- standalone ------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    """Serve until interrupted, for benchmarks and end-to-end runs in another process.

    The first line printed is the Graph base URL; with ``--tls`` the authority and the CA file
    follow, and ``--tenant``/``--client-id``/``--client-secret`` register an application.
    """
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.graph_server")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    parser.add_argument("--seed-users", type=int, default=0, metavar="K")
    parser.add_argument(
        "--round-trip",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="wait this long before each answer (a real round trip to Graph)",
    )
    parser.add_argument(
        "--seed-classes",
        type=int,
        default=0,
        metavar="N",
        help="a class group prov-klas-<i> for every N seeded users (members, the first as owner)",
    )
    parser.add_argument("--token", default="test-token", help="the accepted bearer token")
    parser.add_argument("--tls", action="store_true", help="serve https with a throwaway CA")
    parser.add_argument("--tenant", help="register an application in this tenant")
    parser.add_argument("--client-id")
    parser.add_argument("--client-secret")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    if args.tenant and not (args.client_id and args.client_secret):
        parser.error("--tenant needs --client-id and --client-secret")
    server = GraphServer(port=args.port, token=args.token, tls=args.tls, verbose=args.verbose)
    if args.tenant:
        server.register_app(args.tenant, args.client_id, secret=args.client_secret)
    server.seed_users(args.seed_users)
    if args.seed_classes:
        server.seed_classes(args.seed_classes)
    server.round_trip = args.round_trip
    # SIGTERM (how benchmarks stop a child) ends the wait below like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with server:
        print(server.url, flush=True)
        if server.ca is not None:
            print(f"authority {server.authority}", flush=True)
            print(f"ca_file {server.ca_file}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
