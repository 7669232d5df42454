"""``provisioner history``: the runs the state store keeps, one paragraph each, newest first."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from provisioner.text import visible


def render_history(runs: Sequence[Mapping[str, Any]]) -> str:
    if not runs:
        return "No runs yet: the history starts with the first run or apply."
    out: list[str] = []
    for run in runs:
        summary = run.get("summary") or {}
        outcome = run.get("outcome") or "unfinished (stopped half-way)"
        out.append(f"{run['started']}  {run['command']}: {outcome}")
        counts = ", ".join(
            f"{summary[status]} {status}"
            for status in ("applied", "skipped", "failed")
            if summary.get(status)
        )
        if counts:
            out.append(f"  {counts}")
        if summary.get("error"):
            out.append(f"  error: {summary['error']}")
        for reason in summary.get("blocked") or []:
            out.append(f"  blocked: {reason}")
        for block in summary.get("policy_blocks") or []:
            out.append(f"  blocked by policy ({block['category'] or 'all'}): {block['message']}")
        approved = summary.get("approved")
        if approved:
            what = approved.get("categories") or "all"
            what = ", ".join(what) if isinstance(what, list) else what
            reason = f": {approved['reason']}" if approved.get("reason") else ""
            who = f" by {approved['by']}" if approved.get("by") else ""
            out.append(f"  approved ({what}){who}{reason}")
            out += [f"    overriding: {message}" for message in approved.get("overrides") or []]
        for line in summary.get("waiting_for") or []:
            out.append(f"  {line}")
    return "\n".join(visible(line) for line in out)
