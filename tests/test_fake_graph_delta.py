"""Delta queries on the project's fake Graph server (``/users/delta``, ``/groups/delta``).

What is pinned down here is what Microsoft documents for directory delta (delta-query-overview,
delta-query-groups, user-delta) and what an incremental reader must cope with: the selection is
encoded in the token and decides which changes bring an object back, never-set properties are
left out of later rounds, ``Prefer: return=minimal``, ``$deltatoken=latest``, ``$filter=id eq``,
``@removed`` reasons, ``members@delta`` split over pages for large groups, an expired token
(400 ``syncStateNotFound``) and a reset (410 Gone). The last tests replay rounds of changes into
a local copy and check that it equals a fresh full read, raw and through the real msgraph-sdk.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from azure.core.credentials import AccessToken
from azure.core.credentials_async import AsyncTokenCredential
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.groups.delta.delta_request_builder import (
    DeltaRequestBuilder as GroupsDeltaRequestBuilder,
)
from msgraph.generated.users.delta.delta_request_builder import DeltaRequestBuilder

from tests.fakes.graph_server import GRAPH_ROOT, GraphServer
from tests.test_fake_graph import follow

Json = dict[str, Any]


@pytest.fixture
def graph() -> Iterator[GraphServer]:
    with GraphServer() as server:
        now = [1000.0]
        server.clock = lambda: now[0]  # tests move time by hand: nothing sleeps
        server.now = now  # type: ignore[attr-defined]
        yield server


@pytest.fixture
def client(graph: GraphServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=graph.url, headers=graph.auth_headers, timeout=10) as c:
        yield c


def new_user(client: httpx.Client, n: int, **extra: Any) -> str:
    body = {
        "accountEnabled": True,
        "displayName": f"Leerling {n}",
        "mailNickname": f"ll{n}",
        "userPrincipalName": f"ll{n}@school.example",
        "passwordProfile": {"password": "Geheim-123!"},
        **extra,
    }
    r = client.post("/users", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def new_group(client: httpx.Client, name: str, members: list[str] = ()) -> str:  # type: ignore[assignment]
    body: Json = {
        "displayName": f"Klas {name}",
        "mailEnabled": False,
        "mailNickname": f"klas{name}",
        "securityEnabled": True,
    }
    if members:
        body["members@odata.bind"] = [f"{GRAPH_ROOT}/directoryObjects/{m}" for m in members]
    r = client.post("/groups", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def add_member(client: httpx.Client, gid: str, mid: str) -> None:
    ref = {"@odata.id": f"{GRAPH_ROOT}/directoryObjects/{mid}"}
    assert client.post(f"/groups/{gid}/members/$ref", json=ref).status_code == 204


def apply(local: dict[str, Json], values: list[Json]) -> None:
    """Merge a delta round into a local copy the way Graph asks clients to: ``@removed``
    drops the object, other properties overwrite, ``members@delta`` adds or removes members
    (the same group may come several times in one round)."""
    for item in values:
        oid = item["id"]
        if "@removed" in item:
            local.pop(oid, None)
            continue
        obj = local.setdefault(oid, {"id": oid})
        for name, value in item.items():
            if name != "members@delta":
                obj[name] = value
        members = set(obj.get("members", ()))
        for entry in item.get("members@delta", ()):
            if "@removed" in entry:
                members.discard(entry["id"])
            else:
                members.add(entry["id"])
        if "members@delta" in item or "members" in obj:
            obj["members"] = sorted(members)


def full(client: httpx.Client, url: str) -> dict[str, Json]:
    local: dict[str, Json] = {}
    values, _, _ = follow(client, url)
    apply(local, values)
    return local


def without_unset(local: dict[str, Json]) -> dict[str, Json]:
    """Later rounds leave out never-set properties: compare with nulls dropped."""
    return {
        oid: {k: v for k, v in obj.items() if v is not None and v != []}
        for oid, obj in local.items()
    }


# --- selection, default and minimal rendering ------------------------------------------------------
def test_a_change_outside_the_selection_does_not_bring_a_user_back(
    client: httpx.Client,
) -> None:
    uid = new_user(client, 1)
    _, link, _ = follow(client, "/users/delta", params={"$select": "displayName,employeeId"})
    client.patch(f"/users/{uid}", json={"department": "Lager"})
    client.patch(f"/users/{uid}", json={"displayName": "Leerling 1"})  # the same value: no change
    values, link, _ = follow(client, link)
    assert values == []
    client.patch(f"/users/{uid}", json={"employeeId": "7"})
    values, _, _ = follow(client, link)
    assert values == [{"id": uid, "displayName": "Leerling 1", "employeeId": "7"}]


def test_later_rounds_leave_out_never_set_properties_and_minimal_gives_only_changes(
    client: httpx.Client,
) -> None:
    uid = new_user(client, 1, jobTitle="leerling")
    select = {"$select": "displayName,jobTitle,mobilePhone,department"}
    first, link, _ = follow(client, "/users/delta", params=select)
    # the first round renders the selection like a GET, nulls included
    assert first == [
        {
            "id": uid,
            "displayName": "Leerling 1",
            "jobTitle": "leerling",
            "mobilePhone": None,
            "department": None,
        }
    ]
    client.patch(f"/users/{uid}", json={"jobTitle": None, "department": "Lager"})
    default, _, _ = follow(client, link)
    # unchanged displayName is repeated, a property set to null is there, mobilePhone never set
    assert default == [
        {"id": uid, "displayName": "Leerling 1", "jobTitle": None, "department": "Lager"}
    ]
    minimal, _, _ = follow(client, link, headers={"Prefer": "return=minimal"})
    assert minimal == [{"id": uid, "jobTitle": None, "department": "Lager"}]


def test_deltatoken_latest_syncs_from_now(client: httpx.Client) -> None:
    old = new_user(client, 1)
    r = client.get("/users/delta", params={"$deltatoken": "latest", "$select": "displayName"})
    assert r.status_code == 200
    body = r.json()
    assert body["value"] == [] and "@odata.nextLink" not in body
    client.patch(f"/users/{old}", json={"displayName": "Nieuw"})
    new = new_user(client, 2)
    values, _, _ = follow(client, body["@odata.deltaLink"])
    assert values == [
        {"id": old, "displayName": "Nieuw"},
        {"id": new, "displayName": "Leerling 2"},
    ]


def test_filter_by_id_is_kept_in_the_token_and_other_filters_are_refused(
    client: httpx.Client, graph: GraphServer
) -> None:
    a, b, c = (new_user(client, i) for i in range(3))
    flt = f"id eq '{a}' or id eq '{c}'"
    values, link, _ = follow(
        client, "/users/delta", params={"$filter": flt, "$select": "displayName"}
    )
    assert [v["id"] for v in values] == [a, c]
    for uid in (a, b, c):
        client.patch(f"/users/{uid}", json={"displayName": f"X{uid[:4]}"})
    client.delete(f"/users/{c}")
    values, _, _ = follow(client, link)
    assert values == [
        {"id": a, "displayName": f"X{a[:4]}"},
        {"id": c, "@removed": {"reason": "changed"}},
    ]
    for bad in ("displayName eq 'x'", " or ".join(f"id eq '{i}'" for i in range(51))):
        r = client.get("/users/delta", params={"$filter": bad})
        assert r.status_code == 400
        assert r.json()["error"]["code"] == "Request_UnsupportedQuery"
    assert client.get("/users/delta", params={"$top": "5"}).status_code == 400


# --- removals and members ----------------------------------------------------------------------------
def test_removed_reasons_and_members_removed_by_deletion(
    client: httpx.Client, graph: GraphServer
) -> None:
    pupil, teacher = new_user(client, 1), new_user(client, 2)
    klas = new_group(client, "1A", [pupil, teacher])
    team = graph.add_group(
        displayName="Team", mailEnabled=True, groupTypes=["Unified"], mailNickname="team"
    )["id"]
    _, users_link, _ = follow(client, "/users/delta", params={"$select": "displayName"})
    _, groups_link, _ = follow(client, "/groups/delta", params={"$select": "displayName,members"})
    client.delete(f"/users/{pupil}")
    client.delete(f"/groups/{team}")
    users, _, _ = follow(client, users_link)
    assert users == [{"id": pupil, "@removed": {"reason": "changed"}}]  # restorable 30 days
    groups, _, _ = follow(client, groups_link)
    assert groups == [
        {
            "id": klas,
            "displayName": "Klas 1A",
            "members@delta": [
                {"@odata.type": "#microsoft.graph.user", "id": pupil, "@removed": {"reason": "deleted"}}
            ],
        },
        {"id": team, "@removed": {"reason": "changed"}},  # a Microsoft 365 group is restorable
    ]  # fmt: skip


def test_a_property_change_without_member_changes_has_no_members_annotation(
    client: httpx.Client,
) -> None:
    gid = new_group(client, "1A", [new_user(client, 1)])
    _, link, _ = follow(client, "/groups/delta")  # no $select: members are tracked
    client.patch(f"/groups/{gid}", json={"description": "eerste jaar"})
    values, _, _ = follow(client, link)
    assert len(values) == 1 and values[0]["description"] == "eerste jaar"
    assert "members@delta" not in values[0]


def test_a_large_group_is_split_over_pages_and_merges_back(
    client: httpx.Client, graph: GraphServer
) -> None:
    graph.delta_members_per_page = 4
    uids = graph.seed_users(10)
    small = graph.add_group(displayName="Klein", members=uids[:1])["id"]
    big = graph.add_group(displayName="Groot", members=uids)["id"]
    values, link, pages = follow(client, "/groups/delta", params={"$select": "displayName,members"})
    # the small group (1 member) and the first 3 of the big one share page one
    assert pages == 3
    assert [v["id"] for v in values] == [small, big, big, big]
    assert [len(v["members@delta"]) for v in values] == [1, 3, 4, 3]
    local: dict[str, Json] = {}
    apply(local, values)
    assert local[big]["members"] == sorted(uids)
    for uid in uids[:6]:
        client.delete(f"/groups/{big}/members/{uid}/$ref")
    values, _, pages = follow(client, link)
    assert pages == 2 and all(v["id"] == big for v in values)
    apply(local, values)
    assert local[big]["members"] == sorted(uids[6:])


def test_a_group_deleted_while_split_over_pages_ends_with_removed(
    client: httpx.Client, graph: GraphServer
) -> None:
    graph.delta_members_per_page = 2
    uids = graph.seed_users(4)
    big = graph.add_group(displayName="Groot", members=uids)["id"]
    after = graph.add_group(displayName="Daarna", members=uids[:1])["id"]
    first = client.get("/groups/delta").json()
    assert [len(v["members@delta"]) for v in first["value"]] == [2]
    client.delete(f"/groups/{big}")
    values, _, _ = follow(client, first["@odata.nextLink"])
    assert values[0] == {"id": big, "@removed": {"reason": "deleted"}}
    assert values[1]["id"] == after
    assert values[1]["members@delta"] == [{"@odata.type": "#microsoft.graph.user", "id": uids[0]}]


def test_delta_link_for_now_without_a_request(client: httpx.Client, graph: GraphServer) -> None:
    uid = new_user(client, 1)
    link = graph.delta_link("users", ["displayName"])
    assert graph.requests[-1].method == "POST"  # no delta request was made
    client.patch(f"/users/{uid}", json={"displayName": "Nieuw"})
    values, _, _ = follow(client, link)
    assert values == [{"id": uid, "displayName": "Nieuw"}]


# --- token life --------------------------------------------------------------------------------------
def test_an_expired_token_answers_sync_state_not_found(
    client: httpx.Client, graph: GraphServer
) -> None:
    new_user(client, 1)
    _, link, _ = follow(client, "/users/delta")
    graph.now[0] += 7 * 24 * 3600 - 1  # type: ignore[attr-defined]
    _, link, _ = follow(client, link)  # still valid, and a fresh link
    graph.now[0] += 7 * 24 * 3600 + 1  # type: ignore[attr-defined]
    r = client.get(link)
    assert r.status_code == 400 and r.json()["error"]["code"] == "syncStateNotFound"
    for bad in ("garbage!", link.split("=")[-1] + "x"):
        r = client.get("/users/delta", params={"$deltatoken": bad})
        assert r.status_code == 400 and r.json()["error"]["code"] == "Request_BadRequest"
    # a users token is no groups token
    _, fresh, _ = follow(client, "/users/delta")
    r = client.get("/groups/delta", params={"$deltatoken": fresh.split("$deltatoken=")[1]})
    assert r.status_code == 400


def test_a_reset_answers_410_with_where_to_start_over(
    client: httpx.Client, graph: GraphServer
) -> None:
    for i in range(3):
        new_user(client, i)
    _, link, _ = follow(client, "/users/delta", params={"$select": "displayName"})
    page = client.get("/users/delta", headers={"Prefer": "odata.maxpagesize=1"}).json()
    graph.reset_delta()
    for url in (link, page["@odata.nextLink"]):
        r = client.get(url)
        assert r.status_code == 410, r.text
        assert r.json()["error"]["code"] == "syncStateNotFound"
    assert client.get(link).headers["Location"] == f"{graph.url}/users/delta?$select=displayName"
    values, _, _ = follow(client, client.get(link).headers["Location"])
    assert len(values) == 3


# --- incremental equals full -----------------------------------------------------------------------
def test_rounds_of_changes_replayed_equal_a_full_read(
    client: httpx.Client, graph: GraphServer
) -> None:
    graph.delta_members_per_page = 3
    uids = [new_user(client, i, employeeId=str(i)) for i in range(8)]
    gids = [new_group(client, "1A", uids[:5]), new_group(client, "1B", uids[5:])]
    user_url = "/users/delta?$select=displayName,employeeId,department"
    group_url = "/groups/delta?$select=displayName,description,members"
    users: dict[str, Json] = {}
    groups: dict[str, Json] = {}
    values, user_link, _ = follow(client, user_url)
    apply(users, values)
    values, group_link, _ = follow(client, group_url)
    apply(groups, values)

    def night_1() -> None:
        client.patch(f"/users/{uids[0]}", json={"department": "Lager", "employeeId": None})
        client.delete(f"/users/{uids[1]}")  # also leaves group 1A
        client.delete(f"/groups/{gids[0]}/members/{uids[2]}/$ref")
        add_member(client, gids[1], uids[2])
        gids.append(new_group(client, "2A", [uids[3], new_user(client, 20)]))

    def night_2() -> None:
        client.patch(f"/groups/{gids[1]}", json={"description": "tweede"})
        add_member(client, gids[0], uids[2])  # back where it was
        client.delete(f"/groups/{gids[2]}")
        client.patch(f"/users/{uids[4]}", json={"displayName": "Hernoemd"})
        client.patch(f"/users/{uids[5]}", json={"mobilePhone": "0470"})  # not selected

    for night in (night_1, night_2):
        night()
        values, user_link, _ = follow(client, user_link)
        apply(users, values)
        values, group_link, _ = follow(client, group_link)
        apply(groups, values)
        assert without_unset(users) == without_unset(full(client, user_url))
        assert without_unset(groups) == without_unset(full(client, group_url))


# --- the real msgraph-sdk ----------------------------------------------------------------------------
class StaticToken(AsyncTokenCredential):
    """A credential that never leaves the machine: the fake checks this bearer token."""

    def __init__(self, token: str) -> None:
        self.token = token

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 3600)

    async def close(self) -> None:
        pass

    async def __aexit__(self, *exc: object) -> None:
        pass


def sdk_client(server: GraphServer) -> GraphServiceClient:
    auth = AzureIdentityAuthenticationProvider(
        StaticToken(server.token), scopes=["https://graph.microsoft.com/.default"]
    )
    adapter = GraphRequestAdapter(auth)
    adapter.base_url = server.url
    return GraphServiceClient(request_adapter=adapter)


def test_delta_with_the_real_sdk_request_builders() -> None:
    async def scenario(server: GraphServer) -> None:
        client = sdk_client(server)
        server.delta_members_per_page = 2
        uids = server.seed_users(3)
        gid = server.add_group(displayName="Klas 1A", members=uids)["id"]
        params = DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(
            select=["displayName", "employeeId"]
        )
        config = DeltaRequestBuilder.DeltaRequestBuilderGetRequestConfiguration(
            query_parameters=params
        )
        config.headers.add("Prefer", "odata.maxpagesize=2")
        page = await client.users.delta.get(config)
        seen = list(page.value)
        while page.odata_next_link:
            page = await client.users.delta.with_url(page.odata_next_link).get()
            seen += page.value
        assert sorted(u.id for u in seen) == sorted(uids)
        assert {u.employee_id for u in seen} == {"0", "1", "2"}
        users_link = page.odata_delta_link
        assert users_link

        gparams = GroupsDeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(
            select=["displayName", "members"]
        )
        gconfig = GroupsDeltaRequestBuilder.DeltaRequestBuilderGetRequestConfiguration(
            query_parameters=gparams
        )
        gpage = await client.groups.delta.get(gconfig)
        members: set[str] = set()
        while True:
            for group in gpage.value:
                assert group.id == gid and group.display_name == "Klas 1A"
                # the SDK turns GUID strings in additional_data into UUIDs
                members |= {str(m["id"]) for m in group.additional_data["members@delta"]}
            if not gpage.odata_next_link:
                break
            gpage = await client.groups.delta.with_url(gpage.odata_next_link).get()
        assert members == set(uids)
        groups_link = gpage.odata_delta_link

        async with httpx.AsyncClient(headers=server.auth_headers) as raw:
            await raw.patch(f"{server.url}/users/{uids[0]}", json={"employeeId": "E0"})
            await raw.delete(f"{server.url}/users/{uids[1]}")
        changed = await client.users.delta.with_url(users_link).get()
        by_id = {u.id: u for u in changed.value}
        assert by_id[uids[0]].employee_id == "E0"
        assert by_id[uids[1]].additional_data["@removed"] == {"reason": "changed"}
        assert changed.odata_delta_link
        gchanged = await client.groups.delta.with_url(groups_link).get()
        (group,) = gchanged.value
        assert [
            {**m, "id": str(m["id"])} for m in group.additional_data["members@delta"]
        ] == [
            {"@odata.type": "#microsoft.graph.user", "id": uids[1], "@removed": {"reason": "deleted"}}
        ]  # fmt: skip

    with GraphServer() as server:
        asyncio.run(scenario(server))
