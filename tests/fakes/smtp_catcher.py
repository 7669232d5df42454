"""A small SMTP server on 127.0.0.1 that keeps every message it is given, for the notification
tests. Standard library only.

It speaks what a mail client meets at a submission port: EHLO/HELO, STARTTLS (with a
:class:`~tests.fakes.tls.TestCA` certificate), AUTH PLAIN and AUTH LOGIN, MAIL FROM, RCPT TO, DATA
(dot-stuffing undone), RSET, NOOP, QUIT. With ``tls`` given it refuses AUTH and MAIL before
STARTTLS, as a real submission server does; with ``users`` it requires a login.

Usage::

    with SmtpCatcher(tls=ca, users={"robot@school.example": "pw"}) as smtp:
        ...  # send to 127.0.0.1:smtp.port
        (mail,) = smtp.messages
        mail.message["Subject"], mail.tls, mail.user
"""

from __future__ import annotations

import base64
import binascii
import socketserver
import ssl
import threading
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage

from .loopback import LoopbackServer
from .tls import TestCA


@dataclass
class CaughtMail:
    sender: str
    recipients: list[str]
    data: bytes
    tls: bool
    """Whether the message came over a connection switched to TLS with STARTTLS."""
    user: str | None
    """Who logged in (None: nobody)."""

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.data, policy=policy.default)  # type: ignore[return-value]

    @property
    def body(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        return part.get_content() if part is not None else ""


@dataclass
class _Session:
    tls: bool = False
    user: str | None = None
    greeted: bool = False
    sender: str | None = None
    recipients: list[str] = field(default_factory=list)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    app: SmtpCatcher


class _Handler(socketserver.StreamRequestHandler):
    server: _Server
    timeout = 10

    def setup(self) -> None:
        super().setup()
        self.session = _Session()

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")
        self.wfile.flush()

    def read_line(self) -> str | None:
        raw = self.rfile.readline(4096)
        if not raw:
            return None
        return raw.decode("utf-8", "replace").rstrip("\r\n")

    def handle(self) -> None:
        catcher = self.server.app
        self.reply("220 127.0.0.1 ESMTP catcher ready")
        while True:
            line = self.read_line()
            if line is None:
                return
            verb, _, argument = line.partition(" ")
            verb = verb.upper()
            catcher.commands.append(verb if verb != "AUTH" else f"AUTH {argument.split(' ')[0]}")
            if verb == "QUIT":
                self.reply("221 bye")
                return
            if not self.command(catcher, verb, argument.strip()):
                return

    def command(self, catcher: SmtpCatcher, verb: str, argument: str) -> bool:
        """One command; False: the connection ends."""
        session = self.session
        must_tls = catcher.starttls is not None and not session.tls
        if verb in ("EHLO", "HELO"):
            session.greeted = True
            session.sender, session.recipients = None, []
            if verb == "HELO":
                self.reply("250 127.0.0.1")
                return True
            extensions = ["SIZE 10240000", "8BITMIME", "SMTPUTF8"]
            if must_tls:
                extensions.append("STARTTLS")
            elif catcher.users:
                extensions.append("AUTH PLAIN LOGIN")
            lines = ["127.0.0.1", *extensions]
            for line in lines[:-1]:
                self.reply(f"250-{line}")
            self.reply(f"250 {lines[-1]}")
            return True
        if verb == "NOOP":
            self.reply("250 OK")
            return True
        if verb == "RSET":
            session.sender, session.recipients = None, []
            self.reply("250 OK")
            return True
        if verb == "STARTTLS":
            if catcher.starttls is None or session.tls:
                self.reply("502 5.5.1 STARTTLS not available")
                return True
            self.reply("220 2.0.0 go ahead")
            try:
                tls_socket = catcher.starttls.server_context().wrap_socket(
                    self.connection, server_side=True
                )
            except (ssl.SSLError, OSError):
                return False  # the client did not trust the certificate
            self.connection = self.request = tls_socket
            self.rfile = tls_socket.makefile("rb")
            self.wfile = tls_socket.makefile("wb")
            self.session = _Session(tls=True)  # RFC 3207: forget everything said before
            return True
        if must_tls:
            self.reply("530 5.7.0 Must issue a STARTTLS command first")
            return True
        if verb == "AUTH":
            return self.auth(catcher, argument)
        if verb == "MAIL":
            if catcher.users and session.user is None:
                self.reply("530 5.7.0 Authentication required")
                return True
            address = _address(argument, "FROM:")
            if address is None:
                self.reply("501 5.5.4 Syntax: MAIL FROM:<address>")
                return True
            session.sender, session.recipients = address, []
            self.reply("250 2.1.0 OK")
            return True
        if verb == "RCPT":
            address = _address(argument, "TO:")
            if session.sender is None:
                self.reply("503 5.5.1 MAIL first")
            elif address is None:
                self.reply("501 5.5.4 Syntax: RCPT TO:<address>")
            elif address in catcher.refuse_recipients:
                self.reply("550 5.1.1 no such mailbox")
            else:
                session.recipients.append(address)
                self.reply("250 2.1.5 OK")
            return True
        if verb == "DATA":
            if not session.recipients:
                self.reply("503 5.5.1 RCPT first")
                return True
            self.reply("354 End data with <CR><LF>.<CR><LF>")
            lines: list[bytes] = []
            while True:
                raw = self.rfile.readline(1_000_000)
                if not raw:
                    return False
                if raw in (b".\r\n", b".\n"):
                    break
                lines.append(raw[1:] if raw.startswith(b".") else raw)  # undo dot-stuffing
            with catcher.lock:
                catcher.messages.append(
                    CaughtMail(
                        session.sender or "",
                        list(session.recipients),
                        b"".join(lines),
                        session.tls,
                        session.user,
                    )
                )
            session.sender, session.recipients = None, []
            self.reply("250 2.0.0 OK queued")
            return True
        self.reply("502 5.5.2 command not recognised")
        return True

    def auth(self, catcher: SmtpCatcher, argument: str) -> bool:
        mechanism, _, initial = argument.partition(" ")
        mechanism = mechanism.upper()
        if not catcher.users:
            self.reply("503 5.5.1 AUTH not offered")
            return True
        try:
            if mechanism == "PLAIN":
                if not initial:
                    self.reply("334 ")
                    initial = self.read_line() or ""
                _, user, password = base64.b64decode(initial).decode().split("\0")
            elif mechanism == "LOGIN":
                if initial:
                    user = base64.b64decode(initial).decode()
                else:
                    self.reply("334 VXNlcm5hbWU6")  # "Username:"
                    user = base64.b64decode(self.read_line() or "").decode()
                self.reply("334 UGFzc3dvcmQ6")  # "Password:"
                password = base64.b64decode(self.read_line() or "").decode()
            else:
                self.reply("504 5.5.4 unrecognised authentication type")
                return True
        except (ValueError, binascii.Error, UnicodeDecodeError):
            self.reply("501 5.5.2 cannot decode the answer")
            return True
        if catcher.users.get(user) != password:
            self.reply("535 5.7.8 Authentication credentials invalid")
            return True
        self.session.user = user
        catcher.logins.append((mechanism, user))
        self.reply("235 2.7.0 Authentication successful")
        return True


def _address(argument: str, prefix: str) -> str | None:
    if not argument.upper().startswith(prefix):
        return None
    rest = argument[len(prefix) :].strip()
    if not rest.startswith("<") or ">" not in rest:
        return None
    return rest[1 : rest.index(">")]


class SmtpCatcher(LoopbackServer):
    """An SMTP server on 127.0.0.1 (a free port) keeping what it receives in :attr:`messages`."""

    handler = _Handler
    server_class = _Server
    thread_name = "smtp-catcher"

    def __init__(
        self,
        *,
        tls: TestCA | None = None,
        users: dict[str, str] | None = None,
        port: int = 0,
    ) -> None:
        self.starttls = tls
        """STARTTLS with this CA's server certificate, required before AUTH and MAIL."""
        self.users = dict(users or {})
        """Who may log in (user → password); empty: no AUTH offered, none required."""
        self.port = port
        self.messages: list[CaughtMail] = []
        self.commands: list[str] = []
        """Every command verb received, in order (``AUTH PLAIN``, never the credentials)."""
        self.logins: list[tuple[str, str]] = []
        """(mechanism, user) of every successful AUTH."""
        self.refuse_recipients: set[str] = set()
        """Addresses RCPT TO answers 550 for."""
        self.lock = threading.Lock()

    @property
    def address(self) -> str:
        """``127.0.0.1:PORT``, as ``notify.email.smtp`` takes it."""
        return f"127.0.0.1:{self.port}"
