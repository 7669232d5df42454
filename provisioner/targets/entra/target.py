"""Entra ID as a target: the managed scope read into an observed state, and a plan applied in
phases of one action whose requests travel in ``$batch``.

How the target works and why (the SDK's measured behaviour, retries, idempotence, sign-in) is
in ``docs/entra.md``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import asdict
from typing import Any, TypeVar

from azure.core.credentials_async import AsyncTokenCredential

from provisioner import log
from provisioner.model import ObservedAccount, ObservedGroup, ObservedState
from provisioner.plan.model import Action, Change, Kind
from provisioner.targets.base import BaseTarget, Current, Result, TargetError, text
from provisioner.targets.entra.batch import Batcher
from provisioner.targets.entra.groups import Groups
from provisioner.targets.entra.pacing import RetryPolicy
from provisioner.targets.entra.snapshot import (
    GROUP_LIMITS,
    LIMITS,
    Snapshot,
    key_of,
    read_snapshot,
)
from provisioner.targets.entra.transport import Graph
from provisioner.targets.entra.users import Users
from provisioner.targets.entra_settings import EntraConfig

T = TypeVar("T")


class EntraId(BaseTarget):
    has_ous = False
    has_owners = True
    limits = LIMITS
    group_limits = GROUP_LIMITS
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
        self._loop = asyncio.new_event_loop()
        policy = RetryPolicy(config.max_attempts, sleep or asyncio.sleep, clock or time.monotonic)
        self.graph = Graph(config, policy, credential)
        self._snapshot: Snapshot | None = None
        self.users = Users(config, self.graph, self._ensure_snapshot)
        self.groups = Groups(config, self.graph, self._ensure_snapshot)
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
            Action.UPDATE_GROUP: groups.update,
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
                ("groups", group_attributes, GROUP_LIMITS),
            )
            for name in sorted(names)
            if name not in known
        ]

    def _run(self, coroutine: Awaitable[T]) -> T:
        return self._loop.run_until_complete(coroutine)

    def close(self) -> None:
        if not self._loop.is_closed():
            self._run(self.graph.close())
            self._loop.close()

    # -- read -----------------------------------------------------------------------------------

    def read(self, attributes: Collection[str]) -> ObservedState:
        """Every managed user and group with its members and owners."""
        snapshot = self._snapshot = self._run(read_snapshot(self.graph, self.config))
        anchor_property = self.config.anchor_property
        state = ObservedState()
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
                    attributes=_attributes(user, attributes),
                    enabled=user.get("accountEnabled") is not False,
                )
            )
        for gid, group in snapshot.groups.items():
            state.groups.append(
                ObservedGroup(
                    id=gid,
                    target=str(group.get("displayName") or group.get("mailNickname")),
                    key=key_of(self.config.group_prefix, str(group.get("mailNickname") or "")),
                    ou=(),
                    attributes=_attributes(group, attributes),
                    members={anchors[m] for m in snapshot.members.get(gid, ()) if m in anchors},
                    owners={anchors[m] for m in snapshot.owners.get(gid, ()) if m in anchors},
                )
            )
        return state

    def _ensure_snapshot(self) -> Snapshot:
        if self._snapshot is None:
            self._snapshot = self._run(read_snapshot(self.graph, self.config))
        return self._snapshot

    # -- preconditions (the checks themselves are BaseTarget.check), against the snapshot -----

    def check(self, change: Change) -> str | None:
        self._ensure_snapshot()
        if change.kind == Kind.OU:
            return "Entra ID has no OUs"
        return super().check(change)

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
        return Current(
            lambda name: text(found.get(name)),
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
        # A rename leaves the UPN to an update when the plan sets it explicitly.
        self.users.upn_planned = frozenset(
            c.key for c in changes if "userPrincipalName" in c.after and c.action != Action.CREATE
        )
        start = 0
        while start < len(changes):
            end = start
            while end < len(changes) and changes[end].action == changes[start].action:
                end += 1
            phase = list(enumerate(changes[start:end], start))
            yield from self._run(self._apply_phase(phase, passwords))
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

    # -- passwords ------------------------------------------------------------------------------

    def reset_password(self, anchor: str, password: str) -> str:
        """Give the user with *anchor* a new password; returns its UPN."""
        snapshot = self._ensure_snapshot()
        uid = snapshot.user_id(anchor)
        if uid is None:
            raise TargetError(f"no managed account carries anchor {anchor}")
        self._run(self.users.set_password(uid, password))
        return str(snapshot.users[uid].get("userPrincipalName"))


def _attributes(obj: dict[str, Any], names: Collection[str]) -> dict[str, str]:
    return {name: value for name in names if (value := text(obj.get(name))) is not None}


def _why_not(name: str, anchor: str, allowed: Mapping[str, int]) -> str:
    if name == anchor:
        return "the connector writes the anchor itself"
    if name in ("mailNickname", "accountEnabled", "passwordProfile"):
        return "the connector sets it (mailNickname is the username)"
    return "not a property the connector writes in Entra ID; known: " + ", ".join(sorted(allowed))
