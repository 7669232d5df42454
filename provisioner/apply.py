"""Carrying out a verified plan: initial passwords, issued names, hand-outs, what the state
store learns, and the run history; and the password reset of one account.

The plan was checked before it gets here (fresh, unblocked or approved, for this target); each
change is checked once more by the target against its precondition as it is applied.

No password is set before it is on disk: the hand-out sheet is written (as an escrow, every
password marked pending) and flushed before the first change, and completed after the last (see
:mod:`provisioner.passwords`). If the escrow cannot be written, nothing is applied.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from provisioner.errors import ConfigError, ProvisionerError
from provisioner.log import register_secret
from provisioner.passwords import (
    Handout,
    HandoutSheets,
    PasswordConfig,
    SheetError,
    Status,
    generate,
    handout_group,
)
from provisioner.plan.model import Action, Category, Change, Kind, Plan
from provisioner.plan.policy import Approval, Selection, in_order
from provisioner.state import StateStore
from provisioner.targets.base import Result, Target


@dataclass
class Outcome:
    results: list[Result] = field(default_factory=list)
    handouts: list[Handout] = field(default_factory=list)
    """The accounts created, each with the password that was set (or ``unknown``): what the
    sheets list."""
    sheets: list[Path] = field(default_factory=list)
    """The hand-out sheets written (HTML, CSV), or none when no account was created."""
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
    approval: Approval | str | None = None,
    selection: Selection | None = None,
    sheets: Path | None = None,
    when: dt.datetime | None = None,
    command: str = "apply",
) -> Outcome:
    """Apply the plan and keep the run in the history (also when it fails half-way) under
    *command* (``apply``, or ``run`` for the nightly command), with its outcome: ``applied``,
    ``nothing`` (to do), ``waiting`` (for an approval of some categories) or ``failed``. New
    accounts' passwords go on sheets in the directory *sheets* (see :func:`apply_changes`).

    *selection* is what :func:`~provisioner.plan.policy.leave_out_unapproved` made of the plan
    for *approval*: the history keeps what was approved, why, and what waits per category, so
    that each step of an approval in steps can be traced."""
    run = store.start_run(command)
    try:
        outcome = apply_changes(
            plan, target, store, strict=strict, passwords=passwords, sheets=sheets, when=when
        )
    except BaseException:
        store.finish_run(run, "failed", {"changes": len(plan.changes)})
        raise
    summary: dict[str, Any] = {
        status: sum(r.status == status for r in outcome.results)
        for status in ("applied", "skipped", "failed")
    }
    applied: dict[str, int] = {}
    for result in outcome.results:
        if result.status == "applied":
            applied[result.change.action] = applied.get(result.change.action, 0) + 1
    summary["actions"] = applied
    if isinstance(approval, str):
        approval = Approval(approval)
    unapproved = selection.unapproved if selection is not None else []
    # A drop not approved stays visible: the next run compares against the last baseline.
    if not outcome.failed and not any(b.category == Category.DROP for b in unapproved):
        summary["persons"] = plan.header.persons  # what the next run compares against
    overridden = (
        [b.message for b in selection.approved]
        if selection is not None
        else plan.header.policy_blocked
    )
    if approval is not None and overridden:
        # The approval and what it overrode stay in the run history. For a saved plan these are
        # the blocks verify_plan_file derived again from its changes, never the file's own list.
        summary["approved"] = {
            "reason": approval.reason,
            "categories": "all" if approval.categories is None else in_order(approval.categories),
            "overrides": overridden,
        }
        if approval.by:
            summary["approved"]["by"] = approval.by
    if selection is not None and selection.waiting:
        summary["waiting"] = selection.left_out
        summary["waiting_for"] = [w.describe() for w in selection.waiting]
    outcome.summary = summary
    store.finish_run(run, outcome_of(outcome, selection), summary)
    return outcome


def results_to_json(results: list[Result]) -> list[dict[str, Any]]:
    """Each change's result as ``apply --json`` and a run folder's ``results.json`` show it."""
    return [
        {
            "action": r.change.action,
            "kind": r.change.kind,
            "key": r.change.key,
            "target": r.change.target,
            "status": r.status,
            "message": r.message,
        }
        for r in results
    ]


def outcome_of(outcome: Outcome, selection: Selection | None) -> str:
    """How the history names a finished apply."""
    if outcome.failed:
        return "failed"
    if selection is not None and selection.waiting:
        return "waiting"
    return "applied" if outcome.results else "nothing"


def record_failed(store: StateStore, command: str, error: str) -> None:
    """Keep a night that an error stopped before anything was applied in the run history."""
    store.finish_run(store.start_run(command), "failed", {"error": error})


def apply_changes(
    plan: Plan,
    target: Target,
    store: StateStore,
    *,
    strict: bool = False,
    passwords: PasswordConfig | None = None,
    sheets: Path | None = None,
    when: dt.datetime | None = None,
) -> Outcome:
    """Apply every change in order. A change whose precondition no longer holds is
    skipped and reported (with ``strict``, any such change refuses the whole plan before anything
    is done); a failed change does not stop the others: the next run tries it again.

    New accounts get passwords only when there is a *sheets* directory to hand them out from:
    the escrow is written there first (a :class:`~provisioner.passwords.SheetError` or ConfigError
    then means nothing was applied), and completed at the end: set, unknown (the account was
    already there), or left off (the directory refused the account). When the run stops on an
    exception, the sheet says which passwords were set and keeps the rest pending. Without
    *sheets* (a direct call, a benchmark) each create gets a random password nobody knows; a
    ``password reset`` hands out one that is known."""
    if strict:
        drift = [(c, reason) for c in plan.changes if (reason := target.check(c))]
        if drift:
            lines = "; ".join(f"{c.action} {c.key}: {reason}" for c, reason in drift[:10])
            raise ConfigError(f"--strict: {len(drift)} change(s) no longer fit: {lines}")
    passwords = passwords or PasswordConfig()
    initial: dict[int, str] = {}
    escrow: HandoutSheets | None = None
    if sheets is not None:
        initial = {
            i: generate(passwords)
            for i, c in enumerate(plan.changes)
            if c.action is Action.CREATE and c.kind is Kind.ACCOUNT
        }
        for password in initial.values():
            register_secret(password)
        if initial:
            pending = [handout(plan.changes[i], p, "pending") for i, p in initial.items()]
            escrow = HandoutSheets.begin(pending, sheets, when or _now())
    record_observations(plan, store)
    day = dt.date.fromisoformat(plan.header.source_as_of)
    outcome = Outcome()
    answered: dict[int, Result] = {}
    try:
        # Each result is recorded as it comes: names issued before a crash stay issued.
        for index, result in enumerate(target.apply_all(plan.changes, initial)):
            change = result.change
            assert change is plan.changes[index], "a target must answer every change, in order"
            outcome.results.append(result)
            answered[index] = result
            if result.status == "applied":
                given, taken = names_given(change, target)
                store.issue_values(taken)
                store.issue_values(given, current=True)
            if result.status == "applied" and (old := change.precondition.anchored) is not None:
                store.move_anchor(old, change.key)  # carried over from its former anchor
            if result.status == "applied":
                record_lifecycle(change, store, day)
    except BaseException:
        if escrow is not None:
            _settle(escrow, plan.changes, initial, answered, finished=False)
        raise
    if escrow is not None:
        outcome.handouts, outcome.sheets = _settle(
            escrow, plan.changes, initial, answered, finished=True
        )
    return outcome


def record_blocked(plan: Plan, store: StateStore, command: str = "apply") -> None:
    """Keep a blocked night in the run history: nothing was applied, and why (the blocks that no
    approval lifts, and the policy blocks with their categories)."""
    run = store.start_run(command)
    store.finish_run(
        run,
        "blocked",
        {
            "blocked": list(plan.header.blocked),
            "policy_blocks": [
                {"category": str(b.category), "message": b.message}
                for b in plan.header.every_policy_block()
            ],
            "changes": len(plan.changes),
            "held": len(plan.header.held),
        },
    )


def names_given(change: Change, target: Target) -> tuple[list[Named], list[Named]]:
    """(the names *change* gives an account, the names a rename takes from it), each as
    (anchor, attribute, value): its username and the target's name attributes (mail,
    userPrincipalName …). Both are recorded as issued, so that none is ever given to anyone
    else; a person who comes back gets the names given last."""
    if change.kind is not Kind.ACCOUNT or change.action not in _NAMING:
        return [], []
    naming = {name.casefold() for name in target.name_attributes}

    def names(values: Mapping[str, Any]) -> list[Named]:
        return [
            (change.key, name, value)
            for name, value in values.items()
            if isinstance(value, str)
            and value
            and (name == "username" or name.casefold() in naming)
        ]

    return names(change.after), names(change.before) if change.action is Action.RENAME else []


Named = tuple[str, str, str]
_NAMING = frozenset({Action.CREATE, Action.RENAME, Action.ADOPT, Action.UPDATE})


def handout(change: Change, password: str, status: Status) -> Handout:
    """The line on the sheet for the account *change* creates."""
    username = str(change.after["username"])
    return Handout(
        username=username,
        name=str(change.after.get("displayName") or username),
        group=handout_group(change.after.get("ou"), change.after.get("department")),
        password=password,
        status=status,
    )


def _settle(
    escrow: HandoutSheets,
    changes: list[Change],
    initial: dict[int, str],
    answered: dict[int, Result],
    *,
    finished: bool,
) -> tuple[list[Handout], list[Path]]:
    """Complete the escrow from the targets' answers: applied → set (or unknown, when the account
    was already there), failed or skipped → left off (that password was never set). A run that
    stopped early keeps its unanswered creates pending: they may have been set."""
    lines: list[Handout] = []
    for index, password in initial.items():
        result = answered.get(index)
        if result is None:
            if not finished:
                lines.append(handout(changes[index], password, "pending"))
        elif result.status == "applied":
            if result.password_unknown:  # this run's password was not set: forget it
                lines.append(handout(changes[index], "", "unknown"))
            else:
                lines.append(handout(changes[index], password, "set"))
    if finished:
        return lines, escrow.complete(lines)
    # If even that fails, the escrow as first written still holds every password that may have
    # been set; the exception on its way out is the one to report.
    with contextlib.suppress(SheetError):
        escrow.complete(lines)
    return lines, []


def reset_password(
    target: Target,
    anchor: str,
    line: Handout,
    *,
    passwords: PasswordConfig,
    sheets: Path,
    when: dt.datetime | None = None,
) -> list[Path]:
    """Give the account *anchor* a new password, on a sheet for *line* (its username, name and
    group; its password is made here). The sheet is on disk before the password is set: when it
    cannot be written nothing changes; when the directory refuses the password, the sheet is
    removed and the error says so. Returns the sheets (HTML, CSV)."""
    secret = generate(passwords)
    register_secret(secret)
    pending = Handout(line.username, line.name, line.group, secret, "pending")
    escrow = HandoutSheets.begin([pending], sheets, when or _now())
    try:
        target.reset_password(anchor, secret)
    except Exception as exc:
        escrow.discard()
        problem = str(exc) if isinstance(exc, ProvisionerError) else f"{type(exc).__name__}: {exc}"
        raise ProvisionerError(
            f"the password of {line.username} was not reset ({problem}); its sheet was removed: "
            "run the reset again"
        ) from None
    done = Handout(line.username, line.name, line.group, secret, "set")
    return escrow.complete([done])


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def record_observations(plan: Plan, store: StateStore) -> None:
    """What the source showed when the plan was made, in one transaction, dated by the plan's
    source day: leaver and hold clocks start and stop, kinds, schools and the directory's ids are
    kept, and the disable and archive days the directory showed where none was recorded."""
    seen = plan.observations
    day = dt.date.fromisoformat(plan.header.source_as_of)
    with store.transaction():
        store.remember_kinds(
            (anchor, kind, school) for anchor, (kind, school) in seen.accounts.items()
        )
        store.track_leavers(seen.left, seen.returned, day)
        store.track_held(
            ((kind, key) for kind, key in seen.held),
            ((kind, key) for kind, key in seen.released),
            day,
        )
        for kind, ids in seen.ids.items():
            store.remember_anchors(kind, ids.items())
        # Found disabled or archived without a recorded day: the grace counts from now on.
        store.record_disabled(seen.disabled, day, seen=True)
        store.record_archived(
            {key: dt.date.fromisoformat(since) for key, since in seen.archived.items()}, seen=True
        )


def record_lifecycle(change: Change, store: StateStore, day: dt.date) -> None:
    """What an applied change starts or ends in the lifecycles, dated by the plan's source day:
    a disable starts the deletion grace of the account, an archive that of the group; a restore
    or a group made anew ends it; a group deletion is remembered (a group made anew under its
    key later is pointed out in the plan); a deleted account's person is forgotten but for the
    names they were given (see :meth:`~provisioner.state.StateStore.forget_person`)."""
    if change.action is Action.DISABLE:
        store.record_disabled([change.key], day)
    elif change.action is Action.DELETE and change.kind is Kind.ACCOUNT:
        store.forget_person(change.key)  # its names stay issued; nothing else is kept
    elif change.action is Action.ARCHIVE_GROUP:
        store.record_archived({change.key: day})
    elif change.action in (Action.RESTORE_GROUP, Action.CREATE_GROUP):
        store.record_restored([change.key])
    elif change.action is Action.DELETE_GROUP:
        store.record_group_deleted(change.key, day)
