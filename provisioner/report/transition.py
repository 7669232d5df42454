"""The school-year transition at a glance: what the first night of a new school year will do,
per school, for the ICT coordinator who previews it (``plan --schooljaar``).

Made from a plan and the two states it compares, so it knows no source and no directory: who
leaves (accounts to disable), who changes class (accounts to move, grouped "1A → 2A: 18"), who
is new, which groups go and which come, and which approvals the plan will need.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from provisioner.model import DesiredState, ObservedState
from provisioner.plan.model import Action, Change, Kind, Plan
from provisioner.plan.policy import describe_blocks
from provisioner.text import visible

ALL_SCHOOLS = ""
"""The school of what belongs to none (a group of staff of every school)."""

_GROUPS_GOING = ("archive_group", "delete_group")
"""Actions that take a group away: archived (kept for a while) or deleted."""


@dataclass
class SchoolTransition:
    """What the new school year changes in one school."""

    school: str
    name: str = ""
    """The school's name, where the source gives one."""
    leaving: Counter[str] = field(default_factory=Counter)
    """Accounts to disable (graduates and other leavers), by where they were (their class)."""
    deleting: int = 0
    """Accounts whose grace is over: deleted."""
    moves: Counter[tuple[str, str]] = field(default_factory=Counter)
    """Accounts changing class: (from, to) → how many."""
    new: Counter[str] = field(default_factory=Counter)
    """Accounts to create, by where they go (their class)."""
    groups_going: list[str] = field(default_factory=list)
    """Groups to archive or delete: their classes are gone."""
    groups_new: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return (
            not (self.leaving or self.deleting or self.moves or self.new or self.groups_going)
            and not self.groups_new
        )


@dataclass
class Transition:
    schools: list[SchoolTransition]
    approvals: list[str]
    """The policy limits the plan exceeds: each needs ``apply --approve``."""
    blocked: list[str]
    """What blocks the plan whatever is approved (a school that answered empty, …)."""
    as_of: str


def transition_summary(
    plan: Plan,
    desired: DesiredState,
    observed: ObservedState,
    school_names: Mapping[str, str] | None = None,
    command: str = "provisioner apply",
) -> Transition:
    """The plan's changes per school. An account's school is where the source has it, or
    (for one that leaves) where it was; a group's is its members' when they share one. Each
    approval needed says its category and the *command* that gives it."""
    names = school_names or {}
    school_of: dict[str, str] = dict(plan.header.account_schools)
    school_of |= {anchor: account.school for anchor, account in desired.accounts.items()}
    have = {a.anchor: a for a in observed.accounts if a.anchor}
    groups_had = {g.key: g for g in observed.groups if g.key}
    schools: dict[str, SchoolTransition] = {}

    def of(school: str) -> SchoolTransition:
        if school not in schools:
            schools[school] = SchoolTransition(school, names.get(school, ""))
        return schools[school]

    disabled = {c.key for c in plan.changes if c.action is Action.DISABLE}
    moved: set[str] = set()
    for change in plan.changes:
        if change.kind is Kind.ACCOUNT:
            school = of(school_of.get(change.key, ALL_SCHOOLS))
            if change.action is Action.DISABLE:
                account = have.get(change.key)
                school.leaving[_place(account.ou, school.school) if account else ""] += 1
            elif change.action is Action.DELETE:
                school.deleting += 1
            elif change.action is Action.MOVE and change.key not in disabled:
                before, after = _difference(change.before.get("ou"), change.after.get("ou"))
                school.moves[(before, after)] += 1
                moved.add(change.key)
            elif change.action is Action.CREATE:
                wanted = desired.accounts.get(change.key)
                school.new[_place(wanted.ou, school.school) if wanted else ""] += 1
        elif change.kind is Kind.GROUP and str(change.action) in _GROUPS_GOING:
            group = groups_had.get(change.key)
            members = group.members if group else set()
            of(_school_of_members(members, school_of)).groups_going.append(change.key)
        elif change.action is Action.CREATE_GROUP:
            wanted_group = desired.groups.get(change.key)
            members = wanted_group.members if wanted_group else set()
            of(_school_of_members(members, school_of)).groups_new.append(change.key)
    # A directory without OUs (Entra ID) moves nobody: a class change is a pupil leaving one
    # class group for another.
    for anchor, (left, joined) in _group_changes(plan.changes).items():
        if anchor in moved or anchor in disabled or len(left) != 1 or len(joined) != 1:
            continue
        of(school_of.get(anchor, ALL_SCHOOLS)).moves[(left[0], joined[0])] += 1
    ordered = sorted(schools.values(), key=lambda s: (s.school == ALL_SCHOOLS, s.school))
    return Transition(
        [s for s in ordered if not s.empty],
        [
            f"{message} → {approve}"
            for _category, approve, messages in describe_blocks(
                plan.header.every_policy_block(), command
            )
            for message in messages
        ],
        list(plan.header.blocked),
        plan.header.source_as_of,
    )


def _place(ou: tuple[str, ...], school: str) -> str:
    """Where an account is, in a word: the last step of its OU path (its class), or the one
    before when the last is its school (``Personeel/030569`` → ``Personeel``)."""
    steps = [step for step in ou if step != school]
    return steps[-1] if steps else ""


def _difference(before: Any, after: Any) -> tuple[str, str]:
    """The parts of two OU paths after what they share: ``.../030569/1A`` and ``.../030569/2A``
    → ("1A", "2A")."""
    old, new = list(before or []), list(after or [])
    shared = 0
    while shared < min(len(old), len(new)) and old[shared] == new[shared]:
        shared += 1
    return "/".join(old[shared:]) or "/".join(old), "/".join(new[shared:]) or "/".join(new)


def _school_of_members(members: set[str], school_of: Mapping[str, str]) -> str:
    """The one school of all the members (known), else none: a group of every school's staff
    is shown apart."""
    schools = {school_of[m] for m in members if m in school_of}
    return schools.pop() if len(schools) == 1 else ALL_SCHOOLS


def _group_changes(changes: list[Change]) -> dict[str, tuple[list[str], list[str]]]:
    """Per account: the groups it leaves and the groups it joins."""
    found: dict[str, tuple[list[str], list[str]]] = {}
    for change in changes:
        if change.action is Action.REMOVE_MEMBER:
            for member in change.before.get("members") or []:
                found.setdefault(member, ([], []))[0].append(change.key)
        elif change.action is Action.ADD_MEMBER:
            for member in change.after.get("members") or []:
                found.setdefault(member, ([], []))[1].append(change.key)
    return found


def _by_place(counts: Counter[str], word: str) -> str:
    """``from 6A: 18, from 6B: 17`` (places unknown, as in Entra ID, are left out)."""
    return ", ".join(f"{word} {place}: {n}" for place, n in sorted(counts.items()) if place)


def render_transition(transition: Transition, school_year: str) -> str:
    """Plain text, per school, what the first night of *school_year* will do."""
    out = [
        f"School year {school_year} previewed as of {transition.as_of}: what its first night "
        "will do against the directory as it is now",
        "",
    ]
    if not transition.schools:
        out.append("Nothing changes: the directory already matches that school year.")
    for school in transition.schools:
        title = school.school or "All schools"
        if school.name:
            title = f"{school.name} ({school.school})"
        out.append(title)
        leaving = sum(school.leaving.values())
        if leaving:
            out.append(
                f"  leaving (graduates and other leavers), accounts to disable: {leaving}"
                + (f" ({where})" if (where := _by_place(school.leaving, "from")) else "")
            )
        if school.deleting:
            out.append(f"  accounts to delete (their grace is over): {school.deleting}")
        if school.moves:
            out.append(f"  changing class, accounts to move: {sum(school.moves.values())}")
            for (before, after), n in sorted(school.moves.items()):
                out.append(f"    {before} → {after}: {n}")
        if school.new:
            out.append(
                f"  new pupils and staff, accounts to create: {sum(school.new.values())}"
                + (f" ({where})" if (where := _by_place(school.new, "in")) else "")
            )
        if school.groups_going:
            out.append(
                f"  groups to archive or delete (their class is gone): "
                f"{', '.join(sorted(school.groups_going))}"
            )
        if school.groups_new:
            out.append(f"  groups to create: {', '.join(sorted(school.groups_new))}")
        out.append("")
    if transition.approvals:
        out.append(
            f"Approvals that night will need ({len(transition.approvals)}): the plan stops at "
            "these limits until someone approves it with apply --approve"
        )
        out += [f"  - {reason}" for reason in transition.approvals]
    else:
        out.append("Approvals that night will need: none, it stays within the policy limits.")
    if transition.blocked:
        out.append("Blocked whatever is approved, unless corrected first:")
        out += [f"  - {reason}" for reason in transition.blocked]
    return "\n".join(visible(line) for line in out)


def transition_to_json(transition: Transition) -> dict[str, Any]:
    """The summary for ``plan --schooljaar --json`` (key ``transition``)."""
    return {
        "as_of": transition.as_of,
        "schools": [
            {
                "school": s.school,
                "name": s.name,
                "leaving": sum(s.leaving.values()),
                "leaving_from": dict(sorted(s.leaving.items())),
                "deleting": s.deleting,
                "moves": [
                    {"from": before, "to": after, "accounts": n}
                    for (before, after), n in sorted(s.moves.items())
                ],
                "new": sum(s.new.values()),
                "new_in": dict(sorted(s.new.items())),
                "groups_going": sorted(s.groups_going),
                "groups_new": sorted(s.groups_new),
            }
            for s in transition.schools
        ],
        "approvals": transition.approvals,
        "blocked": transition.blocked,
    }


def preview_note(school_year: str, plan: Plan) -> str:
    """The note a preview plan carries at the top of its warnings."""
    return (
        f"a preview of school year {school_year} as of {plan.header.source_as_of}, without the "
        "leaver freeze: nothing was written, and it cannot be applied; plan and apply as usual "
        "once that year has begun"
    )
