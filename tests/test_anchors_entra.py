"""Against the Graph-compatible server with the real msgraph-sdk: a tenant provisioned with the old
default anchors (the bare p_persoon in employeeId) is carried over to lln-/pers- in place."""

# The Graph server, the clock and the command line are test_entra's fixtures, imported by name.
# ruff: noqa: F401, F811

from __future__ import annotations

import re
import shutil
from pathlib import Path

from tests.test_entra import (
    ROOT,
    cli,
    clock,
    entra_env,
    graph,
    graph_ca,
    group_anchors,
    users,
)


def old_default_mappings(folder: Path) -> Path:
    """The shipped Entra mappings as they were before: no anchor, no anchor_was."""
    shutil.copytree(ROOT / "examples/entra/mappings", folder)
    for name in ("pupils.yaml", "staff.yaml"):
        path = folder / name
        old = re.sub(r"\n    anchor(_was)?: .*", "", path.read_text(encoding="utf-8"))
        assert "\n    anchor: " not in old and "\n    anchor_was: " not in old
        path.write_text(old, encoding="utf-8")
    return folder


def test_old_default_anchors_are_carried_over_in_place_in_entra(
    graph, informat_server, entra_env, cli, tmp_path
):
    cli.apply(entra_env(informat_server.url, mappings=old_default_mappings(tmp_path / "old")))
    before = {user["id"]: dict(user) for user in users(graph).values()}
    assert before and all(u["employeeId"].isdigit() for u in before.values())
    members_before = {
        g["mailNickname"]: group_anchors(graph, g["mailNickname"]) for g in graph.groups.values()
    }

    config = entra_env(informat_server.url)  # the shipped mappings: lln-/pers- and anchor_was
    plan = cli.plan(config)
    assert {c["action"] for c in plan["changes"]} == {"adopt"}  # nothing made, disabled, moved
    assert len(plan["changes"]) == len(before)
    cli.apply(config)

    after = {user["id"]: user for user in users(graph).values()}
    assert after.keys() == before.keys()  # the same objects
    for uid, was in before.items():
        now = after[uid]
        prefix = "pers-" if was["userPrincipalName"].endswith("@school.be") else "lln-"
        assert now["employeeId"] == prefix + was["employeeId"]
        assert len(now["employeeId"]) <= 16
        assert (now["userPrincipalName"], now["mailNickname"], now["accountEnabled"]) == (
            was["userPrincipalName"],
            was["mailNickname"],
            True,
        )
    renamed = {was["employeeId"]: after[uid]["employeeId"] for uid, was in before.items()}
    for nickname, members in members_before.items():  # the same members, by their new anchors
        assert group_anchors(graph, nickname) == {renamed[m] for m in members}
    assert cli.plan(config)["changes"] == []
