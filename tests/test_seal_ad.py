"""On the real Samba AD DC: a saved plan edited to lift its policy block, or to do more, is
refused with nothing applied; the untouched plan applies with --approve."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from provisioner.cli import current_user, main
from provisioner.plan.planfile import load_sealed_plan, save_plan
from provisioner.plan.seal import key_path, load_key, seal
from provisioner.state import StateStore
from tests import test_ad
from tests.conftest import REFERENCE_DAY
from tests.fakes.informat_server import InformatServer
from tests.scenarios import pupil
from tests.test_ad import users_below

ad_env = test_ad.ad_env  # the fixture: a managed root OU of its own, removed afterwards

LIFT = "max_disable 2"


def disabled(samba_dc, root: str) -> set[str]:
    return {
        key
        for key, user in users_below(samba_dc, root).items()
        if int(user["userAccountControl"]) & 2
    }


def runs(state: Path) -> list[dict[str, Any]]:
    with StateStore(state) as store:
        return store.runs()


def test_a_lifted_policy_block_is_refused_and_the_sealed_plan_applies_with_approve(
    samba_dc, informat_server, synthetic, ad_env, tmp_path, capsys
):
    config_for, root = ad_env
    state = tmp_path / "state.db"

    def config_with_limit(url: str) -> Path:
        config = config_for(url)
        text = config.read_text()
        config.write_text(text.replace("policy:\n", "policy:\n  max_disable: 2\n"))
        return config

    assert main(["apply", "--config", str(config_for(informat_server.url))]) == 0
    day2 = copy.deepcopy(synthetic)
    gone = {r["p_persoon"] for r in day2.rows["Lln"][::8]}
    gone_anchors = {pupil(key) for key in gone}
    day2.rows["Lln"] = [r for r in day2.rows["Lln"] if r["p_persoon"] not in gone]
    stayer = next(r["p_persoon"] for r in day2.rows["Lln"])
    with InformatServer(day2, today=REFERENCE_DAY) as server:
        config = config_with_limit(server.url)
        plan_file = tmp_path / "plan.json"
        assert main(["plan", "--config", str(config), "--out", str(plan_file)]) == 2
        original = plan_file.read_text(encoding="utf-8")
        document = json.loads(original)
        disables = [c for c in document["changes"] if c["action"] == "disable"]
        leavers = {c["key"] for c in disables}
        assert leavers <= gone_anchors and len(leavers) > 2
        blocks = document["header"]["policy_blocked"]
        assert f"{len(leavers)} account disables exceed {LIFT}" in blocks[0]
        history = runs(state)
        capsys.readouterr()

        def refused(edited: dict[str, Any], reason: str, *extra: str) -> None:
            plan_file.write_text(json.dumps(edited, indent=1), encoding="utf-8")
            assert main(["apply", "--config", str(config), str(plan_file), *extra]) == 1
            err = capsys.readouterr().err
            assert reason in err, err
            assert disabled(samba_dc, root) == set()  # nothing applied
            refusal, *before = runs(state)  # and the refusal is in the history
            assert before == history and refusal["outcome"] == "failed"
            assert reason in refusal["summary"]["error"]
            history.insert(0, refusal)

        # The block emptied, the seal left as it was (the attacker has no key).
        lifted = copy.deepcopy(document)
        lifted["header"]["policy_blocked"] = []
        refused(lifted, "it was changed after it was saved")
        # ... or sealed again with a key of the attacker's own.
        own = load_key(tmp_path / "attacker.key", create=True)
        lifted["seal"] = seal(lifted, own)
        refused(lifted, "it was sealed with another plan key")
        # ... claiming this installation's key id.
        lifted["seal"]["key_id"] = document["seal"]["key_id"]
        refused(lifted, "it was changed after it was saved")
        # A disable added for someone who is still in the source, even with --approve.
        more = copy.deepcopy(document)
        extra = copy.deepcopy(disables[0])
        extra["key"] = pupil(stayer)
        more["changes"].append(extra)
        refused(more, "it was changed after it was saved", "--approve", "end of year")
        # Without its seal.
        bare = copy.deepcopy(document)
        del bare["seal"]
        refused(bare, "it has no seal")

        # Sealed with the right key but claiming no block (someone with the key, or a bug):
        # the block is derived again from the changes and still needs --approve.
        plan_file.write_text(original, encoding="utf-8")
        plan = load_sealed_plan(plan_file, key_path(state))
        plan.header.policy_blocked = []
        plan.header.policy_blocks = []
        save_plan(plan, plan_file, load_key(key_path(state), create=False))
        assert json.loads(plan_file.read_text())["header"]["policy_blocked"] == []
        # Sound but blocked: exit 2 (as a blocked night), the blocks one a line, kept in history.
        assert main(["apply", "--config", str(config), str(plan_file)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("The plan was not applied:\n")
        assert all(f"  - {block}\n" in err for block in blocks), err
        assert f"--config {config} {plan_file} --approve leavers`" in err
        assert disabled(samba_dc, root) == set()  # nothing applied
        assert runs(state)[0]["outcome"] == "blocked"

        # The untouched plan applies with --approve, and the run history names what it overrode.
        plan_file.write_text(original, encoding="utf-8")
        assert main(["apply", "--config", str(config), str(plan_file), "--approve", "leavers"]) == 0
        assert disabled(samba_dc, root) == leavers
        latest = runs(state)[0]
        # (``leavers`` is a category: it approves exactly the disables' blocks, and no reason)
        assert latest["summary"]["approved"] == {
            "reason": None,
            "categories": ["leavers"],
            "overrides": blocks,
            "by": current_user(),
        }
