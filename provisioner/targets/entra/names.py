"""The tenant outside the managed scope: names held there, and users there carrying an anchor.

Before a create or a rename gives a name, the pipeline asks which of the wanted names a user or
group outside the managed scope already holds: Graph would refuse the create on every night.
"Outside" is what the connector does not manage: a user of another domain, a user of a managed
domain without the connector's anchor (made by hand, not adopted), any group that is not one of
the connector's. The names are compared with userPrincipalName, mail, mailNickname and the
``smtp:`` entries of proxyAddresses, by ``$filter`` queries of at most 15 values (Graph's limit on
expressions in one filter) sent 20 to a ``$batch``. Graph compares strings without case; so does
the check of every answer here, which also tells which value an object holds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any
from urllib.parse import quote

from provisioner import log
from provisioner.model import ObservedAccount
from provisioner.targets.base import TargetError, text
from provisioner.targets.entra.batch import Batcher
from provisioner.targets.entra.snapshot import LIMITS, USER_READ, Snapshot
from provisioner.targets.entra.transport import Graph
from provisioner.targets.entra_settings import EntraConfig

IN_VALUES = 15
"""Values in one filter: Graph allows 15 expressions in a filter (each value of an ``in`` list
and each clause of an ``or`` counts) outside an advanced query."""
FILTER_CHARS = 1600
"""Longest encoded filter: Graph limits a URL to 2,048 characters (the rest is path and
options)."""
ADVANCED = {"ConsistencyLevel": "eventual"}
"""With ``$count=true``: an advanced query (needed for ``ne null``; harmless for the others)."""
USER_NAMES = ("id", "userPrincipalName", "mail", "mailNickname", "proxyAddresses")
GROUP_NAMES = ("id", "displayName", "mail", "mailNickname", "proxyAddresses")


def odata_string(value: str) -> str:
    """*value* as an OData string literal: quoted, a quote inside doubled."""
    return "'" + value.replace("'", "''") + "'"


def in_list(prop: str) -> Callable[[Sequence[str]], str]:
    return lambda values: f"{prop} in ({','.join(map(odata_string, values))})"


def smtp_any(values: Sequence[str]) -> str:
    return " or ".join(f"proxyAddresses/any(p:p eq {odata_string('smtp:' + v)})" for v in values)


def chunks(values: Sequence[str], filter_of: Callable[[Sequence[str]], str]) -> Iterator[str]:
    """The encoded filters that together ask for every one of *values*: at most
    :data:`IN_VALUES` values each, and short enough for Graph's URL limit."""
    chunk: list[str] = []
    for value in values:
        longer = [*chunk, value]
        if chunk and (len(longer) > IN_VALUES or len(quote(filter_of(longer))) > FILTER_CHARS):
            yield quote(filter_of(chunk))
            longer = [value]
        chunk = longer
    if chunk:
        yield quote(filter_of(chunk))


def held_names(obj: dict[str, Any]) -> Iterator[str]:
    """Every name an object holds: its sign-in name, mail, nickname and smtp addresses."""
    for prop in ("userPrincipalName", "mail", "mailNickname"):
        if value := text(obj.get(prop)):
            yield value
    for proxy in obj.get("proxyAddresses") or []:
        scheme, _, address = str(proxy).partition(":")
        if scheme.casefold() == "smtp" and address:
            yield address


async def taken_outside(
    graph: Graph, config: EntraConfig, snapshot: Snapshot, values: Collection[str]
) -> dict[str, str]:
    """Of *values*, those held outside the managed scope: casefolded value → the UPN of the
    user or ``group <displayName>`` holding it."""
    wanted = {value.casefold(): value for value in values if value}
    addresses = sorted(v for v in wanted.values() if "@" in v)
    nicknames = sorted(v for v in wanted.values() if "@" not in v)  # mailNickname holds no @
    queries: list[tuple[str, str]] = []
    for kind, filter_of, names in (
        ("users", in_list("userPrincipalName"), addresses),
        ("users", in_list("mail"), addresses),
        ("users", smtp_any, addresses),
        ("users", in_list("mailNickname"), nicknames),
        ("groups", in_list("mail"), addresses),
        ("groups", smtp_any, addresses),
        ("groups", in_list("mailNickname"), nicknames),
    ):
        queries += [(kind, f) for f in chunks(names, filter_of)]
    if not queries:
        return {}
    async with Batcher(graph) as batcher:
        found = await asyncio.gather(*(_query(graph, batcher, k, f) for k, f in queries))
    anchor = config.anchor_property
    taken: dict[str, str] = {}
    for (kind, _), objects in zip(queries, found, strict=True):
        for obj in objects:
            oid = str(obj.get("id"))
            if kind == "groups":
                if oid in snapshot.groups:
                    continue  # one of the connector's groups
                where = f"group {obj.get('displayName') or obj.get('mailNickname')}"
            else:
                managed = snapshot.users.get(oid)
                if managed is not None and text(managed.get(anchor)):
                    continue  # a managed user: the planner knows its names
                where = str(obj.get("userPrincipalName"))
            for name in held_names(obj):
                if name.casefold() in wanted:
                    taken.setdefault(name.casefold(), where)
    return taken


async def _query(graph: Graph, batcher: Batcher, kind: str, encoded: str) -> list[dict[str, Any]]:
    select = ",".join(USER_NAMES if kind == "users" else GROUP_NAMES)
    url = f"/{kind}?$filter={encoded}&$select={select}&$count=true&$top=999"
    reply = await batcher.call("GET", url, headers=ADVANCED)
    if not reply.ok:
        raise TargetError(
            f"checking whether names are already used elsewhere in the tenant: {reply.explain()}"
        )
    objects: list[dict[str, Any]] = list(reply.body.get("value") or [])
    if link := reply.body.get("@odata.nextLink"):
        objects += await graph.pages(link, eventual=True)
    return objects


async def anchored_outside(
    graph: Graph, config: EntraConfig, snapshot: Snapshot, attributes: Collection[str]
) -> list[ObservedAccount]:
    """Every user outside the managed domains that carries a value in the anchor property, with
    *attributes* (those Graph has), and ``protected`` set for a member of a directory role."""
    anchor = config.anchor_property
    select = ",".join(sorted({*USER_READ, anchor, *LIMITS}))
    url = (
        f"{graph.base_url}/users?$filter={quote(f'{anchor} ne null')}&$count=true"
        f"&$select={select}&$top=999"
    )
    users = [
        user
        for user in await graph.pages(url, eventual=True)
        if user.get("id") not in snapshot.users and text(user.get(anchor))
    ]
    roles = await role_members(graph) if users else {}
    return [
        ObservedAccount(
            id=str(user["id"]),
            target=str(user.get("userPrincipalName")),
            anchor=text(user.get(anchor)),
            username=str(user.get("mailNickname") or ""),
            ou=(),
            attributes={
                name: value for name in attributes if (value := text(user.get(name))) is not None
            },
            enabled=user.get("accountEnabled") is not False,
            protected=(
                f"a member of the directory role {roles[user['id']]}"
                if user["id"] in roles
                else None
            ),
        )
        for user in users
    ]


async def role_members(graph: Graph) -> dict[str, str]:
    """User id → the name of a directory role it holds (Global Administrator, User
    Administrator …). Reading roles needs RoleManagement.Read.Directory (or
    Directory.Read.All); without it nobody is marked and the log says why."""
    async with Batcher(graph) as batcher:
        reply = await batcher.call("GET", "/directoryRoles?$select=id,displayName")
        if not reply.ok:
            log.event(
                "adoption report: the directory roles cannot be read, so accounts outside the "
                f"managed domains are not marked as administrators ({reply.explain()}); grant "
                "the app RoleManagement.Read.Directory to have them marked",
                logging.WARNING,
            )
            return {}
        roles = {str(r["id"]): str(r.get("displayName") or r["id"]) for r in reply.body["value"]}
        replies = await asyncio.gather(
            *(
                batcher.call("GET", f"/directoryRoles/{rid}/members?$select=id&$top=999")
                for rid in roles
            )
        )
    held: dict[str, str] = {}
    for name, members in zip(roles.values(), replies, strict=True):
        if not members.ok:
            raise TargetError(
                f"reading the members of the directory role {name}: {members.explain()}"
            )
        for member in members.body.get("value") or []:
            held.setdefault(str(member["id"]), name)
    return held
