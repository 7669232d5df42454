"""Values a source could not read, told to the person who runs the night (``provisioner fetch``).

A :class:`~provisioner.sources.base.ValueProblem` never stops a read: the row arrives without that
value and only its person is held. These lines say how many there are per data set and unit,
then show the first few, so that someone can correct them in the source's own application.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from provisioner.sources.base import ValueProblem

SHOWN = 5
"""Problems shown one by one; the rest are only counted (one bad import can damage thousands)."""


def problem_warnings(problems: Sequence[ValueProblem], *, shown: int = SHOWN) -> list[str]:
    """Warning lines for *problems*, none when there are none: a total, a count per data set and
    unit, then the first *shown* problems with their person key, field and reason."""
    if not problems:
        return []
    total = len(problems)
    lines = [f"warning: {_count(total, 'value')} could not be read; the rest was read as usual:"]
    per_unit = Counter((p.dataset, p.unit) for p in problems)
    for (dataset, unit), count in per_unit.items():
        lines.append(f"warning:   {dataset} for {unit}: {count}")
    for problem in problems[:shown]:
        whose = f"person {problem.key}" if problem.key is not None else "a row without key"
        what = f"field {problem.field}" if problem.field else "the row"
        lines.append(
            f"warning: {problem.dataset} for {problem.unit}, {whose}, {what}: {problem.reason}"
        )
    if total > shown:
        lines.append(f"warning: … and {total - shown} more")
    lines.append(
        "warning: a person whose value could not be read keeps their account exactly as it is "
        "until the value is corrected in the source"
    )
    keyless = sum(1 for p in problems if p.key is None)
    if keyless:
        lines.append(
            f"warning: {_count(keyless, 'row')} without a person key belong to nobody, so no "
            "account of that school is treated as a leaver until it is corrected"
        )
    return lines


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"
