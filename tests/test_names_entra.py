"""Names in Entra ID: renames that carry the UPN and mail along, the check of wanted names
against the whole tenant, and users outside the managed domains that carry an anchor. The real
msgraph-sdk against the project's Graph server (tests/fakes/graph_server.py); every test reads
the server afterwards."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from provisioner import log
from provisioner.plan.model import Action, Change, Kind
from provisioner.secret import Secret
from provisioner.targets.entra import EntraId
from provisioner.targets.entra.names import IN_VALUES
from provisioner.targets.entra_settings import EntraConfig
from tests import test_entra
from tests.fakes.graph_server import GraphServer
from tests.test_entra import CLIENT, SECRET, TENANT

graph_ca, clock, graph = test_entra.graph_ca, test_entra.clock, test_entra.graph

DOMAINS = ["leerling.school.be", "school.be"]


@pytest.fixture
def target(graph: GraphServer, clock) -> Iterator[Callable[[], EntraId]]:
    """A maker of targets (a test may want a second run), all closed afterwards."""
    config = EntraConfig(
        tenant_id=TENANT,
        client_id=CLIENT,
        domains=DOMAINS,
        client_secret=Secret(SECRET, "test"),
        graph_url=graph.url,
        authority=graph.authority,
        ca_file=graph.ca_file,
    )
    made: list[EntraId] = []

    def make() -> EntraId:
        made.append(EntraId(config, sleep=clock.wait, clock=clock))
        return made[-1]

    yield make
    for one in made:
        one.close()


def person(graph: GraphServer, upn: str, anchor: str | None = None, **props: Any) -> dict:
    nickname = upn.partition("@")[0]
    extra = {"employeeId": anchor} if anchor else {}
    return graph.add_user(
        displayName=nickname,
        userPrincipalName=upn,
        mailNickname=nickname,
        accountEnabled=True,
        passwordProfile={"password": "Oud-Wacht-Woord-1"},
        **extra,
        **props,
    )


def rename(user: dict, after: dict[str, str]) -> Change:
    """A RENAME as the planner makes it: the old values of what changes in before and in the
    precondition."""
    unique = [name for name in after if name != "username"]
    before = {"username": user["mailNickname"], **{name: user[name] for name in unique}}
    return Change(
        Action.RENAME,
        Kind.ACCOUNT,
        user["employeeId"],
        user["userPrincipalName"],
        before=before,
        after=after,
        precondition={
            "id": user["id"],
            "username": user["mailNickname"],
            "attributes": {name: user[name] for name in unique},
        },
    )


def applied(target: EntraId, changes: list[Change]) -> list[tuple[str, str]]:
    target.read({"userPrincipalName", "mail"})
    target.manage_attributes({"userPrincipalName", "mail", "displayName"}, set())
    return [(r.status, r.message) for r in target.apply_all(changes, {})]


def test_the_name_attributes_of_entra(target) -> None:
    assert target().name_attributes == {"userPrincipalName", "mailNickname", "mail"}


def test_a_rename_writes_the_nickname_upn_and_mail_and_reads_back(graph, target) -> None:
    lore = person(graph, "lore.dh@leerling.school.be", "1", mail="lore.dh@school.be")
    jan = person(graph, "jan.p@leerling.school.be", "2")  # a rename of the username alone
    results = applied(
        target(),
        [
            rename(
                lore,
                {
                    "username": "lore.dhondt",
                    "userPrincipalName": "lore.dhondt@leerling.school.be",
                    "mail": "lore.dhondt@school.be",
                },
            ),
            rename(jan, {"username": "jan.peeters"}),
        ],
    )
    assert results == [("applied", ""), ("applied", "")]
    stored = graph.users[lore["id"]]
    assert stored["mailNickname"] == "lore.dhondt"
    assert stored["userPrincipalName"] == "lore.dhondt@leerling.school.be"
    assert stored["mail"] == "lore.dhondt@school.be"
    # Without Exchange Online the old address is not kept as an alias (docs/entra.md says what
    # a school does about it).
    assert stored["proxyAddresses"] == ["SMTP:lore.dhondt@school.be"]
    # The username alone: the UPN follows it as before.
    assert graph.users[jan["id"]]["userPrincipalName"] == "jan.peeters@leerling.school.be"
    # A new run reads the new names back.
    observed = {a.anchor: a for a in target().read({"userPrincipalName", "mail"}).accounts}
    assert observed["1"].username == "lore.dhondt"
    assert observed["1"].target == "lore.dhondt@leerling.school.be"
    assert observed["1"].attributes["mail"] == "lore.dhondt@school.be"
    assert observed["2"].username == "jan.peeters"


def test_a_rename_whose_account_changed_since_the_plan_is_skipped(graph, target) -> None:
    lore = person(graph, "lore.dh@leerling.school.be", "1", mail="lore.dh@school.be")
    change = rename(
        lore,
        {
            "username": "lore.dhondt",
            "userPrincipalName": "lore.dhondt@leerling.school.be",
            "mail": "lore.dhondt@school.be",
        },
    )
    graph.users[lore["id"]]["mail"] = "lore@school.be"  # changed by hand after the plan
    (result,) = applied(target(), [change])
    assert result[0] == "skipped" and "mail" in result[1]
    stored = graph.users[lore["id"]]
    assert (stored["mailNickname"], stored["userPrincipalName"]) == (
        "lore.dh",
        "lore.dh@leerling.school.be",
    )


def test_a_rename_into_a_domain_outside_the_configuration_is_refused(graph, target) -> None:
    lore = person(graph, "lore.dh@leerling.school.be", "1")
    change = rename(
        lore, {"username": "lore.dhondt", "userPrincipalName": "lore.dhondt@andere-school.be"}
    )
    (result,) = applied(target(), [change])
    assert result[0] == "failed"
    assert "lore.dhondt@andere-school.be is outside the managed domains" in result[1]
    assert graph.users[lore["id"]]["mailNickname"] == "lore.dh"  # nothing written


def test_a_rename_to_an_address_held_elsewhere_fails_with_graphs_reason(graph, target) -> None:
    person(graph, "directie@andere-school.be", mail="lore.dhondt@school.be")
    lore = person(graph, "lore.dh@leerling.school.be", "1", mail="lore.dh@school.be")
    change = rename(lore, {"username": "lore.dhondt", "mail": "lore.dhondt@school.be"})
    (result,) = applied(target(), [change])
    assert result[0] == "failed" and "already used by another object" in result[1]
    assert graph.users[lore["id"]]["mail"] == "lore.dh@school.be"


def the_tenant(graph: GraphServer) -> dict[str, dict]:
    """A managed user and group, and the names held outside them."""
    graph.add_group(displayName="Klas 1A", mailNickname="prov-1a")
    return {
        # another domain, holding two addresses of the school's domain
        "directie": person(
            graph,
            "directie@andere-school.be",
            "424242",
            mail="secretariaat@school.be",
            proxyAddresses=["SMTP:secretariaat@school.be", "smtp:info@school.be", "X500:/o=x"],
        ),
        # a managed domain, but made by hand: no anchor
        "lore": person(graph, "lore.dhondt@school.be"),
        # managed: its own names are not "outside"
        "jan": person(graph, "jan.peeters@leerling.school.be", "1", mail="jan.peeters@school.be"),
        "oneil": person(graph, "an.o'neil@andere-school.be"),
        "team": graph.add_group(
            displayName="Leerkrachten",
            mailNickname="leerkrachten",
            mail="leerkrachten@school.be",
            proxyAddresses=["SMTP:leerkrachten@school.be"],
        ),
    }


def test_names_held_outside_the_managed_scope_are_found_across_the_tenant(graph, target) -> None:
    the_tenant(graph)
    free = [f"vrij.{i}@school.be" for i in range(40)] + [f"vrij.{i}" for i in range(40)]
    wanted = [
        "Secretariaat@school.be",
        "info@SCHOOL.be",
        "lore.dhondt@school.be",
        "lore.dhondt",
        "jan.peeters@school.be",
        "jan.peeters@leerling.school.be",
        "jan.peeters",
        "prov-1a",
        "leerkrachten@school.be",
        "leerkrachten",
        "an.o'neil@andere-school.be",
        "an.o'neil",
        *free,
    ]
    one = target()
    one.read({"mail"})
    graph.clear_requests()
    taken = one.taken_outside(wanted)
    assert taken == {
        "secretariaat@school.be": "directie@andere-school.be",
        "info@school.be": "directie@andere-school.be",
        "lore.dhondt@school.be": "lore.dhondt@school.be",
        "lore.dhondt": "lore.dhondt@school.be",
        "leerkrachten@school.be": "group Leerkrachten",
        "leerkrachten": "group Leerkrachten",
        "an.o'neil@andere-school.be": "an.o'neil@andere-school.be",
        "an.o'neil": "an.o'neil@andere-school.be",
    }
    queries = [r for r in graph.requests if r.method == "GET"]
    # Every query went in a $batch, as an advanced query, with at most 15 values.
    assert queries and all(r.batch_id is not None for r in queries)
    assert all(r.headers.get("consistencylevel") == "eventual" for r in queries)
    for request in queries:
        assert request.query["$filter"].count("'") <= 2 * IN_VALUES + 4  # two per value, 'x''y'
    batches = [r for r in graph.requests if r.path == "/$batch"]
    assert len(batches) == -(-len(queries) // 20)  # 20 to a round trip
    assert one.taken_outside([]) == {}


def test_a_tenant_without_those_names_answers_none(graph, target) -> None:
    the_tenant(graph)
    one = target()
    one.read(set())
    assert one.taken_outside(["nieuw.kind@school.be", "nieuw.kind", "o'hara"]) == {}


def test_users_outside_the_managed_domains_carrying_an_anchor(graph, target) -> None:
    tenant = the_tenant(graph)
    admin = person(graph, "it@andere-school.be", "777", department="ICT")
    graph.add_directory_role("Global Administrator", members=[admin["id"]])
    one = target()
    one.read({"department"})
    one.manage_attributes({"department", "displayName"}, set())
    found = {a.anchor: a for a in one.anchored_outside()}
    assert set(found) == {"424242", "777"}  # not the managed user, nor users without one
    directie = found["424242"]
    assert directie.id == tenant["directie"]["id"]
    assert directie.target == "directie@andere-school.be"
    assert (directie.username, directie.ou, directie.enabled) == ("directie", (), True)
    assert directie.protected is None
    assert found["777"].attributes == {"department": "ICT", "displayName": "it"}
    assert found["777"].protected == "a member of the directory role Global Administrator"


def test_without_the_right_to_read_roles_nobody_is_marked(graph, target) -> None:
    logged = io.StringIO()
    log.setup("text", verbose=False, stream=logged)
    admin = person(graph, "it@andere-school.be", "777")
    graph.add_directory_role("Global Administrator", members=[admin["id"]])
    graph.roles_readable = False
    one = target()
    one.read(set())
    (found,) = one.anchored_outside()
    assert found.anchor == "777" and found.protected is None
    assert "WARNING: adoption report: the directory roles cannot be read" in logged.getvalue()
    assert "grant the app RoleManagement.Read.Directory" in logged.getvalue()


# -- the Graph server's filters, as Graph answers them ---------------------------------------------


@pytest.fixture
def http(graph: GraphServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=graph.url, headers=graph.auth_headers, verify=graph.client_ssl_context()
    ) as client:
        yield client


def test_the_server_limits_a_filter_to_15_values_outside_an_advanced_query(graph, http) -> None:
    person(graph, "an@school.be")
    names = ",".join(f"'u{i}@school.be'" for i in range(15))
    basic = http.get("/users", params={"$filter": f"userPrincipalName in ({names},'an@school.be')"})
    assert basic.status_code == 400
    assert basic.json()["error"]["code"] == "Request_UnsupportedQuery"
    advanced = http.get(
        "/users",
        params={"$filter": f"userPrincipalName in ({names},'AN@school.be')", "$count": "true"},
        headers={"ConsistencyLevel": "eventual"},
    )
    assert advanced.status_code == 200
    assert [u["userPrincipalName"] for u in advanced.json()["value"]] == ["an@school.be"]


def test_the_server_filters_proxy_addresses_only_with_a_lambda(graph, http) -> None:
    person(graph, "o'hara@school.be", mail="o'hara@school.be")
    found = http.get(
        "/users",
        params={
            "$filter": "proxyAddresses/any(p:p eq 'smtp:x@school.be') or "
            "proxyAddresses/any(p:p eq 'smtp:O''Hara@school.be')"
        },
    )
    assert found.status_code == 200
    assert [u["userPrincipalName"] for u in found.json()["value"]] == ["o'hara@school.be"]
    plain = http.get("/users", params={"$filter": "proxyAddresses eq 'SMTP:o''hara@school.be'"})
    assert plain.status_code == 400
    wrong = http.get("/users", params={"$filter": "proxyAddresses/any(p:q eq 'x')"})
    assert wrong.status_code == 400


def test_thousands_of_names_are_checked_in_few_round_trips(graph, target) -> None:
    graph.seed_users(1500, domain="andere-school.be")  # user{i}@andere-school.be, nickname user{i}
    wanted = [f"user{i}@andere-school.be" for i in range(1500)]
    wanted += [f"user{i}" for i in range(0, 1500, 2)] + [f"nieuw{i}" for i in range(750)]
    one = target()
    one.read(set())
    graph.clear_requests()
    taken = one.taken_outside(wanted)
    expected = {f"user{i}@andere-school.be" for i in range(1500)}
    expected |= {f"user{i}" for i in range(0, 1500, 2)}
    assert set(taken) == expected
    assert taken["user7@andere-school.be"] == "user7@andere-school.be"
    assert taken["user8"] == "user8@andere-school.be"
    queries = [r for r in graph.requests if r.method == "GET"]
    # 1,500 addresses: 100 filters for each of upn, mail, proxyAddresses (users) and mail,
    # proxyAddresses (groups); 1,500 nicknames: 100 for users and 100 for groups.
    assert len(queries) == 700
    assert len([r for r in graph.requests if r.path == "/$batch"]) == 35
