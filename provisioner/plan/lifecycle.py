"""The leaver lifecycle: gone from the source → disabled (after a grace) → deleted (after another);
and the group lifecycle: no longer in the source → archived → deleted (after a grace).

The diff proposes to disable every managed account whose person is no longer in the source. This
step turns that into the lifecycle, using the day each leaver was first missed and the day their
account was disabled (both kept in the state store): within the first grace nothing happens yet;
then the account is disabled and moved to the disabled-accounts OU (the group diff already takes
it out of managed groups, and puts it back when the person returns); the second grace — per
account kind — counts from the disable, never from a day inside the school-year freeze; after it
the account is deleted. Every change says why and when the next step is due. A person who returns
before deletion is enabled and moved back by the ordinary diff, with the same account and name.

A managed group the desired state no longer has is archived, not deleted: moved to the archive OU
(a directory with OUs) or marked (one without), its members kept, so that file shares and Teams
that use it keep working until someone has looked. It is deleted only after
``delete_groups_after_days`` counted from the archive day. A group desired again while archived is
restored by the diff (:data:`~provisioner.plan.model.Action.RESTORE_GROUP`). In the school-year
freeze nothing is archived or deleted: a group that empties then may only wait for its pupils.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from provisioner.licences import ATTRIBUTE as LICENCES
from provisioner.model import CLASS_TEAM, TEAM, ObservedAccount, ObservedGroup, ObservedState
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
    archive_ou: list[str] = field(default_factory=lambda: ["Archief"])
    """OU path below the managed root where archived groups go (a directory with OUs)."""
    archive_prefix: str = "(archief) "
    """Put in front of an archived group's name in a directory without OUs (Entra ID)."""
    delete_groups_after_days: int = 365
    """Days after a group was archived before it is deleted."""
    licence_grace_days: int | None = None
    """Days a disabled leaver keeps the licences the mappings gave (counted from the disable);
    after them the licences are taken away. Unset: kept until the account is deleted (a
    delete frees them)."""

    def __post_init__(self) -> None:
        if (
            (self.licence_grace_days or 0) < 0
            or self.disable_after_days < 0
            or self.delete_groups_after_days < 0
            or any(d < 0 for d in self.delete_after_days.values())
        ):
            raise ValueError("days cannot be negative")
        named = all(isinstance(name, str) and name.strip() for name in self.archive_ou)
        if not self.archive_ou or not named:
            raise ValueError(
                "archive_ou needs at least one OU name, e.g. [Archief]: archived groups are "
                "recognised by the OU they lie in"
            )


@dataclass
class Lifecycle:
    changes: list[Change]
    notes: list[str]
    seen_disabled: list[str] = field(default_factory=list)
    """Leavers found disabled without a recorded disable day: their grace counts from today."""
    seen_archived: dict[str, str] = field(default_factory=dict)
    """Archived groups without a recorded archive day → the day their grace counts from."""
    dates: dict[str, dict[str, str | None]] = field(default_factory=dict)
    """Leaver anchor → ``{gone, disable, delete}`` days (delete None: the kind is kept), for
    the reports."""


def apply_lifecycle(
    changes: list[Change],
    observed: ObservedState,
    desired_anchors: set[str],
    *,
    since: Mapping[str, dt.date],
    kinds: Mapping[str, str],
    config: LifecycleConfig,
    today: dt.date,
    disabled: Mapping[str, dt.date] | None = None,
    frozen: bool = False,
) -> Lifecycle:
    """The leaver lifecycle of the accounts. *since*: the day each leaver was first missed;
    *disabled*: the day each leaver's account was disabled, where recorded. *frozen*: in the
    school-year freeze, when no licence is taken away either (the policy holds the rest)."""
    disabled = disabled or {}
    kept = [c for c in changes if c.action != "disable"]
    notes: list[str] = []
    seen_disabled: list[str] = []
    dates: dict[str, dict[str, str | None]] = {}
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
        off = today if account.enabled else disabled.get(anchor, today)
        dates[anchor] = {
            "gone": gone.isoformat(),
            "disable": off.isoformat(),
            "delete": None
            if delete_after is None
            else (off + dt.timedelta(days=delete_after)).isoformat(),
        }
        if account.enabled:
            # Disabled tonight (if the plan is applied): the deletion grace starts today.
            kept.append(_disable(account, gone, today, kind, delete_after))
        else:
            off = disabled.get(anchor)
            if off is None:
                # Disabled before the day was recorded: counted from tonight, so that nothing is
                # deleted earlier than the grace promises.
                off = today
                seen_disabled.append(anchor)
            if delete_after is not None and (today - off).days >= delete_after:
                kept.append(_delete(account, gone, off, kind, delete_after))
                continue
            grace = config.licence_grace_days
            if grace is not None and (today - off).days >= grace and not frozen:
                kept += _licences_released(account, off, grace)
        if disabled_ou and account.ou != disabled_ou:
            why = f"gone from the source since {gone}: to the disabled-accounts OU"
            kept.append(move_change(Action.MOVE, Kind.ACCOUNT, anchor, account, disabled_ou, why))
    if any(c.action is Action.MOVE and c.after.get("ou") == list(disabled_ou) for c in kept):
        kept += missing_ous(disabled_ou, observed, "the disabled-accounts OU")
    kept.sort(key=lambda c: c.action.order)  # stable: the diff's order within an action stays
    if waiting:
        notes.append(
            f"{waiting} leaver(s) are within the {config.disable_after_days}-day grace before "
            "their accounts are disabled"
        )
    touched = {c.key for c in kept if c.kind is Kind.ACCOUNT}
    dates = {anchor: when for anchor, when in dates.items() if anchor in touched}
    return Lifecycle(kept, notes, sorted(seen_disabled), dates=dates)


def missing_ous(path: tuple[str, ...], observed: ObservedState, why: str) -> list[Change]:
    """The creates of each level of *path* that the directory does not have yet."""
    return [
        Change(
            Action.CREATE_OU,
            Kind.OU,
            "/".join(path[:depth]),
            "/".join(path[:depth]),
            after={"ou": list(path[:depth])},
            why=(why,),
            precondition=Precondition(absent=True),
        )
        for depth in range(1, len(path) + 1)
        if path[:depth] not in observed.ous
    ]


def _due(disable_day: dt.date, kind: str | None, delete_after: int | None) -> str:
    if delete_after is None:
        return f"not deleted ({kind or 'unknown kind'} accounts are kept)"
    due = disable_day + dt.timedelta(days=delete_after)
    return f"deletion due on {due} ({delete_after} days after the disable)"


def _disable(
    account: ObservedAccount,
    gone: dt.date,
    today: dt.date,
    kind: str | None,
    delete_after: int | None,
) -> Change:
    why = f"gone from the source since {gone}; {_due(today, kind, delete_after)}"
    return enabled_change(str(account.anchor), account, False, why)


def _licences_released(account: ObservedAccount, off: dt.date, grace: int) -> list[Change]:
    """The update that takes a disabled leaver's licences away once the licence grace is over
    (none when the account holds none of the mappings' licences)."""
    held = account.attributes.get(LICENCES)
    if not held:
        return []
    before = {LICENCES: held}
    return [
        Change(
            Action.UPDATE,
            Kind.ACCOUNT,
            str(account.anchor),
            account.target,
            before=before,
            after={LICENCES: ""},
            why=(
                f"disabled since {off}: its licences are released after {grace} days "
                "(lifecycle.licence_grace_days)",
            ),
            precondition=Precondition(id=account.id, attributes=before, enabled=False),
        )
    ]


def _delete(
    account: ObservedAccount, gone: dt.date, off: dt.date, kind: str | None, delete_after: int
) -> Change:
    return Change(
        Action.DELETE,
        Kind.ACCOUNT,
        str(account.anchor),
        account.target,
        before={"username": account.username},
        why=(
            f"gone from the source since {gone}, disabled since {off}: {delete_after} days or "
            f"more ({kind} accounts); the username is never given to anyone else",
        ),
        precondition=Precondition(id=account.id, enabled=False),
    )


# -- groups ---------------------------------------------------------------------------------------


@dataclass
class GroupLifecycle:
    changes: list[Change]
    notes: list[str]
    seen_archived: dict[str, str]
    """Archived groups whose archive day the state store does not know → the day counted from."""
    waiting: int = 0
    """Groups that would be archived or deleted but wait for the end of the freeze."""


def group_lifecycle(
    observed: ObservedState,
    desired_groups: Collection[str],
    keep: Collection[str],
    *,
    archived: Mapping[str, dt.date],
    config: LifecycleConfig,
    today: dt.date,
    frozen: bool,
    has_ous: bool,
) -> GroupLifecycle:
    """What becomes of the managed groups the desired state no longer has: archived, then
    deleted once ``delete_groups_after_days`` have passed since the archive day (*archived*: the
    days the state store recorded). A group with a member or owner in *keep* (a held person)
    stays as it is; two groups with one key are a conflict (the diff says so), left alone. In the
    school-year freeze (*frozen*) nothing is archived or deleted."""
    counts = Counter(g.key for g in observed.groups if g.key)
    changes: list[Change] = []
    seen: dict[str, str] = {}
    waiting = 0
    kept_until: list[dt.date] = []
    after_days = config.delete_groups_after_days
    for group in sorted(observed.groups, key=lambda g: g.key or ""):
        key = group.key
        if key is None or counts[key] > 1 or key in desired_groups:
            continue
        if group.members & set(keep) or group.owners & set(keep):
            continue  # a held person's group stays as it is
        if group.archived is None:
            if frozen:
                waiting += 1
                continue
            changes.append(_archive(group, key, config, today, has_ous))
            continue
        day = archived.get(key) or _day(group.archived)
        if day is None or key not in archived:
            day = day or today
            seen[key] = day.isoformat()
        due = day + dt.timedelta(days=after_days)
        if today < due:
            kept_until.append(due)
        elif frozen:
            waiting += 1
        else:
            changes.append(_delete_group(group, key, day, after_days))
    if has_ous and any(c.action is Action.ARCHIVE_GROUP for c in changes):
        changes += missing_ous(tuple(config.archive_ou), observed, "the archive OU for groups")
    notes = []
    if kept_until:
        notes.append(
            f"{len(kept_until)} archived group(s) are kept, with their members, until "
            f"{after_days} days after they were archived (delete_groups_after_days); the first is "
            f"due on {min(kept_until)}"
        )
    return GroupLifecycle(changes, notes, seen, waiting)


def _day(text: str | None) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text) if text else None
    except ValueError:
        return None


def _archive(
    group: ObservedGroup, key: str, config: LifecycleConfig, today: dt.date, has_ous: bool
) -> Change:
    after_days = config.delete_groups_after_days
    due = today + dt.timedelta(days=after_days)
    after: dict[str, str | list[str] | None] = {"archived": today.isoformat()}
    if has_ous:
        place = f"moved to the archive OU {'/'.join(config.archive_ou)}"
        after["ou"] = list(config.archive_ou)
    else:
        place = f"marked archived (name prefix {config.archive_prefix!r})"
        after["prefix"] = config.archive_prefix
    if group.attributes.get(TEAM) == CLASS_TEAM:
        after[TEAM] = "archived"
        place += "; its class team archived (read-only, kept for the record)"
    return Change(
        Action.ARCHIVE_GROUP,
        Kind.GROUP,
        key,
        group.target,
        before={"ou": list(group.ou)} if has_ous else {},
        after=after,
        why=(
            f"the source no longer has group {key} (its class is gone or has no members): "
            f"{place}, not deleted; its members stay; deletion due on {due} ({after_days} days, "
            "delete_groups_after_days)",
        ),
        precondition=Precondition(id=group.id, ou=tuple(group.ou) if has_ous else None),
    )


def _delete_group(group: ObservedGroup, key: str, day: dt.date, after_days: int) -> Change:
    return Change(
        Action.DELETE_GROUP,
        Kind.GROUP,
        key,
        group.target,
        before={"members": sorted(group.members)},
        why=(
            f"archived since {day}: {after_days} days or more (delete_groups_after_days); file "
            "shares and Teams that still use the group lose it",
        ),
        precondition=Precondition(id=group.id),
    )
