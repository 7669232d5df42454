"""The incremental read of the managed scope: Graph's delta queries folded into the last read.

The watermark is a pair of delta links taken *before* a full read (``$deltatoken=latest``: "from
now"), one for ``/users/delta`` and one for ``/groups/delta`` with ``members``. The next read
follows them and folds what changed into the kept objects the way Graph asks: ``@removed`` drops
an object, the properties an item carries overwrite the kept ones, ``members@delta`` adds and
removes members. Changes between the watermark and the full read come back once more and are
folded in again: every value a delta item carries is the object's current one.

Delta reads the whole tenant (it takes no filter but object ids), so the scope rules of the full
read (:func:`~provisioner.targets.entra.snapshot.read_scope`) are applied here again: a user whose
UPN left the configured domains is dropped, a user that came into them is read in full (an item
carries at least the changed properties, not always all); a group that lost the prefix or its
securityEnabled is dropped, one that gained it is read in full with its members and owners.

Group delta reports membership, never owners (Microsoft's group-delta documents members only;
the project's Graph server follows it). So the owners of every managed group are read again on
every incremental read, 20 lists per ``$batch``, as the full read reads them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from provisioner.targets.base import TargetError
from provisioner.targets.entra.batch import Batcher
from provisioner.targets.entra.snapshot import (
    GROUP_SELECT,
    Kept,
    group_in_scope,
    in_domains,
    picked,
    relations,
    user_select,
)
from provisioner.targets.entra.transport import Graph, GraphRefused
from provisioner.targets.entra_settings import EntraConfig, key_of

FORMAT = 1
"""The shape of what is kept (:data:`~provisioner.targets.entra.snapshot.Kept`) and of the
watermark: a read kept in another format is never the base of an incremental one."""

REFUSED_LINK = frozenset({400, 404, 410})
"""Graph's answers to a delta link it no longer honours: 400 ``syncStateNotFound`` (expired,
after seven days for directory objects), 410 Gone (its sync state was reset)."""


class LinkRefused(TargetError):
    """Graph no longer honours the kept delta link: a full read is due."""


def scope_of(config: EntraConfig) -> str:
    """What a kept read was read for: the tenant, the domains, the group prefix, the anchor, the
    selected properties and the format. Another scope: a full read."""
    return (
        f"entra v{FORMAT}|{config.graph_url}|{config.tenant_id}|"
        f"domains={','.join(sorted(config.domains))}|prefix={config.group_prefix}|"
        f"anchor={config.anchor_property}|users={','.join(user_select(config))}|"
        f"groups={','.join(GROUP_SELECT)},members"
    )


def _start(graph: Graph, kind: str, select: str) -> str:
    return f"{graph.base_url}/{kind}/delta?$select={select}"


async def watermark(graph: Graph, config: EntraConfig) -> dict[str, str]:
    """Delta links for users and groups from now, taken before a full read."""
    # One after the other: the first request of a run signs in, and two at once would sign in
    # twice (the credential caches the token only once it has one).
    users = await _latest(graph, _start(graph, "users", ",".join(user_select(config))))
    groups = await _latest(graph, _start(graph, "groups", ",".join([*GROUP_SELECT, "members"])))
    return {"users": users, "groups": groups}


async def _latest(graph: Graph, url: str) -> str:
    page = await graph.send_json("GET", url + "&$deltatoken=latest")
    link = (page or {}).get("@odata.deltaLink")
    if not link:
        raise TargetError(f"GET {url}&$deltatoken=latest: Graph gave no deltaLink")
    return str(link)


async def _round(graph: Graph, link: str) -> tuple[list[dict[str, Any]], str]:
    """Every item of one delta round (all its pages) and the deltaLink that ends it."""
    values: list[dict[str, Any]] = []
    while True:
        if not link.startswith(graph.config.graph_root + "/"):
            # The bearer token goes wherever the link points: only to Graph itself.
            raise TargetError(f"Graph sent a delta link to another host: {link}")
        try:
            page = await graph.send_json("GET", link) or {}
        except GraphRefused as exc:
            if exc.status in REFUSED_LINK:
                raise LinkRefused(str(exc)) from None
            raise
        values += page.get("value") or []
        if page.get("@odata.deltaLink"):
            return values, str(page["@odata.deltaLink"])
        link = str(page.get("@odata.nextLink") or "")
        if not link:
            raise TargetError("a delta page of Graph carried neither a nextLink nor a deltaLink")


@dataclass
class Folded:
    """An incremental read: the kept objects with the changes folded in, the next watermark."""

    kept: Kept
    watermark: dict[str, str]
    changed: int = 0
    """Managed objects a delta item changed (or that came into the scope)."""
    gone: int = 0
    """Managed objects deleted or gone out of the scope."""


async def read_changes(
    graph: Graph, config: EntraConfig, kept: Kept, mark: dict[str, str]
) -> Folded:
    """The changes since *mark* folded into *kept* (changed in place): the same objects a full
    read would give now. A delta link Graph no longer honours raises :class:`LinkRefused`."""
    user_items, user_link = await _round(graph, mark["users"])  # signs in first (see watermark)
    group_items, group_link = await _round(graph, mark["groups"])
    folded = Folded(kept, {"users": user_link, "groups": group_link})
    new_users = _fold_users(config, kept, user_items, folded)
    new_groups = _fold_groups(config, kept, group_items, folded)
    async with Batcher(graph) as batcher:
        users, groups = await asyncio.gather(
            asyncio.gather(*(_get(batcher, "users", u, user_select(config)) for u in new_users)),
            asyncio.gather(*(_get(batcher, "groups", g, GROUP_SELECT) for g in new_groups)),
        )
    for user in users:
        if user is not None and in_domains(config, user.get("userPrincipalName")):
            kept["users"][user["id"]] = user
            folded.changed += 1
    added = [g for g in groups if g is not None and group_in_scope(config, g)]
    for group in added:
        kept["groups"][group["id"]] = group
        folded.changed += 1
    # Members of the new groups; owners of every group (delta does not report them).
    (members,), (owners,) = await asyncio.gather(
        relations(graph, [g["id"] for g in added], ("members",)),
        relations(graph, list(kept["groups"]), ("owners",)),
    )
    kept["members"].update(members)
    kept["owners"] = owners
    return folded


def _fold_users(
    config: EntraConfig, kept: Kept, items: list[dict[str, Any]], folded: Folded
) -> list[str]:
    """Fold the user items into *kept*; the ids of users to read in full (new in the scope)."""
    users: dict[str, dict[str, Any]] = kept["users"]
    names = user_select(config)
    wanted: dict[str, None] = {}
    for item in items:
        uid = str(item["id"])
        if "@removed" in item:
            wanted.pop(uid, None)
            if users.pop(uid, None) is not None:
                folded.gone += 1
            continue
        user = users.get(uid)
        if user is None:
            # Not kept: outside the scope at the last read. Without a UPN in the item the UPN
            # did not change, so the user is still outside.
            if in_domains(config, item.get("userPrincipalName")):
                wanted[uid] = None
            continue
        user.update((name, item[name]) for name in names if name in item)
        if in_domains(config, user.get("userPrincipalName")):
            folded.changed += 1
        else:
            del users[uid]
            folded.gone += 1
    return list(wanted)


def _fold_groups(
    config: EntraConfig, kept: Kept, items: list[dict[str, Any]], folded: Folded
) -> list[str]:
    """Fold the group items (and their ``members@delta``) into *kept*; the ids of groups to
    read in full (new in the scope)."""
    groups: dict[str, dict[str, Any]] = kept["groups"]
    members: dict[str, list[str]] = kept["members"]
    wanted: dict[str, None] = {}
    touched: set[str] = set()
    for item in items:
        gid = str(item["id"])
        if "@removed" in item:
            wanted.pop(gid, None)
            if groups.pop(gid, None) is not None:
                folded.gone += 1
            members.pop(gid, None)
            kept["owners"].pop(gid, None)
            continue
        group = groups.get(gid)
        if group is None:
            if _may_come_in(config, item):
                wanted[gid] = None
            continue
        group.update((name, item[name]) for name in GROUP_SELECT if name in item)
        if not group_in_scope(config, group):
            del groups[gid]
            members.pop(gid, None)
            kept["owners"].pop(gid, None)
            folded.gone += 1
            continue
        touched.add(gid)
        # A large group comes several times in one round, its members split over the pages.
        entries = item.get("members@delta") or []
        if entries:
            ids = set(members.get(gid, ()))
            for entry in entries:
                if "@removed" in entry:
                    ids.discard(entry["id"])
                else:
                    ids.add(entry["id"])
            members[gid] = sorted(ids)
    folded.changed += len(touched)
    return list(wanted)


def _may_come_in(config: EntraConfig, item: dict[str, Any]) -> bool:
    """A group not kept (outside the scope at the last read) may have come in when its item
    carries mailNickname or securityEnabled and neither rules it out; the rest of the rule is
    checked on the group read in full."""
    if "mailNickname" not in item and "securityEnabled" not in item:
        return False  # neither changed: still outside
    nickname = item.get("mailNickname")
    if "mailNickname" in item and key_of(config.group_prefix, str(nickname or "")) is None:
        return False
    unified = "Unified" in (item.get("groupTypes") or [])
    return unified or not ("securityEnabled" in item and not item["securityEnabled"])


async def _get(batcher: Batcher, kind: str, oid: str, names: list[str]) -> dict[str, Any] | None:
    """One user or group with the selected properties, or None when it is gone."""
    reply = await batcher.call("GET", f"/{kind}/{oid}?$select={','.join(names)}")
    if reply.status == 404:
        return None
    if not reply.ok:
        raise TargetError(f"reading {kind[:-1]} {oid}: {reply.explain()}")
    return picked(reply.body, names)
