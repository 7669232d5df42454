"""Desired state − observed state = the changes, each with its reason and its precondition.

The planner knows neither Informat nor LDAP nor Graph: it compares plain objects. Only objects in
the managed scope are observed, so nothing outside it can appear in a plan.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Sequence

from provisioner.model import (
    CLASS_TEAM,
    TEAM,
    DesiredAccount,
    DesiredGroup,
    DesiredState,
    ObservedAccount,
    ObservedGroup,
    ObservedState,
)
from provisioner.plan.model import Action, Change, Kind, Precondition, Value

NEW = "(new)"


def _path(ou: tuple[str, ...], name: str | None = None) -> str:
    return "/".join((*ou, name) if name else ou)


def _attribute_reasons(desired: DesiredAccount | DesiredGroup, names: Sequence[str]) -> list[str]:
    reasons = []
    for name in names:
        why = desired.attributes[name].why
        source = f" ← {', '.join(why.fields)}" if why.fields else ""
        reasons.append(f"{name}: {why.text} ({why.location}){source}")
    return reasons


def _changed(desired: DesiredAccount | DesiredGroup, observed: dict[str, str]) -> list[str]:
    """Attributes whose desired value differs; attributes the mappings do not set are left alone."""
    return [
        name
        for name, derived in desired.attributes.items()
        if (observed.get(name) or "") != derived.value
    ]


def diff(
    desired: DesiredState,
    observed: ObservedState,
    *,
    match_on: Sequence[str] = ("username",),
    keep: Collection[str] = (),
    wait: Collection[str] = (),
) -> list[Change]:
    """Every change that makes *observed* look like *desired*, in apply order.

    Accounts correlate by anchor; accounts without an anchor (made before the connector) by the
    ``match_on`` attributes. One candidate is adopted; several are a conflict, never a guess.
    Accounts whose anchor is in *keep* (held persons) are left exactly as they are: no change to
    the account, and their group memberships and ownerships neither added nor removed. Accounts
    that still carry a former anchor are carried over first (:func:`carry_over`; the planner
    does it once for the diff and the leaver lifecycle alike). The group memberships and
    ownerships of the anchors in *wait* (leavers in the school-year freeze) stay as they are too,
    while their accounts are planned as usual.

    Groups the desired state no longer has are left to the group lifecycle
    (:func:`~provisioner.plan.lifecycle.group_lifecycle`: archived, later deleted); an archived
    group that is desired again is restored, with its place and attributes, in one change.
    """
    changes: list[Change] = []
    for path in sorted(desired.ous - observed.ous, key=lambda p: (len(p), p)):
        changes.append(
            Change(
                Action.CREATE_OU,
                Kind.OU,
                _path(path),
                _path(path),
                after={"ou": list(path)},
                why=("an OU the mappings place objects in",),
                precondition=Precondition(absent=True),
            )
        )
    keep = frozenset(keep) - desired.accounts.keys()
    accounts = _account_changes(desired, observed, match_on, keep)
    # A person whose account is a conflict (for a person to resolve) has no account to put in a
    # group: their memberships wait, as a held person's do.
    unresolved = {c.key for c in accounts if c.action is Action.CONFLICT}
    changes += accounts
    changes += _group_changes(desired, observed, keep | unresolved | frozenset(wait))
    return sorted(changes, key=lambda c: c.action.order)  # stable: keeps key order per action


def _account_changes(
    desired: DesiredState, observed: ObservedState, match_on: Sequence[str], keep: frozenset[str]
) -> list[Change]:
    changes: list[Change] = []
    by_anchor: dict[str, ObservedAccount] = {}
    for account in observed.accounts:
        if account.anchor is None:
            continue
        if account.anchor in by_anchor:
            other = by_anchor[account.anchor]
            changes.append(
                Change(
                    Action.CONFLICT,
                    Kind.ACCOUNT,
                    account.anchor,
                    account.target,
                    why=(
                        f"two accounts carry anchor {account.anchor}: {other.target} and "
                        f"{account.target}; resolve by hand",
                    ),
                )
            )
            continue
        by_anchor[account.anchor] = account
    unanchored = [a for a in observed.accounts if a.anchor is None]
    outside = {a.anchor: a for a in observed.outside if a.anchor}

    for anchor in sorted(desired.accounts, key=lambda a: (len(a), a)):
        want = desired.accounts[anchor]
        have = by_anchor.get(anchor)
        if have is None and anchor in outside:
            changes += _adopt_from_outside(want, outside[anchor])
            continue
        if have is None:
            changes += _new_account(want, unanchored, match_on)
            continue
        if have.carried_from is not None:
            changes.append(reanchor_change(want, have))
        changes += _account_updates(want, have)

    # Sorted for a stable plan: only those no longer in the source (a few), not everyone.
    for anchor in sorted(a for a in by_anchor if a not in desired.accounts):
        have = by_anchor[anchor]
        if anchor not in keep and have.enabled:
            changes.append(enabled_change(anchor, have, False, "no longer in the source"))
    return changes


def move_change(
    action: Action,
    kind: Kind,
    key: str,
    have: ObservedAccount | ObservedGroup,
    ou: tuple[str, ...],
    why: str | None = None,
) -> Change:
    return Change(
        action,
        kind,
        key,
        have.target,
        before={"ou": list(have.ou)},
        after={"ou": list(ou)},
        why=(why or f"OU {_path(ou)} from the mappings",),
        precondition=Precondition(id=have.id, ou=tuple(have.ou)),
    )


def _update(
    action: Action,
    kind: Kind,
    key: str,
    have: ObservedAccount | ObservedGroup,
    want: DesiredAccount | DesiredGroup,
    changed: Sequence[str] | None = None,
) -> list[Change]:
    """The update of the attributes that are *changed* (by default: those that differ)."""
    if changed is None:
        changed = _changed(want, have.attributes)
    if not changed:
        return []
    before = {n: have.attributes.get(n) for n in changed}
    return [
        Change(
            action,
            kind,
            key,
            have.target,
            before=before,
            after={n: want.attributes[n].value for n in changed},
            why=tuple(_attribute_reasons(want, changed)),
            precondition=Precondition(id=have.id, attributes=before),
        )
    ]


def enabled_change(key: str, have: ObservedAccount, enabled: bool, why: str) -> Change:
    """Enable or disable an account; it must still be in the other state when applied."""
    before, after = ("false", "true") if enabled else ("true", "false")
    return Change(
        Action.ENABLE if enabled else Action.DISABLE,
        Kind.ACCOUNT,
        key,
        have.target,
        before={"enabled": before},
        after={"enabled": after},
        why=(why,),
        precondition=Precondition(id=have.id, enabled=not enabled),
    )


def _new_account(
    want: DesiredAccount, unanchored: list[ObservedAccount], match_on: Sequence[str]
) -> list[Change]:
    candidates = [
        have
        for have in unanchored
        if any(
            (_value(have, rule) or "").casefold() == (_desired_value(want, rule) or "").casefold()
            and _desired_value(want, rule)
            for rule in match_on
        )
    ]
    if len(candidates) > 1:
        places = ", ".join(sorted(c.target for c in candidates))
        return [
            Change(
                Action.CONFLICT,
                Kind.ACCOUNT,
                want.anchor,
                NEW,
                why=(
                    f"{want.kind} {want.anchor} ({want.username}) matches "
                    f"{len(candidates)} existing accounts: {places}; resolve by hand",
                ),
            )
        ]
    attributes = {name: d.value for name, d in want.attributes.items()}
    if candidates:
        have = candidates[0]
        unanchored.remove(have)
        changed = _changed(want, have.attributes)
        # besides its anchor, an adopted account may need to move and to be enabled
        moves = (
            [move_change(Action.MOVE, Kind.ACCOUNT, want.anchor, have, want.ou)]
            if want.ou != have.ou
            else []
        )
        if not have.enabled:
            moves.append(enabled_change(want.anchor, have, True, "in the source, and adopted"))
        return [
            *moves,
            Change(
                Action.ADOPT,
                Kind.ACCOUNT,
                want.anchor,
                have.target,
                before={"anchor": None, **{n: have.attributes.get(n) for n in changed}},
                after={"anchor": want.anchor, **{n: attributes[n] for n in changed}},
                why=(
                    f"existing account matched on {', '.join(match_on)}",
                    *_attribute_reasons(want, changed),
                ),
                precondition=Precondition(id=have.id, unanchored=True),
            ),
        ]
    return [
        Change(
            Action.CREATE,
            Kind.ACCOUNT,
            want.anchor,
            _path(want.ou, want.username),
            after={"username": want.username, "ou": list(want.ou), **attributes},
            why=(f"{want.kind} {want.anchor} is in the source and has no account",),
            precondition=Precondition(absent=True),
        )
    ]


def _adopt_from_outside(want: DesiredAccount, have: ObservedAccount) -> list[Change]:
    """The person's own account, found outside the managed scope in a place the configuration
    adopts from (it carries their anchor: never matched by name alone): moved in, then named and
    set like any other. A protected account (an administrator's) is never adopted."""
    if have.protected:
        return [
            Change(
                Action.CONFLICT,
                Kind.ACCOUNT,
                want.anchor,
                have.target,
                why=(
                    f"the account of {want.kind} {want.anchor} is {have.target}, outside the "
                    f"managed OU, and is never adopted: {have.protected}; move it by hand or "
                    "remove its anchor",
                ),
            )
        ]
    differs = _changed(want, have.attributes)
    renamed = _renamed(want, have, differs)
    changed = [n for n in differs if n not in renamed]
    changes = [
        Change(
            Action.ADOPT,
            Kind.ACCOUNT,
            want.anchor,
            have.target,
            before={
                "anchor": want.anchor,
                "ou": None,
                **{n: have.attributes.get(n) for n in changed},
            },
            after={
                "anchor": want.anchor,
                "ou": list(want.ou),
                **{n: want.attributes[n].value for n in changed},
            },
            why=(
                f"the account of {want.kind} {want.anchor} carries its anchor outside the managed "
                "OU, in a place adopt_from allows: moved in",
                *_attribute_reasons(want, changed),
            ),
            precondition=Precondition(id=have.id, anchored=want.anchor),
        )
    ]
    if want.username.casefold() != have.username.casefold() or renamed:
        changes.append(rename_change(want, have, renamed))
    if not have.enabled:
        changes.append(enabled_change(want.anchor, have, True, "in the source, and adopted"))
    return changes


def _value(account: ObservedAccount, rule: str) -> str | None:
    return account.username if rule == "username" else account.attributes.get(rule)


def _desired_value(account: DesiredAccount, rule: str) -> str | None:
    if rule == "username":
        return account.username
    derived = account.attributes.get(rule)
    return derived.value if derived else None


def _account_updates(want: DesiredAccount, have: ObservedAccount) -> list[Change]:
    changes = []
    anchor = want.anchor
    # Compared once: the rename and the update take their attributes from the same list.
    differs = _changed(want, have.attributes)
    renamed = _renamed(want, have, differs)
    if want.username.casefold() != have.username.casefold() or renamed:
        changes.append(rename_change(want, have, renamed))
    if want.ou != have.ou:
        changes.append(move_change(Action.MOVE, Kind.ACCOUNT, anchor, have, want.ou))
    changed = [n for n in differs if n not in renamed]
    changes += _update(Action.UPDATE, Kind.ACCOUNT, anchor, have, want, changed)
    if not have.enabled:
        changes.append(enabled_change(anchor, have, True, "in the source again"))
    return changes


def _renamed(want: DesiredAccount, have: ObservedAccount, differs: Sequence[str]) -> list[str]:
    """Of the attributes that *differ*, the unique ones whose value changes from one name to
    another (a name given where the account had none is an update: nothing is taken away)."""
    return [n for n in differs if n in want.unique and have.attributes.get(n)]


def rename_change(want: DesiredAccount, have: ObservedAccount, renamed: Sequence[str]) -> Change:
    """A new username, or new values of unique attributes (mail, userPrincipalName): the names
    that identify the person change together, as one rename (counted by ``policy.max_rename``;
    the old names stay recorded as issued, never given to anyone else)."""
    before = {n: have.attributes.get(n) for n in renamed}
    why = []
    if want.username.casefold() != have.username.casefold():
        made = want.username_why
        source = f": {made.text} ({made.location})" if made is not None else " from the mappings"
        why.append(f"username {want.username!r} (was {have.username!r}){source}")
    return Change(
        Action.RENAME,
        Kind.ACCOUNT,
        want.anchor,
        have.target,
        before={"username": have.username, **before},
        after={"username": want.username, **{n: want.attributes[n].value for n in renamed}},
        why=(*why, *_attribute_reasons(want, renamed)),
        precondition=Precondition(id=have.id, username=have.username, attributes=before or None),
    )


def _group_changes(
    desired: DesiredState, observed: ObservedState, keep: frozenset[str]
) -> list[Change]:
    changes: list[Change] = []
    by_key: dict[str, ObservedGroup] = {}
    twins: set[str] = set()
    for group in observed.groups:
        if group.key is None:
            continue
        if group.key in by_key:
            # Two runs that raced on two machines (or a copy made by hand): which of the two the
            # file shares and teams use, only a person can tell. Neither is touched until then.
            twins.add(group.key)
            changes.append(
                Change(
                    Action.CONFLICT,
                    Kind.GROUP,
                    group.key,
                    group.target,
                    why=(
                        f"two groups carry key {group.key}: {by_key[group.key].target} and "
                        f"{group.target}; keep the one in use, delete the other by hand",
                    ),
                )
            )
            continue
        by_key[group.key] = group
    for key in sorted(desired.groups.keys() - twins):
        want = desired.groups[key]
        have = by_key.get(key)
        if have is None:
            attributes = {n: d.value for n, d in want.attributes.items()}
            target = _path(want.ou, key)
            changes.append(
                Change(
                    Action.CREATE_GROUP,
                    Kind.GROUP,
                    key,
                    target,
                    after={"ou": list(want.ou), **attributes},
                    why=(f"group {want.kind} {key} has members in the source",),
                    precondition=Precondition(absent=True),
                )
            )
            changes += _membership(want, None, target, keep)
            continue
        if have.archived is not None:
            changes.append(_restore(want, have))
        else:
            if want.ou != have.ou:
                changes.append(move_change(Action.MOVE_GROUP, Kind.GROUP, key, have, want.ou))
            changes += _update(Action.UPDATE_GROUP, Kind.GROUP, key, have, want)
        changes += _membership(want, have, have.target, keep)
    return changes


def _restore(want: DesiredGroup, have: ObservedGroup) -> Change:
    """An archived group the source has again: back in its place, with its attributes as the
    mappings make them (the target also takes its archive marking away), in one change."""
    changed = _changed(want, have.attributes)
    # the day, where the directory shows it (AD: the state store knows it, the plan need not)
    before: dict[str, Value] = {"archived": have.archived} if have.archived else {}
    after: dict[str, Value] = {n: want.attributes[n].value for n in changed}
    if want.ou != have.ou:
        before["ou"], after["ou"] = list(have.ou), list(want.ou)
    if have.attributes.get(TEAM) == CLASS_TEAM and TEAM not in changed:
        before[TEAM], after[TEAM] = "archived", have.attributes[TEAM]  # archived with its group
    since = f" since {have.archived}" if have.archived else ""
    return Change(
        Action.RESTORE_GROUP,
        Kind.GROUP,
        want.key,
        have.target,
        before={**before, **{n: have.attributes.get(n) for n in changed}},
        after=after,
        why=(
            f"group {want.kind} {want.key} has members in the source again: restored from the "
            f"archive{since}, with its members"
            + ("; its class team unarchived" if have.attributes.get(TEAM) == CLASS_TEAM else ""),
            *_attribute_reasons(want, changed),
        ),
        precondition=Precondition(
            id=have.id,
            attributes={n: have.attributes.get(n) for n in changed} or None,
            ou=tuple(have.ou) if want.ou != have.ou else None,
        ),
    )


def _membership(
    want: DesiredGroup, have: ObservedGroup | None, target: str, keep: frozenset[str]
) -> list[Change]:
    """Member and owner additions and removals of one group, each as one change (few directory
    writes). Owners are planned only by targets that keep them (the pipeline clears them
    otherwise). A held person's (*keep*) membership stays as it is."""
    group_id = Precondition(id=have.id) if have else Precondition(created_in_this_plan=True)
    changes = []
    for role, wanted, current in (
        ("member", want.members, have.members if have else set()),
        ("owner", want.owners, have.owners if have else set()),
    ):
        add = sorted(wanted - current - keep)
        remove = sorted(current - wanted - keep)
        if add:
            changes.append(
                Change(
                    Action(f"add_{role}"),
                    Kind.GROUP,
                    want.key,
                    target,
                    after={f"{role}s": add},
                    why=(f"{role}s computed from the source",),
                    precondition=group_id,
                )
            )
        if remove:
            changes.append(
                Change(
                    Action(f"remove_{role}"),
                    Kind.GROUP,
                    want.key,
                    target,
                    before={f"{role}s": remove},
                    why=(
                        f"no longer {'a member' if role == 'member' else 'an owner'} in the source",
                    ),
                    precondition=group_id,
                )
            )
    return changes


# -- carrying accounts over to a new anchor (anchor_was) ----------------------------------------


def carry_over(desired: DesiredState, observed: ObservedState) -> ObservedState:
    """*observed* as it will be once accounts still carrying the anchor they had before
    (``anchor_was`` of the mappings) carry their new one: such an account is the person's
    account, not a leaver beside a newcomer. Group members and owners are renamed with it, so
    memberships stay as they are. Idempotent: a state already carried over is returned as is.

    An old anchor is carried over only when exactly one account carries it, no account carries
    the new anchor yet and no one in the source still has the old anchor as their own."""
    carrying: dict[str, list[ObservedAccount]] = {}
    for account in observed.accounts:
        if account.anchor is not None:
            carrying.setdefault(account.anchor, []).append(account)
    moved: dict[str, str] = {}  # old anchor → new anchor
    for anchor, want in desired.accounts.items():
        old = want.anchor_was
        if (
            old is not None
            and len(carrying.get(old, ())) == 1
            and anchor not in carrying
            and old not in desired.accounts
        ):
            moved[old] = anchor
    if not moved:
        return observed

    def renamed(anchors: set[str]) -> set[str]:
        return {moved.get(anchor, anchor) for anchor in anchors}

    return dataclasses.replace(
        observed,
        accounts=[
            dataclasses.replace(a, anchor=moved[a.anchor], carried_from=a.anchor)
            if a.anchor in moved
            else a
            for a in observed.accounts
        ],
        groups=[
            dataclasses.replace(g, members=renamed(g.members), owners=renamed(g.owners))
            for g in observed.groups
        ],
    )


def reanchor_change(want: DesiredAccount, have: ObservedAccount) -> Change:
    """Write the new anchor on an account that carries the one it had before: an adoption whose
    precondition names the old anchor (the only way the anchor attribute is ever written)."""
    return Change(
        Action.ADOPT,
        Kind.ACCOUNT,
        want.anchor,
        have.target,
        before={"anchor": have.carried_from},
        after={"anchor": want.anchor},
        why=(
            f"the account of {want.kind} {want.anchor} carries its former anchor "
            f"{have.carried_from} (anchor_was in the mappings): carried over in place",
        ),
        precondition=Precondition(id=have.id, anchored=have.carried_from),
    )
