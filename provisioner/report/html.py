"""A plan (and what apply did with it) as one self-contained HTML page, readable on a phone.

The summary comes first: per school by name the new accounts, moves, leavers, other changes and
held persons, then what blocks the plan with the command that approves it. Then the changes,
grouped by school and class and collapsed (``<details>``) with their counts, people by name and
username (the anchor in small print), group members by name; a search box opens the groups that
match. The page works without JavaScript (the search box is then hidden) and has no external
assets: it can be mailed, archived and opened offline. It holds names, so it is written
owner-only. Every value from the source goes through :func:`escape`: HTML-escaped, and its
control and text-direction characters written out (:func:`provisioner.text.visible`).
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape as _html_escape
from pathlib import Path
from typing import TYPE_CHECKING

from provisioner.files import write_private
from provisioner.plan.model import Action, Change, Plan, Value
from provisioner.plan.policy import Approval, Selection, describe_blocks
from provisioner.report.grouping import (
    COLUMNS,
    Names,
    by_school,
    column,
    identity,
    leaver_line,
    local_time,
    other_changes,
    result_of,
    team_line,
)
from provisioner.report.plan import APPLY, approval_lines, describe_hold, notes
from provisioner.text import visible

if TYPE_CHECKING:
    from provisioner.targets.base import Result

_STYLE = """
*{box-sizing:border-box}
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:60em;padding:.6em;line-height:1.4;
overflow-wrap:anywhere}
h1{font-size:1.3em;margin:.2em 0}h2{font-size:1.1em;margin:1em 0 .4em}
.meta{color:#555;font-size:.85em;margin:0 0 .6em}
.blocked{background:#fde2e2;border-left:.4em solid #c00;padding:.4em .8em;margin:.4em 0}
.note{background:#fff6d6;border-left:.4em solid #c90;padding:.4em .8em;margin:.4em 0}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #ddd;padding:.25em;
text-align:left;vertical-align:top;overflow-wrap:anywhere}
td.n,th.n{text-align:right;white-space:nowrap;width:1%;padding:.25em .2em}
th.n{font-size:.75em;font-weight:600}
details{border:1px solid #ddd;border-radius:.3em;margin:.3em 0;padding:0 .5em}
details>summary{cursor:pointer;padding:.35em 0;font-weight:600}
summary h2{display:inline;font-size:1em;margin:0}
details details{border-color:#eee}details details>summary{font-weight:500}
.count{color:#555;font-weight:400}
ul.items{list-style:none;margin:0;padding:0}
.item{border-top:1px solid #eee;padding:.35em 0}
.act{display:inline-block;min-width:4.5em;font-size:.8em;font-weight:600;color:#fff;
background:#567;border-radius:.2em;padding:0 .3em;text-align:center}
.act-create,.act-adopt,.act-enable,.act-add_member,.act-add_owner,.act-create_group{
background:#276b2f}
.act-disable,.act-delete,.act-remove_member,.act-remove_owner,.act-delete_group,
.act-archive_group{background:#a33}.act-conflict{background:#c60}
small,.why{color:#555;font-size:.85em}.why,.where{display:block}
.res{font-size:.85em;font-weight:600}.res-failed{color:#b00}.res-skipped{color:#a60}
.res-applied{color:#276b2f}
ul.attrs{margin:.2em 0;padding-left:1.2em;font-size:.9em}
del{color:#a00}ins{color:#070;text-decoration:none}code{font-size:.95em}
.members{font-size:.9em}
#search{width:100%;font-size:1em;padding:.4em;margin:.6em 0 .2em}
"""

_SEARCH = """
(function(){
var box=document.getElementById('search'),shown=document.getElementById('found');
box.hidden=false;
var items=[].slice.call(document.querySelectorAll('.item'));
var texts=items.map(function(i){return i.textContent.toLowerCase()});
var groups=[].slice.call(document.querySelectorAll('details.group'));
box.addEventListener('input',function(){
 var q=box.value.trim().toLowerCase(),n=0;
 items.forEach(function(item,i){var hit=!q||texts[i].indexOf(q)>=0;item.hidden=!hit;
  if(hit)n++;});
 groups.forEach(function(d){if(!q){d.hidden=false;d.open=false;return;}
  var any=d.querySelector('.item:not([hidden])');d.hidden=!any;d.open=!!any;});
 shown.textContent=q?n+' found':'';
});
})();
"""

_SHORT = {
    Action.CREATE: "new",
    Action.CREATE_OU: "new OU",
    Action.CREATE_GROUP: "new group",
    Action.ADD_MEMBER: "+ members",
    Action.REMOVE_MEMBER: "− members",
    Action.ADD_OWNER: "+ owners",
    Action.REMOVE_OWNER: "− owners",
}

_HEADINGS = {
    "new": "New",
    "moves": "Moves",
    "leavers": "Leavers",
    "other": "Other",
    "held": "Held",
}


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


def _attributes(change: Change, names: Names) -> str:
    rows = []
    for name in sorted(set(change.before) | set(change.after)):
        if name in ("members", "owners"):
            continue  # shown by name below
        before = f"<del>{_value(change.before[name])}</del> → " if name in change.before else ""
        after = f"<ins>{_value(change.after[name])}</ins>" if name in change.after else "(removed)"
        rows.append(f"<li>{escape(name)}: {before}{after}</li>")
    return f"<ul class='attrs'>{''.join(rows)}</ul>" if rows else ""


def _members(change: Change, names: Names) -> str:
    out = []
    for role in ("members", "owners"):
        value = change.after.get(role, change.before.get(role))
        people = names.members(value)
        if people:
            out.append(
                f"<div class='members'>{role} ({len(people)}): {escape(', '.join(people))}</div>"
            )
    return "".join(out)


def _result(result: Result | None) -> str:
    if result is None:
        return ""
    why = f": {escape(result.message)}" if result.message and result.status != "applied" else ""
    return f" <span class='res res-{escape(result.status)}'>{escape(result.status)}{why}</span>"


def _item(change: Change, plan: Plan, names: Names, result: Result | None, *, person: bool) -> str:
    label = _SHORT.get(change.action, str(change.action).replace("_", " "))
    tag = f"<span class='act act-{escape(change.action)}'>{escape(label)}</span>"
    if person:
        who = plan.header.people.get(change.key, {})
        title = who.get("name") or who.get("username") or change.key
        small = " · ".join(
            part
            for part in (who.get("username", "") if who.get("name") else "", "anchor " + change.key)
            if part
        )
    else:
        title = names.group(change.key) if change.kind == "group" else change.key
        small = change.key if title != change.key else ""
    head = f"{tag} <strong>{escape(title)}</strong>" + (
        f" <small>{escape(small)}</small>" if small else ""
    )
    body = []
    if leaving := leaver_line(change, plan):
        body.append(f"<span class='why'>{escape(leaving)}</span>")
    if change.action.creates:
        values = _attributes(change, names)
        if values:
            body.append(
                f"<details class='values'><summary>values</summary>{values}"
                f"<small class='where'>{escape(change.target)}</small></details>"
            )
    else:
        body.append(_attributes(change, names))
        body.append(f"<small class='where'>{escape(change.target)}</small>")
        body += [f"<span class='why'>{escape(w)}</span>" for w in change.why if not leaving]
    body.append(_members(change, names))
    return f"<li class='item'>{head}{_result(result)}{''.join(body)}</li>"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {name}" for name, n in counts.items() if n)


def _group(title: str, count: str, inner: str, *, anchor: str = "") -> str:
    ident = f" id='{escape(anchor)}'" if anchor else ""
    return (
        f"<details class='group'{ident}><summary>{escape(title)} "
        f"<span class='count'>({escape(count)})</span></summary>{inner}</details>"
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
    names = Names(plan)
    schools = by_school(plan)
    done = result_of(results)
    title = "Apply report" if results is not None else "Plan"
    out = [
        f"<h1>{title}: {escape(header.target)}</h1>",
        f"<p class='meta'>Source as of {escape(header.source_as_of)} · made "
        f"{escape(local_time(header.created))} · valid until "
        f"{escape(local_time(header.expires))}</p>",
    ]
    if results is not None and (steps := approval_lines(approval, selection, command)):
        # An approved run leads with what was approved, by whom and why; what still waits
        # follows it.
        out.append(
            "<div class='note' id='approval'>"
            + "".join(f"<div>{escape(line)}</div>" for line in steps)
            + "</div>"
        )
    out.append("<section id='summary'><h2>Summary</h2>")
    for reason in header.blocked:
        out.append(f"<p class='blocked' id='blocked'>BLOCKED: {escape(reason)}</p>")
    if results is not None:
        counts = {s: sum(r.status == s for r in results) for s in ("applied", "skipped", "failed")}
        out.append(
            f"<h2 id='results'>Results</h2><p>Applied <strong>{counts['applied']}</strong>, "
            f"skipped <strong>{counts['skipped']}</strong>, "
            f"failed <strong>{counts['failed']}</strong>"
            + (" (failed changes are tried again on the next run)" if counts["failed"] else "")
            + ".</p>"
        )
    if schools:
        head = "".join(f"<th class='n'>{_HEADINGS[c]}</th>" for c in COLUMNS)
        rows = "".join(
            f"<tr><th>{escape(school.name)}</th>"
            + "".join(f"<td class='n'>{school.counts.get(c, 0) or ''}</td>" for c in COLUMNS)
            + "</tr>"
            for school in schools
        )
        out.append(f"<table id='per-school'><tr><th>School</th>{head}</tr>{rows}</table>")
    others = other_changes(plan)
    if others:
        out.append(
            "<p>Groups and OUs: "
            + escape(_counts({a.title: len(c) for a, c in others.items()}))
            + ".</p>"
        )
    if teams := team_line(plan):
        out.append(f"<p id='teams'>{escape(teams[0].upper() + teams[1:])}.</p>")
    if plan.empty:
        out.append("<p>No changes: the directory matches the source.</p>")
    # After an apply only what its approval left waiting is still blocked; the rest is approved.
    blocks = header.every_policy_block() if selection is None else selection.unapproved
    for category, approve, messages in describe_blocks(blocks, command):
        items = "".join(f"<li>{escape(message)}</li>" for message in messages)
        out.append(
            f"<div class='blocked' id='policy-{escape(category)}'><strong>BLOCKED by policy "
            f"({escape(category)})</strong>: approve with <code>{escape(approve)}</code>"
            f"<ul>{items}</ul></div>"
        )
    out.append("</section>")
    if shown := notes(header):
        out.append(
            _group(
                "Notes",
                str(len(shown)),
                "".join(f"<p class='note'>{escape(note)}</p>" for note in shown),
                anchor="notes",
            )
        )
    if header.held:
        out.append(
            "<details class='group'><summary><h2 id='held'>"
            f"Held ({len(header.held)})</h2></summary><p>A problem with their data only: their "
            "accounts are left exactly as they are and they get no new one until their data is "
            "corrected.</p><ul class='items'>"
            + "".join(
                f"<li class='item'>{escape(describe_hold(hold, header.school_names))}</li>"
                for hold in header.held
            )
            + "</ul></details>"
        )
    if results is not None:
        problems = [r for r in results if r.status != "applied"]
        if problems:
            out.append(
                _group(
                    "Skipped and failed",
                    str(len(problems)),
                    "".join(
                        f"<div class='change'><strong>{escape(r.status)}</strong>: "
                        f"{escape(r.change.action)} {escape(names.person(r.change.key))} "
                        f"<small>{escape(r.change.target)}</small> — {escape(r.message)}</div>"
                        for r in problems
                    ),
                    anchor="problems",
                )
            )
    if not plan.empty:
        out.append(
            "<h2 id='changes'>Changes</h2>"
            "<input type='search' id='search' hidden placeholder='Search a name, username, "
            "class…' aria-label='Search the changes'><small id='found' aria-live='polite'>"
            "</small>"
        )
    for school in schools:
        inner = "".join(
            _group(
                section.name,
                _counts(_column_counts(section.changes, plan)),
                "<ul class='items'>"
                + "".join(
                    _item(c, plan, names, done.get(identity(c)), person=True)
                    for c in section.changes
                )
                + "</ul>",
            )
            for section in school.sections.values()
        )
        out.append(_group(school.name, _counts(_summary(school.counts)), inner))
    if others:
        inner = "".join(
            _group(
                action.title,
                str(len(changes)),
                "<ul class='items'>"
                + "".join(
                    _item(c, plan, names, done.get(identity(c)), person=False) for c in changes
                )
                + "</ul>",
                anchor=str(action),
            )
            for action, changes in others.items()
        )
        out.append(_group("Groups and OUs", str(sum(map(len, others.values()))), inner))
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title}</title><style>{_STYLE}</style></head><body>"
        + "".join(out)
        + f"<script>{_SEARCH}</script></body></html>"
    )


def _column_counts(changes: list[Change], plan: Plan) -> dict[str, int]:
    counts: dict[str, int] = {}
    for change in changes:
        what = _HEADINGS[column(change, plan)].lower()
        counts[what] = counts.get(what, 0) + 1
    return counts


def _summary(counts: dict[str, int]) -> dict[str, int]:
    return {_HEADINGS[c].lower(): counts.get(c, 0) for c in COLUMNS}


def write_report(path: Path, text: str) -> None:
    """Owner-only (0600) via a temporary file and a rename: a file there before is replaced with
    the new mode, and a symbolic link in its place is refused, never written through."""
    write_private(path, text)
