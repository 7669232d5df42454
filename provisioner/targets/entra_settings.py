"""The ``target.entra`` section of provisioner.yaml."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from provisioner.checks import ca_bundle, existing_file, not_negative, positive
from provisioner.model import DesiredState
from provisioner.secret import Secret
from provisioner.targets import naming

_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_DOMAIN = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,63}$")
_UPN = re.compile(r"^[^@\s]+@([A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,63}$")
ANCHOR_PROPERTIES = ("employeeId", "onPremisesImmutableId")


def _check_https(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"expected an https:// URL, not {value!r}")
    return value.rstrip("/")


def _check_scope(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname or not value.endswith("/.default"):
        raise ValueError(f"expected https://<Graph host>/.default, not {value!r}")
    return value


@dataclass(frozen=True)
class Cloud:
    """One of Microsoft's clouds: where its Graph is and where its apps sign in."""

    name: str
    graph_host: str
    login_host: str


CLOUDS = (
    Cloud("global", "graph.microsoft.com", "login.microsoftonline.com"),
    Cloud("US Government L4 (GCC High)", "graph.microsoft.us", "login.microsoftonline.us"),
    Cloud("US Government L5 (DoD)", "dod-graph.microsoft.us", "login.microsoftonline.us"),
    Cloud("China (21Vianet)", "microsoftgraph.chinacloudapi.cn", "login.chinacloudapi.cn"),
)
"""The national clouds by their Graph host (Microsoft's "national cloud deployments")."""


def cloud_of(graph_url: str) -> Cloud:
    """The cloud whose Graph *graph_url* points at; another host (a proxy, a test server) is
    taken for the global cloud's: its token scope and authority are then set explicitly."""
    host = (urlsplit(graph_url).hostname or "").lower()
    return next((cloud for cloud in CLOUDS if cloud.graph_host == host), CLOUDS[0])


def _check_domains(value: list[str]) -> list[str]:
    if not value:
        raise ValueError("name at least one domain: the UPN suffixes of managed accounts")
    bad = [d for d in value if not _DOMAIN.fullmatch(d)]
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
    client_secret_expires: dt.date | None = None
    """When the client secret runs out (Entra shows it with the secret): notifications warn
    ``notify.expiry_warning_days`` before."""
    certificate: Path | None = field(default=None, metadata={"check": existing_file})
    """A PEM file with the app's private key and certificate (instead of client_secret)."""
    certificate_password: Secret | None = None
    graph_url: str = field(
        default="https://graph.microsoft.com/v1.0", metadata={"check": _check_https}
    )
    """Graph's root; for a national cloud its own (``https://graph.microsoft.us/v1.0``,
    ``https://dod-graph.microsoft.us/v1.0``, ``https://microsoftgraph.chinacloudapi.cn/v1.0``):
    the sign-in authority and the token scope follow it."""
    authority: str | None = field(default=None, metadata={"check": _check_https})
    """The sign-in authority; by default the one of graph_url's cloud
    (``https://login.microsoftonline.us`` for the US Government clouds,
    ``https://login.chinacloudapi.cn`` for China)."""
    token_scope: str | None = field(default=None, metadata={"check": _check_scope})
    """The scope the app's token is asked for; by default ``https://<graph_url's host>/.default``
    for Microsoft's clouds (the global one's for any other host: a proxy, a test server)."""
    ca_file: Path | None = field(default=None, metadata={"check": ca_bundle})
    """A CA bundle to trust instead of the system store; certificates are always checked."""
    anchor_property: str = "employeeId"
    group_prefix: str = field(default="prov-", metadata={"check": _check_prefix})
    """Managed groups have a mailNickname of this prefix and their key: the prefix is how the
    connector knows its own groups among the tenant's."""
    match_on: list[str] = field(default_factory=lambda: ["userPrincipalName"])
    """Properties that correlate users made before the connector (no anchor yet)."""
    retired_licences: list[str] = field(default_factory=list)
    """SKU part numbers the mappings no longer name (A1 after a move to A3) whose licences the
    connector still takes away from the accounts of kinds that name licences; other SKUs the
    mappings do not name are left alone."""
    usage_location: str = "BE"
    """Two-letter country of new users; a licence can only be assigned to a user who has one."""
    must_change_password: bool = False
    write_quota: WriteQuota = field(default_factory=WriteQuota)
    timeout: float = field(default=60.0, metadata={"check": positive})
    """Seconds one request may take."""
    full_read_every: int = field(default=7, metadata={"check": not_negative})
    """Days between full reads of the managed objects; the nights between read only what
    changed since the last read (0: every night reads everything)."""
    max_attempts: int = field(default=8, metadata={"check": positive})
    """Tries of one request that is throttled (429) or finds Graph busy (503, 504)."""
    fallback_owner: str | None = None
    """The owner a class group gets when its last owner (the titularis) leaves: a user's UPN or
    object id, or a service principal's object id. Entra ID keeps at least one owner on a group
    that has had one; without a fallback such a group keeps its last owner and each plan warns."""

    reads_licences = False
    """Not configured: set by the target when the mappings name licences (a read then asks
    for the users' assignedLicenses)."""

    def __post_init__(self) -> None:
        if not _GUID.fullmatch(self.tenant_id) and not _DOMAIN.fullmatch(self.tenant_id):
            raise ValueError("tenant_id: a GUID or the tenant's domain (school.onmicrosoft.com)")
        if not _GUID.fullmatch(self.client_id):
            raise ValueError("client_id: the app registration's application (client) id, a GUID")
        if (self.client_secret is None) == (self.certificate is None):
            raise ValueError("give exactly one of client_secret and certificate")
        if self.client_secret_expires is not None and self.client_secret is None:
            raise ValueError("client_secret_expires: belongs with client_secret")
        if self.anchor_property not in ANCHOR_PROPERTIES:
            raise ValueError(f"anchor_property: one of {', '.join(ANCHOR_PROPERTIES)}")
        if not re.fullmatch(r"[A-Z]{2}", self.usage_location):
            raise ValueError("usage_location: a two-letter country code such as BE")
        if self.fallback_owner is not None and not (
            _GUID.fullmatch(self.fallback_owner) or _UPN.fullmatch(self.fallback_owner)
        ):
            raise ValueError(
                "fallback_owner: a user's sign-in name (name@school.be) or the object id (a "
                "GUID) of a user or a service principal; a group cannot own a group"
            )

    @property
    def graph_root(self) -> str:
        """``https://host`` of graph_url: where ``@odata.nextLink`` and member references point."""
        parts = urlsplit(self.graph_url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def sign_in_authority(self) -> str:
        """Where the app signs in: ``authority``, or graph_url's cloud's."""
        return self.authority or f"https://{cloud_of(self.graph_url).login_host}"

    @property
    def scope(self) -> str:
        """The scope of the app's token: ``token_scope``, or graph_url's cloud's Graph."""
        return self.token_scope or f"https://{cloud_of(self.graph_url).graph_host}/.default"

    @property
    def custom_authority(self) -> bool:
        """Not an authority of Microsoft's clouds (a test server's): no instance discovery."""
        host = urlsplit(self.sign_in_authority).hostname
        return host not in {cloud.login_host for cloud in CLOUDS}


# -- naming rules: names Entra ID refuses, found at validate --------------------------------------

UPN_LOCAL_ALLOWED = re.compile(r"^[A-Za-z0-9'._!#^~-]+$")
"""What Entra ID allows before the @ of a userPrincipalName."""
UPN_LOCAL_MAX = 64
UPN_MAX = 113
MAIL_NICKNAME_MAX = 64
MAIL_NICKNAME_FORBIDDEN = ' @()\\[]";:<>,'
DISPLAY_NAME_MAX = 256
EMPLOYEE_ID_MAX = 16
"""Graph's ``employeeId`` holds 16 characters: ``personeel-{{ key }}`` does not fit once a key
has 7 digits, and Graph answers 400 to every create of such a person."""
_ENTRA = "Entra ID"


def _user_principal_name(domains: list[str]) -> naming.Rule:
    def rule(value: str) -> list[str]:
        local, at, domain = value.rpartition("@")
        if not at or not local:
            return ["is not name@domain"]
        out = naming.too_long(value, UPN_MAX, _ENTRA)
        out += naming.too_long(local, UPN_LOCAL_MAX, f"{_ENTRA} (before the @)")
        out += naming.only(local, UPN_LOCAL_ALLOWED, "letters a-z, digits and ' . - _ ! # ^ ~")
        if local.startswith(".") or local.endswith("."):
            out.append("starts or ends with a dot before the @")
        if domain.lower() not in domains:
            # Outside the managed domains the account is neither read back nor managed: it would
            # be created again on every run.
            out.append(f"is not in a managed domain ({', '.join(domains)})")
        return out

    return rule


def _mail_nickname(value: str) -> list[str]:
    out = naming.empty(value) + naming.too_long(value, MAIL_NICKNAME_MAX, _ENTRA)
    return out + naming.forbidden(value, MAIL_NICKNAME_FORBIDDEN, _ENTRA) + naming.hidden(value)


def _display_name(value: str) -> list[str]:
    return naming.too_long(value, DISPLAY_NAME_MAX, _ENTRA)


_NICKNAME_SAFE = re.compile(r"[A-Za-z0-9.\-_]")


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


def _employee_id(value: str) -> list[str]:
    out = naming.empty(value) + naming.too_long(value, EMPLOYEE_ID_MAX, _ENTRA)
    if value != value.strip():
        # Graph keeps the spaces, and the connector finds the account back by an exact match.
        out.append("starts or ends with a space")
    return out + naming.hidden(value)


def _immutable_id(value: str) -> list[str]:
    return naming.empty(value) + naming.hidden(value)


def naming_problems(config: EntraConfig, desired: DesiredState) -> list[str]:
    """Every name in *desired* that Entra ID would refuse, or that would put an account outside
    the managed domains, each naming the person or group, the attribute, what is wrong and the
    template that makes it. Nothing is connected to."""
    return target_findings(config, desired).messages


def target_findings(config: EntraConfig, desired: DesiredState) -> naming.Findings:
    """:func:`naming_problems`, split: a person's own value (their anchor, UPN, mailNickname,
    displayName) holds that person; a group's name stops the plan."""
    anchor_rule = _employee_id if config.anchor_property == "employeeId" else _immutable_id
    user_principal_name = _user_principal_name(config.domains)
    checks: list[tuple[naming.Name | None, naming.Rule]] = []
    for account in desired.accounts.values():
        # The target makes the UPN from the username in the first domain unless a mapping sets
        # it, and the username is always the mailNickname.
        default_upn = f"{account.username}@{config.domains[0]}"
        checks += [
            (naming.account_name(account, "userPrincipalName", default_upn), user_principal_name),
            (naming.account_name(account, "mailNickname", account.username), _mail_nickname),
            (naming.account_name(account, "displayName", None), _display_name),
            (naming.anchor_name(account, config.anchor_property), anchor_rule),
        ]
    for group in desired.groups.values():
        nickname = nickname_for(config.group_prefix, group.key)
        checks += [
            (naming.group_name(group, "displayName", None), _display_name),
            (naming.group_name(group, "mailNickname", nickname), _mail_nickname),
        ]
    return naming.findings(checks)
