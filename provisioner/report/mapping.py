"""Terminal text for ``validate`` (a summary) and ``explain`` (one person, value by value).

Each line is passed through :func:`provisioner.text.visible` as it is joined: source values
cannot add lines or reorder what the reader sees."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from provisioner.mapping.filters import ascii_fold
from provisioner.model import DesiredAccount, DesiredState, ObservedAccount
from provisioner.sources.base import Block
from provisioner.text import visible

_SHOWN = 10  # list items shown per section before "… and N more"


def _listed(title: str, lines: list[str]) -> list[str]:
    if not lines:
        return []
    shown = [f"  {line}" for line in lines[:_SHOWN]]
    if len(lines) > _SHOWN:
        shown.append(f"  … and {len(lines) - _SHOWN} more")
    return [f"{title} ({len(lines)}):", *shown]


def validation_summary(
    state: DesiredState,
    fields: Mapping[str, Collection[str] | None],
    counts: Mapping[str, Mapping[str, int]],
    blocks: Sequence[Block],
) -> str:
    report = state.report
    out = ["Data read (only what the mappings reference):"]
    for dataset, used in fields.items():
        what = "all fields" if used is None else ", ".join(sorted(used))
        rows = sum(counts.get(dataset, {}).values())
        out.append(f"  {dataset:<24} {rows:>7} rows  {what}")
    persons = ", ".join(f"{kind} {n}" for kind, n in report.persons.items())
    kinds: dict[str, int] = {}
    for group in state.groups.values():
        kinds[group.kind] = kinds.get(group.kind, 0) + 1
    out += [
        "",
        f"Persons:  {persons}",
        f"Accounts: {len(state.accounts)}",
        f"Groups:   {len(state.groups)} ({', '.join(f'{k} {n}' for k, n in kinds.items())})",
        f"OUs:      {len(state.ous)}",
        "",
    ]
    out += _listed(
        "Duplicates resolved",
        [
            f"{d.kind} {d.key}: {d.rows} rows, used the one of {d.chosen_school} ({d.reason})"
            for d in report.duplicates
        ],
    )
    out += _listed(
        "Name collisions resolved",
        [f"{c.kind} {c.anchor}: {c.wanted} → {c.given}" for c in report.collisions],
    )
    for follows, title in (
        (
            False,
            "Existing accounts keeping a name the mappings would now make otherwise "
            "(username.rename: keep; set follow to rename them)",
        ),
        (True, "Existing accounts the next plan renames (username.rename: follow)"),
    ):
        out += _listed(
            title,
            [
                f"{c.kind} {c.anchor}: {c.attribute} {c.held} → {c.wanted}"
                for c in report.names
                if c.follows is follows
            ],
        )
    out += _listed("Source blocks", [f"{b.dataset} for {b.unit}: {b.reason}" for b in blocks])
    out += _listed(
        "Held (no change to their accounts, no new account, until their data is corrected)",
        [
            f"{h.kind} {h.key} (school {h.school})"
            + (f" [{'.'.join(filter(None, (h.dataset, h.field)))}]" if h.dataset else "")
            + f": {h.reason}"
            for h in state.held
        ],
    )
    unknown = {school: n for school, n in state.unknown_rows.items() if n}
    out += _listed(
        "Rows whose person key cannot be read (that school's leaver actions wait)",
        [f"school {school}: {n} row(s)" for school, n in sorted(unknown.items())],
    )
    out += _listed("Warnings", report.warnings)
    out += _listed("Errors", report.errors)
    problems = []
    if report.errors:
        problems.append(f"{len(report.errors)} error(s)")
    if state.held:
        problems.append(f"{len(state.held)} person(s) held")
    if unknown:
        problems.append(f"{sum(unknown.values())} row(s) of unknown persons")
    verdict = ", ".join(problems) if problems else "OK: the mappings are valid"
    out += ["", verdict]
    return _lines(out)


def find_accounts(state: DesiredState, query: str) -> list[DesiredAccount]:
    """By anchor, then by any source value (stamnummer …), then by part of the name."""
    accounts = list(state.accounts.values())
    if query in state.accounts:
        return [state.accounts[query]]
    exact = [a for a in accounts if query in _values(a.person)]
    if exact:
        return exact
    wanted = ascii_fold(query).casefold()
    return [
        a
        for a in accounts
        if wanted in ascii_fold(" ".join(_values(a.person))).casefold()
        or wanted in ascii_fold(a.attributes.get("displayName", _NONE).value).casefold()
        or wanted in a.username
    ]


class _None:
    value = ""


_NONE = _None()


def _values(records: Mapping[str, Any]) -> list[str]:
    values: list[str] = []
    for record in records.values():
        if isinstance(record, dict):
            values += [str(v) for v in record.values() if isinstance(v, str)]
        elif isinstance(record, list):
            for row in record:
                values += [str(v) for v in row.values() if isinstance(v, str)]
    return values


def explain_account(
    account: DesiredAccount,
    state: DesiredState,
    fields: Mapping[str, Collection[str] | None],
    *,
    directory: str | None = None,
    held: ObservedAccount | None = None,
) -> str:
    """One person's account, value by value, with the template that made each value; with
    *directory* (a target is configured), also what the directory holds (*held*: the account
    with this anchor, None when there is none yet) and why the two differ."""
    out = [f"{account.kind} {account.anchor}: {account.username} (school {account.school})", ""]
    out.append("Source (referenced fields only):")
    for dataset, record in account.person.items():
        keep = fields.get(dataset)
        rows = record if isinstance(record, list) else [record]
        for row in rows:
            if row is None:
                out.append(f"  {dataset}: (no row)")
                continue
            # A pivoted set (free fields by name) is shown whole; it holds only what was read.
            pivoted = keep is not None and not any(k in keep for k in row)
            shown = {k: v for k, v in row.items() if keep is None or pivoted or k in keep}
            out.append(f"  {dataset}: {json.dumps(shown, ensure_ascii=False, sort_keys=True)}")
    collision = next((c for c in state.report.collisions if c.anchor == account.anchor), None)
    if account.username_why is not None:
        why = account.username_why
        out += [
            "",
            f"Username: {account.username}",
            f"  {why.text}   ({why.location})"
            + (f" ← {', '.join(why.fields)}" if why.fields else ""),
        ]
        if collision is not None:
            out.append(f"  {collision.wanted!r} was taken, so the name got a suffix")
    for change in state.report.names:
        if change.anchor != account.anchor:
            continue
        if change.follows:
            out.append(
                f"  {change.attribute}: {change.held!r} in the directory, renamed to "
                f"{change.wanted!r} by the next plan (username.rename: follow)"
            )
        else:
            out.append(
                f"  {change.attribute}: keeps {change.held!r}; the mappings would now make "
                f"{change.wanted!r} (username.rename: keep; set follow to rename)"
            )
    if directory is not None:
        out += ["", f"In the directory ({directory}):"]
        if held is None:
            out.append("  no account with this anchor yet: the next plan creates or adopts one")
        else:
            out.append(f"  {held.username}  {held.target}")
    out += ["", "Attributes:"]
    width = max((len(a) for a in account.attributes), default=0)
    for name, derived in account.attributes.items():
        why = derived.why
        source = f" ← {', '.join(why.fields)}" if why.fields else ""
        out.append(f"  {name:<{width}}  {derived.value}")
        out.append(f"  {'':<{width}}    {why.text}   ({why.location}){source}")
        now = held.attributes.get(name) or "" if held is not None else None
        if now is not None and now != derived.value:
            what = "renames" if name in account.unique else "updates"
            out.append(
                f"  {'':<{width}}    the directory holds {now or '(nothing)'!r}: "
                f"the next plan {what} it"
            )
    out += ["", f"OU: {' / '.join(account.ou)}"]
    member_of = sorted(g.key for g in state.groups.values() if account.anchor in g.members)
    owner_of = sorted(g.key for g in state.groups.values() if account.anchor in g.owners)
    out.append(f"Groups: {', '.join(member_of) or '(none)'}")
    if owner_of:
        out.append(f"Owner of: {', '.join(owner_of)}")
    return _lines(out)


def _lines(lines: list[str]) -> str:
    return "\n".join(visible(line) for line in lines)
