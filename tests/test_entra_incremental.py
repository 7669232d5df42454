"""The incremental read of Entra ID (Graph delta) equals a full read.

Against the project's Graph server (users and groups delta, ``members@delta``, expired and reset
delta links) with the real msgraph-sdk and azure-identity, and a real state store as the base:
night 1 reads in full and keeps the read, then objects are changed by hand through the server's
HTTP API, and the next night's incremental read (ObservedState and the snapshot apply works
with) must equal a fresh full read; through the command line, the plan must equal the plan of
``--full-read``.
"""

# The Graph server, the clock and the command line are test_entra's fixtures, imported by name.
# ruff: noqa: F401, F811

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from provisioner import log
from provisioner.model import ObservedState
from provisioner.readcache import ReadCache
from provisioner.secret import Secret
from provisioner.state import StateStore
from provisioner.targets.entra import EntraId
from provisioner.targets.entra.snapshot import Snapshot
from provisioner.targets.entra_settings import EntraConfig
from tests.fakes.graph_server import GRAPH_ROOT, GraphServer
from tests.fakes.informat_server import InformatServer
from tests.test_entra import (
    CLIENT,
    SECRET,
    TENANT,
    Cli,
    Clock,
    cli,
    clock,
    entra_env,
    graph,
    graph_ca,
    users,
)

DOMAIN = "leerling.school.be"
ATTRIBUTES = {"displayName", "surname", "department", "userPrincipalName", "description"}
DAY = 24 * 3600.0


def config_for(graph: GraphServer, **options: Any) -> EntraConfig:
    settings: dict[str, Any] = {"domains": [DOMAIN], **options}
    return EntraConfig(
        tenant_id=TENANT,
        client_id=CLIENT,
        client_secret=Secret(SECRET, "test"),
        graph_url=graph.url,
        authority=graph.authority,
        ca_file=graph.ca_file,
        **settings,
    )


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "state.db"
    StateStore(path).close()
    return path


@pytest.fixture
def http(graph: GraphServer) -> Iterator[httpx.Client]:
    """Changes by hand, as an administrator makes them: through Graph's HTTP API."""
    with httpx.Client(
        base_url=graph.url,
        headers=graph.auth_headers,
        verify=ssl.create_default_context(cafile=str(graph.ca_file)),
        timeout=10,
    ) as client:
        yield client


def user(graph: GraphServer, n: int, domain: str = DOMAIN, **extra: Any) -> str:
    return str(
        graph.add_user(
            displayName=f"Leerling {n}",
            surname=f"Peeters{n}",
            userPrincipalName=f"ll{n}@{domain}",
            mailNickname=f"ll{n}",
            accountEnabled=True,
            employeeId=f"E{n}",
            department="1A",
            passwordProfile={"password": "Oud-Wacht-Woord-1"},
        )["id"]
    )


def ref(oid: str) -> dict[str, str]:
    return {"@odata.id": f"{GRAPH_ROOT}/directoryObjects/{oid}"}


def ok(response: httpx.Response) -> None:
    assert response.status_code < 300, response.text


class Nights:
    """One target per night (as a nightly run opens it), each with the state store as its base."""

    def __init__(self, graph: GraphServer, clock: Clock, store: Path, **options: Any) -> None:
        self.graph, self.clock, self.store, self.options = graph, clock, store, options

    def read(
        self, *, mappings: str = "m1", full: bool = False, **options: Any
    ) -> tuple[ObservedState, Snapshot]:
        """One night: the state store is the base (an incremental read when it may be)."""
        return self._read(
            options,
            lambda target: ReadCache(
                self.store, target.describe(), mappings=mappings, full_read_every=7, full_read=full
            ),
        )

    def full(self, **options: Any) -> tuple[ObservedState, Snapshot]:
        """A full read without a base (kept nowhere): what the incremental one must equal."""
        return self._read(options, lambda target: None)

    def _read(
        self, options: dict[str, Any], base: Callable[[EntraId], ReadCache | None]
    ) -> tuple[ObservedState, Snapshot]:
        config = config_for(self.graph, **{**self.options, **options})
        target = EntraId(config, sleep=self.clock.wait, clock=self.clock)
        try:
            state = target.read(ATTRIBUTES, base(target))
            assert target._snapshot is not None
            return state, target._snapshot
        finally:
            target.close()


def same_snapshot(a: Snapshot, b: Snapshot) -> None:
    assert a.users == b.users
    assert a.groups == b.groups
    assert a.members == b.members
    assert a.owners == b.owners
    assert a.anchors._by_anchor == b.anchors._by_anchor
    assert a.anchors._ambiguous == b.anchors._ambiguous


class Reads(logging.Handler):
    """The one line each read logs ("read Entra ID in full: why", "… incrementally: …"),
    whatever the command line set up for the log before."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("read Entra ID"):
            self.lines.append(record.getMessage())

    def clear(self) -> None:
        self.lines.clear()


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[Reads]:
    handler = Reads()
    setup = log.setup

    def listened(*args: Any, **kwargs: Any) -> None:
        setup(*args, **kwargs)  # the command line's own set-up, then this handler again
        log.LOG.addHandler(handler)
        log.LOG.setLevel(logging.INFO)

    monkeypatch.setattr(log, "setup", listened)
    level = log.LOG.level
    log.LOG.setLevel(logging.INFO)  # setLevel, not the attribute: the logger caches its level
    log.LOG.addHandler(handler)
    yield handler
    log.LOG.removeHandler(handler)
    log.LOG.setLevel(level)


def read_kinds(reads: Reads) -> list[str]:
    return list(reads.lines)


@pytest.fixture
def nights(graph: GraphServer, clock: Clock, store: Path) -> Nights:
    return Nights(graph, clock, store)


def test_changes_by_hand_between_nights_are_read_as_a_full_read_would(
    graph: GraphServer, http: httpx.Client, nights: Nights, reads: Reads
) -> None:
    graph.delta_members_per_page = 3  # a group's members@delta comes over several pages
    ids = [user(graph, n) for n in range(12)]
    outsider = user(graph, 50, domain="andere.school.be")
    teacher = user(graph, 60)
    klas = graph.add_group(
        displayName="Klas 1A", mailNickname="prov-klas-1A", members=ids[:8], owners=[teacher]
    )["id"]
    doomed = graph.add_group(displayName="Klas 1B", mailNickname="prov-klas-1B", members=ids[8:])
    renamed = graph.add_group(
        displayName="Klas 1C", mailNickname="prov-klas-1C", members=ids[:2], owners=[ids[0]]
    )
    foreign = graph.add_group(
        displayName="Sport", mailNickname="sportclub", members=ids[3:6], owners=[teacher]
    )
    unsecure = graph.add_group(displayName="Post", mailNickname="prov-post", members=ids[:1])
    graph.groups[unsecure["id"]]["securityEnabled"] = False

    first, _ = nights.read()
    assert read_kinds(reads) == ["read Entra ID in full: no earlier read is kept"]
    assert {a.anchor for a in first.accounts} == {f"E{n}" for n in [*range(12), 60]}

    # -- night 2: changes by hand ---------------------------------------------------------------
    ok(http.patch(f"/users/{ids[0]}", json={"department": "2B", "surname": "Janssens"}))
    ok(http.patch(f"/users/{ids[1]}", json={"userPrincipalName": f"ll1@{'andere.school.be'}"}))
    ok(http.patch(f"/users/{outsider}", json={"userPrincipalName": f"ll50@{DOMAIN}"}))
    ok(http.delete(f"/users/{ids[2]}"))
    made = http.post(
        "/users",
        json={
            "accountEnabled": True,
            "displayName": "Nieuw",
            "mailNickname": "nieuw",
            "userPrincipalName": f"nieuw@{DOMAIN}",
            "employeeId": "E99",
            "passwordProfile": {"password": "Nieuw-Wacht-Woord-1"},
        },
    )
    ok(made)
    ok(http.delete(f"/groups/{doomed['id']}"))
    ok(http.patch(f"/groups/{renamed['id']}", json={"mailNickname": "klas-1C-oud"}))
    ok(http.patch(f"/groups/{foreign['id']}", json={"mailNickname": "prov-sport"}))
    ok(http.post(f"/groups/{klas}/members/$ref", json=ref(ids[9])))
    ok(http.post(f"/groups/{klas}/members/$ref", json=ref(outsider)))
    ok(http.delete(f"/groups/{klas}/members/{ids[3]}/$ref"))
    ok(http.post(f"/groups/{klas}/owners/$ref", json=ref(ids[4])))
    ok(http.delete(f"/groups/{klas}/owners/{teacher}/$ref"))
    ok(http.patch(f"/groups/{klas}", json={"description": "archived 2026-12-01 by provisioner"}))
    ok(http.patch(f"/groups/{unsecure['id']}", json={"displayName": "Post 2"}))

    reads.clear()
    incremental, kept = nights.read()
    assert read_kinds(reads) == ["read Entra ID incrementally: 5 changed, 4 gone"]
    full, fresh = nights.full()
    assert incremental == full
    same_snapshot(kept, fresh)
    accounts = {a.anchor: a for a in incremental.accounts}
    assert "E1" not in accounts and "E2" not in accounts  # moved out, deleted
    assert accounts["E50"].attributes["userPrincipalName"] == f"ll50@{DOMAIN}"  # moved in
    assert accounts["E99"].username == "nieuw"
    assert accounts["E0"].attributes["department"] == "2B"
    groups = {g.key: g for g in incremental.groups}
    assert set(groups) == {"klas-1A", "sport"}
    assert groups["klas-1A"].owners == {"E4"} and groups["klas-1A"].archived == "2026-12-01"
    assert groups["klas-1A"].members == {"E0", "E50", "E9", *(f"E{n}" for n in range(4, 8))}
    assert groups["sport"].members == {"E3", "E4", "E5"} and groups["sport"].owners == {"E60"}

    # -- night 3: the incremental read builds on the incremental one ------------------------------
    ok(http.patch(f"/groups/{renamed['id']}", json={"mailNickname": "prov-klas-1C"}))
    ok(http.patch(f"/users/{ids[1]}", json={"userPrincipalName": f"ll1@{DOMAIN}"}))
    ok(http.delete(f"/groups/{klas}/members/{outsider}/$ref"))
    ok(http.delete(f"/users/{ids[4]}"))  # a member and an owner: gone from both
    ok(http.patch(f"/groups/{unsecure['id']}", json={"securityEnabled": True}))  # comes in
    ok(http.patch(f"/groups/{foreign['id']}", json={"securityEnabled": False}))  # goes out
    reads.clear()
    third, kept = nights.read()
    assert read_kinds(reads)[0].startswith("read Entra ID incrementally")
    full, fresh = nights.full()
    assert third == full
    same_snapshot(kept, fresh)
    assert {g.key for g in third.groups} == {"klas-1A", "klas-1C", "post"}
    assert {g.key: g.members for g in third.groups}["post"] == {"E0"}

    # -- and nothing changed: nothing to fold, the same read ------------------------------------
    reads.clear()
    quiet, kept = nights.read()
    assert read_kinds(reads) == ["read Entra ID incrementally: 0 changed, 0 gone"]
    assert quiet == full
    same_snapshot(kept, fresh)


def test_an_expired_or_reset_delta_link_means_a_full_read(
    graph: GraphServer,
    http: httpx.Client,
    nights: Nights,
    clock: Clock,
    reads: Reads,
) -> None:
    ids = [user(graph, n) for n in range(3)]
    nights.read()
    ok(http.patch(f"/users/{ids[0]}", json={"surname": "Later"}))
    clock.t += 8 * DAY  # Graph keeps a directory delta link seven days
    reads.clear()
    state, kept = nights.read()
    (line,) = read_kinds(reads)
    assert line.startswith("read Entra ID in full: Graph refused the delta link of the last read")
    assert "syncStateNotFound" in line
    full, fresh = nights.full()
    assert state == full
    same_snapshot(kept, fresh)

    # the full read kept new delta links: the next night is incremental again
    reads.clear()
    nights.read()
    assert read_kinds(reads)[0].startswith("read Entra ID incrementally")

    graph.reset_delta()  # 410 Gone: Graph lost the sync state
    ok(http.patch(f"/users/{ids[1]}", json={"surname": "Weer"}))
    reads.clear()
    state, _ = nights.read()
    (line,) = read_kinds(reads)
    assert line.startswith("read Entra ID in full: Graph refused") and "410" in line
    assert state == nights.full()[0]


def test_another_scope_or_other_mappings_mean_a_full_read(
    graph: GraphServer, nights: Nights, reads: Reads
) -> None:
    user(graph, 1)
    user(graph, 2, domain="school.be")
    nights.read()
    reads.clear()
    nights.read(mappings="m2")
    assert read_kinds(reads) == [
        "read Entra ID in full: the mappings or the managed scope changed since the last read"
    ]
    reads.clear()
    wider, _ = nights.read(mappings="m2", domains=[DOMAIN, "school.be"])
    # the domains name the target (describe): its kept read is another one's
    assert read_kinds(reads) == ["read Entra ID in full: no earlier read is kept"]
    assert {a.anchor for a in wider.accounts} == {"E1", "E2"}
    reads.clear()
    nights.read(mappings="m2", domains=[DOMAIN, "school.be"], group_prefix="klas-")
    assert read_kinds(reads) == [
        "read Entra ID in full: the mappings or the managed scope changed since the last read"
    ]
    reads.clear()
    nights.read(mappings="m2", domains=[DOMAIN, "school.be"], group_prefix="klas-", full=True)
    assert read_kinds(reads) == ["read Entra ID in full: a full read was asked for"]


# -- through the command line: the plan of an incremental read equals the full read's -----------


def plan_of(cli: Cli, config: Path, *extra: str) -> list[dict[str, Any]]:
    code = cli(["plan", "--config", str(config), "--json", *extra])
    data = json.loads(cli.capsys.readouterr().out)
    assert code == (2 if data["changes"] else 0)
    return data["changes"]


def test_the_incremental_plan_equals_the_full_read_plan_and_sees_the_runs_own_writes(
    graph: GraphServer,
    http: httpx.Client,
    informat_server: InformatServer,
    entra_env,
    cli: Cli,
    reads: Reads,
) -> None:
    config = entra_env(informat_server.url)
    cli.apply(config)  # night 1: everything made; the state store is there from now on
    cli.apply(config)  # night 2: nothing to do; its full read is kept (a plan keeps none)
    reads.clear()
    assert plan_of(cli, config) == []
    assert [r for r in read_kinds(reads) if "incrementally" in r]
    managed = users(graph)
    anchors = sorted(managed)
    klassen = sorted(
        (g for g in graph.groups.values() if g["mailNickname"].startswith("prov-klas-")),
        key=lambda g: g["mailNickname"],
    )
    # the first two are renamed out of the prefix and deleted below
    owned = next(g for g in klassen[2:] if graph.owners[g["id"]])
    big = max(klassen[2:], key=lambda g: len(graph.members[g["id"]]))

    # by hand, in the tenant
    ok(http.patch(f"/users/{managed[anchors[0]]['id']}", json={"surname": "Anders"}))
    ok(http.patch(f"/users/{managed[anchors[1]]['id']}", json={"accountEnabled": False}))
    ok(http.delete(f"/users/{managed[anchors[2]]['id']}"))
    moved = managed[anchors[3]]
    ok(http.patch(f"/users/{moved['id']}", json={"userPrincipalName": "weg@elders.be"}))
    gone_member = graph.members[big["id"]][0]
    stranger = next(u for u in managed.values() if u["id"] not in graph.members[big["id"]])
    ok(http.delete(f"/groups/{big['id']}/members/{gone_member}/$ref"))
    ok(http.post(f"/groups/{big['id']}/members/$ref", json=ref(stranger["id"])))
    ok(http.post(f"/groups/{owned['id']}/owners/$ref", json=ref(managed[anchors[5]]["id"])))
    ok(http.patch(f"/groups/{klassen[0]['id']}", json={"mailNickname": "oude-klas"}))
    ok(http.delete(f"/groups/{klassen[1]['id']}"))

    reads.clear()
    incremental = plan_of(cli, config)
    assert [r for r in read_kinds(reads) if "incrementally" in r]
    reads.clear()
    full = plan_of(cli, config, "--full-read")
    assert read_kinds(reads) == ["read Entra ID in full: a full read was asked for"]
    assert incremental == full
    actions = {c["action"] for c in full}
    assert {"create", "update", "enable", "add_member", "remove_member", "remove_owner"} <= (
        actions
    ) and "create_group" in actions

    # the run's own writes are seen by the next (incremental) read: nothing left to do
    cli.apply(config)
    reads.clear()
    assert plan_of(cli, config) == []
    assert [r for r in read_kinds(reads) if "incrementally" in r]
    assert plan_of(cli, config, "--full-read") == []
