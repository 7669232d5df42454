"""Approvals in steps: every policy block has a category, ``apply --approve moves`` lets only that
category through and leaves the changes of the other blocked categories waiting (with what
depends on them), the run history keeps each step, and the reports say which command approves
what. Pure tests first; then the September steps through the CLI on the real Samba DC."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from provisioner.cli import current_user, main
from provisioner.errors import ConfigError
from provisioner.plan.lifecycle import LifecycleConfig
from provisioner.plan.model import (
    Category,
    Change,
    Plan,
    PlanFormatError,
    PlanHeader,
    PolicyBlock,
)
from provisioner.plan.planfile import load_sealed_plan, plan_to_json, save_plan, verify_plan_file
from provisioner.plan.planner import Memory, Origin, Rules, make_plan
from provisioner.plan.policy import (
    Approval,
    PolicyConfig,
    apply_policy,
    drop_blocks,
    leave_out_unapproved,
    parse_approval,
)
from provisioner.plan.seal import key_path, load_key
from provisioner.report.html import render_html
from provisioner.report.plan import render_approval, render_plan
from provisioner.state import StateStore
from tests.conftest import REFERENCE_DAY
from tests.fakes.informat_server import InformatServer
from tests.test_ad import ad_env as ad_env  # a fixture: the DC tests below use it
from tests.test_ad import users_below
from tests.test_plan import account, desired, observed_from

SCHEMA = json.loads(
    (Path(__file__).parent.parent / "provisioner/schemas/plan.schema.json").read_text()
)
HASH = "b" * 64
TARGET = "ldaps://dc.invalid OU=Provisioner,DC=school,DC=be"
DAY = dt.date(2026, 9, 1)
POLICY = PolicyConfig(max_move="2", max_disable="2", max_delete_groups="0", freeze_leavers=[])
RULES = Rules(policy=POLICY, lifecycle=LifecycleConfig(disabled_ou=["Uitgeschakeld"]))
MOVERS = ("0", "1", "2", "3")
LEAVERS = ("4", "5", "6")


def september(policy: PolicyConfig = POLICY) -> Plan:
    """1 September: four pupils move from 1A to 2A, three graduated, one is new, and the group of
    a class archived a year ago is deleted. Over max_move, max_disable and max_delete_groups."""
    june = [account(str(i), f"user{i}") for i in range(20)]
    before = desired(*june, groups={"klas-1A": {a.anchor for a in june}, "klas-6B": {"4", "5"}})
    now = [
        account(a.anchor, a.username, "2A" if a.anchor in MOVERS else "1A")
        for a in june
        if a.anchor not in LEAVERS
    ]
    now.append(account("99", "nieuw"))
    after = desired(*now, groups={"klas-1A": {a.anchor for a in now}})
    origin = Origin(HASH, HASH, HASH, DAY, TARGET)
    rules = Rules(policy=policy, lifecycle=RULES.lifecycle)
    observed = observed_from(before)
    # klas-6B was archived a year ago: its deletion is due (delete_groups_after_days: 365).
    (old_class,) = [g for g in observed.groups if g.key == "klas-6B"]
    old_class.archived = "2025-08-01"
    memory = Memory(
        schools={a.anchor: "030569" for a in june},  # the graduates' school too
        archived={"klas-6B": dt.date(2025, 8, 1)},
    )
    return make_plan(after, observed, origin=origin, rules=rules, memory=memory)


def actions(changes: list[Change]) -> set[tuple[str, str]]:
    return {(c.action, c.key) for c in changes}


# -- categories --------------------------------------------------------------------------------


def test_every_policy_block_names_its_category_and_a_leavers_move_counts_with_the_leavers():
    plan = september()
    blocks = {b.category: b.message for b in plan.header.policy_blocks if b.school is None}
    assert set(blocks) == {Category.LEAVERS, Category.MOVES, Category.GROUPS}
    assert blocks[Category.LEAVERS].startswith("3 account disables exceed max_disable 2")
    # 4 class moves; the 3 graduates' moves to the disabled-accounts OU are not class moves.
    assert blocks[Category.MOVES].startswith("4 account moves exceed max_move 2")
    assert blocks[Category.GROUPS].startswith("1 group deletes exceed max_delete_groups 0")
    assert plan.header.policy_blocked == [b.message for b in plan.header.policy_blocks]
    # … and the categories survive the plan file's JSON.
    document = plan_to_json(plan)
    assert document["header"]["policy_blocks"][0]["category"] in {"leavers", "moves", "groups"}
    assert PlanHeader(**document["header"]).policy_blocks == plan.header.policy_blocks
    jsonschema.validate(json.loads(json.dumps(document)), SCHEMA)
    document["header"]["policy_blocks"][0]["category"] = "everything"
    with pytest.raises(PlanFormatError, match="unknown category 'everything'"):
        PlanHeader(**document["header"])


def test_group_deletes_have_their_own_limit_a_count_or_a_share_of_the_managed_groups():
    deletes = [Change("delete_group", "group", f"klas-{i}", f"dn-{i}") for i in range(11)]
    default = apply_policy(deletes, PolicyConfig(), managed_accounts=0, day=DAY, managed_groups=90)
    assert default.blocked == [
        "11 group deletes exceed max_delete_groups 10 (at most 10 of 90 managed groups); if "
        "this is right, apply with --approve REASON"
    ]
    assert default.blocks[0].category == Category.GROUPS
    assert not apply_policy(deletes[:10], PolicyConfig(), managed_accounts=0, day=DAY).blocks
    share = PolicyConfig(max_delete_groups="10%")
    assert apply_policy(deletes[:6], share, managed_accounts=0, day=DAY, managed_groups=50).blocks
    assert not apply_policy(
        deletes[:5], share, managed_accounts=0, day=DAY, managed_groups=50
    ).blocks


def test_a_drop_is_a_category_of_its_own_about_one_school():
    (block,) = drop_blocks({"030569": 590, "030577": 300}, ("2026-06-30", {"030577": 400}), "20%")
    assert (block.category, block.school) == (Category.DROP, "030577")
    assert block.message.startswith("school 030577 has 300 persons, 100 fewer than the 400")


def test_the_limit_is_read_from_the_configuration_with_a_default_of_ten(tmp_path):
    from provisioner.config import load_config
    from tests.test_cli_mapping import sample_with_mappings

    config = sample_with_mappings(tmp_path)
    assert load_config(config).policy.max_delete_groups == "10"
    config.write_text(config.read_text() + "policy:\n  max_delete_groups: lots\n")
    with pytest.raises(ConfigError, match="max_delete_groups"):
        load_config(config)


# -- what --approve means ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "reason", "categories", "kept_reason"),
    [
        ("moves", None, {"moves"}, None),
        ("moves,renames", "new classes", {"moves", "renames"}, "new classes"),
        ("Moves, Renames", None, {"moves", "renames"}, None),
        ("leaver", None, {"leavers"}, None),  # the singular is the same category
        ("groups,drop,updates", None, {"groups", "drop", "updates"}, None),
        ("end of the school year", None, None, "end of the school year"),
        ("yes", None, None, "yes"),  # one word that is no category: a reason, as before
    ],
)
def test_category_words_are_a_selection_and_anything_else_a_reason_approving_all(
    typed, reason, categories, kept_reason
):
    approval = parse_approval(typed, reason)
    assert approval is not None
    assert approval.categories == (None if categories is None else frozenset(categories))
    assert approval.reason == kept_reason


@pytest.mark.parametrize(
    ("typed", "reason", "message"),
    [
        ("mvoes", None, "'mvoes' is not a category (did you mean 'moves'?)"),
        ("moves,leaverz", None, "'leaverz' is not a category (did you mean 'leavers'?)"),
        ("moves,everything", None, "'everything' is not a category. Categories: leavers"),
        ("  ", None, "--approve needs a reason"),
        ("end of year", "why", "--reason goes with --approve CATEGORY"),
        (None, "why", "--reason goes with --approve CATEGORY"),
    ],
)
def test_what_looks_like_a_category_but_is_none_is_refused_never_approves_all(
    typed, reason, message
):
    with pytest.raises(ConfigError) as caught:
        parse_approval(typed, reason)
    assert message in str(caught.value)
    assert parse_approval(None) is None


def test_a_mistyped_approval_is_refused_before_anything_is_read(tmp_path, capsys):
    from tests.test_cli_mapping import sample_with_mappings

    config = sample_with_mappings(tmp_path)  # no target: the approval is checked first
    assert main(["apply", "--config", str(config), "--approve", "moves,leaverz"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --approve moves,leaverz: 'leaverz' is not a category")
    assert "Traceback" not in err
    assert main(["apply", "--config", str(config), "--reason", "why"]) == 1
    assert "--reason goes with --approve CATEGORY" in capsys.readouterr().err


# -- leaving out what is not approved ----------------------------------------------------------


def test_approving_moves_leaves_the_leavers_and_the_group_deletes_waiting():
    plan = september()
    selection = leave_out_unapproved(plan, Approval(None, frozenset({Category.MOVES})))
    kept = actions(selection.plan.changes)
    assert {("move", k) for k in MOVERS} <= kept
    assert ("create", "99") in kept  # not blocked: the new pupil comes in
    assert {("update", k) for k in MOVERS} <= kept  # their department follows the class
    assert ("create_ou", "Leerlingen/2A") in kept
    left_out = actions(plan.changes) - kept
    # The graduates' disables wait, and with them their moves to the disabled-accounts OU: a
    # disabled account's move never happens without its disable.
    assert left_out == {
        *(("disable", k) for k in LEAVERS),
        *(("move", k) for k in LEAVERS),
        ("delete_group", "klas-6B"),
        ("create_ou", "Uitgeschakeld"),  # made when the first account goes into it
    }
    assert selection.left_out == {
        "leavers": {"disable": 3, "move": 3},
        "groups": {"delete_group": 1},
    }
    assert [w.describe() for w in selection.waiting] == [
        "waiting for approval: 3 accounts to move to the disabled-accounts OU, "
        "3 accounts to disable (provisioner apply "
        "--approve leavers)",
        "waiting for approval: 1 group to delete (provisioner apply --approve groups)",
    ]
    assert {b.category for b in selection.approved} == {Category.MOVES}
    assert {b.category for b in selection.unapproved} == {Category.LEAVERS, Category.GROUPS}
    # The same header and observations: only changes are left out, none is added or altered.
    assert selection.plan.header is plan.header
    assert selection.plan.observations is plan.observations
    assert all(any(c is k for k in plan.changes) for c in selection.plan.changes)


def test_approving_the_leavers_lets_their_moves_through_and_holds_the_class_moves():
    plan = september()
    selection = leave_out_unapproved(plan, parse_approval("leavers,groups"))
    kept = actions(selection.plan.changes)
    assert {("disable", k) for k in LEAVERS} | {("move", k) for k in LEAVERS} <= kept
    assert ("create_ou", "Uitgeschakeld") in kept
    assert ("delete_group", "klas-6B") in kept
    assert not {("move", k) for k in MOVERS} & kept
    assert ("create_ou", "Leerlingen/2A") not in kept  # its pupils wait: so does the OU
    # a class move's update (its department) waits with the move
    assert selection.left_out == {"moves": {"move": 4, "update": 4}}


def test_a_reason_approves_every_category_and_no_approval_leaves_every_blocked_change_out():
    plan = september()
    everything = leave_out_unapproved(plan, parse_approval("start of the school year"))
    assert everything.plan.changes == plan.changes and not everything.waiting
    assert {b.category for b in everything.approved} == {"leavers", "moves", "groups"}
    nothing = leave_out_unapproved(plan, None)
    assert set(nothing.left_out) == {"leavers", "moves", "groups"}


def test_a_drop_holds_back_the_leavers_of_its_school_until_it_is_approved_too():
    plan = september(policy=PolicyConfig(max_move="2", max_disable="2", freeze_leavers=[]))
    plan.header.policy_blocks.append(PolicyBlock(Category.DROP, "school 030569 fell", "030569"))
    only_leavers = leave_out_unapproved(plan, parse_approval("leavers,moves"))
    assert only_leavers.left_out == {"drop": {"disable": 3, "move": 3}}
    assert only_leavers.waiting[0].describe().endswith("(provisioner apply --approve drop)")
    both = leave_out_unapproved(plan, parse_approval("leavers,moves,drop"))
    assert not both.waiting and both.plan.changes == plan.changes
    # A drop in another school does not hold these leavers back.
    plan.header.policy_blocks[-1] = PolicyBlock(Category.DROP, "030577 fell", "030577")
    assert not leave_out_unapproved(plan, parse_approval("leavers,moves")).waiting


def test_a_block_of_no_category_can_only_be_approved_as_a_whole():
    plan = september()
    plan.header.policy_blocked.append("a limit an older version found")
    with pytest.raises(ConfigError, match="a policy block without a category"):
        leave_out_unapproved(plan, parse_approval("leavers,moves,groups"))
    assert not leave_out_unapproved(plan, parse_approval("we checked it")).waiting


# -- a saved plan ------------------------------------------------------------------------------


def test_a_saved_plan_is_rechecked_and_a_selection_leaves_out_what_the_changes_say(tmp_path):
    """The blocks come from the changes, whatever the (sealed) header claims: a header that
    names none still leaves the leavers waiting under --approve moves."""
    plan = september()
    plan.header.policy_blocks = []
    plan.header.policy_blocked = []
    key_file = key_path(tmp_path / "state.db")
    path = tmp_path / "plan.json"
    save_plan(plan, path, load_key(key_file, create=True))
    loaded = load_sealed_plan(path, key_file)
    assert loaded.header.policy_blocks == []
    options: dict[str, Any] = {
        "config_hash": HASH,
        "mappings_hash": HASH,
        "target": TARGET,
        "policy": POLICY,
    }
    with pytest.raises(ConfigError) as refused:
        verify_plan_file(loaded, approved=False, **options)
    assert "--approve leavers, --approve moves, --approve groups" in str(refused.value)
    verified = verify_plan_file(loaded, approved=True, **options)
    assert {b.category for b in verified.header.policy_blocks} == {"leavers", "moves", "groups"}
    selection = leave_out_unapproved(verified, parse_approval("moves"))
    assert selection.left_out == {
        "leavers": {"disable": 3, "move": 3},
        "groups": {"delete_group": 1},
    }
    # A configuration more lenient at apply time: the moves no longer wait.
    lenient = {**options, "policy": PolicyConfig(**{**POLICY.__dict__, "max_move": "100%"})}
    verified = verify_plan_file(loaded, approved=True, **lenient)
    assert {b.category for b in verified.header.policy_blocks} == {"leavers", "groups"}
    selection = leave_out_unapproved(verified, parse_approval("leavers"))
    assert selection.left_out == {"groups": {"delete_group": 1}}


# -- the run history -----------------------------------------------------------------------------


def test_the_run_history_keeps_each_step_and_a_waiting_drop_keeps_the_old_baseline(tmp_path):
    from provisioner.apply import apply_plan
    from tests.test_targets_base import Toy

    class Directory(Toy):
        """The in-memory directory of the target base's tests, applying a whole plan."""

        def apply_all(self, changes, passwords):  # type: ignore[no-untyped-def]
            for index, change in enumerate(changes):
                yield self.run(change, passwords.get(index))

    leaver = Change("disable", "account", "1", "dn-1", precondition={"id": "id-1", "enabled": True})
    newcomer = Change(
        "create", "account", "2", "dn-2", after={"username": "bo"}, precondition={"absent": True}
    )
    header = PlanHeader(
        created="2026-09-01T02:00:00+00:00",
        expires="2026-09-01T14:00:00+00:00",
        config_hash=HASH,
        mappings_hash=HASH,
        source_hash=HASH,
        target=TARGET,
        source_as_of="2026-09-01",
        policy_blocks=[
            PolicyBlock(Category.LEAVERS, "1 account disables exceed max_disable 0"),
            PolicyBlock(Category.DROP, "school 030569 has 5 persons, 3 fewer", "030569"),
        ],
        persons={"030569": 5},
        account_schools={"1": "030569"},
    )
    plan = Plan(header, [newcomer, leaver])
    with StateStore(tmp_path / "state.db") as store:
        approval = parse_approval("leavers", "graduates")
        selection = leave_out_unapproved(plan, approval)
        apply_plan(selection.plan, Directory(), store, approval=approval, selection=selection)
        first = store.runs()[0]["summary"]
        assert first["approved"] == {
            "reason": "graduates",
            "categories": ["leavers"],
            "overrides": ["1 account disables exceed max_disable 0"],
        }
        assert first["actions"] == {"create": 1}
        assert first["waiting"] == {"drop": {"disable": 1}}
        assert first["waiting_for"] == [
            "waiting for approval: 1 account to disable (provisioner apply --approve drop)"
        ]
        assert "persons" not in first  # the drop waits: the next run compares with the old
        assert store.last_successful_persons() is None

        approval = parse_approval("the school confirmed the numbers")
        selection = leave_out_unapproved(plan, approval)
        apply_plan(selection.plan, Directory(), store, approval=approval, selection=selection)
        second = store.runs()[0]["summary"]
        assert second["approved"]["categories"] == "all"
        assert second["approved"]["reason"] == "the school confirmed the numbers"
        assert len(second["approved"]["overrides"]) == 2
        assert second["actions"] == {"create": 1, "disable": 1}  # (a fresh in-memory directory)
        assert "waiting" not in second and second["persons"] == {"030569": 5}


# -- reports -----------------------------------------------------------------------------------


def test_the_reports_group_blocks_by_category_with_the_command_that_approves_each():
    plan = september()
    text = render_plan(plan, command="provisioner apply --config school.yaml")
    assert (
        "BLOCKED by policy (leavers): approve with "
        "`provisioner apply --config school.yaml --approve leavers`" in text
    )
    assert "BLOCKED by policy (moves): approve with" in text
    assert "  - 4 account moves exceed max_move 2" in text
    assert text.index("(leavers)") < text.index("(moves)") < text.index("(groups)")
    html = render_html(plan)
    assert "<code>provisioner apply --config FILE --approve groups</code>" in html
    assert "id='policy-leavers'" in html

    approval = parse_approval("moves", "new classes on 1 September")
    selection = leave_out_unapproved(plan, approval)
    steps = render_approval(approval, selection, command="provisioner apply --config s.yaml")
    assert steps.splitlines()[0] == "Approved: moves (new classes on 1 September), overriding:"
    assert "(provisioner apply --config s.yaml --approve leavers)" in steps
    applied = render_html(plan, [], approval=approval, selection=selection)
    assert "Approved: moves (new classes on 1 September)" in applied
    assert "id='policy-moves'" not in applied  # approved: no longer shown as blocked
    assert "id='policy-leavers'" in applied


# -- end to end on the real DC -----------------------------------------------------------------


def _september_source(synthetic: Any) -> tuple[Any, set[str], set[str]]:
    """Three pupils of one class move to another class, three others are gone."""
    data = copy.deepcopy(synthetic)
    pupils = [r for r in data.rows["Lln"] if r["_instelnr"] == "030569"]
    klas = pupils[0]["Klascode"]
    same_class = [r for r in pupils if r["Klascode"] == klas]
    movers = {r["p_persoon"] for r in same_class[:3]}
    target_class = next(r["Klascode"] for r in pupils if r["Klascode"] != klas)
    gone = {r["p_persoon"] for r in pupils if r["Klascode"] not in (klas, target_class)}
    gone = set(sorted(gone)[:3])
    for row in data.rows["Lln"]:
        if row["p_persoon"] in movers:
            row["Klascode"] = target_class
    for row in data.rows["Subgroepen"]:
        if row["p_persoon"] in movers and row.get("Groeptype") == "0":
            row["Klascode"] = target_class
    data.rows["Lln"] = [r for r in data.rows["Lln"] if r["p_persoon"] not in gone]
    return data, movers, gone


def with_step_limits(config: Path, extra: str = "") -> Path:
    """*config* with limits a September of two moves and two disables goes over (and *extra*)."""
    limits = "  max_move: '2'\n  max_disable: '2'\n"
    text = config.read_text().replace("  freeze_leavers: []\n", f"  freeze_leavers: []\n{limits}")
    config.write_text(text + extra)
    return config


def _last_run(config: Path) -> dict[str, Any]:
    with StateStore(config.parent / "state.db") as store:
        return store.runs()[0]


def test_moves_and_leavers_are_approved_in_two_steps_on_the_dc(
    samba_dc, informat_server, synthetic, ad_env, capsys
):
    config_for, root = ad_env

    def configured(url: str) -> Path:
        return with_step_limits(config_for(url), "lifecycle:\n  disabled_ou: [Uitgeschakeld]\n")

    assert main(["apply", "--config", str(configured(informat_server.url))]) == 0
    capsys.readouterr()
    data, movers, gone = _september_source(synthetic)
    with InformatServer(data, today=REFERENCE_DAY) as server:
        config = configured(server.url)
        start = users_below(samba_dc, root)
        mover_dns = {k: start[f"lln-{k}"]["dn"] for k in movers}

        # Nothing approved: nothing at all is done, and the output names both commands.
        assert main(["apply", "--config", str(config)]) == 2
        out = capsys.readouterr().out
        assert f"`provisioner apply --config {config} --approve leavers`" in out
        assert f"`provisioner apply --config {config} --approve moves`" in out
        assert users_below(samba_dc, root) == start

        # Step 1: the class moves (and everything not blocked); the leavers wait.
        code = main(
            ["apply", "--config", str(config), "--approve", "moves", "--reason", "new classes"]
        )
        out = capsys.readouterr().out
        assert code == 2, out  # changes wait for an approval
        assert f"Approved: moves by {current_user()} (new classes)" in out
        assert (
            f"waiting for approval: 3 accounts to move to the disabled-accounts OU, "
            f"3 accounts to disable (provisioner apply "
            f"--config {config} --approve leavers)" in out
        )
        users = users_below(samba_dc, root)
        for key in movers:
            assert users[f"lln-{key}"]["dn"] != mover_dns[key]  # in the new class's OU
        for key in gone:
            user = users[f"lln-{key}"]
            assert not int(user["userAccountControl"]) & 2  # still enabled …
            assert user["dn"] == start[f"lln-{key}"]["dn"]  # … and where it was
        run = _last_run(config)
        assert run["outcome"] == "waiting"  # the leavers wait for their own approval
        summary = run["summary"]
        assert summary["approved"]["categories"] == ["moves"]
        assert summary["approved"]["reason"] == "new classes"
        assert summary["approved"]["overrides"][0].startswith("3 account moves exceed max_move")
        assert summary["actions"]["move"] == 3 and "disable" not in summary["actions"]
        assert summary["waiting"] == {"leavers": {"disable": 3, "move": 3}}

        # Step 2, a week later: the leavers.
        assert main(["apply", "--config", str(config), "--approve", "leavers", "--json"]) == 0
        result = json.loads(capsys.readouterr().out)
        jsonschema.validate(result, SCHEMA)
        assert result["approval"]["categories"] == ["leavers"]
        assert result["waiting"] == []
        users = users_below(samba_dc, root)
        for key in gone:
            user = users[f"lln-{key}"]
            assert int(user["userAccountControl"]) & 2
            assert user["dn"].startswith(f"CN={user['sAMAccountName']},OU=Uitgeschakeld,")
        summary = _last_run(config)["summary"]
        assert summary["approved"]["categories"] == ["leavers"]
        assert summary["approved"]["reason"] is None
        assert summary["actions"] == {"disable": 3, "move": 3, "create_ou": 1}
        assert "waiting" not in summary

        assert main(["plan", "--config", str(config), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["changes"] == []


def test_a_saved_plan_applies_in_steps_too_on_the_dc(
    samba_dc, informat_server, synthetic, ad_env, capsys, tmp_path
):
    config_for, root = ad_env

    def configured(url: str) -> Path:
        return with_step_limits(config_for(url))

    assert main(["apply", "--config", str(configured(informat_server.url))]) == 0
    capsys.readouterr()
    data, movers, gone = _september_source(synthetic)
    with InformatServer(data, today=REFERENCE_DAY) as server:
        config = configured(server.url)
        start = users_below(samba_dc, root)
        saved = tmp_path / "september.json"
        assert main(["plan", "--config", str(config), "--out", str(saved)]) == 2
        capsys.readouterr()
        report = tmp_path / "report.html"
        step = ["--approve", "leavers,groups", "--report", str(report)]
        assert main(["apply", "--config", str(config), str(saved), *step]) == 2
        out, err = capsys.readouterr()
        assert "waiting for approval: 3 accounts to move, 3 accounts to update (provisioner" in out
        assert "note: --approve groups: the plan has no groups block" in err
        html = report.read_text(encoding="utf-8")
        assert "Approved: leavers" in html and "id='policy-moves'" in html
        assert "id='policy-leavers'" not in html
        users = users_below(samba_dc, root)
        assert all(int(users[f"lln-{k}"]["userAccountControl"]) & 2 for k in gone)
        assert all(users[f"lln-{k}"]["dn"] == start[f"lln-{k}"]["dn"] for k in movers)
        assert _last_run(config)["summary"]["waiting"] == {"moves": {"move": 3, "update": 3}}
