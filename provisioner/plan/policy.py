"""Policy: limits a plan must stay within before it may be applied, and when leavers wait.

Thresholds block a plan whose number of disables, moves, renames or updates exceeds a count or a
share of the managed accounts (``--approve REASON`` lets a person accept it, and the reason is
kept in the run history). In the school-year transition window (by default 1 July – 31 August,
when Informat moves pupils to the new year day by day) leaver actions wait: they are left out of
the plan, with a note, instead of disabling pupils who simply have not been moved yet.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from provisioner.plan.model import Action, Change, Kind

_LIMIT = re.compile(r"^(\d+(?:\.\d+)?)%$|^(\d+)$")
_DAY = re.compile(r"^(\d{2})-(\d{2})$")


def _check_limit(value: str) -> str:
    if not _LIMIT.match(str(value).strip()):
        raise ValueError(
            f"expected a count (25) or a share of the managed accounts (5%), not {value!r}"
        )
    return str(value).strip()


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
