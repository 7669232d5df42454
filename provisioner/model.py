"""The plain data handed from stage to stage: source rows → desired objects.

Nothing here knows Informat, LDAP or Graph. A source hands the mapping engine :class:`SourceRows`;
the engine hands the planner a :class:`DesiredState`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Record = dict[str, Any]


@dataclass
class Dataset:
    """All rows of one data set, each with the instellingsnummer (school) it came from."""

    key: str
    """The field that holds the person key in this data set."""
    rows: list[tuple[str, Record]]
    fields_seen: frozenset[str] = frozenset()
    """Every field name that occurred in the source answer, also those not kept."""
    kept: frozenset[str] | None = None
    """The fields the source kept (None: all of them)."""

    @property
    def not_fetched(self) -> frozenset[str]:
        """Fields the source has but did not keep."""
        if self.kept is None:
            return frozenset()
        return self.fields_seen - self.kept - {self.key}


@dataclass
class SourceRows:
    schools: list[str]
    """Schools (instellingsnummers) in configured order: the first is preferred for duplicates."""
    datasets: dict[str, Dataset]
    origin: str = ""
    """The source the rows come from (the mappings' ``{{ source }}``), for every record that does
    not name its own under :data:`SOURCE_FIELD` (the records of the further sources of several)."""


SOURCE_FIELD = "@source"
"""The field of a record naming the source it came from, where the rows of several sources are
merged; not a field templates can name, so it can never be mistaken for one of the source's."""


@dataclass(frozen=True, slots=True)
class Provenance:
    """Where a derived value comes from: the template, its place, and the source fields it reads."""

    template: str
    """The template's place in the mappings, e.g. ``accounts.pupils.attributes.mail``."""
    location: str
    """``file:line`` of the template."""
    text: str
    fields: tuple[str, ...]
    """Source fields the template reads, as ``Dataset.field``."""


TEAM = "team"
"""The group attribute a group kind's ``team: class`` becomes: ``class`` when the group has (or
gets) a class team. A target that makes teams compares and writes it; any other refuses it."""
CLASS_TEAM = "class"
"""The one kind of team the connector makes: a class team (Entra ID's ``educationClass``)."""


# slots: every account holds a Derived per attribute (millions at 400,000 pupils), 48 bytes
# each instead of 88 with a dict of its own.
@dataclass(frozen=True, slots=True)
class Derived:
    value: str
    why: Provenance


@dataclass(slots=True)
class DesiredAccount:
    kind: str
    """The account kind of the mappings (``pupils``, ``staff``)."""
    anchor: str
    """The stable source key written to the directory (e.g. p_persoon)."""
    username: str
    ou: tuple[str, ...]
    """OU path from the managed root downwards, e.g. ("Leerlingen", "030569", "1A")."""
    attributes: dict[str, Derived]
    school: str
    username_why: Provenance | None = None
    person: dict[str, Any] = field(repr=False, default_factory=dict)
    """The joined source records (referenced fields only), for ``explain``."""
    anchor_was: str | None = None
    unique: tuple[str, ...] = ()
    """The attributes the mappings keep unique (``unique``): with the username, the names that
    identify the person; a change of any of them is a rename."""
    """The anchor the account had before the mappings changed it (``anchor_was``): an account
    still carrying it is this one, and the plan carries it over in place."""


@dataclass(slots=True)
class DesiredGroup:
    kind: str
    key: str
    """The group's source anchor, e.g. ``klas-030569-1A``."""
    ou: tuple[str, ...]
    attributes: dict[str, Derived]
    members: set[str] = field(default_factory=set)
    """Anchors of member accounts."""
    owners: set[str] = field(default_factory=set)
    """Anchors of owner accounts (class teachers), where a target supports owners."""


@dataclass(frozen=True)
class Duplicate:
    """Several source rows for one person, and which one was used."""

    kind: str
    key: str
    rows: int
    chosen_school: str
    reason: str


@dataclass(frozen=True)
class Collision:
    """A unique name that was taken, and the name given instead."""

    kind: str
    anchor: str
    wanted: str
    given: str


@dataclass(frozen=True)
class NameChange:
    """An existing account whose name (the username or a unique attribute) the mappings would
    now make otherwise: a changed naming rule, or a changed name in the source."""

    kind: str
    anchor: str
    attribute: str
    """``username`` or the unique attribute (``mail``, ``userPrincipalName`` …)."""
    held: str
    """What the account holds now."""
    wanted: str
    """What the mappings make now (when it is free)."""
    follows: bool
    """True: the account is renamed (``username.rename: follow``); False: it keeps ``held``."""


@dataclass(frozen=True)
class NameClash:
    """A name the mappings wanted for a person that something outside the managed scope holds:
    the next free name was given instead."""

    name: str
    """Casefolded."""
    anchor: str
    where: str
    """Who holds it: a DN, a UPN."""


@dataclass
class MappingReport:
    persons: dict[str, int] = field(default_factory=dict)
    duplicates: list[Duplicate] = field(default_factory=list)
    collisions: list[Collision] = field(default_factory=list)
    names: list[NameChange] = field(default_factory=list)
    """Existing accounts whose name the mappings would now make otherwise (kept or renamed)."""
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    """Any error means the desired state is incomplete: nothing may be removed on its basis."""


@dataclass(frozen=True)
class Hold:
    """A person held for the night: a problem with their data only. Their existing account is
    left exactly as it is (not a leaver, no update, memberships untouched) and they get no new
    one; everyone else proceeds."""

    kind: str
    """The account kind of the mappings (``pupils``, ``staff``)."""
    key: str
    """The person key in the source (p_persoon)."""
    school: str
    reason: str
    anchor: str | None = None
    """Their anchor, when it could be made: what the planner protects in the directory."""
    dataset: str | None = None
    field: str | None = None


@dataclass
class DesiredState:
    accounts: dict[str, DesiredAccount] = field(default_factory=dict)
    """By anchor."""
    groups: dict[str, DesiredGroup] = field(default_factory=dict)
    """By key."""
    ous: set[tuple[str, ...]] = field(default_factory=set)
    report: MappingReport = field(default_factory=MappingReport)
    held: list[Hold] = field(default_factory=list)
    """Persons held for the night (see :class:`Hold`)."""
    unknown_rows: dict[str, int] = field(default_factory=dict)
    """Per school, rows whose person key could not be read: nobody knows who they are, so that
    school's leaver actions wait."""

    def withdraw(self, hold: Hold) -> None:
        """Hold a person found wanting after the engine (e.g. a value the directory cannot hold):
        their desired account, memberships and ownerships are taken out, a group left without
        members and an OU path no one else is placed in are not made, and the hold is listed.
        The planner then leaves their existing account exactly as it is."""
        if hold.anchor is not None and (account := self.accounts.pop(hold.anchor, None)):
            for key, group in list(self.groups.items()):
                group.members.discard(hold.anchor)
                group.owners.discard(hold.anchor)
                if not group.members:
                    del self.groups[key]
            used = {
                placed.ou[:depth]
                for placed in (*self.accounts.values(), *self.groups.values())
                for depth in range(1, len(placed.ou) + 1)
            }
            for depth in range(len(account.ou), 0, -1):
                if account.ou[:depth] not in used:
                    self.ous.discard(account.ou[:depth])
        self.held.append(hold)


# -- what a target holds ------------------------------------------------------------------------


@dataclass
class ObservedAccount:
    """An account as the directory holds it, in the managed scope."""

    id: str
    """The target's immutable id (objectGUID, Entra object id)."""
    target: str
    """Where it lives: a DN or an object path, for messages and preconditions."""
    anchor: str | None
    """The source anchor attribute; None for accounts made before the connector."""
    username: str
    ou: tuple[str, ...]
    attributes: dict[str, str]
    enabled: bool = True
    carried_from: str | None = None
    """Set by the planner when the account still carries the anchor it had before
    (``anchor_was``): ``anchor`` is then already the new one, and this the one in the directory."""
    protected: str | None = None
    """Why the connector may never adopt this account (an account outside the managed scope
    with ``adminCount=1``, or a member of a privileged group); None for every other account."""


@dataclass
class ObservedGroup:
    id: str
    target: str
    key: str | None
    ou: tuple[str, ...]
    attributes: dict[str, str]
    members: set[str] = field(default_factory=set)
    """Anchors of member accounts (members the connector does not manage are not listed)."""
    owners: set[str] = field(default_factory=set)
    unmanaged_owners: int = 0
    """Owners that are no managed account (an administrator, the fallback owner): they keep the
    group owned when its last managed owner goes."""
    archived: str | None = None
    """Set when the group is archived (the source no longer has it; kept until its deletion is
    due): the day it was archived as the directory shows it (YYYY-MM-DD), or "" when the
    directory does not say (AD: it lies in the archive OU). None: not archived."""


@dataclass
class ObservedState:
    accounts: list[ObservedAccount] = field(default_factory=list)
    groups: list[ObservedGroup] = field(default_factory=list)
    ous: set[tuple[str, ...]] = field(default_factory=set)
    outside: list[ObservedAccount] = field(default_factory=list)
    """Accounts outside the managed scope that carry an anchor, in a place the configuration
    allows adopting from (AD ``adopt_from``): their ``ou`` is empty, ``target`` their DN."""
    synced_left_alone: int = 0
    """Objects of the managed domains or prefix that another system synchronises into the
    directory (Entra Connect): outside the scope, only counted, for the plan to say."""
    licences_free: dict[str, int] = field(default_factory=dict)
    """Free units per licence (SKU part number) the mappings name, where the target holds
    licences: a plan that gives out more is blocked."""
