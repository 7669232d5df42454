"""HTTP side of the Informat reader: three transports, timeouts, retries, error classification.

Tests run this client unchanged against the project's own Informat-compatible server on
127.0.0.1 (its URL is configured like the real one); only the pause between retries is a seam
(``sleep``), so that retry tests do not wait.
"""

from __future__ import annotations

import contextlib
import html
import re
import ssl
import time
from collections.abc import Callable, Collection
from typing import BinaryIO
from urllib.parse import urlencode, urlsplit
from xml.sax.saxutils import escape

import httpx
from lxml import etree

from provisioner.errors import AuthenticationError, SourceError, TransientSourceError
from provisioner.sources.informat.kept import KeptAnswer, Prefixes
from provisioner.sources.informat.operations import NAMESPACE, Operation
from provisioner.sources.informat.params import QueryOptions, wire_parameters
from provisioner.sources.informat.parser import (
    RawAnswer,
    fault_error,
    size_error,
    without_request,
)
from provisioner.sources.informat.settings import InformatConfig, Timeouts, Transport
from provisioner.sources.informat.workers import LocalParser, ParseWorkers, RemoteParser

_RETRY_STATUS = {502, 503, 504}
_ERROR_BODY_LIMIT = 64 * 1024


def soap_envelope(op: Operation, params: list[tuple[str, str]]) -> bytes:
    """A document/literal wrapped SOAP 1.1 request; element names are the exact wire casing."""
    body = "".join(f"<{name}>{escape(value)}</{name}>" for name, value in params)
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/">'
        f'<soap:Body><{op.name} xmlns="{NAMESPACE}">{body}</{op.name}></soap:Body>'
        "</soap:Envelope>"
    ).encode()


class InformatClient:
    """Calls one operation for one instelnr; the answer is parsed as it streams in, in a worker
    process (see :mod:`.workers`)."""

    def __init__(
        self,
        config: InformatConfig,
        options: QueryOptions,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if config.url is None:
            raise ValueError("InformatClient needs a url")  # the reader checks this first
        self.base_url = config.url
        self.transport: Transport = config.transport
        self.options = options
        self.retries = config.retries
        self.sleep = sleep
        self.host = urlsplit(config.url).hostname or config.url
        self._http = httpx.Client(
            timeout=httpx.Timeout(config.timeout.read, connect=config.timeout.connect),
            # The system's trust store, or only the configured CA bundle when one is given.
            verify=ssl.create_default_context(
                cafile=str(config.ca_file) if config.ca_file else None
            ),
            follow_redirects=False,
            headers={"User-Agent": "provisioner"},
        )
        self._timeouts = config.timeout
        self.max_bytes = config.max_answer_bytes
        self._workers = ParseWorkers(config.concurrency)

    def close(self) -> None:
        self._http.close()
        self._workers.close()

    def __enter__(self) -> InformatClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def fetch(
        self,
        op: Operation,
        instelnr: str,
        *,
        fields: Collection[str] | None = None,
        sink: Callable[[], BinaryIO] | None = None,
        kept: KeptAnswer | None = None,
    ) -> RawAnswer:
        """Records of *op* for *instelnr*: *kept*'s when the answer is byte for byte the one
        it was parsed from (then it is not parsed again: :mod:`.kept`). Transient failures are
        retried with backoff; every other failure, and the last transient one, is a
        :class:`SourceError`."""
        what = f"Informat {op.name} for {instelnr}"
        attempt = 0
        while True:
            try:
                return self._fetch_once(op, instelnr, what, fields, sink, kept)
            except TransientSourceError as exc:
                if attempt >= self.retries:
                    tries = f" (tried {attempt + 1} times)" if attempt else ""
                    raise SourceError(f"{exc}{tries}") from None
                # 1 s, 2 s, 4 s … capped: Informat recovers from a restart within a minute.
                self.sleep(min(2.0**attempt, 30.0))
                attempt += 1

    def _request(self, op: Operation, params: list[tuple[str, str]]) -> httpx.Request:
        if self.transport == "get":
            return self._http.build_request("GET", f"{self.base_url}/{op.name}", params=params)
        if self.transport == "post":
            return self._http.build_request(
                "POST",
                f"{self.base_url}/{op.name}",
                content=urlencode(params).encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
        return self._http.build_request(
            "POST",
            self.base_url,
            content=soap_envelope(op, params),
            headers={
                "Content-Type": "text/xml; charset=utf-8",
                "SOAPAction": f'"{NAMESPACE}/{op.name}"',
            },
        )

    def _fetch_once(
        self,
        op: Operation,
        instelnr: str,
        what: str,
        fields: Collection[str] | None,
        sink: Callable[[], BinaryIO] | None,
        kept: KeptAnswer | None,
    ) -> RawAnswer:
        request = self._request(op, wire_parameters(op, self.options, instelnr))
        try:
            response = self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise send_error(what, self.host, self._timeouts, exc) from None
        try:
            if response.status_code != 200:
                raise _status_error(what, response)
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > self.max_bytes:
                raise size_error(what, self.max_bytes)  # said before downloading it
            read = Prefixes()
            held: list[bytes] = []  # while the bytes agree with the kept answer's
            out = sink() if sink is not None else None
            with contextlib.ExitStack() as parsing:
                parser: RemoteParser | LocalParser | None = None

                def parse(chunk: bytes) -> None:
                    nonlocal parser
                    if parser is None:  # a worker is taken only for an answer to parse
                        parser = parsing.enter_context(
                            self._workers.parser(op, what, fields=fields, max_bytes=self.max_bytes)
                        )
                    parser.feed(chunk)

                try:
                    for chunk in response.iter_bytes():
                        read.update(chunk)
                        if out is not None:
                            out.write(chunk)
                        if kept is None:
                            parse(chunk)
                            continue
                        if read.size > self.max_bytes:
                            raise size_error(what, self.max_bytes)
                        held.append(chunk)
                        if not kept.agrees(read):
                            kept = None
                            for piece in held:
                                parse(piece)
                            held.clear()
                except httpx.TransportError as exc:
                    raise body_error(what, read.size, self._timeouts, exc) from None
                finally:
                    if out is not None:
                        out.close()
                if kept is not None and kept.same(read):
                    return kept.answer()
                for piece in held or [b""]:  # b"": an empty answer still reaches the parser
                    parse(piece)
                assert parser is not None
                records, seen, problems = parser.close()
            return RawAnswer(records, read.hexdigest(), read.size, seen, problems, read.hashes)
        finally:
            response.close()


def send_error(what: str, host: str, timeouts: Timeouts, exc: httpx.TransportError) -> SourceError:
    """What a request that got no answer means: a :class:`TransientSourceError` (worth
    retrying), except for an untrusted certificate, which no retry can make trusted."""
    if isinstance(exc, httpx.TimeoutException):
        return TransientSourceError(
            f"{what}: no answer from {host} within {timeouts.connect:g} s (connect) / "
            f"{timeouts.read:g} s (read)"
        )
    if problem := certificate_problem(exc):
        return SourceError(
            f"{what}: the TLS certificate of {host} is not trusted ({problem}); "
            "if a private CA signed it, give that CA as ca_file"
        )
    return TransientSourceError(f"{what}: cannot reach {host}: {transport_reason(exc)}")


def body_error(
    what: str, size: int, timeouts: Timeouts, exc: httpx.TransportError
) -> TransientSourceError:
    """What an answer that stopped coming after *size* bytes means (worth retrying)."""
    if isinstance(exc, httpx.TimeoutException):
        return TransientSourceError(f"{what}: the answer stalled for more than {timeouts.read:g} s")
    return TransientSourceError(
        f"{what}: the answer was cut off after {size} bytes: {transport_reason(exc)}"
    )


def certificate_problem(exc: BaseException) -> str | None:
    """The reason of a certificate verification failure somewhere in *exc*'s chain, if any."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen.verify_message or "certificate verify failed"
        seen = seen.__cause__ or seen.__context__
    return "certificate verify failed" if "CERTIFICATE_VERIFY_FAILED" in str(exc) else None


def transport_reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return without_request(text.splitlines()[0])


def _status_error(what: str, response: httpx.Response) -> SourceError:
    status = response.status_code
    body = b""
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) >= _ERROR_BODY_LIMIT:
            break
    text = body.decode("utf-8", "replace")
    if status in _RETRY_STATUS:
        return TransientSourceError(f"{what}: HTTP {status} {response.reason_phrase}")
    if status in (401, 403):
        return AuthenticationError(f"{what}: HTTP {status}: Informat refused the login")
    if "Fault" in text and "Envelope" in text:
        try:
            root = etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True))
            faultstring = root.findtext(".//{*}Fault/{*}faultstring")
        except etree.XMLSyntaxError:
            faultstring = None
        if faultstring:
            return fault_error(what, faultstring)
    if "<html" in text[:2000].lower():
        title = re.search(r"<title>(.*?)</title>", text, re.S | re.I)
        # A title is HTML text: read its character references before looking for secrets.
        shown = (
            " ".join(without_request(html.unescape(title.group(1))).split())
            if title
            else "an HTML error page"
        )
        return SourceError(f"{what}: HTTP {status}: {shown}")
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    first = without_request(first)
    if "Missing parameter" in first:
        return SourceError(
            f"{what}: HTTP {status}: Informat says {first!r}; the operation's parameter list in "
            "the operations table needs this parameter"
        )
    if first:
        # ASMX GET/POST errors are "System.Exception: reason" followed by a stack trace.
        return fault_error(f"{what}: HTTP {status}", first.split(": ", 1)[-1])
    return SourceError(f"{what}: HTTP {status} {response.reason_phrase} with an empty body")
