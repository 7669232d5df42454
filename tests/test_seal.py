"""A saved plan is sealed: any edit after ``plan --out`` is refused, and apply derives expiry and
the policy verdict again instead of trusting the file's header."""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from provisioner.cli import main
from provisioner.errors import ConfigError
from provisioner.plan.model import Plan
from provisioner.plan.planfile import (
    PLAN_VALID_FOR,
    load_plan,
    load_sealed_plan,
    now,
    plan_to_json,
    save_plan,
    verify_plan_file,
)
from provisioner.plan.planner import Origin, Rules, make_plan
from provisioner.plan.policy import PolicyConfig
from provisioner.plan.seal import PlanKey, _check_private, key_path, load_key, seal
from tests.test_cli_mapping import sample_with_mappings
from tests.test_plan import account, desired, observed_from

HASH = "a" * 64
TARGET = "ldaps://dc.invalid OU=Provisioner,DC=school,DC=be"
POLICY = PolicyConfig(max_disable="2", freeze_leavers=[])
DAY = dt.date(2026, 10, 1)


def leavers_plan(leavers: int = 5, stayers: int = 5) -> Plan:
    """*leavers* accounts gone from the source: with ``max_disable: 2`` a policy-blocked plan."""
    everyone = [account(str(i), f"user{i}") for i in range(leavers + stayers)]
    observed = observed_from(desired(*everyone))
    origin = Origin(HASH, HASH, HASH, DAY, TARGET)
    return make_plan(
        desired(*everyone[leavers:]), observed, origin=origin, rules=Rules(policy=POLICY)
    )


def verify(plan: Plan, *, approved: bool = False, **extra: Any) -> Plan:
    options: dict[str, Any] = {
        "config_hash": HASH,
        "mappings_hash": HASH,
        "target": TARGET,
        "approved": approved,
        "policy": POLICY,
        **extra,
    }
    return verify_plan_file(plan, **options)


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    return key_path(tmp_path / "state.db")


@pytest.fixture
def key(key_file: Path) -> PlanKey:
    return load_key(key_file, create=True)


def saved(tmp_path: Path, plan: Plan, key: PlanKey | None) -> Path:
    path = tmp_path / "plan.json"
    save_plan(plan, path, key)
    return path


def edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """What an attacker without the key can do: edit the file and leave the seal as it was."""
    document = json.loads(path.read_text(encoding="utf-8"))
    change(document)
    path.write_text(json.dumps(document, indent=1), encoding="utf-8")


# -- the seal ----------------------------------------------------------------------------------


def test_a_sealed_plan_reads_back_exactly_and_keeps_its_policy_block(tmp_path, key, key_file):
    plan = leavers_plan()
    assert plan.counts() == {"disable": 5}
    assert plan.header.policy_blocked  # 5 disables past max_disable 2
    path = saved(tmp_path, plan, key)
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["seal"]["alg"] == "HMAC-SHA256"
    assert document["seal"]["key_id"] == key.id and len(document["seal"]["mac"]) == 64
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = load_sealed_plan(path, key_file)
    assert plan_to_json(loaded) == plan_to_json(plan)
    with pytest.raises(ConfigError, match="5 account disables exceed max_disable 2"):
        verify(loaded)
    assert verify(loaded, approved=True).header.policy_blocked == plan.header.policy_blocked


def test_the_seal_does_not_depend_on_whitespace_or_key_order(tmp_path, key, key_file):
    path = saved(tmp_path, leavers_plan(), key)
    document = json.loads(path.read_text(encoding="utf-8"))
    reordered = dict(reversed(list(document.items())))
    path.write_text(json.dumps(reordered, indent=4, sort_keys=False), encoding="utf-8")
    assert load_sealed_plan(path, key_file).counts() == {"disable": 5}


def _header(name: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda document: document["header"].__setitem__(name, value)


TAMPERING = {
    "a change's target": lambda d: d["changes"][0].__setitem__("target", "CN=Administrator"),
    "a change's precondition": lambda d: d["changes"][0]["precondition"].__setitem__(
        "id", "00000000-0000-0000-0000-000000000000"
    ),
    "an added disable": lambda d: d["changes"].append(copy.deepcopy(d["changes"][0])),
    "a removed change": lambda d: d["changes"].pop(),
    "header.policy_blocked emptied": _header("policy_blocked", []),
    "header.blocked": _header("blocked", ["nothing"]),
    "header.expires": _header("expires", "2099-01-01T00:00:00+00:00"),
    "header.created": _header("created", (now() - dt.timedelta(hours=1)).isoformat()),
    "header.managed_accounts": _header("managed_accounts", 1000),
    "header.target": _header("target", "ldaps://elsewhere.invalid DC=x"),
    "observations": lambda d: d["observations"]["left"].append("9"),
    "counts": lambda d: d["counts"].__setitem__("disable", 1),
}


@pytest.mark.parametrize("tamper", TAMPERING.values(), ids=TAMPERING.keys())
def test_any_edit_after_saving_is_refused(tmp_path, key, key_file, tamper):
    path = saved(tmp_path, leavers_plan(), key)
    edit(path, tamper)
    with pytest.raises(ConfigError, match="it was changed after it was saved"):
        load_sealed_plan(path, key_file)


def test_a_seal_recomputed_with_another_key_is_refused(tmp_path, key, key_file):
    """An attacker without the key makes a new seal with a key of their own: the key id gives it
    away; claiming the right key id instead leaves a MAC that does not match."""
    path = saved(tmp_path, leavers_plan(), key)
    own = load_key(tmp_path / "attacker.key", create=True)

    def lift_and_reseal(document: dict[str, Any]) -> None:
        document["header"]["policy_blocked"] = []
        document["seal"] = seal(document, own)

    edit(path, lift_and_reseal)
    with pytest.raises(ConfigError, match="sealed with another plan key") as refused:
        load_sealed_plan(path, key_file)
    assert "invalidates every saved plan" in str(refused.value)
    edit(path, lambda d: d["seal"].__setitem__("key_id", key.id))
    with pytest.raises(ConfigError, match="it was changed after it was saved"):
        load_sealed_plan(path, key_file)


@pytest.mark.parametrize(
    "seal_value", [None, {}, "x", {"alg": "HMAC-SHA256", "key_id": "", "mac": ""}]
)
def test_a_missing_or_empty_seal_is_refused(tmp_path, key, key_file, seal_value):
    path = saved(tmp_path, leavers_plan(), key)
    if seal_value is None:
        edit(path, lambda d: d.pop("seal"))
        reason = "it has no seal"
    else:
        edit(path, lambda d: d.__setitem__("seal", seal_value))
        reason = "no seal" if not isinstance(seal_value, dict) or not seal_value else "another"
    with pytest.raises(ConfigError, match=reason):
        load_sealed_plan(path, key_file)


def test_an_unsealed_plan_is_refused(tmp_path, key, key_file):
    path = saved(tmp_path, leavers_plan(), None)
    assert "seal" not in json.loads(path.read_text(encoding="utf-8"))
    with pytest.raises(ConfigError, match="it has no seal"):
        load_sealed_plan(path, key_file)


def test_a_deleted_or_replaced_key_invalidates_every_saved_plan(tmp_path, key, key_file):
    path = saved(tmp_path, leavers_plan(), key)
    key_file.unlink()
    with pytest.raises(ConfigError, match=r"there is no plan key .* make a new plan"):
        load_sealed_plan(path, key_file)
    rotated = load_key(key_file, create=True)  # what the next plan --out does
    assert rotated.id != key.id
    with pytest.raises(ConfigError, match=f"key id '{key.id}'.*has id '{rotated.id}'"):
        load_sealed_plan(path, key_file)


# -- the key file ------------------------------------------------------------------------------


def test_the_key_is_made_private_once_and_then_reused(tmp_path, key_file):
    first = load_key(key_file, create=True)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    content = key_file.read_bytes()
    second = load_key(key_file, create=True)
    assert key_file.read_bytes() == content and second.secret == first.secret
    assert len(first.secret) == 32 and first.id == second.id
    assert first.secret.hex() not in repr(first)


def test_a_key_readable_by_others_is_refused(tmp_path, key_file, key):
    key_file.chmod(0o640)
    with pytest.raises(ConfigError, match=r"readable or writable by others \(mode 0640\)"):
        load_key(key_file, create=True)


def test_a_key_that_is_a_link_is_refused(tmp_path, key_file):
    real = load_key(tmp_path / "elsewhere.key", create=True)
    key_file.symlink_to(real.path)
    with pytest.raises(ConfigError, match="is a symbolic link"):
        load_key(key_file, create=True)
    dangling = tmp_path / "dangling.key"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="is a symbolic link"):
        load_key(dangling, create=True)
    assert not (tmp_path / "nowhere").exists()  # nothing was created through the link


def test_a_key_of_another_user_is_refused():
    info = os.stat_result((0o100600, 0, 0, 1, os.geteuid() + 1, 0, 32, 0, 0, 0))
    with pytest.raises(ConfigError, match="owned by user id"):
        _check_private(Path("k"), info, windows=False)
    _check_private(Path("k"), info, windows=True)  # the folder's access list decides there


@pytest.mark.parametrize("content", ["", "zz", "00" * 8])
def test_a_damaged_key_is_refused(tmp_path, key_file, content):
    key_file.write_text(content)
    key_file.chmod(0o600)
    with pytest.raises(ConfigError, match="is damaged; delete it"):
        load_key(key_file, create=False)


# -- what apply derives again ------------------------------------------------------------------


def test_a_policy_block_is_derived_again_even_when_the_seal_is_valid(tmp_path, key, key_file):
    """A plan sealed with the right key whose header claims no block (made by someone with the
    key, or by a bug) still needs --approve: the counts come from the changes."""
    plan = leavers_plan()
    plan.header.policy_blocked = []
    path = saved(tmp_path, plan, key)
    loaded = load_sealed_plan(path, key_file)
    assert loaded.header.policy_blocked == []
    with pytest.raises(ConfigError, match="5 account disables exceed max_disable 2"):
        verify(loaded)
    approved = verify(loaded, approved=True)
    assert approved.header.policy_blocked == [
        "5 account disables exceed max_disable 2 (at most 2 of 10 managed accounts); if this is "
        "right, apply with --approve REASON"
    ]


def test_the_current_configurations_limits_apply(tmp_path, key, key_file):
    plan = leavers_plan(leavers=2)
    assert plan.header.policy_blocked == []
    loaded = load_sealed_plan(saved(tmp_path, plan, key), key_file)
    stricter = PolicyConfig(max_disable="1", freeze_leavers=[])
    with pytest.raises(ConfigError, match="2 account disables exceed max_disable 1"):
        verify(loaded, policy=stricter)


def test_a_block_in_the_file_stays_a_block(tmp_path, key, key_file):
    plan = leavers_plan(leavers=1)
    plan.header.blocked = ["Lln for 030569 answered with no rows"]
    plan.header.policy_blocked = ["a limit the planner found"]
    loaded = load_sealed_plan(saved(tmp_path, plan, key), key_file)
    with pytest.raises(ConfigError, match="the plan is blocked: Lln for 030569"):
        verify(loaded, approved=True)
    plan.header.blocked = []
    loaded = load_sealed_plan(saved(tmp_path, plan, key), key_file)
    with pytest.raises(ConfigError, match="exceeds policy limits: a limit the planner found"):
        verify(loaded)
    assert verify(loaded, approved=True).header.policy_blocked == ["a limit the planner found"]


def test_a_drop_since_the_last_run_is_derived_from_the_state_store(tmp_path, key, key_file):
    plan = leavers_plan(leavers=1)
    assert plan.header.persons == {"030569": 5}
    loaded = load_sealed_plan(saved(tmp_path, plan, key), key_file)
    verify(loaded, last_persons=("2026-09-30", {"030569": 6}))  # 1 fewer: within 20%
    with pytest.raises(ConfigError, match="school 030569 has 5 persons, 25 fewer than the 30"):
        verify(loaded, last_persons=("2026-09-30", {"030569": 30}))


def test_leaver_actions_inside_the_freeze_window_are_blocked_whatever_is_approved(
    tmp_path, key, key_file
):
    plan = leavers_plan(leavers=1)
    plan.header.source_as_of = "2026-07-15"  # the planner would have held the disable back
    loaded = load_sealed_plan(saved(tmp_path, plan, key), key_file)
    with pytest.raises(ConfigError, match=r"1 leaver action.* inside the freeze_leavers window"):
        verify(loaded, approved=True, policy=PolicyConfig(max_disable="2"))


def test_expiry_is_derived_from_the_creation_time_not_read(tmp_path, key, key_file):
    plan = leavers_plan(leavers=1)
    created = now() - PLAN_VALID_FOR - dt.timedelta(minutes=1)
    plan.header.created = created.isoformat()
    plan.header.expires = "2099-01-01T00:00:00+00:00"  # a lie, sealed by the key holder
    loaded = load_sealed_plan(saved(tmp_path, plan, key), key_file)
    expired = (created + PLAN_VALID_FOR).isoformat()
    with pytest.raises(ConfigError, match=re.escape(f"the plan expired at {expired}")):
        verify(loaded)
    fresh = leavers_plan(leavers=1)
    fresh.header.expires = "2000-01-01T00:00:00+00:00"  # the file's expiry is not read either
    assert (
        verify(fresh).header.expires
        == (dt.datetime.fromisoformat(fresh.header.created) + PLAN_VALID_FOR).isoformat()
    )


@pytest.mark.parametrize(
    "created, reason",
    [
        ((now() + dt.timedelta(hours=1)).isoformat(), "which is later than now"),
        ("2026-10-01T00:00:00", "is not a time with a zone"),
        ("gisteren", "is not a time with a zone"),
    ],
)
def test_a_creation_time_in_the_future_or_unreadable_is_refused(created, reason):
    plan = leavers_plan(leavers=1)
    plan.header.created = created
    with pytest.raises(ConfigError, match=reason):
        verify(plan)


def test_a_damaged_sealed_header_is_a_clear_refusal():
    plan = leavers_plan(leavers=1)
    plan.header.managed_accounts = "many"  # type: ignore[assignment]
    with pytest.raises(ConfigError, match="its header is damaged"):
        verify(plan)


# -- plan --out --------------------------------------------------------------------------------


def sample_with_state(tmp_path: Path) -> Path:
    config = sample_with_mappings(tmp_path)
    config.write_text(config.read_text() + "state: state.db\n")
    return config


def test_plan_without_out_writes_no_key_and_with_out_a_private_one_reused(tmp_path, capsys):
    config = sample_with_state(tmp_path)
    key_file = tmp_path / "state.db.plan-key"
    assert main(["plan", "--config", str(config)]) == 2
    assert not key_file.exists() and not (tmp_path / "state.db").exists()
    out = tmp_path / "plan.json"
    assert main(["plan", "--config", str(config), "--out", str(out)]) == 2
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert not (tmp_path / "state.db").exists()  # plan writes the key and nothing else
    content = key_file.read_bytes()
    first_seal = json.loads(out.read_text())["seal"]
    assert main(["plan", "--config", str(config), "--out", str(out)]) == 2
    assert key_file.read_bytes() == content
    assert json.loads(out.read_text())["seal"]["key_id"] == first_seal["key_id"]
    assert load_sealed_plan(out, key_file).counts()["create"] == 315
    schema = Path(__file__).parent.parent / "provisioner" / "schemas" / "plan.schema.json"
    jsonschema.validate(json.loads(out.read_text()), json.loads(schema.read_text()))


def test_plan_out_replaces_a_wide_file_and_never_writes_through_a_link(tmp_path, capsys):
    config = sample_with_state(tmp_path)
    out = tmp_path / "plan.json"
    out.write_text("old")
    out.chmod(0o644)
    assert main(["plan", "--config", str(config), "--out", str(out)]) == 2
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and load_plan(out).changes
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    link = tmp_path / "link.json"
    link.symlink_to(victim)
    capsys.readouterr()
    assert main(["plan", "--config", str(config), "--out", str(link)]) == 1
    assert "is a symbolic link; refusing to write through it" in capsys.readouterr().err
    assert victim.read_text() == "keep me"


def test_a_preview_without_a_state_store_is_saved_unsealed(tmp_path, capsys):
    config = sample_with_mappings(tmp_path)
    out = tmp_path / "plan.json"
    assert main(["plan", "--config", str(config), "--out", str(out)]) == 2
    assert "seal" not in json.loads(out.read_text())
    assert not list(tmp_path.glob("*.plan-key"))
