"""The ``target.ad`` section of provisioner.yaml."""

from __future__ import annotations

import ipaddress
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from urllib.parse import urlsplit

from provisioner.checks import ca_bundle, not_negative, positive
from provisioner.model import DesiredAccount, DesiredState
from provisioner.secret import Secret
from provisioner.targets import naming
from provisioner.text import visible


def _check_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("ldaps", "ldap") or not parts.hostname:
        raise ValueError(f"expected ldaps://host or ldap://host, not {value!r}")
    return value


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: a host whose traffic never leaves this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve anywhere


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
    ca_file: Path | None = field(default=None, metadata={"check": ca_bundle})
    """A CA bundle to trust instead of the system store; the DC's certificate is always checked."""
    start_tls: bool = False
    allow_plain_ldap: bool = False
    """Plain LDAP without TLS: only for a lab DC on this machine (127.0.0.1, ::1 or localhost);
    passwords cannot be set over it."""
    anchor_attribute: str = "employeeID"
    group_anchor_attribute: str = "adminDescription"
    """Where a group's key is kept (groups have no employeeID)."""
    match_on: list[str] = field(default_factory=lambda: ["sAMAccountName"])
    """Attributes that correlate pre-existing accounts without an anchor."""
    must_change_password: bool = False
    """New accounts must choose their own password at the first logon."""
    page_size: int = 500
    paged_reads: bool = False
    """The incremental read's list of what is in the managed OU in pages of page_size from the
    start. By default it is one search (Samba answers it in half the time), and goes to pages
    when the DC limits what one search returns, as AD does beyond its MaxPageSize."""
    full_read_every: int = field(default=7, metadata={"check": not_negative})
    """Days between full reads of the managed objects; the nights between read only what
    changed since the last read (0: every night reads everything)."""
    timeout: LdapTimeouts = field(default_factory=LdapTimeouts)
    adopt_from: list[str] = field(default_factory=list)
    """Places outside the managed root (OUs or containers, relative to base_dn like managed_root,
    or whole DNs inside base_dn) whose accounts a plan may move into the managed root, and only
    those carrying a person's own anchor; empty (the default): nothing is adopted from outside."""

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        scheme = parts.scheme
        if self.allow_plain_ldap and not is_loopback(parts.hostname or ""):
            # Refused here, so that no connection (and no password in clear) is ever tried.
            raise ValueError(
                f"allow_plain_ldap is only for a lab DC on this machine (127.0.0.1, ::1 or "
                f"localhost), not {parts.hostname}: remove it and use ldaps:// or start_tls: true"
            )
        if scheme == "ldap" and not self.start_tls and not self.allow_plain_ldap:
            raise ValueError(
                "ldap:// sends the password in clear: use ldaps://, start_tls: true, or (for a "
                "lab DC only) allow_plain_ldap: true"
            )
        if not 1 <= self.page_size <= 1000:
            raise ValueError("page_size must be between 1 and 1000 (AD's MaxPageSize)")
        for place in self.adopt_from:
            self._check_adopt_from(place)

    def _check_adopt_from(self, place: str) -> None:
        try:
            full, root = rdns(self.adopt_from_dn(place)), rdns(self.root_dn)
            domain = rdns(self.base_dn)
        except ValueError:
            raise ValueError(
                f"adopt_from: {place!r} is not a DN; write it like OU=Oud,OU=Leerlingen "
                "(below base_dn) or in full, ending in base_dn"
            ) from None
        if full == domain:
            raise ValueError(
                f"adopt_from: {place!r} is the whole domain; name the OU the accounts to adopt "
                "are in, e.g. OU=Oud"
            )
        if not below(full, domain):
            raise ValueError(
                f"adopt_from: {place!r} is not an OU of the domain {self.base_dn}; name an OU "
                f"below it, e.g. OU=Oud or OU=Oud,{self.base_dn}"
            )
        if below(full, root) or below(root, full) or full == root:
            raise ValueError(
                f"adopt_from: {place!r} overlaps the managed root {self.root_dn}; accounts below "
                "the managed root are managed already: name an OU outside it (not one that "
                "holds it either)"
            )

    def adopt_from_dn(self, place: str) -> str:
        """The DN of an ``adopt_from`` entry: as written when it ends in the domain's DC=
        components, else relative to base_dn (as managed_root is)."""
        whole = {attribute for attribute, _value in rdns(place)[-1]} == {"DC"}
        return place if whole else f"{place},{self.base_dn}"

    @property
    def adopt_from_dns(self) -> list[str]:
        return [self.adopt_from_dn(place) for place in self.adopt_from]

    @property
    def root_dn(self) -> str:
        return f"{self.managed_root},{self.base_dn}"


# -- distinguished names ---------------------------------------------------------------------------

RDN = frozenset[tuple[str, str]]


def rdns(dn: str) -> list[RDN]:
    """The RDNs of *dn*, each the set of its (attribute, value) pairs with RFC 4514 escapes
    undone, attribute names upper-case and values case-folded: DNs compare one RDN at a time.
    Written out because ldap3's parser refuses some names the DC holds (``\\#``). Raises
    ValueError for text that is not a DN."""
    found: list[RDN] = []
    pairs: list[tuple[str, str]] = []
    attribute: str | None = None
    value = bytearray()

    def pair() -> tuple[str, str]:
        if attribute is None or not attribute.strip():
            raise ValueError(f"not a DN: {dn!r}")
        return attribute.strip().upper(), value.decode("utf-8", "replace").strip().casefold()

    i = 0
    while i < len(dn):
        char = dn[i]
        if char == "\\" and i + 1 < len(dn):
            hex_pair = dn[i + 1 : i + 3]
            if len(hex_pair) == 2 and all(c in string.hexdigits for c in hex_pair):
                value.append(int(hex_pair, 16))
                i += 3
            else:
                value += dn[i + 1].encode()
                i += 2
            continue
        if attribute is None and char == "=":
            attribute, value = value.decode("utf-8", "replace"), bytearray()
        elif char in ",+":
            pairs.append(pair())
            attribute, value = None, bytearray()
            if char == ",":
                found.append(frozenset(pairs))
                pairs = []
        else:
            value += char.encode()
        i += 1
    pairs.append(pair())
    found.append(frozenset(pairs))
    return found


def below(dn: list[RDN], ancestor: list[RDN]) -> bool:
    """True when the parsed *dn* lies strictly below the parsed *ancestor*."""
    return len(dn) > len(ancestor) and dn[len(dn) - len(ancestor) :] == ancestor


# -- naming rules: names Active Directory refuses, found at validate ------------------------------

SAM_ACCOUNT_NAME_MAX = 20
"""The pre-Windows 2000 logon name of a user (groups may have 256)."""
SAM_ACCOUNT_NAME_FORBIDDEN = '"/\\[]:;|=,+*?<>@'
RDN_MAX = 64
"""cn and ou: longer values are refused by the schema."""
UPN_LOCAL_ALLOWED = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+$")
"""The local part of a userPrincipalName: RFC 5322's letters, digits and symbols (ASCII only, so
that the same name also signs in to Entra ID through a sync)."""
_AD = "Active Directory"

# The schema's rangeUpper of the attributes mappings usually set: AD refuses longer values. Kept
# here (not with the target) so that validate checks them without connecting.
LIMITS: Mapping[str, int] = MappingProxyType(
    {
        "cn": 64,
        "sAMAccountName": 20,
        "givenName": 64,
        "sn": 64,
        "initials": 6,
        "displayName": 256,
        "department": 64,
        "company": 64,
        "title": 128,
        "description": 1024,
        "physicalDeliveryOfficeName": 128,
        "mail": 256,
        "employeeType": 256,
        "employeeNumber": 512,
        "userPrincipalName": 1024,
    }
)
CASELESS_ATTRIBUTES = frozenset({"cn"})
"""The object's name (its RDN): AD does not rename an object for a change of case alone, so a
plan that asked for one would ask again every night."""
ANCHOR_LIMITS: Mapping[str, int] = MappingProxyType(
    {
        "employeeid": 16,
        "employeenumber": 512,
        "admindescription": 1024,
        "extensionattribute1": 1024,
        "description": 1024,
    }
)
"""rangeUpper of attributes that may hold the connector's key, by lower-case name (AD matches
attribute names without case). ``employeeID`` holds 16 characters: ``personeel-{{ key }}``
does not fit once a key has 7 digits."""


def anchor_limit(attribute: str) -> int | None:
    return ANCHOR_LIMITS.get(attribute.casefold())


def _sam_account_name(limit: int) -> naming.Rule:
    def rule(value: str) -> list[str]:
        out = naming.empty(value) + naming.too_long(value, limit, _AD)
        out += naming.forbidden(value, SAM_ACCOUNT_NAME_FORBIDDEN, _AD)
        out += naming.hidden(value)
        if value and not value.strip(". "):
            out.append("is only dots and spaces")
        elif value.endswith("."):
            out.append("ends in a dot, which Active Directory does not allow")
        return out

    return rule


def _relative_name(value: str) -> list[str]:
    # What must be escaped in a DN (, + " \ < > ; = and a leading # or space) is escaped by the
    # target; what cannot be escaped away is an empty, too long or invisible name.
    return naming.empty(value) + naming.too_long(value, RDN_MAX, _AD) + naming.hidden(value)


def _user_principal_name(value: str) -> list[str]:
    local, at, domain = value.rpartition("@")
    if not at or not local:
        return ["is not name@domain"]
    out = naming.too_long(local, 64, f"{_AD} (before the @)")
    not_allowed = naming.only(
        local, UPN_LOCAL_ALLOWED, "letters a-z, digits and ! # $ % & ' * + / = ? ^ _ ` { | } ~ . -"
    )
    if not_allowed:
        out += not_allowed
    elif local.startswith(".") or local.endswith(".") or ".." in local:
        out.append("has a dot at the start or end of the name, or two dots in a row")
    if not naming.DNS_NAME.fullmatch(domain):
        out.append(f"has no valid domain after the @ ('{visible(domain)}')")
    return out


def _mail(value: str) -> list[str]:
    return naming.mail_address(value, _AD)


# Values the rules above pass, recognised in one match (a test holds each to its rule): ASCII
# letters, digits and . _ - within the limits, a dot neither first nor last in a local part.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = rf"(?=[^@]{{1,253}}\Z)(?:{_LABEL}\.)*{_LABEL}"
_LOCAL = r"(?=[^@]{1,64}@)[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*"
_PLAIN_LOGON = re.compile(rf"[A-Za-z0-9._-]{{0,{SAM_ACCOUNT_NAME_MAX - 1}}}[A-Za-z0-9_-]")
_PLAIN_RELATIVE_NAME = re.compile(rf"[A-Za-z0-9._-]{{1,{RDN_MAX}}}")
_PLAIN_USER_PRINCIPAL_NAME = re.compile(rf"{_LOCAL}@{_DOMAIN}")
_PLAIN_MAIL = re.compile(rf"{_LOCAL}@(?=[^@]*\.){_DOMAIN}")


def _plain_anchor(limit: int | None) -> re.Pattern[str]:
    return re.compile(f"[A-Za-z0-9._-]{{0,{limit}}}" if limit else "[A-Za-z0-9._-]*")


def _anchor(limit: int | None, *, visible_only: bool) -> naming.Rule:
    def rule(value: str) -> list[str]:
        out = [] if limit is None else naming.too_long(value, limit, _AD)
        return out + naming.hidden(value) if visible_only else out

    return rule


def naming_problems(config: AdConfig, desired: DesiredState) -> list[str]:
    """Every name in *desired* that Active Directory would refuse (that change would fail on
    every run), each naming the person or group, the attribute, what is wrong and the template
    that makes it. Nothing is connected to."""
    return target_findings(config, desired).messages


def target_findings(config: AdConfig, desired: DesiredState) -> naming.Findings:
    """:func:`naming_problems`, split: a person's own value (their anchor, logon name, UPN,
    mail, cn) holds that person; a group's or an OU's name stops the plan."""
    account_anchor = _anchor(anchor_limit(config.anchor_attribute), visible_only=True)
    # A group's key is also its cn unless mapped otherwise: the cn's check names hidden characters.
    group_anchor = _anchor(anchor_limit(config.group_anchor_attribute), visible_only=False)
    user_logon, group_logon = _sam_account_name(SAM_ACCOUNT_NAME_MAX), _sam_account_name(256)
    checks: list[tuple[naming.Name | None, naming.Rule]] = []
    # Without a mapping for them, AD's target names both after the username.
    account_checks = [
        ("sAMAccountName", True, user_logon, _PLAIN_LOGON),
        ("cn", True, _relative_name, _PLAIN_RELATIVE_NAME),
        ("userPrincipalName", False, _user_principal_name, _PLAIN_USER_PRINCIPAL_NAME),
        ("mail", False, _mail, _PLAIN_MAIL),
    ]
    anchor_plain = _plain_anchor(anchor_limit(config.anchor_attribute))
    for account in desired.accounts.values():
        # Most values are plain (_PLAIN_…): the rule would find nothing, and no Name is made.
        attributes = account.attributes
        for attribute, by_username, rule, plain in account_checks:
            derived = attributes.get(attribute)
            value = derived.value if derived is not None else None
            if value is None and by_username:
                value = account.username
            if value is not None and not plain.fullmatch(value):
                default = account.username if by_username else None
                checks.append((naming.account_name(account, attribute, default), rule))
        if not anchor_plain.fullmatch(account.anchor):
            checks.append((naming.anchor_name(account, config.anchor_attribute), account_anchor))
    for group in desired.groups.values():
        checks += [
            (naming.group_name(group, "sAMAccountName", None), group_logon),
            (naming.group_name(group, "cn", group.key), _relative_name),
            (naming.Name(group, config.group_anchor_attribute, group.key), group_anchor),
        ]
    found = naming.findings(checks)
    places = naming.ou_findings(desired, _relative_name)
    found.persons += places.persons
    found.errors += places.errors
    found.persons += _anchors_alike(desired, config.anchor_attribute)
    return found


def _anchors_alike(desired: DesiredState, attribute: str) -> list[tuple[DesiredAccount, str]]:
    """Persons whose anchors differ only by case: AD finds either by the other's, so it cannot
    tell them apart. Both are held: which account is whose is not for the connector to guess."""
    by_fold: dict[str, list[DesiredAccount]] = {}
    for account in desired.accounts.values():
        by_fold.setdefault(account.anchor.casefold(), []).append(account)
    out = []
    for alike in by_fold.values():
        if len(alike) > 1:
            anchors = ", ".join(sorted(a.anchor for a in alike))
            for account in alike:
                out.append(
                    (
                        account,
                        f"{naming.label(account)}: {attribute} (the anchor) is one of {anchors}, "
                        "which differ only by case; Active Directory holds them as one",
                    )
                )
    return out
