"""HTTP side of the REST source: a token per school and API, the documented headers, retries.

Informat grants REST scopes per instellingsnummer, so each school gets its own token with only its
own scopes: a school whose scope is refused (at the token endpoint, or by a 403 of the API) is a
:class:`SchoolRefused` for that school alone, which the source turns into a block, while the
other schools are read as usual. Tokens are kept until shortly before they expire and renewed
once when the API answers 401. 429 (after its Retry-After), 5xx, timeouts and cut-off answers are
retried with backoff, a bounded number of times; every other failure is a clear error naming the
school, the endpoint and Informat's error code.

Tests run this client unchanged against ``tests/fakes/informat_rest_server.py`` over TLS; the
pause between retries (``sleep``), the clock and the HTTP transport are seams.
"""

from __future__ import annotations

import hashlib
import json
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from provisioner.errors import AuthenticationError, SourceError, TransientSourceError
from provisioner.sources.informat.client import body_error, send_error
from provisioner.sources.informat_rest.datasets import SCOPES, Api, Endpoint
from provisioner.sources.informat_rest.settings import InformatRestConfig

TOKEN_MARGIN = 60.0
"""Seconds before its expiry a token is renewed (at most half its life): a token that lapses
mid-request costs a retry."""
MAX_RETRY_AFTER = 120.0
"""The longest Retry-After honoured; a longer one waits this long (then the retry counts)."""
_ERROR_BODY_LIMIT = 64 * 1024


class SchoolRefused(SourceError):
    """Informat refuses this school's scope: no rights on its instellingsnummer."""

    def __init__(self, instelnr: str, api: Api, reason: str) -> None:
        super().__init__(f"Informat REST {api} for {instelnr}: {reason}")
        self.instelnr = instelnr
        self.api = api
        self.reason = reason


@dataclass(frozen=True)
class RestAnswer:
    """One endpoint's answer for one school: its array and the bytes it came from."""

    items: list[dict[str, Any]]
    body: bytes
    sha256: str


@dataclass(frozen=True)
class _Reply:
    """A whole answer, read off the wire (decoded as its Content-Encoding says)."""

    status_code: int
    content: bytes


@dataclass
class _Token:
    value: str
    expires: float


class RestClient:
    def __init__(
        self,
        config: InformatRestConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if config.client_secret is None:
            raise ValueError("RestClient needs client credentials")  # settings check this first
        self.config = config
        self.sleep = sleep
        self.clock = clock
        self._secret = config.client_secret
        self._tokens: dict[tuple[str, Api], _Token] = {}
        self._lock = threading.Lock()
        self.token_requests = 0
        """Tokens asked for so far (tests check the cache with it)."""
        self._http = httpx.Client(
            timeout=httpx.Timeout(config.timeout.read, connect=config.timeout.connect),
            verify=ssl.create_default_context(
                cafile=str(config.ca_file) if config.ca_file else None
            ),
            follow_redirects=False,
            headers={"User-Agent": "provisioner"},
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RestClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- tokens ----------------------------------------------------------------------------------
    def token(self, instelnr: str, api: Api) -> str:
        """This school's token for *api*, from the cache while it is valid."""
        with self._lock:
            cached = self._tokens.get((instelnr, api))
            if cached is not None and self.clock() < cached.expires:
                return cached.value
        scope = SCOPES[api].format(instelnr=instelnr)
        what = f"Informat REST token for {instelnr}"
        response = self._send(
            what,
            lambda: self._http.build_request(
                "POST",
                self.config.token_url,
                data={
                    "client_id": self.config.client_id,
                    "client_secret": self._secret.reveal(),
                    "grant_type": "client_credentials",
                    "scope": scope,
                },
            ),
        )
        self.token_requests += 1
        body = _json_body(what, response.content)
        if response.status_code != 200:
            error = body.get("error") if isinstance(body, dict) else None
            if error == "invalid_scope" or response.status_code == 403:
                raise SchoolRefused(
                    instelnr,
                    api,
                    f"the scope {scope} is refused: the REST client has no rights on this "
                    "instellingsnummer; ask Informat to add it",
                )
            if error in ("invalid_client", "unauthorized_client") or response.status_code == 401:
                raise AuthenticationError(
                    f"{what}: the identity server refused client_id {self.config.client_id!r} "
                    f"and its secret ({error or response.status_code})"
                )
            raise SourceError(f"{what}: HTTP {response.status_code} ({error or 'no reason'})")
        if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
            raise SourceError(f"{what}: the answer holds no access_token")
        expires_in = body.get("expires_in")
        if not isinstance(expires_in, int | float) or expires_in <= 0:
            raise SourceError(f"{what}: the answer holds no valid expires_in")
        margin = min(TOKEN_MARGIN, expires_in / 2)  # a short-lived token is still used
        token = _Token(body["access_token"], self.clock() + expires_in - margin)
        with self._lock:
            self._tokens[(instelnr, api)] = token
        return token.value

    def _forget(self, instelnr: str, api: Api) -> None:
        with self._lock:
            self._tokens.pop((instelnr, api), None)

    # --- data ------------------------------------------------------------------------------------
    def fetch(self, endpoint: Endpoint, instelnr: str, params: dict[str, str]) -> RestAnswer:
        """*endpoint*'s array for *instelnr*: a :class:`SchoolRefused` for a 403, an error for
        everything else that is not a whole, well-formed answer."""
        base = (
            self.config.students_url if endpoint.api == "leerlingen" else self.config.employees_url
        )
        what = f"Informat REST {endpoint.path} for {instelnr}"
        for attempt in (1, 2):  # a 401 renews the token once
            token = self.token(instelnr, endpoint.api)
            response = self._send(
                what,
                lambda token=token: self._http.build_request(
                    "GET",
                    base + endpoint.path,
                    params=params,
                    headers={
                        "Authorization": f"Bearer {token}",
                        "InstituteNo": instelnr,
                        "Content-Type": "application/json",
                        **endpoint.headers,
                    },
                ),
            )
            if response.status_code == 401 and attempt == 1:
                self._forget(instelnr, endpoint.api)
                continue
            break
        status = response.status_code
        if status == 401:
            raise AuthenticationError(
                f"{what}: HTTP 401: Informat refused a new token too{_codes(response.content)}"
            )
        if status == 403:
            raise SchoolRefused(
                instelnr,
                endpoint.api,
                f"{endpoint.path} answered HTTP 403{_codes(response.content)}: the REST client "
                "has no rights on this instellingsnummer; ask Informat to add its scope",
            )
        if status != 200:
            raise SourceError(f"{what}: HTTP {status}{_codes(response.content)}")
        body = _json_body(what, response.content)
        items = body.get(endpoint.wrapper) if endpoint.wrapper and isinstance(body, dict) else body
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            shape = f'{{"{endpoint.wrapper}": [...]}}' if endpoint.wrapper else "a JSON array"
            raise SourceError(f"{what}: the answer is not {shape} of objects")
        return RestAnswer(items, response.content, hashlib.sha256(response.content).hexdigest())

    def _send(self, what: str, request: Callable[[], httpx.Request]) -> _Reply:
        """The whole answer to *request*; 429, 5xx, timeouts and cut-off answers are retried."""
        attempt = 0
        while True:
            try:
                return self._send_once(what, request())
            except TransientSourceError as exc:
                if attempt >= self.config.retries:
                    tries = f" (tried {attempt + 1} times)" if attempt else ""
                    raise SourceError(f"{exc}{tries}") from None
                # 1 s, 2 s, 4 s … capped; a Retry-After is honoured instead.
                wait = exc.wait if isinstance(exc, _RetryAfter) else None
                self.sleep(wait if wait is not None else min(2.0**attempt, 30.0))
                attempt += 1

    def _send_once(self, what: str, request: httpx.Request) -> _Reply:
        host = urlsplit(str(request.url)).hostname or str(request.url)
        try:
            response = self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise send_error(what, host, self.config.timeout, exc) from None
        try:
            status = response.status_code
            if status == 429 or status >= 500:
                codes = _codes(_head(response))
                raise _RetryAfter(f"{what}: HTTP {status}{codes}", _retry_after(response))
            limit = self.config.max_answer_bytes if status == 200 else _ERROR_BODY_LIMIT
            body = bytearray()
            try:
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > limit:
                        if status != 200:
                            break
                        raise SourceError(
                            f"{what}: the answer is larger than max_answer_mb "
                            f"({self.config.max_answer_mb:g} MB)"
                        )
            except httpx.TransportError as exc:
                raise body_error(what, len(body), self.config.timeout, exc) from None
            return _Reply(status, bytes(body))
        finally:
            response.close()


class _RetryAfter(TransientSourceError):
    """429 or 5xx: worth another attempt, after *wait* seconds when the server said so."""

    def __init__(self, error: str, wait: float | None) -> None:
        super().__init__(error)
        self.wait = wait


def _head(response: httpx.Response) -> bytes:
    body = b""
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) >= _ERROR_BODY_LIMIT:
            break
    return body


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    return None  # an HTTP date or nothing: the usual backoff


def _json_body(what: str, body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        kind = "is empty" if not body.strip() else f"is not JSON ({exc})"
        raise SourceError(f"{what}: the answer {kind}; it may have been cut off") from None


def _codes(body: bytes) -> str:
    """``: BR035B: message; …`` from Informat's ``{"errors": [{code, message}]}``, else ""."""
    try:
        errors = json.loads(body).get("errors")
    except (ValueError, UnicodeDecodeError, AttributeError):
        return ""
    if not isinstance(errors, list):
        return ""
    shown = [
        f"{e.get('code', '?')}: {e.get('message', '')}".rstrip(": ")
        for e in errors[:3]
        if isinstance(e, dict)
    ]
    return f" (Informat says {'; '.join(shown)})" if shown else ""
