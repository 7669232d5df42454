"""The way to Graph: the sign-in (credential), the SDK client, raw JSON requests through its
adapter, paging, and Graph's errors in plain words.

Bulk reads and writes are raw JSON through the SDK's request adapter (turning JSON into typed
models costs about 10 ms per object), so sign-in, middleware and error mapping are the SDK's own.
Every request takes :meth:`Graph.retrying`, which retries by the run's one
:class:`~provisioner.targets.entra.pacing.RetryPolicy`.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError
from azure.identity.aio import CertificateCredential, ClientSecretCredential
from kiota_abstractions.api_error import APIError
from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from kiota_http.middleware.options import RetryHandlerOption
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.graph_request_adapter import options as graph_default_options
from msgraph_core import GraphClientFactory

from provisioner.targets.base import TargetError, explain, tls_hint
from provisioner.targets.entra.pacing import RETRIED, RetryPolicy, WritePacer
from provisioner.targets.entra_settings import EntraConfig

T = TypeVar("T")

_ERRORS: dict[str, Any] = {"XXX": ODataError}
_LOST = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)
"""Failures after which a request may have been carried out although no answer came."""

# What Graph's error codes mean for a coordinator.
_MEANINGS = {
    "Authorization_RequestDenied": "the app lacks a permission (grant User.ReadWrite.All, "
    "Group.ReadWrite.All and GroupMember.ReadWrite.All as application permissions, with admin "
    "consent; with licences in the mappings also LicenseAssignment.ReadWrite.All and "
    "Organization.Read.All)",
    "InvalidAuthenticationToken": "Graph refused the access token",
    "ObjectConflict": "the value is already used by another object in the tenant",
    "Request_ResourceNotFound": "the object does not exist (any more)",
}


class GraphRefused(TargetError):
    """Graph answered a request with an error status (after the retries): *status* says which,
    for a caller that has a way around it (an expired delta link: a full read)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


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
        detail = f"{self.status} {code}: {err.get('message') or ''}".strip()
        return explain(detail, (*details, code), _MEANINGS)


class Graph:
    """The SDK client and the one retrying path every request takes."""

    def __init__(
        self,
        config: EntraConfig,
        policy: RetryPolicy,
        credential: AsyncTokenCredential | None = None,
    ) -> None:
        self.config = config
        self.base_url = config.graph_url
        self.policy = policy
        self.stats = policy.stats
        self.pacer = WritePacer(config.write_quota, policy)
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
        if config.ca_file is not None:
            verify = ssl.create_default_context(cafile=str(config.ca_file))
        if self._credential is None:
            self._credential = app_credential(config)
        # allowed_hosts stays empty (any host): a list of Graph hosts would silently send
        # requests to any other base URL without a token.
        auth = AzureIdentityAuthenticationProvider(self._credential, scopes=[config.scope])
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
        """Run *request* (a new one per attempt) until it is not throttled, busy or lost; every
        other failure is a TargetError that says what went wrong."""

        async def attempt() -> tuple[T | None, Exception | None]:
            self.stats.http_requests += 1
            try:
                return await request(), None
            except (
                APIError,
                httpx.TransportError,
                ServiceRequestError,
                ClientAuthenticationError,
            ) as exc:
                return None, exc

        def again(outcome: tuple[T | None, Exception | None], tries: int) -> float | None:
            exc = outcome[1]
            if isinstance(exc, APIError) and (exc.response_status_code or 0) in RETRIED:
                if exc.response_status_code == 504:
                    self.resent_after_loss += 1  # the gateway gave up; the work may be done
                return self.policy.delay(tries, exc.response_headers)
            if isinstance(exc, _LOST):
                # A write that timed out may have landed: the callers resolve "already exists".
                self.resent_after_loss += 1
                return self.policy.delay(tries)
            return None

        value, exc = await self.policy.run(attempt, again)
        if exc is not None:
            raise self._failure(what, exc) from None
        return value  # type: ignore[return-value]  # no exception: the request's own value

    def _failure(self, what: str, exc: Exception) -> TargetError:
        """The one line a request that failed for good leaves."""
        config = self.config
        if isinstance(exc, APIError):
            return GraphRefused(f"{what}: {_explain_api_error(exc)}", exc.response_status_code or 0)
        if isinstance(exc, _LOST):
            return TargetError(f"{what}: cannot reach {self.base_url}: {type(exc).__name__} {exc}")
        if isinstance(exc, httpx.TransportError):
            problem = tls_hint(str(exc) or type(exc).__name__)
            return TargetError(f"{what}: cannot reach {self.base_url}: {problem}")
        if isinstance(exc, ServiceRequestError):
            return TargetError(
                f"cannot reach the sign-in authority {config.sign_in_authority}: {exc.message}"
            )
        assert isinstance(exc, ClientAuthenticationError)
        first = (exc.message or str(exc)).strip().splitlines()[0]
        return TargetError(
            f"Entra ID refused the sign-in of app {config.client_id} in tenant "
            f"{config.tenant_id}: {first}"
        )

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


def app_credential(config: EntraConfig) -> AsyncTokenCredential:
    """The app's sign-in: its client secret, or its certificate (also what notifications send
    mail with)."""
    extra: dict[str, Any] = {}
    if config.ca_file is not None:
        extra["connection_verify"] = str(config.ca_file)
    if config.custom_authority:
        # Instance discovery asks login.microsoftonline.com about the authority: not for a
        # national cloud's or a test server's own.
        extra["disable_instance_discovery"] = True
    if config.client_secret is not None:
        return ClientSecretCredential(
            config.tenant_id,
            config.client_id,
            config.client_secret.reveal(),
            authority=config.sign_in_authority,
            **extra,
        )
    assert config.certificate is not None
    password = config.certificate_password
    return CertificateCredential(
        config.tenant_id,
        config.client_id,
        certificate_path=str(config.certificate),
        password=password.reveal().encode() if password else None,
        authority=config.sign_in_authority,
        **extra,
    )


def _explain_api_error(exc: APIError) -> str:
    status = exc.response_status_code or 0
    if isinstance(exc, ODataError) and exc.error is not None:
        details = [
            {"code": d.code, "target": d.target} for d in exc.error.details or [] if d is not None
        ]
        body = {"error": {"code": exc.error.code, "message": exc.error.message, "details": details}}
        return Reply(status, {}, body).explain()
    return f"HTTP {status}: {exc.message or type(exc).__name__}"
