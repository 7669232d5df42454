"""``provisioner state rebuild`` on the Graph server: the state store of two applied nights is
deleted and rebuilt from the tenant; the next plan is empty and the disabled leaver's deletion
grace restarts today."""

# The Graph server, the clock and the command line are test_entra's fixtures, imported by name.
# ruff: noqa: F401, F811

from __future__ import annotations

import copy
import datetime as dt

from provisioner.state import StateStore
from tests.conftest import REFERENCE_DAY
from tests.fakes.informat_server import InformatServer
from tests.scenarios import pupil
from tests.test_entra import cli, clock, entra_env, graph, graph_ca, users


def test_a_lost_state_store_is_rebuilt_from_the_tenant(
    graph, informat_server, synthetic, entra_env, capsys, cli
):
    cli.apply(entra_env(informat_server.url))
    key = synthetic.notable["diacritics"]
    leaver = pupil(key)
    without = copy.deepcopy(synthetic)
    without.rows["Lln"] = [r for r in synthetic.rows["Lln"] if r["p_persoon"] != key]
    with InformatServer(without, today=REFERENCE_DAY) as server:
        config = entra_env(server.url)
        cli.apply(config)
        state = config.parent / "state.db"
        with StateStore(state) as old:
            old_ids = old.anchor_ids("account")
            old_groups = old.anchor_ids("group")
            old_kinds = old.kinds()
            old_disabled = old.disabled_since()
        assert set(old_disabled) == {leaver}

        state.unlink()
        assert cli(["state", "rebuild", "--config", str(config)]) == 0
        assert "rebuilt the state store" in capsys.readouterr().out

        tenant = users(graph)
        with StateStore(state) as rebuilt:
            assert rebuilt.anchor_ids("account") == old_ids
            assert rebuilt.anchor_ids("group") == old_groups
            assert rebuilt.kinds() == {anchor: old_kinds[anchor] for anchor in old_ids}
            names = {
                user[attribute]
                for user in tenant.values()
                for attribute in ("mailNickname", "userPrincipalName")
            }
            assert names <= rebuilt.issued_names()
            assert rebuilt.issued_to()[leaver] == tenant[leaver]["mailNickname"]
            assert rebuilt.disabled_since() == {leaver: dt.date.today()}
            assert rebuilt.disabled_since()[leaver] >= old_disabled[leaver]
        assert cli.plan(config)["changes"] == []
