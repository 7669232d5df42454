"""Carrying out a verified plan: initial passwords, issued names, hand-outs, what the state
store learns, and the run history.

The plan was checked before it gets here (fresh, unblocked or approved, for this target); each
change is checked once more by the target against its precondition as it is applied.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from provisioner.errors import ConfigError
from provisioner.log import register_secret
from provisioner.passwords import Handout, PasswordConfig, generate, handout_group
from provisioner.plan.model import Action, Plan
from provisioner.state import StateStore
from provisioner.targets.base import Result, Target


@dataclass
class Outcome:
    results: list[Result] = field(default_factory=list)
    handouts: list[Handout] = field(default_factory=list)
    """Initial passwords of the accounts created, for the hand-out sheets; kept nowhere else."""
    summary: dict[str, Any] = field(default_factory=dict)
    """What the run history keeps: counts per status, persons, an approval."""

    @property
    def failed(self) -> int:
        return sum(r.status == "failed" for r in self.results)


def apply_plan(
    plan: Plan,
    target: Target,
    store: StateStore,
    *,
    strict: bool = False,
    passwords: PasswordConfig | None = None,
    approval: str | None = None,
) -> Outcome:
    """Apply the plan and keep the run in the history (also when it fails half-way)."""
    run = store.start_run("apply")
    try:
        outcome = apply_changes(plan, target, store, strict=strict, passwords=passwords)
    except BaseException:
        store.finish_run(run, "failed", {"changes": len(plan.changes)})
        raise
    summary: dict[str, Any] = {
        status: sum(r.status == status for r in outcome.results)
        for status in ("applied", "skipped", "failed")
    }
    if not outcome.failed:
        summary["persons"] = plan.header.persons  # what the next run compares against
    if approval and plan.header.policy_blocked:
        # The approval and what it overrode stay in the run history. For a saved plan these are
        # the blocks verify_plan_file derived again from its changes, never the file's own list.
        summary["approved"] = {"reason": approval, "overrides": plan.header.policy_blocked}
    outcome.summary = summary
    store.finish_run(run, "failed" if outcome.failed else "ok", summary)
    return outcome


def apply_changes(
    plan: Plan,
    target: Target,
    store: StateStore,
    *,
    strict: bool = False,
    passwords: PasswordConfig | None = None,
) -> Outcome:
    """Apply every change in order. A change whose precondition no longer holds is
    skipped and reported (with ``strict``, any such change refuses the whole plan before anything
    is done); a failed change does not stop the others: the next run tries it again."""
    if strict:
        drift = [(c, reason) for c in plan.changes if (reason := target.check(c))]
        if drift:
            lines = "; ".join(f"{c.action} {c.key}: {reason}" for c, reason in drift[:10])
            raise ConfigError(f"--strict: {len(drift)} change(s) no longer fit: {lines}")
    record_observations(plan, store)
    outcome = Outcome()
    passwords = passwords or PasswordConfig()
    initial = {
        i: generate(passwords) for i, c in enumerate(plan.changes) if c.action is Action.CREATE
    }
    for password in initial.values():
        register_secret(password)
    # Each result is recorded as it comes: names issued before a crash stay issued.
    for index, result in enumerate(target.apply_all(plan.changes, initial)):
        change = result.change
        assert change is plan.changes[index], "a target must answer every change, in order"
        outcome.results.append(result)
        if result.status != "applied":
            continue
        if change.action in (Action.CREATE, Action.RENAME):
            store.issue_names([(change.key, str(change.after["username"]))])
        if index in initial:
            username = str(change.after["username"])
            outcome.handouts.append(
                Handout(
                    username=username,
                    name=str(change.after.get("displayName") or username),
                    group=handout_group(change.after.get("ou"), change.after.get("department")),
                    password=initial[index],
                )
            )
    return outcome


def record_observations(plan: Plan, store: StateStore) -> None:
    """What the source showed when the plan was made, in one transaction, dated by the plan's
    source day: leaver clocks start and stop, kinds, schools and the directory's ids are kept."""
    seen = plan.observations
    day = dt.date.fromisoformat(plan.header.source_as_of)
    with store.transaction():
        store.remember_kinds(
            (anchor, kind, school) for anchor, (kind, school) in seen.accounts.items()
        )
        store.track_leavers(seen.left, seen.returned, day)
        for kind, ids in seen.ids.items():
            store.remember_anchors(kind, ids.items())
