"""The life cycle the fake servers share: serve on 127.0.0.1 in a background thread, stop cleanly."""

from __future__ import annotations

import socketserver
import ssl
import threading
from types import TracebackType
from typing import Any, Self


class LoopbackServer:
    """Base of the fakes: subclasses set ``handler`` and ``server_class`` (whose instances get the
    fake as ``app``), ``thread_name``, and in ``__init__`` ``port`` (0: a free one)."""

    handler: type[socketserver.BaseRequestHandler]
    server_class: type[socketserver.TCPServer]
    thread_name: str
    port: int
    tls: ssl.SSLContext | None = None
    """A server-side TLS context: serve https:// instead of http:// (the whole connection over
    TLS; the SMTP catcher starts TLS itself, with STARTTLS)."""
    _httpd: Any = None
    _thread: threading.Thread | None = None

    def start(self) -> Self:
        """Bind 127.0.0.1 (a free port unless one was given) and serve in a background thread."""
        if self._httpd is not None:
            return self
        httpd = self.server_class(("127.0.0.1", self.port), self.handler)
        httpd.app = self  # type: ignore[attr-defined]
        if self.tls is not None:
            httpd.socket = self.tls.wrap_socket(httpd.socket, server_side=True)
        self._httpd = httpd
        self.port = httpd.server_address[1]
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{self.thread_name}-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
