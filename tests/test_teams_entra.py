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
from tests.test_entra_incremental import reads
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
        assert group["visibility"] == "HiddenMembership"  # minors: who is in a class is hidden
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


def apply_with_failures(cli, config: Path) -> dict:
    """An apply that may fail some changes: its JSON, with the exit code."""
    code = cli(["apply", "--config", str(config), "--json"])
    captured = cli.capsys.readouterr()
    data = __import__("json").loads(captured.out)
    data["code"], data["log"] = code, captured.err
    return data


def team_posts(graph) -> list:
    return [r for r in graph.requests if r.method == "POST" and r.path == "/teams"]


def test_a_throttled_teams_run_still_finishes_honouring_retry_after(
    graph, informat_server, entra_env, team_mappings, cli, clock
):
    graph.teams.quota = (4, 30.0)  # Teams' own limit: 4 requests in 30 seconds
    config = entra_env(informat_server.url, mappings=team_mappings)
    applied = cli.apply(config, verbose=True)
    classes = class_groups(graph)
    assert {g["id"] for g in classes.values()} == set(graph.teams.teams)
    # The 429s happened, were counted and sent again, and each was honoured: no Teams request
    # came before its Retry-After had passed (requests of the same $batch arrive together).
    assert graph.teams.throttled > len(classes)
    assert f"{graph.teams.throttled} throttled item(s) sent again" in applied["log"]
    arrivals = graph.teams.arrivals
    for when, wait in arrivals:
        if wait is not None:
            later = [t for t, _ in arrivals if t > when]
            assert later and min(later) >= when + wait


def test_a_team_not_yet_known_to_teams_is_retried_then_made(
    graph, informat_server, entra_env, team_mappings, cli
):
    graph.teams.not_yet_seconds = 15.0  # Teams sees a new group 15 seconds after it is made
    config = entra_env(informat_server.url, mappings=team_mappings)
    cli.apply(config)
    classes = class_groups(graph)
    assert {g["id"] for g in classes.values()} == set(graph.teams.teams)
    posts = team_posts(graph)
    assert len(posts) > len(classes)  # the 404s were tried again, ten seconds apart
    assert len(posts) <= 4 * len(classes)


def test_a_team_teams_never_sees_fails_that_class_only_and_the_next_night_makes_it(
    graph, informat_server, entra_env, team_mappings, cli, reads
):
    graph.teams.not_yet_seconds = 10_000.0
    config = entra_env(informat_server.url, mappings=team_mappings)
    data = apply_with_failures(cli, config)
    failed = [r for r in data["results"] if r["status"] == "failed"]
    classes = class_groups(graph)
    assert data["code"] != 0 and len(failed) == len(classes)
    assert all(r["action"] == "create_group" for r in failed)
    assert all("Teams did not know the group yet after 4 tries" in r["message"] for r in failed)
    assert len(team_posts(graph)) == 4 * len(classes)  # bounded
    # Everything else landed: the groups, their owners and pupils.
    assert all(r["status"] == "applied" for r in data["results"] if r not in failed)
    assert all(graph.members[g["id"]] and graph.owners[g["id"]] for g in classes.values())
    assert not graph.teams.teams

    graph.teams.not_yet_seconds = 0.0
    plan = cli.plan(config)
    assert {(c["action"], c["after"].get("team")) for c in plan["changes"]} == {
        ("update_group", "class")
    }
    assert len(plan["changes"]) == len(classes)
    cli.apply(config)  # its read is the first the state store keeps
    assert {g["id"] for g in classes.values()} == set(graph.teams.teams)
    assert cli.plan(config)["changes"] == []
    # The next night reads incrementally, and Graph's delta carries the teams made since
    # (resourceProvisioningOptions): nothing to do.
    reads.clear()
    assert cli.apply(config)["results"] == []
    assert len(reads.lines) == 1 and reads.lines[0].startswith("read Entra ID incrementally")


def test_a_failed_team_operation_holds_only_its_class(
    graph, informat_server, synthetic, entra_env, team_mappings, cli
):
    school, klas = one_class(synthetic)
    nickname = f"prov-klas-{school}-{klas}"
    graph.teams.fail_for = {nickname}
    config = entra_env(informat_server.url, mappings=team_mappings)
    data = apply_with_failures(cli, config)
    failed = [r for r in data["results"] if r["status"] == "failed"]
    assert [r["key"] for r in failed] == [nickname.removeprefix("prov-")]
    assert "Teams says the operation failed: Teams gave up." in failed[0]["message"]
    assert "the group was made, its class team not" in failed[0]["message"]
    classes = class_groups(graph)
    assert set(graph.teams.teams) == {g["id"] for n, g in classes.items() if n != nickname}
    assert graph.members[classes[nickname]["id"]]  # its pupils are in its group all the same

    graph.teams.fail_for = set()
    cli.apply(config)
    assert classes[nickname]["id"] in graph.teams.teams


def test_an_operation_not_readable_at_once_is_looked_at_again(
    graph, informat_server, entra_env, team_mappings, cli
):
    graph.teams.unseen_looks = 2  # the first two looks at each operation answer 404
    cli.apply(entra_env(informat_server.url, mappings=team_mappings))
    assert {g["id"] for g in class_groups(graph).values()} == set(graph.teams.teams)


def test_an_operation_that_never_ends_is_left_to_the_next_run_after_fifteen_minutes(
    graph, informat_server, entra_env, team_mappings, cli, clock
):
    graph.teams.steps = 10_000  # Teams never finishes
    config = entra_env(informat_server.url, mappings=team_mappings)
    data = apply_with_failures(cli, config)
    failed = [r for r in data["results"] if r["status"] == "failed"]
    assert len(failed) == len(class_groups(graph)) > 0
    assert all("still running after 90 looks" in r["message"] for r in failed)
    looks = [r for r in graph.requests if r.method == "GET" and "/operations/" in r.path]
    assert len(looks) == 90 * len(failed)
    assert clock.t - 1000 >= 90 * 10  # ten seconds between looks: fifteen minutes waited

    graph.teams.steps = 2  # Teams has caught up
    assert {c["action"] for c in cli.plan(config)["changes"]} == {"update_group"}
    cli.apply(config)
    assert {g["id"] for g in class_groups(graph).values()} == set(graph.teams.teams)


def test_the_end_of_the_year_archives_the_team_and_a_returning_class_unarchives_it(
    graph, informat_server, synthetic, entra_env, team_mappings, cli
):
    def at(url: str) -> Path:
        return entra_env(url, mappings=team_mappings)

    cli.apply(at(informat_server.url))
    school, klas = one_class(synthetic)
    key = f"klas-{school}-{klas}"
    made = the_group(graph, "prov-" + key)
    members = group_anchors(graph, "prov-" + key)

    with InformatServer(without_class(synthetic, school, klas), today=REFERENCE_DAY) as server:
        gone = at(server.url)
        plan = cli.plan(gone)
        mine = [c for c in plan["changes"] if c["key"] == key]
        assert [c["action"] for c in mine] == ["archive_group"]
        assert mine[0]["after"]["team"] == "archived"
        assert "its class team archived (read-only" in mine[0]["why"][0]
        cli.apply(gone)
        assert graph.teams.teams[made["id"]]["isArchived"] is True  # archived, not deleted
        assert made["id"] in graph.groups and group_anchors(graph, "prov-" + key) == members
        assert cli.plan(gone)["changes"] == []

    config = at(informat_server.url)
    plan = cli.plan(config)
    (restore,) = plan["changes"]
    assert restore["action"] == "restore_group"
    assert (restore["before"]["team"], restore["after"]["team"]) == ("archived", "class")
    cli.apply(config)
    assert graph.teams.teams[made["id"]]["isArchived"] is False
    kinds = [op["operationType"] for op in graph.teams.operations.values()]
    assert kinds.count("archiveTeam") == 1 and kinds.count("unarchiveTeam") == 1
    assert cli.plan(config)["changes"] == []


def test_the_dry_run_shows_the_teams_in_text_html_and_json(
    graph, informat_server, entra_env, team_mappings, cli, tmp_path
):
    config = entra_env(informat_server.url, mappings=team_mappings)
    json_plan = cli.plan(config)
    classes = [c for c in json_plan["changes"] if c["after"].get("team") == "class"]
    assert classes
    report = tmp_path / "plan.html"
    code = cli(["plan", "--config", str(config), "--report", str(report)])
    text = cli.capsys.readouterr().out
    assert code == 2
    assert f"Class teams: {len(classes)} to create" in text
    assert text.count("(with its class team)") == len(classes)
    assert f"Class teams: {len(classes)} to create." in report.read_text()
    assert not graph.teams.teams and not graph.groups  # a plan writes nothing


def test_a_security_group_switched_to_a_team_is_never_deleted_and_says_why(
    graph, informat_server, entra_env, team_mappings, cli
):
    cli.apply(entra_env(informat_server.url))  # without teams: security groups
    before = {g["id"] for g in graph.groups.values()}
    config = entra_env(informat_server.url, mappings=team_mappings)
    plan = cli.plan(config)
    assert {c["action"] for c in plan["changes"]} == {"update_group"}
    assert all(c["after"] == {"team": "class"} for c in plan["changes"])
    # The plan says why already; apply then says what to do.
    assert all(
        c["before"] == {"team": "none: a security group cannot have one"} for c in plan["changes"]
    )
    data = apply_with_failures(cli, config)
    assert data["results"] and all(r["status"] == "failed" for r in data["results"])
    assert (
        "is a security group, and a team sits only on a Microsoft 365 group"
        in (data["results"][0]["message"])
    )
    assert {g["id"] for g in graph.groups.values()} == before  # nothing deleted or made
    assert not team_posts(graph) and not graph.teams.teams


def test_a_team_is_class_or_nothing_and_stays_beside_attributes(team_mappings):
    from provisioner.mapping.engine import MappingError, compile_mappings
    from provisioner.mapping.spec import load_mappings
    from provisioner.sources.informat.operations import OPERATIONS

    compiled = compile_mappings(load_mappings(team_mappings), OPERATIONS)
    assert compiled.groups["classes"].attributes["team"].source.text == "class"
    assert "team" not in compiled.groups["staff_all"].attributes
    groups = team_mappings / "groups.yaml"
    good = groups.read_text()
    for wrong, said in (
        (good.replace("team: class", "team: standard"), "groups.classes.team: 'standard' is no"),
        (
            good.replace("    team: class\n", "").replace(
                "    attributes:\n", "    attributes:\n      team: class\n", 1
            ),
            "groups.classes.attributes.team: write `team: class` beside attributes",
        ),
    ):
        groups.write_text(wrong)
        with pytest.raises(MappingError) as caught:
            compile_mappings(load_mappings(team_mappings), OPERATIONS)
        assert any(said in p and "groups.yaml:" in p for p in caught.value.problems)


def test_active_directory_refuses_a_team_by_name():
    from provisioner.secret import Secret
    from provisioner.targets.ad import ActiveDirectory
    from provisioner.targets.ad_settings import AdConfig

    config = AdConfig(
        url="ldaps://127.0.0.77",  # never contacted: the check is made before any read
        bind_user="x",
        password=Secret("p", "test"),
        base_dn="DC=school,DC=be",
        managed_root="OU=Beheerd",
    )
    assert ActiveDirectory(config).unsupported([], ["description", "team"]) == [
        "groups: team (Active Directory has no Teams: class teams (team: class) need Entra ID)"
    ]


def test_a_class_without_a_klastitularis_gets_its_group_and_its_team_once_it_has_one(
    graph, informat_server, synthetic, entra_env, team_mappings, cli
):
    import copy

    school, klas = one_class(synthetic)
    key = f"klas-{school}-{klas}"
    orphan = copy.deepcopy(synthetic)
    for row in orphan.rows["Subgroepen"]:
        if row.get("Klascode") == klas and row.get("Instelnr") == school:
            row["Klastitularis"] = ""
    with InformatServer(orphan, today=REFERENCE_DAY) as server:
        data = apply_with_failures(cli, entra_env(server.url, mappings=team_mappings))
    failed = [r for r in data["results"] if r["status"] == "failed"]
    assert [r["key"] for r in failed] == [key]
    assert "the group has no owner (Teams needs one)" in failed[0]["message"]
    group = the_group(graph, "prov-" + key)
    assert group["id"] not in graph.teams.teams and graph.members[group["id"]]

    config = entra_env(informat_server.url, mappings=team_mappings)  # the titularis is back
    plan = cli.plan(config)
    assert [(c["action"], c["key"]) for c in plan["changes"]] == [
        ("update_group", key),
        ("add_owner", key),
    ]
    # One night: the owners go on the group before its team (the add_owner after it finds them
    # there already).
    cli.apply(config)
    assert group["id"] in graph.teams.teams
    owners = next(c for c in plan["changes"] if c["action"] == "add_owner")["after"]["owners"]
    assert group_anchors(graph, "prov-" + key, "owners") == set(owners)
    assert cli.plan(config)["changes"] == []
