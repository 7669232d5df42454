"""The managed scope of a tenant, read in bulk, and what the connector may write there.

The managed scope: users whose UPN ends in one of the configured domains, and security groups
whose mailNickname starts with the group prefix (the rest of it is the group's key). Nothing else
is read, changed or deleted. The scope is read as raw JSON pages; members and owners of every
group come 20 lists to a ``$batch``. Apply checks preconditions against this snapshot (one bulk
read instead of a GET per change) and keeps it up to date with what it does.
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
USER_READ = ("id", "userPrincipalName", "mailNickname", "accountEnabled")
GROUP_READ = ("id", "mailNickname", "securityEnabled")


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


async def read_snapshot(graph: Graph, config: EntraConfig) -> Snapshot:
    """Every managed user and group, with the ids of their members and owners."""
    snapshot = Snapshot()
    select = ",".join(sorted({*USER_READ, config.anchor_property, *LIMITS}))
    for domain in config.domains:
        # endswith is an advanced query: it needs ConsistencyLevel: eventual and $count.
        query = f"$filter=endswith(userPrincipalName,'@{domain}')&$count=true"
        url = f"{graph.base_url}/users?{query}&$select={select}&$top=999"
        for user in await graph.pages(url, eventual=True):
            upn = str(user.get("userPrincipalName") or "").lower()
            if upn.endswith("@" + domain):  # never trust a filter with a delete
                snapshot.users[user["id"]] = user
    for uid, user in snapshot.users.items():
        anchor = text(user.get(config.anchor_property))
        if anchor:
            snapshot.anchors.remember(Kind.ACCOUNT, anchor, uid)
    prefix = config.group_prefix
    select = ",".join(sorted({*GROUP_READ, *GROUP_LIMITS}))
    url = (
        f"{graph.base_url}/groups?$filter=startswith(mailNickname,'{prefix}')"
        f"&$select={select}&$top=999"
    )
    for group in await graph.pages(url):
        key = key_of(prefix, str(group.get("mailNickname") or ""))
        if key is None or not group.get("securityEnabled"):
            continue
        snapshot.groups[group["id"]] = group
        snapshot.anchors.put(Kind.GROUP, key, group["id"])
    # Members and owners of every group, 20 lists per round trip.
    async with Batcher(graph) as batcher:
        members, owners = await asyncio.gather(
            asyncio.gather(*(_ids(graph, batcher, g, "members") for g in snapshot.groups)),
            asyncio.gather(*(_ids(graph, batcher, g, "owners") for g in snapshot.groups)),
        )
    snapshot.members = dict(zip(snapshot.groups, members, strict=True))
    snapshot.owners = dict(zip(snapshot.groups, owners, strict=True))
    return snapshot


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
