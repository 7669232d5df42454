"""Policy: limits a plan must stay within before it may be applied, and when leavers wait.

Thresholds block a plan whose number of disables, moves, renames, updates or group deletes
exceeds a count or a share of the managed accounts (or groups). Each block has a category
(leavers, moves, renames, updates, groups, drop): ``--approve REASON`` accepts every block,
``--approve moves`` only that category's, and the changes of the other blocked categories then
wait for their own approval (:func:`leave_out_unapproved`). The approval is kept in the run history.

In the school-year transition window (by default 1 July – 31 August, when Informat moves pupils
to the new year day by day) leaver actions wait: they are left out of the plan, with a note,
instead of disabling pupils who simply have not been moved yet.

Held persons (a problem with one person's data) do not block the night, unless there are more of
them in a school than ``max_held`` allows, or one has been held longer than ``max_held_days``:
then the plan is blocked (no approval lifts it) until someone corrects the data.
"""

from __future__ import annotations

import datetime as dt
import difflib
import math
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from provisioner.errors import ConfigError
from provisioner.model import Hold
from provisioner.plan.model import Action, Category, Change, Kind, Plan, PolicyBlock

_LIMIT = re.compile(r"^(\d+(?:\.\d+)?)%$|^(\d+)$")
_DAY = re.compile(r"^(\d{2})-(\d{2})$")


def _check_limit(value: str) -> str:
    if not _LIMIT.match(str(value).strip()):
        raise ValueError(
            f"expected a count (25) or a share of the managed accounts (5%), not {value!r}"
        )
    return str(value).strip()


def _check_count(value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"expected a whole number of 0 or more, not {value!r}")
    return value


def _check_window(value: list[str]) -> list[str]:
    if value and len(value) != 2:
        raise ValueError("give a window as [MM-DD, MM-DD], e.g. [07-01, 08-31], or [] for none")
    for day in value:
        match = _DAY.match(day)
        if not match:
            raise ValueError(f"expected MM-DD, not {day!r}")
        dt.date(2024, int(match.group(1)), int(match.group(2)))  # a real day (leap year allowed)
    return value


@dataclass
class PolicyConfig:
    max_disable: str = field(default="5%", metadata={"check": _check_limit})
    max_delete: str = field(default="25", metadata={"check": _check_limit})
    max_delete_groups: str = field(default="10", metadata={"check": _check_limit})
    """Group deletes in one plan (a count, or a share of the managed groups)."""
    max_move: str = field(default="25%", metadata={"check": _check_limit})
    max_rename: str = field(default="5%", metadata={"check": _check_limit})
    max_update: str = field(default="50%", metadata={"check": _check_limit})
    max_drop: str = field(default="20%", metadata={"check": _check_limit})
    """How much a school's number of persons may fall since the last successful run (a share,
    or a count of persons)."""
    freeze_leavers: list[str] = field(
        default_factory=lambda: ["07-01", "08-31"], metadata={"check": _check_window}
    )
    """The days (MM-DD, both included) in which leaver actions wait; [] for none."""
    max_held: str = field(default="2%", metadata={"check": _check_limit})
    """How many persons of one school may be held (a count, or a share of the school's persons)
    before the plan is blocked."""
    max_held_floor: int = field(default=5, metadata={"check": _check_count})
    """A share in ``max_held`` allows at least this many, so that a small school is not blocked
    by a single damaged record."""
    max_held_days: int = field(default=7, metadata={"check": _check_count})
    """Days a person may stay held before the plan is blocked until someone acts."""


def limit_of(value: str, population: int) -> int:
    """A count, or a share of *population* rounded up: 5% of 30 accounts allows 2."""
    match = _LIMIT.match(value)
    assert match is not None  # checked when the configuration was read
    if match.group(1) is not None:
        return math.ceil(float(match.group(1)) / 100 * population)
    return int(match.group(2))


def in_window(day: dt.date, window: list[str]) -> bool:
    """Whether *day* falls in the MM-DD window (both ends included; it may wrap the new year)."""
    if not window:
        return False
    # Compared within one leap year, so that 29 February is a day like any other.
    first, last = (dt.date(2000, int(d[:2]), int(d[3:])) for d in window)
    this = dt.date(2000, day.month, day.day)
    return first <= this <= last if first <= last else this >= first or this <= last


_LIMITS = (
    (Action.DISABLE, Kind.ACCOUNT, "max_disable", Category.LEAVERS),
    (Action.DELETE, Kind.ACCOUNT, "max_delete", Category.LEAVERS),
    (Action.MOVE, Kind.ACCOUNT, "max_move", Category.MOVES),
    (Action.RENAME, Kind.ACCOUNT, "max_rename", Category.RENAMES),
    (Action.UPDATE, Kind.ACCOUNT, "max_update", Category.UPDATES),
    (Action.DELETE_GROUP, Kind.GROUP, "max_delete_groups", Category.GROUPS),
)
"""Which changes each limit counts, and the category that approves them."""

APPROVE_ALL = "--approve REASON"


def in_order(categories: Iterable[str]) -> list[str]:
    """Category words once each, in the order of :class:`Category` (unknown ones last)."""
    return sorted({str(c) for c in categories}, key=lambda c: _CATEGORY_ORDER.get(c, len(Category)))


def approve_command(categories: Iterable[str]) -> str:
    """The option that lets *categories* through, e.g. ``--approve leavers,drop``; for a block of
    no category only an approval of everything will do."""
    words = in_order(categories)
    return f"--approve {','.join(words)}" if words and all(words) else APPROVE_ALL


_CATEGORY_ORDER: dict[str, int] = {str(c): i for i, c in enumerate(Category)}


def leavers_of(changes: Iterable[Change]) -> set[str]:
    """Anchors of the accounts this plan disables or deletes."""
    return {c.key for c in changes if c.kind is Kind.ACCOUNT and c.action.is_leaver}


def movers_of(changes: Iterable[Change], leavers: Collection[str]) -> set[str]:
    """Anchors of the accounts this plan moves to another place, leavers aside (class moves)."""
    return {
        c.key
        for c in changes
        if c.kind is Kind.ACCOUNT and c.action is Action.MOVE and c.key not in leavers
    }


def category_of(
    change: Change, leavers: Collection[str], movers: Collection[str] = ()
) -> Category | None:
    """The limit category a change counts in, or None. A leaver's move (to the disabled-accounts
    OU) is part of leaving, not a class move: it counts and waits with the disable. The update
    of an account that changes class (its department, its class code) is part of the move: it
    waits with the move and counts in neither limit."""
    if change.kind is Kind.ACCOUNT and change.action is Action.MOVE and change.key in leavers:
        return Category.LEAVERS
    if change.kind is Kind.ACCOUNT and change.action is Action.UPDATE and change.key in movers:
        return Category.MOVES
    for action, kind, _setting, category in _LIMITS:
        if change.action is action and change.kind is kind:
            return category
    return None


@dataclass
class Verdict:
    changes: list[Change]
    blocks: list[PolicyBlock] = field(default_factory=list)
    """Limits exceeded: ``--approve REASON`` accepts them all, ``--approve CATEGORY`` its own."""
    notes: list[str] = field(default_factory=list)

    @property
    def blocked(self) -> list[str]:
        return [block.message for block in self.blocks]


def apply_policy(
    changes: list[Change],
    policy: PolicyConfig,
    *,
    managed_accounts: int,
    day: dt.date,
    schools: Mapping[str, str] | None = None,
    managed_per_school: Mapping[str, int] | None = None,
    managed_groups: int = 0,
) -> Verdict:
    """Hold back leaver actions in the transition window; block what exceeds the limits, over
    all managed accounts and per school (*schools* maps an account's anchor to its school), and
    group deletes over the managed groups."""
    kept = changes
    notes = []
    if in_window(day, policy.freeze_leavers):
        waiting = [c for c in changes if c.action.is_leaver]
        if waiting:
            kept = [c for c in changes if not c.action.is_leaver]
            first, last = policy.freeze_leavers
            notes.append(
                f"{len(waiting)} leaver action(s) wait: {day.isoformat()} is in the school-year "
                f"transition window {first} – {last} (freeze_leavers), when Informat moves "
                "pupils to the new year gradually"
            )
    schools = schools or {}
    leavers = leavers_of(kept)
    movers = movers_of(kept, leavers)
    blocks = []
    for action, kind, name, category in _LIMITS:
        setting = getattr(policy, name)
        hits = [
            c for c in kept if c.action is action and category_of(c, leavers, movers) is category
        ]
        if kind is Kind.GROUP:
            count, allowed = len(hits), limit_of(setting, managed_groups)
            if count > allowed:
                blocks.append(
                    PolicyBlock(
                        category,
                        f"{count} group deletes exceed {name} {setting} (at most {allowed} of "
                        f"{managed_groups} managed groups); if this is right, apply with "
                        "--approve REASON",
                    )
                )
            continue
        scopes = [("", len(hits), managed_accounts)]
        for school, managed in sorted((managed_per_school or {}).items()):
            scopes.append((school, sum(schools.get(c.key) == school for c in hits), managed))
        for school, count, managed in scopes:
            allowed = limit_of(setting, managed)
            if count > allowed:
                where = f"school {school}: " if school else ""
                blocks.append(
                    PolicyBlock(
                        category,
                        f"{where}{count} account {action}s exceed {name} {setting} (at most "
                        f"{allowed} of {managed} managed accounts); if this is right, apply "
                        f"with --approve REASON",
                        school or None,
                    )
                )
    return Verdict(kept, blocks, notes)


@dataclass
class Recheck:
    """A saved plan's verdict derived again from its own changes at apply time."""

    policy_blocks: list[PolicyBlock]
    """Limits exceeded: ``--approve REASON`` accepts them all, ``--approve CATEGORY`` its own."""
    blocked: list[str]
    """What no approval lifts: changes the planner would never have made."""

    @property
    def policy_blocked(self) -> list[str]:
        return [block.message for block in self.policy_blocks]


def recheck_policy(
    changes: list[Change],
    policy: PolicyConfig,
    *,
    day: dt.date,
    managed_accounts: int,
    managed_per_school: Mapping[str, int],
    schools: Mapping[str, str],
    persons: Mapping[str, int],
    last_persons: tuple[str, Mapping[str, int]] | None,
    managed_groups: int = 0,
) -> Recheck:
    """The planner's verdict once more, for a saved plan: the counts come from the plan's
    changes, the limits from the current configuration, the population (accounts in the managed
    scope, per school; each changed account's school; persons per school; managed groups) from
    the plan's sealed header, and the last successful run from the state store as it is now."""
    verdict = apply_policy(
        changes,
        policy,
        managed_accounts=managed_accounts,
        day=day,
        schools=schools,
        managed_per_school=managed_per_school,
        managed_groups=managed_groups,
    )
    blocked = []
    held = len(changes) - len(verdict.changes)
    if held:
        # The planner leaves these out in the window: a plan holding them was not made by it.
        blocked.append(
            f"{held} leaver action(s) fall on {day.isoformat()}, inside the freeze_leavers "
            "window, where the planner never proposes them: make a new plan"
        )
    drops = drop_blocks(persons, last_persons, policy.max_drop)
    if in_window(day, policy.freeze_leavers):
        drops = []  # in the freeze a drop only delays the leavers, who wait anyway
    return Recheck(policy_blocks=[*drops, *verdict.blocks], blocked=blocked)


def check_drop(
    persons: Mapping[str, int], last: tuple[str, Mapping[str, int]] | None, max_drop: str
) -> list[str]:
    """The messages of :func:`drop_blocks`."""
    return [block.message for block in drop_blocks(persons, last, max_drop)]


def drop_blocks(
    persons: Mapping[str, int], last: tuple[str, Mapping[str, int]] | None, max_drop: str
) -> list[PolicyBlock]:
    """Schools whose number of persons fell more than allowed since the last successful run:
    a school losing a third of its pupils overnight is far more often a source problem."""
    if last is None:
        return []
    when, before = last
    blocks = []
    for school, was in sorted(before.items()):
        now = persons.get(school, 0)
        allowed = limit_of(max_drop, was)
        if was - now > allowed:
            blocks.append(
                PolicyBlock(
                    Category.DROP,
                    f"school {school} has {now} persons, {was - now} fewer than the {was} of the "
                    f"last successful run ({when}), more than max_drop {max_drop} allows "
                    f"({allowed}); if this is right, apply with --approve REASON",
                    school,
                )
            )
    return blocks


# -- approvals in steps ------------------------------------------------------------------------


@dataclass(frozen=True)
class Approval:
    """What ``apply --approve`` accepts: every policy block (*categories* None: the value was a
    reason), or only the blocks of the named categories."""

    reason: str | None
    categories: frozenset[Category] | None = None
    by: str | None = None
    """Who approved: the user account that ran the command."""

    def approves(self, category: str) -> bool:
        return self.categories is None or category in self.categories

    def describe(self) -> str:
        """For people: what was approved, by whom, and why."""
        what = "everything" if self.categories is None else ",".join(in_order(self.categories))
        who = f" by {self.by}" if self.by else ""
        return f"{what}{who} ({self.reason})" if self.reason else f"{what}{who}"


_SINGULAR = {str(c).removesuffix("s"): c for c in Category if str(c).endswith("s")}


def parse_approval(value: str | None, reason: str | None = None) -> Approval | None:
    """``--approve`` (and ``--reason``) as typed. A value made only of category words (``moves``,
    ``moves,renames``; any case, singular too) is a selection; anything else is a reason that
    approves everything. A word that looks like a category but is none is refused rather than
    taken as a reason: ``--approve leaver,moves`` must never approve more than was meant."""
    if value is None:
        if reason is not None:
            raise ConfigError("--reason goes with --approve CATEGORY, e.g. --approve moves")
        return None
    text = value.strip()
    if not text:
        raise ConfigError(
            '--approve needs a reason (--approve "end of the school year") or the categories '
            f"to approve ({', '.join(Category)})"
        )
    words = [w.strip().casefold() for w in text.replace(";", ",").split(",")]
    looks_like_words = all(w and " " not in w for w in words)
    if looks_like_words:
        chosen, unknown = set(), []
        for word in words:
            category = _SINGULAR.get(word) or (word in set(Category) and Category(word)) or None
            if category:
                chosen.add(category)
            else:
                unknown.append(word)
        if not unknown:
            given = reason.strip() if reason and reason.strip() else None
            return Approval(given, frozenset(chosen))
        names = [str(category) for category in Category]
        close = {w: difflib.get_close_matches(w, names, n=1, cutoff=0.75) for w in unknown}
        if chosen or any(close.values()):
            hints = "; ".join(
                f"{w!r} is not a category" + (f" (did you mean {c[0]!r}?)" if c else "")
                for w, c in close.items()
            )
            raise ConfigError(
                f"--approve {value}: {hints}. Categories: {', '.join(Category)}; to approve "
                'everything, give a reason in words: --approve "end of the school year"'
            )
    if reason is not None:
        raise ConfigError(
            f"--approve {value!r} is a reason that approves everything; --reason goes with "
            '--approve CATEGORY (e.g. --approve moves --reason "new classes")'
        )
    return Approval(text)


@dataclass(frozen=True)
class Waiting:
    """Changes left out of a run until their categories are approved."""

    categories: tuple[str, ...]
    """The unapproved categories that hold them back (all must be approved)."""
    counts: dict[str, int]
    """Action → how many changes wait."""

    def describe(self, command: str = "provisioner apply") -> str:
        # Held back with the leavers, a move is one to the disabled-accounts OU.
        where = " to the disabled-accounts OU" if Category.LEAVERS in self.categories else ""
        what = ", ".join(
            f"{n} {_noun(action, n)}{where if action == Action.MOVE else ''}"
            for action, n in self.counts.items()
        )
        return f"waiting for approval: {what} ({command} {approve_command(self.categories)})"


def _noun(action: str, count: int) -> str:
    title = Action(action).title  # "accounts to disable"
    return title if count != 1 else title.replace("accounts", "account").replace("groups", "group")


@dataclass
class Selection:
    """A plan with what an approval does not cover left out."""

    plan: Plan
    """The same header and observations, only the changes that may be applied in this run."""
    waiting: list[Waiting]
    left_out: dict[str, dict[str, int]]
    """Per unapproved category: action → changes left out (a change held back by two categories
    counts in both)."""
    approved: list[PolicyBlock]
    """The blocks this approval overrides."""
    unapproved: list[PolicyBlock] = field(default_factory=list)
    """The blocks it does not: their changes wait (a drop may hold back none yet still waits)."""


def leave_out_unapproved(plan: Plan, approval: Approval | None) -> Selection:
    """The changes of *plan* that *approval* lets through, with the rest waiting.

    A change waits when it belongs to a blocked category the approval does not name: a limit's
    changes by their category (:func:`category_of`); a school's drop holds back the leaver
    changes of that school (and of accounts whose school is unknown). A leaver's move to the
    disabled-accounts OU waits with the disable: the account stays where it is, enabled, until
    the leavers are approved. Nothing else in a plan depends on a change of these categories:
    targets find objects by their id and members by anchor, and no OU or group is ever left
    out (but an OU that only waiting changes would go into waits with them). Only leaving out is
    possible here, never adding or altering a change."""
    blocks = plan.header.every_policy_block()
    unapproved = [b for b in blocks if approval is None or not approval.approves(b.category)]
    approved = [b for b in blocks if b not in unapproved]
    if any(not b.category for b in unapproved):
        unnamed = "; ".join(b.message for b in unapproved if not b.category)
        raise ConfigError(
            f"the plan names a policy block without a category ({unnamed}): a selection cannot "
            f"tell which changes it is about; approve everything with {APPROVE_ALL} or make a "
            "new plan"
        )
    if not unapproved:
        return Selection(plan, [], {}, approved, [])
    limits = {b.category for b in unapproved if b.category != Category.DROP}
    dropped = {b.school for b in unapproved if b.category == Category.DROP}
    leavers = leavers_of(plan.changes)
    movers = movers_of(plan.changes, leavers)
    schools = plan.header.account_schools
    kept: list[Change] = []
    waiting: dict[tuple[str, ...], dict[str, int]] = {}
    left_out: dict[str, dict[str, int]] = {}
    for change in plan.changes:
        category = category_of(change, leavers, movers)
        holding = set()
        if category in limits:
            holding.add(str(category))
        if dropped and category is Category.LEAVERS:
            school = schools.get(change.key)
            if school is None or school in dropped or None in dropped:
                holding.add(str(Category.DROP))
        if not holding:
            kept.append(change)
            continue
        key = tuple(in_order(holding))
        counts = waiting.setdefault(key, {})
        counts[change.action] = counts.get(change.action, 0) + 1
        for name in key:
            per = left_out.setdefault(name, {})
            per[change.action] = per.get(change.action, 0) + 1
    kept = _without_unused_ous(kept, [c for c in plan.changes if not any(c is k for k in kept)])
    lists = [Waiting(key, counts) for key, counts in waiting.items()]
    return Selection(replace(plan, changes=kept), lists, left_out, approved, unapproved)


def _without_unused_ous(kept: list[Change], left_out: list[Change]) -> list[Change]:
    """*kept* without the OUs made only for what waits (the disabled-accounts OU while the
    leavers wait): no empty OU appears before its accounts; it comes with them."""

    def places(changes: Iterable[Change]) -> set[tuple[str, ...]]:
        paths = set()
        for change in changes:
            ou = change.after.get("ou")
            if change.action is not Action.CREATE_OU and isinstance(ou, list):
                paths |= {tuple(ou[:depth]) for depth in range(1, len(ou) + 1)}
        return paths

    needed, waiting = places(kept), places(left_out)
    return [
        c
        for c in kept
        if not (
            c.action is Action.CREATE_OU
            and isinstance(c.after.get("ou"), list)
            and tuple(c.after["ou"]) in waiting - needed  # type: ignore[arg-type]
        )
    ]


def describe_blocks(
    blocks: Sequence[PolicyBlock], command: str = "provisioner apply"
) -> list[tuple[str, str, list[str]]]:
    """The blocks grouped by category, in the categories' order: (category, the command that
    approves it, the messages)."""
    grouped: dict[str, list[str]] = {}
    for block in blocks:
        grouped.setdefault(block.category, []).append(block.message)
    return [
        (category or "(no category)", f"{command} {approve_command([category])}", messages)
        for category, messages in sorted(
            grouped.items(), key=lambda item: _CATEGORY_ORDER.get(item[0], len(Category))
        )
    ]


def held_blocks(
    held: list[Hold],
    persons: Mapping[str, int],
    nights: Mapping[tuple[str, str], int],
    policy: PolicyConfig,
) -> list[str]:
    """Why held persons block the plan: more in a school than ``max_held`` allows (a share of
    the school's *persons*, held ones included, with ``max_held_floor`` at least), or someone
    held longer than ``max_held_days`` (*nights*: (kind, key) → nights held, tonight included)."""
    blocked = []
    per_school: dict[str, int] = {}
    for hold in held:
        per_school[hold.school] = per_school.get(hold.school, 0) + 1
    share = policy.max_held.endswith("%")
    for school, count in sorted(per_school.items()):
        population = persons.get(school, 0)
        allowed = limit_of(policy.max_held, population)
        if share:
            allowed = max(allowed, policy.max_held_floor)
        if count > allowed:
            blocked.append(
                f"school {school}: {count} persons are held (at most {allowed} of {population} "
                f"allowed by max_held {policy.max_held}): so many damaged records point to a "
                "source problem; correct the data (see the held persons) and plan again"
            )
    overdue = [h for h in held if nights.get((h.kind, h.key), 0) > policy.max_held_days]
    if overdue:
        who = ", ".join(f"{h.kind} {h.key}" for h in overdue[:10])
        more = f" and {len(overdue) - 10} more" if len(overdue) > 10 else ""
        blocked.append(
            f"{len(overdue)} person(s) held longer than max_held_days ({policy.max_held_days}): "
            f"{who}{more}; correct their data in the source (the reason is listed with each)"
        )
    return blocked
