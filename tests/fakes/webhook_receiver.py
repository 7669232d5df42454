"""An HTTP(S) server on 127.0.0.1 that records every request, for the notification tests: a
webhook (Teams Workflows, Slack, JSON) and a heartbeat monitor in one.

It answers ``status`` (202, as a Teams workflow does), or ``hang`` seconds late to test a
timeout::

    with WebhookReceiver(tls=ca) as hook:
        ...  # POST to hook.url("/teams")
        (request,) = hook.requests
        request.json["type"] == "message"
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .loopback import LoopbackServer
from .tls import TestCA


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    """The path with its query, as sent."""
    headers: dict[str, str]
    """Lower-cased names."""
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    app: WebhookReceiver


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer

    def _serve(self) -> None:
        app = self.server.app
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        with app.lock:
            app.requests.append(Received(self.command, self.path, headers, body))
        if app.hang:
            app.release.wait(app.hang)
        answer = app.answer.encode()
        try:
            self.send_response(app.status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    do_GET = do_POST = do_HEAD = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass


class WebhookReceiver(LoopbackServer):
    thread_name = "webhook-receiver"
    handler = _Handler
    server_class = _HTTPServer

    def __init__(self, *, tls: TestCA | None = None, port: int = 0) -> None:
        self.port = port
        if tls is not None:
            self.tls = tls.server_context()
        self.requests: list[Received] = []
        self.status = 202
        """What every request is answered with (500 to test a failing receiver)."""
        self.answer = ""
        """The body of every answer."""
        self.hang = 0.0
        """Seconds to wait before answering (longer than the client's timeout: a hanging one)."""
        self.release = threading.Event()
        """Set to end every wait at once (stop() sets it)."""
        self.lock = threading.Lock()

    def url(self, path: str = "/") -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def posts(self) -> list[Received]:
        return [r for r in self.requests if r.method == "POST"]

    def wait_for(self, count: int, seconds: float = 5.0) -> list[Received]:
        """The requests once there are at least *count* (a hanging answer arrives after them)."""
        deadline = time.monotonic() + seconds
        while len(self.requests) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return list(self.requests)

    def stop(self) -> None:
        self.release.set()
        super().stop()
