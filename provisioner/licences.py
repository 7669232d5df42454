"""Licences as mapped state: the account attribute ``licences`` and its one written form.

A mapping names the licences of an account kind by SKU part number, each with the service plans
it leaves off (``accounts.pupils.licences``). The mapping engine writes them as one value of the
account attribute :data:`ATTRIBUTE`, in the canonical form of :func:`licence_text`, so that the
planner diffs them like any attribute (with its why) and a target that holds licences reads
what it has into the same form. The planner also counts, per SKU, the licences a plan adds
(:func:`licences_added`) against the units the target says are free.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from provisioner.plan.model import Action, Change, Kind

ATTRIBUTE = "licences"
"""The account attribute that holds an account's licences."""
PART_NUMBER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,99}$")
"""What a SKU part number or a service plan name looks like (``STANDARDWOFFPACK_STUDENT``,
``EXCHANGE_S_STANDARD``)."""
_ENTRY = re.compile(r"^(?P<sku>[^\s()]+)(?: \(without (?P<plans>[^()]+)\))?$")

Licences = dict[str, frozenset[str]]
"""SKU part number → the names of its service plans left off."""


def licence_text(licences: Mapping[str, Iterable[str]]) -> str:
    """The canonical form: SKUs in order, each with its plans left off in order, e.g.
    ``M365EDU_A3_STUDENT; STANDARDWOFFPACK_STUDENT (without EXCHANGE_S_STANDARD, YAMMER_EDU)``;
    empty for none."""
    entries = []
    for sku in sorted(licences):
        plans = sorted(set(licences[sku]))
        entries.append(f"{sku} (without {', '.join(plans)})" if plans else sku)
    return "; ".join(entries)


def parse_licences(text: str | None) -> Licences:
    """The licences of a value in the form of :func:`licence_text` (empty or None: none)."""
    found: Licences = {}
    for entry in (text or "").split(";"):
        entry = entry.strip()
        if not entry:
            continue
        match = _ENTRY.match(entry)
        if match is None:
            raise ValueError(f"not a licence: {entry!r}")
        plans = match.group("plans") or ""
        found[match.group("sku")] = frozenset(p.strip() for p in plans.split(",") if p.strip())
    return found


def licences_added(changes: Iterable[Change]) -> dict[str, int]:
    """Per SKU part number, how many accounts the changes give a licence they did not have."""
    added: dict[str, int] = {}
    for change in changes:
        if change.kind is not Kind.ACCOUNT or ATTRIBUTE not in change.after:
            continue
        if change.action not in (Action.CREATE, Action.ADOPT, Action.UPDATE, Action.RENAME):
            continue
        before = parse_licences(str(change.before.get(ATTRIBUTE) or ""))
        for sku in parse_licences(str(change.after[ATTRIBUTE] or "")).keys() - before.keys():
            added[sku] = added.get(sku, 0) + 1
    return added


def shortages(changes: Iterable[Change], free: Mapping[str, int]) -> list[str]:
    """What blocks a plan that gives more licences of a SKU than the tenant has free: one line
    per SKU, with the number short. Licences the same plan takes away are not counted as free:
    Graph may carry out the adds first."""
    lines = []
    for sku, count in sorted(licences_added(changes).items()):
        available = free.get(sku)
        if available is None or count <= available:
            continue
        lines.append(
            f"licences: the plan gives {count} account(s) a {sku} licence and the tenant has "
            f"{max(available, 0)} free: {count - max(available, 0)} short. Nothing is applied; "
            "buy or free licences (or change the mappings) and plan again"
        )
    return lines
