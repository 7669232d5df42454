"""The planner on plain objects: every kind of change, its reason and its precondition."""

from __future__ import annotations

import copy
import json
import stat

import pytest

from provisioner.cli import main
from provisioner.model import (
    Derived,
    DesiredAccount,
    DesiredGroup,
    DesiredState,
    ObservedAccount,
    ObservedGroup,
    ObservedState,
    Provenance,
)
from provisioner.plan.diff import diff
from provisioner.plan.model import Action
from provisioner.plan.planfile import load_plan
from tests.test_cli_mapping import SAMPLE, sample_with_mappings

WHY = Provenance(
    "accounts.pupils.attributes.department", "m.yaml:9", "{{ Lln.Klascode }}", ("Lln.Klascode",)
)


def account(anchor: str, username: str, klas: str = "1A", **extra: str) -> DesiredAccount:
    attributes = {
        "department": Derived(klas, WHY),
        **{k: Derived(v, WHY) for k, v in extra.items()},
    }
    return DesiredAccount("pupils", anchor, username, ("Leerlingen", klas), attributes, "030569")


def desired(*accounts: DesiredAccount, groups: dict[str, set[str]] | None = None) -> DesiredState:
    state = DesiredState()
    for a in accounts:
        state.accounts[a.anchor] = a
        state.ous |= {a.ou[:1], a.ou}
    for key, members in (groups or {}).items():
        state.groups[key] = DesiredGroup(
            "classes", key, ("Groepen",), {"cn": Derived(key, WHY)}, set(members)
        )
        state.ous.add(("Groepen",))
    return state


def observed_from(state: DesiredState) -> ObservedState:
    """What a directory holds after this desired state was applied exactly."""
    return ObservedState(
        accounts=[
            ObservedAccount(
                f"id-{a.anchor}",
                f"dn-{a.anchor}",
                a.anchor,
                a.username,
                a.ou,
                {n: d.value for n, d in a.attributes.items()},
            )
            for a in state.accounts.values()
        ],
        groups=[
            ObservedGroup(
                f"gid-{g.key}",
                f"dn-{g.key}",
                g.key,
                g.ou,
                {n: d.value for n, d in g.attributes.items()},
                set(g.members),
            )
            for g in state.groups.values()
        ],
        ous=set(state.ous),
    )


def test_a_first_run_creates_everything_in_apply_order():
    state = desired(account("1", "jan"), account("2", "piet", "2B"), groups={"klas-1A": {"1"}})
    changes = diff(state, ObservedState())
    assert [c.action for c in changes] == [
        "create_ou",
        "create_ou",
        "create_ou",
        "create_ou",
        "create",
        "create",
        "create_group",
        "add_member",
    ]
    assert [c.target for c in changes[:4]] == [
        "Groepen",
        "Leerlingen",
        "Leerlingen/1A",
        "Leerlingen/2B",
    ]
    create = changes[4]
    assert (create.key, create.target) == ("1", "Leerlingen/1A/jan")
    assert create.after == {"username": "jan", "ou": ["Leerlingen", "1A"], "department": "1A"}
    assert create.precondition.to_json() == {"absent": True}
    assert changes[-1].after == {"members": ["1"]}
    order = [c.action.order for c in changes]
    assert order == sorted(order)


def test_after_an_exact_apply_the_plan_is_empty():
    state = desired(account("1", "jan"), account("2", "piet", "2B"), groups={"klas-1A": {"1", "2"}})
    assert diff(state, observed_from(state)) == []


def test_day_two_changes_each_with_reason_and_precondition():
    day1 = desired(
        account("1", "jan"),
        account("2", "piet"),
        account("3", "an"),
        groups={"klas-1A": {"1", "2", "3"}, "klas-oud": {"3"}},
    )
    directory = observed_from(day1)
    day2 = desired(
        account("1", "jan", "2B"),
        account("2", "pieter"),
        account("4", "nieuw"),
        groups={"klas-1A": {"2", "4"}},
    )
    changes = {(c.action, c.key): c for c in diff(day2, directory)}
    assert set(changes) == {
        ("create_ou", "Leerlingen/2B"),
        ("create", "4"),
        ("move", "1"),
        ("update", "1"),
        ("rename", "2"),
        ("disable", "3"),
        ("add_member", "klas-1A"),
        ("remove_member", "klas-1A"),
    }  # klas-oud, no longer in the source, is the group lifecycle's (tests/test_lifecycle14.py)
    update = changes[("update", "1")]
    assert (update.before, update.after) == ({"department": "1A"}, {"department": "2B"})
    assert update.why == ("department: {{ Lln.Klascode }} (m.yaml:9) ← Lln.Klascode",)
    assert update.precondition.to_json() == {"id": "id-1", "attributes": {"department": "1A"}}
    assert changes[("move", "1")].after == {"ou": ["Leerlingen", "2B"]}
    assert changes[("rename", "2")].before == {"username": "piet"}
    assert changes[("disable", "3")].why == ("no longer in the source",)
    assert changes[("add_member", "klas-1A")].after == {"members": ["4"]}
    assert changes[("remove_member", "klas-1A")].before == {"members": ["1", "3"]}


def test_a_returning_person_is_enabled_and_a_disabled_leaver_left_alone():
    state = desired(account("1", "jan"))
    directory = observed_from(desired(account("1", "jan"), account("2", "weg")))
    for a in directory.accounts:
        a.enabled = False
    changes = diff(state, directory)
    assert [(c.action, c.key) for c in changes] == [("enable", "1")]


def test_pre_existing_accounts_are_adopted_by_username_or_reported_as_conflicts():
    state = desired(account("1", "jan"), account("2", "piet"))
    directory = ObservedState(
        accounts=[
            ObservedAccount("a", "dn-a", None, "jan", ("Leerlingen", "1A"), {"department": "1A"}),
            ObservedAccount("b", "dn-b", None, "PIET", ("Leerlingen", "1A"), {}),
            ObservedAccount("c", "dn-c", None, "other", ("Leerlingen", "1A"), {}),
        ],
        ous={("Leerlingen",), ("Leerlingen", "1A")},
    )
    changes = diff(state, directory)
    adopt = [c for c in changes if c.action == "adopt"]
    assert [(c.key, c.target) for c in adopt] == [("1", "dn-a"), ("2", "dn-b")]
    assert adopt[0].after == {"anchor": "1"}  # nothing else differs
    assert adopt[1].after == {"anchor": "2", "department": "1A"}
    assert not any(c.action == "create" for c in changes)

    ambiguous = ObservedState(
        accounts=[
            ObservedAccount("a", "dn-a", None, "jan", ("X",), {}),
            ObservedAccount("b", "dn-b", None, "other", ("X",), {"mail": "jan"}),
        ]
    )
    changes = diff(
        desired(account("1", "jan", mail="jan")), ambiguous, match_on=("username", "mail")
    )
    (conflict,) = [c for c in changes if c.action == "conflict"]
    assert "matches 2 existing accounts: dn-a, dn-b" in conflict.why[0]
    assert not any(c.action in ("create", "adopt") for c in changes)


def test_two_groups_with_one_key_are_a_conflict_and_neither_is_touched():
    """Twins left by two runs that raced on two machines: the plan says so instead of planning
    for one of them (which would look like "no changes" forever)."""
    state = desired(account("1", "jan"), account("2", "piet"), groups={"klas-1A": {"1", "2"}})
    directory = observed_from(state)
    twin = copy.deepcopy(directory.groups[0])
    twin.id, twin.target, twin.members = "id-twin", "dn-twin", set()
    directory.groups.append(twin)
    changes = diff(state, directory)
    assert [(c.action, c.kind, c.key) for c in changes] == [("conflict", "group", "klas-1A")]
    assert "two groups carry key klas-1A: dn-klas-1A and dn-twin" in changes[0].why[0]
    # Gone from the source: still neither is deleted.
    changes = diff(desired(account("1", "jan")), directory)
    assert [c.action for c in changes if c.kind == "group"] == ["conflict"]


def test_two_accounts_with_one_anchor_are_a_conflict_not_a_guess():
    directory = observed_from(desired(account("1", "jan")))
    twin = copy.deepcopy(directory.accounts[0])
    twin.id, twin.target = "id-twin", "dn-twin"
    directory.accounts.append(twin)
    changes = diff(desired(account("1", "jan")), directory)
    assert [c.action for c in changes] == ["conflict"]
    assert "two accounts carry anchor 1: dn-1 and dn-twin" in changes[0].why[0]


# -- the plan command --------------------------------------------------------------------------


def test_plan_previews_a_first_run_and_saves_a_private_plan_file(tmp_path, capsys):
    out = tmp_path / "plan.json"
    assert main(["plan", "--config", str(SAMPLE), "--out", str(out)]) == 2
    text = capsys.readouterr().out
    assert text.startswith(
        "Plan against (no target configured: a first run against an empty directory"
    )
    assert "Summary: 24 OUs to create, 315 accounts to create, 17 groups to create" in text
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    plan = load_plan(out)
    assert plan.counts()["create"] == 315
    assert plan.header.source_as_of == "2025-10-01"
    assert len(plan.header.source_hash) == 64 and plan.header.blocked == []


def test_plan_json_is_the_plan_file_content(capsys):
    assert main(["plan", "--config", str(SAMPLE), "--json"]) == 2
    data = json.loads(capsys.readouterr().out)
    assert data["format"] == 1
    assert data["counts"]["create"] == 315
    assert {c["action"] for c in data["changes"]} == {
        "create_ou",
        "create",
        "create_group",
        "add_member",
    }


def test_a_plan_that_holds_more_persons_than_max_held_is_blocked(tmp_path, capsys):
    config = sample_with_mappings(tmp_path)
    pupils = tmp_path / "mappings" / "pupils.yaml"
    pupils.write_text(
        pupils.read_text().replace('{{ Lln.Klascode }}"\n', '{{ Lln.Klascode | date }}"\n')
    )
    assert main(["plan", "--config", str(config)]) == 2
    text = capsys.readouterr().out
    # the template fails for every pupil: each is held, and so many holds block the night
    assert "BLOCKED: school 030569: 143 persons are held (at most 5 of 163 allowed" in text
    assert "BLOCKED: school 030577: 144 persons are held" in text
    assert "Held (287): their accounts are left exactly as they are" in text


def test_a_plan_from_mappings_with_errors_is_blocked(tmp_path, capsys):
    config = sample_with_mappings(tmp_path)
    pupils = tmp_path / "mappings" / "pupils.yaml"
    # a field that is not fetched is the mappings' mistake, whoever's row it is: an error
    pupils.write_text(
        pupils.read_text().replace("{{ Lln.Klascode }}", "{{ Lln['Klascode_X'] }}", 1)
    )
    assert main(["plan", "--config", str(config)]) == 2
    text = capsys.readouterr().out
    assert "BLOCKED: the mappings reported" in text


@pytest.mark.parametrize("damage", ["{", '{"format": 99}', '{"format": 1}'])
def test_damaged_plan_files_are_refused(tmp_path, damage):
    from provisioner.errors import ConfigError

    path = tmp_path / "plan.json"
    path.write_text(damage)
    with pytest.raises(ConfigError):
        load_plan(path)


def test_an_adopted_account_is_also_moved_and_enabled_when_needed():
    directory = ObservedState(
        accounts=[
            ObservedAccount("a", "dn-a", None, "jan", ("Oud",), {"department": "1A"}, enabled=False)
        ],
        ous={("Leerlingen",), ("Leerlingen", "1A"), ("Oud",)},
    )
    changes = diff(desired(account("1", "jan")), directory)
    assert [(c.action, c.key) for c in changes] == [("adopt", "1"), ("move", "1"), ("enable", "1")]
    move, enable = changes[1], changes[2]
    assert move.precondition.to_json() == {"id": "a", "ou": ["Oud"]}
    assert enable.precondition.to_json() == {"id": "a", "enabled": False}


def test_a_school_that_answers_empty_blocks_the_plan(server, tmp_path, monkeypatch, capsys):
    """Informat answers an instelnr without rights with an empty list; a plan made from that
    would disable every account of the school, so it is blocked instead."""
    monkeypatch.setenv("TEST_PW", "geheim")
    server.accounts["beperkt@school.be"] = ("geheim", {"030569"})
    config = tmp_path / "p.yaml"
    config.write_text(
        f"mappings: {SAMPLE.parent.parent / 'mappings'}\n"
        f"source:\n  informat:\n    url: {server.url}\n    login: beperkt@school.be\n"
        "    password: ${TEST_PW}\n    schooljaar: 2025-26\n    instelnrs: ['030569', '030577']\n"
    )
    assert main(["plan", "--config", str(config)]) == 2
    out = capsys.readouterr().out
    assert "BLOCKED: Lln for 030577 answered with no rows: nothing is applied" in out
    assert "BLOCKED: Leerkrachten for 030577 answered with no rows" in out
    main(["validate", "--config", str(config)])
    out = capsys.readouterr().out
    assert "Source blocks" in out and "Lln for 030577: answered with no rows" in out


def test_policy_limits_and_the_summer_window():
    import datetime as dt

    from provisioner.plan.model import Change
    from provisioner.plan.policy import PolicyConfig, apply_policy, in_window, limit_of

    assert (limit_of("5%", 30), limit_of("5%", 0), limit_of("25", 1000)) == (2, 0, 25)
    assert in_window(dt.date(2026, 7, 1), ["07-01", "08-31"])
    assert in_window(dt.date(2026, 8, 31), ["07-01", "08-31"])
    assert not in_window(dt.date(2026, 9, 1), ["07-01", "08-31"])
    assert in_window(dt.date(2026, 1, 2), ["12-20", "01-05"])  # a window over the new year
    assert not in_window(dt.date(2026, 7, 1), [])

    disables = [Change("disable", "account", str(i), f"dn-{i}") for i in range(3)]
    update = Change("update", "account", "9", "dn-9")
    policy = PolicyConfig()
    verdict = apply_policy(
        [*disables, update], policy, managed_accounts=40, day=dt.date(2026, 10, 1)
    )
    assert verdict.blocked == [
        "3 account disables exceed max_disable 5% (at most 2 of 40 managed accounts); "
        "if this is right, apply with --approve REASON"
    ]
    summer = apply_policy(
        [*disables, update], policy, managed_accounts=40, day=dt.date(2026, 7, 15)
    )
    assert summer.changes == [update] and summer.blocked == []
    assert summer.notes[0].startswith("3 leaver action(s) wait: 2026-07-15 is in the school-year")


def test_policy_values_are_checked_with_file_and_line(tmp_path):
    from provisioner.config import load_config
    from provisioner.errors import ConfigError

    path = tmp_path / "p.yaml"
    (tmp_path / "s").mkdir()
    path.write_text(
        "source:\n  informat:\n    snapshot: s\n    instelnrs: ['030569']\n"
        "policy:\n  max_disable: vijf\n"
    )
    with pytest.raises(ConfigError, match=r":6: policy\.max_disable: expected a count"):
        load_config(path)
    path.write_text(path.read_text().replace("max_disable: vijf", "freeze_leavers: [07-01, 02-30]"))
    with pytest.raises(ConfigError, match=r":6: policy\.freeze_leavers"):
        load_config(path)


def test_the_leaver_lifecycle_disables_waits_and_deletes_with_due_dates():
    import datetime as dt

    from provisioner.plan.lifecycle import LifecycleConfig, apply_lifecycle

    directory = observed_from(
        desired(account("1", "jan"), account("2", "piet"), account("3", "an"))
    )
    directory.accounts[2].enabled = False  # an: disabled earlier
    today = dt.date(2026, 5, 1)
    since = {"2": dt.date(2026, 4, 30), "3": dt.date(2026, 1, 1)}
    changes = diff(desired(account("1", "jan")), directory)
    config = LifecycleConfig(disabled_ou=["Uitgeschakeld"])
    result = apply_lifecycle(
        changes,
        directory,
        {"1"},
        since=since,
        kinds={"2": "pupils", "3": "pupils"},
        config=config,
        today=today,
        disabled={"3": dt.date(2026, 1, 20)},  # the grace counts from the disable
    )
    by = {(c.action, c.key): c for c in result.changes}
    assert set(by) == {
        ("create_ou", "Uitgeschakeld"),
        ("disable", "2"),
        ("move", "2"),
        ("delete", "3"),
    }
    assert result.changes[0].action == "create_ou"  # before the move into it
    assert by[("disable", "2")].why == (
        "gone from the source since 2026-04-30; deletion due on 2026-07-30 (90 days after the "
        "disable)",
    )
    assert by[("move", "2")].after == {"ou": ["Uitgeschakeld"]}
    assert by[("delete", "3")].precondition.to_json() == {"id": "id-3", "enabled": False}

    # Within the first grace nothing happens yet, and a kind without a delete grace is kept.
    patient = LifecycleConfig(disable_after_days=7, delete_after_days={"staff": 30})
    result = apply_lifecycle(
        changes, directory, {"1"}, since=since, kinds={"3": "pupils"}, config=patient, today=today
    )
    assert result.changes == []
    assert result.notes == [
        "1 leaver(s) are within the 7-day grace before their accounts are disabled"
    ]


def test_a_class_that_suddenly_empties_while_its_pupils_remain_is_suspicious():
    from provisioner.plan.planner import suspicious_groups

    day1 = desired(account("1", "jan"), account("2", "piet"), groups={"klas-1A": {"1", "2"}})
    day2 = desired(account("1", "jan"), account("2", "piet"), groups={"klas-1B": {"1", "2"}})
    changes = diff(day2, observed_from(day1))
    assert suspicious_groups(changes, day2, observed_from(day1)) == []  # deleted, not emptied
    day2.groups["klas-1A"] = DesiredGroup(
        "classes", "klas-1A", ("Groepen",), {"cn": Derived("klas-1A", WHY)}, {"9"}
    )
    changes = diff(day2, observed_from(day1))
    assert suspicious_groups(changes, day2, observed_from(day1)) == [
        "suspicious: group klas-1A loses all 2 members while they are all still in the source"
    ]


def test_a_school_whose_persons_drop_sharply_is_blocked():
    from provisioner.plan.policy import check_drop

    last = ("2026-01-14T02:00:00+00:00", {"030569": 600, "030577": 400})
    assert check_drop({"030569": 590, "030577": 330}, last, "20%") == []
    (blocked,) = check_drop({"030569": 590, "030577": 300}, last, "20%")
    assert blocked.startswith("school 030577 has 300 persons, 100 fewer than the 400 of the last")
    assert check_drop({"030569": 590}, None, "20%") == []


def test_the_html_report_is_self_contained_escaped_and_structured(tmp_path, capsys):
    from html.parser import HTMLParser

    report = tmp_path / "plan.html"
    assert main(["plan", "--config", str(SAMPLE), "--report", str(report)]) == 2
    capsys.readouterr()
    assert stat.S_IMODE(report.stat().st_mode) == 0o600
    text = report.read_text(encoding="utf-8")

    class Collect(HTMLParser):
        def __init__(self):
            super().__init__()
            self.ids, self.links, self.open = [], [], []

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            if "id" in attrs:
                self.ids.append(attrs["id"])
            for name in ("src", "href"):
                if name in attrs:
                    self.links.append(attrs[name])
            if tag not in ("meta", "br", "input"):  # void elements
                self.open.append(tag)

        def handle_endtag(self, tag):
            assert self.open and self.open.pop() == tag, f"</{tag}> does not close what is open"

    parser = Collect()
    parser.feed(text)
    assert parser.open == []  # every element closed, properly nested
    assert parser.links == []  # no external assets
    assert parser.ids[:2] == ["summary", "per-school"]
    assert "<tr><th>Sint-Jozefscollege</th>" in text  # schools by name
    assert {"create_ou", "create_group", "add_member"} <= set(parser.ids)
    assert text.count("<li class='item'>") == 24 + 315 + 17 + 17
    assert "<details class='group' open" not in text  # every group collapsed
    assert "D&#x27;Hondt" in text and "D'Hondt" not in text  # names are escaped
    assert 'name="viewport"' in text  # readable on a phone


def test_plan_json_follows_the_shipped_schema(capsys):
    import jsonschema

    schema = json.loads(
        (SAMPLE.parent.parent / "provisioner" / "schemas" / "plan.schema.json").read_text()
    )
    jsonschema.Draft202012Validator.check_schema(schema)
    assert main(["plan", "--config", str(SAMPLE), "--json"]) == 2
    jsonschema.validate(json.loads(capsys.readouterr().out), schema)


def test_policy_limits_hold_per_school_too():
    import datetime as dt

    from provisioner.plan.model import Change
    from provisioner.plan.policy import PolicyConfig, apply_policy

    disables = [Change("disable", "account", key, f"dn-{key}") for key in ("1", "2")]
    verdict = apply_policy(
        disables,
        PolicyConfig(),
        managed_accounts=100,
        day=dt.date(2026, 10, 1),
        schools={"1": "030577", "2": "030577"},
        managed_per_school={"030569": 80, "030577": 20},
    )
    assert verdict.blocked == [
        "school 030577: 2 account disables exceed max_disable 5% (at most 1 of 20 managed "
        "accounts); if this is right, apply with --approve REASON"
    ]


def test_owners_are_planned_like_members_and_only_where_asked():
    state = desired(account("1", "jan"), account("t1", "juf"), groups={"klas-1A": {"1"}})
    state.groups["klas-1A"].owners = {"t1"}
    new = {(c.action, c.key): c for c in diff(state, ObservedState())}
    assert new[("add_owner", "klas-1A")].after == {"owners": ["t1"]}
    assert new[("add_owner", "klas-1A")].precondition.to_json() == {"created_in_this_plan": True}
    assert Action.ADD_OWNER.order > Action.CREATE_GROUP.order

    directory = observed_from(state)  # without owners
    assert [(c.action, c.after) for c in diff(state, directory)] == [
        ("add_owner", {"owners": ["t1"]})
    ]
    directory.groups[0].owners = {"t1"}
    assert diff(state, directory) == []
    state.groups["klas-1A"].owners = {"1"}
    changes = {(c.action, c.key): c for c in diff(state, directory)}
    assert set(changes) == {("add_owner", "klas-1A"), ("remove_owner", "klas-1A")}
    assert changes[("remove_owner", "klas-1A")].before == {"owners": ["t1"]}
    assert changes[("remove_owner", "klas-1A")].precondition.to_json() == {"id": "gid-klas-1A"}


def test_the_planner_puts_what_the_store_would_learn_in_the_plan_and_writes_nothing():
    """The planner is pure: who left, who came back, new kinds and schools and the directory's
    ids travel in the plan as observations, for apply to record."""
    import datetime as dt

    from provisioner.plan.planner import Memory, Origin, Rules, make_plan

    day = dt.date(2026, 3, 2)
    yesterday = desired(account("1", "jan"), account("2", "piet"), account("3", "ann"))
    observed = observed_from(yesterday)
    today = desired(account("1", "jan"), account("3", "ann"), account("4", "nieuw"))
    memory = Memory(
        leavers={"3": dt.date(2026, 2, 1)},  # gone for a while, back today
        kinds={"1": "pupils", "3": "pupils"},
        schools={"1": "030569", "3": "030577"},  # 3 changed school
        ids={"account": {"1": "id-1", "2": "id-2", "3": "id-old"}},
    )
    origin = Origin("c" * 64, "m" * 64, "s" * 64, day, "a test directory")
    plan = make_plan(today, observed, origin=origin, rules=Rules(), memory=memory)
    seen = plan.observations
    assert seen.left == ["2"]
    assert seen.returned == ["3"]
    assert seen.accounts == {"3": ["pupils", "030569"], "4": ["pupils", "030569"]}
    assert seen.ids == {"account": {"3": "id-3"}}  # only what the store does not know yet
    assert plan.header.source_as_of == "2026-03-02"
    disable = next(c for c in plan.changes if c.action is Action.DISABLE)
    assert disable.key == "2" and "since 2026-03-02" in disable.why[0]
