"""Active Directory over LDAP (ldap3): read the managed scope, apply one change at a time.

Only objects below the managed root are changed: every object a change acts on is resolved and
refused unless its DN lies below the managed root (compared as parsed DNs), it is of the change's
kind and carries the connector's key; members must be managed accounts; attributes that carry
rights are never written. The one way in from outside is an adoption from a place the
configuration names (``adopt_from``) of a user account that carries the person's own anchor and
is no privileged account. Outside the root the target only reads: the names taken anywhere in
the domain (:meth:`ActiveDirectory.taken_outside`) and the accounts carrying an anchor. Every
value that goes into a DN is escaped with ``escape_rdn`` and every value in a search filter with
``escape_filter_chars``; objects are found by objectGUID or through one paged index of the
anchors. Each change checks its precondition first
(:class:`~provisioner.targets.base.BaseTarget`), so a change that already happened (a run killed
half-way) or that someone made differently by hand is skipped and reported, never forced.
"""

from __future__ import annotations

import functools
import math
import ssl
import string
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from ldap3 import (
    BASE,
    MODIFY_ADD,
    MODIFY_DELETE,
    MODIFY_REPLACE,
    SUBTREE,
    Connection,
    Server,
    Tls,
)
from ldap3.core.exceptions import LDAPException
from ldap3.protocol.formatters.formatters import format_sid
from ldap3.utils.conv import escape_filter_chars
from ldap3.utils.dn import escape_rdn, parse_dn

from provisioner import helper, log
from provisioner.background import InBackground
from provisioner.licences import ATTRIBUTE as LICENCES
from provisioner.model import TEAM, ObservedAccount, ObservedGroup, ObservedState
from provisioner.plan.model import Action, Change, Kind, Value
from provisioner.targets import ad_apart, ad_read
from provisioner.targets.ad_settings import LIMITS, RDN, AdConfig, below, rdns
from provisioner.targets.base import (
    ADOPTION,
    AnchorIndex,
    BaseTarget,
    Current,
    LastRead,
    ReadBase,
    Result,
    TargetError,
    carried_over,
    carries,
    explain,
    outside,
    text,
    tls_hint,
)

ACCOUNT_DISABLE = 0x2
NORMAL_ACCOUNT = 0x200
GLOBAL_SECURITY_GROUP = -2147483646
_RDN_ATTRIBUTES = {"cn", "name", "distinguishedName"}
"""Set through the object's place (modify_dn), never as attributes. A mapping's ``cn`` names the
object (its RDN); without one, accounts are named by username and groups by key."""
_RDN_FOLDED = frozenset(name.casefold() for name in _RDN_ATTRIBUTES)
_MEMBER_BATCH = 500
_NAME_BATCH = 100
"""Names per search when checking them against the whole domain: four clauses each, so a filter
stays a few tens of kilobytes, far below what a DC accepts."""
_NAME_ATTRIBUTES = ("sAMAccountName", "userPrincipalName", "mail", "proxyAddresses")
"""Where an object in AD holds a name that logs on or receives mail (``proxyAddresses`` as
``smtp:address``, primary ``SMTP:``)."""
_IN_CHAIN = "1.2.840.113556.1.4.1941"
"""LDAP_MATCHING_RULE_IN_CHAIN: membership through nested groups, answered by the DC."""
_USER_ACCOUNTS = "(&(objectCategory=person)(objectClass=user))"
"""Users, not computers (a computer is a user to objectClass, not to objectCategory)."""

PRIVILEGED_GROUPS: Mapping[str, str] = MappingProxyType(
    {
        # relative ids in the domain's own SID
        "-512": "Domain Admins",
        "-518": "Schema Admins",
        "-519": "Enterprise Admins",
        # the built-in groups (CN=Builtin)
        "S-1-5-32-544": "Administrators",
        "S-1-5-32-548": "Account Operators",
        "S-1-5-32-549": "Server Operators",
        "S-1-5-32-550": "Print Operators",
        "S-1-5-32-551": "Backup Operators",
    }
)
"""The groups whose members the connector never adopts, by their well-known SIDs (their names
differ per language, their SIDs do not). Nested membership counts."""

NEVER_WRITTEN = frozenset(
    name.casefold()
    for name in (
        # passwords and the account's flags: the connector sets them itself
        "unicodePwd",
        "userPassword",
        "dBCSPwd",
        "supplementalCredentials",
        "userAccountControl",
        "pwdLastSet",
        "accountExpires",
        "lockoutTime",
        # membership, identity and rights: what a plan must never reach
        "member",
        "memberOf",
        "primaryGroupID",
        "groupType",
        "adminCount",
        "objectSid",
        "sIDHistory",
        "objectGUID",
        "objectClass",
        "objectCategory",
        "nTSecurityDescriptor",
        "servicePrincipalName",
        "altSecurityIdentities",
        "userCertificate",
        "managedBy",
        "msDS-AllowedToDelegateTo",
        "msDS-AllowedToActOnBehalfOfOtherIdentity",
        "msDS-KeyCredentialLink",
        "isCriticalSystemObject",
    )
)
"""Attributes the connector never writes, whatever a mapping or a plan says: passwords and flags
it sets itself, and what carries rights (membership, SIDs, delegation, security descriptors)."""


# What AD's answers mean for a coordinator: its own reason codes (the first word of the message)
# and LDAP's result names.
_MEANINGS = {
    "00002071": "the name is already used by another object in the domain, perhaps outside "
    "the managed OU",
    "0000052D": "the password does not meet the domain's password policy",
    "00002035": "passwords can only be set over an encrypted connection (use ldaps:// or StartTLS)",
    "00000005": "the bind account lacks the rights (delegate control of the managed OU to it)",
    "insufficientAccessRights": "the bind account lacks the rights (delegate control of the "
    "managed OU to it)",
    "noSuchObject": "the parent OU does not exist",
    "invalidCredentials": "wrong user name or password",
    "constraintViolation": "a value breaks a rule of the directory (length, format or policy)",
}


def _explain(result: dict[str, Any] | None) -> str:
    """AD answers with a result name and a message whose first word is the real reason code; both
    are kept, with what they mean in front."""
    if not result:
        return "no answer from the DC"
    description = str(result.get("description", "error"))
    message = " ".join((result.get("message") or "").split())
    code = message.split(":", 1)[0].upper()
    return explain(
        f"{description}: {message}" if message else description, (code, description), _MEANINGS
    )


MANAGED_OBJECTS = (
    "(|(objectClass=organizationalUnit)(objectClass=group)"
    "(&(objectClass=user)(!(objectClass=computer))))"
)
"""What a read of the managed root asks for: OUs, groups and user accounts (not computers)."""


class _Folded(NamedTuple):
    """An incremental read: the kept objects with what changed folded in."""

    objects: dict[str, ad_read.Kept]
    changed: int
    """How many objects were read again."""
    gone: int
    differ: set[str]
    """The objectGUIDs of the objects read again, moved or gone: the only ones that may differ
    from the kept objects."""
    as_expected: bool
    """The result is what the caller was told to expect."""


class ActiveDirectory(BaseTarget):
    actions = frozenset(Action) - {Action.ADD_OWNER, Action.REMOVE_OWNER, Action.CONFLICT}

    def __init__(
        self,
        config: AdConfig,
        *,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        """``sleep`` and ``clock`` are the seams every target takes (:func:`open_target`); AD
        never waits, so they go unused."""
        del sleep, clock
        self.config = config
        self.names = ("sAMAccountName", config.anchor_attribute)
        self.root_dn = config.root_dn
        self._conn: Connection | None = None
        self._anchors: AnchorIndex[str] = AnchorIndex(lambda a, b: a.lower() == b.lower())
        self._indexed = False
        self._whole_searches = not config.paged_reads
        self._limited: tuple[int, str] | None = None  # how the DC refused one search
        self._anchor_key = config.anchor_attribute.casefold()  # as kept objects hold it
        self._account_attributes: tuple[str, ...] = ()
        self._privileged: _Privileged | None = None
        super().__init__()

    def handlers(self) -> Mapping[Action, Callable[..., Result]]:
        return {
            Action.CREATE_OU: self._create_ou,
            Action.CREATE: self._create,
            Action.ADOPT: self._adopt,
            Action.RENAME: self._rename,
            Action.MOVE: self._move,
            Action.UPDATE: self._update,
            Action.ENABLE: lambda change: self._set_enabled(change, True),
            Action.CREATE_GROUP: self._create_group,
            Action.RESTORE_GROUP: self._restore_group,
            Action.UPDATE_GROUP: self._update,
            Action.MOVE_GROUP: self._move,
            Action.ADD_MEMBER: self._add_members,
            Action.REMOVE_MEMBER: self._remove_members,
            Action.ARCHIVE_GROUP: self._move,  # into the archive OU, members and all
            Action.DISABLE: lambda change: self._set_enabled(change, False),
            Action.DELETE: self._delete,
            Action.DELETE_GROUP: self._delete,
        }

    limits: Mapping[str, int] = LIMITS
    group_limits: Mapping[str, int] = MappingProxyType({**LIMITS, "sAMAccountName": 256})
    """Only users are held to 20 characters of sAMAccountName (the pre-Windows 2000 logon name)."""
    has_ous = True
    has_owners = False  # managedBy holds one DN, not a set of owners: not written (yet)
    read_apart = helper.AVAILABLE
    """The reads of the whole root (in full; the list an incremental read needs) are made by a
    process of its own (:mod:`.ad_apart`); off, here (on Windows, and in tests that change how
    the DC answers)."""
    name_attributes = frozenset({"sAMAccountName", "userPrincipalName", "mail"})

    def describe(self) -> str:
        return f"Active Directory {self.config.url} below {self.root_dn}"

    def unsupported(
        self, account_attributes: Collection[str], group_attributes: Collection[str]
    ) -> list[str]:
        # AD's schema is the judge of the other names: a wrong one fails that change, clearly.
        return [
            f"{kind}: {name} ({why})"
            for kind, names, which in (
                ("accounts", account_attributes, Kind.ACCOUNT),
                ("groups", group_attributes, Kind.GROUP),
            )
            for name in sorted(names)
            if (why := self.attribute_refused(which, name)) is not None
        ]

    # -- the scope ------------------------------------------------------------------------------

    def fold(self, name: str) -> str:
        return name.casefold()  # LDAP attribute names are case-insensitive

    def attribute_refused(self, kind: Kind, name: str) -> str | None:
        folded = name.casefold()
        if kind is Kind.GROUP and folded == TEAM:
            return "Active Directory has no Teams: class teams (team: class) need Entra ID"
        if folded == LICENCES:
            return (
                "licences are assigned in Entra ID, never written in AD: with Entra Connect, "
                "give them by group-based licensing in Entra (docs/entra.md), or use the Entra "
                "ID target"
            )
        if folded in NEVER_WRITTEN:
            return "the connector never writes it: it carries rights or the connector sets it"
        anchors = (self.config.anchor_attribute, self.config.group_anchor_attribute)
        if folded in {a.casefold() for a in anchors}:
            return "the connector's key: the connector writes it itself"
        return None

    def manage_attributes(
        self, account_attributes: Collection[str], group_attributes: Collection[str]
    ) -> None:
        super().manage_attributes(account_attributes, group_attributes)
        # As the mappings spell them: the accounts read outside the root carry these.
        self._account_attributes = tuple(sorted(set(account_attributes)))

    def _maps(self, name: str) -> bool:
        """True when the mappings set the account attribute *name*."""
        return self._mapped is not None and self.fold(name) in self._mapped[Kind.ACCOUNT]

    def out_of_scope(self, change: Change) -> str | None:
        """Refuses an object outside the managed root, of another kind, or without the
        connector's key, and a new place that is not below the root. The one exception is an
        adoption from an ``adopt_from`` place (:meth:`_adoption_refused`)."""
        action, after = change.action, change.after
        moving_in = action is Action.ADOPT and after.get("ou") is not None
        if moving_in and (problem := self._place_refused(after.get("ou"))):
            return problem
        if action is Action.CREATE_OU:
            return self._place_refused(after.get("ou"))
        if action in (Action.CREATE, Action.CREATE_GROUP):
            name = after.get("cn") or (after.get("username") if action is Action.CREATE else None)
            return self._place_refused(after.get("ou"), str(name or change.key))
        object_id = change.precondition.id
        if object_id and not _is_guid(str(object_id)):
            return outside(f"{object_id!r} is not an object id (an objectGUID)")
        found = self._resolve(change)
        if found is None:
            if not change.precondition.id and not change.precondition.created_in_this_plan:
                return outside(f"{action} {change.key} names no object in the directory")
            return None  # gone since the plan: the precondition check says so
        if problem := self._object_refused(change, *found):
            return problem
        if action in (Action.MOVE, Action.MOVE_GROUP, Action.ARCHIVE_GROUP) or (
            action is Action.RESTORE_GROUP and "ou" in after
        ):
            return self._place_refused(after.get("ou"))
        return None

    def _resolve(self, change: Change) -> tuple[str, dict[str, Any]] | None:
        """The object *change* acts on, anywhere in the domain (so that one outside the managed
        root is refused by name instead of looking gone)."""
        config = self.config
        wanted = ["objectClass", config.anchor_attribute, config.group_anchor_attribute]
        if change.action is Action.ADOPT:  # what decides whether one outside may come in
            wanted += ["adminCount", "memberOf", "primaryGroupID"]
        pre = change.precondition
        if pre.id:
            return self._by_id(str(pre.id), wanted)
        if pre.created_in_this_plan and change.kind == Kind.GROUP:
            dn = self._find_anchor(Kind.GROUP, change.key)
            return self._by_dn(dn, wanted) if dn else None
        return None

    def _object_refused(self, change: Change, dn: str, values: dict[str, Any]) -> str | None:
        if not self.below_root(dn):
            if change.action is Action.ADOPT and change.kind == Kind.ACCOUNT:
                return self._adoption_refused(change, dn, values)
            return outside(f"{dn} is outside the managed OU {self.root_dn}")
        classes = {c.lower() for c in values.get("objectClass", [])}
        is_group = change.kind == Kind.GROUP
        if (
            ("group" not in classes)
            if is_group
            else ("user" not in classes or "computer" in classes)
        ):
            return outside(f"{dn} is not {'a group' if is_group else 'a user account'}")
        config = self.config
        attribute = config.group_anchor_attribute if is_group else config.anchor_attribute
        anchor = text(values.get(attribute))
        if anchor == change.key or (anchor is None and change.action in ADOPTION and not is_group):
            return None
        if not is_group and carried_over(change, anchor):
            return None
        carried = f"it carries {anchor!r}" if anchor else "it carries none"
        return outside(
            f"{dn} does not carry the connector's key {change.key!r} in {attribute} ({carried})"
        )

    def _adoption_refused(self, change: Change, dn: str, values: dict[str, Any]) -> str | None:
        """Why the account at *dn*, outside the managed root, may not be moved in by this
        adoption, or None. Admitted only: a user account below an ``adopt_from`` place, that
        carries exactly this person's anchor (never found by name alone), is no protected or
        privileged account, and that the adoption moves below the managed root."""
        config = self.config
        classes = {c.lower() for c in values.get("objectClass", [])}
        anchor = text(values.get(config.anchor_attribute))
        why: str | None = None
        if not any(_is_below(dn, place) for place in config.adopt_from_dns):
            why = (
                "it lies in no place named by adopt_from"
                if config.adopt_from
                else "adopt_from names no place to adopt accounts from"
            )
        elif "user" not in classes or "computer" in classes:
            why = "it is not a user account"
        elif not carries(anchor, change.key):
            carried = f"it carries {anchor!r}" if anchor else "it carries none"
            why = (
                f"it does not carry the anchor {change.key!r} in {config.anchor_attribute} "
                f"({carried}); an account is adopted from outside only by its anchor, never by "
                "its name"
            )
        elif protected := self._protected(values):
            why = f"a protected account is never adopted: {protected}"
        elif not isinstance(change.after.get("ou"), list):
            why = "the change does not move it into the managed OU"
        if why is None:
            return None
        return outside(
            f"{dn} is outside the managed OU {self.root_dn} and cannot be adopted: {why}"
        )

    def _place_refused(self, ou: Any, name: str | None = None) -> str | None:
        """Why the place a change makes or moves an object to is not below the managed root.
        The place is a path of OU names below the root, each escaped into exactly one RDN
        (:meth:`ou_dn`): a name that looks like a DN is an OU of that odd name, below the root.
        What is checked is that the path is one: a list of names."""
        if not isinstance(ou, list) or not all(isinstance(p, str) and p.strip() for p in ou):
            return outside(f"the OU path {ou!r} is not a list of OU names")
        if name is not None and not name.strip():
            return outside(f"the name {name!r} is empty")
        return None

    def below_root(self, dn: str) -> bool:
        """True when *dn* lies strictly below the managed root, compared as parsed DNs (an RDN
        at a time, escapes undone, case-insensitively), never as a string suffix."""
        return _is_below(dn, self.root_dn)

    # -- connection -----------------------------------------------------------------------------

    def connect(self) -> Connection:
        if self._conn is None:
            self._conn = self._open()
        return self._conn

    def _open(self) -> Connection:
        """A new connection to the DC, bound as the configured account."""
        config = self.config
        parts = urlsplit(config.url)
        secure = parts.scheme == "ldaps"
        tls = Tls(
            validate=ssl.CERT_REQUIRED,
            ca_certs_file=str(config.ca_file) if config.ca_file else None,
        )
        server = Server(
            parts.hostname,
            port=parts.port or (636 if secure else 389),
            use_ssl=secure,
            tls=tls,
            connect_timeout=math.ceil(config.timeout.connect),
            get_info=None,
        )
        conn = Connection(
            server,
            user=config.bind_user,
            password=config.password.reveal(),
            receive_timeout=math.ceil(config.timeout.receive),  # ldap3 packs it as an int
            auto_range=True,  # members beyond the DC's range limit come in further reads
            raise_exceptions=False,
            read_only=False,
        )
        try:
            conn.open()  # raises when the DC cannot be reached
            if conn.closed:
                raise TargetError(f"cannot reach {config.url}")
            if config.start_tls and not conn.start_tls():
                raise TargetError(f"{config.url}: StartTLS failed: {_explain(conn.result)}")
            if not conn.bind():
                raise TargetError(
                    f"{config.url}: the DC refused the bind as {config.bind_user}: "
                    f"{_explain(conn.result)}"
                )
        except LDAPException as exc:
            problem = tls_hint(str(exc) or type(exc).__name__)
            raise TargetError(f"cannot reach {config.url}: {problem}") from None
        return conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.unbind()
            self._conn = None

    # -- names ----------------------------------------------------------------------------------

    def ou_dn(self, path: Iterable[str]) -> str:
        parts = [f"OU={escape_rdn(name)}" for name in reversed(list(path))]
        return ",".join([*parts, self.root_dn])

    def object_dn(self, name: str, ou: Iterable[str]) -> str:
        return f"CN={escape_rdn(name)},{self.ou_dn(ou)}"

    def ou_path(self, dn: str) -> tuple[str, ...] | None:
        """The OU path of *dn* below the managed root, or None when it is not below it."""
        parts = [(a.upper(), _unescape(v)) for a, v, _ in parse_dn(dn, escape=False)]
        root = _folded_rdns(self.root_dn)
        tail = parts[len(parts) - len(root) :] if len(parts) >= len(root) else []
        if [(a, v.casefold()) for a, v in tail] != root:
            return None
        below = parts[: len(parts) - len(root)]
        return tuple(value for attr, value in reversed(below) if attr == "OU")

    # -- read -----------------------------------------------------------------------------------

    def read_attributes(self, attributes: Collection[str]) -> list[str]:
        """What :meth:`read` asks the DC for: the mapped *attributes* and what telling objects
        apart needs (the DN and name come with every entry)."""
        config = self.config
        return sorted(
            {
                *attributes,
                "cn",
                "objectClass",
                "objectGUID",
                "sAMAccountName",
                "userAccountControl",
                config.anchor_attribute,
                config.group_anchor_attribute,
                "member",
            }
            - {"distinguishedName", "name"}
        )

    def read_scope(self, wanted: Collection[str]) -> str:
        """What a kept read holds: a kept read of another scope is never the base of a read."""
        config = self.config
        return "|".join(
            (
                f"ad-read/{ad_read.FORMAT}",
                self.root_dn,
                config.base_dn,
                ",".join(sorted(wanted)),
                config.anchor_attribute,
                config.group_anchor_attribute,
                "/".join(self.archive_ou),
            )
        )

    def read(self, attributes: Collection[str], base: ReadBase | None = None) -> ObservedState:
        """Every OU, user and group below the managed root, with paged searches; with *base*,
        only what changed since the kept read, folded into it (:mod:`.ad_read`)."""
        config = self.config
        state = ObservedState()
        seen: set[str] = set()  # adopt_from places may nest: each account once
        for place in config.adopt_from_dns:  # few: read live every time
            for account in self._accounts_outside(place, attributes):
                if account.target.casefold() not in seen:
                    seen.add(account.target.casefold())
                    state.outside.append(account)
        if not self._exists(self.root_dn):
            return state  # a first run: the managed root is created by the plan
        wanted = self.read_attributes(attributes)
        scope = self.read_scope(wanted)
        mark: dict[str, Any] | None = None
        last = None
        why_full = "no state store to keep the read in"
        if base is not None:
            last = base.last(scope)
            why_full = base.why_full
        if base is not None and (base.keeps or last is not None):
            # Before the read: what changes during it is read again next time. A dry run keeps
            # nothing, but checks that the kept read comes from this DC.
            mark = self._watermark()
            if mark is None:
                last, why_full = None, "the DC's invocationId or highest USN cannot be read"
            elif last is not None and (problem := ad_read.watermark_problem(last.watermark, mark)):
                last, why_full = None, problem
        folded = None
        differ: set[str] | None = None  # of an incremental read: what may differ from the base
        expected: list[ObservedState] = []

        def expect(objects: Mapping[str, ad_read.Kept]) -> None:
            assert base is not None
            # Remembers nothing (the anchor index waits for the read's end).
            expected.append(
                self._observed(objects, attributes, ObservedState(outside=[*state.outside]))
            )
            base.expect(expected[0])

        guess = None
        if last is not None:
            folded = self._read_changes(wanted, last, expect)
            if folded is None:
                last, why_full = None, "the DC gave no objectGUID in extended DNs"
        elif base is not None and mark is not None:
            guess = functools.partial(self._guess_whole, wanted, base, scope, mark, expect)
        if folded is None or last is None:
            objects, guessed = self._read_whole(wanted, guess)
            # The full read gave what the kept read with the changes since foretold.
            as_expected = guessed is not None and objects == guessed
            log.event(
                f"read the managed OU in full ({len(objects)} objects): {why_full}",
                objects=len(objects),
                why=why_full,
            )
        else:
            objects, changed, gone, differ, as_expected = folded
            log.event(
                f"read the managed OU incrementally: {changed} changed, {gone} gone since "
                f"{last.read_at:%Y-%m-%d %H:%M} (USN {last.watermark['usn']})",
                objects=len(objects),
                changed=changed,
                gone=gone,
                since=last.read_at.isoformat(),
            )
        if base is not None and base.keeps and mark is not None:
            base.keep(scope, mark, objects, full=last is None, changed=differ)
        # As expected: the very state the caller was told, so that it may know its work stands.
        observed = expected[0] if as_expected else self._observed(objects, attributes, state)
        self._remember(observed)
        return observed

    def _watermark(self) -> dict[str, Any] | None:
        """The DC's invocationId and highest committed USN, or None when they cannot be read."""
        found = self._by_dn("", ["highestCommittedUSN", "dsServiceName"])
        usn = text(found[1].get("highestCommittedUSN")) if found else None
        service = text(found[1].get("dsServiceName")) if found else None
        settings = self._by_dn(service, ["invocationId"]) if service else None
        invocation = settings[1].get("invocationId") if settings else None
        if isinstance(invocation, list):
            invocation = invocation[0] if invocation else None
        if not (usn and usn.isdigit() and isinstance(invocation, bytes) and len(invocation) == 16):
            return None
        return {"invocation_id": str(uuid.UUID(bytes_le=invocation)), "usn": int(usn)}

    def _managed(
        self,
        search_filter: str,
        attributes: list[str],
        *,
        whole: bool = False,
        conn: Connection | None = None,
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """(extended DN, values) of each managed object below the root that *search_filter*
        finds; a search the DC fails is an error, never a shorter answer (that would look like
        objects gone). *whole*: in one search when the DC allows it, for entries so small that
        the whole answer may be held at once. *conn*: another connection than the target's."""
        conn = conn or self.connect()
        if whole and self._whole_searches:
            # Samba answers one search in half the time of the same search in pages: its paged
            # search fetches each object it returns a second time, by objectGUID. A DC that
            # limits what one search returns (AD's MaxPageSize) says so, and is read in pages.
            conn.search(
                self.root_dn,
                search_filter,
                search_scope=SUBTREE,
                attributes=attributes,
                controls=[ad_read.EXTENDED_DN],
            )
            result = conn.result or {}
            code = result.get("result", 0)
            if code == 0:
                for entry in conn.response or ():
                    if entry.get("type") == "searchResEntry":
                        yield entry["dn"], entry["attributes"]
                return
            if code not in ad_read.LIMIT_RESULTS:
                raise TargetError(f"cannot read {self.root_dn}: {_explain(result)}")
            self._whole_searches = False
            self._limited = (code, str(result.get("description")))
        entries = conn.extend.standard.paged_search(
            self.root_dn,
            search_filter,
            search_scope=SUBTREE,
            attributes=attributes,
            paged_size=self.config.page_size,
            generator=True,
            controls=[ad_read.EXTENDED_DN],
        )
        for entry in entries:
            if entry.get("type") == "searchResEntry":
                yield entry["dn"], entry["attributes"]
        result = conn.result or {}
        if result.get("result", 0) != 0:
            raise TargetError(f"cannot read {self.root_dn}: {_explain(result)}")

    def _read_all(
        self, wanted: list[str], search_filter: str = MANAGED_OBJECTS
    ) -> dict[str, ad_read.Kept]:
        """Every managed object below the root (that *search_filter* finds), by objectGUID."""
        kept = ad_read.kept_attributes(wanted)
        return dict(
            ad_read.kept_object(dn, values, kept)
            for dn, values in self._managed(search_filter, wanted)
            if ad_read.managed(values)
        )

    def _read_whole(
        self,
        wanted: list[str],
        meanwhile: Callable[[], dict[str, ad_read.Kept] | None] | None = None,
    ) -> tuple[dict[str, ad_read.Kept], dict[str, ad_read.Kept] | None]:
        """Every managed object below the root, read in full by a helper process (unless
        :attr:`read_apart` is off), and what *meanwhile* gave: it runs here while the helper
        reads (before the read, without a helper: the connection is one). Not in parts at the
        same time (an OU each): Samba's index gives a search below any base every object of
        its kinds in the domain to check, so two parts cost it twice the whole."""
        meanwhile = meanwhile or (lambda: None)
        if not self.read_apart:
            guessed = meanwhile()
            return self._read_all(wanted), guessed
        whole: InBackground[dict[str, ad_read.Kept]] = InBackground(
            functools.partial(ad_apart.read_apart, self.config, "_read_all", wanted=wanted),
            name="read the managed OU",
        )
        try:
            guessed = meanwhile()
        finally:
            objects = whole.result()  # its error, if both failed
        return objects, guessed

    def _guess_whole(
        self,
        wanted: list[str],
        base: ReadBase,
        scope: str,
        mark: Mapping[str, Any],
        expect: Callable[[Mapping[str, ad_read.Kept]], None],
    ) -> dict[str, ad_read.Kept] | None:
        """What a full read will most likely give: the last read of *scope* kept in *base*
        (however old) with what changed since folded in, handed to *expect*; None without a
        kept read from this DC. Never trusted: the full read is compared with it."""
        kept = base.guess(scope)
        if kept is None or ad_read.watermark_problem(kept.watermark, mark):
            return None
        guessed = kept.objects | self._changed_since(wanted, kept.objects, kept.watermark)
        expect(guessed)
        return guessed

    def _changed_since(
        self, wanted: list[str], kept: Mapping[str, ad_read.Kept], since: Mapping[str, Any]
    ) -> dict[str, ad_read.Kept]:
        """The managed objects below the root changed since the watermark *since*, and the
        groups of *kept* whose members are kept by DN (read again every night)."""
        # uSNChanged alone, the kinds picked here: Samba then answers from its index of
        # uSNChanged, in a third of the time it takes with the kinds in the filter.
        changed = self._read_all(wanted, f"(uSNChanged>={since['usn'] + 1})")
        ranged = [g for g, o in kept.items() if g not in changed and ad_read.ranged(o)]
        changed.update(self._by_guid(wanted, ranged))
        return changed

    def _read_changes(
        self,
        wanted: list[str],
        last: LastRead,
        expect: Callable[[Mapping[str, ad_read.Kept]], None],
    ) -> _Folded | None:
        """The objects of the *last* read with what changed since its watermark folded in; None
        when the DC does not say which objects are there by objectGUID (see :mod:`.ad_read`).
        *expect* is given the kept objects with the changes folded in while the list of what is
        there (the slow part) is still read."""
        # The DC lists what is there while the changes are read here, on another connection.
        listed = InBackground(self._present, name="list the managed OU")
        try:
            kept = last.objects  # decoded while the DC lists
            changed = self._changed_since(wanted, kept, last.watermark)
            expected = kept | changed
            expect(expected)
        finally:
            present = listed.result()  # its error, if both failed
        if present is None:
            return None  # the DC ignored the control: only a full read can tell
        # Below the root without a change of their own (below an OU moved in): read by GUID.
        changed.update(self._by_guid(wanted, [g for g in present if g not in expected]))
        objects = {}
        differ = set(changed)
        for guid, dn in present.items():
            found = changed.get(guid) or kept.get(guid)
            if found is not None:  # else gone again between the two reads
                objects[guid] = [dn, *found[1:]]
                if dn != found[0]:
                    differ.add(guid)  # below an OU renamed or moved
        gone = [guid for guid in kept if guid not in present]
        differ.update(gone)
        # An OU renamed or moved carries its subtree to new DNs: only the list shows them.
        as_expected = len(present) == len(expected) and all(
            guid in expected and expected[guid][0] == dn for guid, dn in present.items()
        )
        return _Folded(objects, len(changed), len(gone), differ, as_expected)

    def _by_guid(self, wanted: list[str], guids: list[str]) -> dict[str, ad_read.Kept]:
        """The managed objects below the root with these objectGUIDs, read in batches."""
        found: dict[str, ad_read.Kept] = {}
        for batch in ad_read.batches(guids, _NAME_BATCH):
            found.update(
                self._read_all(wanted, f"(&{MANAGED_OBJECTS}{ad_read.guid_filter(batch)})")
            )
        return found

    def _present(self) -> dict[str, str] | None:
        """objectGUID → DN of each managed object below the root, read by a process of its own
        unless :attr:`read_apart` is off; None when the DC gives no objectGUID in extended DNs."""
        whole = self._whole_searches
        if self.read_apart:
            present, limited = ad_apart.read_apart(self.config, "_list", whole=whole)
        else:
            present, limited = self._list(whole=whole)
        if limited is not None:
            self._whole_searches = False
            code, description = limited
            log.event(
                f"the DC limits what one search returns ({description}): "
                "the managed OU is read in pages",
                code=code,
            )
        return present

    def _list(self, *, whole: bool) -> tuple[dict[str, str] | None, tuple[int, str] | None]:
        """What :meth:`_present` gives, read here on a connection of its own; and the result
        code and description with which the DC refused one search, if it did (then in pages)."""
        self._whole_searches, self._limited = whole, None
        conn = self._open()
        try:
            present: dict[str, str] = {}
            for extended, _ in self._managed(MANAGED_OBJECTS, ["1.1"], whole=True, conn=conn):
                guid, dn = ad_read.split_extended(extended)  # the DN alone: the cheapest entry
                if guid is None:
                    return None, self._limited
                present[guid] = dn
            return present, self._limited
        finally:
            conn.unbind()

    def _observed(
        self, objects: Mapping[str, ad_read.Kept], attributes: Collection[str], state: ObservedState
    ) -> ObservedState:
        """*state* with the managed objects: one way from what was read, in full or folded, to
        the observed state. In the order of their DNs, so that both give the same."""
        config = self.config
        order = sorted(objects.items(), key=lambda item: item[1][0].casefold())
        users: dict[str, str | None] = {}  # objectGUID → anchor
        parent_paths: dict[str, tuple[str, ...]] = {}
        folded = [(name, name.casefold()) for name in attributes]
        group_anchor = config.group_anchor_attribute.casefold()
        groups = []
        for guid, (dn, kind, values, members) in order:
            if kind == ad_read.OU:
                if path := self.ou_path(dn):
                    state.ous.add(path)
                continue
            # Thousands of objects share a few hundred parents: each parent DN is parsed once.
            parent = ad_read.parent_dn(dn)
            parent_path = parent_paths.get(parent)
            if parent_path is None:
                parent_path = parent_paths[parent] = self.ou_path(parent) or ()
            simple = {name: value for name, key in folded if (value := values.get(key)) is not None}
            if kind == ad_read.GROUP:
                groups.append((guid, dn, values, members, parent_path, simple))
                continue
            account = self._account(guid, dn, values, parent_path, simple)
            users[guid] = account.anchor
            state.accounts.append(account)
        by_dn: dict[str, str] | None = None  # only for members kept by DN (rare)
        for guid, dn, values, members, parent_path, simple in groups:
            key = values.get(group_anchor)
            if by_dn is None and any("=" in member for member in members):
                by_dn = {objects[g][0].casefold(): g for g in users}
            member_guids = (
                by_dn.get(member.casefold(), "") if by_dn and "=" in member else member
                for member in members
            )
            member_anchors = {found for member in member_guids if (found := users.get(member))}
            # Archived: it lies in the archive OU (the day is the state store's to remember).
            archived = "" if _folded(parent_path) == _folded(self.archive_ou) else None
            state.groups.append(
                ObservedGroup(guid, dn, key, parent_path, simple, member_anchors, archived=archived)
            )
        return state

    def _remember(self, state: ObservedState) -> None:
        """Index the anchored accounts and groups of a read of the whole root."""
        for account in state.accounts:
            if account.anchor:
                self._anchors.remember(Kind.ACCOUNT, account.anchor, account.target)
        for group in state.groups:
            if group.key:
                self._anchors.remember(Kind.GROUP, group.key, group.target)
        self._indexed = True  # every anchored object below the root was just seen

    def _account(
        self,
        guid: str,
        dn: str,
        values: Mapping[str, Any],
        ou: tuple[str, ...],
        attributes: dict[str, Any],
    ) -> ObservedAccount:
        """The observed account of a kept user object; *attributes* by the mappings' names."""
        uac = int(values.get("useraccountcontrol") or NORMAL_ACCOUNT)
        return ObservedAccount(
            id=guid,
            target=dn,
            anchor=values.get(self._anchor_key),
            username=values.get("samaccountname") or "",
            ou=ou,
            attributes=attributes,
            enabled=not uac & ACCOUNT_DISABLE,
        )

    def _accounts_outside(self, base: str, attributes: Collection[str]) -> list[ObservedAccount]:
        """The user accounts below *base* but outside the managed root that carry an anchor
        value, each with why it may never be adopted (``protected``). A *base* that does not
        exist holds none (an adopt_from OU emptied and removed after the move)."""
        anchor_attribute = self.config.anchor_attribute
        wanted = {
            *attributes,
            "objectGUID",
            "sAMAccountName",
            "userAccountControl",
            "adminCount",
            "memberOf",
            "primaryGroupID",
            anchor_attribute,
        } - {"distinguishedName", "name"}
        found = []
        entries = self._paged(
            base,
            f"(&{_USER_ACCOUNTS}({anchor_attribute}=*))",
            sorted(wanted),
            missing_ok=True,
        )
        for entry in entries:
            dn, values = entry["dn"], entry["attributes"]
            if self.below_root(dn):
                continue
            uac = int(text(values.get("userAccountControl")) or NORMAL_ACCOUNT)
            found.append(
                ObservedAccount(
                    id=_guid(values),
                    target=dn,
                    anchor=text(values.get(anchor_attribute)),
                    username=text(values.get("sAMAccountName")) or "",
                    ou=(),
                    attributes={
                        name: value
                        for name in attributes
                        if (value := text(values.get(name))) is not None
                    },
                    enabled=not uac & ACCOUNT_DISABLE,
                    protected=self._protected(values),
                )
            )
        return found

    def anchored_outside(self) -> list[ObservedAccount]:
        """Every user account in the domain outside the managed root that carries an anchor
        value, with the attributes the mappings set (for the adoption report)."""
        return self._accounts_outside(self.config.base_dn, self._account_attributes)

    def taken_outside(self, values: Collection[str]) -> dict[str, str]:
        """Of *values*, those an object outside the managed root holds anywhere in the domain as
        its sAMAccountName, userPrincipalName, mail or an smtp: proxy address: casefolded value
        → the DN of the object (the first by DN when several hold it). Searched in batches; every
        value is escaped into the filter, so ``*`` or ``(`` in a name match only themselves."""
        # Searched as given (the DC compares without case by its own rules), matched casefolded.
        wanted = sorted({value.casefold(): value for value in values if value.strip()}.items())
        held: dict[str, str] = {}
        for start in range(0, len(wanted), _NAME_BATCH):
            batch = dict(wanted[start : start + _NAME_BATCH])
            clauses = "".join(
                f"(sAMAccountName={value})(userPrincipalName={value})(mail={value})"
                f"(proxyAddresses=smtp:{value})"  # AD matches proxyAddresses without case
                for value in map(escape_filter_chars, batch.values())
            )
            entries = self._paged(self.config.base_dn, f"(|{clauses})", _NAME_ATTRIBUTES)
            for entry in sorted(entries, key=lambda entry: str(entry["dn"]).casefold()):
                if self.below_root(entry["dn"]):
                    continue  # the managed scope: the planner knows these itself
                for name in _names_held(entry["attributes"]) & batch.keys():
                    held.setdefault(name, entry["dn"])
        return held

    def _paged(
        self,
        base: str,
        search_filter: str,
        attributes: Iterable[str],
        *,
        missing_ok: bool = False,
    ) -> list[dict[str, Any]]:
        """The entries of a paged subtree search. A search the DC refuses is an error (never
        "nothing found"), except a *base* that does not exist when *missing_ok*."""
        conn = self.connect()
        entries = [
            entry
            for entry in conn.extend.standard.paged_search(
                base,
                search_filter,
                search_scope=SUBTREE,
                attributes=list(attributes),
                paged_size=self.config.page_size,
                generator=True,
            )
            if entry.get("type") == "searchResEntry"
        ]
        result = conn.result or {}
        if result.get("result", 0) != 0:
            if missing_ok and result.get("description") == "noSuchObject":
                return []
            raise TargetError(
                f"cannot search {base}: {_explain(result)}; the bind account needs to read "
                "the whole domain to check names and find accounts outside the managed OU"
            )
        return entries

    def _protected(self, values: Mapping[str, Any]) -> str | None:
        """Why an account may never be adopted (adminCount=1, or membership of a privileged
        group, nested or as its primary group), or None."""
        if text(values.get("adminCount")) == "1":
            return "adminCount=1 (a protected, privileged account)"
        privileged = self._privileged_groups()
        for group in values.get("memberOf") or []:
            name = privileged.by_dn.get(_dn_key(group))
            if name is not None:
                through = "" if _dn_key(group) in privileged.own else f" (through {group})"
                return f"member of the privileged group {name}{through}"
        primary = text(values.get("primaryGroupID"))
        if primary and (name := privileged.by_sid.get(f"{privileged.domain_sid}-{primary}")):
            return f"its primary group is the privileged group {name}"
        return None

    def _privileged_groups(self) -> _Privileged:
        """The privileged groups of the domain, and every group nested in one, read once."""
        if self._privileged is not None:
            return self._privileged
        found = self._by_dn(self.config.base_dn, ["objectSid"])
        domain_sid = _sid(found[1]) if found else ""
        if not domain_sid.startswith("S-1-5-21-"):
            # Without it Domain Admins cannot be recognised: refuse rather than guess.
            raise TargetError(
                f"cannot read the domain's SID from {self.config.base_dn} (needed to recognise "
                "privileged accounts): check base_dn and that the bind account can read it"
            )
        privileged = _Privileged(domain_sid)
        for sid_or_rid, name in PRIVILEGED_GROUPS.items():
            sid = f"{domain_sid}{sid_or_rid}" if sid_or_rid.startswith("-") else sid_or_rid
            group = self._by_dn(f"<SID={sid}>", ["1.1"])
            if group is None:
                continue  # Schema and Enterprise Admins live in the forest's root domain only
            privileged.own.add(_dn_key(group[0]))
            privileged.by_dn[_dn_key(group[0])] = name
            privileged.by_sid[sid] = name
            nested = self._paged(
                self.config.base_dn,
                f"(&(objectClass=group)(memberOf:{_IN_CHAIN}:={escape_filter_chars(group[0])}))",
                ["objectSid"],
            )
            for entry in nested:
                privileged.by_dn.setdefault(_dn_key(entry["dn"]), name)
                privileged.by_sid.setdefault(_sid(entry["attributes"]), name)
        self._privileged = privileged
        return privileged

    def _exists(self, dn: str) -> bool:
        conn = self.connect()
        return bool(conn.search(dn, "(objectClass=*)", search_scope=BASE, attributes=["1.1"]))

    def _by_dn(self, dn: str, attributes: Iterable[str]) -> tuple[str, dict[str, Any]] | None:
        conn = self.connect()
        if not conn.search(dn, "(objectClass=*)", search_scope=BASE, attributes=list(attributes)):
            return None
        entry = conn.response[0]
        return entry["dn"], entry["attributes"]

    def _by_id(
        self, object_id: str, attributes: Iterable[str]
    ) -> tuple[str, dict[str, Any]] | None:
        conn = self.connect()
        guid = object_id.strip("{}")
        if not conn.search(
            f"<GUID={guid}>", "(objectClass=*)", search_scope=BASE, attributes=list(attributes)
        ):
            return None
        entry = conn.response[0]
        return entry["dn"], entry["attributes"]

    def _find_anchor(self, kind: Kind, anchor: str) -> str | None:
        """The DN of the object carrying *anchor*, or None (also when two objects carry it)."""
        if not self._indexed:
            self._load_anchor_index()
        return self._anchors.find(kind, anchor)

    def _load_anchor_index(self) -> None:
        """Every anchored object below the managed root, in one paged search: apply checks that
        each new object is still absent, and one search beats one per object."""
        self._indexed = True
        if not self._exists(self.root_dn):
            return
        config = self.config
        account, group = config.anchor_attribute, config.group_anchor_attribute
        entries = self.connect().extend.standard.paged_search(
            self.root_dn,
            f"(|(&(objectClass=user)(!(objectClass=computer))({account}=*))"
            f"(&(objectClass=group)({group}=*)))",
            search_scope=SUBTREE,
            attributes=["objectClass", account, group],
            paged_size=config.page_size,
            generator=True,
        )
        for entry in entries:
            if entry.get("type") != "searchResEntry":
                continue
            values = entry["attributes"]
            is_group = "group" in {c.lower() for c in values.get("objectClass", [])}
            anchor = text(values.get(group if is_group else account))
            if anchor:
                self._anchors.remember(
                    Kind.GROUP if is_group else Kind.ACCOUNT, anchor, entry["dn"]
                )

    # -- apply ----------------------------------------------------------------------------------

    def apply_all(
        self, changes: Iterable[Change], passwords: Mapping[int, str]
    ) -> Iterator[Result]:
        """One change at a time: LDAP has no batches worth the complexity (one modify per change
        already carries all members)."""
        for index, change in enumerate(changes):
            yield self.apply(change, password=passwords.get(index))

    def apply(self, change: Change, *, password: str | None = None) -> Result:
        """Apply one change if its precondition still holds; otherwise skip it and say why.
        A new account gets *password* (without one, a random one nobody will know)."""
        try:
            step = self.ready(change, password)
            return step if isinstance(step, Result) else step(change)
        except LDAPException as exc:
            return Result(change, "failed", f"{type(exc).__name__}: {exc}")

    # -- preconditions (the checks themselves are BaseTarget.check) ------------------------------

    def already_there(self, change: Change) -> str | None:
        if change.kind == Kind.OU:
            return "already exists" if self._exists(self.ou_dn(change.after["ou"] or ())) else None
        found = self._find_anchor(change.kind, change.key)
        return f"already exists as {found} (an earlier run?)" if found else None

    def group_exists(self, key: str) -> bool:
        return self._find_anchor(Kind.GROUP, key) is not None

    def current(self, change: Change) -> Current | None:
        anchor_attribute = self.config.anchor_attribute
        wanted = [
            "sAMAccountName",
            "userAccountControl",
            anchor_attribute,
            *(change.precondition.attributes or {}),
        ]
        found = self._by_id(str(change.precondition.id), wanted)
        if found is None:
            return None
        dn, values = found
        uac = int(text(values.get("userAccountControl")) or NORMAL_ACCOUNT)
        return Current(
            lambda name: text(values.get(name)),
            username=text(values.get("sAMAccountName")) or "",
            enabled=not uac & ACCOUNT_DISABLE,
            anchor=text(values.get(anchor_attribute)),
            ou=self.ou_path(_split_dn(dn)[1]),
        )

    # -- the handlers -------------------------------------------------------------------------

    def _ok(self, change: Change, message: str = "") -> Result:
        return Result(change, "applied", message)

    def _fail(self, change: Change) -> Result:
        return Result(change, "failed", _explain(self.connect().result))

    def _create_ou(self, change: Change) -> Result:
        path = tuple(change.after["ou"] or ())
        conn = self.connect()
        # The managed root itself may be missing on a first run.
        if not self._exists(self.root_dn):
            name = parse_dn(self.config.managed_root, escape=False)[0][1]
            if not conn.add(self.root_dn, ["top", "organizationalUnit"], {"ou": name}):
                return self._fail(change)
        if conn.add(self.ou_dn(path), ["top", "organizationalUnit"], {"ou": path[-1]}):
            return self._ok(change)
        if conn.result.get("description") == "entryAlreadyExists":
            return Result(change, "skipped", "already exists")
        return self._fail(change)

    def _create(self, change: Change, *, password: str) -> Result:
        after = change.after
        username = str(after["username"])
        ou = tuple(after["ou"] or ())
        dn = self.object_dn(str(after.get("cn") or username), ou)
        attributes = {
            name: value
            for name, value in after.items()
            if name not in ("username", "ou", *_RDN_ATTRIBUTES) and value not in ("", None)
        }
        attributes.setdefault("sAMAccountName", username)
        attributes[self.config.anchor_attribute] = change.key
        # The password travels only inside the TLS connection; apply puts it on the hand-out sheet.
        attributes["unicodePwd"] = f'"{password}"'.encode("utf-16-le")
        attributes["userAccountControl"] = NORMAL_ACCOUNT
        if self.config.must_change_password:
            attributes["pwdLastSet"] = 0  # must change the password at the next logon
        conn = self.connect()
        if not conn.add(dn, ["top", "person", "organizationalPerson", "user"], attributes):
            failure = _explain(conn.result)  # before the look for a twin answers another result
            return self._twin(change, dn, self.config.anchor_attribute) or Result(
                change, "failed", failure
            )
        self._anchors.put(Kind.ACCOUNT, change.key, dn)
        return self._ok(change)

    def _twin(self, change: Change, dn: str, anchor_attribute: str) -> Result | None:
        """A create that found its object already made, with this key, by another run at the
        same moment (or an earlier attempt): applied, and the password it was given was not
        set. None when the name is taken by anything else."""
        if self.connect().result.get("description") != "entryAlreadyExists":
            return None
        found = self._by_dn(dn, [anchor_attribute])
        if found is None or text(found[1].get(anchor_attribute)) != change.key:
            return None
        kind = Kind.GROUP if change.kind == Kind.GROUP else Kind.ACCOUNT
        self._anchors.put(kind, change.key, dn)
        if kind == Kind.GROUP:
            return Result(change, "applied", f"{dn} was already there (made by another run)")
        return Result(
            change,
            "applied",
            f"{dn} was already there (made by another run at the same time); "
            "its password is not the one of this run",
            password_unknown=True,
        )

    def _dn(self, change: Change) -> str:
        """The object's DN now (check() has made sure it exists)."""
        found = self._by_id(str(change.precondition.id), ["1.1"])
        assert found is not None
        return found[0]

    def _update(self, change: Change) -> Result:
        return self._modify(change, self._dn(change), change.after)

    def _modify(self, change: Change, dn: str, values: dict[str, Any]) -> Result:
        conn = self.connect()
        if values.get("cn"):
            # The name is the object's RDN: renaming is a modify_dn, not an attribute write.
            new_rdn = f"CN={escape_rdn(str(values['cn']))}"
            rdn, parent = _split_dn(dn)
            if _unescape(new_rdn).casefold() != _unescape(rdn).casefold():
                if not conn.modify_dn(dn, new_rdn):
                    return self._fail(change)
                dn = f"{new_rdn},{parent}"
        modifications = {
            name: [(MODIFY_REPLACE, [value] if value not in ("", None) else [])]
            for name, value in values.items()
            if name not in _RDN_ATTRIBUTES
        }
        if not modifications or conn.modify(dn, modifications):
            return self._ok(change)
        return self._fail(change)

    def _adopt(self, change: Change) -> Result:
        """Write the anchor and the attributes; an account adopted from an ``adopt_from`` place
        (after has ``ou``) is first moved into the managed root, so that nothing is written to
        it while it is still outside."""
        after = {n: v for n, v in change.after.items() if n not in ("anchor", "ou")}
        after[self.config.anchor_attribute] = change.key
        dn = self._dn(change)
        moved = ""
        if change.after.get("ou") is not None:
            rdn, parent = _split_dn(dn)
            superior = self.ou_dn(change.after["ou"] or ())
            if _dn_key(parent) != _dn_key(superior):
                conn = self.connect()
                if not conn.modify_dn(dn, rdn, new_superior=superior):
                    failure = _explain(conn.result)
                    if conn.result.get("description") == "insufficientAccessRights":
                        failure += (
                            f"; moving an account in from {parent} needs the right to delete "
                            "objects there (see adopt_from in docs/security.md)"
                        )
                    return Result(change, "failed", failure)
                moved, dn = f"moved in from {parent}", f"{rdn},{superior}"
                self._anchors.put(Kind.ACCOUNT, change.key, dn)
        result = self._modify(change, dn, after)
        if result.status == "applied":
            # Later changes of this plan find the account by its anchor, where it is now (an
            # account carried over no longer answers to its former anchor).
            if change.precondition.anchored is not None:
                self._anchors.forget(Kind.ACCOUNT, change.precondition.anchored)
            self._anchors.put(Kind.ACCOUNT, change.key, dn)
            return self._ok(change, moved)
        if moved:  # in the managed root now, with its anchor: the next plan updates it
            return Result(change, "failed", f"{moved}, but {result.message}")
        return result

    def _rename(self, change: Change) -> Result:
        """A new username and the unique attributes that change with it: sAMAccountName (also
        when the mappings do not set it), the attributes in ``after``, and, for a new username,
        the object's name (its RDN) unless the mappings set ``cn`` themselves. A changed mail
        keeps the old address as an ``smtp:`` proxy address, so mail sent to it still arrives
        where Exchange or Entra Connect reads it."""
        after = change.after
        username = str(after["username"])
        found = self._by_id(str(change.precondition.id), ["mail", "proxyAddresses"])
        assert found is not None  # check() found it
        dn, now = found
        written: dict[str, Value] = {n: v for n, v in after.items() if n != "username"}
        by_fold = {name.casefold(): name for name in written}
        if "samaccountname" not in by_fold:
            written["sAMAccountName"] = username
        modifications: dict[str, list[tuple[str, list[Any]]]] = {
            name: [(MODIFY_REPLACE, [value] if value not in ("", None) else [])]
            for name, value in written.items()
            if name.casefold() not in _RDN_FOLDED
        }
        old_mail = text(now.get("mail"))
        new_mail = text(written.get(by_fold.get("mail", "mail")))
        if (
            "mail" in by_fold
            and old_mail
            and (new_mail or "").casefold() != old_mail.casefold()
            and not _holds_address(now.get("proxyAddresses"), old_mail)
        ):
            proxy = by_fold.get("proxyaddresses", "proxyAddresses")
            modifications.setdefault(proxy, []).append((MODIFY_ADD, [f"smtp:{old_mail}"]))
        conn = self.connect()
        note = ""
        cn = next((v for n, v in written.items() if n.casefold() == "cn"), None)
        # Named after the username when the mappings do not name it: only a new username
        # renames it (a new mail alone leaves a hand-made name such as CN=Jan Peeters alone).
        new_username = username.casefold() != str(change.before.get("username") or "").casefold()
        follows = new_username and not self._maps("cn")
        object_name = str(cn) if cn else (username if follows else None)
        rdn, parent = _split_dn(dn)
        new_rdn = f"CN={escape_rdn(object_name)}" if object_name else rdn
        if _unescape(new_rdn).casefold() != _unescape(rdn).casefold():
            if conn.modify_dn(dn, new_rdn):
                dn = f"{new_rdn},{parent}"
            elif conn.result.get("description") == "entryAlreadyExists":
                # The logon name matters more than the object's name: rename it all the same.
                note = f"its object name stays {rdn}: {new_rdn} is taken in {parent}"
            else:
                return self._fail(change)
        self._anchors.put(Kind.ACCOUNT, change.key, dn)
        if conn.modify(dn, modifications):
            return self._ok(change, note)
        return self._fail(change)

    def _move(self, change: Change) -> Result:
        dn = self._dn(change)
        superior = self.ou_dn(change.after["ou"] or ())
        rdn = _split_dn(dn)[0]
        if self.connect().modify_dn(dn, rdn, new_superior=superior):
            kind = Kind.GROUP if change.kind == Kind.GROUP else Kind.ACCOUNT
            self._anchors.put(kind, change.key, f"{rdn},{superior}")
            return self._ok(change)
        return self._fail(change)

    def _restore_group(self, change: Change) -> Result:
        """A group back from the archive: moved to its place, then its attributes written."""
        dn = self._dn(change)
        if change.after.get("ou") is not None:
            rdn = _split_dn(dn)[0]
            superior = self.ou_dn(change.after["ou"] or ())
            if not self.connect().modify_dn(dn, rdn, new_superior=superior):
                return self._fail(change)
            dn = f"{rdn},{superior}"
            self._anchors.put(Kind.GROUP, change.key, dn)
        result = self._modify(change, dn, {n: v for n, v in change.after.items() if n != "ou"})
        if result.status == "applied" and change.after.get("cn"):
            self._anchors.put(Kind.GROUP, change.key, self._dn(change))  # renamed as well
        return result

    def _set_enabled(self, change: Change, enabled: bool) -> Result:
        dn = self._dn(change)
        found = self._by_id(str(change.precondition.id), ["userAccountControl"])
        uac = int(text((found[1] if found else {}).get("userAccountControl")) or NORMAL_ACCOUNT)
        wanted = uac & ~ACCOUNT_DISABLE if enabled else uac | ACCOUNT_DISABLE
        if self.connect().modify(dn, {"userAccountControl": [(MODIFY_REPLACE, [wanted])]}):
            return self._ok(change)
        return self._fail(change)

    def _create_group(self, change: Change) -> Result:
        after = change.after
        dn = self.object_dn(str(after.get("cn") or change.key), after["ou"] or ())
        attributes = {
            name: value
            for name, value in after.items()
            if name not in ("ou", *_RDN_ATTRIBUTES) and value not in ("", None)
        }
        attributes[self.config.group_anchor_attribute] = change.key
        attributes["groupType"] = GLOBAL_SECURITY_GROUP
        if not self.connect().add(dn, ["top", "group"], attributes):
            failure = _explain(self.connect().result)
            return self._twin(change, dn, self.config.group_anchor_attribute) or Result(
                change, "failed", failure
            )
        self._anchors.put(Kind.GROUP, change.key, dn)
        return self._ok(change)

    def _group_dn(self, change: Change) -> str | None:
        object_id = change.precondition.id
        if object_id:
            found = self._by_id(str(object_id), ["1.1"])
            return found[0] if found else None
        return self._find_anchor(Kind.GROUP, change.key)

    def _add_members(self, change: Change) -> Result:
        return self._members(change, MODIFY_ADD, list(change.after.get("members") or []))

    def _remove_members(self, change: Change) -> Result:
        return self._members(change, MODIFY_DELETE, list(change.before.get("members") or []))

    def _members(self, change: Change, operation: str, anchors: list[str]) -> Result:
        group = self._group_dn(change)
        assert group is not None  # check() found it
        dns, missing = [], []
        for anchor in anchors:
            dn = self._find_anchor(Kind.ACCOUNT, anchor)
            managed = dn is not None and self.below_root(dn)
            (dns if managed else missing).append(dn if managed else anchor)
        conn = self.connect()
        done = 0
        for start in range(0, len(dns), _MEMBER_BATCH):
            batch = dns[start : start + _MEMBER_BATCH]
            if conn.modify(group, {"member": [(operation, batch)]}):
                done += len(batch)
                continue
            # Some were already (not) members, e.g. after a run killed half-way: one by one,
            # treating "already there" / "already gone" as done.
            for dn in batch:
                if conn.modify(group, {"member": [(operation, [dn])]}) or conn.result.get(
                    "description"
                ) in ("entryAlreadyExists", "noSuchAttribute", "unwillingToPerform"):
                    done += 1
                else:
                    return self._fail(change)
        if missing and operation == MODIFY_ADD:
            # Only managed accounts become members: the others are named, and the change fails.
            return Result(
                change,
                "failed",
                f"{done} member(s) added; {len(missing)} not added: not a managed account (no "
                f"account below the managed OU {self.root_dn} carries the key): "
                + ", ".join(missing),
            )
        note = (
            f"; {len(missing)} member account(s) not found: {', '.join(missing)}" if missing else ""
        )
        return self._ok(change, f"{done} member(s){note}")

    def reset_password(self, anchor: str, password: str) -> str:
        """Give the account with *anchor* a new password; returns its DN."""
        dn = self._find_anchor(Kind.ACCOUNT, anchor)
        if dn is None:
            raise TargetError(f"no managed account carries anchor {anchor}")
        changes: dict[str, Any] = {
            "unicodePwd": [(MODIFY_REPLACE, [f'"{password}"'.encode("utf-16-le")])]
        }
        if self.config.must_change_password:
            changes["pwdLastSet"] = [(MODIFY_REPLACE, [0])]
        if not self.connect().modify(dn, changes):
            raise TargetError(f"cannot set the password of {dn}: {_explain(self.connect().result)}")
        return dn

    def _delete(self, change: Change) -> Result:
        if self.connect().delete(self._dn(change)):
            self._anchors.forget(change.kind, change.key)
            return self._ok(change)
        return self._fail(change)


@dataclass
class _Privileged:
    """The domain's privileged groups (:data:`PRIVILEGED_GROUPS`) and the groups nested in them,
    each with the privileged group it gives the rights of."""

    domain_sid: str
    by_dn: dict[tuple[RDN, ...], str] = field(default_factory=dict)
    by_sid: dict[str, str] = field(default_factory=dict)
    own: set[tuple[RDN, ...]] = field(default_factory=set)
    """The privileged groups themselves (the rest are nested in one)."""


def _dn_key(dn: str) -> tuple[RDN, ...]:
    """A DN as it compares (parsed, without case); the text itself when it does not parse."""
    try:
        return tuple(rdns(dn))
    except ValueError:
        return (frozenset({("", dn.casefold())}),)


def _sid(values: Mapping[str, Any]) -> str:
    """objectSid as text (S-1-5-…); without the schema, ldap3 hands over the raw bytes."""
    value = values.get("objectSid")
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, bytes):
        return str(format_sid(value))
    return str(value or "")


def _names_held(values: Mapping[str, Any]) -> set[str]:
    """The names an object holds (:data:`_NAME_ATTRIBUTES`), casefolded; of proxyAddresses only
    the SMTP addresses, without their ``smtp:`` prefix."""
    names = set()
    for attribute in _NAME_ATTRIBUTES:
        found = values.get(attribute)
        for value in found if isinstance(found, list) else [found]:
            name = text(value)
            if name is None:
                continue
            if attribute == "proxyAddresses":
                kind, colon, name = name.partition(":")
                if not colon or kind.casefold() != "smtp":
                    continue
            names.add(name.casefold())
    return names


def _holds_address(proxy_addresses: Any, address: str) -> bool:
    """True when *proxy_addresses* has an SMTP entry (primary or not) for *address*."""
    return address.casefold() in _names_held({"proxyAddresses": proxy_addresses or []})


def _folded(path: Iterable[str]) -> tuple[str, ...]:
    """An OU path as AD compares it: without case."""
    return tuple(name.casefold() for name in path)


def _split_dn(dn: str) -> tuple[str, str]:
    """(RDN, parent DN), splitting at the first unescaped comma (a name may hold ``\\,``)."""
    parts = parse_dn(dn, escape=False)
    rdn = f"{parts[0][0]}={parts[0][1]}"
    return rdn, ",".join(f"{attr}={value}" for attr, value, _sep in parts[1:])


def _is_below(dn: str, ancestor: str) -> bool:
    """True when *dn* lies strictly below *ancestor*, compared as parsed DNs (False for text that
    is not a DN)."""
    try:
        return below(rdns(dn), rdns(ancestor))
    except ValueError:
        return False


def _unescape(value: str) -> str:
    """An RDN value as text: RFC 4514 escapes undone (``\\,`` and hex pairs like ``\\3D``)."""
    out = bytearray()
    i = 0
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value):
            pair = value[i + 1 : i + 3]
            if len(pair) == 2 and all(c in string.hexdigits for c in pair):
                out.append(int(pair, 16))
                i += 3
                continue
            out += value[i + 1].encode()
            i += 2
            continue
        out += value[i].encode()
        i += 1
    return out.decode("utf-8", "replace")


def _is_guid(value: str) -> bool:
    try:
        uuid.UUID(value.strip("{}"))
    except ValueError:
        return False
    return True


def _guid(values: dict[str, Any]) -> str:
    """objectGUID as text; without the schema, ldap3 hands over the 16 raw bytes."""
    value = values.get("objectGUID")
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, bytes):
        return str(uuid.UUID(bytes_le=value))
    return str(value).strip("{}")


@functools.lru_cache(maxsize=8)
def _folded_rdns(dn: str) -> list[tuple[str, str]]:
    """*dn*'s (attribute, value) pairs, upper-cased and case-folded for comparison: the managed
    root, compared with the tail of every DN a read or a change meets."""
    return [(a.upper(), _unescape(v).casefold()) for a, v, _ in parse_dn(dn, escape=False)]
