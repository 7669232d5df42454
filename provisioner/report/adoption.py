"""``plan --adoption-report``: what a first night finds already in the directory.

Three lists, for a coordinator deciding what to adopt, rename or clean up before the first apply:
accounts in the managed scope that match nobody in the source (the plan leaves them alone), names
the mappings want that something outside the managed scope holds (the plan gives the next free
name), and accounts outside the managed scope that carry a person's anchor (adopted only from the
places the configuration allows, never when protected).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from provisioner.model import DesiredState, NameClash, ObservedAccount, ObservedState
from provisioner.plan.model import Action, Plan
from provisioner.text import visible


@dataclass
class AdoptionReport:
    target: str
    unmatched: list[ObservedAccount]
    """Accounts in the managed scope without an anchor that no person matches."""
    clashes: list[NameClash]
    anchored_outside: list[tuple[ObservedAccount, str]]
    """Accounts outside the managed scope carrying an anchor, each with what becomes of it."""


def adoption_report(
    target: str,
    desired: DesiredState,
    observed: ObservedState,
    plan: Plan,
    clashes: Sequence[NameClash],
    anchored_outside: Sequence[ObservedAccount],
) -> AdoptionReport:
    adopted = {c.target for c in plan.changes if c.action is Action.ADOPT}
    unmatched = [a for a in observed.accounts if a.anchor is None and a.target not in adopted]
    adoptable = {a.id for a in observed.outside}
    outside = []
    for account in anchored_outside:
        person = desired.accounts.get(account.anchor or "")
        if person is None:
            fate = "no person in the source has this anchor: left alone"
        elif account.protected:
            fate = f"{person.kind} {person.anchor}: never adopted ({account.protected})"
        elif account.id in adoptable:
            fate = f"{person.kind} {person.anchor}: adopted by this plan (adopt_from)"
        else:
            fate = (
                f"{person.kind} {person.anchor}: add its OU to adopt_from to adopt it, or move "
                "it into the managed OU by hand"
            )
        outside.append((account, fate))
    return AdoptionReport(target, unmatched, list(clashes), outside)


def render_adoption_report(report: AdoptionReport, desired: DesiredState) -> str:
    out = [f"Adoption report: {report.target}", ""]
    out.append(
        f"Accounts in the managed scope that match nobody in the source ({len(report.unmatched)}):"
    )
    out += [f"  {a.username}  {a.target}" for a in report.unmatched] or ["  (none)"]
    out += [
        "  The plan leaves these alone. Give one the person's anchor to adopt it, or remove it.",
        "",
        f"Names taken outside the managed scope ({len(report.clashes)}):",
    ]
    for clash in report.clashes:
        account = desired.accounts.get(clash.anchor)
        given = f" → given {account.username}" if account is not None else " → held"
        out.append(f"  {clash.name} ({clash.anchor}): held by {clash.where}{given}")
    if not report.clashes:
        out.append("  (none)")
    out += [
        "",
        f"Accounts outside the managed scope with a person's anchor "
        f"({len(report.anchored_outside)}):",
    ]
    out += [f"  {a.username}  {a.target}: {fate}" for a, fate in report.anchored_outside] or [
        "  (none)"
    ]
    return "\n".join(visible(line) for line in out)
