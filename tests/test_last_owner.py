"""The last owner of a class group (issue 13): Entra ID refuses to take a group's last owner
away. With a fallback owner configured the plan hands the group to it before the leaver goes;
without one the group is named in a warning and no refused change is planned, so that the plan
converges. Unit tests of the planner's part, then the whole run against the Graph server."""

from __future__ import annotations

import copy
import json

import pytest

from provisioner.model import ObservedGroup, ObservedState
from provisioner.plan.model import Action, Change, Kind, Precondition
from provisioner.plan.planner import keep_an_owner
from provisioner.targets.entra_settings import EntraConfig
from tests import test_entra
from tests.conftest import REFERENCE_DAY
from tests.fakes.graph_server import GraphServer
from tests.fakes.informat_server import InformatServer
from tests.test_entra import CLIENT, TENANT

# The Graph server, its CA, the jumping clock and the command line of the Entra tests.
graph_ca, clock, graph, entra_env, cli = (
    test_entra.graph_ca,
    test_entra.clock,
    test_entra.graph,
    test_entra.entra_env,
    test_entra.cli,
)

FALLBACK = "beheer@school.onmicrosoft.com"

# -- the planner -------------------------------------------------------------------------------


def _group(owners: set[str], unmanaged: int = 0) -> ObservedState:
    return ObservedState(
        groups=[
            ObservedGroup(
                id="g1",
                target="Klas 1A",
                key="klas-1a",
                ou=(),
                attributes={},
                owners=owners,
                unmanaged_owners=unmanaged,
            )
        ]
    )


def _owner_change(action: Action, owners: list[str]) -> Change:
    side = {"owners": owners}
    return Change(
        action,
        Kind.GROUP,
        "klas-1a",
        "Klas 1A",
        before=side if action is Action.REMOVE_OWNER else {},
        after=side if action is Action.ADD_OWNER else {},
        why=("owners computed from the source",),
        precondition=Precondition(id="g1"),
    )


def test_without_a_fallback_the_last_owner_stays_and_the_group_is_named_once():
    removal = _owner_change(Action.REMOVE_OWNER, ["pers-7"])
    changes, notes = keep_an_owner([removal], _group({"pers-7"}), needs_owner=True, fallback=None)
    assert changes == []
    (note,) = notes
    assert "klas-1a" in note and "Klas 1A" in note and "pers-7" in note
    assert "fallback_owner" in note


def test_with_a_fallback_the_removal_carries_it():
    removal = _owner_change(Action.REMOVE_OWNER, ["pers-7"])
    (change,), notes = keep_an_owner(
        [removal], _group({"pers-7"}), needs_owner=True, fallback=FALLBACK
    )
    assert notes == []
    assert change.after == {"fallback_owner": FALLBACK}
    assert change.before == {"owners": ["pers-7"]}
    assert FALLBACK in change.why[-1]


@pytest.mark.parametrize(
    ("observed", "extra"),
    [
        (_group({"pers-7", "pers-8"}), []),  # another managed owner stays
        (_group({"pers-7"}, unmanaged=1), []),  # an administrator owns it too
        (_group({"pers-7"}), [_owner_change(Action.ADD_OWNER, ["pers-9"])]),  # a new titularis
    ],
    ids=["another-owner", "unmanaged-owner", "new-titularis"],
)
def test_a_removal_that_leaves_an_owner_is_left_as_it_is(observed, extra):
    removal = _owner_change(Action.REMOVE_OWNER, ["pers-7"])
    changes, notes = keep_an_owner([*extra, removal], observed, needs_owner=True, fallback=FALLBACK)
    assert changes == [*extra, removal] and notes == []


def test_a_directory_that_takes_the_last_owner_away_gets_the_plan_unchanged():
    removal = _owner_change(Action.REMOVE_OWNER, ["pers-7"])
    assert keep_an_owner([removal], _group({"pers-7"}), needs_owner=False, fallback=None) == (
        [removal],
        [],
    )


@pytest.mark.parametrize("value", ["Leerkrachten", "prov-klas-1a", "beheer@", "12345"])
def test_a_fallback_owner_is_a_sign_in_name_or_an_object_id(value):
    with pytest.raises(ValueError, match="fallback_owner"):
        EntraConfig(
            tenant_id=TENANT,
            client_id=CLIENT,
            domains=["school.be"],
            client_secret="s",  # type: ignore[arg-type]
            fallback_owner=value,
        )


# -- against the Graph server ---------------------------------------------------------------------


def _single_titularis_class(synthetic) -> tuple[str, str]:
    """(school, class code) of a class with exactly one titularis."""
    for row in synthetic.rows["Subgroepen"]:
        if row.get("Klastitularis") and "," not in row["Klastitularis"]:
            return row["Instelnr"], row["Klascode"]
    raise AssertionError("the synthetic data has no class with a single titularis")


def _without_titularis(synthetic, school: str, klas: str) -> InformatServer:
    data = copy.deepcopy(synthetic)
    for row in data.rows["Subgroepen"]:
        if row["Klascode"] == klas and row["Instelnr"] == school:
            row["Klastitularis"] = ""
    return InformatServer(data, today=REFERENCE_DAY)


def add_fallback_user(graph: GraphServer) -> dict:
    """The user the configuration names as fallback owner (an administrator, not managed)."""
    return graph.add_user(
        userPrincipalName=FALLBACK,
        displayName="Beheer",
        mailNickname="beheer",
        accountEnabled=True,
        passwordProfile={"password": "Beheer-Pass-123!"},
    )


def _owner_ids(graph: GraphServer, key: str) -> list[str]:
    (gid,) = [g for g, group in graph.groups.items() if group["mailNickname"] == "prov-" + key]
    return graph.owners[gid]


def test_with_a_fallback_the_class_settles_in_one_night(
    graph, informat_server, synthetic, entra_env, cli, capsys
):
    admin = add_fallback_user(graph)
    extra = f"    fallback_owner: {FALLBACK}\n"
    cli.apply(entra_env(informat_server.url, extra))
    school, klas = _single_titularis_class(synthetic)
    key = f"klas-{school}-{klas}"
    (titularis,) = _owner_ids(graph, key)
    with _without_titularis(synthetic, school, klas) as server:
        config = entra_env(server.url, extra)
        plan = cli.plan(config)
        (change,) = plan["changes"]
        assert (change["action"], change["key"]) == ("remove_owner", key)
        assert change["after"] == {"fallback_owner": FALLBACK}
        assert cli(["plan", "--config", str(config)]) == 2  # changes to make
        shown = capsys.readouterr().out
        assert f"why: the last owner: {FALLBACK} (the fallback owner) takes over" in shown
        applied = cli.apply(config)  # every result applied, or it fails
        assert len(applied["results"]) == 1
        assert _owner_ids(graph, key) == [admin["id"]]
        assert titularis not in _owner_ids(graph, key)
        again = cli.plan(config)
        assert again["changes"] == []
        assert not [w for w in again["header"]["warnings"] if key in w]


def test_without_a_fallback_one_warning_and_the_plan_converges(
    graph, informat_server, synthetic, entra_env, cli, capsys
):
    cli.apply(entra_env(informat_server.url))
    school, klas = _single_titularis_class(synthetic)
    key = f"klas-{school}-{klas}"
    owners = list(_owner_ids(graph, key))
    with _without_titularis(synthetic, school, klas) as server:
        config = entra_env(server.url)
        for _night in range(2):
            plan = cli.plan(config)
            assert plan["changes"] == []
            (warning,) = [w for w in plan["header"]["warnings"] if key in w]
            assert "needs an owner" in warning
            assert cli(["apply", "--config", str(config), "--json"]) == 0
            assert json.loads(capsys.readouterr().out)["results"] == []
        assert _owner_ids(graph, key) == owners


@pytest.mark.parametrize("kind", ["group", "unknown user"])
def test_a_fallback_owner_graph_would_refuse_stops_the_plan_with_one_clear_line(
    graph, informat_server, entra_env, cli, capsys, kind
):
    if kind == "group":
        fallback = graph.add_group(displayName="Leerkrachten")["id"]
        expected = "is the group 'Leerkrachten', and a group cannot own a group"
    else:
        fallback, expected = "nobody@school.be", "no user nobody@school.be in the tenant"
    config = entra_env(informat_server.url, f"    fallback_owner: {fallback}\n")
    assert cli(["plan", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
    assert cli(["apply", "--config", str(config)]) == 1
    assert expected in capsys.readouterr().err
    assert not [u for u in graph.users.values() if u.get("employeeId")]  # nothing was written


def test_the_only_titularis_leaving_the_school_hands_the_class_to_the_fallback(
    graph, informat_server, synthetic, entra_env, cli
):
    admin = add_fallback_user(graph)
    extra = f"    fallback_owner: {FALLBACK}\n"
    cli.apply(entra_env(informat_server.url, extra))
    school, klas = _single_titularis_class(synthetic)
    key = f"klas-{school}-{klas}"
    (titularis,) = _owner_ids(graph, key)
    leaver = str(graph.users[titularis]["employeeId"])
    person = leaver.removeprefix("pers-")
    gone = copy.deepcopy(synthetic)
    for name, rows in gone.rows.items():  # every staff row of theirs, in every data set
        gone.rows[name] = [r for r in rows if person not in (r.get("pPersoon"), r.get("p_persoon"))]
    with InformatServer(gone, today=REFERENCE_DAY) as server:
        config = entra_env(server.url, extra)
        plan = cli.plan(config)
        assert ("disable", leaver) in {(c["action"], c["key"]) for c in plan["changes"]}
        removals = {c["key"]: c for c in plan["changes"] if c["action"] == "remove_owner"}
        assert removals[key]["before"] == {"owners": [leaver]}
        assert removals[key]["after"] == {"fallback_owner": FALLBACK}
        cli.apply(config)
        assert _owner_ids(graph, key) == [admin["id"]]
        assert cli.plan(config)["changes"] == []


@pytest.mark.parametrize("fallback_kind", ["user id", "group id"])
def test_the_target_adds_the_fallback_before_it_removes_the_last_owner(graph, clock, fallback_kind):
    """The target's own part, by object id (a UPN is covered above): a user takes over; a group
    (which a plan made before the setting changed could still carry) fails with a clear message
    and the last owner stays."""
    from provisioner.secret import Secret
    from provisioner.targets.entra import EntraId

    config = EntraConfig(
        tenant_id=TENANT,
        client_id=CLIENT,
        domains=["school.be"],
        client_secret=Secret(test_entra.SECRET, "test"),
        graph_url=graph.url,
        authority=graph.authority,
        ca_file=graph.ca_file,
    )
    teacher = graph.add_user(
        displayName="Els Peeters",
        userPrincipalName="els.peeters@school.be",
        mailNickname="els.peeters",
        accountEnabled=True,
        employeeId="pers-7",
        passwordProfile={"password": "Oud-Wacht-Woord-1"},
    )
    admin = add_fallback_user(graph)
    staff_group = graph.add_group(displayName="Leerkrachten")
    klas = graph.add_group(
        owners=[teacher["id"]], displayName="Klas 1A", mailNickname="prov-klas-1a"
    )
    fallback = admin["id"] if fallback_kind == "user id" else staff_group["id"]
    removal = Change(
        Action.REMOVE_OWNER,
        Kind.GROUP,
        "klas-1a",
        "Klas 1A",
        before={"owners": ["pers-7"]},
        after={"fallback_owner": fallback},
        precondition=Precondition(id=klas["id"]),
    )
    target = EntraId(config, sleep=clock.wait, clock=clock)
    try:
        target.read(set())
        (result,) = target.apply_all([removal], {})
    finally:
        target.close()
    if fallback_kind == "user id":
        assert result.status == "applied", result.message
        assert graph.owners[klas["id"]] == [admin["id"]]
    else:
        assert result.status == "failed"
        assert "a group cannot own a group" in result.message
        assert graph.owners[klas["id"]] == [teacher["id"]]
