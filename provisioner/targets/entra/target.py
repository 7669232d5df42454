"""Entra ID as a target: the managed scope read into an observed state, and a plan applied in
phases of one action whose requests travel in ``$batch``.

How the target works and why (the SDK's measured behaviour, retries, idempotence, sign-in) is
in ``docs/entra.md``.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import asdict
from types import MappingProxyType
from typing import Any, TypeVar
from urllib.parse import quote

from azure.core.credentials_async import AsyncTokenCredential

from provisioner import log
from provisioner.errors import ConfigError
from provisioner.licences import ATTRIBUTE as LICENCES
from provisioner.licences import licences_added, shortages
from provisioner.model import CLASS_TEAM, TEAM, ObservedAccount, ObservedGroup, ObservedState
from provisioner.plan.model import Action, Change, Kind
from provisioner.targets.base import (
    ADOPTION,
    BaseTarget,
    Current,
    ReadBase,
    Result,
    TargetError,
    carried_over,
    outside,
    text,
)
from provisioner.targets.entra import delta, names
from provisioner.targets.entra.batch import Batcher
from provisioner.targets.entra.groups import Groups, archived_day
from provisioner.targets.entra.licences import Catalog, read_catalog
from provisioner.targets.entra.pacing import RetryPolicy
from provisioner.targets.entra.snapshot import (
    GROUP_LIMITS,
    LIMITS,
    Kept,
    Snapshot,
    read_scope,
    read_snapshot,
    snapshot_of,
)
from provisioner.targets.entra.teams import team_attribute
from provisioner.targets.entra.transport import Graph
from provisioner.targets.entra.users import Users
from provisioner.targets.entra_settings import EntraConfig, key_of

T = TypeVar("T")
_OBJECT_ID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
SETTLE_SECONDS = 1.0
"""How long after its group creates a run looks once more for twins another run made."""


class EntraId(BaseTarget):
    has_ous = False
    name_attributes = frozenset({"userPrincipalName", "mailNickname", "mail"})
    has_owners = True
    needs_owner = True  # Graph refuses to remove a group's last owner
    limits = LIMITS
    group_limits = MappingProxyType({**GROUP_LIMITS, TEAM: len(CLASS_TEAM)})
    """The group properties, and ``team`` (``class``: the group has a class team)."""
    actions = (
        frozenset(Action) - {Action.CREATE_OU, Action.MOVE, Action.MOVE_GROUP} - {Action.CONFLICT}
    )

    def __init__(
        self,
        config: EntraConfig,
        *,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        clock: Callable[[], float] | None = None,
        credential: AsyncTokenCredential | None = None,
    ) -> None:
        """``sleep``, ``clock`` and ``credential`` are seams (tests, the benchmark): production
        waits for real and signs in with the configured secret or certificate."""
        self.config = config
        self.names = ("mailNickname", config.anchor_property)
        self.fallback_owner = config.fallback_owner
        self._loop = asyncio.new_event_loop()
        policy = RetryPolicy(config.max_attempts, sleep or asyncio.sleep, clock or time.monotonic)
        self.graph = Graph(config, policy, credential)
        self._snapshot: Snapshot | None = None
        self.users = Users(config, self.graph, self._ensure_snapshot)
        self.users.catalog = self._ensure_catalog
        self._catalog: Catalog | None = None
        self.groups = Groups(config, self.graph, self._ensure_snapshot)
        self._outside: dict[str, str] = {}
        """Objects a change names that exist but lie outside the managed scope: id → name."""
        super().__init__()

    def handlers(self) -> Mapping[Action, Callable[..., Awaitable[Result]]]:
        users, groups = self.users, self.groups
        return {
            Action.CREATE: users.create,
            Action.ADOPT: users.adopt,
            Action.RENAME: users.rename,
            Action.UPDATE: users.update,
            Action.ENABLE: users.enable,
            Action.DISABLE: users.disable,
            Action.DELETE: users.delete,
            Action.CREATE_GROUP: groups.create,
            Action.RESTORE_GROUP: groups.restore,
            Action.UPDATE_GROUP: groups.update,
            Action.ARCHIVE_GROUP: groups.archive,
            Action.DELETE_GROUP: groups.delete,
            Action.ADD_MEMBER: groups.add_members,
            Action.REMOVE_MEMBER: groups.remove_members,
            Action.ADD_OWNER: groups.add_owners,
            Action.REMOVE_OWNER: groups.remove_owners,
        }

    def describe(self) -> str:
        return (
            f"Entra ID tenant {self.config.tenant_id} ({', '.join(self.config.domains)}) "
            f"via {self.config.graph_url}"
        )

    def unsupported(
        self, account_attributes: Collection[str], group_attributes: Collection[str]
    ) -> list[str]:
        anchor = self.config.anchor_property
        return [
            f"{kind}: {name} ({_why_not(name, anchor, known)})"
            for kind, names, known in (
                ("accounts", account_attributes, LIMITS),
                ("groups", group_attributes, self.group_limits),
            )
            for name in sorted(names)
            if name not in known and not (known is LIMITS and name == LICENCES)
        ]

    def _run(self, coroutine: Awaitable[T]) -> T:
        return self._loop.run_until_complete(coroutine)

    def close(self) -> None:
        if not self._loop.is_closed():
            self._run(self.graph.close())
            self._loop.close()

    # -- read -----------------------------------------------------------------------------------

    def read(self, attributes: Collection[str], base: ReadBase | None = None) -> ObservedState:
        """Every managed user and group with its members and owners. With *base*, only what
        changed since its last read (Graph's delta), folded into it; the read is kept there."""
        kept = self._run(self._read_kept(base))
        snapshot = self._snapshot = snapshot_of(kept, self.config)
        if self.fallback_owner:
            self._run(self._check_fallback_owner(self.fallback_owner))
        self._catalog = None  # the units free now
        return observed_state(snapshot, attributes, self.config, self._ensure_catalog())

    def manage_licences(self, named: Mapping[str, frozenset[str]]) -> None:
        """The mappings' licences, and the retired ones taken away where no mapping gives them
        (only when the mappings name licences: otherwise no account's licences are planned)."""
        if named:
            retired = dict.fromkeys(self.config.retired_licences, frozenset[str]())
            named = {**retired, **named}
        super().manage_licences(named)
        self.config.reads_licences = bool(named)

    def _ensure_catalog(self) -> Catalog | None:
        """The tenant's SKUs the mappings name (read once a run), None when they name none."""
        if self._catalog is None and self.licence_plans:
            self._catalog = self._run(read_catalog(self.graph, self.licence_plans))
        return self._catalog

    async def _read_kept(self, base: ReadBase | None) -> Kept:
        """The managed scope as JSON data: incremental when *base* holds a read of this scope
        whose delta links Graph still honours, else in full (then kept in *base* with the
        delta links taken just before it)."""
        if base is None:
            return await read_scope(self.graph, self.config)
        scope = delta.scope_of(self.config)
        last = base.last(scope)
        if last is not None:
            try:
                folded = await delta.read_changes(
                    self.graph, self.config, last.objects, dict(last.watermark)
                )
            except delta.LinkRefused as exc:
                why = f"Graph refused the delta link of the last read ({exc})"
            else:
                log.event(
                    f"read Entra ID incrementally: {folded.changed} changed, {folded.gone} gone",
                    read="incremental",
                    changed=folded.changed,
                    gone=folded.gone,
                )
                base.keep(scope, folded.watermark, folded.kept, full=False)
                return folded.kept
        else:
            why = base.why_full
        log.event(f"read Entra ID in full: {why}", read="full", why=why)
        if not base.keeps:  # nothing will be kept: no watermark to take
            return await read_scope(self.graph, self.config)
        mark = await delta.watermark(self.graph, self.config)
        kept = await read_scope(self.graph, self.config)
        base.keep(scope, mark, kept, full=True)
        return kept

    def taken_outside(self, values: Collection[str]) -> dict[str, str]:
        """Of *values*, those a user or group outside the managed scope holds anywhere in the
        tenant (:mod:`provisioner.targets.entra.names`): casefolded value → its UPN or
        ``group <displayName>``."""
        snapshot = self._ensure_snapshot()
        return self._run(names.taken_outside(self.graph, self.config, snapshot, values))

    def anchored_outside(self) -> list[ObservedAccount]:
        """Every user outside the managed domains carrying a value in the anchor property."""
        snapshot = self._ensure_snapshot()
        mapped = self._mapped[Kind.ACCOUNT] if self._mapped is not None else LIMITS.keys()
        return self._run(names.anchored_outside(self.graph, self.config, snapshot, mapped))

    def _ensure_snapshot(self) -> Snapshot:
        if self._snapshot is None:
            self._snapshot = self._run(read_snapshot(self.graph, self.config))
        return self._snapshot

    # -- preconditions (the checks themselves are BaseTarget.check), against the snapshot -----

    def check(self, change: Change) -> str | None:
        self._ensure_snapshot()
        if change.kind == Kind.OU:
            return "Entra ID has no OUs"
        self._run(self._look_outside([change]))
        return super().check(change)

    # -- the scope: users of the configured domains, groups with the prefix -------------------

    def attribute_refused(self, kind: Kind, name: str) -> str | None:
        if kind == Kind.ACCOUNT and name == LICENCES:
            return None
        known = self.group_limits if kind == Kind.GROUP else LIMITS
        return None if name in known else _why_not(name, self.config.anchor_property, known)

    def _domain_refused(self, upn: Any) -> str | None:
        domain = str(upn or "").rpartition("@")[2].lower()
        if domain in self.config.domains:
            return None
        return f"{upn} is outside the managed domains ({', '.join(self.config.domains)})"

    def out_of_scope(self, change: Change) -> str | None:
        """Refuses a user outside the configured domains (also as a new UPN), a group that is
        not one of the connector's (its mailNickname has the prefix and the change's key), and
        a user that carries another key."""
        snapshot = self._ensure_snapshot()
        action, after, pre = change.action, change.after, change.precondition
        writes_upn = change.kind == Kind.ACCOUNT and "userPrincipalName" in after
        if writes_upn and (problem := self._domain_refused(after["userPrincipalName"])):
            return outside(problem)
        if action in (Action.CREATE, Action.CREATE_GROUP):
            return None  # the UPN is checked above; a new group's nickname carries the prefix
        if pre.created_in_this_plan and change.kind == Kind.GROUP:
            return None  # found by its key among the connector's groups
        if not pre.id:
            return outside(f"{action} {change.key} names no object in the directory")
        object_id = str(pre.id)
        if change.kind == Kind.GROUP:
            group = snapshot.groups.get(object_id)
            if object_id in snapshot.synced:
                return outside(f"the group {snapshot.synced[object_id]} {SYNCED}")
            if group is None:
                return self._gone_or_outside(object_id, "not one of the connector's groups")
            nickname = str(group.get("mailNickname") or "")
            if key_of(self.config.group_prefix, nickname) != change.key:
                return outside(
                    f"the group {nickname} does not carry the connector's key {change.key!r} "
                    f"(its mailNickname must be {self.config.group_prefix}{change.key})"
                )
            return None
        user = snapshot.users.get(object_id)
        if object_id in snapshot.synced:
            return outside(f"{snapshot.synced[object_id]} {SYNCED}")
        if user is None:
            return self._gone_or_outside(object_id, "outside the managed domains")
        upn = user.get("userPrincipalName")
        if problem := self._domain_refused(upn):
            return outside(problem)
        anchor = text(user.get(self.config.anchor_property))
        if anchor == change.key or (anchor is None and action in ADOPTION):
            return None
        if carried_over(change, anchor):
            return None
        carried = f"it carries {anchor!r}" if anchor else "it carries none"
        return outside(
            f"{upn} does not carry the connector's key {change.key!r} in "
            f"{self.config.anchor_property} ({carried})"
        )

    def _gone_or_outside(self, object_id: str, why: str) -> str | None:
        """An object the snapshot of the managed scope does not hold: refused when it exists
        (outside the scope), otherwise gone since the plan (the precondition check says so)."""
        if not _OBJECT_ID.match(object_id):
            return outside(f"{object_id!r} is not an object id")
        if object_id in self._outside:
            return outside(f"{self._outside[object_id]} is {why}")
        return None

    async def _check_fallback_owner(self, fallback: str) -> None:
        """Refuse, before anything is planned, a fallback owner that Graph would refuse when a
        class loses its last owner: a sign-in name of no user, or the object id of a group (a
        group cannot own a group). An object id of no group may be a user or a service
        principal; Graph itself judges it when it is used."""
        async with Batcher(self.graph) as batcher:
            if "@" in fallback:
                reply = await batcher.call("GET", f"/users/{quote(fallback)}?$select=id")
                if reply.status == 404:
                    raise ConfigError(
                        f"target.entra.fallback_owner: no user {fallback} in the tenant; give the "
                        "sign-in name of an existing user (or a user's or service principal's "
                        "object id)"
                    )
                return
            reply = await batcher.call("GET", f"/groups/{fallback}?$select=id,displayName")
        if reply.ok:
            name = reply.body.get("displayName") or fallback
            raise ConfigError(
                f"target.entra.fallback_owner: {fallback} is the group {name!r}, and a group "
                "cannot own a group in Entra ID; give a user or a service principal"
            )

    async def _look_outside(self, changes: Iterable[Change]) -> None:
        """Which of the objects the changes name, missing from the managed scope, exist
        elsewhere in the tenant: those are refused by name instead of looking gone."""
        snapshot = self._ensure_snapshot()
        wanted: dict[str, str] = {}
        for change in changes:
            object_id = str(change.precondition.id or "")
            if not _OBJECT_ID.match(object_id) or object_id in self._outside:
                continue
            if change.kind == Kind.GROUP and object_id not in snapshot.groups:
                wanted[object_id] = "groups"
            elif change.kind == Kind.ACCOUNT and object_id not in snapshot.users:
                wanted[object_id] = "users"
        if not wanted:
            return
        async with Batcher(self.graph) as batcher:
            replies = await asyncio.gather(
                *(
                    batcher.call("GET", f"/{kind}/{object_id}?$select=id,{_NAME[kind]}")
                    for object_id, kind in wanted.items()
                )
            )
        for (object_id, kind), reply in zip(wanted.items(), replies, strict=True):
            if reply.ok:
                name = reply.body.get(_NAME[kind]) or object_id
                self._outside[object_id] = f"the {kind[:-1]} {name}"

    def already_there(self, change: Change) -> str | None:
        snapshot = self._ensure_snapshot()
        if change.kind == Kind.GROUP:
            found = snapshot.group_id(change.key)
            return "already exists (an earlier run?)" if found else None
        if snapshot.anchors.ambiguous(Kind.ACCOUNT, change.key):
            return f"{change.key} is already carried by several users"
        uid = snapshot.user_id(change.key)
        if uid:
            upn = snapshot.users[uid].get("userPrincipalName")
            return f"already exists as {upn} (an earlier run?)"
        return None

    def group_exists(self, key: str) -> bool:
        return self._ensure_snapshot().group_id(key) is not None

    def current(self, change: Change) -> Current | None:
        snapshot = self._ensure_snapshot()
        objects = snapshot.groups if change.kind == Kind.GROUP else snapshot.users
        found = objects.get(str(change.precondition.id))
        if found is None:
            return None
        catalog = self._ensure_catalog() if change.kind == Kind.ACCOUNT else None

        def value(name: str) -> str | None:
            if name == LICENCES and catalog is not None:
                return catalog.text(found) or None
            if name == TEAM:
                return team_attribute(found)
            return text(found.get(name))

        return Current(
            value,
            username=str(found.get("mailNickname") or ""),
            enabled=found.get("accountEnabled") is not False,
            anchor=text(found.get(self.config.anchor_property)),
        )

    # -- apply ----------------------------------------------------------------------------------

    def apply_all(
        self, changes: Iterable[Change], passwords: Mapping[int, str]
    ) -> Iterator[Result]:
        """Changes of one action run together, their requests packed into batches; actions run
        in plan order, so a group exists before members are added to it."""
        changes = list(changes)
        self._ensure_snapshot()
        # A class team's group gets its owners before its team (Teams needs one to make it).
        self.groups.first_owners = {
            c.key: list(c.after.get("owners") or [])
            for c in changes
            if c.action is Action.ADD_OWNER
        }
        self._check_units(changes)
        self._run(self._look_outside(changes))
        # A rename without a UPN of its own leaves it to an update that sets it explicitly.
        self.users.upn_planned = frozenset(
            c.key
            for c in changes
            if "userPrincipalName" in c.after and c.action not in (Action.CREATE, Action.RENAME)
        )
        start = 0
        while start < len(changes):
            end = start
            while end < len(changes) and changes[end].action == changes[start].action:
                end += 1
            phase = list(enumerate(changes[start:end], start))
            results = self._run(self._apply_phase(phase, passwords))
            if changes[start].action is Action.CREATE_GROUP:
                # Another run may have made the same groups after this run looked.
                made = [r.change.key for r in results if r.status == "applied"]
                for note in self._run(self.groups.settle(made, SETTLE_SECONDS)):
                    log.event(f"group twins: {note}")
            yield from results
            start = end
        stats = self.graph.stats
        log.event(
            f"Graph: {stats.writes} write(s) in {stats.batches} $batch request(s), "
            f"{stats.throttled} throttled item(s) sent again",
            **asdict(stats),
            paced_seconds=round(self.graph.pacer.waited, 1),
        )

    async def _apply_phase(
        self, phase: list[tuple[int, Change]], passwords: Mapping[int, str]
    ) -> list[Result]:
        results: dict[int, Result] = {}
        work: dict[int, Awaitable[Result]] = {}
        async with Batcher(self.graph) as batcher:
            for index, change in phase:
                step = self.ready(change, passwords.get(index))
                if isinstance(step, Result):
                    results[index] = step
                else:
                    work[index] = step(batcher, change)
            done = await asyncio.gather(*work.values(), return_exceptions=True)
        for (index, change), outcome in zip(
            ((i, c) for i, c in phase if i in work), done, strict=True
        ):
            if isinstance(outcome, TargetError):
                results[index] = Result(change, "failed", str(outcome))
            elif isinstance(outcome, BaseException):
                raise outcome
            else:
                results[index] = outcome
        return [results[index] for index, _ in phase]

    def _check_units(self, changes: list[Change]) -> None:
        """Refuse the whole apply, before any write, when the tenant has fewer free units of a
        SKU than the changes give out (the plan checked too; units may have gone since)."""
        if not licences_added(changes):
            return
        self._catalog = None  # the units free now, not when the plan was made
        catalog = self._ensure_catalog()
        short = shortages(changes, catalog.free if catalog else {})
        if short:
            raise TargetError("; ".join(short))

    # -- passwords ------------------------------------------------------------------------------

    def reset_password(self, anchor: str, password: str) -> str:
        """Give the user with *anchor* a new password; returns its UPN."""
        snapshot = self._ensure_snapshot()
        uid = snapshot.user_id(anchor)
        if uid is None:
            raise TargetError(f"no managed account carries anchor {anchor}")
        self._run(self.users.set_password(uid, password))
        return str(snapshot.users[uid].get("userPrincipalName"))


_NAME = {"users": "userPrincipalName", "groups": "mailNickname"}


def observed_state(
    snapshot: Snapshot,
    attributes: Collection[str],
    config: EntraConfig,
    catalog: Catalog | None = None,
) -> ObservedState:
    """What the planner sees of the snapshot: users by anchor (with their licences of the SKUs
    the mappings name), groups by key, members and owners as the anchors of managed users
    (others only counted, as unmanaged owners); the synced objects only counted."""
    anchor_property = config.anchor_property
    state = ObservedState(synced_left_alone=len(snapshot.synced))
    if catalog is not None:
        state.licences_free = catalog.free
    anchors: dict[str, str] = {}
    for uid, user in snapshot.users.items():
        anchor = text(user.get(anchor_property))
        if anchor:
            anchors[uid] = anchor
        state.accounts.append(
            ObservedAccount(
                id=uid,
                target=str(user.get("userPrincipalName")),
                anchor=anchor,
                username=str(user.get("mailNickname") or ""),
                ou=(),
                attributes=_attributes(user, attributes, catalog),
                enabled=user.get("accountEnabled") is not False,
            )
        )
    for gid, group in snapshot.groups.items():
        owners = snapshot.owners.get(gid, set())
        state.groups.append(
            ObservedGroup(
                id=gid,
                target=str(group.get("displayName") or group.get("mailNickname")),
                key=key_of(config.group_prefix, str(group.get("mailNickname") or "")),
                ou=(),
                attributes=_group_attributes(group, attributes),
                members={anchors[m] for m in snapshot.members.get(gid, ()) if m in anchors},
                owners={anchors[m] for m in owners if m in anchors},
                unmanaged_owners=sum(1 for m in owners if m not in anchors),
                archived=archived_day(group.get("description")),
            )
        )
    return state


def _attributes(
    obj: dict[str, Any], names: Collection[str], catalog: Catalog | None = None
) -> dict[str, str]:
    found = {name: value for name in names if (value := text(obj.get(name))) is not None}
    if catalog is not None and LICENCES in names and (held := catalog.text(obj)):
        found[LICENCES] = held
    return found


SYNCED = (
    "is synchronised from on-premises Active Directory by Entra Connect "
    "(onPremisesSyncEnabled): the AD target manages it, not this one"
)


def _group_attributes(group: dict[str, Any], names: Collection[str]) -> dict[str, str]:
    """A group's attributes, with ``team`` (when mapped) as the plan compares it."""
    found = _attributes(group, [name for name in names if name != TEAM])
    if TEAM in names and (team := team_attribute(group)) is not None:
        found[TEAM] = team
    return found


def _why_not(name: str, anchor: str, allowed: Mapping[str, int]) -> str:
    if name == anchor:
        return "the connector writes the anchor itself"
    if name in ("mailNickname", "accountEnabled", "passwordProfile"):
        return "the connector sets it (mailNickname is the username)"
    return "not a property the connector writes in Entra ID; known: " + ", ".join(sorted(allowed))
