"""The ``notify:`` section of provisioner.yaml: who hears about a night, and how.

::

    notify:
      on: [blocked, failed, held]               # also: changes, always
      webhook: {url: https://…, format: teams}  # teams | slack | json
      email: {smtp: mail.school.be:587, from: provisioner@school.be, to: [ict@school.be],
              username: provisioner@school.be, password: ${SMTP_PASSWORD}}
      # or: email: {graph: true, from: provisioner@school.be, to: [ict@school.be]}
      heartbeat: https://hc-ping.com/…
      expiry_warning_days: 30
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml

from provisioner.checks import ca_bundle, positive
from provisioner.errors import ConfigError
from provisioner.secret import Secret, parse_secret
from provisioner.targets.ad_settings import is_loopback

Trigger = Literal["blocked", "failed", "held", "changes", "always"]
WebhookFormat = Literal["teams", "slack", "json"]

_ADDRESS = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")
SMTP_PORT = 587
"""The submission port, with STARTTLS: what a host without a port gets."""
SMTPS_PORT = 465
"""Implicit TLS from the first byte (SMTPS): starttls does not apply there."""


class Url:
    """A URL to post or ping to: written in the file, or a secret reference (``${TEAMS_WEBHOOK}``,
    ``file:webhook.txt``). A webhook URL carries its own key (Teams' ``sig=``, Slack's path,
    a ping URL's id): anyone holding it can post, so it is kept out of every log line either way."""

    __slots__ = ("_secret", "where")

    def __init__(self, secret: Secret, where: str) -> None:
        self._secret = secret
        self.where = where
        """``FILE:LINE: key`` where the URL was written, for a reference that resolves wrong."""

    @classmethod
    def from_yaml(cls, value: Any, path: Path, line: int, where: str) -> Url:
        at = f"{path}:{line}: {where}"
        if not isinstance(value, str) or not value.strip():
            raise ValueError("expected a URL (https://…), ${ENV_VAR} or file:PATH")
        value = value.strip()
        if value.startswith(("${", "file:")):
            return cls(parse_secret(value, path.parent, lambda p: ConfigError(f"{at}: {p}")), at)
        check_url(value)
        return cls(Secret(value, where), at)

    def reveal(self) -> str:
        """The URL; a reference is read now, and checked as a URL written in the file is."""
        url = self._secret.reveal().strip()
        try:
            return check_url(url)
        except ValueError as exc:
            raise ConfigError(f"{self.where}: {exc}") from None

    @property
    def host(self) -> str:
        """What a message about this URL may name: its host, never its path or query (the key)."""
        try:
            return urlsplit(self._secret.reveal()).hostname or "?"
        except ConfigError:
            return "?"

    def __repr__(self) -> str:
        return f"Url({self.where})"


def check_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("expected an https:// URL")
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        # The message names schools, persons' keys and the run folder: not in clear on a network.
        raise ValueError("use https:// (http:// is only for a receiver on this machine)")
    return value


def _addresses(value: list[str]) -> list[str]:
    if not value:
        raise ValueError("name at least one address")
    bad = [a for a in value if not _ADDRESS.fullmatch(a)]
    if bad:
        raise ValueError(f"not an e-mail address: {', '.join(bad)}")
    return value


def _address(value: str) -> str:
    return _addresses([value])[0]


def _host_port(value: str) -> str:
    host, port = split_host_port(value)
    if not host or not 0 < port < 65536:
        raise ValueError(f"expected host or host:port, such as mail.school.be:{SMTP_PORT}")
    return value


def split_host_port(value: str) -> tuple[str, int]:
    """``mail.school.be:587`` → (host, port); a bare host gets the submission port 587."""
    value = value.strip()
    if value.startswith("["):  # [::1]:25
        host, _, rest = value[1:].partition("]")
        port_text = rest.removeprefix(":")
    elif value.count(":") == 1:
        host, _, port_text = value.partition(":")
    else:
        host, port_text = value, ""
    if not port_text:
        return host, SMTP_PORT
    if not port_text.isdigit():
        return host, 0
    return host, int(port_text)


@dataclass
class WebhookConfig:
    url: Url
    """A Teams Workflows webhook, a Slack incoming webhook, or any receiver of JSON."""
    format: WebhookFormat = "teams"
    """teams: an Adaptive Card for a Teams Workflows webhook; slack: Slack's ``{"text", "blocks"}``;
    json: the night itself as JSON (:class:`~provisioner.notify.night.NightReport`)."""
    ca_file: Path | None = field(default=None, metadata={"check": ca_bundle})
    """A CA bundle to trust instead of the system store (a receiver with a private CA); the
    certificate is always checked."""


@dataclass
class EmailConfig:
    """``{smtp: host:port, …}`` sends through a mail server; ``{graph: true, …}`` through Microsoft
    Graph's sendMail with the Entra target's app (permission Mail.Send)."""

    from_: str = field(metadata={"key": "from", "check": _address})
    to: list[str] = field(metadata={"check": _addresses})
    smtp: str | None = field(default=None, metadata={"check": _host_port})
    graph: bool = False
    starttls: bool = True
    """Switch to TLS before logging in (port 587 or 25); port 465 speaks TLS from the start."""
    username: str | None = None
    password: Secret | None = None
    ca_file: Path | None = field(default=None, metadata={"check": ca_bundle})
    """A CA bundle to trust instead of the system store; the certificate is always checked."""
    written_at: str = field(default="", metadata={"internal": True})
    """``FILE:LINE`` of the section, for the check against the target made after it is read."""

    def __post_init__(self) -> None:
        if self.graph == (self.smtp is not None):
            raise ValueError(
                "give either smtp: host:port (a mail server) or graph: true (sendMail with the "
                "Entra app), not both and not neither"
            )
        if self.graph and (self.username or self.password or self.ca_file):
            raise ValueError(
                "graph: true sends with the Entra target's app: username, password and ca_file "
                "are for smtp"
            )
        if (self.username is None) != (self.password is None):
            raise ValueError("give username and password together (or neither, for a relay)")
        if self.smtp is not None and self.password is not None and not self.tls:
            host, _ = split_host_port(self.smtp)
            if not is_loopback(host):
                raise ValueError(
                    "starttls: false would send the password in clear: use starttls: true "
                    f"or port {SMTPS_PORT}"
                )

    @property
    def tls(self) -> bool:
        """Whether the connection is encrypted: STARTTLS or SMTPS (port 465)."""
        if self.smtp is None:
            return True
        return self.starttls or split_host_port(self.smtp)[1] == SMTPS_PORT

    @classmethod
    def from_yaml_node(cls, builder: Any, node: yaml.Node, where: str) -> EmailConfig:
        email: EmailConfig = builder.build_dataclass(node, cls, where)
        line = node.start_mark.line + 1
        for key_node, _ in getattr(node, "value", []):
            if getattr(key_node, "value", None) == "graph":
                line = key_node.start_mark.line + 1
        email.written_at = f"{builder.path}:{line}: {where}"
        return email


def _not_negative(value: int) -> int:
    if value < 0:
        raise ValueError("must be 0 or more")
    return value


@dataclass
class NotifyConfig:
    on: list[Trigger] = field(default_factory=lambda: ["blocked", "failed", "held"])
    """When a message goes out: blocked (the plan was not applied, or a part waits for an
    approval), failed (an error or a failed change), held (persons held tonight), changes
    (something was changed), always (every night). A night with a warning (a certificate or
    secret that runs out) is always told."""
    webhook: WebhookConfig | None = None
    email: EmailConfig | None = None
    heartbeat: Url | None = None
    """Pinged (GET) after every night that ran to the end without failing: an outside monitor
    that misses the ping alerts (a dead-man's switch)."""
    expiry_warning_days: int = field(default=30, metadata={"check": _not_negative})
    """Warn this many days before the Entra app's certificate or client secret runs out."""
    timeout: float = field(default=20.0, metadata={"check": positive})
    """Seconds one delivery (webhook, mail server, Graph, heartbeat) may take."""

    def check_target(self, *, has_entra: bool) -> None:
        """What can only be checked with the whole configuration: sendMail needs the Entra app.
        Raises ConfigError with the file and line of ``graph: true``."""
        if self.email is not None and self.email.graph and not has_entra:
            raise ConfigError(
                f"{self.email.written_at}: graph: true sends with the app of the Entra target, "
                "and this configuration has none: use smtp: host:port, or configure target.entra"
            )
