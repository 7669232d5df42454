"""The leaver lifecycle: gone from the source → disabled (after a grace) → deleted (after another).

The diff proposes to disable every managed account whose person is no longer in the source. This
step turns that into the lifecycle, using the day each leaver was first missed (kept in the state
store): within the first grace nothing happens yet; then the account is disabled and moved to the
disabled-accounts OU (the group diff already takes it out of managed groups, and puts it back when
the person returns); after the second grace — per account kind — it is deleted. Every change
says why and when the next step is due. A person who returns before deletion is enabled and moved
back by the ordinary diff, with the same account and name.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

from provisioner.model import ObservedAccount, ObservedState
from provisioner.plan.diff import enabled_change, move_change
from provisioner.plan.model import Action, Change, Kind, Precondition


@dataclass
class LifecycleConfig:
    disable_after_days: int = 0
    """Days a person must be gone before the account is disabled."""
    delete_after_days: dict[str, int] = field(default_factory=lambda: {"pupils": 90, "staff": 90})
    """Per account kind: days after leaving before the disabled account is deleted; a kind not
    listed is never deleted."""
    disabled_ou: list[str] = field(default_factory=list)
    """OU path below the managed root for disabled accounts, e.g. ``[Uitgeschakeld]``; empty
    leaves them where they are."""

    def __post_init__(self) -> None:
        if self.disable_after_days < 0 or any(d < 0 for d in self.delete_after_days.values()):
            raise ValueError("days cannot be negative")


@dataclass
class Lifecycle:
    changes: list[Change]
    notes: list[str]


def apply_lifecycle(
    changes: list[Change],
    observed: ObservedState,
    desired_anchors: set[str],
    *,
    since: Mapping[str, dt.date],
    kinds: Mapping[str, str],
    config: LifecycleConfig,
    today: dt.date,
) -> Lifecycle:
    kept = [c for c in changes if c.action != "disable"]
    notes: list[str] = []
    waiting = 0
    disabled_ou = tuple(config.disabled_ou)
    for account in observed.accounts:
        anchor = account.anchor
        if anchor is None or anchor in desired_anchors:
            continue
        gone = since.get(anchor, today)
        days = (today - gone).days
        kind = kinds.get(anchor)
        delete_after = config.delete_after_days.get(kind) if kind else None
        if days < config.disable_after_days:
            waiting += 1
            continue
        if account.enabled:
            kept.append(_disable(account, gone, kind, delete_after))
        elif delete_after is not None and days >= delete_after:
            kept.append(_delete(account, gone, kind, delete_after))
            continue
        if disabled_ou and account.ou != disabled_ou:
            why = f"gone from the source since {gone}: to the disabled-accounts OU"
            kept.append(move_change(Action.MOVE, Kind.ACCOUNT, anchor, account, disabled_ou, why))
    if any(c.action is Action.MOVE and c.after.get("ou") == list(disabled_ou) for c in kept):
        for depth in range(1, len(disabled_ou) + 1):
            path = disabled_ou[:depth]
            if path not in observed.ous:
                kept.append(
                    Change(
                        Action.CREATE_OU,
                        Kind.OU,
                        "/".join(path),
                        "/".join(path),
                        after={"ou": list(path)},
                        why=("the disabled-accounts OU",),
                        precondition=Precondition(absent=True),
                    )
                )
    kept.sort(key=lambda c: c.action.order)  # stable: the diff's order within an action stays
    if waiting:
        notes.append(
            f"{waiting} leaver(s) are within the {config.disable_after_days}-day grace before "
            "their accounts are disabled"
        )
    return Lifecycle(kept, notes)


def _due(gone: dt.date, kind: str | None, delete_after: int | None) -> str:
    if delete_after is None:
        return f"not deleted ({kind or 'unknown kind'} accounts are kept)"
    return f"deletion due on {gone + dt.timedelta(days=delete_after)} ({delete_after} days)"


def _disable(
    account: ObservedAccount, gone: dt.date, kind: str | None, delete_after: int | None
) -> Change:
    why = f"gone from the source since {gone}; {_due(gone, kind, delete_after)}"
    return enabled_change(str(account.anchor), account, False, why)


def _delete(account: ObservedAccount, gone: dt.date, kind: str | None, delete_after: int) -> Change:
    return Change(
        Action.DELETE,
        Kind.ACCOUNT,
        str(account.anchor),
        account.target,
        before={"username": account.username},
        why=(
            f"gone from the source since {gone}, more than {delete_after} days "
            f"({kind} accounts); the username is never given to anyone else",
        ),
        precondition=Precondition(id=account.id, enabled=False),
    )
