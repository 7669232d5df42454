"""The changes to groups: create, update, archive, restore, delete, and their members and owners.

Groups are security groups; a group kind with ``team: class`` gets Microsoft 365 groups, made with
their owners, each with a class team (:mod:`provisioner.targets.entra.teams`), archived and
unarchived with its group.

Members are added 20 to a request (``members@odata.bind``), owners and removals one reference
each. Entra replicates a new group in its own time: an add that does not find a group this run
created is tried again by the run's retry policy. A group create sent again after its answer was
lost, or another run creating the same group at the same moment, may have made the group twice
(Graph keeps security-group nicknames non-unique): every run keeps the oldest and deletes the rest.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import quote

from provisioner.model import CLASS_TEAM, TEAM
from provisioner.plan.model import Action, Change, Kind
from provisioner.targets.base import Result
from provisioner.targets.entra.batch import MAX_BATCH, Batcher
from provisioner.targets.entra.pacing import backoff
from provisioner.targets.entra.snapshot import GROUP_LIMITS, Applier, graph_value
from provisioner.targets.entra.teams import Teams, is_unified, team_of
from provisioner.targets.entra.transport import Reply
from provisioner.targets.entra_settings import nickname_for

_ARCHIVED = re.compile(r"^archived (\d{4}-\d{2}-\d{2})? ?by provisioner$")


def archive_mark(day: str) -> str:
    """The description of a group the connector archived (Entra ID has no archive OU)."""
    return f"archived {day} by provisioner"


def archived_day(description: Any) -> str | None:
    """The day in an archived group's description (YYYY-MM-DD, or "" when it names none), or
    None when the description is no archive mark."""
    match = _ARCHIVED.match(str(description or "").strip())
    return (match.group(1) or "") if match else None


class Groups(Applier):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.created: set[str] = set()
        """Ids of the groups this run made: Entra may not know them everywhere yet."""
        self.teams = Teams(*args)
        self.first_owners: dict[str, list[str]] = {}
        """Group key → the anchors of the owners the plan adds to the group: a class team's group
        is made with them, or given them before its team (Teams needs an owner to make a team;
        the ``add_owner`` changes come later in the plan)."""

    async def create(self, batcher: Batcher, change: Change) -> Result:
        body: dict[str, Any] = {
            name: value
            for name, value in change.after.items()
            if name in GROUP_LIMITS and value not in ("", None)
        }
        body.setdefault("displayName", change.key)
        body["mailNickname"] = nickname_for(self.config.group_prefix, change.key)
        team = change.after.get(TEAM) == CLASS_TEAM
        if team:
            # A team sits on a Microsoft 365 group, made with its owners. Its membership is
            # hidden from everyone outside the class (pupils are minors); Graph takes that only
            # when the group is made.
            owners, _ = self._user_ids(self.first_owners.get(change.key, [])[:MAX_BATCH])
            body.update(
                mailEnabled=True,
                securityEnabled=False,
                groupTypes=["Unified"],
                visibility="HiddenMembership",
            )
            if owners:
                body["owners@odata.bind"] = [self._ref(uid) for uid in owners]
        else:
            owners = []
            body.update(mailEnabled=False, securityEnabled=True, groupTypes=[])
        reply = await batcher.call("POST", "/groups", body)
        if not reply.ok:
            return Result(change, "failed", reply.explain())
        gid = reply.body["id"]
        made = {k: v for k, v in body.items() if not k.endswith("@odata.bind")}
        self._remember(change.key, {**made, **reply.body, "id": gid})
        self.snapshot().owners[gid].update(owners)
        message = await self.keep_one(batcher, change.key, body["mailNickname"])
        if team:
            gid = self.snapshot().group_id(change.key) or gid  # a twin's winner, maybe
            return await self._add_team(batcher, change, gid, message)
        return Result(change, "applied", message)

    async def _add_team(
        self, batcher: Batcher, change: Change, gid: str, message: str = ""
    ) -> Result:
        """The class team on the group *gid*: only that class fails when Teams will not."""
        group = self.snapshot().groups[gid]
        if not is_unified(group):
            return Result(
                change,
                "failed",
                f"{group.get('displayName') or change.key} is a security group, and a team sits "
                "only on a Microsoft 365 group (Entra ID cannot turn one into the other); the "
                "connector neither deletes nor re-creates a group (file shares and apps use its "
                "object id): delete it by hand to have the next run make it anew with its team, "
                "or leave `team` off this group kind",
            )
        if not self.snapshot().owners.get(gid) and (
            problem := await self._owners_first(batcher, change.key, gid)
        ):
            return Result(change, "failed", f"the class team is not made: {problem}")
        if not self.snapshot().owners.get(gid):
            return Result(
                change,
                "failed",
                "the class team is not made: the group has no owner (Teams needs one) and the "
                "mappings found no klastitularis for it; it is made on the first run after the "
                "class has one",
            )
        problem = await self.teams.create(batcher, gid)
        if problem:
            made = "the group was made, its class team not: " if change.action.creates else ""
            return Result(change, "failed", f"{made}{problem}; the next run tries again")
        group["resourceProvisioningOptions"] = ["Team"]
        return Result(change, "applied", "; ".join(filter(None, [message, "class team made"])))

    async def _owners_first(self, batcher: Batcher, key: str, gid: str) -> str | None:
        """The owners the plan gives the group *gid* added now, before its team is made (their
        ``add_owner`` comes later in the plan, and then finds them owners already)."""
        uids, _ = self._user_ids(self.first_owners.get(key, [])[:MAX_BATCH])
        replies = await asyncio.gather(*(self._add_ref(batcher, gid, "owners", u) for u in uids))
        failed = [r for r in replies if not r.ok and r.status != 400]  # 400: an owner already
        if failed:
            return f"its owners could not be added first: {failed[0].explain()}"
        self.snapshot().owners.setdefault(gid, set()).update(uids)
        return None

    def _remember(self, key: str, group: dict[str, Any]) -> None:
        """*group* is the one this run works with for *key* (made by it, or its twin's winner)."""
        gid = group["id"]
        snapshot = self.snapshot()
        snapshot.groups[gid] = group
        snapshot.anchors.put(Kind.GROUP, key, gid)
        snapshot.members.setdefault(gid, set())
        snapshot.owners.setdefault(gid, set())
        self.created.add(gid)

    async def keep_one(self, batcher: Batcher, key: str, nickname: str) -> str:
        """Exactly one group per key, whoever made the others: a create sent again after its
        answer was lost, or another run creating the same group at the same moment (Graph keeps
        security-group nicknames non-unique). Every run keeps the same one, the oldest (earliest
        createdDateTime, then lowest id), and deletes the rest: the oldest is never deleted by
        anyone, so the last run to look leaves exactly it. This run then works with that one."""
        nick = nickname.replace("'", "''")
        # In the phase's $batch, like the creates: one round trip for twenty groups.
        reply = await batcher.call(
            "GET",
            f"/groups?$filter=mailNickname eq '{nick}'"
            "&$select=id,createdDateTime,mailNickname,displayName,description,securityEnabled",
        )
        if not reply.ok:
            return f"could not look for twins of this group: {reply.explain()}"
        copies = [g for g in reply.body.get("value") or [] if g.get("mailNickname") == nickname]
        if len(copies) < 2:
            return ""  # alone (or not visible yet: the next look, after the phase, sees it)
        copies.sort(key=lambda g: (str(g.get("createdDateTime") or ""), str(g["id"])))
        winner, twins = copies[0], copies[1:]
        snapshot = self.snapshot()
        for twin in twins:
            reply = await batcher.call("DELETE", f"/groups/{twin['id']}")
            if not reply.ok and reply.status != 404:
                return f"a twin group {twin['id']} remains: {reply.explain()}"
            snapshot.groups.pop(twin["id"], None)
            snapshot.members.pop(twin["id"], None)
            snapshot.owners.pop(twin["id"], None)
        if snapshot.group_id(key) != winner["id"]:
            self._remember(key, {**snapshot.groups.get(winner["id"], {}), **winner})
        return (
            f"removed {len(twins)} twin(s) made by a resent request whose answer was lost or by "
            f"another run at the same time; kept {winner['id']}"
        )

    async def settle(self, keys: list[str], wait: float) -> list[str]:
        """After a phase of creates: look once more, *wait* seconds later, for twins made by
        another run after this run's first look; returns what was done, per group."""
        if not keys:
            return []
        await self.graph.policy.sleep(wait)
        prefix = self.config.group_prefix
        async with Batcher(self.graph) as batcher:
            notes = await asyncio.gather(
                *(self.keep_one(batcher, k, nickname_for(prefix, k)) for k in keys)
            )
        return [note for note in notes if note]

    async def update(self, batcher: Batcher, change: Change) -> Result:
        gid = str(change.precondition.id)
        body = {name: graph_value(value) for name, value in change.after.items() if name != TEAM}
        if body:
            reply = await batcher.call("PATCH", f"/groups/{gid}", body)
            if not reply.ok:
                return Result(change, "failed", reply.explain())
            self.snapshot().groups[gid].update(body)
        if change.after.get(TEAM) == CLASS_TEAM and team_of(self.snapshot().groups[gid]) is None:
            return await self._add_team(batcher, change, gid)
        return Result(change, "applied")

    async def archive(self, batcher: Batcher, change: Change) -> Result:
        """Marked, since Entra ID has no archive OU: the archive mark as its description and the
        configured prefix (``lifecycle.archive_prefix``, carried by the change) before its name.
        Its class team, if it has one, is archived (read-only) first. Members and owners stay;
        nothing else changes."""
        gid = str(change.precondition.id)
        group = self.snapshot().groups.get(gid, {})
        name = str(group.get("displayName") or change.key)
        prefix = str(change.after.get("prefix") or "")
        if prefix and not name.startswith(prefix):
            name = (prefix + name)[: GROUP_LIMITS["displayName"]]
        if team_of(group) and (problem := await self.teams.archive(batcher, gid)):
            # The group stays unmarked: the next run archives both again.
            return Result(change, "failed", problem)
        body = {"displayName": name, "description": archive_mark(str(change.after["archived"]))}
        return await self._patch_group(batcher, change, group, body)

    async def restore(self, batcher: Batcher, change: Change) -> Result:
        """The archive marking taken away: the name and description the mappings give (the
        change carries those that differ); without them, the name the group was made with (its
        key) and no description. Its class team is unarchived first (and made, when the
        mappings now want one and it has none)."""
        gid = str(change.precondition.id)
        group = self.snapshot().groups.get(gid, {})
        body: dict[str, Any] = {
            name: graph_value(value) for name, value in change.after.items() if name in GROUP_LIMITS
        }
        if "displayName" not in body and archived_day(group.get("description")) is not None:
            body["displayName"] = change.key
        if "description" not in body and archived_day(group.get("description")) is not None:
            body["description"] = None
        if team_of(group) and (problem := await self.teams.unarchive(batcher, gid)):
            return Result(change, "failed", problem)  # still marked: the next run tries again
        if body:
            result = await self._patch_group(batcher, change, group, body)
            if result.status != "applied":
                return result
        if change.after.get(TEAM) == CLASS_TEAM and team_of(group) is None:
            return await self._add_team(batcher, change, gid)
        return Result(change, "applied")

    async def _patch_group(
        self, batcher: Batcher, change: Change, group: dict[str, Any], body: dict[str, Any]
    ) -> Result:
        """Write *body* to the group *change* acts on and keep the snapshot's copy in step."""
        reply = await batcher.call("PATCH", f"/groups/{change.precondition.id}", body)
        if not reply.ok:
            return Result(change, "failed", reply.explain())
        group.update(body)
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
        fallback = change.after.get("fallback_owner")
        if fallback:
            # The plan takes the group's last owner away: the fallback owner is added first,
            # since Graph refuses a removal that would leave the group without an owner.
            problem = await self._add_fallback_owner(batcher, gid, str(fallback))
            if problem:
                return Result(change, "failed", problem)
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

    async def _add_fallback_owner(self, batcher: Batcher, gid: str, fallback: str) -> str | None:
        """The configured fallback owner (a UPN, or the object id of a user or a service
        principal) added as owner of the group; what went wrong, or None."""
        oid = fallback
        if "@" in fallback:
            reply = await batcher.call("GET", f"/users/{quote(fallback)}?$select=id")
            if not reply.ok:
                return (
                    f"the fallback owner {fallback} (target.entra.fallback_owner) could not be "
                    f"found in the tenant: {reply.explain()}; correct the setting"
                )
            oid = str((reply.body or {}).get("id"))
        if oid in self.snapshot().owners.get(gid, set()):
            return None
        reply = await self._add_ref(batcher, gid, "owners", oid)
        if reply.status == 400 and "invalid for the 'owners'" in reply.explain():
            return (
                f"the fallback owner {fallback} (target.entra.fallback_owner) is not a user or "
                "service principal (a group cannot own a group): give another one"
            )
        if not reply.ok and reply.status != 400:  # 400 otherwise: an owner already
            return (
                f"the fallback owner {fallback} (target.entra.fallback_owner) could not be "
                f"added: {reply.explain()}"
            )
        self.snapshot().owners.setdefault(gid, set()).add(oid)
        return None


def _done(change: Change, done: int, missing: list[str], role: str, note: str = "") -> Result:
    """A member or owner change carried out: how many, and the accounts that were not found.
    Only managed users become members or owners: an add naming anything else fails, naming it."""
    if missing and change.action in (Action.ADD_MEMBER, Action.ADD_OWNER):
        return Result(
            change,
            "failed",
            f"{done} {role}(s) added; {len(missing)} not added: not a managed user (no user of "
            f"the configured domains carries the key): {', '.join(missing)}{note}",
        )
    if missing:
        note = f"; {len(missing)} {role} account(s) not found: {', '.join(missing)}{note}"
    return Result(change, "applied", f"{done} {role}(s){note}")
