"""What every target offers the pipeline, and the base the targets share.

The pipeline and the planner see a target only through :class:`Target`; how a directory is
reached (LDAP, Microsoft Graph) stays inside the target's module or package. :class:`BaseTarget`
owns what the targets do alike: the dispatch of a change to its handler (a table keyed by
:class:`~provisioner.plan.model.Action`, checked when the target is built), the precondition
checks of a change (with a hook for the directory's current object), the scope checks that keep
apply inside what the configuration manages whatever a plan file says (with a hook for where the
directory's object lies), an index of the source anchors, the explanation of a directory's error
codes, the hint for an untrusted certificate, attribute values as text, and the password of a
create that was given none.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property, partial
from types import MappingProxyType
from typing import Any, ClassVar, Generic, Literal, Protocol, TypeVar

from provisioner.errors import ProvisionerError
from provisioner.log import register_secret
from provisioner.model import ObservedAccount, ObservedState
from provisioner.passwords import PasswordConfig, generate
from provisioner.plan.model import Action, Change, Kind, Precondition

R = TypeVar("R")

UNKNOWN_PASSWORD = PasswordConfig(style="random", length=24)
"""The form of the password a create gets when apply hands it none: nobody will ever know it."""


class TargetError(ProvisionerError):
    """The directory cannot be reached or refuses the connector as a whole."""


@dataclass(frozen=True)
class Result:
    change: Change
    status: Literal["applied", "skipped", "failed"]
    message: str = ""
    password_unknown: bool = False
    """A create that found its account already made (by an earlier or a parallel run): the
    password it was given was not set, so no sheet may show it."""


@dataclass(frozen=True)
class LastRead:
    """A read of the directory kept from an earlier night (see :mod:`provisioner.readcache`)."""

    watermark: Mapping[str, Any]
    """Where the directory's history stood just before that read began (the target's own)."""
    full_read_at: dt.datetime
    """When the objects were last read in full (the incremental reads since add to that)."""
    read_at: dt.datetime
    decode: Callable[[], Any] = field(repr=False, compare=False)
    """Gives :attr:`objects`: decoded when first asked for, so that a target may set its slow
    part going first (decoding 50,000 objects takes half a second)."""

    @cached_property
    def objects(self) -> Any:
        """What the target kept of that read (JSON data of its own shape)."""
        return self.decode()


class ReadBase(Protocol):
    """Where a target finds its last read and keeps the new one: an incremental read asks the
    directory only for what changed since the last read's watermark and folds it in."""

    why_full: str
    """Why :meth:`last` gave no base (a full read is due), for the log."""
    keeps: bool
    """True when :meth:`keep` keeps the read (not in a dry run, nor with ``full_read_every: 0``
    or before there is a state store): only then is a watermark worth taking."""

    def last(self, scope: str) -> LastRead | None:
        """The last read of *scope* when it may be the base of an incremental read, else None
        (none kept, another scope or mappings, its full read too old, a full read asked for).
        *scope* is the target's description of what it reads (root, attributes, format)."""
        ...

    def guess(self, scope: str) -> LastRead | None:
        """The last read kept of *scope* however old, when a full read is due: never a base,
        only a guess at what the full read will give (with the changes since folded in)."""
        ...

    def keep(
        self,
        scope: str,
        watermark: Mapping[str, Any],
        objects: Any,
        *,
        full: bool,
        changed: Collection[str] | None = None,
    ) -> None:
        """Keep *objects* (JSON data), read from *watermark* on, as the next read's base.
        *changed*: the keys of *objects* (a mapping) that may differ from those :meth:`last`
        gave, and the keys gone from them (None: unknown; all are written)."""
        ...

    def expect(self, observed: ObservedState) -> None:
        """What an incremental read (or a full read, from :meth:`guess`) will most likely give
        (the kept read with the changes folded in), told before its slow part: the caller may
        start on it. When the read ends as expected it returns this very object, so the caller
        knows its work stands. Called at most once, from the reading thread; neither side
        changes the state afterwards."""
        ...


class Target(Protocol):
    config: Any
    """The target's section of the configuration (it has ``match_on``)."""
    limits: Mapping[str, int]
    """Longest value the directory takes, per account attribute."""
    group_limits: Mapping[str, int]
    has_ous: bool
    """False for a directory without OUs: the mappings' OU paths are left out of the plan."""
    has_owners: bool
    """True when the target keeps group owners (the class teacher): only then are they planned."""
    needs_owner: bool
    """True when the directory refuses to take the last owner of a group away (Entra ID)."""
    fallback_owner: str | None
    """Who owns a group in place of its last owner when it has none left in the source (opaque
    to the planner: the target resolves it); None when not configured."""
    archive_ou: tuple[str, ...]
    """Where archived groups lie (``lifecycle.archive_ou``, set by the pipeline): a directory
    with OUs reports the groups there as archived."""
    licence_plans: Mapping[str, frozenset[str]]
    """The licences the mappings name: SKU part number → the service plans they leave off."""

    def describe(self) -> str:
        """What the plan is made against; a saved plan is applied only to the same."""
        ...

    def unsupported(
        self, account_attributes: Collection[str], group_attributes: Collection[str]
    ) -> list[str]:
        """Attributes the mappings set that this directory cannot hold, each with why."""
        ...

    name_attributes: frozenset[str]
    """The attributes that name a person in this directory (sAMAccountName, userPrincipalName,
    mail …): every value of them the connector writes is recorded as issued, never given to
    anyone else."""

    def read(self, attributes: Collection[str], base: ReadBase | None = None) -> ObservedState:
        """Every managed object with *attributes*. With *base*, the read may be incremental:
        the changes since the base's last read folded into it (the same result as a full read),
        and the new read kept there."""
        ...

    def taken_outside(self, values: Collection[str]) -> dict[str, str]:
        """Of *values* (usernames, mail addresses, UPNs), those a user, group or contact outside
        the managed scope already holds, anywhere in the domain or tenant, as the casefolded value
        → where it is held (a DN, a UPN), so that no create or rename takes a name that would
        fail on every night."""
        ...

    def anchored_outside(self) -> list[ObservedAccount]:
        """Every account outside the managed scope that carries an anchor value (for the
        adoption report): ``ou`` empty, ``target`` where it lives, ``protected`` set when it
        may never be adopted."""
        ...

    def check(self, change: Change) -> str | None:
        """Why *change* no longer fits the directory (drift, or done already), or None."""
        ...

    def apply_all(
        self, changes: Iterable[Change], passwords: Mapping[int, str]
    ) -> Iterator[Result]:
        """Apply the changes in order, yielding one result per change as soon as it is known;
        ``passwords`` holds the initial password of each create, by position."""
        ...

    def reset_password(self, anchor: str, password: str) -> str: ...

    def manage_attributes(
        self, account_attributes: Collection[str], group_attributes: Collection[str]
    ) -> None:
        """The attributes the mappings set: apply writes these and no others."""
        ...

    def manage_licences(self, named: Mapping[str, frozenset[str]]) -> None:
        """The licences the mappings name (part number → plans left off): only those SKUs are
        read and written (set by the pipeline, with :meth:`manage_attributes`)."""
        ...

    def close(self) -> None: ...


# -- values and errors ----------------------------------------------------------------------------


def text(value: Any) -> str | None:
    """One attribute value as text, or None when it holds nothing. A list (LDAP's multi-valued
    attributes) gives its first value, bytes are read as UTF-8, a bool is ``true``/``false``."""
    if isinstance(value, list):
        value = value[0] if value else None
    if value is None or value == "" or value == b"":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def explain(detail: str, codes: Iterable[str], meanings: Mapping[str, str]) -> str:
    """A directory's error in plain words: the meaning of the first of *codes* the table of
    *meanings* knows, in front of the directory's own *detail* (a support engineer wants both)."""
    meaning = next((meanings[code] for code in codes if code in meanings), None)
    return f"{meaning} ({detail})" if meaning else detail


def tls_hint(problem: str) -> str:
    """*problem* (a connection error) with what to do when the certificate was not trusted."""
    if "CERTIFICATE_VERIFY_FAILED" in problem:
        return problem + "; if a private CA signed it, give that CA as ca_file"
    return problem


def unsupported_action(change: Change) -> Result:
    """The one answer to a change the target has no handler for (a conflict, an owner change
    on a directory that keeps none): nothing is done."""
    return Result(change, "skipped", f"{change.action}: resolve by hand; nothing applied")


# -- the scope ------------------------------------------------------------------------------------

STRUCTURAL: Mapping[Action, frozenset[str]] = {
    Action.CREATE_OU: frozenset({"ou"}),
    Action.CREATE: frozenset({"username", "ou"}),
    # "ou": an account adopted from outside the managed root (adopt_from) moves in
    Action.ADOPT: frozenset({"anchor", "ou"}),
    Action.RENAME: frozenset({"username"}),
    Action.MOVE: frozenset({"ou"}),
    Action.ENABLE: frozenset({"enabled"}),
    Action.DISABLE: frozenset({"enabled"}),
    Action.CREATE_GROUP: frozenset({"ou"}),
    # back from the archive: to its place (a directory with OUs), with mapped attributes
    Action.RESTORE_GROUP: frozenset({"ou"}),
    Action.MOVE_GROUP: frozenset({"ou"}),
    # the day, and the archive OU (a directory with OUs) or the name prefix (one without);
    # "team": its class team is archived with it
    Action.ARCHIVE_GROUP: frozenset({"archived", "ou", "prefix", "team"}),
    Action.ADD_MEMBER: frozenset({"members"}),
    Action.ADD_OWNER: frozenset({"owners"}),
    # the configured owner the target adds before it takes a group's last owner away
    Action.REMOVE_OWNER: frozenset({"fallback_owner"}),
}
"""The words of ``change.after`` the planner uses for itself, per action (not attributes: the
target turns them into a place, a name, a flag or references). Every other word is an attribute."""

MAPPED: Mapping[Action, Kind] = {
    Action.CREATE: Kind.ACCOUNT,
    Action.ADOPT: Kind.ACCOUNT,
    Action.RENAME: Kind.ACCOUNT,  # the unique attributes that change with the name
    Action.UPDATE: Kind.ACCOUNT,
    Action.CREATE_GROUP: Kind.GROUP,
    Action.RESTORE_GROUP: Kind.GROUP,
    Action.UPDATE_GROUP: Kind.GROUP,
}
"""The actions that write attributes, and whose (an account's or a group's mappings)."""

KIND_OF: Mapping[Action, Kind] = {
    **{action: Kind.ACCOUNT for action in Action},
    Action.CREATE_OU: Kind.OU,
    **{
        action: Kind.GROUP
        for action in Action
        if action.value.endswith(("_group", "_member", "_owner"))
    },
}
"""The one kind of object each action acts on."""

ADOPTION = frozenset({Action.ADOPT, Action.MOVE, Action.ENABLE})
"""What an account made before the connector (no anchor yet) may get: the adoption and the move
and enable that come with it. Every other change acts only on an account carrying its key."""


def outside(what: str) -> str:
    """The message of a refused change: what lies outside the managed scope, and that nothing was
    done (a hand-edited plan, or a plan made with another configuration)."""
    return (
        f"refused, nothing done: {what}. A plan can only act inside what the configuration "
        "manages; make a new plan (was this plan file edited?)"
    )


# -- the anchor index -----------------------------------------------------------------------------


class AnchorIndex(Generic[R]):
    """The managed objects by (kind, source anchor). An anchor found on two different objects
    is ambiguous: :meth:`find` then answers None, so nothing acts on either of them."""

    def __init__(self, same: Callable[[R, R], bool] = lambda a, b: a == b) -> None:
        self._same = same
        self._by_anchor: dict[tuple[Kind, str], R] = {}
        self._ambiguous: set[tuple[Kind, str]] = set()

    def remember(self, kind: Kind, anchor: str, ref: R) -> None:
        """*ref* carries *anchor*, as found in the directory (a second object makes it
        ambiguous)."""
        key = (kind, anchor)
        if key in self._by_anchor and not self._same(self._by_anchor[key], ref):
            self._ambiguous.add(key)
        self._by_anchor[key] = ref

    def put(self, kind: Kind, anchor: str, ref: R) -> None:
        """*ref* carries *anchor* now (made or moved by this run)."""
        self._by_anchor[(kind, anchor)] = ref

    def forget(self, kind: Kind, anchor: str) -> None:
        self._by_anchor.pop((kind, anchor), None)

    def find(self, kind: Kind, anchor: str) -> R | None:
        if self.ambiguous(kind, anchor):
            return None
        return self._by_anchor.get((kind, anchor))

    def ambiguous(self, kind: Kind, anchor: str) -> bool:
        return (kind, anchor) in self._ambiguous


# -- the base -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Current:
    """An existing object as the directory holds it now, for the precondition check."""

    value: Callable[[str], str | None]
    """An attribute's value now."""
    username: str
    enabled: bool
    anchor: str | None
    ou: tuple[str, ...] | None = None


def drift(pre: Precondition, now: Current, names: tuple[str, str]) -> str | None:
    """Why an existing object is no longer what the plan saw (its precondition), or None.
    *names* are the directory's names of the username and anchor attributes, for the message."""
    drifted = [
        name
        for name, before in (pre.attributes or {}).items()
        if (now.value(name) or "") != (before or "")
    ]
    username_attribute, anchor_attribute = names
    if pre.username is not None and now.username.casefold() != pre.username.casefold():
        drifted.append(username_attribute)
    if pre.ou is not None and now.ou != pre.ou:
        drifted.append("its OU")
    if pre.enabled is not None and now.enabled != pre.enabled:
        return "already " + ("disabled" if pre.enabled else "enabled")
    if pre.unanchored and now.anchor is not None:
        drifted.append(anchor_attribute)
    if pre.anchored is not None and not carries(now.anchor, pre.anchored):
        drifted.append(anchor_attribute)
    if drifted:
        return f"changed in the directory since the plan: {', '.join(drifted)}"
    return None


def carries(anchor: str | None, expected: str) -> bool:
    """True when an object's *anchor* is *expected* (as the directories compare: without case)."""
    return anchor is not None and anchor.casefold() == expected.casefold()


def carried_over(change: Change, anchor: str | None) -> bool:
    """True when *change* carries an account over from its former anchor (``anchor_was``) and
    the account still carries that former anchor: the one write of an anchor over another."""
    old = change.precondition.anchored
    return change.action is Action.ADOPT and old is not None and carries(anchor, old)


class BaseTarget:
    """The part of a target that does not depend on the directory.

    A subclass says which actions it carries out (:attr:`actions`) and gives their handlers
    (:meth:`handlers`); building the target fails when the two disagree, so a plan never meets a
    missing handler half-way through a night. It answers the precondition hooks
    (:meth:`already_there`, :meth:`group_exists`, :meth:`current`) and :attr:`names`.
    """

    actions: ClassVar[frozenset[Action]]
    """The actions this directory carries out; every other one is skipped with one message."""
    names: tuple[str, str]
    """The directory's names of the username and the anchor attribute, for drift messages."""
    needs_owner: bool = False
    fallback_owner: str | None = None
    name_attributes: frozenset[str] = frozenset()
    archive_ou: tuple[str, ...] = ("Archief",)
    licence_plans: Mapping[str, frozenset[str]] = MappingProxyType({})

    def manage_licences(self, named: Mapping[str, frozenset[str]]) -> None:
        self.licence_plans = MappingProxyType(dict(named))

    def taken_outside(self, values: Collection[str]) -> dict[str, str]:
        return {}

    def anchored_outside(self) -> list[ObservedAccount]:
        return []

    def __init__(self) -> None:
        table = dict(self.handlers())
        problems = {
            "not an Action": [str(a) for a in table if not isinstance(a, Action)],
            "without a handler": sorted(str(a) for a in self.actions - table.keys()),
            "not claimed": sorted(str(a) for a in table.keys() - self.actions),
            "not callable": sorted(str(a) for a, handler in table.items() if not callable(handler)),
        }
        if any(problems.values()):
            raise TypeError(
                f"{type(self).__name__}: its handler table does not match its actions: "
                + "; ".join(f"{what}: {names}" for what, names in problems.items() if names)
            )
        self._handlers: Mapping[Action, Callable[..., Any]] = table
        self._mapped: dict[Kind, frozenset[str]] | None = None

    def handlers(self) -> Mapping[Action, Callable[..., Any]]:
        """The handler of each action in :attr:`actions`. A create's handler also gets the
        account's initial password (keyword ``password``)."""
        raise NotImplementedError

    def ready(self, change: Change, password: str | None) -> Result | Callable[..., Any]:
        """What to do with *change*: a result when it is refused (outside the managed scope:
        failed) or skipped (no handler, or its precondition no longer holds), otherwise its
        handler."""
        handler = self._handlers.get(change.action)
        if handler is None:
            return unsupported_action(change)
        if refusal := self.refusal(change):
            return Result(change, "failed", refusal)
        if problem := self.drifted(change):
            return Result(change, "skipped", problem)
        if change.action is Action.CREATE:
            return partial(handler, password=password or unknown_password())
        return handler

    # -- the scope ------------------------------------------------------------------------------

    def manage_attributes(
        self, account_attributes: Collection[str], group_attributes: Collection[str]
    ) -> None:
        """The attributes the mappings set: from now on apply writes these and no others. Until
        this is called (a target used without mappings, a benchmark) only the directory's own
        refusals (:meth:`attribute_refused`) apply."""
        self._mapped = {
            Kind.ACCOUNT: frozenset(map(self.fold, account_attributes)),
            Kind.GROUP: frozenset(map(self.fold, group_attributes)),
        }

    def fold(self, name: str) -> str:
        """An attribute name as the directory compares it (LDAP's are case-insensitive)."""
        return name

    def attribute_refused(self, kind: Kind, name: str) -> str | None:
        """Why the connector never writes *name* in this directory, whatever the mappings say
        (the directory's own list: passwords, flags, group membership, the anchor)."""
        return None

    def refusal(self, change: Change) -> str | None:
        """Why *change* reaches outside what the configuration manages (it is refused and fails),
        or None: the action fits its kind, the attributes are ones the mappings set, and the
        object and every object it names lie in the managed scope (:meth:`out_of_scope`)."""
        kind = KIND_OF[change.action]
        if change.kind != kind:
            return outside(f"{change.action} acts on objects of kind {kind}, not {change.kind}")
        if problem := self._attributes_refused(change):
            return outside(problem)
        return self.out_of_scope(change)

    def _attributes_refused(self, change: Change) -> str | None:
        structural = STRUCTURAL.get(change.action, frozenset())
        names = [name for name in change.after if name not in structural]
        kind = MAPPED.get(change.action)
        if kind is None:
            return (
                f"{change.action} {change.key} sets {', '.join(sorted(names))}, which this "
                "action never writes"
                if names
                else None
            )
        refused = {
            name: why for name in names if (why := self.attribute_refused(kind, name)) is not None
        }
        if self._mapped is not None:
            refused |= {
                name: "the mappings do not set it"
                for name in names
                if name not in refused and self.fold(name) not in self._mapped[kind]
            }
        if not refused:
            return None
        listed = "; ".join(f"{name} ({why})" for name, why in sorted(refused.items()))
        return f"{change.action} {change.key} would write {listed}"

    def out_of_scope(self, change: Change) -> str | None:
        """Why the object *change* acts on, its new place, or an object it names (a member)
        lies outside the managed scope, or None. Each directory answers for its own scope."""
        return None

    # -- preconditions ------------------------------------------------------------------------

    def check(self, change: Change) -> str | None:
        """Why *change* no longer fits the directory (drift, or done already; or it lies
        outside the managed scope), or None."""
        return self.refusal(change) or self.drifted(change)

    def drifted(self, change: Change) -> str | None:
        """Why *change* no longer fits the directory (drift, or done already), or None."""
        pre = change.precondition
        if pre.absent:
            return self.already_there(change)
        if pre.created_in_this_plan:
            return None if self.group_exists(change.key) else "the group does not exist"
        if not pre.id:
            return None
        now = self.current(change)
        if now is None:
            return "the object is gone from the directory (drift)"
        return drift(pre, now, self.names)

    def already_there(self, change: Change) -> str | None:
        """Why a change that makes an object cannot (it exists already), or None."""
        raise NotImplementedError

    def group_exists(self, key: str) -> bool:
        raise NotImplementedError

    def current(self, change: Change) -> Current | None:
        """The object *change* acts on (``precondition.id``) as it is now, or None when gone."""
        raise NotImplementedError


def unknown_password() -> str:
    """The password of a create that apply gave none (a direct call, a benchmark): random, long,
    and unloggable; nobody will know it, a password reset hands out one that is known."""
    password = generate(UNKNOWN_PASSWORD)
    register_secret(password)
    return password
