"""The project's fake Microsoft Graph server, checked with raw httpx, and its Entra token
endpoint, checked with the real azure-identity credentials and msgraph-sdk over TLS.

These tests pin down what the fake puts on the wire (reference: microsoft-graph.md), so that the
Entra target's tests against it mean something.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientSecretCredential as SyncClientSecretCredential
from azure.identity.aio import CertificateCredential, ClientSecretCredential
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from kiota_abstractions.api_error import APIError
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.models.password_profile import PasswordProfile
from msgraph.generated.models.user import User
from msgraph_core import GraphClientFactory

from tests.fakes import tls as fake_tls
from tests.fakes.graph_server import (
    ALREADY_MEMBER,
    ALREADY_OWNER,
    GRAPH_ROOT,
    GRAPH_SCOPE,
    JWT_BEARER,
    LAST_OWNER,
    AppCertificate,
    GraphError,
    GraphServer,
    make_app_certificate,
)


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


# --- group owners ----------------------------------------------------------------------------------
def owner_ref(oid: str, root: str = GRAPH_ROOT, kind: str = "directoryObjects") -> dict[str, str]:
    return {"@odata.id": f"{root}/{kind}/{oid}"}


def test_owners_list_add_duplicate_and_remove(client: httpx.Client, graph: GraphServer) -> None:
    ids = make_users(client, 4)
    body = {**group_body("1A"), "owners@odata.bind": binds(ids[:3])}
    gid = client.post("/groups", json=body).json()["id"]
    assert graph.owners[gid] == ids[:3] and graph.members[gid] == []
    # paging and $select exactly like members: directoryObjects typed as users
    r = client.get(f"/groups/{gid}/owners", params={"$top": "2", "$select": "id,displayName"})
    assert r.status_code == 200
    page = r.json()
    assert page["@odata.context"].endswith("/$metadata#directoryObjects")
    assert page["value"] == [
        {"@odata.type": "#microsoft.graph.user", "id": ids[0], "displayName": "Leerling 0"},
        {"@odata.type": "#microsoft.graph.user", "id": ids[1], "displayName": "Leerling 1"},
    ]
    assert f"/groups/{gid}/owners?$skiptoken=" in page["@odata.nextLink"]
    rest = client.get(page["@odata.nextLink"]).json()
    assert [o["id"] for o in rest["value"]] == [ids[2]] and "@odata.nextLink" not in rest
    full = client.get(f"/groups/{gid}/owners").json()["value"][0]
    assert full["userPrincipalName"] == "ll0@school.example" and "accountEnabled" not in full
    assert client.get(f"/groups/{gid}/owners", params={"$select": "members"}).status_code == 400

    # add: a directoryObjects URL, or a users URL on any host
    r = client.post(f"/groups/{gid}/owners/$ref", json=owner_ref(ids[3], "https://x/v1.0", "users"))
    assert r.status_code == 204 and r.content == b""
    assert graph.owners[gid] == ids
    r = client.post(f"/groups/{gid}/owners/$ref", json=owner_ref(ids[3]))
    assert r.status_code == 400
    assert error(r) | {"innerError": None} == {
        "code": "Request_BadRequest",
        "message": ALREADY_OWNER,
        "innerError": None,
    }
    assert ALREADY_OWNER.endswith("'owners'.")
    unknown = "00000000-0000-4000-8000-000000000000"
    r = client.post(f"/groups/{gid}/owners/$ref", json=owner_ref(unknown))
    assert r.status_code == 404 and error(r)["code"] == "Request_ResourceNotFound"
    r = client.post(f"/groups/{unknown}/owners/$ref", json=owner_ref(ids[0]))
    assert r.status_code == 404
    assert client.get(f"/groups/{unknown}/owners").status_code == 404
    assert client.post(f"/groups/{gid}/owners/$ref", json={}).status_code == 400
    assert graph.owners[gid] == ids  # none of the refused adds changed anything

    # remove; a non-owner (even a member, even an unknown id) is 404
    assert client.delete(f"/groups/{gid}/owners/{ids[0]}/$ref").status_code == 204
    assert graph.owners[gid] == ids[1:]
    r = client.delete(f"/groups/{gid}/owners/{ids[0]}/$ref")
    assert r.status_code == 404 and error(r)["code"] == "Request_ResourceNotFound"
    client.post(f"/groups/{gid}/members/$ref", json=owner_ref(ids[0]))
    assert client.delete(f"/groups/{gid}/owners/{ids[0]}/$ref").status_code == 404
    assert client.delete(f"/groups/{gid}/owners/{unknown}/$ref").status_code == 404
    assert graph.members[gid] == [ids[0]]  # owners and members are separate lists
    # the last owner stays (Graph: once a group has owners, one must remain)
    for uid in ids[1:3]:
        assert client.delete(f"/groups/{gid}/owners/{uid}/$ref").status_code == 204
    r = client.delete(f"/groups/{gid}/owners/{ids[3]}/$ref")
    assert r.status_code == 400
    assert error(r)["code"] == "Request_BadRequest" and error(r)["message"] == LAST_OWNER
    assert graph.owners[gid] == [ids[3]]
    # adding first, then removing, replaces the last owner
    assert client.post(f"/groups/{gid}/owners/$ref", json=owner_ref(ids[0])).status_code == 204
    assert client.delete(f"/groups/{gid}/owners/{ids[3]}/$ref").status_code == 204
    assert [o["id"] for o in client.get(f"/groups/{gid}/owners").json()["value"]] == [ids[0]]
    # a group without owners lists none
    empty = client.post("/groups", json=group_body("1B")).json()["id"]
    assert client.get(f"/groups/{empty}/owners").json()["value"] == []
    assert "@odata.nextLink" not in client.get(f"/groups/{empty}/owners").json()


def test_only_users_may_own_a_group(client: httpx.Client, graph: GraphServer) -> None:
    (uid,) = make_users(client, 1)
    other = client.post("/groups", json=group_body("X")).json()["id"]
    gid = client.post("/groups", json=group_body("1A")).json()["id"]
    for ref in (owner_ref(other), owner_ref(other, kind="groups")):
        r = client.post(f"/groups/{gid}/owners/$ref", json=ref)
        assert r.status_code == 400 and error(r)["code"] == "Request_BadRequest", ref
        assert "'owners'" in error(r)["message"]
    r = client.post("/groups", json={**group_body("1B"), "owners@odata.bind": binds([uid, other])})
    assert r.status_code == 400
    assert len(graph.groups) == 2  # no group was made
    r = client.patch(f"/groups/{gid}", json={"owners@odata.bind": binds([uid, other])})
    assert r.status_code == 400
    assert graph.owners[gid] == [] and graph.owners[other] == []
    # groups may still be members
    assert client.post(f"/groups/{gid}/members/$ref", json=owner_ref(other)).status_code == 204
    with pytest.raises(GraphError, match="invalid for the 'owners' reference"):
        graph.add_group(displayName="Klas 1C", owners=[other])
    assert len(graph.groups) == 2


def test_owner_binds_on_create_and_patch(client: httpx.Client, graph: GraphServer) -> None:
    ids = make_users(client, 23)
    r = client.post("/groups", json={**group_body("1A"), "owners@odata.bind": binds(ids[:21])})
    assert r.status_code == 400 and graph.groups == {}  # at most 20 references
    body = {**group_body("1A", ids[:1]), "owners@odata.bind": binds([ids[0], ids[1], ids[0]])}
    gid = client.post("/groups", json=body).json()["id"]
    assert graph.owners[gid] == [ids[0], ids[1]] and graph.members[gid] == [ids[0]]
    # PATCH: at most 20, an existing owner refuses the whole body (nothing of it sticks)
    assert len(ids[2:]) == 21
    r = client.patch(f"/groups/{gid}", json={"owners@odata.bind": binds(ids[2:])})
    assert r.status_code == 400 and graph.owners[gid] == ids[:2]
    r = client.patch(
        f"/groups/{gid}",
        json={"description": "x", "owners@odata.bind": binds([ids[2], ids[1]])},
    )
    assert r.status_code == 400 and error(r)["message"] == ALREADY_OWNER
    assert graph.owners[gid] == ids[:2] and graph.groups[gid]["description"] is None
    r = client.patch(f"/groups/{gid}", json={"owners@odata.bind": ["not a url"]})
    assert r.status_code == 400
    r = client.patch(
        f"/groups/{gid}",
        json={"owners@odata.bind": binds(ids[2:4]), "members@odata.bind": binds(ids[2:3])},
    )
    assert r.status_code == 204
    assert graph.owners[gid] == ids[:4] and graph.members[gid] == [ids[0], ids[2]]
    # seeding directly
    seeded = graph.add_group(displayName="Klas 2A", members=ids[5:6], owners=ids[4:6])
    assert graph.owners[seeded["id"]] == ids[4:6] and graph.members[seeded["id"]] == [ids[5]]
    listed = client.get(f"/groups/{seeded['id']}/owners").json()["value"]
    assert [o["id"] for o in listed] == ids[4:6]


def test_deleted_user_stops_being_owner(client: httpx.Client, graph: GraphServer) -> None:
    ids = make_users(client, 2)
    body = {**group_body("1A", ids), "owners@odata.bind": binds(ids)}
    gid = client.post("/groups", json=body).json()["id"]
    r = client.get(f"/groups/{gid}/owners", params={"$top": "1"})
    link = r.json()["@odata.nextLink"]
    assert client.delete(f"/users/{ids[1]}").status_code == 204
    assert graph.owners[gid] == [ids[0]] and graph.members[gid] == [ids[0]]
    assert client.get(link).json()["value"] == []  # a page already handed out skips it too
    listed = client.get(f"/groups/{gid}/owners").json()["value"]
    assert [o["id"] for o in listed] == [ids[0]]
    # deleting the last owner itself is allowed: the group is left without owners
    assert client.delete(f"/users/{ids[0]}").status_code == 204
    assert client.get(f"/groups/{gid}/owners").json()["value"] == []
    assert client.delete(f"/groups/{gid}").status_code == 204
    assert gid not in graph.owners


def test_owners_in_batch(client: httpx.Client, graph: GraphServer) -> None:
    ids = make_users(client, 3)
    body = {**group_body("1A"), "owners@odata.bind": binds(ids[:1])}
    gid = client.post("/groups", json=body).json()["id"]
    reqs: list[dict[str, Any]] = [
        {"id": "add", "method": "POST", "url": f"/groups/{gid}/owners/$ref", "headers": JSON, "body": owner_ref(ids[1])},
        {"id": "dup", "method": "POST", "url": f"/groups/{gid}/owners/$ref", "headers": JSON, "body": owner_ref(ids[1]), "dependsOn": ["add"]},
        {"id": "list", "method": "GET", "url": f"/groups/{gid}/owners?$select=id&$top=1", "dependsOn": ["add"]},
        {"id": "rm", "method": "DELETE", "url": f"/groups/{gid}/owners/{ids[0]}/$ref", "dependsOn": ["add"]},
        {"id": "rm-none", "method": "DELETE", "url": f"/groups/{gid}/owners/{ids[2]}/$ref"},
        {"id": "last", "method": "DELETE", "url": f"/groups/{gid}/owners/{ids[1]}/$ref", "dependsOn": ["rm"]},
    ]  # fmt: skip
    r = client.post("/$batch", json={"requests": reqs})
    assert r.status_code == 200
    by_id = {x["id"]: x for x in r.json()["responses"]}
    assert by_id["add"]["status"] == 204 and "body" not in by_id["add"]
    assert by_id["dup"]["status"] == 400
    assert by_id["dup"]["body"]["error"]["message"] == ALREADY_OWNER
    assert by_id["list"]["status"] == 200
    listed = by_id["list"]["body"]
    assert listed["value"] == [{"@odata.type": "#microsoft.graph.user", "id": ids[0]}]
    assert f"/groups/{gid}/owners?$skiptoken=" in listed["@odata.nextLink"]
    assert by_id["rm"]["status"] == 204
    assert by_id["rm-none"]["status"] == 404
    assert by_id["rm-none"]["body"]["error"]["code"] == "Request_ResourceNotFound"
    assert by_id["last"]["status"] == 400
    assert by_id["last"]["body"]["error"]["message"] == LAST_OWNER
    assert graph.owners[gid] == [ids[1]]


def test_owner_adds_lag_and_count_as_writes(client: httpx.Client, graph: GraphServer) -> None:
    now = [1000.0]
    graph.clock = lambda: now[0]
    ids = make_users(client, 3)
    gid = client.post("/groups", json=group_body("1A")).json()["id"]
    graph.lag_owner_adds = 2
    ref = owner_ref(ids[0])
    statuses = [client.post(f"/groups/{gid}/owners/$ref", json=ref).status_code for _ in range(3)]
    assert statuses == [404, 404, 204]
    graph.lag_owner_adds = 1
    r = client.patch(f"/groups/{gid}", json={"owners@odata.bind": binds(ids[1:2])})
    assert r.status_code == 404 and error(r)["code"] == "Request_ResourceNotFound"
    assert graph.owners[gid] == ids[:1]
    assert graph.lag_member_adds == 0  # the member knob is separate, and members unaffected
    assert client.post(f"/groups/{gid}/members/$ref", json=ref).status_code == 204
    # an old group is never affected
    now[0] += graph.lag_seconds
    graph.lag_owner_adds = 5
    r = client.patch(f"/groups/{gid}", json={"owners@odata.bind": binds(ids[1:2])})
    assert r.status_code == 204 and graph.lag_owner_adds == 5
    # owner writes count against the write quota; reads do not
    graph.write_quota = (2, 10.0)
    assert client.post(f"/groups/{gid}/owners/$ref", json=owner_ref(ids[2])).status_code == 204
    assert client.delete(f"/groups/{gid}/owners/{ids[2]}/$ref").status_code == 204
    assert client.get(f"/groups/{gid}/owners").status_code == 200
    r = client.post(f"/groups/{gid}/owners/$ref", json=owner_ref(ids[2]))
    assert r.status_code == 429 and r.headers["retry-after"] == "10"
    assert graph.owners[gid] == ids[:2]


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
        assert not ("@odata.nextLink" in body and "@odata.deltaLink" in body)
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
        {"id": new, "displayName": "Leerling 10"},  # never set: left out, as Graph does
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
    assert "members@delta" not in first[gone]  # no members: no annotation, as in Graph's example
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
        {"id": gone, "@removed": {"reason": "deleted"}},  # a security group is gone for good
    ]  # fmt: skip


def test_concurrent_creates(graph: GraphServer) -> None:
    def create(i: int) -> int:
        with httpx.Client(base_url=graph.url, headers=graph.auth_headers) as c:
            return c.post("/users", json=user_body(i)).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(create, [*range(40), 0, 1]))
    assert statuses.count(201) == 40 and statuses.count(400) == 2
    assert len(graph.users) == 40


# --- property validation ---------------------------------------------------------------------------
EVERY_WRITABLE_USER_PROPERTY: dict[str, Any] = {
    "givenName": "An",
    "surname": "Peeters",
    "employeeId": "1234567890123456",  # 16: the maximum
    "employeeType": "Student",
    "department": "1A",
    "jobTitle": "Leerling",
    "usageLocation": "BE",
    "companyName": "Sint-Jan",
    "officeLocation": "Campus Noord",
    "preferredLanguage": "nl-BE",
    "mobilePhone": "+32 470 00 00 00",
    "businessPhones": ["+32 3 000 00 00"],
    "city": "Antwerpen",
    "country": "België",
    "state": "Antwerpen",
    "postalCode": "2000",
    "streetAddress": "Kerkstraat 1",
    "onPremisesImmutableId": "AAECAwQFBgcICQoLDA0ODw==",
    "mail": "an.peeters@school.example",
}


def test_unknown_and_read_only_properties_are_refused(
    client: httpx.Client, graph: GraphServer
) -> None:
    r = client.post("/users", json=user_body(1, **EVERY_WRITABLE_USER_PROPERTY))
    assert r.status_code == 201, r.text
    uid = r.json()["id"]
    selected = client.get(
        f"/users/{uid}", params={"$select": ",".join(EVERY_WRITABLE_USER_PROPERTY)}
    )
    got = {k: v for k, v in selected.json().items() if k != "id" and not k.startswith("@")}
    assert got == EVERY_WRITABLE_USER_PROPERTY
    r = client.post("/users", json=user_body(2, favouriteColour="blue"))
    assert r.status_code == 400
    assert error(r)["code"] == "Request_BadRequest"
    assert error(r)["message"] == "Invalid property 'favouriteColour'."
    assert "ll2@school.example" not in {u["userPrincipalName"] for u in graph.users.values()}
    # property names are case-sensitive, as in Graph's JSON
    r = client.patch(f"/users/{uid}", json={"Department": "2B"})
    assert r.status_code == 400 and error(r)["message"] == "Invalid property 'Department'."
    for read_only in (
        {"id": uid},
        {"createdDateTime": "2020-01-01T00:00:00Z"},
        {"proxyAddresses": []},
    ):
        r = client.patch(f"/users/{uid}", json=read_only)
        assert r.status_code == 400 and error(r)["code"] == "Request_BadRequest", read_only
    r = client.patch(f"/users/{uid}", json={"manager@odata.bind": f"{GRAPH_ROOT}/users/{uid}"})
    assert r.status_code == 400  # only groups take members/owners binds
    assert graph.users[uid]["department"] == "1A"  # nothing of the refused PATCHes stuck
    r = client.patch(f"/users/{uid}", json={"@odata.type": "#microsoft.graph.user", "city": "Gent"})
    assert r.status_code == 204 and graph.users[uid]["city"] == "Gent"

    r = client.post("/groups", json={**group_body("1A"), "classCode": "1A"})
    assert r.status_code == 400 and error(r)["message"] == "Invalid property 'classCode'."
    body = {**group_body("1A"), "description": "Klas", "visibility": "Private"}
    body["owners@odata.bind"] = binds([uid])
    r = client.post("/groups", json=body)
    assert r.status_code == 201, r.text
    gid = r.json()["id"]
    assert graph.owners[gid] == [uid] and graph.members[gid] == []
    for read_only in ({"securityIdentifier": "S-1-1"}, {"renewedDateTime": "x"}, {"members": []}):
        r = client.patch(f"/groups/{gid}", json=read_only)
        assert r.status_code == 400, read_only
    # seeding may set read-only properties (fixtures), never unknown ones (typos)
    seeded = graph.add_user(**user_body(3), createdDateTime="2020-01-01T00:00:00Z")
    assert graph.users[seeded["id"]]["createdDateTime"] == "2020-01-01T00:00:00Z"
    with pytest.raises(GraphError, match="Invalid property 'employeeNumber'"):
        graph.add_user(**user_body(4), employeeNumber="1")


@pytest.mark.parametrize(
    ("kind", "change"),
    [
        ("users", {"mailNickname": "zoë"}),  # ASCII only
        ("users", {"mailNickname": "a" * 65}),
        ("users", {"usageLocation": "BEL"}),
        ("users", {"usageLocation": "B1"}),
        ("users", {"employeeId": "1" * 17}),
        ("users", {"accountEnabled": "yes"}),
        ("users", {"displayName": ""}),
        ("users", {"userPrincipalName": "an@school.example\n"}),
        ("users", {"onPremisesImmutableId": "a_b"}),
        ("groups", {"mailNickname": "klas 1a"}),
        ("groups", {"mailNickname": "klas@1a"}),
        ("groups", {"mailNickname": "klas[1a]"}),
        ("groups", {"mailNickname": "klasé"}),
        ("groups", {"mailNickname": "k" * 65}),
        ("groups", {"securityEnabled": "true"}),
        ("groups", {"groupTypes": "Unified"}),
        ("groups", {"visibility": "Secret"}),
    ],
)
def test_invalid_values_answer_400_on_create_and_patch(
    client: httpx.Client, graph: GraphServer, kind: str, change: dict[str, Any]
) -> None:
    good = user_body(1) if kind == "users" else group_body("1A")
    r = client.post(f"/{kind}", json={**good, **change})
    assert r.status_code == 400, r.text
    assert error(r)["code"] in ("Request_BadRequest", "BadRequest")
    assert graph.users == {} and graph.groups == {}
    oid = client.post(f"/{kind}", json=good).json()["id"]
    assert client.patch(f"/{kind}/{oid}", json=change).status_code == 400
    ok = {"usageLocation": "be"} if kind == "users" else {"mailNickname": "klas.1a-b_c"}
    assert client.patch(f"/{kind}/{oid}", json=ok).status_code == 204


# --- TLS and the Entra token endpoint --------------------------------------------------------------
TENANT = "8a7b6c5d-1111-4222-8333-944455556666"
CLIENT_ID = "0c1d2e3f-aaaa-4bbb-8ccc-ddddeeeeffff"
SECRET = "Geheim~Secret.Value_1"


@pytest.fixture(scope="module")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> fake_tls.TestCA:
    """One throwaway CA for the module (openssl takes a moment); each test gets its own server."""
    return fake_tls.make_test_ca(tmp_path_factory.mktemp("graph-ca"))


@pytest.fixture(scope="module")
def app_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[AppCertificate, Path]:
    cert = make_app_certificate()
    path = tmp_path_factory.mktemp("app") / "app.pem"
    path.write_bytes(cert.pem)
    return cert, path


@pytest.fixture
def tls_graph(
    test_ca: fake_tls.TestCA, app_cert: tuple[AppCertificate, Path]
) -> Iterator[GraphServer]:
    with GraphServer(tls=test_ca) as server:
        server.register_app(TENANT, CLIENT_ID, secret=SECRET, certificate_pem=app_cert[0].pem)
        yield server


def secret_credential(
    server: GraphServer, secret: str = SECRET, **kw: Any
) -> ClientSecretCredential:
    """Built exactly as the production code builds it."""
    return ClientSecretCredential(
        kw.pop("tenant_id", TENANT),
        kw.pop("client_id", CLIENT_ID),
        secret,
        authority=server.authority,
        connection_verify=str(server.ca_file),
        disable_instance_discovery=True,
    )


def certificate_credential(server: GraphServer, path: Path) -> CertificateCredential:
    return CertificateCredential(
        TENANT,
        CLIENT_ID,
        certificate_path=str(path),
        password=None,
        authority=server.authority,
        connection_verify=str(server.ca_file),
        disable_instance_discovery=True,
    )


def token_form(server: GraphServer, **fields: str) -> httpx.Response:
    """A raw token request, for the answers the credentials turn into one exception."""
    form = {"grant_type": "client_credentials", "client_id": CLIENT_ID, "scope": GRAPH_SCOPE}
    form.update(fields)
    with httpx.Client(verify=server.client_ssl_context()) as c:
        return c.post(server.token_endpoint(TENANT), data={k: v for k, v in form.items() if v})


def test_tls_server_urls_and_certificate() -> None:
    with GraphServer(tls=True) as server:
        assert server.url == f"https://127.0.0.1:{server.port}/v1.0"
        assert server.authority == f"https://127.0.0.1:{server.port}"
        assert server.ca_file.is_file()
        with httpx.Client(verify=server.client_ssl_context(), headers=server.auth_headers) as c:
            r = c.get(f"{server.url}/users")
            assert r.status_code == 200
            assert r.json()["@odata.context"].startswith("https://127.0.0.1:")
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{server.url}/users")  # the system trust store does not know the fake CA
    with GraphServer() as plain, pytest.raises(RuntimeError, match="tls=True"):
        _ = plain.ca_file


def test_client_secret_credential_gets_one_token_and_caches_it(tls_graph: GraphServer) -> None:
    async def scenario() -> list[str]:
        async with secret_credential(tls_graph) as credential:
            first = await credential.get_token(GRAPH_SCOPE)
            assert abs(first.expires_on - (time.time() + tls_graph.token_lifetime)) < 60
            return [first.token] + [
                (await credential.get_token(GRAPH_SCOPE)).token for _ in range(3)
            ]

    assert asyncio.run(scenario()) == [tls_graph.token] * 4
    assert tls_graph.tokens_issued == 1
    (request,) = tls_graph.token_requests  # the aio credential does no tenant discovery
    assert (request.method, request.path, request.status) == (
        "POST",
        f"/{TENANT}/oauth2/v2.0/token",
        200,
    )
    assert request.form == {
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "grant_type": "client_credentials",
        "scope": GRAPH_SCOPE,
    }


def test_wrong_secret_unknown_app_and_unknown_tenant_are_refused(tls_graph: GraphServer) -> None:
    async def refused(**kw: Any) -> str:
        async with secret_credential(tls_graph, **kw) as credential:
            with pytest.raises(ClientAuthenticationError) as caught:
                await credential.get_token(GRAPH_SCOPE)
        return str(caught.value)

    assert "(invalid_client) AADSTS7000215" in asyncio.run(refused(secret="wrong"))
    other_app = "99999999-9999-4999-8999-999999999999"
    assert "(unauthorized_client) AADSTS700016" in asyncio.run(refused(client_id=other_app))
    other_tenant = "77777777-7777-4777-8777-777777777777"
    assert "AADSTS90002" in asyncio.run(refused(tenant_id=other_tenant))
    assert [r.status for r in tls_graph.token_requests] == [401, 400, 400]
    assert tls_graph.tokens_issued == 0

    r = token_form(tls_graph, client_secret="wrong")
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    body = r.json()
    assert body["error"] == "invalid_client" and body["error_codes"] == [7000215]
    assert body["error_description"].startswith("AADSTS7000215: Invalid client secret provided.")
    assert set(body) >= {"timestamp", "trace_id", "correlation_id"}


def test_token_endpoint_grant_scope_and_method_rules(tls_graph: GraphServer) -> None:
    def answer(r: httpx.Response) -> tuple[int, str, int]:
        return r.status_code, r.json()["error"], r.json()["error_codes"][0]

    assert answer(token_form(tls_graph, client_secret=SECRET, grant_type="password")) == (
        400,
        "unsupported_grant_type",
        70003,
    )
    # a delegated-style scope, and the scope the SDK derives from the host without explicit scopes
    r = token_form(tls_graph, client_secret=SECRET, scope="https://graph.microsoft.com/User.Read")
    assert answer(r) == (400, "invalid_scope", 1002012)
    r = token_form(tls_graph, client_secret=SECRET, scope="http://127.0.0.1/.default")
    assert answer(r) == (400, "invalid_resource", 500011)
    assert answer(token_form(tls_graph)) == (401, "invalid_client", 7000218)
    assert answer(token_form(tls_graph, client_secret=SECRET, scope="")) == (
        400,
        "invalid_request",
        900144,
    )
    with httpx.Client(verify=tls_graph.client_ssl_context()) as c:
        assert c.get(tls_graph.token_endpoint(TENANT)).status_code == 405
        # JSON is not a form: Entra finds no grant_type
        r = c.post(tls_graph.token_endpoint(TENANT), json={"grant_type": "client_credentials"})
        assert answer(r) == (400, "invalid_request", 900144)
    assert tls_graph.tokens_issued == 0
    r = token_form(
        tls_graph, client_secret=SECRET, scope=f"{GRAPH_ROOT.rsplit('/', 1)[0]}/.default"
    )
    assert r.status_code == 200 and r.json()["access_token"] == tls_graph.token
    assert r.json()["token_type"] == "Bearer" and r.json()["expires_in"] == 3599
    assert tls_graph.tokens_issued == 1


def test_certificate_credential_signs_an_assertion_the_fake_verifies(
    tls_graph: GraphServer, app_cert: tuple[AppCertificate, Path], tmp_path: Path
) -> None:
    async def token(path: Path) -> str:
        async with certificate_credential(tls_graph, path) as credential:
            first = (await credential.get_token(GRAPH_SCOPE)).token
            assert (await credential.get_token(GRAPH_SCOPE)).token == first  # cached
            return first

    assert asyncio.run(token(app_cert[1])) == tls_graph.token
    assert tls_graph.tokens_issued == 1
    (request,) = tls_graph.token_requests
    assert "client_secret" not in request.form
    assert request.form["client_assertion_type"] == JWT_BEARER
    header, claims = (
        json.loads(_unb64(p)) for p in request.form["client_assertion"].split(".")[:2]
    )
    assert header["alg"] == "PS256" and "x5t#S256" in header  # what azure-identity 1.2x signs
    assert claims["iss"] == claims["sub"] == CLIENT_ID
    assert claims["aud"] == tls_graph.token_endpoint(TENANT)

    # a certificate the app registration does not know
    stranger = tmp_path / "stranger.pem"
    stranger.write_bytes(make_app_certificate("someone else").pem)
    with pytest.raises(ClientAuthenticationError, match=r"\(invalid_client\) AADSTS700027"):
        asyncio.run(token(stranger))
    assert tls_graph.tokens_issued == 1


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def test_client_assertion_checks(
    tls_graph: GraphServer, app_cert: tuple[AppCertificate, Path]
) -> None:
    key = serialization.load_pem_private_key(app_cert[0].pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    now = int(time.time())
    good = {
        "aud": tls_graph.token_endpoint(TENANT),
        "iss": CLIENT_ID,
        "sub": CLIENT_ID,
        "jti": "1",
        "nbf": now,
        "exp": now + 600,
    }

    def assertion(alg: str = "RS256", **claims: Any) -> str:
        head = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
        body = _b64(json.dumps({**good, **claims}).encode())
        pad: padding.AsymmetricPadding = (
            padding.PKCS1v15()
            if alg == "RS256"
            else padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        )
        signature = key.sign(f"{head}.{body}".encode(), pad, hashes.SHA256())
        return f"{head}.{body}.{_b64(signature)}"

    def answer(jwt: str) -> tuple[int, int]:
        r = token_form(tls_graph, client_assertion=jwt, client_assertion_type=JWT_BEARER)
        return r.status_code, (r.json().get("error_codes") or [0])[0]

    assert answer(assertion()) == (200, 0)  # RS256 without thumbprint header, unpadded segments
    assert answer(assertion("PS256")) == (200, 0)
    assert answer(assertion(iss="someone-else")) == (401, 700027)
    assert answer(assertion(sub="someone-else")) == (401, 700027)
    head, _, sig = assertion().split(".")
    forged = _b64(json.dumps({**good, "exp": now + 99999}).encode())
    assert answer(f"{head}.{forged}.{sig}") == (401, 700027)  # payload changed after signing
    assert answer(assertion(aud="https://login.microsoftonline.com/x/oauth2/v2.0/token")) == (
        401,
        50012,
    )
    assert answer(assertion(exp=now - 3600, nbf=now - 7200)) == (401, 700024)
    assert answer("not-a-jwt") == (401, 50027)
    r = token_form(tls_graph, client_assertion=assertion(), client_assertion_type="urn:other")
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    assert tls_graph.tokens_issued == 2


def test_msal_sync_credential_discovers_the_tenant_first(tls_graph: GraphServer) -> None:
    # The sync credential goes through MSAL, which reads the OpenID configuration before the
    # token endpoint. disable_instance_discovery=True keeps MSAL off login.microsoftonline.com.
    credential = SyncClientSecretCredential(
        TENANT,
        CLIENT_ID,
        SECRET,
        authority=tls_graph.authority,
        connection_verify=str(tls_graph.ca_file),
        disable_instance_discovery=True,
    )
    assert credential.get_token(GRAPH_SCOPE).token == tls_graph.token
    assert credential.get_token(GRAPH_SCOPE).token == tls_graph.token
    assert [(r.method, r.path, r.status) for r in tls_graph.token_requests] == [
        ("GET", f"/{TENANT}/v2.0/.well-known/openid-configuration", 200),
        ("POST", f"/{TENANT}/oauth2/v2.0/token", 200),
    ]
    assert tls_graph.tokens_issued == 1
    with httpx.Client(verify=tls_graph.client_ssl_context()) as c:
        r = c.get(f"{tls_graph.authority}/nobody.example/v2.0/.well-known/openid-configuration")
    assert r.status_code == 400 and r.json()["error"] == "invalid_tenant"


def sdk_client(server: GraphServer, credential: AsyncTokenCredential) -> GraphServiceClient:
    """The production wiring: real credential, auth provider, Graph middleware, TLS-verified."""
    auth = AzureIdentityAuthenticationProvider(credential, scopes=[GRAPH_SCOPE])
    http = GraphClientFactory.create_with_default_middleware(
        client=httpx.AsyncClient(verify=server.client_ssl_context())
    )
    adapter = GraphRequestAdapter(auth, client=http)
    adapter.base_url = server.url
    return GraphServiceClient(request_adapter=adapter)


@pytest.mark.parametrize("kind", ["secret", "certificate"])
def test_msgraph_sdk_with_a_real_credential_over_tls(
    tls_graph: GraphServer, app_cert: tuple[AppCertificate, Path], kind: str
) -> None:
    async def scenario() -> None:
        credential: ClientSecretCredential | CertificateCredential = (
            secret_credential(tls_graph)
            if kind == "secret"
            else certificate_credential(tls_graph, app_cert[1])
        )
        async with credential:
            client = sdk_client(tls_graph, credential)
            created = await client.users.post(
                User(
                    account_enabled=True,
                    display_name="Zoë Çelik",
                    mail_nickname="zoe.celik",
                    user_principal_name="zoe.celik@leerling.school.be",
                    employee_id="1451929",
                    usage_location="BE",
                    password_profile=PasswordProfile(password="Boom-Vis-Zon-12"),
                )
            )
            assert created is not None and created.id in tls_graph.users
            listed = await client.users.get()
            assert listed is not None and [u.id for u in listed.value or []] == [created.id]
            # an unknown property reaches Graph through additional_data, and is refused
            with pytest.raises(APIError) as caught:
                await client.users.by_user_id(str(created.id)).patch(
                    User(additional_data={"klasCode": "1A"})
                )
            assert caught.value.response_status_code == 400

    asyncio.run(scenario())
    assert tls_graph.tokens_issued == 1  # three Graph calls, one token
    assert {r.headers.get("authorization") for r in tls_graph.requests} == {
        f"Bearer {tls_graph.token}"
    }
    user = next(iter(tls_graph.users.values()))
    assert user["employeeId"] == "1451929" and "klasCode" not in user


# --- standalone ------------------------------------------------------------------------------------
@pytest.fixture
def standalone() -> Iterator[Callable[..., list[str]]]:
    """Start ``python -m tests.fakes.graph_server`` with the given arguments; stop it (SIGTERM)
    afterwards and check that it exited cleanly."""
    root = Path(__file__).resolve().parents[1]
    procs: list[subprocess.Popen[str]] = []

    def start(*args: str) -> list[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.graph_server", "--port", "0", *args],
            cwd=root,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(root)},
        )
        procs.append(proc)
        assert proc.stdout is not None
        lines = [proc.stdout.readline().strip()]  # printed once the port is bound
        if "--tls" in args:
            lines += [proc.stdout.readline().strip() for _ in range(2)]
        return lines

    yield start
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_standalone_mode_serves_until_terminated(standalone: Callable[..., list[str]]) -> None:
    (url,) = standalone("--seed-users", "3")
    assert url.startswith("http://127.0.0.1:") and url.endswith("/v1.0")
    r = httpx.get(
        f"{url}/users",
        params={"$select": "employeeId"},
        headers={"Authorization": "Bearer test-token"},
    )
    assert r.status_code == 200
    assert [u["employeeId"] for u in r.json()["value"]] == ["0", "1", "2"]


def test_a_round_trip_time_delays_every_answer(
    standalone: Callable[..., list[str]],
) -> None:
    (url,) = standalone("--seed-users", "1", "--round-trip", "0.2")
    headers = {"Authorization": "Bearer test-token"}
    with httpx.Client(headers=headers) as client:
        client.get(f"{url}/users")  # the connection is made
        started = time.perf_counter()
        assert client.get(f"{url}/users").status_code == 200
        assert time.perf_counter() - started >= 0.2


def test_standalone_mode_seeds_class_groups(standalone: Callable[..., list[str]]) -> None:
    (url,) = standalone("--seed-users", "5", "--seed-classes", "2")
    headers = {"Authorization": "Bearer test-token"}
    groups = httpx.get(f"{url}/groups", params={"$select": "mailNickname"}, headers=headers)
    found = {g["mailNickname"]: g["id"] for g in groups.json()["value"]}
    assert sorted(found) == ["prov-klas-0", "prov-klas-1", "prov-klas-2"]
    select = {"$select": "employeeId"}
    members = httpx.get(
        f"{url}/groups/{found['prov-klas-1']}/members", params=select, headers=headers
    )
    owners = httpx.get(
        f"{url}/groups/{found['prov-klas-1']}/owners", params=select, headers=headers
    )
    assert [m["employeeId"] for m in members.json()["value"]] == ["2", "3"]
    assert [o["employeeId"] for o in owners.json()["value"]] == ["2"]


def test_standalone_mode_with_tls_and_an_app(standalone: Callable[..., list[str]]) -> None:
    url, authority, ca_file = standalone(
        "--tls", "--tenant", TENANT, "--client-id", CLIENT_ID, "--client-secret", SECRET
    )
    assert url.startswith("https://127.0.0.1:")
    assert authority.startswith("authority https://127.0.0.1:")
    ca = ca_file.removeprefix("ca_file ")
    form = {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "scope": GRAPH_SCOPE,
    }
    with httpx.Client(verify=ssl.create_default_context(cafile=ca)) as c:
        r = c.post(f"{authority.split()[1]}/{TENANT}/oauth2/v2.0/token", data=form)
        assert r.status_code == 200
        token = r.json()["access_token"]
        r = c.get(f"{url}/users", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.json()["value"] == []
