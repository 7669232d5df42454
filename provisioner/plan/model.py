"""A plan is a header and a list of changes; nothing in it is a secret, everything is data."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Action = Literal[
    "create_ou",
    "create",
    "adopt",
    "rename",
    "move",
    "update",
    "enable",
    "create_group",
    "update_group",
    "move_group",
    "add_member",
    "remove_member",
    "add_owner",
    "remove_owner",
    "disable",
    "delete",
    "delete_group",
    "conflict",
]
ORDER: tuple[str, ...] = Action.__args__  # type: ignore[attr-defined]
"""Changes apply in this order: containers before what goes into them, additions before removals."""

Kind = Literal["account", "group", "ou"]
Value = str | list[str] | None


@dataclass(frozen=True)
class Change:
    action: str
    kind: str
    key: str
    """The source anchor (accounts), the group key, or the OU path."""
    target: str
    """The object it applies to: the directory's id or place, or where a new object will go."""
    before: dict[str, Value] = field(default_factory=dict)
    after: dict[str, Value] = field(default_factory=dict)
    why: tuple[str, ...] = ()
    """Human-readable reasons: the template and source fields, or the rule that decided."""
    precondition: dict[str, Any] = field(default_factory=dict)
    """What apply checks before it acts: the object's id and the values it must still have."""

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["why"] = list(self.why)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Change:
        return cls(**{**data, "why": tuple(data.get("why", ()))})


@dataclass
class PlanHeader:
    created: str
    expires: str
    config_hash: str
    mappings_hash: str
    source_hash: str
    target: str
    """What the plan was made against, e.g. ``ldaps://dc1.school.be DC=school,DC=be`` or
    ``(no target: preview against an empty directory)``."""
    source_as_of: str
    blocked: list[str] = field(default_factory=list)
    """Reasons the plan must not be applied: mapping errors, a school that answered empty."""
    policy_blocked: list[str] = field(default_factory=list)
    """Policy limits the plan exceeds; a person may accept them with ``--approve REASON``."""
    warnings: list[str] = field(default_factory=list)
    persons: dict[str, int] = field(default_factory=dict)
    """Accounts per school in the desired state: the next run compares its own against these."""
    school_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    """Account changes per school and action."""


@dataclass
class Plan:
    header: PlanHeader
    changes: list[Change]

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for change in self.changes:
            counts[change.action] = counts.get(change.action, 0) + 1
        return {action: counts[action] for action in ORDER if action in counts}

    @property
    def empty(self) -> bool:
        return not self.changes
