"""A plan is a header and a list of changes; nothing in it is a secret, everything is data.

The vocabulary is closed: an :class:`Action`, a :class:`Kind` and a :class:`Precondition` are
the only things a change can say, and a plan file that says anything else is refused by name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, TypeVar


class PlanFormatError(ValueError):
    """A change in a plan file uses a word the plan vocabulary does not have."""


class Action(StrEnum):
    """What a change does. The members are listed in the order changes apply: containers before
    what goes into them, additions before removals."""

    CREATE_OU = "create_ou"
    CREATE = "create"
    ADOPT = "adopt"
    RENAME = "rename"
    MOVE = "move"
    UPDATE = "update"
    ENABLE = "enable"
    CREATE_GROUP = "create_group"
    RESTORE_GROUP = "restore_group"
    UPDATE_GROUP = "update_group"
    MOVE_GROUP = "move_group"
    ADD_MEMBER = "add_member"
    REMOVE_MEMBER = "remove_member"
    ADD_OWNER = "add_owner"
    REMOVE_OWNER = "remove_owner"
    ARCHIVE_GROUP = "archive_group"
    DISABLE = "disable"
    DELETE = "delete"
    DELETE_GROUP = "delete_group"
    CONFLICT = "conflict"

    @property
    def order(self) -> int:
        return _ORDER[self]

    @property
    def symbol(self) -> str:
        """One character for the terminal preview."""
        return _LOOKS[self][0]

    @property
    def title(self) -> str:  # type: ignore[override]  # str.title is of no use on an action
        """The heading of this action's changes in a preview or report."""
        return _LOOKS[self][1]

    @property
    def is_leaver(self) -> bool:
        """True for what happens to people who left: these wait in the school-year freeze."""
        return self in (Action.DISABLE, Action.DELETE)

    @property
    def creates(self) -> bool:
        return self in (Action.CREATE_OU, Action.CREATE, Action.CREATE_GROUP)


_ORDER = {action: index for index, action in enumerate(Action)}
_LOOKS = {
    Action.CREATE_OU: ("+", "OUs to create"),
    Action.CREATE: ("+", "accounts to create"),
    Action.ADOPT: ("≈", "accounts to adopt"),
    Action.RENAME: ("~", "accounts to rename"),
    Action.MOVE: ("→", "accounts to move"),
    Action.UPDATE: ("~", "accounts to update"),
    Action.ENABLE: ("+", "accounts to enable"),
    Action.CREATE_GROUP: ("+", "groups to create"),
    Action.RESTORE_GROUP: ("+", "archived groups to restore (desired again)"),
    Action.UPDATE_GROUP: ("~", "groups to update"),
    Action.MOVE_GROUP: ("→", "groups to move"),
    Action.ADD_MEMBER: ("+", "groups gaining members"),
    Action.REMOVE_MEMBER: ("-", "groups losing members"),
    Action.ADD_OWNER: ("+", "groups gaining owners"),
    Action.REMOVE_OWNER: ("-", "groups losing owners"),
    Action.ARCHIVE_GROUP: ("-", "groups to archive (kept, with their members)"),
    Action.DISABLE: ("-", "accounts to disable"),
    Action.DELETE: ("x", "accounts to delete"),
    Action.DELETE_GROUP: ("-", "groups to delete"),
    Action.CONFLICT: ("!", "conflicts (resolve by hand; nothing is guessed)"),
}


class Kind(StrEnum):
    ACCOUNT = "account"
    GROUP = "group"
    OU = "ou"


Value = str | list[str] | None


@dataclass(frozen=True, slots=True)
class Precondition:
    """What apply checks before it acts; every field left at its default is not checked."""

    absent: bool = False
    """The object must not exist yet (a create)."""
    created_in_this_plan: bool = False
    """The group is made by an earlier change of the same plan (members of a new group)."""
    id: str | None = None
    """The directory's immutable id of the object the change acts on."""
    attributes: Mapping[str, str | None] | None = None
    """Values the object must still hold."""
    username: str | None = None
    ou: tuple[str, ...] | None = None
    enabled: bool | None = None
    unanchored: bool = False
    """The object must still carry no source anchor (an adoption). In JSON: ``"anchor": null``."""
    anchored: str | None = None
    """The object must still carry this (old) anchor: an account carried over to a new anchor.
    In JSON: ``"anchor": "123"``."""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for name in ("absent", "created_in_this_plan"):
            if getattr(self, name):
                data[name] = True
        for name in ("id", "username", "ou", "enabled"):
            value = getattr(self, name)
            if value is not None:
                data[name] = list(value) if name == "ou" else value
        if self.attributes is not None:
            data["attributes"] = dict(self.attributes)
        if self.unanchored:
            data["anchor"] = None
        elif self.anchored is not None:
            data["anchor"] = self.anchored
        return data

    @classmethod
    def from_json(cls, data: Any) -> Precondition:
        if not isinstance(data, dict):
            raise PlanFormatError(f"precondition is not an object: {data!r}")
        known = _PRECONDITION_JSON_FIELDS
        unknown = sorted(set(data) - known)
        if unknown:
            raise PlanFormatError(
                f"unknown precondition field {', '.join(map(repr, unknown))} "
                f"(known: {', '.join(sorted(known))})"
            )
        values = dict(data)
        if "anchor" in values:
            anchor = values.pop("anchor")
            if anchor is None:
                values["unanchored"] = True
            elif isinstance(anchor, str) and anchor:
                values["anchored"] = anchor
            else:
                raise PlanFormatError(
                    "precondition anchor must be null (no anchor yet) or the old anchor's text"
                )
        if values.get("ou") is not None:
            values["ou"] = tuple(values["ou"])
        for flag in ("absent", "created_in_this_plan", "enabled"):
            if flag in values and not isinstance(values[flag], bool):
                raise PlanFormatError(f"precondition {flag} must be true or false")
        return cls(**values)


@dataclass(frozen=True, slots=True)  # one per change: no dict of its own each
class Change:
    action: Action
    kind: Kind
    key: str
    """The source anchor (accounts), the group key, or the OU path."""
    target: str
    """The object it applies to: the directory's id or place, or where a new object will go."""
    before: dict[str, Value] = field(default_factory=dict)
    after: dict[str, Value] = field(default_factory=dict)
    why: tuple[str, ...] = ()
    """Human-readable reasons: the template and source fields, or the rule that decided."""
    precondition: Precondition = field(default_factory=Precondition)
    """What apply checks before it acts: the object's id and the values it must still have."""

    def __post_init__(self) -> None:
        # Plain words are accepted where the enums are expected, and checked: nothing outside
        # the vocabulary gets into a plan.
        object.__setattr__(self, "action", _member(Action, self.action, "action"))
        object.__setattr__(self, "kind", _member(Kind, self.kind, "kind"))
        if isinstance(self.precondition, Mapping):
            object.__setattr__(self, "precondition", Precondition.from_json(self.precondition))

    def to_json(self) -> dict[str, Any]:
        """The change as JSON-ready data. Its before and after values are JSON-ready already
        (text, lists of text, true/false, null): their dicts are copied, the values shared."""
        return {
            "action": str(self.action),
            "kind": str(self.kind),
            "key": self.key,
            "target": self.target,
            "before": dict(self.before),
            "after": dict(self.after),
            "why": list(self.why),
            "precondition": self.precondition.to_json(),
        }

    @classmethod
    def from_json(cls, data: Any) -> Change:
        if not isinstance(data, dict):
            raise PlanFormatError(f"a change is not an object: {data!r}")
        unknown = sorted(data.keys() - _CHANGE_FIELDS)
        if unknown:
            raise PlanFormatError(f"unknown change field {', '.join(map(repr, unknown))}")
        return cls(
            **{
                **data,
                "why": tuple(data.get("why", ())),
                "precondition": Precondition.from_json(data.get("precondition", {})),
            }
        )


# Computed once, not per change read: a plan file holds tens of thousands of them.
_PRECONDITION_JSON_FIELDS = frozenset(
    {f.name for f in fields(Precondition)} - {"unanchored", "anchored"} | {"anchor"}
)
_CHANGE_FIELDS = frozenset(f.name for f in fields(Change))

E = TypeVar("E", bound=StrEnum)


def _member(enum: type[E], value: object, what: str) -> E:
    try:
        return enum(value)
    except ValueError:
        known = ", ".join(enum)
        raise PlanFormatError(f"unknown {what} {value!r} (known: {known})") from None


class Category(StrEnum):
    """What a policy block is about: ``apply --approve leavers`` lets that category through and
    leaves the changes of every other blocked category waiting."""

    LEAVERS = "leavers"
    """Account disables and deletes (with the leavers' moves to the disabled-accounts OU)."""
    MOVES = "moves"
    RENAMES = "renames"
    UPDATES = "updates"
    GROUPS = "groups"
    """Group deletes."""
    DROP = "drop"
    """A school's persons fell more than ``max_drop`` since the last successful run."""


@dataclass(frozen=True)
class PolicyBlock:
    """One policy limit a plan exceeds, with the category an approval names to accept it."""

    category: str
    """A :class:`Category` word; empty for a block an older plan file names without one (only
    ``--approve REASON``, which accepts everything, lifts it)."""
    message: str
    school: str | None = None
    """The school a per-school block is about (a drop holds back that school's leavers)."""

    def __post_init__(self) -> None:
        if self.category:
            object.__setattr__(self, "category", _member(Category, self.category, "category"))

    @property
    def limit(self) -> str:
        """The message without its advice on approving: what was exceeded, by how much."""
        return self.message.split("; if this is right")[0]

    def to_json(self) -> dict[str, Any]:
        return {"category": self.category, "message": self.message, "school": self.school}

    @classmethod
    def from_json(cls, data: Any) -> PolicyBlock:
        if isinstance(data, PolicyBlock):
            return data
        if not isinstance(data, dict) or not isinstance(data.get("message"), str):
            raise PlanFormatError(f"a policy block is not {{category, message}}: {data!r}")
        unknown = sorted(set(data) - {"category", "message", "school"})
        if unknown:
            raise PlanFormatError(f"unknown policy block field {', '.join(map(repr, unknown))}")
        return cls(str(data.get("category") or ""), data["message"], data.get("school"))


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
    """The messages of the policy limits the plan exceeds (kept for readers of format 1; the
    blocks with their categories are in ``policy_blocks``)."""
    policy_blocks: list[PolicyBlock] = field(default_factory=list)
    """Policy limits the plan exceeds, each with its category: ``--approve leavers`` accepts
    that category's, ``--approve REASON`` all of them."""
    warnings: list[str] = field(default_factory=list)
    persons: dict[str, int] = field(default_factory=dict)
    """Persons per school in the desired state, held persons included: the next run compares
    its own against these."""
    school_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    """Account changes per school and action."""
    managed_accounts: int = 0
    """Accounts in the managed scope when the plan was made: what the policy's shares are of.
    With the two below it lets apply derive the policy verdict again from the changes."""
    managed_per_school: dict[str, int] = field(default_factory=dict)
    managed_groups: int = 0
    """Groups in the managed scope when the plan was made: what a share in
    ``max_delete_groups`` is of."""
    synced_left_alone: int = 0
    """Users and groups of the managed domains or prefix that another system synchronises into
    the directory (Entra Connect, ``onPremisesSyncEnabled``): left alone, only counted."""
    """Accounts in the managed scope per school, for the per-school limits."""
    account_schools: dict[str, str] = field(default_factory=dict)
    """The school of each account a change acts on (anchor → school), where known."""
    held: list[dict[str, Any]] = field(default_factory=list)
    """Persons held tonight, each ``{kind, key, school, reason, anchor, dataset, field, since,
    nights}``: a problem with their data; their accounts are left exactly as they are."""
    school_names: dict[str, str] = field(default_factory=dict)
    """School number → its name in the source, for the reports (empty in older plan files)."""
    people: dict[str, dict[str, str]] = field(default_factory=dict)
    """Anchor → ``{name, username, group}`` of each account a change acts on or names as a
    member or owner: the display name and username for the reports, and the key of the most
    specific group it belongs to (its class), which the reports group changes by."""
    group_names: dict[str, str] = field(default_factory=dict)
    """Group key → the group's name (its displayName), for the groups the changes act on."""
    leaver_dates: dict[str, dict[str, str | None]] = field(default_factory=dict)
    """Anchor → ``{gone, disable, delete}`` (YYYY-MM-DD) of each leaver a change acts on: the
    day the person left the source, the day the account is (or was) disabled, and the day it is
    deleted (None: that kind of account is kept)."""

    def __post_init__(self) -> None:
        self.policy_blocks = [PolicyBlock.from_json(block) for block in self.policy_blocks]

    def to_json(self) -> dict[str, Any]:
        """The header as JSON-ready data: each field's list or dict copied, what it holds
        shared (text, numbers, and the small dicts of ``held``, ``people`` and the like)."""
        data = {name: _shallow_copy(getattr(self, name)) for name in _field_names(PlanHeader)}
        data["policy_blocks"] = [block.to_json() for block in self.policy_blocks]
        return data

    def every_policy_block(self) -> list[PolicyBlock]:
        """The categorised blocks, and any message ``policy_blocked`` names beside them (an
        older plan file's, or one set by hand) as a block of no category."""
        known = {block.message for block in self.policy_blocks}
        return [
            *self.policy_blocks,
            *(PolicyBlock("", message) for message in self.policy_blocked if message not in known),
        ]


@dataclass
class Observations:
    """What the state store learns when the plan is applied (and only then: a dry run records
    nothing), dated by the plan's ``source_as_of``."""

    left: list[str] = field(default_factory=list)
    """Anchors gone from the source since this day: their leaver clocks start."""
    returned: list[str] = field(default_factory=list)
    """Anchors back in the source: their leaver clocks stop."""
    accounts: dict[str, list[str]] = field(default_factory=dict)
    """Anchor → [account kind, school], for the accounts whose kind or school is new."""
    ids: dict[str, dict[str, str]] = field(default_factory=dict)
    """Per kind ("account", "group"), anchor → the directory's immutable id, where new."""
    held: list[list[str]] = field(default_factory=list)
    """[account kind, person key] of persons held from this day on: their hold clocks start."""
    released: list[list[str]] = field(default_factory=list)
    """[account kind, person key] of persons held before and no longer: their clocks stop."""
    disabled: list[str] = field(default_factory=list)
    """Anchors of leavers seen disabled for whom no disable day is recorded (disabled before
    this version, or by hand): their deletion grace counts from this day."""
    archived: dict[str, str] = field(default_factory=dict)
    """Group key → the day it was archived, for archived groups whose archive day is not
    recorded (the day the directory shows, else this day): their deletion grace counts from it."""

    def to_json(self) -> dict[str, Any]:
        """JSON-ready data: each field's list or dict copied, the text in it shared."""
        return {name: _shallow_copy(getattr(self, name)) for name in _field_names(Observations)}


def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def _shallow_copy(value: Any) -> Any:
    """A list or dict copied one level deep (the JSON document gets containers of its own to
    add to); anything else as it is."""
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    return value


@dataclass
class Plan:
    header: PlanHeader
    changes: list[Change]
    observations: Observations = field(default_factory=Observations)

    def counts(self) -> dict[str, int]:
        counts: dict[Action, int] = {}
        for change in self.changes:
            counts[change.action] = counts.get(change.action, 0) + 1
        return {str(action): counts[action] for action in sorted(counts, key=_ORDER.__getitem__)}

    @property
    def empty(self) -> bool:
        return not self.changes
