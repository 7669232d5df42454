"""The ``target.entra`` section of provisioner.yaml."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from provisioner.checks import positive
from provisioner.secret import Secret

_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,63}$")
ANCHOR_PROPERTIES = ("employeeId", "onPremisesImmutableId")


def _check_https(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"expected an https:// URL, not {value!r}")
    return value.rstrip("/")


def _check_domains(value: list[str]) -> list[str]:
    if not value:
        raise ValueError("name at least one domain: the UPN suffixes of managed accounts")
    bad = [d for d in value if not _DOMAIN.match(d)]
    if bad:
        raise ValueError(f"not a domain name: {', '.join(bad)}")
    return [d.lower() for d in value]


def _check_prefix(value: str) -> str:
    # The prefix is what marks a group as the connector's: without one every security group of
    # the tenant would be in scope, and deleted when no mapping produces it.
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,19}", value):
        raise ValueError("1-20 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return value


@dataclass
class WriteQuota:
    """Graph allows about 3,000 writes per 2.5 minutes per app and tenant; the run stays under
    this many writes in any window of this many seconds instead of running into 429s."""

    writes: int = field(default=2700, metadata={"check": positive})
    seconds: float = field(default=150.0, metadata={"check": positive})


@dataclass
class EntraConfig:
    tenant_id: str
    client_id: str
    """The app registration (application permissions User.ReadWrite.All, Group.ReadWrite.All,
    GroupMember.ReadWrite.All)."""
    domains: list[str] = field(metadata={"check": _check_domains})
    """UPN suffixes of the managed accounts: only users whose UPN ends in one of these are read,
    changed or deleted. The first is used for a UPN the mappings do not set."""
    client_secret: Secret | None = None
    certificate: Path | None = None
    """A PEM file with the app's private key and certificate (instead of client_secret)."""
    certificate_password: Secret | None = None
    graph_url: str = field(
        default="https://graph.microsoft.com/v1.0", metadata={"check": _check_https}
    )
    authority: str = field(
        default="https://login.microsoftonline.com", metadata={"check": _check_https}
    )
    """The sign-in authority; another one only for a national cloud (or a test server)."""
    ca_file: Path | None = None
    """A CA bundle to trust instead of the system store; certificates are always checked."""
    anchor_property: str = "employeeId"
    group_prefix: str = field(default="prov-", metadata={"check": _check_prefix})
    """Managed groups have a mailNickname of this prefix and their key: the prefix is how the
    connector knows its own groups among the tenant's."""
    match_on: list[str] = field(default_factory=lambda: ["userPrincipalName"])
    """Properties that correlate users made before the connector (no anchor yet)."""
    usage_location: str = "BE"
    """Two-letter country of new users; a licence can only be assigned to a user who has one."""
    must_change_password: bool = False
    write_quota: WriteQuota = field(default_factory=WriteQuota)
    timeout: float = field(default=60.0, metadata={"check": positive})
    """Seconds one request may take."""
    max_attempts: int = field(default=8, metadata={"check": positive})
    """Tries of one request that is throttled (429) or finds Graph busy (503, 504)."""

    def __post_init__(self) -> None:
        if not _GUID.match(self.tenant_id) and not _DOMAIN.match(self.tenant_id):
            raise ValueError("tenant_id: a GUID or the tenant's domain (school.onmicrosoft.com)")
        if not _GUID.match(self.client_id):
            raise ValueError("client_id: the app registration's application (client) id, a GUID")
        if (self.client_secret is None) == (self.certificate is None):
            raise ValueError("give exactly one of client_secret and certificate")
        if self.anchor_property not in ANCHOR_PROPERTIES:
            raise ValueError(f"anchor_property: one of {', '.join(ANCHOR_PROPERTIES)}")
        if not re.fullmatch(r"[A-Z]{2}", self.usage_location):
            raise ValueError("usage_location: a two-letter country code such as BE")

    @property
    def graph_root(self) -> str:
        """``https://host`` of graph_url: where ``@odata.nextLink`` and member references point."""
        parts = urlsplit(self.graph_url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def custom_authority(self) -> bool:
        return urlsplit(self.authority).hostname not in ("login.microsoftonline.com",)
