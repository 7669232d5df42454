"""The planner: desired state + observed state + what the state store remembers → a plan.

Pure: it reads nothing and writes nothing. What the state store should remember once the plan is
applied (who left, who came back, each account's kind and school) is part of the plan, as its
:class:`~provisioner.plan.model.Observations`: a dry run leaves the store as it found it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from provisioner.gcpause import paused_gc
from provisioner.licences import shortages
from provisioner.model import Derived, DesiredGroup, DesiredState, ObservedState
from provisioner.plan.case import follow_directory_case
from provisioner.plan.diff import carry_over, diff
from provisioner.plan.lifecycle import LifecycleConfig, apply_lifecycle, group_lifecycle
from provisioner.plan.model import Action, Change, Kind, Observations, Plan, PlanHeader
from provisioner.plan.planfile import PLAN_VALID_FOR, now
from provisioner.plan.policy import (
    PolicyConfig,
    apply_policy,
    drop_blocks,
    held_blocks,
    in_window,
)
from provisioner.sources.base import Block


@dataclass(frozen=True)
class Origin:
    """What a plan is made from, for its header: apply checks these before it acts."""

    config_hash: str
    mappings_hash: str
    source_digest: str
    as_of: dt.date
    """The day the source data describes; leaver clocks are dated by it."""
    target: str


@dataclass(frozen=True)
class Memory:
    """What the state store remembers from earlier applied nights (read, never written here)."""

    leavers: Mapping[str, dt.date] = field(default_factory=dict)
    """Since when each known leaver is gone from the source."""
    kinds: Mapping[str, str] = field(default_factory=dict)
    """Account kind of every anchor ever seen."""
    schools: Mapping[str, str] = field(default_factory=dict)
    """The school each anchor was last seen in."""
    last_persons: tuple[str, Mapping[str, int]] | None = None
    """(day, accounts per school) of the last successful apply."""
    ids: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    """Per kind ("account", "group"), anchor → the directory's id as last recorded."""
    held: Mapping[tuple[str, str], dt.date] = field(default_factory=dict)
    """(account kind, person key) → the first day of each current hold."""
    disabled: Mapping[str, dt.date] = field(default_factory=dict)
    """The day each leaver's account was disabled (or first seen disabled), where recorded."""
    archived: Mapping[str, dt.date] = field(default_factory=dict)
    """Group key → the day the group was archived, where recorded."""
    deleted_groups: Mapping[str, dt.date] = field(default_factory=dict)
    """Group key → the day the connector deleted the group."""


@dataclass(frozen=True)
class Rules:
    """The configuration the planner applies."""

    policy: PolicyConfig = field(default_factory=PolicyConfig)
    lifecycle: LifecycleConfig = field(default_factory=LifecycleConfig)
    match_on: Sequence[str] = ("username",)
    driving: Collection[str] = ()
    """Data sets whose rows make accounts: a source block on one of them blocks the plan."""
    needs_owner: bool = False
    """The directory refuses to take a group's last owner away (the target's ``needs_owner``)."""
    fallback_owner: str | None = None
    """Who takes over as owner then (the target's ``fallback_owner``, opaque here)."""
    has_ous: bool = True
    """The directory has OUs (archived groups are moved) or not (they are marked)."""


@paused_gc()  # millions of small acyclic objects for a large plan: counting frees them
def make_plan(
    desired: DesiredState,
    observed: ObservedState,
    *,
    origin: Origin,
    rules: Rules,
    source_blocks: Sequence[Block] = (),
    memory: Memory = Memory(),
    school_names: Mapping[str, str] | None = None,
) -> Plan:
    """The plan with its header: hashes of what it was made from, expiry, and blocks, and the
    names the reports show (*school_names*: school number → name, from the source)."""
    created = now()
    today = origin.as_of
    # Accounts still carrying their former anchor are theirs, not leavers (mappings' anchor_was).
    observed = carry_over(desired, observed)
    blocked = [
        # A unit is a school or a file: the night waits for all, nobody leaves on a partial read.
        f"{b.dataset} for {b.unit} {b.reason}: nothing is applied, so that nobody is disabled "
        f"on an incomplete read" + (f" ({b.hint})" if b.hint else "")
        for b in source_blocks
        if b.dataset in rules.driving
    ]
    if desired.report.errors:
        blocked.append(
            f"the mappings reported {len(desired.report.errors)} error(s) (run validate): a plan "
            "made from incomplete data could remove what it should keep"
        )
    kinds = {**memory.kinds, **{a.anchor: a.kind for a in desired.accounts.values()}}
    schools = {**memory.schools, **{a.anchor: a.school for a in desired.accounts.values()}}
    held_anchors, kept, suspended_notes = _kept(desired, observed, schools)
    gone = [
        a.anchor
        for a in observed.accounts
        if a.anchor and a.anchor not in desired.accounts and a.anchor not in kept
    ]
    observed, misplaced = _not_archived_in_place(desired, observed, rules)
    # The school-year freeze is whole: besides their accounts (the policy holds those back),
    # leavers keep their group memberships, and no group is archived or deleted.
    frozen = in_window(today, rules.policy.freeze_leavers)
    waiting = set(gone) if frozen else set()
    changes = diff(desired, observed, match_on=tuple(rules.match_on), keep=kept, wait=waiting)
    changes, owner_notes = keep_an_owner(
        changes, observed, needs_owner=rules.needs_owner, fallback=rules.fallback_owner
    )
    lifecycle = apply_lifecycle(
        changes,
        observed,
        set(desired.accounts) | kept,
        since={**{anchor: today for anchor in gone}, **memory.leavers},
        kinds=kinds,
        config=rules.lifecycle,
        today=today,
        disabled=memory.disabled,
        frozen=frozen,
    )
    groups = group_lifecycle(
        observed,
        desired.groups.keys(),
        kept,
        archived=memory.archived,
        config=rules.lifecycle,
        today=today,
        frozen=frozen,
        has_ous=rules.has_ous,
    )
    lifecycle.changes = sorted([*lifecycle.changes, *groups.changes], key=lambda c: c.action.order)
    lifecycle.notes += groups.notes
    if frozen:
        lifecycle.notes += _freeze_note(observed, desired, waiting, groups.waiting, today, rules)
    recreated = _recreated_groups(lifecycle.changes, memory)
    managed_per_school: dict[str, int] = {}
    for account in observed.accounts:
        school = schools.get(account.anchor or "")
        if school:
            managed_per_school[school] = managed_per_school.get(school, 0) + 1
    verdict = apply_policy(
        lifecycle.changes,
        rules.policy,
        managed_accounts=len(observed.accounts),  # every account in the managed scope
        day=today,
        schools=schools,
        managed_per_school=managed_per_school,
        managed_groups=len(observed.groups),
    )
    persons: dict[str, int] = {}
    # A held person is still in the source: counted, so that holds never look like a drop.
    for account in (*desired.accounts.values(), *desired.held):
        persons[account.school] = persons.get(account.school, 0) + 1
    drops = drop_blocks(persons, memory.last_persons, rules.policy.max_drop)
    if frozen and drops:
        # In July Informat no longer lists the graduates: an expected drop. A drop blocks only to
        # keep leavers from being disabled on bad data, and in the freeze no leaver is.
        lifecycle.notes += [
            f"{block.limit}: in the school-year freeze nothing "
            "about leavers changes, so the night goes on"
            for block in drops
        ]
        drops = []
    held_ids = {(h.kind, h.key) for h in desired.held}
    nights = {
        person: (today - memory.held.get(person, today)).days + 1 for person in sorted(held_ids)
    }
    blocked += held_blocks(desired.held, persons, nights, rules.policy)
    blocked += shortages(verdict.changes, observed.licences_free)
    school_counts: dict[str, dict[str, int]] = {}
    for change in verdict.changes:
        if change.kind is not Kind.ACCOUNT:
            continue
        wanted = desired.accounts.get(change.key)
        school = wanted.school if wanted else schools.get(change.key, "(unknown)")
        per_action = school_counts.setdefault(school, {})
        per_action[change.action] = per_action.get(change.action, 0) + 1
    people = _people(verdict.changes, desired, observed)
    header = PlanHeader(
        created=created.isoformat(),
        expires=(created + PLAN_VALID_FOR).isoformat(),
        config_hash=origin.config_hash,
        mappings_hash=origin.mappings_hash,
        source_hash=origin.source_digest,
        target=origin.target,
        source_as_of=today.isoformat(),
        blocked=blocked,
        policy_blocked=[block.message for block in (*drops, *verdict.blocks)],
        policy_blocks=[*drops, *verdict.blocks],
        persons=persons,
        school_counts=school_counts,
        managed_accounts=len(observed.accounts),
        managed_per_school=managed_per_school,
        managed_groups=len(observed.groups),
        synced_left_alone=observed.synced_left_alone,
        account_schools={
            c.key: schools[c.key]
            for c in verdict.changes
            if c.kind is Kind.ACCOUNT and c.key in schools
        },
        school_names=dict(school_names or {}),
        people=people,
        group_names=_group_names(verdict.changes, people, desired, observed),
        leaver_dates=lifecycle.dates,
        held=[
            {
                "kind": h.kind,
                "key": h.key,
                "school": h.school,
                "reason": h.reason,
                "anchor": h.anchor,
                "dataset": h.dataset,
                "field": h.field,
                "since": memory.held.get((h.kind, h.key), today).isoformat(),
                "nights": nights[(h.kind, h.key)],
            }
            for h in desired.held
        ],
        warnings=[
            *suspended_notes,
            *suspicious_groups(lifecycle.changes, desired, observed),
            *desired.report.warnings,
            *lifecycle.notes,
            *verdict.notes,
            *owner_notes,
            *recreated,
            *misplaced,
        ],
    )
    observations = Observations(
        left=sorted(anchor for anchor in gone if anchor not in memory.leavers),
        # a held person is in the source: back, even though their account waits
        returned=sorted(
            anchor
            for anchor in memory.leavers
            if anchor in desired.accounts or anchor in held_anchors
        ),
        accounts={
            a.anchor: [a.kind, a.school]
            for a in desired.accounts.values()
            if memory.kinds.get(a.anchor) != a.kind or memory.schools.get(a.anchor) != a.school
        },
        ids=_new_ids(observed, memory.ids),
        held=[[kind, key] for kind, key in sorted(held_ids - memory.held.keys())],
        released=[[kind, key] for kind, key in sorted(memory.held.keys() - held_ids)],
        disabled=lifecycle.seen_disabled,
        archived=groups.seen_archived,
    )
    return Plan(header, verdict.changes, observations)


_NAME_ATTRIBUTES = ("displayName", "name", "cn")
"""Where a directory object's name for people is, in order of preference."""


def _name_of(attributes: Mapping[str, object]) -> str:
    for name in _NAME_ATTRIBUTES:
        value = attributes.get(name)
        value = value.value if isinstance(value, Derived) else value
        if isinstance(value, str) and value:
            return value
    return ""


def _people(
    changes: Sequence[Change], desired: DesiredState, observed: ObservedState
) -> dict[str, dict[str, str]]:
    """Name, username and most specific group of every account the changes act on or name as
    member or owner: what the reports show instead of anchors, and group changes by."""
    anchors: set[str] = set()
    for change in changes:
        if change.kind is Kind.ACCOUNT:
            anchors.add(change.key)
        for role in ("members", "owners"):
            for values in (change.before.get(role), change.after.get(role)):
                if isinstance(values, list):
                    anchors.update(values)
    # An account's class is the smallest group it is in (ties: by key): a class beside the
    # school-wide and all-staff groups. Leavers keep the group the directory shows.
    smallest: dict[str, tuple[int, str]] = {}
    groups = [(len(g.members), g.key, g.members) for g in desired.groups.values()]
    groups += [(len(g.members), g.key, g.members) for g in observed.groups if g.key]
    for size, key, members in sorted(groups, key=lambda group: group[:2]):
        for anchor in members & anchors:
            smallest.setdefault(anchor, (size, key))
    seen = {a.anchor: a for a in observed.accounts if a.anchor}
    people: dict[str, dict[str, str]] = {}
    for anchor in sorted(anchors):
        wanted, have = desired.accounts.get(anchor), seen.get(anchor)
        if wanted is not None:
            person = {"name": _name_of(wanted.attributes), "username": wanted.username}
        elif have is not None:
            person = {"name": _name_of(have.attributes), "username": have.username}
        else:
            continue
        if anchor in smallest:
            person["group"] = smallest[anchor][1]
        people[anchor] = person
    return people


def _group_names(
    changes: Sequence[Change],
    people: Mapping[str, Mapping[str, str]],
    desired: DesiredState,
    observed: ObservedState,
) -> dict[str, str]:
    """The names of the groups the changes act on and of the people's classes."""
    keys = {change.key for change in changes if change.kind is Kind.GROUP}
    keys |= {person["group"] for person in people.values() if "group" in person}
    names = {g.key: _name_of(g.attributes) for g in observed.groups if g.key in keys}
    names |= {key: _name_of(g.attributes) for key, g in desired.groups.items() if key in keys}
    return {key: name for key, name in sorted(names.items()) if name}


def _not_archived_in_place(
    desired: DesiredState, observed: ObservedState, rules: Rules
) -> tuple[ObservedState, list[str]]:
    """A group the mappings themselves place in the archive OU is not archived (it would be
    restored every night, in place): *observed* without that reading, and a warning."""
    if not rules.has_ous:
        return observed, []
    archive = tuple(name.casefold() for name in rules.lifecycle.archive_ou)
    placed = {
        key
        for key, group in desired.groups.items()
        if tuple(name.casefold() for name in group.ou) == archive
    }
    if not placed:
        return observed, []
    groups = [
        dataclasses.replace(g, archived=None) if g.key in placed else g for g in observed.groups
    ]
    where = "/".join(rules.lifecycle.archive_ou)
    return dataclasses.replace(observed, groups=groups), [
        f"the mappings place group(s) {', '.join(sorted(placed))} in {where}, the archive OU for "
        "groups the source no longer has (lifecycle.archive_ou): choose another archive_ou or "
        "another OU in the mappings, or archived and current groups cannot be told apart"
    ]


def _freeze_note(
    observed: ObservedState,
    desired: DesiredState,
    leavers: set[str],
    groups: int,
    today: dt.date,
    rules: Rules,
) -> list[str]:
    """One note for what the freeze holds back besides the leavers' accounts."""
    memberships = sum(
        len(g.members & leavers) + len(g.owners & leavers)
        for g in observed.groups
        if g.key in desired.groups
    )
    if not memberships and not groups:
        return []
    first, last = rules.policy.freeze_leavers
    return [
        f"{memberships} group membership(s) of leavers and {groups} group(s) the source no "
        f"longer has wait: {today.isoformat()} is in the school-year transition window {first} – "
        f"{last} (freeze_leavers); nothing about leavers changes until it ends"
    ]


def _recreated_groups(changes: Collection[Change], memory: Memory) -> list[str]:
    """A group made anew under a key the state store knows is a new object: what used the old
    one by its SID or object id (file shares, Teams) does not follow. Never silent."""
    known = memory.ids.get("group", {})
    notes = []
    for change in changes:
        key = change.key
        if change.action is not Action.CREATE_GROUP:
            continue
        if key in memory.deleted_groups:
            what = f"was deleted on {memory.deleted_groups[key]}"
        elif key in known or key in memory.archived:
            what = "is gone from the directory (the state store knew it)"
        else:
            continue
        notes.append(
            f"group {key} {what} and is made anew: file shares and Teams that used the old group "
            "will not follow (they used its SID/object id); give the new group access to them "
            "again"
        )
    return notes


def _kept(
    desired: DesiredState, observed: ObservedState, schools: Mapping[str, str]
) -> tuple[set[str], set[str], list[str]]:
    """(anchors of held persons, every anchor to leave exactly as it is, notes).

    A held person's account is kept by its anchor. A held person whose anchor could not be made,
    and a row whose person key could not be read, cannot be found in the directory: their
    school's leaver actions wait for the night instead (every account of that school missing
    from the desired state is kept), so that nobody is disabled for a problem of the data."""
    held_anchors = {h.anchor for h in desired.held if h.anchor} - desired.accounts.keys()
    unknown: dict[str, list[str]] = {}
    for school, rows in sorted(desired.unknown_rows.items()):
        if rows:
            unknown.setdefault(school, []).append(f"{rows} row(s) whose person key is unreadable")
    anchorless: dict[str, int] = {}
    for hold in desired.held:
        if hold.anchor is None:
            anchorless[hold.school] = anchorless.get(hold.school, 0) + 1
    for school, count in sorted(anchorless.items()):
        unknown.setdefault(school, []).append(f"{count} held person(s) without an anchor")
    kept = set(held_anchors)
    waiting: dict[str, int] = {}
    for account in observed.accounts:
        anchor = account.anchor
        if anchor is None or anchor in desired.accounts or anchor in kept:
            continue
        school = schools.get(anchor)
        if school in unknown:
            kept.add(anchor)
            waiting[school] = waiting.get(school, 0) + 1
        elif school is None and unknown:
            kept.add(anchor)  # its school is not remembered: it may be one of those that wait
    notes = [
        f"school {school}: {' and '.join(why)}: nobody can tell whose accounts they are, so that "
        f"school's leaver actions wait tonight ({waiting.get(school, 0)} account(s) kept as they "
        "are)"
        for school, why in unknown.items()
    ]
    return held_anchors, kept, notes


def _new_ids(
    observed: ObservedState, known: Mapping[str, Mapping[str, str]]
) -> dict[str, dict[str, str]]:
    """The directory's ids of managed objects that the state store does not know yet."""
    seen = {
        "account": {a.anchor: a.id for a in observed.accounts if a.anchor},
        "group": {g.key: g.id for g in observed.groups if g.key},
    }
    new = {
        kind: {key: id_ for key, id_ in ids.items() if known.get(kind, {}).get(key) != id_}
        for kind, ids in seen.items()
    }
    return {kind: ids for kind, ids in new.items() if ids}


@dataclass
class NamesInUse:
    """What the engine must know to give names: who holds which, and what was ever given."""

    existing: dict[str, str] = field(default_factory=dict)
    """Anchor → the username its account holds (or was last given, for a person who returns)."""
    held_values: dict[str, dict[str, str]] = field(default_factory=dict)
    """Anchor → the values of its unique attributes the directory holds."""
    issued: set[str] = field(default_factory=set)
    """Every name given or held: never given to anyone else."""
    own: dict[str, set[str]] = field(default_factory=dict)
    """Anchor → the names given to it before (it may get them back)."""


def names_in_use(
    observed: ObservedState,
    issued_to: Mapping[str, str],
    issued: Collection[str],
    *,
    own: Mapping[str, Collection[str]] | None = None,
    unique: Collection[str] = (),
) -> NamesInUse:
    """People keep their names, and a name once given is never given to someone else.
    *issued_to*, *issued* and *own* are what the state store remembers; *unique* the unique
    attributes of the mappings. Accounts without an anchor are left out: they may be adopted
    under their name. An account outside the managed scope that may be adopted keeps its name."""
    names = NamesInUse(issued=set(issued), own={a: set(n) for a, n in (own or {}).items()})
    for account in (*observed.accounts, *observed.outside):
        if not account.anchor or not account.username:
            continue
        names.existing[account.anchor] = account.username
        values = {a: v for a in unique if (v := account.attributes.get(a))}
        names.held_values[account.anchor] = values
        names.issued.update((account.username, *values.values()))
    # A person whose account was deleted and who comes back gets their own name again.
    for anchor, name in issued_to.items():
        names.existing.setdefault(anchor, name)
    return names


def fit_to_target(
    desired: DesiredState,
    account_limits: Mapping[str, int],
    group_limits: Mapping[str, int],
    observed: ObservedState | None = None,
    caseless: Collection[str] | None = None,
) -> None:
    """Cut values to the target's length limits, with a warning, so that the plan says what the
    directory will hold (a value the directory refuses would fail on every run). Names that
    identify a person (anchor, logon name) are never cut: those persons were held already. In a
    directory that ignores case (*caseless* given: AD), OU paths, group keys, anchors and the
    *caseless* attributes take the case *observed* holds, so that the plan converges
    (:mod:`provisioner.plan.case`)."""
    if caseless is not None and observed is not None:
        follow_directory_case(desired, observed, caseless)
    for objects, limits in (
        (desired.accounts.values(), account_limits),
        (desired.groups.values(), group_limits),
    ):
        for obj in objects:
            for name, derived in obj.attributes.items():
                limit = limits.get(name)
                if limit is not None and len(derived.value) > limit:
                    obj.attributes[name] = Derived(derived.value[:limit], derived.why)
                    which = obj.key if isinstance(obj, DesiredGroup) else obj.anchor
                    desired.report.warnings.append(
                        f"{derived.why.template}: {name} of {which} cut to {limit} characters, "
                        "the directory's limit"
                    )


def drop_unsupported(desired: DesiredState, *, ous: bool, owners: bool) -> None:
    """Leave out what the directory cannot keep: OU paths (Entra ID has no OUs), group owners
    (Active Directory here keeps none), so that the plan never proposes them."""
    if not ous:
        desired.ous.clear()
        for obj in (*desired.accounts.values(), *desired.groups.values()):
            obj.ou = ()
    if not owners:
        for group in desired.groups.values():
            group.owners.clear()


def keep_an_owner(
    changes: Sequence[Change],
    observed: ObservedState,
    *,
    needs_owner: bool,
    fallback: str | None,
) -> tuple[list[Change], list[str]]:
    """The changes, with care for a group whose last owner would go (its class teacher left and
    the source names no other), and a warning for each group left without a fallback.

    Decided here rather than in the target so that the plan shows it and converges: the planner
    only learns from the target that it refuses ownerless groups (*needs_owner*) and the name of
    a fallback owner it resolves itself (Entra ID: a user or service principal). With a fallback
    the removal carries it (``after["fallback_owner"]``: the target adds it first); without one
    the removal is left out, so that it is not refused again each night, and the plan warns."""
    if not needs_owner:
        return list(changes), []
    observed_groups = {g.key: g for g in observed.groups if g.key}
    gaining = {c.key for c in changes if c.action is Action.ADD_OWNER}
    result, notes = [], []
    for change in changes:
        group = observed_groups.get(change.key)
        removed = set(change.before.get("owners") or [])
        if (
            change.action is Action.REMOVE_OWNER
            and change.key not in gaining
            and group is not None
            and group.unmanaged_owners == 0
            and removed >= group.owners
        ):
            if fallback is None:
                notes.append(
                    f"group {change.key} ({group.target}) needs an owner: the source names none "
                    f"any more and the directory keeps a group's last owner, so "
                    f"{', '.join(sorted(removed))} stays owner. Give the class a titularis, or "
                    "set a fallback owner (fallback_owner in the target's settings) to take over"
                )
                continue
            change = dataclasses.replace(
                change,
                after={**change.after, "fallback_owner": fallback},
                why=(*change.why, f"the last owner: {fallback} (the fallback owner) takes over"),
            )
        result.append(change)
    return result, notes


def suspicious_groups(
    changes: Collection[Change], desired: DesiredState, observed: ObservedState
) -> list[str]:
    """A class that loses all its members at once while they are all still in the source is
    more likely a source problem (a class renamed by mistake, a half-finished school-year
    switch) than real: it is pointed out."""
    members = {g.key: g.members for g in observed.groups if g.key}
    notes = []
    for change in changes:
        if change.action is not Action.REMOVE_MEMBER:
            continue
        removed = set(change.before.get("members") or [])
        if removed and removed == members.get(change.key) and removed <= desired.accounts.keys():
            notes.append(
                f"suspicious: group {change.key} loses all {len(removed)} members while they "
                "are all still in the source"
            )
    return notes
