"""Policy: limits a plan must stay within before it may be applied, and when leavers wait.

Thresholds block a plan whose number of disables, moves, renames or updates exceeds a count or a
share of the managed accounts (``--approve REASON`` lets a person accept it, and the reason is
kept in the run history). In the school-year transition window (by default 1 July – 31 August,
when Informat moves pupils to the new year day by day) leaver actions wait: they are left out of
the plan, with a note, instead of disabling pupils who simply have not been moved yet.

Held persons (a problem with one person's data) do not block the night, unless there are more of
them in a school than ``max_held`` allows, or one has been held longer than ``max_held_days``:
then the plan is blocked (no approval lifts it) until someone corrects the data.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from provisioner.model import Hold
from provisioner.plan.model import Action, Change, Kind

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


@dataclass
class Verdict:
    changes: list[Change]
    blocked: list[str] = field(default_factory=list)
    """Limits exceeded: ``--approve REASON`` accepts them."""
    notes: list[str] = field(default_factory=list)


def apply_policy(
    changes: list[Change],
    policy: PolicyConfig,
    *,
    managed_accounts: int,
    day: dt.date,
    schools: Mapping[str, str] | None = None,
    managed_per_school: Mapping[str, int] | None = None,
) -> Verdict:
    """Hold back leaver actions in the transition window; block what exceeds the limits, over
    all managed accounts and per school (*schools* maps an account's anchor to its school)."""
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
    blocked = []
    for action, setting in (
        (Action.DISABLE, policy.max_disable),
        (Action.DELETE, policy.max_delete),
        (Action.MOVE, policy.max_move),
        (Action.RENAME, policy.max_rename),
        (Action.UPDATE, policy.max_update),
    ):
        hits = [c for c in kept if c.action is action and c.kind is Kind.ACCOUNT]
        scopes = [("", len(hits), managed_accounts)]
        for school, managed in sorted((managed_per_school or {}).items()):
            scopes.append((school, sum(schools.get(c.key) == school for c in hits), managed))
        for school, count, managed in scopes:
            allowed = limit_of(setting, managed)
            if count > allowed:
                where = f"school {school}: " if school else ""
                blocked.append(
                    f"{where}{count} account {action}s exceed max_{action} {setting} (at most "
                    f"{allowed} of {managed} managed accounts); if this is right, apply with "
                    "--approve REASON"
                )
    return Verdict(kept, blocked, notes)


@dataclass
class Recheck:
    """A saved plan's verdict derived again from its own changes at apply time."""

    policy_blocked: list[str]
    """Limits exceeded: ``--approve REASON`` accepts them."""
    blocked: list[str]
    """What no approval lifts: changes the planner would never have made."""


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
) -> Recheck:
    """The planner's verdict once more, for a saved plan: the counts come from the plan's
    changes, the limits from the current configuration, the population (accounts in the managed
    scope, per school; each changed account's school; persons per school) from the plan's sealed
    header, and the last successful run from the state store as it is now."""
    verdict = apply_policy(
        changes,
        policy,
        managed_accounts=managed_accounts,
        day=day,
        schools=schools,
        managed_per_school=managed_per_school,
    )
    blocked = []
    held = len(changes) - len(verdict.changes)
    if held:
        # The planner leaves these out in the window: a plan holding them was not made by it.
        blocked.append(
            f"{held} leaver action(s) fall on {day.isoformat()}, inside the freeze_leavers "
            "window, where the planner never proposes them: make a new plan"
        )
    return Recheck(
        policy_blocked=[*check_drop(persons, last_persons, policy.max_drop), *verdict.blocked],
        blocked=blocked,
    )


def check_drop(
    persons: Mapping[str, int], last: tuple[str, Mapping[str, int]] | None, max_drop: str
) -> list[str]:
    """Schools whose number of persons fell more than allowed since the last successful run:
    a school losing a third of its pupils overnight is far more often a source problem."""
    if last is None:
        return []
    when, before = last
    blocked = []
    for school, was in sorted(before.items()):
        now = persons.get(school, 0)
        allowed = limit_of(max_drop, was)
        if was - now > allowed:
            blocked.append(
                f"school {school} has {now} persons, {was - now} fewer than the {was} of the last "
                f"successful run ({when}), more than max_drop {max_drop} allows ({allowed}); if "
                "this is right, apply with --approve REASON"
            )
    return blocked


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
