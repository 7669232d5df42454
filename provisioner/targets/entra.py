"""Entra ID over Microsoft Graph (msgraph-sdk): read the managed scope, apply changes in ``$batch``.

Shaped by measured SDK behaviour (shared/reference/microsoft-graph.md):

- Bulk reads are raw JSON through the SDK's request adapter: turning JSON into typed models costs
  about 10 ms per object. Typed models are used only where one object is handled.
- Writes go as hand-built JSON ``$batch`` requests of up to 20 (the SDK's batch helpers are
  unusable), through the same adapter, so sign-in and error mapping are the SDK's own. Each change
  is a small coroutine that asks the :class:`Batcher` for its requests; the batcher packs whatever
  is waiting into batches of 20.
- Every retry is ours (the SDK's RetryHandler is off): it cannot see throttled items inside a
  batch, cannot parse a decimal ``Retry-After``, and sleeps where tests cannot reach. Items
  answered 429/503/504 are sent again after their ``Retry-After``; the run keeps its writes under
  Graph's write quota; all waiting goes through one ``sleep`` that tests replace.

The managed scope: users whose UPN ends in one of the configured domains, and security groups
whose mailNickname starts with the group prefix. Nothing else is read, changed or deleted.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.utils
import json
import re
import secrets
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar
from urllib.parse import unquote

import httpx
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError
from azure.identity.aio import CertificateCredential, ClientSecretCredential
from kiota_abstractions.api_error import APIError
from kiota_abstractions.base_request_configuration import RequestConfiguration
from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from kiota_http.middleware.options import RetryHandlerOption
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.password_profile import PasswordProfile
from msgraph.generated.models.user import User
from msgraph.generated.users.item.user_item_request_builder import UserItemRequestBuilder
from msgraph.graph_request_adapter import options as graph_default_options
from msgraph_core import GraphClientFactory

from provisioner import log
from provisioner.model import ObservedAccount, ObservedGroup, ObservedState
from provisioner.plan.model import Change
from provisioner.targets.base import Result, TargetError, drift
from provisioner.targets.entra_settings import EntraConfig, WriteQuota

T = TypeVar("T")

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
MAX_BATCH = 20
"""Items in one ``$batch``; also the most ``members@odata.bind`` references in one request."""
RETRIED = frozenset((429, 503, 504))
_ERRORS: dict[str, Any] = {"XXX": ODataError}

# Writable user properties a mapping may set, with Graph's length limits where it has them.
LIMITS: Mapping[str, int] = MappingProxyType(
    {
        "displayName": 256,
        "givenName": 64,
        "surname": 64,
        "department": 64,
        "jobTitle": 128,
        "companyName": 64,
        "employeeType": 64,
        "officeLocation": 128,
        "userPrincipalName": 113,
        "preferredLanguage": 10,
        "mobilePhone": 64,
        "city": 128,
        "country": 128,
        "state": 128,
        "postalCode": 40,
        "streetAddress": 1024,
        "usageLocation": 2,
    }
)
GROUP_LIMITS: Mapping[str, int] = MappingProxyType({"displayName": 256, "description": 1024})
_USER_READ = ("id", "userPrincipalName", "mailNickname", "accountEnabled")
_GROUP_READ = ("id", "mailNickname", "securityEnabled")
_NICKNAME_SAFE = re.compile(r"[A-Za-z0-9.\-_]")

_MEANINGS = {
    "Authorization_RequestDenied": "the app lacks a permission (grant User.ReadWrite.All, "
    "Group.ReadWrite.All and GroupMember.ReadWrite.All as application permissions, with admin "
    "consent)",
    "InvalidAuthenticationToken": "Graph refused the access token",
    "ObjectConflict": "the value is already used by another object in the tenant",
    "Request_ResourceNotFound": "the object does not exist (any more)",
}


@dataclass(frozen=True)
class Reply:
    """One answer: of a batch item, or of a request of its own."""

    status: int
    headers: Mapping[str, str]
    body: Any
    resent: bool = False
    """The batch was sent again after its answer was lost: the first one may have done this."""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def error(self) -> dict[str, Any]:
        err = self.body.get("error") if isinstance(self.body, dict) else None
        return err if isinstance(err, dict) else {}

    def conflict_on(self, prop: str) -> bool:
        """Graph's "another object already has this value" for *prop* (branching on the code
        and target, never on the message)."""
        return self.status == 400 and any(
            d.get("code") == "ObjectConflict" and d.get("target") == prop
            for d in self.error.get("details") or []
        )

    def explain(self) -> str:
        err = self.error
        if not err:
            return f"HTTP {self.status}, without Graph's error body"
        code = str(err.get("code") or "")
        details = [d.get("code") for d in err.get("details") or [] if isinstance(d, dict)]
        meaning = next((_MEANINGS[c] for c in (*details, code) if c in _MEANINGS), None)
        detail = f"{self.status} {code}: {err.get('message') or ''}".strip()
        return f"{meaning} ({detail})" if meaning else detail


async def wait(seconds: float) -> None:
    """How a run waits (for a Retry-After, the write quota, replication): tests replace it."""
    await asyncio.sleep(seconds)


def now() -> float:
    """The clock of the write quota: tests replace it together with :func:`wait`."""
    return time.monotonic()


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from a ``Retry-After`` header: a number (Graph sends decimals inside batches) or
    an HTTP date."""
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value) if value.strip() else None
        return max(0.0, when.timestamp() - time.time()) if when else None


def backoff(attempt: int) -> float:
    """Without a Retry-After: 1, 2, 4 … seconds, at most a minute."""
    return float(min(60, 2 ** (attempt - 1)))


def nickname_for(prefix: str, key: str) -> str:
    """A group's mailNickname from its key: characters Graph refuses there become ``~XX``."""
    out = []
    for char in key:
        if _NICKNAME_SAFE.fullmatch(char):
            out.append(char)
        else:
            out.extend(f"~{byte:02X}" for byte in char.encode())
    return prefix + "".join(out)


def key_of(prefix: str, nickname: str) -> str | None:
    """The key back from a mailNickname, or None when it is not the connector's."""
    if not nickname.startswith(prefix):
        return None
    raw = re.sub(r"~([0-9A-F]{2})", lambda m: f"%{m.group(1)}", nickname[len(prefix) :])
    return unquote(raw)


class WritePacer:
    """Keeps the writes of any window of ``quota.seconds`` at or below ``quota.writes``: Graph
    counts writes per app and tenant in such a sliding window, and answers 429 beyond it."""

    def __init__(
        self,
        quota: WriteQuota,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self.quota = quota
        self.clock = clock
        self.sleep = sleep
        self.waited = 0.0
        self._sent: deque[float] = deque()

    async def take(self, writes: int) -> None:
        limit, window = self.quota.writes, self.quota.seconds
        writes = min(writes, limit)
        while True:
            now = self.clock()
            while self._sent and self._sent[0] <= now - window:
                self._sent.popleft()
            over = len(self._sent) + writes - limit
            if over <= 0:
                break
            wait = self._sent[over - 1] + window - now  # until enough older writes leave the window
            self.waited += wait
            await self.sleep(max(wait, 0.001))
        self._sent.extend([now] * writes)


@dataclass
class _Call:
    method: str
    url: str
    body: Any
    future: asyncio.Future[Reply]
    attempts: int = 0

    @property
    def writes(self) -> int:
        return 0 if self.method == "GET" else 1


@dataclass
class Stats:
    """What the run sent: for the log and the benchmark."""

    http_requests: int = 0
    batches: int = 0
    items: int = 0
    writes: int = 0
    throttled: int = 0
    retries: int = 0


class Batcher:
    """Collects the requests of concurrently running change coroutines and sends them as
    ``$batch`` requests of up to 20, one batch at a time (the write quota, not the round trip,
    is what limits a run). Throttled items go back to the front of the queue."""

    def __init__(self, graph: _Graph) -> None:
        self.graph = graph
        self._queue: deque[_Call] = deque()
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Batcher:
        self._runner = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        self._runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._runner

    async def call(self, method: str, url: str, body: Any = None) -> Reply:
        """Queue one request (``url`` relative to the version root) and wait for its answer."""
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._queue.append(_Call(method, url, body, future))
        self._wake.set()
        return await future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            # Let every ready coroutine queue its request before a batch is cut.
            for _ in range(3):
                await asyncio.sleep(0)
            if not self._queue:
                self._wake.clear()
                continue
            calls = [self._queue.popleft() for _ in range(min(MAX_BATCH, len(self._queue)))]
            try:
                await self._send(calls)
            except Exception as exc:  # the whole batch failed: every caller learns why
                for call in calls:
                    if not call.future.done():
                        call.future.set_exception(exc)

    async def _send(self, calls: list[_Call]) -> None:
        graph = self.graph
        await graph.pacer.take(sum(c.writes for c in calls))
        requests = []
        for index, call in enumerate(calls):
            item: dict[str, Any] = {"id": str(index + 1), "method": call.method, "url": call.url}
            if call.body is not None:
                item["body"] = call.body
                item["headers"] = {"Content-Type": "application/json"}
            requests.append(item)
        lost = graph.resent_after_loss
        answer = await graph.send_json("POST", f"{graph.base_url}/$batch", {"requests": requests})
        resent = graph.resent_after_loss > lost
        stats = graph.stats
        stats.batches += 1
        stats.items += len(calls)
        stats.writes += sum(c.writes for c in calls)
        replies = {str(r.get("id")): r for r in (answer or {}).get("responses") or []}
        again: list[_Call] = []
        wait = 0.0
        for index, call in enumerate(calls):
            raw = replies.get(str(index + 1))
            if raw is None:
                call.future.set_exception(TargetError(f"$batch answered no item {index + 1}"))
                continue
            reply = Reply(int(raw.get("status", 0)), raw.get("headers") or {}, _body(raw), resent)
            call.attempts += 1
            if reply.status in RETRIED and call.attempts < graph.config.max_attempts:
                stats.throttled += 1
                wait = max(wait, retry_after(reply.headers) or backoff(call.attempts))
                again.append(call)
            else:
                call.future.set_result(reply)
        if again:
            stats.retries += len(again)
            self._queue.extendleft(reversed(again))
            await graph.sleep(wait)


def _body(raw: dict[str, Any]) -> Any:
    """An item's body: JSON, or (for some content types) base64 of it."""
    body = raw.get("body")
    if isinstance(body, str):
        try:
            return json.loads(base64.b64decode(body))
        except ValueError:
            return body
    return body


class _Graph:
    """The SDK client and the one retrying path every request takes."""

    def __init__(
        self,
        config: EntraConfig,
        sleep: Callable[[float], Awaitable[None]],
        clock: Callable[[], float],
        credential: AsyncTokenCredential | None = None,
    ) -> None:
        self.config = config
        self.base_url = config.graph_url
        self.sleep = sleep
        self.pacer = WritePacer(config.write_quota, clock, sleep)
        self.stats = Stats()
        self.resent_after_loss = 0
        """Requests sent again after an answer was lost (a timeout, a cut connection, a 504):
        the first attempt may have been carried out."""
        self._credential = credential
        self._http: httpx.AsyncClient | None = None
        self._client: GraphServiceClient | None = None

    @property
    def client(self) -> GraphServiceClient:
        if self._client is None:
            self._client = self._make_client()
        return self._client

    def _make_client(self) -> GraphServiceClient:
        config = self.config
        verify: ssl.SSLContext | bool = True
        extra: dict[str, Any] = {}
        if config.ca_file is not None:
            verify = ssl.create_default_context(cafile=str(config.ca_file))
            extra["connection_verify"] = str(config.ca_file)
        if config.custom_authority:
            # Instance discovery asks login.microsoftonline.com about the authority: not for a
            # national cloud's or a test server's own.
            extra["disable_instance_discovery"] = True
        if self._credential is not None:
            pass  # given by the caller
        elif config.client_secret is not None:
            self._credential = ClientSecretCredential(
                config.tenant_id,
                config.client_id,
                config.client_secret.reveal(),
                authority=config.authority,
                **extra,
            )
        else:
            assert config.certificate is not None
            password = config.certificate_password
            self._credential = CertificateCredential(
                config.tenant_id,
                config.client_id,
                certificate_path=str(config.certificate),
                password=password.reveal().encode() if password else None,
                authority=config.authority,
                **extra,
            )
        # allowed_hosts stays empty (any host): a list of Graph hosts would silently send
        # requests to any other base URL without a token.
        auth = AzureIdentityAuthenticationProvider(self._credential, scopes=[GRAPH_SCOPE])
        options = dict(graph_default_options)
        options[RetryHandlerOption.get_key()] = RetryHandlerOption(max_retries=0)
        self._http = GraphClientFactory.create_with_default_middleware(
            client=httpx.AsyncClient(verify=verify, timeout=config.timeout), options=options
        )
        adapter = GraphRequestAdapter(auth, client=self._http)
        adapter.base_url = self.base_url
        return GraphServiceClient(request_adapter=adapter)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
        if self._credential is not None:
            await self._credential.close()

    async def retrying(self, what: str, request: Callable[[], Awaitable[T]]) -> T:
        """Run *request* (a new one per attempt) until it is not throttled or busy; every other
        failure is a TargetError that says what went wrong."""
        attempt = 0
        while True:
            attempt += 1
            self.stats.http_requests += 1
            try:
                return await request()
            except APIError as exc:
                status = exc.response_status_code or 0
                if status in RETRIED and attempt < self.config.max_attempts:
                    self.stats.retries += 1
                    if status == 504:
                        self.resent_after_loss += 1  # the gateway gave up; the work may be done
                    await self.sleep(retry_after(exc.response_headers or {}) or backoff(attempt))
                    continue
                raise TargetError(f"{what}: {_explain_api_error(exc)}") from None
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                # A write that timed out may have landed: the callers resolve "already exists".
                if attempt < self.config.max_attempts:
                    self.stats.retries += 1
                    self.resent_after_loss += 1
                    await self.sleep(backoff(attempt))
                    continue
                raise TargetError(
                    f"{what}: cannot reach {self.base_url}: {type(exc).__name__} {exc}"
                ) from None
            except httpx.TransportError as exc:
                problem = str(exc) or type(exc).__name__
                if "CERTIFICATE_VERIFY_FAILED" in problem:
                    problem += "; if a private CA signed it, give that CA as ca_file"
                raise TargetError(f"{what}: cannot reach {self.base_url}: {problem}") from None
            except ServiceRequestError as exc:
                raise TargetError(
                    f"cannot reach the sign-in authority {self.config.authority}: {exc.message}"
                ) from None
            except ClientAuthenticationError as exc:
                first = (exc.message or str(exc)).strip().splitlines()[0]
                raise TargetError(
                    f"Entra ID refused the sign-in of app {self.config.client_id} in tenant "
                    f"{self.config.tenant_id}: {first}"
                ) from None

    async def send_json(
        self, method: str, url: str, body: Any = None, *, eventual: bool = False
    ) -> Any:
        """A raw JSON request through the SDK's adapter (auth, middleware, error mapping)."""

        def request() -> Awaitable[bytes | None]:
            info = RequestInformation()
            info.http_method = Method[method]
            info.url = url  # as given: a URL template would re-encode a nextLink
            info.headers.try_add("Accept", "application/json")
            if eventual:
                info.headers.try_add("ConsistencyLevel", "eventual")
            if body is not None:
                info.headers.try_add("Content-Type", "application/json")
                info.content = json.dumps(body).encode()
            return self.client.request_adapter.send_primitive_async(info, "bytes", _ERRORS)

        raw = await self.retrying(f"{method} {url}", request)
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            start = raw[:80].decode("utf-8", "replace") if raw else ""
            raise TargetError(f"{method} {url}: Graph answered with no JSON: {start!r}") from None

    async def pages(self, url: str, *, eventual: bool = False) -> list[dict[str, Any]]:
        """Every object of a collection, following ``@odata.nextLink`` verbatim."""
        values: list[dict[str, Any]] = []
        link: str | None = url
        while link:
            if not link.startswith(self.config.graph_root + "/"):
                # The bearer token goes wherever the link points: only to Graph itself.
                raise TargetError(f"Graph sent a next link to another host: {link}")
            page = await self.send_json("GET", link, eventual=eventual)
            values += page.get("value") or []
            link = page.get("@odata.nextLink")
        return values


def _explain_api_error(exc: APIError) -> str:
    status = exc.response_status_code or 0
    if isinstance(exc, ODataError) and exc.error is not None:
        details = [
            {"code": d.code, "target": d.target} for d in exc.error.details or [] if d is not None
        ]
        body = {"error": {"code": exc.error.code, "message": exc.error.message, "details": details}}
        return Reply(status, {}, body).explain()
    return f"HTTP {status}: {exc.message or type(exc).__name__}"


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass
class _Snapshot:
    """The managed scope as last read, kept up to date by what this run applies: preconditions
    are checked against it (one bulk read instead of a GET per change)."""

    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    members: dict[str, set[str]] = field(default_factory=dict)
    """Group id → member ids."""
    owners: dict[str, set[str]] = field(default_factory=dict)
    """Group id → owner ids."""
    user_by_anchor: dict[str, str] = field(default_factory=dict)
    group_by_key: dict[str, str] = field(default_factory=dict)
    ambiguous: set[str] = field(default_factory=set)


class EntraId:
    has_ous = False
    has_owners = True
    limits = LIMITS
    group_limits = GROUP_LIMITS

    def __init__(
        self,
        config: EntraConfig,
        *,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        clock: Callable[[], float] | None = None,
        credential: AsyncTokenCredential | None = None,
    ) -> None:
        """``sleep``, ``clock`` and ``credential`` are seams for tests: production waits for
        real and signs in with the configured secret or certificate."""
        self.config = config
        self._loop = asyncio.new_event_loop()
        self.graph = _Graph(config, sleep or wait, clock or now, credential)
        self._snapshot: _Snapshot | None = None
        self._created_groups: set[str] = set()
        self._upn_planned: set[str] = set()

    def describe(self) -> str:
        return (
            f"Entra ID tenant {self.config.tenant_id} ({', '.join(self.config.domains)}) "
            f"via {self.config.graph_url}"
        )

    def unsupported(
        self, account_attributes: Collection[str], group_attributes: Collection[str]
    ) -> list[str]:
        anchor = self.config.anchor_property
        return [
            f"{kind}: {name} ({_why_not(name, anchor, known)})"
            for kind, names, known in (
                ("accounts", account_attributes, LIMITS),
                ("groups", group_attributes, GROUP_LIMITS),
            )
            for name in sorted(names)
            if name not in known
        ]

    def _run(self, coroutine: Awaitable[T]) -> T:
        return self._loop.run_until_complete(coroutine)

    def close(self) -> None:
        if not self._loop.is_closed():
            self._run(self.graph.close())
            self._loop.close()

    # -- read -----------------------------------------------------------------------------------

    def read(self, attributes: Collection[str]) -> ObservedState:
        """Every managed user and group with its members, as raw JSON pages."""
        snapshot = self._run(self._read())
        self._snapshot = snapshot
        anchor_property = self.config.anchor_property
        state = ObservedState()
        anchors: dict[str, str] = {}
        for uid, user in snapshot.users.items():
            anchor = _text(user.get(anchor_property))
            if anchor:
                anchors[uid] = anchor
            state.accounts.append(
                ObservedAccount(
                    id=uid,
                    target=str(user.get("userPrincipalName")),
                    anchor=anchor,
                    username=str(user.get("mailNickname") or ""),
                    ou=(),
                    attributes=_attributes(user, attributes),
                    enabled=user.get("accountEnabled") is not False,
                )
            )
        for gid, group in snapshot.groups.items():
            state.groups.append(
                ObservedGroup(
                    id=gid,
                    target=str(group.get("displayName") or group.get("mailNickname")),
                    key=key_of(self.config.group_prefix, str(group.get("mailNickname") or "")),
                    ou=(),
                    attributes=_attributes(group, attributes),
                    members={anchors[m] for m in snapshot.members.get(gid, ()) if m in anchors},
                    owners={anchors[m] for m in snapshot.owners.get(gid, ()) if m in anchors},
                )
            )
        return state

    async def _read(self) -> _Snapshot:
        graph, config = self.graph, self.config
        snapshot = _Snapshot()
        select = ",".join(sorted({*_USER_READ, config.anchor_property, *LIMITS}))
        for domain in config.domains:
            # endswith is an advanced query: it needs ConsistencyLevel: eventual and $count.
            query = f"$filter=endswith(userPrincipalName,'@{domain}')&$count=true"
            url = f"{graph.base_url}/users?{query}&$select={select}&$top=999"
            for user in await graph.pages(url, eventual=True):
                upn = str(user.get("userPrincipalName") or "").lower()
                if upn.endswith("@" + domain):  # never trust a filter with a delete
                    snapshot.users[user["id"]] = user
        for uid, user in snapshot.users.items():
            anchor = _text(user.get(config.anchor_property))
            if anchor and anchor in snapshot.user_by_anchor:
                snapshot.ambiguous.add(anchor)
            if anchor:
                snapshot.user_by_anchor[anchor] = uid
        prefix = config.group_prefix
        select = ",".join(sorted({*_GROUP_READ, *GROUP_LIMITS}))
        url = (
            f"{graph.base_url}/groups?$filter=startswith(mailNickname,'{prefix}')"
            f"&$select={select}&$top=999"
        )
        for group in await graph.pages(url):
            key = key_of(prefix, str(group.get("mailNickname") or ""))
            if key is None or not group.get("securityEnabled"):
                continue
            snapshot.groups[group["id"]] = group
            snapshot.group_by_key[key] = group["id"]
        # Members and owners of every group, 20 lists per round trip.
        async with Batcher(graph) as batcher:
            members, owners = await asyncio.gather(
                asyncio.gather(*(self._ids(batcher, g, "members") for g in snapshot.groups)),
                asyncio.gather(*(self._ids(batcher, g, "owners") for g in snapshot.groups)),
            )
        snapshot.members = dict(zip(snapshot.groups, members, strict=True))
        snapshot.owners = dict(zip(snapshot.groups, owners, strict=True))
        return snapshot

    async def _ids(self, batcher: Batcher, gid: str, relation: str) -> set[str]:
        """The ids of a group's members or owners."""
        reply = await batcher.call("GET", f"/groups/{gid}/{relation}?$select=id&$top=999")
        if not reply.ok:
            raise TargetError(f"reading the {relation} of group {gid}: {reply.explain()}")
        ids = {m["id"] for m in reply.body.get("value") or []}
        link = reply.body.get("@odata.nextLink")
        if link:
            ids |= {m["id"] for m in await self.graph.pages(link)}
        return ids

    def _ensure_snapshot(self) -> _Snapshot:
        if self._snapshot is None:
            self._snapshot = self._run(self._read())
        return self._snapshot

    # -- check ----------------------------------------------------------------------------------

    def check(self, change: Change) -> str | None:
        snapshot = self._ensure_snapshot()
        pre = change.precondition
        if change.kind == "ou":
            return "Entra ID has no OUs"
        if pre.get("absent"):
            if change.kind == "group":
                found = snapshot.group_by_key.get(change.key)
                return "already exists (an earlier run?)" if found else None
            if change.key in snapshot.ambiguous:
                return f"{change.key} is already carried by several users"
            uid = snapshot.user_by_anchor.get(change.key)
            if uid:
                upn = snapshot.users[uid].get("userPrincipalName")
                return f"already exists as {upn} (an earlier run?)"
            return None
        if pre.get("created_in_this_plan"):
            return None if change.key in snapshot.group_by_key else "the group does not exist"
        object_id = pre.get("id")
        if not object_id:
            return None
        found = (snapshot.groups if change.kind == "group" else snapshot.users).get(object_id)
        if found is None:
            return "the object is gone from the directory (drift)"
        return drift(
            pre,
            lambda name: _text(found.get(name)),
            username=str(found.get("mailNickname") or ""),
            enabled=found.get("accountEnabled") is not False,
            anchor=_text(found.get(self.config.anchor_property)),
            names=("mailNickname", self.config.anchor_property),
        )

    # -- apply ----------------------------------------------------------------------------------

    def apply_all(
        self, changes: Iterable[Change], passwords: Mapping[int, str]
    ) -> Iterator[Result]:
        """Changes of one action run together, their requests packed into batches; actions run
        in plan order, so a group exists before members are added to it."""
        changes = list(changes)
        self._ensure_snapshot()
        # A rename leaves the UPN to an update when the plan sets it explicitly.
        self._upn_planned = {
            c.key for c in changes if "userPrincipalName" in c.after and c.action != "create"
        }
        start = 0
        while start < len(changes):
            end = start
            while end < len(changes) and changes[end].action == changes[start].action:
                end += 1
            phase = list(enumerate(changes[start:end], start))
            yield from self._run(self._apply_phase(phase, passwords))
            start = end
        stats = self.graph.stats
        log.event(
            f"Graph: {stats.writes} write(s) in {stats.batches} $batch request(s), "
            f"{stats.throttled} throttled item(s) sent again",
            **asdict(stats),
            paced_seconds=round(self.graph.pacer.waited, 1),
        )

    async def _apply_phase(
        self, phase: list[tuple[int, Change]], passwords: Mapping[int, str]
    ) -> list[Result]:
        results: dict[int, Result] = {}
        work: dict[int, Awaitable[Result]] = {}
        async with Batcher(self.graph) as batcher:
            for index, change in phase:
                handler = getattr(self, f"_apply_{change.action}", None)
                if handler is None:
                    results[index] = Result(
                        change, "skipped", f"{change.action}: resolve by hand; nothing applied"
                    )
                elif drift := self.check(change):
                    results[index] = Result(change, "skipped", drift)
                elif change.action == "create":
                    work[index] = self._apply_create(batcher, change, passwords.get(index))
                else:
                    work[index] = handler(batcher, change)
            done = await asyncio.gather(*work.values(), return_exceptions=True)
        for (index, change), outcome in zip(
            ((i, c) for i, c in phase if i in work), done, strict=True
        ):
            if isinstance(outcome, TargetError):
                results[index] = Result(change, "failed", str(outcome))
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                results[index] = outcome
        return [results[index] for index, _ in phase]

    def _user_url(self, change: Change) -> str:
        return f"/users/{change.precondition['id']}"

    async def _patch_user(self, batcher: Batcher, change: Change, body: dict[str, Any]) -> Result:
        reply = await batcher.call("PATCH", self._user_url(change), body)
        if not reply.ok:
            return Result(change, "failed", reply.explain())
        assert self._snapshot is not None
        self._snapshot.users[str(change.precondition["id"])].update(body)
        return Result(change, "applied")

    async def _apply_create(self, batcher: Batcher, change: Change, password: str | None) -> Result:
        config = self.config
        after = change.after
        username = str(after["username"])
        body: dict[str, Any] = {
            name: value
            for name, value in after.items()
            if name in LIMITS and value not in ("", None)
        }
        body.setdefault("displayName", username)
        body.setdefault("userPrincipalName", f"{username}@{config.domains[0]}")
        body.setdefault("usageLocation", config.usage_location)
        body.update(
            accountEnabled=True,
            mailNickname=username,
            passwordProfile={
                "password": password or _random_password(),
                "forceChangePasswordNextSignIn": config.must_change_password,
            },
        )
        body[config.anchor_property] = change.key
        reply = await batcher.call("POST", "/users", body)
        message = ""
        if reply.conflict_on("userPrincipalName"):
            # A create retried after a timeout may have landed the first time: the user is ours
            # when it carries our anchor.
            found = await self._user_by_upn(str(body["userPrincipalName"]))
            if found is None or found.get(config.anchor_property) != change.key:
                return Result(
                    change,
                    "failed",
                    f"{body['userPrincipalName']} is already used by another account "
                    f"({reply.explain()})",
                )
            user, message = found, "existed already (an earlier attempt that timed out)"
        elif not reply.ok:
            return Result(change, "failed", reply.explain())
        else:
            user = {**body, "id": reply.body["id"]}
        user.pop("passwordProfile", None)
        assert self._snapshot is not None
        self._snapshot.users[user["id"]] = user
        self._snapshot.user_by_anchor[change.key] = user["id"]
        return Result(change, "applied", message)

    async def _user_by_upn(self, upn: str) -> dict[str, Any] | None:
        """One user by UPN, through the SDK's typed request builder (one object)."""
        anchor = self.config.anchor_property
        query = UserItemRequestBuilder.UserItemRequestBuilderGetQueryParameters(
            select=["id", "userPrincipalName", "mailNickname", "accountEnabled", anchor]
        )
        config = RequestConfiguration(query_parameters=query)
        try:
            user = await self.graph.retrying(
                f"looking up {upn}", lambda: self.graph.client.users.by_user_id(upn).get(config)
            )
        except TargetError:
            return None
        if user is None or user.id is None:
            return None
        return {
            "id": user.id,
            "userPrincipalName": user.user_principal_name,
            "mailNickname": user.mail_nickname,
            "accountEnabled": user.account_enabled,
            anchor: user.employee_id if anchor == "employeeId" else user.on_premises_immutable_id,
        }

    async def _apply_adopt(self, batcher: Batcher, change: Change) -> Result:
        body = {n: _graph_value(v) for n, v in change.after.items() if n != "anchor"}
        body[self.config.anchor_property] = change.key
        result = await self._patch_user(batcher, change, body)
        if result.status == "applied":
            assert self._snapshot is not None
            self._snapshot.user_by_anchor[change.key] = str(change.precondition["id"])
        return result

    async def _apply_rename(self, batcher: Batcher, change: Change) -> Result:
        assert self._snapshot is not None
        user = self._snapshot.users[str(change.precondition["id"])]
        new, old = str(change.after["username"]), str(change.before.get("username") or "")
        body: dict[str, Any] = {"mailNickname": new}
        local, _, domain = str(user.get("userPrincipalName") or "").partition("@")
        if change.key not in self._upn_planned and local.casefold() == old.casefold():
            body["userPrincipalName"] = f"{new}@{domain}"  # the UPN follows the username
        return await self._patch_user(batcher, change, body)

    async def _apply_update(self, batcher: Batcher, change: Change) -> Result:
        body = {name: _graph_value(value) for name, value in change.after.items()}
        return await self._patch_user(batcher, change, body)

    async def _apply_enable(self, batcher: Batcher, change: Change) -> Result:
        return await self._patch_user(batcher, change, {"accountEnabled": True})

    async def _apply_disable(self, batcher: Batcher, change: Change) -> Result:
        return await self._patch_user(batcher, change, {"accountEnabled": False})

    async def _apply_delete(self, batcher: Batcher, change: Change) -> Result:
        reply = await batcher.call("DELETE", self._user_url(change))
        if not reply.ok and reply.status != 404:  # 404: deleted already (a retried delete)
            return Result(change, "failed", reply.explain())
        assert self._snapshot is not None
        self._snapshot.users.pop(str(change.precondition["id"]), None)
        self._snapshot.user_by_anchor.pop(change.key, None)
        return Result(change, "applied")

    async def _apply_create_group(self, batcher: Batcher, change: Change) -> Result:
        after = change.after
        body: dict[str, Any] = {
            name: value
            for name, value in after.items()
            if name in GROUP_LIMITS and value not in ("", None)
        }
        body.setdefault("displayName", change.key)
        body.update(
            mailNickname=nickname_for(self.config.group_prefix, change.key),
            mailEnabled=False,
            securityEnabled=True,
            groupTypes=[],
        )
        reply = await batcher.call("POST", "/groups", body)
        if not reply.ok:
            return Result(change, "failed", reply.explain())
        gid = reply.body["id"]
        assert self._snapshot is not None
        self._snapshot.groups[gid] = {**body, "id": gid}
        self._snapshot.group_by_key[change.key] = gid
        self._snapshot.members[gid] = set()
        self._snapshot.owners[gid] = set()
        self._created_groups.add(gid)
        message = (
            await self._remove_twins(batcher, gid, body["mailNickname"]) if reply.resent else ""
        )
        return Result(change, "applied", message)

    async def _remove_twins(self, batcher: Batcher, gid: str, nickname: str) -> str:
        """A group create sent again after its answer was lost may have made the group twice
        (Graph keeps no security-group nickname unique): the twins made moments ago, empty, go."""
        nick = nickname.replace("'", "''")
        url = f"{self.graph.base_url}/groups?$filter=mailNickname eq '{nick}'&$select=id"
        twins = [g["id"] for g in await self.graph.pages(url) if g["id"] != gid]
        for twin in twins:
            reply = await batcher.call("DELETE", f"/groups/{twin}")
            if not reply.ok and reply.status != 404:
                return f"a twin group {twin} from a lost answer remains: {reply.explain()}"
        return (
            f"removed {len(twins)} twin(s) made by an attempt whose answer was lost"
            if twins
            else ""
        )

    async def _apply_update_group(self, batcher: Batcher, change: Change) -> Result:
        gid = str(change.precondition["id"])
        body = {name: _graph_value(value) for name, value in change.after.items()}
        reply = await batcher.call("PATCH", f"/groups/{gid}", body)
        if not reply.ok:
            return Result(change, "failed", reply.explain())
        assert self._snapshot is not None
        self._snapshot.groups[gid].update(body)
        return Result(change, "applied")

    async def _apply_delete_group(self, batcher: Batcher, change: Change) -> Result:
        gid = str(change.precondition["id"])
        reply = await batcher.call("DELETE", f"/groups/{gid}")
        if not reply.ok and reply.status != 404:
            return Result(change, "failed", reply.explain())
        assert self._snapshot is not None
        self._snapshot.groups.pop(gid, None)
        self._snapshot.group_by_key.pop(change.key, None)
        return Result(change, "applied")

    def _group_id(self, change: Change) -> str:
        assert self._snapshot is not None
        return str(change.precondition.get("id") or self._snapshot.group_by_key[change.key])

    def _user_ids(self, anchors: Iterable[str]) -> tuple[list[str], list[str]]:
        """The object ids of the users with these anchors, and the anchors not found."""
        assert self._snapshot is not None
        found, missing = [], []
        for anchor in anchors:
            uid = self._snapshot.user_by_anchor.get(anchor)
            if uid is None or anchor in self._snapshot.ambiguous:
                missing.append(anchor)
            else:
                found.append(uid)
        return found, missing

    def _ref(self, uid: str) -> str:
        return f"{self.config.graph_url}/directoryObjects/{uid}"

    async def _add_ref(self, batcher: Batcher, gid: str, relation: str, uid: str) -> Reply:
        """One member or owner added by reference. A 400 answer means it is one already (a
        retried add): Graph has no code of its own for that, and the reference is well-formed."""
        body = {"@odata.id": self._ref(uid)}
        url = f"/groups/{gid}/{relation}/$ref"
        return await self._lagging(gid, lambda: batcher.call("POST", url, body))

    async def _remove_refs(
        self, batcher: Batcher, gid: str, relation: str, uids: list[str]
    ) -> list[Reply]:
        """Members or owners removed, one request each; 404 means it was gone already."""
        return await asyncio.gather(
            *(batcher.call("DELETE", f"/groups/{gid}/{relation}/{uid}/$ref") for uid in uids)
        )

    async def _apply_add_member(self, batcher: Batcher, change: Change) -> Result:
        gid = self._group_id(change)
        uids, missing = self._user_ids(change.after.get("members") or [])
        chunks = [uids[i : i + MAX_BATCH] for i in range(0, len(uids), MAX_BATCH)]
        outcomes = await asyncio.gather(*(self._add_chunk(batcher, gid, c) for c in chunks))
        problems = [p for p in outcomes if p]
        if problems:
            return Result(change, "failed", problems[0])
        assert self._snapshot is not None
        self._snapshot.members.setdefault(gid, set()).update(uids)
        return _done(change, len(uids), missing, "member")

    async def _add_chunk(self, batcher: Batcher, gid: str, uids: list[str]) -> str | None:
        """Up to 20 members in one PATCH (all or nothing); when some are members already (a run
        killed half-way), one by one."""
        body = {"members@odata.bind": [self._ref(uid) for uid in uids]}
        reply = await self._lagging(gid, lambda: batcher.call("PATCH", f"/groups/{gid}", body))
        if reply.ok:
            return None
        if reply.status != 400:
            return reply.explain()
        for uid in uids:
            item = await self._add_ref(batcher, gid, "members", uid)
            if not item.ok and item.status != 400:
                return item.explain()
        return None

    async def _lagging(self, gid: str, request: Callable[[], Awaitable[Reply]]) -> Reply:
        """Entra replicates a new group in its own time: a member or owner add that does not
        find a group this run created is retried with backoff."""
        attempt = 0
        while True:
            attempt += 1
            reply = await request()
            if (
                reply.status != 404
                or gid not in self._created_groups
                or attempt >= self.config.max_attempts
            ):
                return reply
            self.graph.stats.retries += 1
            await self.graph.sleep(backoff(attempt))

    async def _apply_remove_member(self, batcher: Batcher, change: Change) -> Result:
        gid = self._group_id(change)
        uids, missing = self._user_ids(change.before.get("members") or [])
        replies = await self._remove_refs(batcher, gid, "members", uids)
        failed = [r for r in replies if not r.ok and r.status != 404]
        if failed:
            return Result(change, "failed", failed[0].explain())
        assert self._snapshot is not None
        self._snapshot.members.setdefault(gid, set()).difference_update(uids)
        return _done(change, len(uids), missing, "member")

    async def _apply_add_owner(self, batcher: Batcher, change: Change) -> Result:
        gid = self._group_id(change)
        uids, missing = self._user_ids(change.after.get("owners") or [])
        replies = await asyncio.gather(*(self._add_ref(batcher, gid, "owners", u) for u in uids))
        failed = [r for r in replies if not r.ok and r.status != 400]
        if failed:
            return Result(change, "failed", failed[0].explain())
        assert self._snapshot is not None
        self._snapshot.owners.setdefault(gid, set()).update(uids)
        return _done(change, len(uids), missing, "owner")

    async def _apply_remove_owner(self, batcher: Batcher, change: Change) -> Result:
        gid = self._group_id(change)
        uids, missing = self._user_ids(change.before.get("owners") or [])
        replies = await self._remove_refs(batcher, gid, "owners", uids)
        failed = [r for r in replies if not r.ok and r.status not in (400, 404)]
        if failed:
            return Result(change, "failed", failed[0].explain())
        # 400 on a well-formed removal: Entra keeps the last owner of a group. Not a failure of
        # the run; the owner goes once the class has another one.
        kept = [uid for uid, r in zip(uids, replies, strict=True) if r.status == 400]
        assert self._snapshot is not None
        self._snapshot.owners.setdefault(gid, set()).difference_update(set(uids) - set(kept))
        if kept and len(kept) == len(uids):
            return Result(change, "skipped", "Entra ID keeps the last owner of a group")
        note = f"; {len(kept)} kept: Entra ID keeps the last owner of a group" if kept else ""
        return _done(change, len(uids) - len(kept), missing, "owner", note)

    # -- passwords ------------------------------------------------------------------------------

    def reset_password(self, anchor: str, password: str) -> str:
        """Give the user with *anchor* a new password (one object: the SDK's typed model)."""
        snapshot = self._ensure_snapshot()
        uid = snapshot.user_by_anchor.get(anchor)
        if uid is None or anchor in snapshot.ambiguous:
            raise TargetError(f"no managed account carries anchor {anchor}")
        profile = PasswordProfile(
            password=password,
            force_change_password_next_sign_in=self.config.must_change_password,
        )
        self._run(
            self.graph.retrying(
                f"setting the password of {uid}",
                lambda: self.graph.client.users.by_user_id(uid).patch(
                    User(password_profile=profile)
                ),
            )
        )
        return str(snapshot.users[uid].get("userPrincipalName"))


def _done(change: Change, done: int, missing: list[str], role: str, note: str = "") -> Result:
    """An applied member or owner change: how many, and the accounts that were not found."""
    if missing:
        note = f"; {len(missing)} {role} account(s) not found: {', '.join(missing)}{note}"
    return Result(change, "applied", f"{done} {role}(s){note}")


def _attributes(obj: dict[str, Any], names: Collection[str]) -> dict[str, str]:
    return {name: text for name in names if (text := _text(obj.get(name))) is not None}


def _graph_value(value: Any) -> Any:
    """A plan value as Graph takes it: an empty value clears the property."""
    return None if value in ("", None) else value


def _why_not(name: str, anchor: str, allowed: Mapping[str, int]) -> str:
    if name == anchor:
        return "the connector writes the anchor itself"
    if name in ("mailNickname", "accountEnabled", "passwordProfile"):
        return "the connector sets it (mailNickname is the username)"
    return "not a property the connector writes in Entra ID; known: " + ", ".join(sorted(allowed))


def _random_password() -> str:
    return secrets.token_urlsafe(18) + "aA1!"
