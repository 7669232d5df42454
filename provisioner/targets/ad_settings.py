"""The ``target.ad`` section of provisioner.yaml."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from provisioner.checks import positive
from provisioner.secret import Secret


def _check_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("ldaps", "ldap") or not parts.hostname:
        raise ValueError(f"expected ldaps://host or ldap://host, not {value!r}")
    return value


@dataclass
class LdapTimeouts:
    connect: float = field(default=10.0, metadata={"check": positive})
    receive: float = field(default=120.0, metadata={"check": positive})
    """Every read waits at most this long; a tree delete on a large OU takes a while."""


@dataclass
class AdConfig:
    url: str = field(metadata={"check": _check_url})
    """``ldaps://dc1.school.be`` (port 636), or ``ldap://`` with ``start_tls: true``."""
    bind_user: str
    """``SCHOOL\\provisioner``, ``provisioner@school.be`` or a DN."""
    password: Secret
    base_dn: str
    """The domain, e.g. ``DC=school,DC=be``."""
    managed_root: str
    """The OU below which the mappings' OU paths live, relative to base_dn, e.g.
    ``OU=Provisioned``. Nothing outside it is read, changed or deleted."""
    ca_file: Path | None = None
    """A CA bundle to trust instead of the system store; the DC's certificate is always checked."""
    start_tls: bool = False
    allow_plain_ldap: bool = False
    """Plain LDAP without TLS: only for a lab DC; passwords cannot be set over it."""
    anchor_attribute: str = "employeeID"
    group_anchor_attribute: str = "adminDescription"
    """Where a group's key is kept (groups have no employeeID)."""
    match_on: list[str] = field(default_factory=lambda: ["sAMAccountName"])
    """Attributes that correlate pre-existing accounts without an anchor."""
    must_change_password: bool = False
    """New accounts must choose their own password at the first logon."""
    page_size: int = 500
    timeout: LdapTimeouts = field(default_factory=LdapTimeouts)

    def __post_init__(self) -> None:
        scheme = urlsplit(self.url).scheme
        if scheme == "ldap" and not self.start_tls and not self.allow_plain_ldap:
            raise ValueError(
                "ldap:// sends the password in clear: use ldaps://, start_tls: true, or (for a "
                "lab DC only) allow_plain_ldap: true"
            )
        if not 1 <= self.page_size <= 1000:
            raise ValueError("page_size must be between 1 and 1000 (AD's MaxPageSize)")

    @property
    def root_dn(self) -> str:
        return f"{self.managed_root},{self.base_dn}"
