"""The changes to security groups: create, update, delete, and their members and owners.

Members are added 20 to a request (``members@odata.bind``), owners and removals one reference
each. Entra replicates a new group in its own time: an add that does not find a group this run
created is tried again by the run's retry policy. A group create sent again after its answer was
lost may have made the group twice (Graph keeps security-group nicknames non-unique): the twin goes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from provisioner.plan.model import Change, Kind
from provisioner.targets.base import Result
from provisioner.targets.entra.batch import MAX_BATCH, Batcher
from provisioner.targets.entra.pacing import backoff
from provisioner.targets.entra.snapshot import GROUP_LIMITS, Applier, graph_value, nickname_for
from provisioner.targets.entra.transport import Reply


class Groups(Applier):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.created: set[str] = set()
        """Ids of the groups this run made: Entra may not know them everywhere yet."""

    async def create(self, batcher: Batcher, change: Change) -> Result:
        body: dict[str, Any] = {
            name: value
            for name, value in change.after.items()
            if name in GROUP_LIMITS and value not in ("", None)
        }
        body.setdefault("displayName", change.key)
        body.update(
            mailNickname=nickname_for(self.config.group_prefix, change.key),
            mailEnabled=False,
            securityEnabled=True,
            groupTypes=[],
        )
        reply = await batcher.call("POST", "/groups", body)
        if not reply.ok:
            return Result(change, "failed", reply.explain())
        gid = reply.body["id"]
        snapshot = self.snapshot()
        snapshot.groups[gid] = {**body, "id": gid}
        snapshot.anchors.put(Kind.GROUP, change.key, gid)
        snapshot.members[gid] = set()
        snapshot.owners[gid] = set()
        self.created.add(gid)
        message = (
            await self._remove_twins(batcher, gid, body["mailNickname"]) if reply.resent else ""
        )
        return Result(change, "applied", message)

    async def _remove_twins(self, batcher: Batcher, gid: str, nickname: str) -> str:
        """The twins a create sent again may have made moments ago, empty, go."""
        nick = nickname.replace("'", "''")
        url = f"{self.graph.base_url}/groups?$filter=mailNickname eq '{nick}'&$select=id"
        twins = [g["id"] for g in await self.graph.pages(url) if g["id"] != gid]
        for twin in twins:
            reply = await batcher.call("DELETE", f"/groups/{twin}")
            if not reply.ok and reply.status != 404:
                return f"a twin group {twin} from a lost answer remains: {reply.explain()}"
        return (
            f"removed {len(twins)} twin(s) made by an attempt whose answer was lost"
            if twins
            else ""
        )

    async def update(self, batcher: Batcher, change: Change) -> Result:
        gid = str(change.precondition.id)
        body = {name: graph_value(value) for name, value in change.after.items()}
        reply = await batcher.call("PATCH", f"/groups/{gid}", body)
        if not reply.ok:
            return Result(change, "failed", reply.explain())
        self.snapshot().groups[gid].update(body)
        return Result(change, "applied")

    async def delete(self, batcher: Batcher, change: Change) -> Result:
        gid = str(change.precondition.id)
        reply = await batcher.call("DELETE", f"/groups/{gid}")
        if not reply.ok and reply.status != 404:
            return Result(change, "failed", reply.explain())
        snapshot = self.snapshot()
        snapshot.groups.pop(gid, None)
        snapshot.anchors.forget(Kind.GROUP, change.key)
        return Result(change, "applied")

    # -- members and owners -------------------------------------------------------------------

    def _group_id(self, change: Change) -> str:
        return str(change.precondition.id or self.snapshot().group_id(change.key))

    def _user_ids(self, anchors: Iterable[str]) -> tuple[list[str], list[str]]:
        """The object ids of the users with these anchors, and the anchors not found."""
        snapshot = self.snapshot()
        found, missing = [], []
        for anchor in anchors:
            uid = snapshot.user_id(anchor)
            if uid is None:
                missing.append(anchor)
            else:
                found.append(uid)
        return found, missing

    def _ref(self, uid: str) -> str:
        return f"{self.config.graph_url}/directoryObjects/{uid}"

    async def _lagging(self, gid: str, request: Callable[[], Awaitable[Reply]]) -> Reply:
        """A member or owner add to a group this run created that does not find the group yet
        (Entra's replication) is tried again, backing off."""
        return await self.graph.policy.run(
            request,
            lambda reply, tries: (
                backoff(tries) if reply.status == 404 and gid in self.created else None
            ),
        )

    async def _add_ref(self, batcher: Batcher, gid: str, relation: str, uid: str) -> Reply:
        """One member or owner added by reference. A 400 answer means it is one already (a
        retried add): Graph has no code of its own for that, and the reference is well-formed."""
        body = {"@odata.id": self._ref(uid)}
        url = f"/groups/{gid}/{relation}/$ref"
        return await self._lagging(gid, lambda: batcher.call("POST", url, body))

    async def _remove_refs(
        self, batcher: Batcher, gid: str, relation: str, uids: list[str]
    ) -> list[Reply]:
        """Members or owners removed, one request each; 404 means it was gone already."""
        return await asyncio.gather(
            *(batcher.call("DELETE", f"/groups/{gid}/{relation}/{uid}/$ref") for uid in uids)
        )

    async def add_members(self, batcher: Batcher, change: Change) -> Result:
        gid = self._group_id(change)
        uids, missing = self._user_ids(change.after.get("members") or [])
        chunks = [uids[i : i + MAX_BATCH] for i in range(0, len(uids), MAX_BATCH)]
        outcomes = await asyncio.gather(*(self._add_chunk(batcher, gid, c) for c in chunks))
        problems = [p for p in outcomes if p]
        if problems:
            return Result(change, "failed", problems[0])
        self.snapshot().members.setdefault(gid, set()).update(uids)
        return _done(change, len(uids), missing, "member")

    async def _add_chunk(self, batcher: Batcher, gid: str, uids: list[str]) -> str | None:
        """Up to 20 members in one PATCH (all or nothing); when some are members already (a run
        killed half-way), one by one."""
        body = {"members@odata.bind": [self._ref(uid) for uid in uids]}
        reply = await self._lagging(gid, lambda: batcher.call("PATCH", f"/groups/{gid}", body))
        if reply.ok:
            return None
        if reply.status != 400:
            return reply.explain()
        for uid in uids:
            item = await self._add_ref(batcher, gid, "members", uid)
            if not item.ok and item.status != 400:
                return item.explain()
        return None

    async def remove_members(self, batcher: Batcher, change: Change) -> Result:
        gid = self._group_id(change)
        uids, missing = self._user_ids(change.before.get("members") or [])
        replies = await self._remove_refs(batcher, gid, "members", uids)
        failed = [r for r in replies if not r.ok and r.status != 404]
        if failed:
            return Result(change, "failed", failed[0].explain())
        self.snapshot().members.setdefault(gid, set()).difference_update(uids)
        return _done(change, len(uids), missing, "member")

    async def add_owners(self, batcher: Batcher, change: Change) -> Result:
        gid = self._group_id(change)
        uids, missing = self._user_ids(change.after.get("owners") or [])
        replies = await asyncio.gather(*(self._add_ref(batcher, gid, "owners", u) for u in uids))
        failed = [r for r in replies if not r.ok and r.status != 400]
        if failed:
            return Result(change, "failed", failed[0].explain())
        self.snapshot().owners.setdefault(gid, set()).update(uids)
        return _done(change, len(uids), missing, "owner")

    async def remove_owners(self, batcher: Batcher, change: Change) -> Result:
        gid = self._group_id(change)
        uids, missing = self._user_ids(change.before.get("owners") or [])
        replies = await self._remove_refs(batcher, gid, "owners", uids)
        failed = [r for r in replies if not r.ok and r.status not in (400, 404)]
        if failed:
            return Result(change, "failed", failed[0].explain())
        # 400 on a well-formed removal: Entra keeps the last owner of a group. Not a failure of
        # the run; the owner goes once the class has another one.
        kept = [uid for uid, r in zip(uids, replies, strict=True) if r.status == 400]
        self.snapshot().owners.setdefault(gid, set()).difference_update(set(uids) - set(kept))
        if kept and len(kept) == len(uids):
            return Result(change, "skipped", "Entra ID keeps the last owner of a group")
        note = f"; {len(kept)} kept: Entra ID keeps the last owner of a group" if kept else ""
        return _done(change, len(uids) - len(kept), missing, "owner", note)


def _done(change: Change, done: int, missing: list[str], role: str, note: str = "") -> Result:
    """An applied member or owner change: how many, and the accounts that were not found."""
    if missing:
        note = f"; {len(missing)} {role} account(s) not found: {', '.join(missing)}{note}"
    return Result(change, "applied", f"{done} {role}(s){note}")
