"""Quarantine: a problem with one person's data holds that person, and everyone else proceeds.

The engine turns each per-person problem into a Hold (no desired account); the planner leaves a
held person's existing account exactly as it is; the plan lists them and blocks only past
``max_held`` or ``max_held_days``."""

from __future__ import annotations

import copy
import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from provisioner.apply import record_observations
from provisioner.cli import main
from provisioner.mapping.engine import build_desired
from provisioner.model import DesiredState, Hold, ObservedState
from provisioner.pipeline import desired_state, prepare, read_for_mappings
from provisioner.plan.model import Action, Kind, Plan
from provisioner.plan.planfile import plan_to_json
from provisioner.plan.planner import Memory, Origin, Rules, make_plan
from provisioner.plan.policy import PolicyConfig
from provisioner.report.html import render_html
from provisioner.report.mapping import validation_summary
from provisioner.report.plan import render_plan
from provisioner.sources.base import ValueProblem
from provisioner.state import StateStore
from tests.fakes.synthetic import SyntheticData
from tests.test_cli_mapping import sample_with_mappings
from tests.test_mapping import PUPILS, mappings, pupil, source
from tests.test_plan import account, desired, observed_from

DAY = dt.date(2026, 3, 2)
ORIGIN = Origin("a" * 64, "b" * 64, "c" * 64, DAY, "a test directory")
SCHEMA = Path(__file__).resolve().parent.parent / "provisioner" / "schemas" / "plan.schema.json"


def plan_of(
    state: DesiredState,
    directory: ObservedState,
    *,
    origin: Origin = ORIGIN,
    memory: Memory | None = None,
    rules: Rules | None = None,
) -> Plan:
    return make_plan(
        state, directory, origin=origin, rules=rules or Rules(), memory=memory or Memory()
    )


# -- the engine: each cause of a hold ----------------------------------------------------------


def test_an_unreadable_value_holds_only_its_person(tmp_path):
    compiled = mappings(tmp_path, PUPILS)
    problems = [
        ValueProblem("Lln", "030569", "2", "Naam", "not text in a form Informat uses"),
        # a field no mapping reads changes nobody's account: ignored
        ValueProblem("Lln", "030569", "3", "geboortedatum", "not a date ('2011-02-31')"),
    ]
    state = build_desired(
        compiled, source(pupil("1"), pupil("2", "Piet"), pupil("3", "An")), problems=problems
    )
    assert set(state.accounts) == {"1", "3"}
    assert not state.report.errors
    (hold,) = state.held
    assert hold == Hold(
        "pupils", "2", "030569", "Lln.Naam: not text in a form Informat uses", "2", "Lln", "Naam"
    )


def test_a_row_with_an_unreadable_value_is_held_even_where_the_filter_would_drop_it(tmp_path):
    # voorlopig unreadable → None → ``where: Lln.voorlopig == "0"`` would leave the pupil out,
    # and a pupil left out is a leaver: held instead, so that their account stays.
    compiled = mappings(tmp_path, PUPILS)
    damaged = pupil("2", "Piet", voorlopig=None)
    problem = ValueProblem("Lln", "030569", "2", "voorlopig", "not a number")
    state = build_desired(compiled, source(pupil("1"), damaged), problems=[problem])
    assert set(state.accounts) == {"1"}
    assert [(h.key, h.anchor, h.field) for h in state.held] == [("2", "2", "voorlopig")]


def test_an_unreadable_key_counts_as_a_row_of_an_unknown_person_of_its_school(tmp_path):
    compiled = mappings(tmp_path, PUPILS)
    problems = [
        ValueProblem("Lln", "030577", None, "p_persoon", "not a person key"),
        ValueProblem("Lln", "030577", None, "p_persoon", "not a person key"),
    ]
    state = build_desired(compiled, source(pupil("1")), problems=problems)
    assert set(state.accounts) == {"1"} and not state.held
    assert state.unknown_rows == {"030577": 2}


def test_an_empty_username_holds_the_person_with_their_anchor(tmp_path):
    text = PUPILS.replace(
        "{{ (Lln.Voornaam ~ '.' ~ Lln.Naam) | username }}", "{{ Lln.Voornaam | username }}"
    )
    compiled = mappings(tmp_path, text)
    # no Latin letter to make a name from (unless the username filter has a fallback for it)
    state = build_desired(compiled, source(pupil("1"), pupil("2", voornaam="")))
    assert set(state.accounts) == {"1"}
    (hold,) = state.held
    assert (hold.key, hold.anchor) == ("2", "2")
    assert "the username template gives an empty name for this person" in hold.reason


def test_a_template_that_fails_for_one_person_holds_that_person(tmp_path):
    text = PUPILS.replace(
        'mail: "{{ username }}@x.be"',
        'mail: "{{ username }}@x.be"\n      born: "{{ Lln.geboortedatum | date }}"',
    )
    compiled = mappings(tmp_path, text)
    data = source(
        pupil("1", geboortedatum="2011-01-10"), pupil("2", "Piet", geboortedatum="10/01/2011x")
    )
    state = build_desired(compiled, data)
    assert set(state.accounts) == {"1"} and not state.report.errors
    (hold,) = state.held
    assert hold.anchor == "2" and "accounts.pupils.attributes.born" in hold.reason
    assert "(person 2)" in hold.reason


def test_an_anchor_that_cannot_be_made_holds_the_person_without_an_anchor(tmp_path):
    text = PUPILS.replace(
        "    username:", '    anchor: "{{ Lln.stamnr | date }}"\n    username:', 1
    )
    compiled = mappings(tmp_path, text)
    state = build_desired(
        compiled, source(pupil("1", stamnr="2011-01-10"), pupil("2", "Piet", stamnr="x"))
    )
    assert [a.username for a in state.accounts.values()] == ["jan.peeters"]
    (hold,) = state.held
    assert hold.key == "2" and hold.anchor is None


STAFF_TOO = (
    PUPILS
    + """\
  staff:
    persons: {source: Leerkrachten}
    username: {template: "{{ Leerkrachten.Voornaam | username }}"}
    attributes:
      mail: "{{ username }}@x.be"
    unique: [mail]
"""
)


def test_a_pupil_and_a_staff_member_with_one_anchor_are_both_held(tmp_path):
    compiled = mappings(tmp_path, STAFF_TOO)
    teacher = {"p_persoon": "2", "Voornaam": "Mieke", "Naam": "Mertens"}
    other = {"p_persoon": "9", "Voornaam": "Karel", "Naam": "Claes"}
    state = build_desired(
        compiled, source(pupil("1"), pupil("2", "Piet"), Leerkrachten=[teacher, other])
    )
    # the others proceed; which of the two an existing account "2" belongs to nobody can tell
    assert set(state.accounts) == {"1", "9"}
    assert not state.report.errors
    assert sorted((h.kind, h.key, h.anchor) for h in state.held) == [
        ("pupils", "2", "2"),
        ("staff", "2", "2"),
    ]
    pupil_hold = next(h for h in state.held if h.kind == "pupils")
    assert "anchor 2 is also the anchor of staff 2" in pupil_hold.reason


def test_a_group_template_failing_for_one_person_holds_them_and_drops_their_memberships(tmp_path):
    text = (
        PUPILS
        + """\
groups:
  klassen:
    members: [pupils]
    key: "klas-{{ Lln.Klascode }}"
    attributes:
      since: "{{ Lln.begin | date }}"
"""
    )
    data = source(
        pupil("1", Klascode="1A", begin="2025-09-01"),
        pupil("2", "Piet", Klascode="1B", begin="nooit"),  # makes group 1B, and fails doing so
        pupil("3", "An", Klascode="1A", begin="2025-09-01"),
    )
    state = build_desired(mappings(tmp_path, text), data)
    assert set(state.accounts) == {"1", "3"}
    assert set(state.groups) == {"klas-1A"} and state.groups["klas-1A"].members == {"1", "3"}
    assert [h.key for h in state.held] == ["2"]


# -- the planner: a held person's account is left exactly as it is -----------------------------


def _held(key: str, anchor: str | None, school: str = "030569") -> Hold:
    return Hold("pupils", key, school, "Lln.Naam: not text", anchor, "Lln", "Naam")


def test_a_held_persons_account_gets_no_change_at_all():
    yesterday = desired(
        account("1", "jan"),
        account("2", "piet"),
        account("3", "an"),
        groups={"klas-1A": {"1", "2"}, "klas-2B": {"3"}},
    )
    directory = observed_from(yesterday)
    # tonight: 2 is held (and would otherwise be renamed, moved, updated and leave klas-1A);
    # 3 is held and the only member of klas-2B
    tonight = desired(account("1", "jan"), groups={"klas-1A": {"1"}})
    tonight.held = [_held("2", "2"), _held("3", "3")]
    memory = Memory(
        leavers={"2": dt.date(2026, 2, 1)},  # was gone before: present again, if held
        kinds={"1": "pupils", "2": "pupils", "3": "pupils"},
        schools={"1": "030569", "2": "030569", "3": "030569"},
    )
    plan = plan_of(tonight, directory, origin=ORIGIN, memory=memory)
    assert [c for c in plan.changes if c.key in {"2", "3"}] == []
    assert not any(c.kind is Kind.GROUP for c in plan.changes), plan.changes
    assert plan.observations.left == []
    assert plan.observations.returned == ["2"]
    assert not plan.header.blocked
    # the same without the holds: 2 and 3 leave, klas-2B is archived, klas-1A loses 2
    plain = desired(account("1", "jan"), groups={"klas-1A": {"1"}})
    actions = {(c.action, c.key) for c in plan_of(plain, directory, origin=ORIGIN).changes}
    assert {
        (Action.DISABLE, "2"),
        (Action.DISABLE, "3"),
        (Action.ARCHIVE_GROUP, "klas-2B"),
        (Action.REMOVE_MEMBER, "klas-1A"),
    } <= actions


def test_a_held_person_keeps_their_membership_of_a_group_that_changes():
    directory = observed_from(
        desired(account("1", "jan"), account("2", "piet"), groups={"g": {"2"}})
    )
    tonight = desired(account("1", "jan"), groups={"g": {"1"}})
    tonight.held = [_held("2", "2")]
    plan = plan_of(tonight, directory, origin=ORIGIN)
    members = [(c.action, c.before, c.after) for c in plan.changes if c.key == "g"]
    assert members == [(Action.ADD_MEMBER, {}, {"members": ["1"]})]  # 2 is not removed


def test_unreadable_keys_and_anchorless_holds_make_that_schools_leavers_wait():
    yesterday = desired(account("1", "jan"), account("2", "piet"), account("3", "an"))
    directory = observed_from(yesterday)
    memory = Memory(schools={"1": "030569", "2": "030569", "3": "030577"})
    tonight = desired(account("1", "jan"))  # 2 (030569) and 3 (030577) are gone
    tonight.unknown_rows = {"030569": 1}
    plan = plan_of(tonight, directory, origin=ORIGIN, memory=memory)
    assert {(c.action, c.key) for c in plan.changes} == {(Action.DISABLE, "3")}
    assert plan.observations.left == ["3"]
    note = next(w for w in plan.header.warnings if w.startswith("school 030569"))
    assert "1 row(s) whose person key is unreadable" in note
    assert "leaver actions wait tonight (1 account(s) kept as they are)" in note

    # an account whose school the store does not know may be of the school that waits
    plan = plan_of(tonight, directory, memory=Memory(schools={"1": "030569", "3": "030577"}))
    assert {(c.action, c.key) for c in plan.changes} == {(Action.DISABLE, "3")}

    tonight.unknown_rows = {}
    tonight.held = [_held("7", None, school="030577")]  # no anchor: cannot be found by it
    plan = plan_of(tonight, directory, origin=ORIGIN, memory=memory)
    assert {(c.action, c.key) for c in plan.changes} == {(Action.DISABLE, "2")}
    assert any("1 held person(s) without an anchor" in w for w in plan.header.warnings)


def _school_of(n: int, held: int) -> DesiredState:
    state = desired(*(account(str(k), f"p{k}") for k in range(n)))
    state.held = [_held(str(1000 + k), str(1000 + k)) for k in range(held)]
    return state


def test_max_held_blocks_only_past_the_share_or_the_floor():
    # 2% of 300 = 6; of 50 = 1, raised to the floor of 5
    assert not plan_of(_school_of(294, 6), observed_from(desired()), origin=ORIGIN).header.blocked
    (blocked,) = plan_of(_school_of(293, 7), observed_from(desired()), origin=ORIGIN).header.blocked
    assert blocked.startswith("school 030569: 7 persons are held (at most 6 of 300 allowed by")
    assert not plan_of(_school_of(45, 5), observed_from(desired()), origin=ORIGIN).header.blocked
    assert plan_of(_school_of(44, 6), observed_from(desired()), origin=ORIGIN).header.blocked
    counted = Rules(policy=PolicyConfig(max_held="2"))
    plan = plan_of(_school_of(44, 3), observed_from(desired()), origin=ORIGIN, rules=counted)
    assert "at most 2 of 47 allowed by max_held 2" in plan.header.blocked[0]


def test_a_hold_that_lasts_past_max_held_days_blocks_the_plan():
    tonight = _school_of(10, 2)
    ids = [("pupils", "1000"), ("pupils", "1001")]
    memory = Memory(held={ids[0]: DAY - dt.timedelta(days=7), ("pupils", "55"): DAY})
    plan = plan_of(tonight, observed_from(desired()), origin=ORIGIN, memory=memory)
    assert [(h["key"], h["since"], h["nights"]) for h in plan.header.held] == [
        ("1000", "2026-02-23", 8),
        ("1001", "2026-03-02", 1),
    ]
    (blocked,) = plan.header.blocked
    assert blocked.startswith("1 person(s) held longer than max_held_days (7): pupils 1000;")
    # the store learns who is newly held and who is no longer
    assert plan.observations.held == [["pupils", "1001"]]
    assert plan.observations.released == [["pupils", "55"]]
    memory = Memory(held={ids[0]: DAY - dt.timedelta(days=6)})
    plan = plan_of(tonight, observed_from(desired()), origin=ORIGIN, memory=memory)
    assert not plan.header.blocked  # 7 nights: still allowed


def test_hold_clocks_are_recorded_at_apply_and_stop_when_released(tmp_path):
    tonight = _school_of(3, 2)
    with StateStore(tmp_path / "state.db") as store:
        plan = plan_of(tonight, observed_from(desired()), origin=ORIGIN)
        assert store.held_since() == {}  # planning records nothing
        record_observations(plan, store)
        assert store.held_since() == {("pupils", "1000"): DAY, ("pupils", "1001"): DAY}
        later = Origin("a" * 64, "b" * 64, "c" * 64, DAY + dt.timedelta(days=3), "a test")
        tonight.held = tonight.held[1:]
        plan = plan_of(
            tonight, observed_from(desired()), origin=later, memory=Memory(held=store.held_since())
        )
        assert plan.header.held[0]["nights"] == 4
        record_observations(plan, store)
        assert store.held_since() == {("pupils", "1001"): DAY}


# -- what people see ---------------------------------------------------------------------------


def test_the_renderings_list_the_held_persons_with_reason_and_nights():
    import jsonschema

    tonight = desired(account("1", "jan"))
    tonight.held = [
        Hold("staff", "42", "030577", "anchor 42 is also the anchor of pupils 42", "42")
    ]
    tonight.held.append(_held("7", "7"))
    memory = Memory(held={("staff", "42"): DAY - dt.timedelta(days=2)})
    plan = plan_of(tonight, observed_from(desired()), origin=ORIGIN, memory=memory)
    text = render_plan(plan)
    assert "Held (2): their accounts are left exactly as they are" in text
    assert (
        "  ! staff 42 (school 030577), held 3 nights (since 2026-02-28): anchor 42 is also the "
        "anchor of pupils 42"
    ) in text
    assert "  ! pupils 7 (school 030569), held tonight: Lln.Naam: not text" in text
    html = render_html(plan)
    assert "<h2 id='held'>Held (2)</h2>" in html and "staff 42 (school 030577)" in html
    document = plan_to_json(plan)
    jsonschema.validate(document, json.loads(SCHEMA.read_text()))
    assert document["header"]["held"][1] == {
        "kind": "pupils",
        "key": "7",
        "school": "030569",
        "reason": "Lln.Naam: not text",
        "anchor": "7",
        "dataset": "Lln",
        "field": "Naam",
        "since": "2026-03-02",
        "nights": 1,
    }
    summary = validation_summary(tonight, {}, {}, [])
    assert "staff 42 (school 030577): anchor 42 is also the anchor of pupils 42" in summary
    assert summary.rstrip().endswith("2 person(s) held")


def test_validate_exits_1_while_anyone_is_held_and_says_who(tmp_path, capsys):
    config = sample_with_mappings(tmp_path)
    pupils = tmp_path / "mappings" / "pupils.yaml"
    text = pupils.read_text()
    # one pupil's class code cannot be made into a date: that pupil is held, not the school
    broken = text.replace(
        '{{ Lln.Klascode }}"\n',
        "{{ (Lln.Klascode | date) if Lln.Klascode == '6WEWI' else Lln.Klascode }}\"\n",
    )
    assert broken != text
    pupils.write_text(broken)
    assert main(["validate", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert "Held (no change to their accounts" in out
    assert "'6WEWI' is not a date" in out
    assert out.rstrip().splitlines()[-1].endswith("person(s) held")
    assert "Errors" not in out


@pytest.mark.parametrize("value", ["-1", "x", "true"])
def test_max_held_days_must_be_a_whole_number(tmp_path, value):
    from provisioner.config import load_config
    from provisioner.errors import ConfigError

    config = sample_with_mappings(tmp_path)
    config.write_text(config.read_text() + f"policy:\n  max_held_days: {value}\n")
    with pytest.raises(ConfigError, match="max_held_days"):
        load_config(config)


# -- the damaged school the AD and Entra tests share --------------------------------------------


@dataclass
class DamagedSchool:
    """The synthetic school with an awkward corpus of records, as a real database holds them.
    Two are damaged and hold their person; every other one must proceed."""

    data: SyntheticData
    huge: str
    """A pupil whose surname is 70,000 characters: a damaged record, held."""
    bad_date: str
    """A pupil whose class row ends on 31 February: an unreadable value, held."""
    cjk: str
    """A pupil whose name has no Latin letter (王 伟): a username from the fallback."""
    rtl: str
    """A pupil with an Arabic name and a right-to-left override: the fallback, shown visibly."""
    collided: str
    """A pupil key that a new staff member has too: two anchors (lln-, pers-), two accounts."""
    odd_forms: str
    """A pupil with spaces around their names and ISO dates where xs:dateTime is usual."""
    spare: str
    """A plain pupil for the later night (see :meth:`later`)."""

    @property
    def damaged(self) -> tuple[str, ...]:
        return (self.huge, self.bad_date)

    def later(self, key: str) -> SyntheticData:
        """The next night: *key*, who had an account, now has a surname over 64 KiB and another
        class. They are held, and their account must stay exactly as it is."""
        data = copy.deepcopy(self.data)
        for row in data.rows["Lln"]:
            if row["p_persoon"] == key:
                row["Naam"] = "X" * (65 * 1024)
                row["Klascode"] = "7Z"
        return data


def plain_pupils(data: SyntheticData, count: int) -> list[str]:
    """Pupils with one realised registration that no notable case of the data uses."""
    notable = {k for value in data.notable.values() for k in value.split(",")}
    rows: dict[str, int] = {}
    for row in data.rows["Lln"]:
        rows[row["p_persoon"]] = rows.get(row["p_persoon"], 0) + 1
    plain = [
        row["p_persoon"]
        for row in data.rows["Lln"]
        if rows[row["p_persoon"]] == 1
        and row["voorlopig"] == "0"
        and not row.get("_tot")
        and row["p_persoon"] not in notable
    ]
    return sorted(plain)[:count]


def damaged_school(synthetic: SyntheticData) -> DamagedSchool:
    data = copy.deepcopy(synthetic)
    huge, bad_date, cjk, rtl, collided, odd_forms, spare = plain_pupils(data, 7)
    for row in data.rows["Lln"]:
        if row["p_persoon"] == huge:
            row["Naam"] = "Peeters" * 10_000
        if row["p_persoon"] == cjk:
            row.update(Voornaam="王", Naam="伟")
        if row["p_persoon"] == rtl:
            row.update(Voornaam="\u202eمحمد", Naam="العلي")
        if row["p_persoon"] == odd_forms:
            row.update(Voornaam=f"  {row['Voornaam']} ", Naam=f" {row['Naam']}  ")
    for row in data.rows["Subgroepen"]:
        if row["p_persoon"] == bad_date:
            row["EinddatumKlas"] = "2026-02-31T00:00:00"
        if row["p_persoon"] == odd_forms:
            row["BegindatumKlas"] = "2025-09-01"  # an ISO date where xs:dateTime is usual
    # A registration without a person key: nobody knows whose it is.
    keyless = copy.deepcopy(next(r for r in data.rows["Lln"] if r["p_persoon"] == spare))
    keyless["p_persoon"] = ""
    data.rows["Lln"].append(keyless)
    teacher = copy.deepcopy(data.rows["Leerkrachten"][0])
    teacher.update(p_persoon=collided, Naam="Botsing", Voornaam="Bea", Actief="J")
    data.rows["Leerkrachten"].append(teacher)
    return DamagedSchool(data, huge, bad_date, cjk, rtl, collided, odd_forms, spare)


def undamaged_desired(config: Path) -> DesiredState:
    """What the configured mappings want for the school as *config*'s source serves it."""
    prepared = prepare(config)
    return desired_state(prepared, read_for_mappings(prepared))


def person_keys(state: DesiredState) -> dict[str, tuple[str, str]]:
    """Anchor → (account kind, person key) of every desired account."""
    return {
        anchor: (a.kind, str(next(iter(a.person.values()))["p_persoon"]))
        for anchor, a in state.accounts.items()
    }


def check_first_night(
    plan: dict, undamaged: DesiredState, school: DamagedSchool
) -> dict[tuple[str, str], dict]:
    """The two damaged persons are held with their reason; everyone else — the awkward records
    included — gets an account; nothing is blocked. Returns the holds by (kind, key)."""
    header = plan["header"]
    assert not header["blocked"], header["blocked"]
    held = {(h["kind"], h["key"]): h for h in header["held"]}
    assert held.keys() == {("pupils", school.huge), ("pupils", school.bad_date)}
    assert "Lln.Naam: a value of 70,000 characters" in held[("pupils", school.huge)]["reason"]
    bad = held[("pupils", school.bad_date)]
    assert (bad["dataset"], bad["field"]) == ("Subgroepen", "EinddatumKlas")
    assert "2026-02-31" in bad["reason"]
    # The keyless registration: that school's leavers wait for the night, and the plan says so.
    (keyless,) = [w for w in header["warnings"] if "whose person key is unreadable" in w]
    assert "that school's leaver actions wait tonight" in keyless
    creates = {c["key"]: c for c in plan["changes"] if c["action"] == "create"}
    expected = {
        anchor for anchor, (_k, key) in person_keys(undamaged).items() if key not in school.damaged
    }
    # Everyone else, and the staff member who shares a pupil's key, under an anchor of their own.
    assert set(creates) == expected | {f"pers-{school.collided}"}
    assert {f"lln-{school.collided}", f"lln-{school.cjk}", f"lln-{school.rtl}"} <= expected
    assert creates[f"lln-{school.cjk}"]["after"]["username"] == f"lln{school.cjk}"
    assert creates[f"lln-{school.rtl}"]["after"]["username"] == f"lln{school.rtl}"
    odd = creates[f"lln-{school.odd_forms}"]["after"]["username"]
    assert odd == odd.strip() and " " not in odd and odd
    assert sum(header["persons"].values()) == len(creates) + len(held)
    return held


def test_a_person_withdrawn_after_the_engine_is_held_with_their_memberships_untouched():
    state = desired(account("1", "jan"), account("2", "piet"), groups={"a": {"1", "2"}, "b": {"2"}})
    directory = observed_from(state)
    state.withdraw(Hold("pupils", "2", "030569", "displayName: 300 characters, at most 256", "2"))
    assert set(state.accounts) == {"1"} and set(state.groups) == {"a"}
    assert state.groups["a"].members == {"1"}
    assert plan_of(state, directory).changes == []  # 2 keeps account, groups a and b


def test_held_persons_count_as_present_so_holds_never_look_like_a_drop():
    last = ("2026-03-01T02:00:00+00:00", {"030569": 10})
    plan = plan_of(_school_of(5, 5), observed_from(desired()), memory=Memory(last_persons=last))
    assert plan.header.persons == {"030569": 10}
    assert plan.header.policy_blocked == [] and plan.header.blocked == []
    plan = plan_of(_school_of(5, 0), observed_from(desired()), memory=Memory(last_persons=last))
    assert plan.header.policy_blocked  # the same five really gone: a drop


def test_nobody_takes_over_the_anchor_of_a_person_held_for_another_reason(tmp_path):
    compiled = mappings(tmp_path, STAFF_TOO)
    teacher = {"p_persoon": "2", "Voornaam": "Mieke", "Naam": "Mertens"}
    problem = ValueProblem("Lln", "030569", "2", "Naam", "not text")
    state = build_desired(
        compiled, source(pupil("1"), pupil("2", "Piet"), Leerkrachten=[teacher]), problems=[problem]
    )
    # pupil 2 is held with anchor 2; staff 2 must not get (and so update) the account "2"
    assert set(state.accounts) == {"1"}
    holds = {h.kind: h for h in state.held}
    assert holds["pupils"].reason == "Lln.Naam: not text"
    assert "anchor 2 is also the anchor of pupils 2 (held)" in holds["staff"].reason
