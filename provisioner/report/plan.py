"""The terminal preview of a plan: counts and the summary per school first, then the account
changes by school and class, then the group and OU changes by action.

Each line is passed through :func:`provisioner.text.visible` as it is joined: a line break or a
right-to-left override in a class code or a name is written out, so source data can neither add
lines (a fake "BLOCKED") nor reorder what the reader sees."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from provisioner.model import CLASS_TEAM, TEAM
from provisioner.plan.model import Action, Change, Kind, Plan, PlanHeader, Value
from provisioner.plan.policy import Approval, Selection, describe_blocks
from provisioner.report.grouping import (
    COLUMNS,
    Names,
    School,
    by_school,
    leaver_line,
    local_time,
    other_changes,
    team_line,
)
from provisioner.text import visible

if TYPE_CHECKING:
    from provisioner.targets.base import Result


def _shown(value: Value) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, list):
        return ", ".join(value) if len(value) <= 8 else f"{', '.join(value[:8])} … ({len(value)})"
    # Quoted as it is: the line it goes into is made visible as a whole (see _lines).
    return f"'{value}'"


def notes(header: PlanHeader) -> list[str]:
    """The plan's notes for people: its warnings, and what the target leaves alone."""
    found = list(header.warnings)
    if header.synced_left_alone:
        found.append(
            f"{header.synced_left_alone} user(s) and group(s) synchronised from on-premises AD "
            "(Entra Connect) are left alone"
        )
    return found


def describe_hold(hold: Mapping[str, Any], school_names: Mapping[str, str] | None = None) -> str:
    """One held person of a plan header, for the ICT coordinator: who, how long, and why; the
    school by name where *school_names* has it."""
    nights = int(hold.get("nights") or 1)
    held = "held tonight" if nights == 1 else f"held {nights} nights (since {hold.get('since')})"
    school = (school_names or {}).get(str(hold["school"])) or hold["school"]
    where = ""
    if hold.get("dataset"):
        where = f"{hold['dataset']}{'.' + hold['field'] if hold.get('field') else ''}"
        # Named once: most reasons already begin with the field they are about.
        where = "" if str(hold["reason"]).startswith(where) else f" [{where}]"
    return f"{hold['kind']} {hold['key']} (school {school}), {held}{where}: {hold['reason']}"


def held_section(plan: Plan) -> list[str]:
    """The held persons of a plan, for the terminal (and every rendering that lists them)."""
    held = plan.header.held
    if not held:
        return []
    shown = held[:_HELD_SHOWN]
    more = len(held) - len(shown)
    return [
        f"Held ({len(held)}): their accounts are left exactly as they are and they get no new "
        "one until their data is corrected:",
        *(f"  ! {describe_hold(hold, plan.header.school_names)}" for hold in shown),
        *([f"  … and {more} more (plan --json or --report FILE lists them all)"] if more else []),
        "",
    ]


_HELD_SHOWN = 100
"""Held persons listed in the terminal; the JSON and HTML renderings list every one."""


APPLY = "provisioner apply --config FILE"
"""How the approving command starts when the configuration file is not known (a plan)."""


def policy_section(plan: Plan, command: str = APPLY) -> list[str]:
    """The policy blocks grouped by category, each with the command that approves it."""
    out = []
    for category, approve, messages in describe_blocks(plan.header.every_policy_block(), command):
        out.append(f"BLOCKED by policy ({category}): approve with `{approve}`")
        out += [f"  - {message}" for message in messages]
    if out:
        out.append(
            f"  (or approve every category at once with `{command} --approve REASON`; a category "
            "approved alone lets its changes through and leaves the others' waiting)"
        )
    return out


def render_blocks(plan: Plan, *, command: str = APPLY) -> str:
    """Why a saved plan was not applied, one block a line, each with what to do."""
    header = plan.header
    out = ["The plan was not applied:"]
    out += [
        f"BLOCKED: {reason} (no approval lifts this: make a new plan once it is solved)"
        for reason in header.blocked
    ]
    out += policy_section(plan, command)
    return _lines(out)


def render_plan(plan: Plan, *, details: bool = False, command: str = APPLY) -> str:
    """The plan for the terminal: blocks and held persons, the summary per school by name,
    then the account changes by school and class (people by name, username and anchor), then
    the group and OU changes (members by name)."""
    header = plan.header
    out = [
        f"Plan against {header.target}",
        f"source as of {header.source_as_of}; made {local_time(header.created)}, valid until "
        f"{local_time(header.expires)}",
        "",
    ]
    for reason in header.blocked:
        out.append(f"BLOCKED: {reason}")
    out += policy_section(plan, command)
    shown = notes(header)
    out += [f"note: {note}" for note in shown]
    if header.blocked or header.policy_blocked or shown:
        out.append("")
    out += held_section(plan)
    if plan.empty:
        out.append("No changes: the directory matches the source.")
        return _lines(out)
    counts = plan.counts()
    out.append("Summary: " + ", ".join(f"{n} {Action(a).title}" for a, n in counts.items()))
    if teams := team_line(plan):
        out.append(teams[0].upper() + teams[1:])
    names = Names(plan)
    schools = by_school(plan)
    if schools:
        out.append("Per school:")
        out += [f"  {school.name}: {school_summary(school)}" for school in schools]
    for school in schools:
        out += ["", f"{school.name} ({school_summary(school)})"]
        for section in school.sections.values():
            out.append(f"  {section.name} ({len(section.changes)})")
            for change in section.changes:
                out += _account_lines(change, plan, names, details)
    for action, changes in other_changes(plan).items():
        out += ["", f"{action.title} ({len(changes)}):"]
        for change in changes:
            title = names.group(change.key) if change.kind is Kind.GROUP else change.target
            # The key beside the name where they differ (the OU path is its own name).
            what = f"  [{change.kind} {change.key}]" if title != change.key else ""
            team = " (with its class team)" if change.after.get(TEAM) == CLASS_TEAM else ""
            out.append(f"  {action.symbol} {title}{what}{team}")
            show_values = details or not action.creates
            if show_values:
                out += _value_lines(change, names, "      ")
            if show_values or action is Action.CONFLICT:
                out += [f"      why: {reason}" for reason in change.why]
    return _lines(out)


def school_summary(school: School) -> str:
    """``152 new, 3 leavers, 1 held``: the school's counts that are not zero."""
    shown = ", ".join(f"{school.counts[c]} {c}" for c in COLUMNS if school.counts.get(c))
    return shown or "no account changes"


def _account_lines(change: Change, plan: Plan, names: Names, details: bool) -> list[str]:
    action = change.action
    out = [f"    {action.symbol} {names.person(change.key)} [anchor {change.key}] {action}"]
    if leaving := leaver_line(change, plan):
        out.append(f"        {leaving}")
    show_values = details or not action.creates
    if show_values:
        out.append(f"        at {change.target}")
        out += _value_lines(change, names, "        ")
    if (show_values and not leaving) or action is Action.CONFLICT:
        out += [f"        why: {reason}" for reason in change.why]
    return out


def _value_lines(change: Change, names: Names, indent: str) -> list[str]:
    out = []
    for name in sorted(set(change.before) | set(change.after)):
        before, after = change.before.get(name), change.after.get(name)
        if name in ("members", "owners"):
            people = names.members(after if name in change.after else before)
            out.append(f"{indent}{name}: {_shown(people)}")
        elif name in change.before and name in change.after:
            out.append(f"{indent}{name}: {_shown(before)} → {_shown(after)}")
        elif name in change.after:
            out.append(f"{indent}{name}: {_shown(after)}")
        else:
            out.append(f"{indent}{name}: {_shown(before)} (removed)")
    return out


def render_results(results: list[Result]) -> str:
    """What apply did: counts, then every change that was skipped or failed, with the reason."""
    counts = {s: sum(r.status == s for r in results) for s in ("applied", "skipped", "failed")}
    out = [f"Applied {counts['applied']}, skipped {counts['skipped']}, failed {counts['failed']}."]
    for result in results:
        if result.status != "applied":
            change = result.change
            out.append(
                f"  {result.status}: {change.action} {change.kind} {change.key} "
                f"({change.target}): {result.message}"
            )
    if counts["failed"]:
        out.append("Failed changes are tried again on the next run.")
    return _lines(out)


def approval_lines(
    approval: Approval | None, selection: Selection | None, command: str = APPLY
) -> list[str]:
    """What an apply's approval accepted, why, and what still waits (with its command)."""
    out = []
    if approval is not None and selection is not None and selection.approved:
        out.append(f"Approved: {approval.describe()}, overriding:")
        out += [f"  - {block.limit}" for block in selection.approved]
    if selection is not None:
        out += [waiting.describe(command) for waiting in selection.waiting]
    return out


def render_approval(
    approval: Approval | None, selection: Selection | None, *, command: str = APPLY
) -> str:
    """The approval of an apply and what waits, or nothing."""
    return _lines(approval_lines(approval, selection, command))


def render_held(plan: Plan) -> str:
    """The held persons alone (after an apply's results), or nothing."""
    return _lines(held_section(plan))


def _lines(lines: list[str]) -> str:
    return "\n".join(visible(line) for line in lines)
