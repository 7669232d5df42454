"""The group lifecycle against Entra ID (the real msgraph-sdk against the project's Graph server):
a class that disappears is marked archived (its description and a name prefix) with its members
and owners kept; when it comes back it is restored; after the grace it is deleted, and made anew
only with a warning."""

# The Graph server, the clock and the command line are test_entra's fixtures, imported by name.
# ruff: noqa: F401, F811

from __future__ import annotations

import copy
import sqlite3

from tests.conftest import REFERENCE_DAY
from tests.fakes.informat_server import InformatServer
from tests.test_entra import (
    cli,
    clock,
    entra_env,
    graph,
    graph_ca,
    group_anchors,
)


def one_class(synthetic) -> tuple[str, str]:
    """(school, class code) of the first official class of the synthetic school."""
    row = next(r for r in synthetic.rows["Subgroepen"] if r.get("Groeptype") == "0")
    return row["Instelnr"], row["Klascode"]


def without_class(synthetic, school: str, klas: str):
    data = copy.deepcopy(synthetic)
    data.rows["Subgroepen"] = [
        r
        for r in data.rows["Subgroepen"]
        if not (r.get("Klascode") == klas and r.get("Instelnr") == school)
    ]
    return data


def the_group(graph, nickname: str) -> dict:
    (group,) = [g for g in graph.groups.values() if g["mailNickname"] == nickname]
    return group


def test_a_class_that_disappears_is_marked_kept_restored_and_deleted_after_the_grace(
    graph, informat_server, synthetic, entra_env, cli
):
    def at(url: str):  # one configuration file, pointed at tonight's source
        return entra_env(url, extra="lifecycle:\n  archive_prefix: '[oud] '\n")

    config = at(informat_server.url)
    cli.apply(config)
    school, klas = one_class(synthetic)
    key = f"klas-{school}-{klas}"
    nickname = "prov-" + key
    made = the_group(graph, nickname)
    name, description = made["displayName"], made["description"]
    members = group_anchors(graph, nickname)
    owners = group_anchors(graph, nickname, "owners")
    assert members and owners

    with InformatServer(without_class(synthetic, school, klas), today=REFERENCE_DAY) as server:
        gone = at(server.url)
        plan = cli.plan(gone)
        day = plan["header"]["source_as_of"]  # the day the source data describes
        mine = [c for c in plan["changes"] if c["key"] == key]
        assert [c["action"] for c in mine] == ["archive_group"]
        assert mine[0]["after"] == {"archived": day, "prefix": "[oud] "}
        cli.apply(gone)
        archived = the_group(graph, nickname)
        assert archived["id"] == made["id"]
        assert archived["displayName"] == "[oud] " + name
        assert archived["description"] == f"archived {day} by provisioner"
        assert group_anchors(graph, nickname) == members  # members and owners stay
        assert group_anchors(graph, nickname, "owners") == owners
        again = cli.plan(gone)
        assert again["changes"] == []
        assert any("1 archived group(s) are kept" in w for w in again["header"]["warnings"])

    # The class is back: the same group, unmarked, with its members.
    config = at(informat_server.url)
    plan = cli.plan(config)
    assert [(c["action"], c["key"]) for c in plan["changes"]] == [("restore_group", key)]
    assert plan["changes"][0]["after"] == {"displayName": name, "description": description}
    cli.apply(config)
    restored = the_group(graph, nickname)
    assert (restored["id"], restored["displayName"]) == (made["id"], name)
    assert restored["description"] == description
    assert group_anchors(graph, nickname) == members
    assert cli.plan(config)["changes"] == []

    # Gone for good: archived again, deleted once the grace since the archive has passed.
    with InformatServer(without_class(synthetic, school, klas), today=REFERENCE_DAY) as server:
        gone = at(server.url)
        cli.apply(gone)
        db = sqlite3.connect(gone.parent / "state.db")
        db.execute("UPDATE group_lifecycle SET archived = date(archived, '-364 days')")
        db.commit()
        assert cli.plan(gone)["changes"] == []  # a day before it is due
        db.execute("UPDATE group_lifecycle SET archived = date(archived, '-1 days')")
        db.commit()
        db.close()
        plan = cli.plan(gone)
        assert [(c["action"], c["key"]) for c in plan["changes"]] == [("delete_group", key)]
        cli.apply(gone)
        assert not [g for g in graph.groups.values() if g["mailNickname"] == nickname]

    # Made anew: a new object, and the plan says what that means for shares and Teams.
    config = at(informat_server.url)
    plan = cli.plan(config)
    assert ("create_group", key) in {(c["action"], c["key"]) for c in plan["changes"]}
    assert any(
        w.startswith(f"group {key} was deleted on {day} and is made anew")
        and "Teams that used the old group will not follow" in w
        for w in plan["header"]["warnings"]
    )
    cli.apply(config)
    assert the_group(graph, nickname)["id"] != made["id"]
