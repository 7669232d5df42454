"""A plan (and what apply did with it) as one self-contained HTML page, readable on a phone.

Blocks come first, then counts, then the changes grouped by action with before → after per
attribute, then, for an apply, every change that was skipped or failed. No external assets: the
page can be mailed, archived and opened offline. It holds names, so it is written owner-only.
Every value from the source goes through :func:`escape`: HTML-escaped, and its control and
text-direction characters written out (:func:`provisioner.text.visible`).
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape as _html_escape
from pathlib import Path
from typing import TYPE_CHECKING

from provisioner.files import write_private
from provisioner.plan.model import Action, Change, Plan, Value
from provisioner.plan.policy import Approval, Selection, describe_blocks
from provisioner.report.plan import APPLY, approval_lines, describe_hold
from provisioner.text import visible

if TYPE_CHECKING:
    from provisioner.targets.base import Result

_STYLE = """
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:60em;padding:1em;line-height:1.4}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.5em}
.blocked{background:#fde2e2;border-left:.4em solid #c00;padding:.5em 1em}
.note{background:#fff6d6;border-left:.4em solid #c90;padding:.5em 1em}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.3em;
text-align:left;vertical-align:top;overflow-wrap:anywhere}
.change{border:1px solid #ddd;border-radius:.3em;margin:.5em 0;padding:.5em}
.why{color:#555;font-size:.9em}del{color:#a00}ins{color:#070;text-decoration:none}
code{font-size:.95em}
"""


def escape(text: str) -> str:
    """*text* for HTML: control and text-direction characters written out (a right-to-left
    override would show a name backwards), then HTML-escaped."""
    return _html_escape(visible(text))


def _value(value: Value) -> str:
    if value is None:
        return "<em>(none)</em>"
    if isinstance(value, list):
        return escape(", ".join(value))
    return f"<code>{escape(value)}</code>"


def _change(change: Change) -> str:
    rows = []
    for name in sorted(set(change.before) | set(change.after)):
        before = f"<del>{_value(change.before[name])}</del> → " if name in change.before else ""
        after = f"<ins>{_value(change.after[name])}</ins>" if name in change.after else "(removed)"
        rows.append(f"<tr><th>{escape(name)}</th><td>{before}{after}</td></tr>")
    why = "".join(f"<div class='why'>{escape(w)}</div>" for w in change.why)
    table = f"<table>{''.join(rows)}</table>" if rows else ""
    return (
        f"<div class='change'><strong>{escape(change.target)}</strong> "
        f"<span class='why'>[{escape(change.kind)} {escape(change.key)}]</span>{table}{why}</div>"
    )


def render_html(
    plan: Plan,
    results: Sequence[Result] | None = None,
    *,
    approval: Approval | None = None,
    selection: Selection | None = None,
    command: str = APPLY,
) -> str:
    header = plan.header
    title = "Apply report" if results is not None else "Plan"
    out = [
        f"<h1>{title}: {escape(header.target)}</h1>",
        f"<p>Source as of {escape(header.source_as_of)}; plan made {escape(header.created)}, "
        f"valid until {escape(header.expires)}.</p>",
    ]
    if results is not None and (steps := approval_lines(approval, selection, command)):
        # An approved run leads with what was approved, by whom and why; what still waits
        # follows it.
        out.append(
            "<div class='note' id='approval'>"
            + "".join(f"<div>{escape(line)}</div>" for line in steps)
            + "</div>"
        )
    for reason in header.blocked:
        out.append(f"<p class='blocked' id='blocked'>BLOCKED: {escape(reason)}</p>")
    # After an apply only what its approval left waiting is still blocked; the rest is approved.
    blocks = header.every_policy_block() if selection is None else selection.unapproved
    for category, approve, messages in describe_blocks(blocks, command):
        items = "".join(f"<li>{escape(message)}</li>" for message in messages)
        out.append(
            f"<div class='blocked' id='policy-{escape(category)}'><strong>BLOCKED by policy "
            f"({escape(category)})</strong>: approve with <code>{escape(approve)}</code>"
            f"<ul>{items}</ul></div>"
        )
    for note in header.warnings:
        out.append(f"<p class='note'>{escape(note)}</p>")
    if header.held:
        out.append(
            f"<h2 id='held'>Held ({len(header.held)})</h2><p>A problem with their data only: "
            "their accounts are left exactly as they are and they get no new one until their "
            "data is corrected.</p><ul>"
            + "".join(f"<li>{escape(describe_hold(hold))}</li>" for hold in header.held)
            + "</ul>"
        )
    counts = plan.counts()
    rows = "".join(
        f"<tr><th>{escape(Action(a).title)}</th><td>{n}</td></tr>" for a, n in counts.items()
    )
    out.append(
        f"<h2 id='summary'>Summary</h2><table>{rows or '<tr><td>No changes</td></tr>'}</table>"
    )
    if header.school_counts:
        actions = sorted({a for per in header.school_counts.values() for a in per})
        head = "".join(f"<th>{escape(a)}</th>" for a in actions)
        body = "".join(
            f"<tr><th>{escape(school)}</th>"
            + "".join(f"<td>{per.get(a, 0)}</td>" for a in actions)
            + "</tr>"
            for school, per in sorted(header.school_counts.items())
        )
        out.append(
            f"<h2 id='per-school'>Account changes per school</h2>"
            f"<table><tr><th>school</th>{head}</tr>{body}</table>"
        )
    if header.persons:
        per_school = "".join(
            f"<tr><th>{escape(school)}</th><td>{n}</td></tr>"
            for school, n in header.persons.items()
        )
        out.append(f"<h2>Persons per school (held ones included)</h2><table>{per_school}</table>")
    if results is not None:
        done = {s: sum(r.status == s for r in results) for s in ("applied", "skipped", "failed")}
        out.append(
            "<h2 id='results'>Results</h2><table>"
            + "".join(f"<tr><th>{s}</th><td>{n}</td></tr>" for s, n in done.items())
            + "</table>"
        )
        problems = [r for r in results if r.status != "applied"]
        for result in problems:
            out.append(
                f"<div class='change'><strong>{escape(result.status)}</strong>: "
                f"{escape(result.change.action)} {escape(result.change.target)} — "
                f"{escape(result.message)}</div>"
            )
    by_action: dict[Action, list[Change]] = {}
    for change in plan.changes:
        by_action.setdefault(change.action, []).append(change)
    for action, changes in by_action.items():
        out.append(f"<h2 id='{action}'>{escape(action.title)} ({len(changes)})</h2>")
        out += [_change(c) for c in changes]
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title><style>{_STYLE}</style></head><body>"
        + "".join(out)
        + "</body></html>"
    )


def write_report(path: Path, text: str) -> None:
    """Owner-only (0600) via a temporary file and a rename: a file there before is replaced with
    the new mode, and a symbolic link in its place is refused, never written through."""
    write_private(path, text)
