"""Terminal text for ``provisioner test``: per example PASS or FAIL, and for a failure every
difference as expected against got, with what the mappings reported while rendering it.

Each line goes through :func:`provisioner.text.visible`: a value cannot add lines."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from provisioner.mapping.golden import Outcome
from provisioner.text import visible


def render_outcomes(outcomes: Sequence[Outcome]) -> str:
    lines: list[str] = []
    for outcome in outcomes:
        example = outcome.example
        status = "PASS" if outcome.passed else "FAIL"
        lines.append(f"{status}  {example.name}  ({_shown(example.file)}:{example.line})")
        if outcome.passed:
            continue
        what = ""
        for difference in outcome.differences:
            if not difference.item:  # the account or group itself
                lines.append(f"      {difference.what}: {difference.note}")
                what = ""
                continue
            if difference.what != what:
                what = difference.what
                lines.append(f"      {what}")
            lines.append(f"        {difference.item}")
            lines.append(f"          expected: {difference.expected}")
            lines.append(f"          got:      {difference.got}")
            if difference.note:
                lines.append(f"          ({difference.note})")
        if outcome.problems:
            lines.append("      the mappings reported:")
            lines += [f"        {problem}" for problem in outcome.problems]
    failed = sum(not o.passed for o in outcomes)
    lines.append("")
    lines.append(
        f"{len(outcomes)} example(s): {len(outcomes) - failed} passed, {failed} failed"
        if outcomes
        else "no examples in the example files"
    )
    return "\n".join(visible(line) for line in lines)


def _shown(path: Path) -> str:
    """A path relative to the working directory when inside it: shorter to read."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
