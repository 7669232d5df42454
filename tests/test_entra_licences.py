"""Licences as mapped state, Entra Connect's objects left alone, and national clouds: the real
msgraph-sdk and azure-identity against the project's Graph server (``subscribedSkus``,
``assignLicense`` with Graph's errors, ``onPremisesSyncEnabled`` objects, the token scope)."""

# The Graph server, the clock and the command line are test_entra's fixtures, imported by name.
# ruff: noqa: F401, F811

from __future__ import annotations

import copy
import datetime as dt
import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from provisioner.cli import main
from provisioner.errors import ConfigError
from provisioner.licences import licence_text, licences_added, parse_licences
from provisioner.mapping.engine import compile_mappings
from provisioner.mapping.spec import load_mappings
from provisioner.model import ObservedAccount, ObservedState
from provisioner.plan.lifecycle import LifecycleConfig, apply_lifecycle
from provisioner.plan.model import Action, Change, Kind, Precondition
from provisioner.secret import Secret
from provisioner.sources.informat.operations import OPERATIONS
from provisioner.targets.ad import ActiveDirectory
from provisioner.targets.base import TargetError
from provisioner.targets.entra import EntraId
from provisioner.targets.entra_settings import EntraConfig, cloud_of
from tests.conftest import REFERENCE_DAY
from tests.fakes.graph_server import GraphServer
from tests.fakes.informat_server import InformatServer
from tests.test_entra import (
    CLIENT,
    ROOT,
    SECRET,
    TENANT,
    Cli,
    cli,
    clock,
    entra_env,
    graph,
    graph_ca,
    users,
)

STUDENT, FACULTY, OTHER = "STANDARDWOFFPACK_STUDENT", "STANDARDWOFFPACK_FACULTY", "POWER_BI_PRO"
A3 = "M365EDU_A3_FACULTY"
PLANS = ["EXCHANGE_S_STANDARD", "YAMMER_EDU", "TEAMS1"]
PUPIL_LICENCE = f"{STUDENT} (without YAMMER_EDU)"


def licensed_mappings(tmp_path: Path) -> Path:
    """The Entra example mappings with A1 for pupils (without Yammer) and for staff."""
    mappings = tmp_path / "mappings"
    shutil.copytree(ROOT / "examples/entra/mappings", mappings)
    for name, block in (
        (
            "pupils.yaml",
            f"    licences:\n      - sku: {STUDENT}\n        disabled_plans: [YAMMER_EDU]\n",
        ),
        ("staff.yaml", f"    licences:\n      - {{sku: {FACULTY}}}\n"),
    ):
        path = mappings / name
        path.write_text(path.read_text() + block)
    return mappings


def sku_ids(graph: GraphServer) -> dict[str, str]:
    return {sku["skuPartNumber"]: sku_id for sku_id, sku in graph.skus.items()}


def plan_ids(graph: GraphServer) -> dict[str, str]:
    return {
        plan["servicePlanName"]: plan["servicePlanId"]
        for sku in graph.skus.values()
        for plan in sku["servicePlans"]
    }


def writes(graph: GraphServer) -> list:
    """Every write the server saw: on its own or inside a ``$batch``."""
    return [r for r in graph.requests if r.method != "GET" and not r.path.endswith("$batch")]


def test_a_first_night_gives_every_pupil_and_staff_member_their_licence(
    graph, informat_server, synthetic, entra_env, tmp_path, cli
):
    graph.add_sku(STUDENT, 5000, PLANS)
    graph.add_sku(FACULTY, 500, PLANS)
    graph.add_sku(OTHER, 10)
    config = entra_env(informat_server.url, mappings=licensed_mappings(tmp_path))
    plan = cli.plan(config)
    creates = [c for c in plan["changes"] if c["action"] == "create"]
    pupils = [c for c in creates if c["key"].startswith("lln-")]
    staff = [c for c in creates if c["key"].startswith("pers-")]
    assert pupils and staff
    assert {c["after"]["licences"] for c in pupils} == {PUPIL_LICENCE}
    assert {c["after"]["licences"] for c in staff} == {FACULTY}

    cli.apply(config)
    ids, plan_id = sku_ids(graph), plan_ids(graph)
    made = users(graph)
    for change in pupils:
        assert made[change["key"]]["assignedLicenses"] == [
            {"skuId": ids[STUDENT], "disabledPlans": [plan_id["YAMMER_EDU"]]}
        ]
    for change in staff:
        assert made[change["key"]]["assignedLicenses"] == [
            {"skuId": ids[FACULTY], "disabledPlans": []}
        ]
    assert graph.consumed(ids[STUDENT]) == len(pupils)
    assert graph.consumed(ids[OTHER]) == 0
    assert cli.plan(config)["changes"] == []  # what was given reads back the same

    # A licence of a SKU no mapping names (given by hand) is not the connector's: left alone.
    someone = made[pupils[0]["key"]]
    someone["assignedLicenses"].append({"skuId": ids[OTHER], "disabledPlans": []})
    assert cli.plan(config)["changes"] == []
    # A service plan the mapping now leaves off: an update of the licence, with its why.
    staff_yaml = config.parent / "mappings/staff.yaml"
    staff_yaml.write_text(
        staff_yaml.read_text().replace(
            f"{{sku: {FACULTY}}}", f"{{sku: {FACULTY}, disabled_plans: [TEAMS1]}}"
        )
    )
    code = cli(["apply", "--config", str(config), "--json", "--approve", "updates"])
    result = json.loads(cli.capsys.readouterr().out)
    assert code == 0
    updates = [c for c in result["changes"] if c["action"] == "update"]
    assert {c["key"] for c in updates} == {c["key"] for c in staff}
    assert updates[0]["before"] == {"licences": FACULTY}
    assert updates[0]["after"] == {"licences": f"{FACULTY} (without TEAMS1)"}
    assert any(
        why.startswith(f"licences: {FACULTY} (without TEAMS1) (") for why in updates[0]["why"]
    )
    assert users(graph)[staff[0]["key"]]["assignedLicenses"] == [
        {"skuId": ids[FACULTY], "disabledPlans": [plan_id["TEAMS1"]]}
    ]
    assert graph.consumed(ids[FACULTY]) == len(staff)  # the same licences, not new ones
    assert cli.plan(config)["changes"] == []

    # From A1 to another SKU: the retired one is taken away in the same update.
    staff_yaml.write_text(staff_yaml.read_text().replace(f"sku: {FACULTY}", f"sku: {A3}"))
    graph.add_sku(A3, len(staff), PLANS)
    retired = entra_env(
        informat_server.url,
        f"    retired_licences: [{FACULTY}]\n",
        mappings=config.parent / "mappings",
    )
    plan = cli.plan(retired)
    (update,) = {c["before"]["licences"] for c in plan["changes"]}
    assert update == f"{FACULTY} (without TEAMS1)"
    assert {c["after"]["licences"] for c in plan["changes"]} == {f"{A3} (without TEAMS1)"}
    assert cli(["apply", "--config", str(retired), "--approve", "updates"]) == 0
    assert "failed 0" in cli.capsys.readouterr().out
    assert graph.consumed(ids[FACULTY]) == 0
    assert graph.consumed(sku_ids(graph)[A3]) == len(staff)
    assert cli.plan(retired)["changes"] == []


def test_a_tenant_short_of_licences_blocks_the_plan_before_any_write(
    graph, informat_server, synthetic, entra_env, tmp_path, cli, capsys
):
    config = entra_env(informat_server.url, mappings=licensed_mappings(tmp_path))
    graph.add_sku(FACULTY, 500, PLANS)
    student = graph.add_sku(STUDENT, 10, PLANS)
    # Two of the ten units are taken already (by users outside the managed domains).
    for n in range(2):
        graph.add_user(
            userPrincipalName=f"other{n}@elders.example",
            displayName="other",
            mailNickname=f"other{n}",
            accountEnabled=True,
            passwordProfile={"password": "x"},
            assignedLicenses=[{"skuId": student, "disabledPlans": []}],
        )
    plan = cli.plan(config)
    wanted = sum(1 for c in plan["changes"] if c["action"] == "create" and "lln-" in c["key"])
    (block,) = [b for b in plan["header"]["blocked"] if b.startswith("licences")]
    assert f"gives {wanted} account(s) a {STUDENT} licence" in block
    assert f"has 8 free: {wanted - 8} short" in block
    graph.clear_requests()
    assert cli(["apply", "--config", str(config)]) == 2
    assert f"{wanted - 8} short" in capsys.readouterr().out
    assert writes(graph) == []

    # Enough units when the plan is made, fewer when it is applied: refused before any write.
    graph.skus[student]["prepaidUnits"]["enabled"] = wanted + 2
    saved = tmp_path / "plan.json"
    assert cli(["plan", "--config", str(config), "--out", str(saved)]) == 2
    capsys.readouterr()
    graph.skus[student]["prepaidUnits"]["enabled"] = wanted
    graph.clear_requests()
    assert cli(["apply", "--config", str(config), str(saved)]) == 1
    assert "2 short" in capsys.readouterr().err
    assert writes(graph) == []


def test_a_leaver_keeps_the_licence_while_disabled_and_loses_it_after_the_grace(
    graph, informat_server, synthetic, entra_env, tmp_path, cli
):
    graph.add_sku(STUDENT, 5000, PLANS)
    graph.add_sku(FACULTY, 500, PLANS)
    ids = sku_ids(graph)
    mappings = licensed_mappings(tmp_path)
    grace = "lifecycle:\n  licence_grace_days: 30\n  delete_after_days: {pupils: 90}\n"
    cli.apply(entra_env(informat_server.url, grace, mappings))
    key = synthetic.notable["diacritics"]
    leaver = f"lln-{key}"
    without = copy.deepcopy(synthetic)
    without.rows["Lln"] = [r for r in synthetic.rows["Lln"] if r["p_persoon"] != key]
    with InformatServer(without, today=REFERENCE_DAY) as server:
        gone = entra_env(server.url, grace, mappings)
        cli.apply(gone)  # disabled tonight: the licence stays
        assert users(graph)[leaver]["accountEnabled"] is False
        assert users(graph)[leaver]["assignedLicenses"][0]["skuId"] == ids[STUDENT]
        assert cli.plan(gone)["changes"] == []

        db = sqlite3.connect(gone.parent / "state.db")
        db.execute(
            "UPDATE leavers SET since = date(since, '-31 days'), disabled = date(disabled, '-31 days')"
        )
        db.commit()
        db.close()
        plan = cli.plan(gone)
        (change,) = plan["changes"]
        assert (change["action"], change["key"]) == ("update", leaver)
        assert change["after"] == {"licences": ""}
        assert "licence_grace_days" in change["why"][0]
        cli.apply(gone)
        assert users(graph)[leaver]["assignedLicenses"] == []
        assert users(graph)[leaver]["accountEnabled"] is False
        assert cli.plan(gone)["changes"] == []


def test_licence_problems_are_clear_per_person_or_for_the_configuration(
    graph, informat_server, entra_env, tmp_path, cli, capsys
):
    config = entra_env(informat_server.url, mappings=licensed_mappings(tmp_path))
    # Without Organization.Read.All the SKUs cannot be read: the plan stops, saying why.
    graph.skus_readable = False
    assert cli(["plan", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "403 Authorization_RequestDenied" in err and "Organization.Read.All" in err
    graph.skus_readable = True
    # A part number the tenant does not have: the plan stops and names what it has.
    graph.add_sku(STUDENT, 5000, ["EXCHANGE_S_STANDARD", "TEAMS1"])
    assert cli(["plan", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert f"the tenant has no licence {FACULTY} (it has: {STUDENT})" in err
    assert f"{STUDENT} has no service plan YAMMER_EDU" in err
    graph.skus.clear()
    graph.add_sku(STUDENT, 5000, PLANS)
    graph.add_sku(FACULTY, 500, PLANS)
    # An account made before the connector, without a usageLocation: adopted, but without
    # the licence, and that person's result says why; everyone else gets theirs.
    plan = cli.plan(config)
    pupil = next(c for c in plan["changes"] if c["action"] == "create" and "lln-" in c["key"])
    upn = pupil["after"]["userPrincipalName"]
    graph.add_user(
        userPrincipalName=upn,
        displayName="made by hand",
        mailNickname=pupil["after"]["username"],
        accountEnabled=True,
        passwordProfile={"password": "x"},
    )
    code = cli(["apply", "--config", str(config), "--json"])
    result = json.loads(capsys.readouterr().out)
    failed = [r for r in result["results"] if r["status"] == "failed"]
    assert code == 1
    assert [(r["key"] if "key" in r else r["change"]["key"]) for r in failed] == [pupil["key"]]
    assert "has no usageLocation" in json.dumps(failed)
    assert "usageLocation: BE" in json.dumps(failed)
    applied = sum(r["status"] == "applied" for r in result["results"])
    assert applied > 100


def test_entra_connect_objects_are_never_leavers_adopted_or_written(
    graph, informat_server, entra_env, tmp_path, cli, capsys
):
    config = entra_env(informat_server.url)
    first = cli.plan(config)
    pupil = next(c for c in first["changes"] if c["action"] == "create" and "lln-" in c["key"])
    synced = [
        # an account of a person no longer in the source: would be a leaver
        graph.add_user(
            userPrincipalName="oud.leerling@leerling.school.be",
            displayName="Oud",
            mailNickname="oud.leerling",
            employeeId="lln-999999",
            accountEnabled=True,
            passwordProfile={"password": "x"},
            onPremisesSyncEnabled=True,
        ),
        # a pupil's own UPN, no anchor: would be adopted
        graph.add_user(
            userPrincipalName=pupil["after"]["userPrincipalName"],
            displayName="Synced",
            mailNickname="synced.pupil",
            accountEnabled=True,
            passwordProfile={"password": "x"},
            onPremisesSyncEnabled=True,
        ),
        # a group with the connector's prefix no mapping makes: would be archived
        graph.add_group(
            displayName="Oude klas", mailNickname="prov-klas-oud", onPremisesSyncEnabled=True
        ),
    ]
    synced_ids = {s["id"] for s in synced}
    before = json.loads(json.dumps([graph.users[synced[0]["id"]], graph.users[synced[1]["id"]]]))
    plan = cli.plan(config)
    assert plan["header"]["synced_left_alone"] == 3
    named = json.dumps(plan["changes"])
    assert not any(i in named for i in synced_ids)
    assert {c["action"] for c in plan["changes"]} <= {
        "create",
        "create_group",
        "add_member",
        "add_owner",
    }
    report = config.parent / "plan.html"
    assert cli(["plan", "--config", str(config), "--report", str(report)]) == 2
    text = capsys.readouterr().out
    left_alone = (
        "3 user(s) and group(s) synchronised from on-premises AD (Entra Connect) are left alone"
    )
    assert left_alone in text
    assert f"<p class='note'>{left_alone}</p>" in report.read_text(encoding="utf-8")

    graph.clear_requests()
    cli.apply(config)
    assert not [r for r in writes(graph) if any(i in r.path for i in synced_ids)]
    assert [graph.users[synced[0]["id"]], graph.users[synced[1]["id"]]] == before
    assert graph.groups[synced[2]["id"]]["displayName"] == "Oude klas"
    # The pupil got an account of their own beside the synced one.
    assert pupil["key"] in users(graph)
    assert users(graph)[pupil["key"]]["id"] != synced[1]["id"]
    again = cli.plan(config)
    assert again["changes"] == [] and again["header"]["synced_left_alone"] == 3


def test_a_write_to_a_synced_object_is_refused_by_name(graph, clock):
    """Apply refuses a change that names a synced user (a plan made before Entra Connect took
    it over), without writing."""
    user = graph.add_user(
        userPrincipalName="jan@school.be",
        displayName="Jan",
        mailNickname="jan",
        employeeId="pers-1",
        accountEnabled=True,
        passwordProfile={"password": "x"},
        onPremisesSyncEnabled=True,
    )
    target = EntraId(_config(graph), sleep=clock.wait, clock=clock)
    try:
        target.read(["displayName"])
        change = Change(
            Action.DISABLE,
            Kind.ACCOUNT,
            "pers-1",
            "jan@school.be",
            before={"enabled": "true"},
            after={"enabled": "false"},
            precondition=Precondition(id=user["id"], enabled=True),
        )
        graph.clear_requests()
        (result,) = list(target.apply_all([change], {}))
    finally:
        target.close()
    assert result.status == "failed"
    assert "synchronised from on-premises Active Directory by Entra Connect" in result.message
    assert writes(graph) == []


def _config(graph: GraphServer, **extra) -> EntraConfig:
    return EntraConfig(
        tenant_id=TENANT,
        client_id=CLIENT,
        client_secret=Secret(SECRET, "test"),
        domains=["school.be", "leerling.school.be"],
        graph_url=graph.url,
        authority=graph.authority,
        ca_file=graph.ca_file,
        **extra,
    )


@pytest.mark.parametrize(
    ("graph_url", "scope", "authority"),
    [
        (
            "https://graph.microsoft.com/v1.0",
            "https://graph.microsoft.com/.default",
            "https://login.microsoftonline.com",
        ),
        (
            "https://graph.microsoft.us/v1.0",
            "https://graph.microsoft.us/.default",
            "https://login.microsoftonline.us",
        ),
        (
            "https://dod-graph.microsoft.us/v1.0",
            "https://dod-graph.microsoft.us/.default",
            "https://login.microsoftonline.us",
        ),
        (
            "https://microsoftgraph.chinacloudapi.cn/v1.0",
            "https://microsoftgraph.chinacloudapi.cn/.default",
            "https://login.chinacloudapi.cn",
        ),
    ],
)
def test_the_token_scope_and_the_authority_follow_graph_url(graph_url, scope, authority):
    config = EntraConfig(
        tenant_id=TENANT,
        client_id=CLIENT,
        client_secret=Secret("s", "test"),
        domains=["school.be"],
        graph_url=graph_url,
    )
    assert config.scope == scope
    assert config.sign_in_authority == authority
    assert not config.custom_authority  # Microsoft's own: instance discovery stays on
    assert cloud_of(graph_url).graph_host in scope


def test_a_national_cloud_signs_in_for_its_own_graph(graph, clock):
    """The Graph server as the US Government cloud's: it issues tokens for
    https://graph.microsoft.us only, as that cloud does."""
    graph.graph_resource = "https://graph.microsoft.us"
    target = EntraId(_config(graph), sleep=clock.wait, clock=clock)
    try:
        with pytest.raises(TargetError, match=r"graph\.microsoft\.com was not found"):
            target.read(["displayName"])  # the global scope: refused
    finally:
        target.close()
    graph.token_requests.clear()
    target = EntraId(
        _config(graph, token_scope="https://graph.microsoft.us/.default"),
        sleep=clock.wait,
        clock=clock,
    )
    try:
        observed = target.read(["displayName"])
    finally:
        target.close()
    assert observed.accounts == []
    scopes = {r.form.get("scope") for r in graph.token_requests if r.path.endswith("/token")}
    assert scopes == {"https://graph.microsoft.us/.default"}


def test_licences_in_mappings_are_checked_and_never_written_to_ad(tmp_path):
    mappings = licensed_mappings(tmp_path)
    path = mappings / "pupils.yaml"
    path.write_text(path.read_text().replace(f"sku: {STUDENT}", "sku: '{{ Lln.Naam }}'"))
    with pytest.raises(ConfigError, match="is not a SKU part number"):
        compile_mappings(load_mappings(mappings), OPERATIONS)
    assert "licences are assigned in Entra ID, never written in AD" in str(
        ActiveDirectory.attribute_refused(None, Kind.ACCOUNT, "licences")  # type: ignore[arg-type]
    )


def test_the_licence_text_round_trips_and_counts_only_what_is_added():
    text = licence_text({"B": ["Y", "X"], "A": []})
    assert text == "A; B (without X, Y)"
    assert parse_licences(text) == {"A": frozenset(), "B": frozenset({"X", "Y"})}
    change = Change(
        Action.UPDATE, Kind.ACCOUNT, "k", "t", before={"licences": "A"}, after={"licences": text}
    )
    assert licences_added([change]) == {"B": 1}


@pytest.mark.parametrize("frozen", [False, True])
def test_the_licence_grace_counts_from_the_disable_and_waits_in_the_freeze(frozen):
    today = dt.date(2026, 6, 20)
    account = ObservedAccount(
        "id-1", "oud@school.be", "lln-1", "oud", (), {"licences": STUDENT}, enabled=False
    )
    observed = ObservedState(accounts=[account])

    def released(days_off: int) -> list[Change]:
        return apply_lifecycle(
            [],
            observed,
            set(),
            since={"lln-1": today - dt.timedelta(days=days_off)},
            kinds={"lln-1": "pupils"},
            config=LifecycleConfig(licence_grace_days=30),
            today=today,
            disabled={"lln-1": today - dt.timedelta(days=days_off)},
            frozen=frozen,
        ).changes

    assert released(29) == []
    if frozen:
        assert released(30) == []
    else:
        (change,) = released(30)
        assert (change.action, change.before, change.after) == (
            Action.UPDATE,
            {"licences": STUDENT},
            {"licences": ""},
        )
        assert change.precondition.enabled is False
