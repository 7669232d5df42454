"""Class teams on Entra ID (the real msgraph-sdk against the project's Graph server, which knows
Teams: asynchronous operations, the delay before a new group is known to Teams, Teams' own
throttling, archive). ``team: class`` on the class group kind gives every class a team on a
Microsoft 365 group, owners the klastitularissen, members the pupils; a class that is gone has
its team archived with its group, and unarchived when it returns."""

# The Graph server, the clock and the command line are test_entra's fixtures, imported by name.
# ruff: noqa: F401, F811

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from provisioner.targets.entra.teams import operation_path
from tests.conftest import REFERENCE_DAY
from tests.fakes.informat_server import InformatServer
from tests.test_entra import ROOT, cli, clock, entra_env, graph, graph_ca, group_anchors
from tests.test_group_lifecycle_entra import one_class, the_group, without_class


@pytest.fixture
def team_mappings(tmp_path) -> Path:
    """The example Entra mappings with ``team: class`` on the class groups."""
    mappings = tmp_path / "mappings"
    shutil.copytree(ROOT / "examples/entra/mappings", mappings)
    groups = mappings / "groups.yaml"
    text = groups.read_text()
    anchor = '    key: "klas-{{ Subgroepen.Instelnr }}-{{ Subgroepen.Klascode }}"\n'
    assert anchor in text
    groups.write_text(text.replace(anchor, anchor + "    team: class\n"))
    return mappings


def class_groups(graph) -> dict[str, dict]:
    """The class groups on the server by mailNickname."""
    return {g["mailNickname"]: g for g in graph.groups.values() if "-klas-" in g["mailNickname"]}


def test_a_first_night_gives_every_class_a_team_with_its_owners_and_pupils(
    graph, informat_server, entra_env, team_mappings, cli
):
    config = entra_env(informat_server.url, mappings=team_mappings)
    plan = cli.plan(config)
    creates = {c["key"]: c for c in plan["changes"] if c["action"] == "create_group"}
    classes = {k for k in creates if k.startswith("klas-")}
    assert classes and all(creates[k]["after"]["team"] == "class" for k in classes)
    assert all("team" not in c["after"] for k, c in creates.items() if k not in classes)
    owners = {
        c["key"]: set(c["after"]["owners"]) for c in plan["changes"] if c["action"] == "add_owner"
    }
    members = {
        c["key"]: set(c["after"]["members"]) for c in plan["changes"] if c["action"] == "add_member"
    }

    cli.apply(config)
    groups = class_groups(graph)
    assert len(groups) == len(classes)
    for nickname, group in groups.items():
        key = nickname.removeprefix("prov-")
        assert group["groupTypes"] == ["Unified"] and group["mailEnabled"] is True
        team = graph.teams.teams[group["id"]]  # read back from the server
        assert team["specialization"] == "educationClass" and team["isArchived"] is False
        assert group_anchors(graph, nickname, "owners") == owners[key]
        assert group_anchors(graph, nickname) == members[key]
    # The other groups stay security groups without a team.
    others = [g for g in graph.groups.values() if g["mailNickname"] not in groups]
    assert others and all(g["securityEnabled"] and g["groupTypes"] == [] for g in others)
    assert set(graph.teams.teams) == {g["id"] for g in groups.values()}
    # Every create was followed to its end.
    operations = graph.teams.operations.values()
    assert len(operations) == len(classes)
    assert {op["status"] for op in operations} == {"succeeded"}

    assert cli.plan(config)["changes"] == []  # converged: the teams are seen as there


def test_operation_path_reads_graphs_location():
    assert operation_path("/teams('a-1')/operations('b-2')") == "/teams/a-1/operations/b-2"
    assert (
        operation_path("https://graph.microsoft.com/v1.0/teams('a')/operations('b')")
        == "/teams/a/operations/b"
    )
    assert operation_path("/teams/a/operations/b") == "/teams/a/operations/b"
    assert operation_path("/groups('a')") is None
