"""Teams on the project's Graph server, checked with raw httpx: what the Entra target's class
teams are tested against (``tests/fakes/graph_teams.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.graph_server import GRAPH_ROOT, GraphServer


@pytest.fixture
def graph() -> Iterator[GraphServer]:
    with GraphServer() as server:
        server.clock = Clock()
        yield server


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def client(graph: GraphServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=graph.url, headers=graph.auth_headers, timeout=10) as c:
        yield c


def unified(client: httpx.Client, graph: GraphServer, *, owner: bool = True) -> str:
    """A Microsoft 365 group (with an owner): its id."""
    body: dict[str, Any] = {
        "displayName": "Klas 1A",
        "mailEnabled": True,
        "mailNickname": "klas1a",
        "securityEnabled": False,
        "groupTypes": ["Unified"],
    }
    if owner:
        (uid,) = graph.seed_users(1)
        body["owners@odata.bind"] = [f"{GRAPH_ROOT}/users/{uid}"]
    reply = client.post("/groups", json=body)
    assert reply.status_code == 201, reply.text
    return reply.json()["id"]


def team_body(gid: str, template: str = "educationClass") -> dict[str, str]:
    return {
        "template@odata.bind": f"{GRAPH_ROOT}/teamsTemplates('{template}')",
        "group@odata.bind": f"{GRAPH_ROOT}/groups('{gid}')",
    }


def test_a_team_is_made_asynchronously_and_its_operation_moves_on_with_each_look(graph, client):
    gid = unified(client, graph)
    assert client.get(f"/teams/{gid}").status_code == 404
    reply = client.post("/teams", json=team_body(gid))
    assert reply.status_code == 202 and not reply.content
    location = reply.headers["Location"]
    assert location.startswith(f"/teams('{gid}')/operations('")
    assert reply.headers["Content-Location"] == f"/teams('{gid}')"
    op = location.split("operations('")[1].rstrip("')")
    assert client.get(f"/teams/{gid}").status_code == 404  # not before the operation is done
    looks = [client.get(f"/teams/{gid}/operations/{op}").json() for _ in range(3)]
    assert [look["status"] for look in looks] == ["inProgress", "succeeded", "succeeded"]
    assert looks[0]["operationType"] == "createTeam" and looks[0]["targetResourceId"] == gid
    team = client.get(f"/teams/{gid}").json()
    assert team["isArchived"] is False and team["specialization"] == "educationClass"
    groups = client.get("/groups", params={"$select": "id,resourceProvisioningOptions"})
    assert groups.json()["value"] == [{"id": gid, "resourceProvisioningOptions": ["Team"]}]
    again = client.post("/teams", json=team_body(gid))
    assert again.status_code == 409


def test_teams_sit_only_on_owned_microsoft_365_groups(graph, client):
    security = client.post(
        "/groups",
        json={
            "displayName": "S",
            "mailEnabled": False,
            "mailNickname": "s",
            "securityEnabled": True,
            "groupTypes": [],
        },
    ).json()["id"]
    reply = client.post("/teams", json=team_body(security))
    assert reply.status_code == 400 and "Microsoft 365 group" in reply.json()["error"]["message"]
    ownerless = unified(client, graph, owner=False)
    reply = client.post("/teams", json=team_body(ownerless))
    assert reply.status_code == 400 and "at least one owner" in reply.json()["error"]["message"]
    reply = client.post("/teams", json=team_body(ownerless, "nonsense"))
    assert reply.status_code == 400


def test_a_new_group_is_unknown_to_teams_for_a_while(graph, client):
    graph.teams.not_yet_seconds = 15.0
    gid = unified(client, graph)
    assert client.post("/teams", json=team_body(gid)).status_code == 404
    graph.clock.t += 15
    assert client.post("/teams", json=team_body(gid)).status_code == 202


def test_put_team_makes_one_at_once_and_archive_and_unarchive_are_operations(graph, client):
    gid = unified(client, graph)
    reply = client.put(f"/groups/{gid}/team", json={})
    assert reply.status_code == 201 and reply.json()["id"] == gid
    for verb, archived in (("archive", True), ("unarchive", False)):
        reply = client.post(f"/teams/{gid}/{verb}")
        assert reply.status_code == 202
        path = reply.headers["Location"].replace("('", "/").replace("')", "")
        assert client.get(path).json()["status"] == "inProgress"
        assert client.get(path).json()["status"] == "succeeded"
        assert client.get(f"/teams/{gid}").json()["isArchived"] is archived


def test_a_failing_operation_says_so_and_makes_no_team(graph, client):
    gid = unified(client, graph)
    graph.teams.fail_for = {"klas1a"}
    path = client.post("/teams", json=team_body(gid)).headers["Location"]
    path = path.replace("('", "/").replace("')", "")
    client.get(path)
    failed = client.get(path).json()
    assert failed["status"] == "failed" and failed["error"]["message"]
    assert client.get(f"/teams/{gid}").status_code == 404


def test_teams_throttles_beyond_its_own_quota_with_a_retry_after(graph, client):
    graph.teams.quota = (2, 10.0)
    gid = unified(client, graph)
    statuses = [client.get(f"/teams/{gid}").status_code for _ in range(2)]
    throttled = client.get(f"/teams/{gid}")
    assert statuses == [404, 404] and throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "10"
    assert graph.teams.throttled == 1 and graph.teams.arrivals[-1] == (100.0, 10.0)
    graph.clock.t += 10
    assert client.get(f"/teams/{gid}").status_code == 404  # the window has passed
    # inside $batch too
    graph.clock.t += 10
    batch = client.post(
        "/$batch",
        json={
            "requests": [
                {"id": str(i), "method": "GET", "url": f"/teams/{gid}"} for i in range(1, 4)
            ]
        },
    ).json()
    assert sorted(r["status"] for r in batch["responses"]) == [404, 404, 429]
