"""What every target offers the pipeline: read the managed scope, check and apply changes.

The pipeline and the planner see a target only through :class:`Target`; how a directory is
reached (LDAP, Microsoft Graph) stays inside its module.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from provisioner.errors import ProvisionerError
from provisioner.model import ObservedState
from provisioner.plan.model import Change


class TargetError(ProvisionerError):
    """The directory cannot be reached or refuses the connector as a whole."""


@dataclass(frozen=True)
class Result:
    change: Change
    status: Literal["applied", "skipped", "failed"]
    message: str = ""


def drift(
    pre: Mapping[str, Any],
    current: Callable[[str], str | None],
    *,
    username: str,
    enabled: bool,
    anchor: str | None,
    names: tuple[str, str],
    ou: tuple[str, ...] | None = None,
) -> str | None:
    """Why an existing object is no longer what the plan saw (its precondition), or None.

    *current* gives an attribute's value as the directory holds it now; *username*, *enabled*,
    *anchor* and *ou* are the object's now; *names* are the directory's names of the username
    and anchor attributes, for the message.
    """
    drifted = [
        name
        for name, before in (pre.get("attributes") or {}).items()
        if (current(name) or "") != (before or "")
    ]
    username_attribute, anchor_attribute = names
    if "username" in pre and username.casefold() != str(pre["username"]).casefold():
        drifted.append(username_attribute)
    if "ou" in pre and ou != tuple(pre["ou"]):
        drifted.append("its OU")
    if "enabled" in pre and enabled != pre["enabled"]:
        return "already " + ("disabled" if pre["enabled"] else "enabled")
    if "anchor" in pre and anchor != pre["anchor"]:
        drifted.append(anchor_attribute)
    if drifted:
        return f"changed in the directory since the plan: {', '.join(drifted)}"
    return None


class Target(Protocol):
    config: Any
    """The target's section of the configuration (it has ``match_on``)."""
    limits: Mapping[str, int]
    """Longest value the directory takes, per account attribute."""
    group_limits: Mapping[str, int]
    has_ous: bool
    """False for a directory without OUs: the mappings' OU paths are left out of the plan."""
    has_owners: bool
    """True when the target keeps group owners (the class teacher): only then are they planned."""

    def describe(self) -> str:
        """What the plan is made against; a saved plan is applied only to the same."""
        ...

    def unsupported(
        self, account_attributes: Collection[str], group_attributes: Collection[str]
    ) -> list[str]:
        """Attributes the mappings set that this directory cannot hold, each with why."""
        ...

    def read(self, attributes: Collection[str]) -> ObservedState: ...

    def check(self, change: Change) -> str | None:
        """Why *change* no longer fits the directory (drift, or done already), or None."""
        ...

    def apply_all(
        self, changes: Iterable[Change], passwords: Mapping[int, str]
    ) -> Iterator[Result]:
        """Apply the changes in order, yielding one result per change as soon as it is known;
        ``passwords`` holds the initial password of each create, by position."""
        ...

    def reset_password(self, anchor: str, password: str) -> str: ...

    def close(self) -> None: ...
