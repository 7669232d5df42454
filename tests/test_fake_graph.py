"""The project's fake Microsoft Graph server, checked with raw httpx.

These tests pin down what the fake puts on the wire (reference: microsoft-graph.md), so that the
Entra target's tests against it mean something.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.fakes.graph_server import ALREADY_MEMBER, GRAPH_ROOT, GraphServer


@pytest.fixture
def graph() -> Iterator[GraphServer]:
    with GraphServer() as server:
        yield server


@pytest.fixture
def client(graph: GraphServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=graph.url, headers=graph.auth_headers, timeout=10) as c:
        yield c


def user_body(n: int | str, **extra: Any) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.user",
        "accountEnabled": True,
        "displayName": f"Leerling {n}",
        "mailNickname": f"ll{n}",
        "userPrincipalName": f"ll{n}@school.example",
        "passwordProfile": {"forceChangePasswordNextSignIn": True, "password": "Geheim-123!"},
        **extra,
    }


def group_body(name: str, members: list[str] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "displayName": f"Klas {name}",
        "mailEnabled": False,
        "mailNickname": f"klas{name}",
        "securityEnabled": True,
        "groupTypes": [],
    }
    if members is not None:
        body["members@odata.bind"] = binds(members)
    return body


def binds(ids: list[str]) -> list[str]:
    return [f"{GRAPH_ROOT}/directoryObjects/{m}" for m in ids]


def make_users(client: httpx.Client, n: int, start: int = 0) -> list[str]:
    ids = []
    for i in range(start, start + n):
        r = client.post("/users", json=user_body(i))
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    return ids


def error(r: httpx.Response) -> dict[str, Any]:
    err = r.json()["error"]
    assert set(err["innerError"]) >= {"date", "request-id"}
    return err


# --- auth and basics -------------------------------------------------------------------------------
def test_binds_loopback_and_requires_token(graph: GraphServer) -> None:
    assert graph.url.startswith("http://127.0.0.1:") and graph.url.endswith("/v1.0")
    r = httpx.get(f"{graph.url}/users")
    assert r.status_code == 401
    assert error(r)["code"] == "InvalidAuthenticationToken"
    assert error(r)["message"] == "Access token is empty."
    r = httpx.get(f"{graph.url}/users", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and error(r)["code"] == "InvalidAuthenticationToken"
    r = httpx.get(f"{graph.url}/users", headers=graph.auth_headers)
    assert r.status_code == 200
    assert r.json() == {"@odata.context": f"{graph.url}/$metadata#users", "value": []}


def test_user_crud(client: httpx.Client, graph: GraphServer) -> None:
    r = client.post("/users", json=user_body(1, employeeId="E1", department="1A"))
    assert r.status_code == 201
    assert r.headers["content-type"].startswith("application/json")
    user = r.json()
    uid = user["id"]
    assert len(uid) == 36 and uid.count("-") == 4
    assert user["userPrincipalName"] == "ll1@school.example"
    assert user["businessPhones"] == [] and user["jobTitle"] is None
    # employeeId, accountEnabled, mailNickname only with $select (default property set)
    assert "employeeId" not in user and "accountEnabled" not in user
    assert r.headers["location"].endswith(uid)

    got = client.get(f"/users/{uid}", params={"$select": "employeeId,accountEnabled,department"})
    assert got.status_code == 200
    assert {k: v for k, v in got.json().items() if not k.startswith("@")} == {
        "id": uid,
        "employeeId": "E1",
        "accountEnabled": True,
        "department": "1A",
    }
    by_upn = client.get("/users/LL1@school.example")
    assert by_upn.status_code == 200 and by_upn.json()["id"] == uid

    r = client.patch(f"/users/{uid}", json={"department": "2B", "accountEnabled": False})
    assert r.status_code == 204 and r.content == b""
    assert graph.users[uid]["department"] == "2B"
    assert graph.users[uid]["accountEnabled"] is False

    assert client.delete(f"/users/{uid}").status_code == 204
    r = client.get(f"/users/{uid}")
    assert r.status_code == 404 and error(r)["code"] == "Request_ResourceNotFound"
    assert uid not in graph.users
    assert [(q.method, q.path) for q in graph.requests][-2:] == [
        ("DELETE", f"/users/{uid}"),
        ("GET", f"/users/{uid}"),
    ]


def test_create_user_validation_and_duplicate_upn(client: httpx.Client) -> None:
    body = user_body(1)
    del body["passwordProfile"]
    r = client.post("/users", json=body)
    assert r.status_code == 400 and error(r)["code"] == "Request_BadRequest"
    bad_upn = {**user_body(1), "userPrincipalName": "an peeters@school.example"}
    assert client.post("/users", json=bad_upn).status_code == 400
    assert client.post("/users", json={**user_body(1), "mailNickname": "a b"}).status_code == 400
    assert client.post("/users", json=user_body(1)).status_code == 201
    r = client.post("/users", json={**user_body(2), "userPrincipalName": "LL1@school.example"})
    assert r.status_code == 400
    err = error(r)
    assert err["code"] == "Request_BadRequest"
    assert err["message"] == (
        "Another object with the same value for property userPrincipalName already exists."
    )
    assert err["details"][0]["code"] == "ObjectConflict"
    assert err["details"][0]["target"] == "userPrincipalName"


# --- queries ---------------------------------------------------------------------------------------
def test_paging_250_users(client: httpx.Client, graph: GraphServer) -> None:
    for i in range(250):
        graph.add_user(**user_body(i))
    pages, links = [], []
    r = client.get("/users", params={"$top": "100", "$select": "id,userPrincipalName"})
    while True:
        assert r.status_code == 200
        body = r.json()
        pages.append(body["value"])
        link = body.get("@odata.nextLink")
        if not link:
            break
        assert link.startswith(graph.url + "/users?") and "$skiptoken=" in link
        links.append(link)
        r = client.get(link)  # verbatim, absolute
    assert [len(p) for p in pages] == [100, 100, 50]
    upns = [u["userPrincipalName"] for p in pages for u in p]
    assert len(set(upns)) == 250
    assert set(pages[0][0]) == {"id", "userPrincipalName"}
    assert client.get(links[1]).json() == client.get(links[1]).json()  # a link can be retried
    # default page size 100, bad $top and unsupported options rejected
    assert client.get("/users", params={"$orderby": "displayName"}).status_code == 400
    assert len(client.get("/users").json()["value"]) == 100
    assert client.get("/users", params={"$top": "1000"}).status_code == 400


def test_filter_subset(client: httpx.Client, graph: GraphServer) -> None:
    graph.add_user(**user_body(1, employeeId="E1"))
    graph.add_user(**user_body(2, employeeId="E2"))
    graph.add_user(**user_body(3))
    r = client.get("/users", params={"$filter": "employeeId eq 'E2'", "$select": "employeeId"})
    assert [u["employeeId"] for u in r.json()["value"]] == ["E2"]
    r = client.get("/users", params={"$filter": "userPrincipalName eq 'll3@school.example'"})
    assert [u["displayName"] for u in r.json()["value"]] == ["Leerling 3"]
    r = client.get("/users", params={"$filter": "startswith(displayName,'leerling')"})
    assert len(r.json()["value"]) == 3
    graph.add_user(**user_body("o'neil"))
    r = client.get("/users", params={"$filter": "userPrincipalName eq 'llo''neil@school.example'"})
    assert len(r.json()["value"]) == 1
    r = client.get("/users", params={"$filter": "jobTitle eq 'x'"})
    assert r.status_code == 400 and error(r)["code"] == "Request_UnsupportedQuery"


def test_advanced_query_needs_consistency_level(client: httpx.Client, graph: GraphServer) -> None:
    graph.add_user(**user_body(1, employeeId="E1"))
    graph.add_user(**user_body(2))
    q = {"$filter": "employeeId ne null", "$count": "true"}
    r = client.get("/users", params={"$filter": "employeeId ne null"})
    assert r.status_code == 400 and error(r)["code"] == "Request_UnsupportedQuery"
    r = client.get("/users", params=q)  # $count but no header
    assert r.status_code == 400 and error(r)["code"] == "Request_UnsupportedQuery"
    r = client.get(
        "/users",
        params={"$filter": "employeeId ne null"},
        headers={"ConsistencyLevel": "eventual"},
    )  # header but no $count
    assert r.status_code == 400
    r = client.get("/users", params=q, headers={"ConsistencyLevel": "eventual"})
    assert r.status_code == 200
    assert r.json()["@odata.count"] == 1
    assert [u["userPrincipalName"] for u in r.json()["value"]] == ["ll1@school.example"]


# --- groups and membership -------------------------------------------------------------------------
def test_groups_with_bind(client: httpx.Client, graph: GraphServer) -> None:
    ids = make_users(client, 21)
    r = client.post("/groups", json=group_body("1A", ids[:20]))
    assert r.status_code == 201
    group = r.json()
    gid = group["id"]
    assert group["securityEnabled"] is True and group["mailEnabled"] is False
    assert group["groupTypes"] == [] and group["mail"] is None
    assert graph.members[gid] == ids[:20]
    r = client.post("/groups", json=group_body("1B", ids))
    assert r.status_code == 400 and error(r)["code"] == "Request_BadRequest"
    assert len(graph.groups) == 1
    r = client.post("/groups", json={**group_body("X"), "mailEnabled": True})
    assert r.status_code == 400

    r = client.get(f"/groups/{gid}/members", params={"$top": "15", "$select": "id,displayName"})
    body = r.json()
    assert len(body["value"]) == 15 and "@odata.nextLink" in body
    assert body["value"][0] == {
        "@odata.type": "#microsoft.graph.user",
        "id": ids[0],
        "displayName": "Leerling 0",
    }
    assert len(client.get(body["@odata.nextLink"]).json()["value"]) == 5

    other = graph.add_group(displayName="Klas 2A", members=[ids[0]])
    assert graph.members[other["id"]] == [ids[0]]
    r = client.get("/groups", params={"$filter": "displayName eq 'Klas 1A'"})
    assert [g["id"] for g in r.json()["value"]] == [gid]
    r = client.patch(f"/groups/{gid}", json={"description": "Eerste jaar"})
    assert r.status_code == 204 and graph.groups[gid]["description"] == "Eerste jaar"
    # PATCH with members@odata.bind: 21 rejected, an existing member rejected (all or nothing)
    r = client.patch(f"/groups/{gid}", json={"members@odata.bind": [f"{GRAPH_ROOT}/users/x"] * 21})
    assert r.status_code == 400
    r = client.patch(f"/groups/{gid}", json={"members@odata.bind": binds([ids[20], ids[0]])})
    assert r.status_code == 400 and error(r)["message"] == ALREADY_MEMBER
    r = client.patch(f"/groups/{gid}", json={"members@odata.bind": binds([ids[20]])})
    assert r.status_code == 204 and len(graph.members[gid]) == 21
    assert client.delete(f"/groups/{gid}").status_code == 204
    assert client.get(f"/groups/{gid}").status_code == 404


def test_ref_add_duplicate_and_remove(client: httpx.Client, graph: GraphServer) -> None:
    (uid,) = make_users(client, 1)
    gid = client.post("/groups", json=group_body("1A")).json()["id"]
    ref = {"@odata.id": f"{GRAPH_ROOT}/directoryObjects/{uid}"}
    r = client.post(f"/groups/{gid}/members/$ref", json=ref)
    assert r.status_code == 204 and r.content == b""
    r = client.post(f"/groups/{gid}/members/$ref", json=ref)
    assert r.status_code == 400
    assert error(r)["code"] == "Request_BadRequest"
    assert error(r)["message"].startswith("One or more added object references already exist")
    r = client.post(
        f"/groups/{gid}/members/$ref",
        json={"@odata.id": f"{GRAPH_ROOT}/directoryObjects/00000000-0000-4000-8000-000000000000"},
    )
    assert r.status_code == 404
    assert client.delete(f"/groups/{gid}/members/{uid}/$ref").status_code == 204
    assert graph.members[gid] == []
    r = client.delete(f"/groups/{gid}/members/{uid}/$ref")
    assert r.status_code == 404 and error(r)["code"] == "Request_ResourceNotFound"


def test_replication_lag_knob(client: httpx.Client, graph: GraphServer) -> None:
    now = [1000.0]
    graph.clock = lambda: now[0]
    (uid,) = make_users(client, 1)
    gid = client.post("/groups", json=group_body("1A")).json()["id"]
    graph.lag_member_adds = 2
    ref = {"@odata.id": f"{GRAPH_ROOT}/directoryObjects/{uid}"}
    statuses = [client.post(f"/groups/{gid}/members/$ref", json=ref).status_code for _ in range(3)]
    assert statuses == [404, 404, 204]
    # an old group is never affected
    gid2 = client.post("/groups", json=group_body("1B")).json()["id"]
    now[0] += graph.lag_seconds
    graph.lag_member_adds = 5
    assert client.post(f"/groups/{gid2}/members/$ref", json=ref).status_code == 204
    assert graph.lag_member_adds == 5


# --- $batch ----------------------------------------------------------------------------------------
JSON = {"Content-Type": "application/json"}


def test_batch_mixed_with_dependencies(client: httpx.Client, graph: GraphServer) -> None:
    (uid,) = make_users(client, 1)
    gid = client.post("/groups", json=group_body("1A")).json()["id"]
    ref = {"@odata.id": f"{GRAPH_ROOT}/directoryObjects/{uid}"}
    reqs: list[dict[str, Any]] = [
        {"id": "add", "method": "POST", "url": f"/groups/{gid}/members/$ref", "headers": JSON, "body": ref},
        {"id": "dup", "method": "POST", "url": f"/groups/{gid}/members/$ref", "headers": JSON, "body": ref, "dependsOn": ["add"]},
        {"id": "rm", "method": "DELETE", "url": f"/groups/{gid}/members/{uid}/$ref", "dependsOn": ["dup"]},
        {"id": "get", "method": "GET", "url": f"/users/{uid}?$select=accountEnabled"},
        {"id": "patch", "method": "PATCH", "url": f"/users/{uid}", "headers": JSON, "body": {"department": "1A"}},
        {"id": "nobody-ct", "method": "POST", "url": "/users", "body": user_body("x")},
    ]  # fmt: skip
    reqs += [
        {"id": f"u{i}", "method": "POST", "url": "/users", "headers": JSON, "body": user_body(100 + i)}
        for i in range(14)
    ]  # fmt: skip
    assert len(reqs) == 20
    r = client.post("/$batch", json={"requests": reqs})
    assert r.status_code == 200
    responses = r.json()["responses"]
    assert [x["id"] for x in responses] != [x["id"] for x in reqs]  # any order: match by id
    by_id = {x["id"]: x for x in responses}
    assert by_id["add"]["status"] == 204 and "body" not in by_id["add"]
    assert by_id["dup"]["status"] == 400
    assert by_id["dup"]["body"]["error"]["message"] == ALREADY_MEMBER
    assert by_id["rm"]["status"] == 424
    assert by_id["rm"]["body"]["error"]["code"] == "FailedDependency"
    assert graph.members[gid] == [uid]  # the remove never ran
    assert by_id["get"]["status"] == 200 and by_id["get"]["body"]["accountEnabled"] is True
    assert by_id["patch"]["status"] == 204 and graph.users[uid]["department"] == "1A"
    assert by_id["nobody-ct"]["status"] == 400
    assert all(by_id[f"u{i}"]["status"] == 201 for i in range(14))
    assert by_id["u0"]["body"]["id"] in graph.users
    assert by_id["u0"]["headers"]["Content-Type"] == "application/json"
    assert len(graph.users) == 15
    assert sum(1 for q in graph.requests if q.batch_id is not None) == 20


def test_batch_limits(client: httpx.Client) -> None:
    reqs = [{"id": str(i), "method": "GET", "url": "/users"} for i in range(21)]
    r = client.post("/$batch", json={"requests": reqs})
    assert r.status_code == 400 and error(r)["code"] == "BadRequest"
    r = client.post(
        "/$batch", json={"requests": [{"id": "1", "method": "GET", "url": "/users"}] * 2}
    )
    assert r.status_code == 400  # duplicate ids
    r = client.post(
        "/$batch",
        json={
            "requests": [
                {"id": "1", "method": "GET", "url": "https://graph.microsoft.com/v1.0/users"}
            ]
        },
    )
    assert r.status_code == 200 and r.json()["responses"][0]["status"] == 400  # absolute URL


# --- throttling and faults -------------------------------------------------------------------------
def test_injected_faults_on_requests(client: httpx.Client, graph: GraphServer) -> None:
    graph.inject(429, path_contains="/users", retry_after=2)
    r = client.post("/users", json=user_body(1))
    assert r.status_code == 429 and r.headers["retry-after"] == "2"
    assert error(r)["code"] == "TooManyRequests"
    assert graph.users == {}
    assert client.post("/users", json=user_body(1)).status_code == 201
    graph.inject(503, times=2)
    graph.inject(504)
    assert [client.get("/groups").status_code for _ in range(4)] == [503, 503, 504, 200]
    graph.inject(429, path_contains="/groups")
    assert client.get("/users").status_code == 200
    assert client.get("/groups").status_code == 429


def test_injected_throttle_on_batch_items(client: httpx.Client, graph: GraphServer) -> None:
    graph.inject_batch_item(429, times=2, retry_after=0.5)
    reqs = [
        {"id": str(i), "method": "POST", "url": "/users", "headers": JSON, "body": user_body(i)}
        for i in range(5)
    ]
    r = client.post("/$batch", json={"requests": reqs})
    assert r.status_code == 200
    by_id = {x["id"]: x for x in r.json()["responses"]}
    assert [by_id[str(i)]["status"] for i in range(5)] == [429, 429, 201, 201, 201]
    assert by_id["0"]["headers"]["Retry-After"] == "0.5"
    assert by_id["0"]["body"]["error"]["code"] == "TooManyRequests"
    assert len(graph.users) == 3


def test_write_quota_with_injected_clock(client: httpx.Client, graph: GraphServer) -> None:
    now = [0.0]
    graph.clock = lambda: now[0]
    graph.write_quota = (3, 10.0)
    assert [client.post("/users", json=user_body(i)).status_code for i in range(3)] == [201] * 3
    r = client.post("/users", json=user_body(3))
    assert r.status_code == 429 and r.headers["retry-after"] == "10"
    assert r.headers["x-ms-throttle-information"] == "WriteLimitExceeded"
    assert client.get("/users").status_code == 200  # reads are not writes
    now[0] = 4.0
    assert client.post("/users", json=user_body(3)).headers["retry-after"] == "6"
    now[0] = 10.5
    assert client.post("/users", json=user_body(3)).status_code == 201
    # batch items count one by one and are throttled inside the batch
    reqs = [
        {"id": str(i), "method": "PATCH", "url": f"/users/{uid}", "headers": JSON, "body": {"department": "x"}}
        for i, uid in enumerate(graph.users)
    ]  # fmt: skip
    by_id = {
        x["id"]: x for x in client.post("/$batch", json={"requests": reqs}).json()["responses"]
    }
    assert [by_id[str(i)]["status"] for i in range(4)] == [204, 204, 429, 429]
    assert "Retry-After" in by_id["2"]["headers"]


# --- delta -----------------------------------------------------------------------------------------
def follow(client: httpx.Client, url: str, **kw: Any) -> tuple[list[dict[str, Any]], str, int]:
    """All delta pages from ``url``: values, the deltaLink, and the number of pages."""
    values: list[dict[str, Any]] = []
    pages = 0
    r = client.get(url, **kw)
    while True:
        assert r.status_code == 200, r.text
        body = r.json()
        pages += 1
        values += body["value"]
        if "@odata.deltaLink" in body:
            return values, body["@odata.deltaLink"], pages
        r = client.get(body["@odata.nextLink"], headers=kw.get("headers"))


def test_users_delta(client: httpx.Client, graph: GraphServer) -> None:
    ids = make_users(client, 5)
    values, link, pages = follow(
        client,
        "/users/delta",
        params={"$select": "displayName,employeeId"},
        headers={"Prefer": "odata.maxpagesize=2"},
    )
    assert pages == 3 and [v["id"] for v in values] == ids
    assert set(values[0]) == {"id", "displayName", "employeeId"}
    assert link.startswith(graph.url + "/users/delta?$deltatoken=")
    values, link2, _ = follow(client, link)
    assert values == []
    client.patch(f"/users/{ids[1]}", json={"employeeId": "E9"})
    client.delete(f"/users/{ids[2]}")
    (new,) = make_users(client, 1, start=10)
    values, _, _ = follow(client, link2)
    assert values == [
        {"id": ids[1], "displayName": "Leerling 1", "employeeId": "E9"},
        {"id": new, "displayName": "Leerling 10", "employeeId": None},
        {"id": ids[2], "@removed": {"reason": "changed"}},
    ]


def test_groups_delta_with_members(client: httpx.Client, graph: GraphServer) -> None:
    ids = make_users(client, 3)
    gid = client.post("/groups", json=group_body("1A", ids[:2])).json()["id"]
    gone = client.post("/groups", json=group_body("1B")).json()["id"]
    values, link, _ = follow(client, "/groups/delta", params={"$select": "displayName,members"})
    first = {v["id"]: v for v in values}
    assert first[gid]["members@delta"] == [
        {"@odata.type": "#microsoft.graph.user", "id": ids[0]},
        {"@odata.type": "#microsoft.graph.user", "id": ids[1]},
    ]
    assert first[gone]["members@delta"] == []
    client.delete(f"/groups/{gid}/members/{ids[0]}/$ref")
    client.post(
        f"/groups/{gid}/members/$ref", json={"@odata.id": f"{GRAPH_ROOT}/directoryObjects/{ids[2]}"}
    )
    client.delete(f"/groups/{gone}")
    values, _, _ = follow(client, link)
    assert values == [
        {
            "id": gid,
            "displayName": "Klas 1A",
            "members@delta": [
                {"@odata.type": "#microsoft.graph.user", "id": ids[0], "@removed": {"reason": "deleted"}},
                {"@odata.type": "#microsoft.graph.user", "id": ids[2]},
            ],
        },
        {"id": gone, "@removed": {"reason": "changed"}},
    ]  # fmt: skip


def test_concurrent_creates(graph: GraphServer) -> None:
    def create(i: int) -> int:
        with httpx.Client(base_url=graph.url, headers=graph.auth_headers) as c:
            return c.post("/users", json=user_body(i)).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(create, [*range(40), 0, 1]))
    assert statuses.count(201) == 40 and statuses.count(400) == 2
    assert len(graph.users) == 40
