"""Quarantine on the real Samba DC: the default mappings on the synthetic school with a few
damaged records. Everyone else gets an account, the damaged ones are listed with the reason, a
person damaged later keeps their account exactly as it was, and the nights converge."""

from __future__ import annotations

from provisioner.cli import main
from tests import test_ad
from tests.conftest import REFERENCE_DAY
from tests.fakes.informat_server import InformatServer
from tests.test_ad import plan_json, users_below
from tests.test_quarantine import (
    check_first_night,
    damaged_school,
    undamaged_desired,
)

ad_env = test_ad.ad_env  # the fixture: a managed root OU of its own, removed afterwards


def test_damaged_records_hold_only_their_persons_and_the_nights_converge(
    samba_dc, informat_server, synthetic, ad_env, capsys
):
    config_for, root = ad_env
    undamaged = undamaged_desired(config_for(informat_server.url))
    school = damaged_school(synthetic)
    with InformatServer(school.data, today=REFERENCE_DAY) as server:
        config = config_for(server.url)
        assert main(["validate", "--config", str(config)]) == 1  # while anyone is held
        assert f"pupils {school.huge} (school" in capsys.readouterr().out
        first = plan_json(config, capsys)
        held = check_first_night(first, undamaged, school)
        assert main(["apply", "--config", str(config)]) == 0
        capsys.readouterr()
        created = {c["key"] for c in first["changes"] if c["action"] == "create"}
        assert set(users_below(samba_dc, root)) == created
        # the second night changes nothing and still lists the held persons
        assert main(["apply", "--config", str(config)]) == 0
        capsys.readouterr()
        third = plan_json(config, capsys)
        assert third["changes"] == []
        assert {(h["kind"], h["key"]) for h in third["header"]["held"]} == held.keys()

    # A person with an account whose record is damaged later: held, their account untouched
    # (not renamed, moved, updated or disabled; still in their groups).
    victim = school.spare
    before = users_below(samba_dc, root)
    with InformatServer(school.later(victim), today=REFERENCE_DAY) as server:
        config = config_for(server.url)
        plan = plan_json(config, capsys)
        (hold,) = [h for h in plan["header"]["held"] if h["key"] == victim]
        anchor = hold["anchor"]
        assert anchor in before and not plan["header"]["blocked"]
        assert [c for c in plan["changes"] if c["key"] == anchor] == []
        for change in plan["changes"]:
            assert anchor not in change["before"].get("members", [])
            assert anchor not in change["after"].get("members", [])
        assert plan["observations"]["left"] == []
        assert main(["apply", "--config", str(config)]) == 0
        capsys.readouterr()
        assert users_below(samba_dc, root)[anchor] == before[anchor]
        assert plan_json(config, capsys)["changes"] == []
