"""What the directory cannot hold is found when the plan is made, per person: an anchor longer
than employeeID/employeeId holds (16 characters) holds that person only; and where the directory
ignores case (AD), OU paths, group keys and anchors that differ only by case converge."""

from __future__ import annotations

import pytest

from provisioner.config import TargetConfig
from provisioner.model import (
    Derived,
    DesiredAccount,
    DesiredGroup,
    DesiredState,
    ObservedGroup,
    ObservedState,
    Provenance,
    SourceRows,
)
from provisioner.pipeline import desired_state, prepare, read_for_mappings
from provisioner.plan.case import follow_directory_case
from provisioner.plan.diff import diff
from provisioner.plan.model import Action
from provisioner.plan.planner import fit_to_target
from provisioner.targets import hold_persons, names_ignore_case, target_findings
from provisioner.targets.ad_settings import CASELESS_ATTRIBUTES, LIMITS
from tests.test_cli_mapping import sample_with_mappings
from tests.test_naming_rules import AD, AD_TARGET, ENTRA
from tests.test_plan import observed_from

WHY = Provenance("accounts.staff.attributes.x", "staff.yaml:9", "{{ … }}", ())


def person(anchor: str, username: str = "", ou: tuple[str, ...] = ("Personeel",)) -> DesiredAccount:
    return DesiredAccount(
        kind="staff",
        anchor=anchor,
        username=username or f"user{anchor[-4:]}",
        ou=ou,
        attributes={"displayName": Derived(f"Person {anchor}", WHY)},
        school="030569",
    )


def state(*accounts: DesiredAccount, groups: tuple[DesiredGroup, ...] = ()) -> DesiredState:
    desired = DesiredState()
    for a in accounts:
        desired.accounts[a.anchor] = a
        desired.ous |= {a.ou[:i] for i in range(1, len(a.ou) + 1)}
    for g in groups:
        desired.groups[g.key] = g
        desired.ous |= {g.ou[:i] for i in range(1, len(g.ou) + 1)}
    return desired


# -- limits per attribute ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "attribute"),
    [(TargetConfig(ad=AD), "employeeID"), (TargetConfig(entra=ENTRA), "employeeId")],
)
def test_an_anchor_longer_than_16_characters_is_one_persons_finding(config, attribute):
    fits, too_long = person("personeel-123456"), person("personeel-1234567")
    found = target_findings(config, state(fits, too_long))
    assert found.errors == []
    [(owner, message)] = found.persons
    assert owner is too_long
    assert f"{attribute} (the anchor) 'personeel-1234567' is 17 characters long" in message
    assert "allows at most 16" in message


def test_the_anchor_limit_follows_the_configured_attribute():
    from dataclasses import replace

    roomy = TargetConfig(ad=replace(AD, anchor_attribute="employeeNumber"))
    assert target_findings(roomy, state(person("personeel-1234567"))).persons == []
    long_key = "p" * 513
    [(_, message)] = target_findings(roomy, state(person(long_key))).persons
    assert "is 513 characters long; Active Directory allows at most 512" in message


def test_entra_employee_id_refuses_spaces_at_the_ends_and_invisible_characters():
    found = target_findings(TargetConfig(entra=ENTRA), state(person(" 1234"), person("12\u202e34")))
    messages = sorted(m for _, m in found.persons)
    assert any("starts or ends with a space" in m for m in messages)
    assert any("invisible control or text-direction characters" in m for m in messages)


def test_a_group_key_too_long_for_its_anchor_attribute_is_an_error_not_a_hold():
    group = DesiredGroup("classes", "k" * 1025, ("Groepen",), {"cn": Derived("klas", WHY)})
    found = target_findings(TargetConfig(ad=AD), state(groups=(group,)))
    assert found.persons == []
    assert any("adminDescription" in e and "at most 1024" in e for e in found.errors)


def test_the_limit_tables_are_read_without_connecting():
    from provisioner.targets.ad import ActiveDirectory

    assert LIMITS["sAMAccountName"] == 20 and ActiveDirectory.limits is LIMITS


def test_holding_takes_the_person_out_and_leaves_everyone_else():
    staff = [person(f"personeel-{n}", ou=("Personeel", "030569")) for n in (123456, 1234567)]
    lonely = person("personeel-7654321", ou=("Personeel", "Apart"))
    group = DesiredGroup("staff_all", "personeel", ("Groepen",), {}, {a.anchor for a in staff})
    desired = state(*staff, lonely, groups=(group,))
    found = target_findings(TargetConfig(ad=AD), desired)
    hold_persons(desired, found.persons, SourceRows(["030569"], {}))
    assert set(desired.accounts) == {"personeel-123456"}
    assert group.members == {"personeel-123456"}
    assert [(h.kind, h.anchor) for h in desired.held] == [
        ("staff", "personeel-1234567"),
        ("staff", "personeel-7654321"),
    ]
    assert all("allows at most 16" in h.reason for h in desired.held)
    # The OU only the held person was placed in is not made; the shared one stays.
    assert ("Personeel", "Apart") not in desired.ous
    assert ("Personeel", "030569") in desired.ous


def test_a_7_digit_personeel_anchor_holds_that_staff_member_not_the_night(tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_AD_PASSWORD", "not-used")
    config = sample_with_mappings(tmp_path)
    staff = tmp_path / "mappings" / "staff.yaml"
    text = staff.read_text()
    assert '    anchor: "pers-{{ key }}"\n' in text
    staff.write_text(text.replace('"pers-{{ key }}"', '"personeel-{{ key }}"'))
    config.write_text(config.read_text() + AD_TARGET)
    prepared = prepare(config)  # nothing is connected to dc.invalid
    desired = desired_state(prepared, read_for_mappings(prepared))
    assert desired.report.errors == []
    held = {h.key for h in desired.held}
    staff_anchors = {a.anchor for a in desired.accounts.values() if a.kind == "staff"}
    assert held and all(len(key) >= 7 for key in held)
    assert all(h.kind == "staff" and h.anchor == f"personeel-{h.key}" for h in desired.held)
    assert staff_anchors and all(len(a) <= 16 for a in staff_anchors)
    assert sum(a.kind == "pupils" for a in desired.accounts.values()) > 250  # pupils unaffected


def test_anchors_that_differ_only_by_case_hold_both_in_ad_but_not_in_entra():
    desired = state(person("ab1234"), person("AB1234"), person("ab9999"))
    held = {owner.anchor for owner, _ in target_findings(TargetConfig(ad=AD), desired).persons}
    assert held == {"ab1234", "AB1234"}
    assert target_findings(TargetConfig(entra=ENTRA), desired).persons == []


# -- case-insensitive names converge -------------------------------------------------------------


def pupil(anchor: str, klas: str) -> DesiredAccount:
    return DesiredAccount(
        "pupils",
        anchor,
        f"pupil{anchor}",
        ("Leerlingen", "030569", klas),
        {"department": Derived(klas, WHY)},
        "030569",
    )


def klas(code: str, *members: str) -> DesiredGroup:
    key = f"klas-030569-{code}"
    return DesiredGroup("classes", key, ("Groepen",), {"cn": Derived(key, WHY)}, set(members))


def test_a_class_code_whose_case_changed_between_nights_changes_only_the_text():
    night_one = state(pupil("1", "1a"), pupil("2", "1a"), groups=(klas("1a", "1", "2"),))
    held = observed_from(night_one)
    night_two = state(pupil("1", "1A"), pupil("2", "1A"), groups=(klas("1A", "1", "2"),))
    assert {c.action for c in diff(night_two, held)} >= {Action.CREATE_OU, Action.MOVE}
    fit_to_target(night_two, LIMITS, LIMITS, held, names_ignore_case(TargetConfig(ad=AD)))
    changes = diff(night_two, held)
    # Only the department text follows the source; no OU, move, group or rename.
    assert {(c.action, c.key) for c in changes} == {(Action.UPDATE, "1"), (Action.UPDATE, "2")}
    assert night_two.accounts["1"].ou == ("Leerlingen", "030569", "1a")
    assert list(night_two.groups) == ["klas-030569-1a"]
    assert night_two.groups["klas-030569-1a"].attributes["cn"].value == "klas-030569-1a"


def test_case_is_kept_where_the_directory_tells_names_apart():
    assert names_ignore_case(TargetConfig(entra=ENTRA)) is None
    assert names_ignore_case(TargetConfig(ad=AD)) == CASELESS_ATTRIBUTES
    night_two = state(pupil("1", "1A"))
    held = observed_from(state(pupil("1", "1a")))
    fit_to_target(night_two, LIMITS, LIMITS, held, names_ignore_case(TargetConfig(entra=ENTRA)))
    assert night_two.accounts["1"].ou[-1] == "1A"


def test_classes_1a_and_1A_in_one_night_are_one_ou_and_one_group_with_a_warning():
    desired = state(pupil("1", "1a"), pupil("2", "1A"), groups=(klas("1a", "1"), klas("1A", "2")))
    follow_directory_case(desired, ObservedState(), CASELESS_ATTRIBUTES)
    assert {a.ou for a in desired.accounts.values()} == {("Leerlingen", "030569", "1A")}
    assert ("Leerlingen", "030569", "1a") not in desired.ous
    [group] = desired.groups.values()
    assert (group.key, group.members) == ("klas-030569-1A", {"1", "2"})
    warnings = desired.report.warnings
    assert any("group klas-030569-1a differs only by case" in w for w in warnings)
    assert any("OU Leerlingen / 030569 / 1a differs only by case" in w for w in warnings)
    # Applied, the next night's plan is empty.
    observed = observed_from(desired)
    again = state(pupil("1", "1a"), pupil("2", "1A"), groups=(klas("1a", "1"), klas("1A", "2")))
    fit_to_target(again, LIMITS, LIMITS, observed, CASELESS_ATTRIBUTES)
    assert diff(again, observed) == []


def test_an_anchor_whose_case_changed_is_the_same_account_in_ad():
    observed = observed_from(state(pupil("ab12", "1A")))
    observed.ous.add(("Groepen",))
    desired = state(pupil("AB12", "1A"), groups=(klas("1A", "AB12"),))
    observed.groups.append(
        ObservedGroup(
            "g", "dn-g", "klas-030569-1A", ("Groepen",), {"cn": "klas-030569-1A"}, {"ab12"}
        )
    )
    fit_to_target(desired, LIMITS, LIMITS, observed, CASELESS_ATTRIBUTES)
    assert list(desired.accounts) == ["ab12"]
    assert diff(desired, observed) == []


def test_against_the_graph_server_a_too_long_employee_id_holds_only_that_person(
    tmp_path, monkeypatch, capsys
):
    import json

    from provisioner.cli import main
    from tests.fakes.graph_server import GraphServer
    from tests.fakes.tls import make_test_ca
    from tests.test_cli_mapping import ROOT

    monkeypatch.setenv("TEST_ENTRA_SECRET", "app-secret")
    (tmp_path / "mappings").mkdir()
    for path in (ROOT / "examples/entra/mappings").glob("*.yaml"):
        (tmp_path / "mappings" / path.name).write_text(path.read_text())
    staff = tmp_path / "mappings" / "staff.yaml"
    assert '    anchor: "pers-{{ key }}"\n' in staff.read_text()
    staff.write_text(staff.read_text().replace('"pers-{{ key }}"', '"personeel-{{ key }}"'))
    ca = make_test_ca(tmp_path)
    with GraphServer(tls=ca) as graph:
        graph.register_app("school.onmicrosoft.com", ENTRA.client_id, secret="app-secret")
        config = tmp_path / "provisioner.yaml"
        config.write_text(
            "source:\n  informat:\n"
            f"    snapshot: {ROOT / 'examples' / 'sample-snapshot'}\n"
            '    instelnrs: ["030569", "030577"]\n'
            # Every staff member with a 7-digit key is held: more than the default max_held.
            "mappings: mappings\nstate: state.db\npolicy:\n  max_held: 20%\n"
            "target:\n  entra:\n"
            "    tenant_id: school.onmicrosoft.com\n"
            f"    client_id: {ENTRA.client_id}\n"
            "    client_secret: ${TEST_ENTRA_SECRET}\n"
            "    domains: [leerling.school.be, school.be]\n"
            f"    graph_url: {graph.url}\n"
            f"    authority: {graph.authority}\n"
            f"    ca_file: {graph.ca_file}\n"
        )
        prepared = prepare(config)
        held = desired_state(prepared, read_for_mappings(prepared)).held
        assert held and all(len(f"personeel-{h.key}") > 16 for h in held)
        assert main(["plan", "--config", str(config), "--json"]) == 2
        plan = json.loads(capsys.readouterr().out)
        assert plan["header"]["blocked"] == []
        created = {c["key"] for c in plan["changes"] if c["action"] == "create"}
        assert not created & {h.anchor for h in held}
        assert any(key.startswith("personeel-") for key in created)  # the other staff
        assert main(["apply", "--config", str(config), "--json"]) == 0
        applied = json.loads(capsys.readouterr().out)
        assert {r["status"] for r in applied["results"]} == {"applied"}  # no 400 from Graph
        assert main(["plan", "--config", str(config), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["changes"] == []


def test_an_ou_name_made_by_persons_data_holds_them_one_a_group_uses_is_an_error():
    long_class = "K" * 65
    in_it = [pupil("1", long_class), pupil("2", long_class)]
    found = target_findings(TargetConfig(ad=AD), state(*in_it, pupil("3", "1A")))
    assert found.errors == []
    assert sorted(owner.anchor for owner, _ in found.persons) == ["1", "2"]
    assert all("OU name" in m and "at most 64" in m for _, m in found.persons)

    group = DesiredGroup("classes", "klas", ("Groepen", long_class), {})
    found = target_findings(TargetConfig(ad=AD), state(*in_it, groups=(group,)))
    assert found.persons == []
    [error] = found.errors
    assert "OU name" in error and "is 65 characters long" in error
