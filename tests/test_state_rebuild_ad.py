"""``provisioner state rebuild`` on the real Samba DC: the state store of two applied nights is
deleted and rebuilt from the directory; the next plan is empty, a newcomer with a name already in
use gets the next free one, and a disabled leaver is not deleted earlier than the old store would
have let it be."""

# The DC configuration and helpers are test_ad's, imported by name.
# ruff: noqa: F401, F811

from __future__ import annotations

import copy
import datetime as dt
import json
import sqlite3
from pathlib import Path

from provisioner.cli import main
from provisioner.state import StateStore
from tests.conftest import REFERENCE_DAY
from tests.fakes.informat_server import InformatServer
from tests.scenarios import pupil
from tests.test_ad import ad_env, users_below

NEWCOMER = "99999992"
LIFECYCLE = "lifecycle:\n  disabled_ou: [Uitgeschakeld]\n  delete_after_days: {pupils: 90}\n"


def plan_of(config: Path, capsys, day: dt.date | None = None) -> tuple[int, dict]:
    seams = {"today": day} if day else {}
    code = main(["plan", "--config", str(config), "--json"], source_seams=seams)
    return code, json.loads(capsys.readouterr().out)


def point_at(config: Path, url: str) -> None:
    """The configuration reads the Informat server at *url*."""
    lines = config.read_text().splitlines()
    config.write_text(
        "\n".join(f"    url: {url}" if line.startswith("    url: http") else line for line in lines)
        + "\n"
    )


def test_a_lost_state_store_is_rebuilt_from_the_dc(
    samba_dc, informat_server, synthetic, ad_env, capsys
):
    config_for, root = ad_env
    config = config_for(informat_server.url)
    config.write_text(LIFECYCLE + config.read_text())
    state = config.parent / "state.db"
    today = dt.date.today()  # a live read is dated today: the plans' day

    # Night 1: everyone. Night 2: one pupil has left: disabled, to the disabled-accounts OU.
    assert main(["apply", "--config", str(config)]) == 0
    key = synthetic.notable["diacritics"]
    leaver = pupil(key)
    without = copy.deepcopy(synthetic)
    without.rows["Lln"] = [r for r in synthetic.rows["Lln"] if r["p_persoon"] != key]
    with InformatServer(without, today=REFERENCE_DAY) as server:
        point_at(config, server.url)
        assert main(["apply", "--config", str(config)]) == 0
        capsys.readouterr()
        users = users_below(samba_dc, root)
        assert int(users[leaver]["userAccountControl"]) & 2
        # As if the leaver had been disabled a month ago: the old store would delete on day 60.
        db = sqlite3.connect(state)
        db.execute(
            "UPDATE leavers SET since = date(since, '-30 days'), disabled = date(disabled, '-30 days')"
        )
        db.commit()
        db.close()
        with StateStore(state) as old:
            old_disabled = old.disabled_since()[leaver]
            old_ids = old.anchor_ids("account")
            old_groups = old.anchor_ids("group")
            old_kinds = old.kinds()
        assert old_disabled == today - dt.timedelta(days=30)

        # The store is lost.
        state.unlink()
        assert main(["state", "rebuild", "--config", str(config)]) == 0
        out = capsys.readouterr().out
        assert f"rebuilt the state store {state}" in out and "Not recoverable" in out
        assert main(["state", "rebuild", "--config", str(config)]) == 1  # never over a store
        assert "rebuild only replaces a lost one" in capsys.readouterr().err

        with StateStore(state) as rebuilt:
            assert rebuilt.anchor_ids("account") == old_ids
            assert rebuilt.anchor_ids("group") == old_groups
            issued = rebuilt.issued_names()
            held = {u[a] for u in users.values() for a in ("sAMAccountName", "mail")}
            assert held <= issued  # every name in use, the leaver's too
            assert rebuilt.issued_to()[leaver] == users[leaver]["sAMAccountName"]
            # Kinds read from the anchors: every account's, the disabled leaver's too.
            assert rebuilt.kinds() == {anchor: old_kinds[anchor] for anchor in old_ids}
            assert rebuilt.disabled_since() == {leaver: today}  # restarted, never shortened
            assert rebuilt.disabled_since()[leaver] >= old_disabled
            (run,) = rebuilt.runs()
            assert run["command"] == "state rebuild" and run["outcome"] == "ok"
            assert run["summary"]["disabled"] == 1
            assert "lln-" not in json.dumps(run["summary"])  # counts, no one's name

        # The next plan is empty.
        code, plan = plan_of(config, capsys)
        assert (code, plan["changes"]) == (0, [])
        # The leaver is deleted 90 days after the rebuild, not 60 days as the old store had it.
        code, plan = plan_of(config, capsys, today + dt.timedelta(days=89))
        assert ("delete", leaver) not in {(c["action"], c["key"]) for c in plan["changes"]}
        code, plan = plan_of(config, capsys, today + dt.timedelta(days=90))
        assert ("delete", leaver) in {(c["action"], c["key"]) for c in plan["changes"]}

    # A newcomer who would get a name in use (a namesake of a pupil) gets the next free one.
    namesake = next(r for r in without.rows["Lln"] if pupil(r["p_persoon"]) in users)
    taken = users[pupil(namesake["p_persoon"])]["sAMAccountName"]
    with_newcomer = copy.deepcopy(without)
    with_newcomer.rows["Lln"].append({**copy.deepcopy(namesake), "p_persoon": NEWCOMER})
    with InformatServer(with_newcomer, today=REFERENCE_DAY) as server:
        point_at(config, server.url)
        code, plan = plan_of(config, capsys)
        (create,) = [
            c for c in plan["changes"] if c["action"] == "create" and c["kind"] == "account"
        ]
        assert create["key"] == pupil(NEWCOMER)
        given = create["after"]["username"]
        assert given.casefold() != taken.casefold()
        assert given.casefold() not in {n.casefold() for n in issued}
