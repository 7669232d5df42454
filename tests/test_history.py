"""``provisioner history``: the runs the state store keeps — applied, failed, blocked, approved —
newest first, as text and as JSON; and a blocked night is kept like any other."""

from __future__ import annotations

import json
from pathlib import Path

from provisioner.apply import record_blocked
from provisioner.cli import main
from provisioner.plan.model import Plan, PlanHeader, PolicyBlock
from provisioner.state import StateStore
from tests.test_cli_mapping import sample_with_mappings


def config_with_state(tmp_path: Path) -> Path:
    config = sample_with_mappings(tmp_path)
    config.write_text(config.read_text() + "state: state.db\n")
    return config


def blocked_plan() -> Plan:
    header = PlanHeader(
        "2026-09-01T02:00:00+00:00",
        "2026-09-01T14:00:00+00:00",
        "c",
        "m",
        "s",
        "Active Directory",
        "2026-09-01",
        policy_blocked=["62 account disables exceed max_disable 5%"],
        policy_blocks=[PolicyBlock("leavers", "62 account disables exceed max_disable 5%")],
    )
    return Plan(header, [])


def test_history_lists_every_kind_of_night_newest_first(tmp_path, capsys):
    config = config_with_state(tmp_path)
    assert main(["history", "--config", str(config)]) == 0
    assert capsys.readouterr().out.strip() == (
        "No runs yet: the history starts with the first run or apply."
    )
    with StateStore(tmp_path / "state.db") as store:
        quiet = store.start_run("apply")
        store.finish_run(quiet, "ok", {"applied": 0, "skipped": 0, "failed": 0})
        record_blocked(blocked_plan(), store)
        approved = store.start_run("apply")
        store.finish_run(
            approved,
            "ok",
            {
                "applied": 214,
                "approved": {"reason": "new classes", "categories": ["moves"]},
                "waiting_for": [
                    "waiting for approval: 62 accounts to disable (… --approve leavers)"
                ],
            },
        )
        failed = store.start_run("apply")
        store.finish_run(failed, "failed", {"applied": 3, "failed": 1})
    assert main(["history", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if not line.startswith(" ")]
    assert [line.rsplit(": ", 1)[1] for line in lines] == ["failed", "ok", "blocked", "ok"]
    assert "  3 applied, 1 failed" in out
    assert "  214 applied\n  approved (moves): new classes\n" in out
    assert "  waiting for approval: 62 accounts to disable (… --approve leavers)" in out
    assert "  blocked by policy (leavers): 62 account disables exceed max_disable 5%" in out
    assert main(["history", "--config", str(config), "--json", "--last", "2"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert [r["outcome"] for r in runs] == ["failed", "ok"]
