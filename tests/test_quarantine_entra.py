"""Quarantine against Entra ID (the real msgraph-sdk against the project's Graph server): the
Entra example mappings on the synthetic school with a few damaged records. Everyone else gets an
account, the damaged ones are listed with the reason, a person damaged later keeps their account
exactly as it was, and the nights converge."""

from __future__ import annotations

import copy

from provisioner.cli import main
from tests import test_entra
from tests.conftest import REFERENCE_DAY
from tests.fakes.informat_server import InformatServer
from tests.test_entra import users
from tests.test_quarantine import (
    check_first_night,
    damaged_school,
    undamaged_desired,
)

# The Graph server, the test clock and the command line of tests/test_entra.py, as fixtures here.
graph_ca, clock, graph, entra_env, cli = (
    test_entra.graph_ca,
    test_entra.clock,
    test_entra.graph,
    test_entra.entra_env,
    test_entra.cli,
)


def test_damaged_records_hold_only_their_persons_and_the_nights_converge(
    graph, informat_server, synthetic, entra_env, cli, capsys
):
    undamaged = undamaged_desired(entra_env(informat_server.url))
    school = damaged_school(synthetic)
    with InformatServer(school.data, today=REFERENCE_DAY) as server:
        config = entra_env(server.url)
        assert main(["validate", "--config", str(config)]) == 1  # while anyone is held
        assert f"pupils {school.huge} (school" in capsys.readouterr().out
        first = cli.plan(config)
        held = check_first_night(first, undamaged, school)
        cli.apply(config)
        created = {c["key"] for c in first["changes"] if c["action"] == "create"}
        assert set(users(graph)) == created
        # The second night, in text as a scheduler's log keeps it: the held persons are named.
        assert cli(["apply", "--config", str(config)]) == 0
        night = capsys.readouterr().out
        assert f"Held ({len(held)}): their accounts are left exactly as they are" in night
        assert f"pupils {school.huge} (school" in night
        third = cli.plan(config)
        assert third["changes"] == []
        assert {(h["kind"], h["key"]) for h in third["header"]["held"]} == held.keys()

    victim = school.spare
    before = copy.deepcopy(users(graph))
    with InformatServer(school.later(victim), today=REFERENCE_DAY) as server:
        config = entra_env(server.url)
        plan = cli.plan(config)
        (hold,) = [h for h in plan["header"]["held"] if h["key"] == victim]
        anchor = hold["anchor"]
        assert anchor in before and not plan["header"]["blocked"]
        assert [c for c in plan["changes"] if c["key"] == anchor] == []
        for change in plan["changes"]:
            assert anchor not in change["before"].get("members", [])
            assert anchor not in change["after"].get("members", [])
        assert plan["observations"]["left"] == []
        cli.apply(config)
        assert users(graph)[anchor] == before[anchor]
        assert cli.plan(config)["changes"] == []
