"""The managed scope of a tenant, read in bulk, and what the connector may write there.

The managed scope: users whose UPN ends in one of the configured domains, and security groups
(and the Microsoft 365 groups of class teams) whose mailNickname starts with the group prefix
(the rest of it is the group's key). Nothing else is read, changed or deleted. The scope is read
as raw JSON pages; members and owners of every group come 20 lists to a ``$batch``. Apply checks
preconditions against this snapshot (one bulk read instead of a GET per change) and keeps it up
to date with what it does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from provisioner.plan.model import Kind
from provisioner.targets.base import AnchorIndex, TargetError, text
from provisioner.targets.entra.batch import Batcher
from provisioner.targets.entra.transport import Graph
from provisioner.targets.entra_settings import EntraConfig, key_of

# Writable user properties a mapping may set, with Graph's length limits where it has them.
LIMITS: Mapping[str, int] = MappingProxyType(
    {
        "displayName": 256,
        "givenName": 64,
        "surname": 64,
        "department": 64,
        "jobTitle": 128,
        "companyName": 64,
        "employeeType": 64,
        "officeLocation": 128,
        "userPrincipalName": 113,
        "mail": 256,  # Graph documents none; AD's mail holds 256
        "preferredLanguage": 10,
        "mobilePhone": 64,
        "city": 128,
        "country": 128,
        "state": 128,
        "postalCode": 40,
        "streetAddress": 1024,
        "usageLocation": 2,
    }
)
GROUP_LIMITS: Mapping[str, int] = MappingProxyType({"displayName": 256, "description": 1024})
USER_READ = ("id", "userPrincipalName", "mailNickname", "accountEnabled", "onPremisesSyncEnabled")
GROUP_READ = (
    "id",
    "mailNickname",
    "securityEnabled",
    "groupTypes",
    "resourceProvisioningOptions",
    "onPremisesSyncEnabled",
)


@dataclass
class Snapshot:
    """The managed scope as last read, kept up to date by what this run applies."""

    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    members: dict[str, set[str]] = field(default_factory=dict)
    """Group id → member ids."""
    owners: dict[str, set[str]] = field(default_factory=dict)
    """Group id → owner ids."""
    anchors: AnchorIndex[str] = field(default_factory=AnchorIndex)
    """Users by anchor (two users with one anchor: ambiguous), groups by key → object id."""
    synced: dict[str, str] = field(default_factory=dict)
    """Users and groups of the domains or the prefix that Entra Connect synchronises from an
    on-premises AD (``onPremisesSyncEnabled``): id → name. Outside the managed scope: AD owns
    them."""

    def user_id(self, anchor: str) -> str | None:
        """The id of the one managed user carrying *anchor*, or None."""
        return self.anchors.find(Kind.ACCOUNT, anchor)

    def group_id(self, key: str) -> str | None:
        return self.anchors.find(Kind.GROUP, key)


class Applier:
    """What the changes of one object kind work with: the configuration, Graph (for what does
    not go in a ``$batch``) and the snapshot they keep up to date (read when first needed)."""

    def __init__(self, config: EntraConfig, graph: Graph, snapshot: Callable[[], Snapshot]) -> None:
        self.config = config
        self.graph = graph
        self.snapshot = snapshot


def graph_value(value: Any) -> Any:
    """A plan value as Graph takes it: an empty value clears the property."""
    return None if value in ("", None) else value


def user_select(config: EntraConfig) -> list[str]:
    """The user properties a read asks for (a full read and a delta alike); their licences only
    when the mappings name licences."""
    licences = ("assignedLicenses",) if config.reads_licences else ()
    return sorted({*USER_READ, config.anchor_property, *LIMITS, *licences})


GROUP_SELECT = sorted({*GROUP_READ, *GROUP_LIMITS})
"""The group properties a read asks for."""


def in_domains(config: EntraConfig, upn: Any) -> bool:
    """The user with this UPN is in the managed scope (one of the configured domains)."""
    folded = str(upn or "").lower()
    return any(folded.endswith("@" + domain) for domain in config.domains)


def group_in_scope(config: EntraConfig, group: Mapping[str, Any]) -> bool:
    """One of the connector's groups: a security group, or a Microsoft 365 group (a class
    team's), whose mailNickname has the prefix."""
    key = key_of(config.group_prefix, str(group.get("mailNickname") or ""))
    unified = "Unified" in (group.get("groupTypes") or [])
    return key is not None and (bool(group.get("securityEnabled")) or unified)


def picked(obj: Mapping[str, Any], names: list[str]) -> dict[str, Any]:
    """The selected properties of *obj* (every one, null when Graph left it out): a full read
    and an incremental one keep objects of one shape."""
    return {name: obj.get(name) for name in names}


Kept = dict[str, Any]
"""The managed scope as JSON data: ``users`` and ``groups`` (id → selected properties),
``members`` and ``owners`` (group id → sorted ids). What the state store keeps of a read and
what :func:`snapshot_of` builds the snapshot from, whether the read was full or incremental."""


async def read_scope(graph: Graph, config: EntraConfig) -> Kept:
    """Every managed user and group, with the ids of their members and owners, in full."""
    users: dict[str, dict[str, Any]] = {}
    names = user_select(config)
    select = ",".join(names)
    for domain in config.domains:
        # endswith is an advanced query: it needs ConsistencyLevel: eventual and $count.
        query = f"$filter=endswith(userPrincipalName,'@{domain}')&$count=true"
        url = f"{graph.base_url}/users?{query}&$select={select}&$top=999"
        for user in await graph.pages(url, eventual=True):
            if in_domains(config, user.get("userPrincipalName")):  # never trust a filter
                users[user["id"]] = picked(user, names)
    url = (
        f"{graph.base_url}/groups?$filter=startswith(mailNickname,'{config.group_prefix}')"
        f"&$select={','.join(GROUP_SELECT)}&$top=999"
    )
    groups = {
        group["id"]: picked(group, GROUP_SELECT)
        for group in await graph.pages(url)
        if group_in_scope(config, group)
    }
    members, owners = await relations(graph, list(groups), ("members", "owners"))
    return {"users": users, "groups": groups, "members": members, "owners": owners}


READ_LANES = 4
"""``$batch`` requests of reads in flight at once: a batcher sends one batch at a time (the
write quota paces writes), but reads are not paced, and the owners of 2,000 groups are 100
round trips."""


async def relations(
    graph: Graph, gids: list[str], names: tuple[str, ...]
) -> list[dict[str, list[str]]]:
    """Per relation in *names* (members, owners): group id → the sorted ids, for every group
    in *gids*, 20 lists per round trip, :data:`READ_LANES` round trips at a time."""
    wanted = [(gid, name) for name in names for gid in gids]
    lanes = [wanted[i::READ_LANES] for i in range(READ_LANES)]

    async def lane(calls: list[tuple[str, str]]) -> list[set[str]]:
        async with Batcher(graph) as batcher:
            return await asyncio.gather(*(_ids(graph, batcher, g, n) for g, n in calls))

    found: dict[tuple[str, str], set[str]] = {}
    for calls, ids in zip(lanes, await asyncio.gather(*(lane(c) for c in lanes)), strict=True):
        found.update(zip(calls, ids, strict=True))
    return [{gid: sorted(found[gid, name]) for gid in gids} for name in names]


def snapshot_of(kept: Kept, config: EntraConfig) -> Snapshot:
    """The snapshot of the managed scope from *kept* (a full read or an incremental one: the
    same function, so both give the same snapshot). Objects in id order."""
    snapshot = Snapshot()
    for kind, objects, name in (
        ("users", snapshot.users, "userPrincipalName"),
        ("groups", snapshot.groups, "mailNickname"),
    ):
        for oid, obj in sorted(kept[kind].items()):
            if obj.get("onPremisesSyncEnabled"):
                snapshot.synced[oid] = str(obj.get(name) or oid)
            else:
                objects[oid] = obj
    for uid, user in snapshot.users.items():
        anchor = text(user.get(config.anchor_property))
        if anchor:
            snapshot.anchors.remember(Kind.ACCOUNT, anchor, uid)
    for gid, group in snapshot.groups.items():
        key = key_of(config.group_prefix, str(group.get("mailNickname") or ""))
        assert key is not None  # only the connector's groups are kept
        snapshot.anchors.put(Kind.GROUP, key, gid)
    snapshot.members = {gid: set(kept["members"].get(gid, ())) for gid in snapshot.groups}
    snapshot.owners = {gid: set(kept["owners"].get(gid, ())) for gid in snapshot.groups}
    return snapshot


async def read_snapshot(graph: Graph, config: EntraConfig) -> Snapshot:
    """Every managed user and group, with the ids of their members and owners."""
    return snapshot_of(await read_scope(graph, config), config)


async def _ids(graph: Graph, batcher: Batcher, gid: str, relation: str) -> set[str]:
    """The ids of a group's members or owners."""
    reply = await batcher.call("GET", f"/groups/{gid}/{relation}?$select=id&$top=999")
    if not reply.ok:
        raise TargetError(f"reading the {relation} of group {gid}: {reply.explain()}")
    ids = {m["id"] for m in reply.body.get("value") or []}
    link = reply.body.get("@odata.nextLink")
    if link:
        ids |= {m["id"] for m in await graph.pages(link)}
    return ids
