"""The Graph server's licences (``subscribedSkus``, ``assignLicense`` with Graph's errors) and
Entra Connect's objects (``onPremisesSyncEnabled``), through plain HTTP."""

# The server and the HTTP client are test_fake_graph's fixtures, imported by name.
# ruff: noqa: F401, F811

from __future__ import annotations

import httpx

from tests.fakes.graph_server import (
    NO_UNITS,
    NO_USAGE_LOCATION,
    NOT_ASSIGNED,
    SYNCED_OBJECT,
    UNKNOWN_SKU,
)
from tests.test_fake_graph import client, error, graph, user_body


def assign(client: httpx.Client, uid: str, add: list[dict], remove: list[str]) -> httpx.Response:
    return client.post(
        f"/users/{uid}/assignLicense", json={"addLicenses": add, "removeLicenses": remove}
    )


def test_subscribed_skus_count_the_units_the_users_hold(graph, client):
    sku = graph.add_sku("STANDARDWOFFPACK_STUDENT", 2, ["EXCHANGE_S_STANDARD", "YAMMER_EDU"])
    yammer = graph.skus[sku]["servicePlans"][1]["servicePlanId"]
    first = client.post("/users", json=user_body(1, usageLocation="BE")).json()["id"]
    second = client.post("/users", json=user_body(2, usageLocation="BE")).json()["id"]
    third = client.post("/users", json=user_body(3, usageLocation="BE")).json()["id"]
    r = assign(client, first, [{"skuId": sku, "disabledPlans": [yammer]}], [])
    assert r.status_code == 200 and r.json()["id"] == first
    assert assign(client, second, [{"skuId": sku, "disabledPlans": []}], []).status_code == 200
    (listed,) = client.get("/subscribedSkus").json()["value"]
    assert listed["skuPartNumber"] == "STANDARDWOFFPACK_STUDENT"
    assert listed["prepaidUnits"]["enabled"] == 2 and listed["consumedUnits"] == 2
    assert [p["servicePlanName"] for p in listed["servicePlans"]] == [
        "EXCHANGE_S_STANDARD",
        "YAMMER_EDU",
    ]
    got = client.get(f"/users/{first}?$select=assignedLicenses").json()["assignedLicenses"]
    assert got == [{"skuId": sku, "disabledPlans": [yammer]}]
    # Changing the plans of a licence already held takes no new unit.
    assert assign(client, first, [{"skuId": sku, "disabledPlans": []}], []).status_code == 200
    # No unit left: Graph's 400, and nothing changed.
    r = assign(client, third, [{"skuId": sku, "disabledPlans": []}], [])
    assert r.status_code == 400
    assert error(r)["message"] == NO_UNITS.format(sku=sku)
    assert client.get(f"/users/{third}?$select=assignedLicenses").json()["assignedLicenses"] == []
    # Removing frees the unit; a deleted user's licence is freed too.
    assert assign(client, second, [], [sku]).status_code == 200
    assert assign(client, third, [{"skuId": sku, "disabledPlans": []}], []).status_code == 200
    assert client.delete(f"/users/{first}").status_code == 204
    assert client.get("/subscribedSkus").json()["value"][0]["consumedUnits"] == 1


def test_assign_license_refuses_what_graph_refuses(graph, client):
    sku = graph.add_sku("STANDARDWOFFPACK_FACULTY", 5)
    nowhere = client.post("/users", json=user_body(1)).json()["id"]
    r = assign(client, nowhere, [{"skuId": sku, "disabledPlans": []}], [])
    assert r.status_code == 400
    assert error(r) | {"innerError": None} == {
        "code": "Request_BadRequest",
        "message": NO_USAGE_LOCATION,
        "innerError": None,
    }
    uid = client.post("/users", json=user_body(2, usageLocation="BE")).json()["id"]
    unknown = "00000000-0000-0000-0000-000000000000"
    r = assign(client, uid, [{"skuId": unknown, "disabledPlans": []}], [])
    assert (r.status_code, error(r)["message"]) == (400, UNKNOWN_SKU.format(sku=unknown))
    r = assign(client, uid, [], [sku])
    assert (r.status_code, error(r)["message"]) == (400, NOT_ASSIGNED)
    r = client.post(f"/users/{uid}/assignLicense", json={"addLicenses": []})
    assert r.status_code == 400
    # assignedLicenses is read-only: only assignLicense changes it.
    r = client.patch(f"/users/{uid}", json={"assignedLicenses": []})
    assert r.status_code == 400 and "read-only" in error(r)["message"]


def test_synced_objects_are_readable_and_refuse_writes(graph, client):
    user = graph.add_user(**user_body(1), usageLocation="BE", onPremisesSyncEnabled=True)
    group = graph.add_group(displayName="Synced", onPremisesSyncEnabled=True)
    sku = graph.add_sku("STANDARDWOFFPACK_STUDENT", 5)
    got = client.get(f"/users/{user['id']}?$select=id,onPremisesSyncEnabled").json()
    assert got["onPremisesSyncEnabled"] is True
    listed = client.get("/groups?$select=id,onPremisesSyncEnabled").json()["value"]
    assert listed == [{"id": group["id"], "onPremisesSyncEnabled": True}]
    for r in (
        client.patch(f"/users/{user['id']}", json={"surname": "X"}),
        client.patch(f"/groups/{group['id']}", json={"description": "X"}),
        assign(client, user["id"], [{"skuId": sku, "disabledPlans": []}], []),
    ):
        assert (r.status_code, error(r)["message"]) == (400, SYNCED_OBJECT)
    plain = client.post("/users", json=user_body(2)).json()["id"]
    assert (
        client.get(f"/users/{plain}?$select=onPremisesSyncEnabled").json()["onPremisesSyncEnabled"]
        is None
    )
