"""The mapping engine: default mappings on the synthetic school, and each rule on small data."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provisioner.mapping.engine import (
    MappingError,
    build_desired,
    compile_mappings,
    fields_to_fetch,
)
from provisioner.mapping.filters import USERNAME_PATTERN
from provisioner.mapping.spec import load_mappings
from provisioner.mapping.templates import RenderLimitError
from provisioner.model import Dataset, SourceRows
from provisioner.sources.informat.operations import OPERATIONS, operation
from provisioner.sources.informat.reader import read_source
from tests.conftest import REFERENCE_DAY, informat_config

ROOT = Path(__file__).resolve().parent.parent


# -- the default mappings on the synthetic school ------------------------------------------------


@pytest.fixture(scope="module")
def defaults():
    return compile_mappings(load_mappings(ROOT / "mappings"), OPERATIONS)


@pytest.fixture(scope="module")
def school(informat_server, defaults):
    """The synthetic school read through the real reader, only what the mappings use."""
    fields = fields_to_fetch(defaults)
    informat_server.requests.clear()
    data = read_source(
        informat_config(informat_server.url),
        [operation(n) for n in fields],
        fields=fields,
        today=REFERENCE_DAY,
    )
    asked = {r.op for r in informat_server.requests}
    state = build_desired(defaults, data.as_source_rows(), today=REFERENCE_DAY)
    return data, state, asked


def test_only_the_referenced_data_sets_and_fields_are_fetched(defaults, school):
    data, _state, asked = school
    assert fields_to_fetch(defaults) == {
        "Lln": ["Klascode", "Naam", "Voornaam", "school", "voorlopig"],
        "Leerkrachten": ["Actief", "Naam", "Voornaam"],
        "LeerkrachtenVrijevelden": ["OmschrijvingVrijVeld", "WaardeVrijVeld"],
        "Subgroepen": [
            "EinddatumKlas",
            "Groeptype",
            "Instelnr",
            "Klascode",
            "Klastitularis",
            "School",
        ],
    }
    assert asked == {"Lln", "Leerkrachten", "LeerkrachtenVrijevelden", "Subgroepen"}
    # Nothing downstream carries unreferenced fields: no birth dates, no national numbers.
    kept = {field for record in data.records("Lln") for field in record}
    assert kept == {"p_persoon", "Klascode", "Naam", "Voornaam", "school", "voorlopig"}


def account_of(state, key: str):
    """The account of person *key* under the default mappings, pupil (lln-) or staff (pers-)."""
    (account,) = [state.accounts[a] for a in (f"lln-{key}", f"pers-{key}") if a in state.accounts]
    return account


def has_account(state, key: str) -> bool:
    return f"lln-{key}" in state.accounts or f"pers-{key}" in state.accounts


GOLDEN = {  # notable person of the synthetic data → username the default mappings give
    "diacritics": "zoe.celik",  # Zoë Çelik
    "apostrophe": "noemie.dhondt",  # Noémie D'Hondt
    "school_changer": "jiri.leroy",  # Jiří Leroy
    "hoofdstructuur_312": "olaf.pauwels",  # Ølaf Pauwels
    "no_relations": "soren.jacobs",  # Søren Jacobs
    "single_relation": "amelie.vandenbossche",  # Amélie Van den Bossche
    "two_schools_pupil": "seppe.declercq",  # Seppe De Clercq
    "staff_with_particle": "marie-louise.vandenb",  # Marie-Louise Van den Bossche, cut at 20
    "long_name": "marie-louiseanaisnoe",  # four given names and a long surname, cut at 20
}


@pytest.mark.parametrize(("notable", "expected"), GOLDEN.items())
def test_golden_usernames_of_hard_names(synthetic, school, notable, expected):
    _data, state, _asked = school
    account = account_of(state, synthetic.notable[notable])
    assert account.username == expected
    domain = "school.be" if account.kind == "staff" else "leerling.school.be"
    upn = account.attributes["userPrincipalName"].value
    assert upn == FULL_NAMES.get(notable, expected) + "@" + domain
    assert account.attributes["mail"].value == upn


FULL_NAMES = {  # the mail address and the UPN keep the whole name (up to 64 characters)
    "staff_with_particle": "marie-louise.vandenbossche",
    "long_name": "marie-louiseanaisnoemie.vandenbossche-vandeneyndedeghellinckdels",
}


def test_duplicate_full_names_get_a_suffix_in_key_order(synthetic, school):
    _data, state, _asked = school
    first, second = sorted(
        synthetic.notable["duplicate_name"].split(","), key=lambda k: (len(k), k)
    )
    assert account_of(state, first).username == "lotte.peeters"
    assert account_of(state, second).username == "lotte.peeters2"
    assert any(
        c.anchor == f"lln-{second}" and c.given == "lotte.peeters2" for c in state.report.collisions
    )


def test_who_gets_an_account(synthetic, school):
    _data, state, _asked = school
    n = synthetic.notable
    for without in ("pre_registration", "not_realised", "leaver", "inactive_staff"):
        assert not has_account(state, n[without]), without
    assert account_of(state, n["double_registration"]).kind == "pupils"  # realised row kept
    assert account_of(state, n["two_schools_staff"]).kind == "staff"


def test_a_person_in_two_schools_gets_one_account_and_the_choice_is_listed(synthetic, school):
    _data, state, _asked = school
    key = synthetic.notable["two_schools_pupil"]
    account = account_of(state, key)
    assert account.school == "030569"  # the first configured instelnr
    (duplicate,) = [d for d in state.report.duplicates if d.key == key]
    assert (duplicate.rows, duplicate.chosen_school, duplicate.reason) == (
        2,
        "030569",
        "school order",
    )


def test_every_username_is_valid_and_unique(school):
    _data, state, _asked = school
    names = [a.username for a in state.accounts.values()]
    assert len(set(names)) == len(names)
    assert all(USERNAME_PATTERN.match(n) and len(n) <= 20 for n in names)
    mails = [a.attributes["mail"].value for a in state.accounts.values()]
    assert len(set(mails)) == len(mails)


def test_class_groups_members_and_class_teachers(synthetic, school):
    _data, state, _asked = school
    classes = [g for g in state.groups.values() if g.kind == "classes"]
    assert classes and all(g.key.startswith("klas-0305") for g in classes)
    pupil = account_of(state, synthetic.notable["diacritics"])
    (own,) = [g for g in classes if pupil.anchor in g.members]
    assert own.key == f"klas-{pupil.school}-{pupil.attributes['department'].value}"
    assert own.ou == ("Groepen", "Klassen", pupil.school)
    assert sum(1 for g in classes if g.owners) >= len(classes) // 2
    staff_anchors = {a.anchor for a in state.accounts.values() if a.kind == "staff"}
    assert all(g.owners <= staff_anchors for g in classes)
    assert state.groups["personeel"].members == staff_anchors


def test_an_ended_class_membership_is_not_a_membership(synthetic, school):
    _data, state, _asked = school
    changer = synthetic.notable["class_change"]
    memberships = [
        g.key
        for g in state.groups.values()
        if g.kind == "classes" and f"lln-{changer}" in g.members
    ]
    assert len(memberships) == 1


def test_provenance_names_template_place_and_fields(school, synthetic):
    _data, state, _asked = school
    account = account_of(state, synthetic.notable["diacritics"])
    why = account.attributes["mail"].why
    assert why.template == "accounts.pupils.attributes.mail"
    assert why.location.endswith("mappings/pupils.yaml:18")
    assert set(why.fields) == {"Lln.Voornaam", "Lln.Naam"}  # through {{ username }}
    assert account.attributes["department"].why.fields == ("Lln.Klascode",)


# -- rules on small hand-made data -----------------------------------------------------------


def mappings(tmp_path: Path, text: str):
    path = tmp_path / "m.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return compile_mappings(load_mappings(path), OPERATIONS)


def source(*lln: dict, schools=("030569", "030577"), **others) -> SourceRows:
    def dataset(key, rows):
        rows = [(r.pop("_school", schools[0]), r) for r in map(dict, rows)]
        return Dataset(key, rows, frozenset(f for _s, r in rows for f in r))

    datasets = {"Lln": dataset("p_persoon", lln)}
    for name, rows in others.items():
        datasets[name] = dataset(operation(name).key, rows)
    return SourceRows(list(schools), datasets)


PUPILS = """\
accounts:
  pupils:
    persons: {source: Lln, where: Lln.voorlopig == "0"}
    username: {template: "{{ (Lln.Voornaam ~ '.' ~ Lln.Naam) | username }}", max_length: 12}
    attributes:
      mail: "{{ username }}@x.be"
    unique: [mail]
"""


def pupil(key: str, voornaam: str = "Jan", naam: str = "Peeters", **extra) -> dict:
    return {"p_persoon": key, "Voornaam": voornaam, "Naam": naam, "voorlopig": "0", **extra}


def names(state) -> dict[str, str]:
    return {anchor: a.username for anchor, a in state.accounts.items()}


def test_suffixes_follow_key_order_and_respect_the_length_cap(tmp_path):
    compiled = mappings(tmp_path, PUPILS)
    state = build_desired(compiled, source(pupil("30"), pupil("4"), pupil("100"), pupil("7")))
    # numeric keys sort as numbers; "jan.peeters" is 11, the cap 12: suffixes cut the base
    assert names(state) == {
        "4": "jan.peeters",
        "7": "jan.peeters2",
        "30": "jan.peeters3",
        "100": "jan.peeters4",
    }
    long = build_desired(
        compiled, source(*(pupil(str(k), "Jan", "Vandenbossche") for k in range(12)))
    )
    assert {len(n) for n in names(long).values()} == {12}
    given = names(long)
    assert (given["0"], given["1"], given["8"], given["9"]) == (
        "jan.vandenbo",  # "jan.vandenbossche" cut at 12
        "jan.vandenb2",  # the suffix replaces the end: never longer than the cap
        "jan.vandenb9",
        "jan.vanden10",
    )


def test_people_keep_their_names_and_issued_names_are_never_given_again(tmp_path):
    compiled = mappings(tmp_path, PUPILS)
    state = build_desired(
        compiled,
        source(pupil("1"), pupil("2"), pupil("3")),
        existing={"3": "jan.peeters"},  # the highest key already holds the plain name
        issued={"jan.peeters", "jan.peeters2", "Jan.Peeters3"},  # given before, to people gone
    )
    assert names(state) == {"3": "jan.peeters", "1": "jan.peeters4", "2": "jan.peeters5"}


def test_a_unique_attribute_that_collides_moves_the_name_on(tmp_path):
    text = PUPILS.replace('mail: "{{ username }}@x.be"', 'mail: "{{ Lln.Naam | lower }}@x.be"')
    compiled = mappings(tmp_path, text)
    state = build_desired(compiled, source(pupil("1", "Jan"), pupil("2", "Piet")))
    # the mail does not depend on the name, so no suffix can make it unique: held, no loop
    assert names(state) == {"1": "jan.peeters"}
    assert not state.report.errors
    (hold,) = state.held
    assert (hold.kind, hold.key, hold.anchor) == ("pupils", "2", "2")
    # said at the line of the attribute that stays taken, not at the username's
    line = next(i for i, t in enumerate(text.splitlines(), 1) if t.strip().startswith("mail:"))
    assert hold.reason.startswith(f"{tmp_path / 'm.yaml'}:{line}: accounts.pupils.attributes.mail")
    assert (
        "no free value ('peeters@x.be' is taken and does not change with the username) after "
        "10000 suffixes of 'piet.peeters'; make every unique attribute use {{ username }} or "
        "{{ name }}" in hold.reason
    )


def test_prefer_and_school_order_resolve_duplicates(tmp_path):
    text = PUPILS.replace(
        'persons: {source: Lln, where: Lln.voorlopig == "0"}',
        "persons: {source: Lln, prefer: ['Lln.voorlopig == \"0\"'], schools: ['030577', '030569']}",
    )
    compiled = mappings(tmp_path, text)
    rows = [
        pupil("1", Klas="A", _school="030569"),
        pupil("1", Klas="B", _school="030577"),
        pupil("2", Klas="C", voorlopig="4", _school="030577"),
        pupil("2", Klas="D", _school="030569"),
    ]
    state = build_desired(compiled, source(*rows))
    assert state.accounts["1"].school == "030577"  # the configured school order
    assert state.accounts["2"].person["Lln"]["Klas"] == "D"  # prefer beats school order
    reasons = {d.key: d.reason for d in state.report.duplicates}
    assert reasons == {"1": "school order", "2": 'prefer: Lln.voorlopig == "0"'}


def test_joins_use_the_person_key_and_the_same_school_first(tmp_path):
    text = """\
    accounts:
      pupils:
        persons: {source: Lln, join: [SmartschoolUsers], join_many: [Subgroepen]}
        username: {template: "{{ SmartschoolUsers.Gebruikersnaam or (Lln.Voornaam | username) }}"}
        attributes:
          classes: "{{ Subgroepen | map(attribute='Klascode') | join(',') }}"
    """
    compiled = mappings(tmp_path, text)
    data = source(
        pupil("1", _school="030577"),
        pupil("2", "Piet"),
        SmartschoolUsers=[
            {"PPersoon": "1", "Gebruikersnaam": "wrong.school", "_school": "030569"},
            {"PPersoon": "1", "Gebruikersnaam": "jan.smartschool", "_school": "030577"},
        ],
        Subgroepen=[
            {"p_persoon": "1", "Klascode": "1A"},
            {"p_persoon": "1", "Klascode": "1A-lat"},
        ],
    )
    state = build_desired(compiled, data)
    assert names(state) == {"1": "jan.smartschool", "2": "piet"}
    assert state.accounts["1"].attributes["classes"].value == "1A,1A-lat"
    assert fields_to_fetch(compiled)["Subgroepen"] == ["Klascode"]
    assert fields_to_fetch(compiled)["SmartschoolUsers"] == ["Gebruikersnaam"]


@settings(max_examples=60, deadline=None)
@given(
    people=st.lists(
        st.tuples(
            st.sampled_from(["Jan", "Zoë", "Marie-Louise", "Jiří", "Noémie", "An", "李"]),
            st.sampled_from(
                [
                    "Peeters",
                    "D'Hondt",
                    "Van den Bossche",
                    "Çelik",
                    "De Smet",
                    "Vanden Eynde-Van Acker de Ghellinck",
                ]
            ),
        ),
        min_size=1,
        max_size=40,
    ),
    removed=st.sets(st.integers(0, 39)),
    added=st.integers(0, 10),
)
def test_usernames_are_valid_unique_and_stable_when_people_come_and_go(
    tmp_path_factory, people, removed, added
):
    compiled = mappings(tmp_path_factory.mktemp("m"), PUPILS)
    first = build_desired(
        compiled, source(*(pupil(str(i), v, n) for i, (v, n) in enumerate(people)))
    )
    given = names(first)
    for name in given.values():
        assert USERNAME_PATTERN.match(name) and len(name) <= 12
    assert len(set(given.values())) == len(given)
    # the next night: some left, some arrived; the names already given are fed back
    stay = [(i, p) for i, p in enumerate(people) if i not in removed]
    new = [(1000 + j, people[j % len(people)]) for j in range(added)]
    second = build_desired(
        compiled,
        source(*(pupil(str(i), v, n) for i, (v, n) in stay + new)),
        existing={k: v for k, v in given.items() if int(k) not in removed},
        issued=set(given.values()),
    )
    again = names(second)
    for i, _p in stay:
        if str(i) in given:
            assert again[str(i)] == given[str(i)]
    newcomers = [again[str(i)] for i, _p in new if str(i) in again]
    assert not set(newcomers) & set(given.values())  # never someone else's old name
    assert len(set(again.values())) == len(again)


# -- errors -------------------------------------------------------------------------------------


def test_every_compile_error_is_reported_at_once_with_file_and_line(tmp_path):
    text = PUPILS.replace(
        '      mail: "{{ username }}@x.be"\n',
        '      mail: "{{ username }}@x.be"\n'
        '      displayName: "{{ Lln.Voornaam }"\n'
        '      company: "{{ Lnn.school }}"\n',
    )
    with pytest.raises(MappingError) as caught:
        mappings(tmp_path, text)
    problems = caught.value.problems
    assert len(problems) == 2
    assert problems[0].startswith(
        f"{tmp_path / 'm.yaml'}:7: accounts.pupils.attributes.displayName"
    )
    assert "unexpected '}'" in problems[0]
    assert ":8: accounts.pupils.attributes.company: unknown name 'Lnn'" in problems[1]


def test_render_errors_name_the_template_and_hold_each_person(tmp_path):
    text = PUPILS.replace(
        'mail: "{{ username }}@x.be"',
        'mail: "{{ username }}@x.be"\n      born: "{{ Lln.Naam | date }}"',
    )
    compiled = mappings(tmp_path, text)
    state = build_desired(compiled, source(pupil("1"), pupil("2", "Piet")))
    assert not state.report.errors and not state.accounts
    assert [h.key for h in state.held] == ["1", "2"]
    first, second = (h.reason for h in state.held)
    assert first.startswith(f"{tmp_path / 'm.yaml'}:7: accounts.pupils.attributes.born")
    assert "'Peeters' is not a date" in first
    assert "(person 1)" in first and "(person 2)" in second


def test_a_misspelt_field_is_an_error_with_a_suggestion(tmp_path):
    compiled = mappings(tmp_path, PUPILS.replace("Lln.Naam) | username", "Lln.Nam) | username"))
    state = build_desired(compiled, source(pupil("1")))
    assert any(
        "Lln has no field 'Nam': no row has it (did you mean 'Naam'" in e
        for e in state.report.errors
    )


def test_templates_run_sandboxed(tmp_path):
    text = PUPILS.replace('mail: "{{ username }}@x.be"', "mail: \"{{ ''.__class__.__mro__ }}\"")
    compiled = mappings(tmp_path, text)
    state = build_desired(compiled, source(pupil("1")))
    assert any("SecurityError" in e or "unsafe" in e for e in state.report.errors)
    assert "1" not in state.accounts


def test_today_is_the_day_the_data_describes(tmp_path):
    text = PUPILS.replace(
        'where: Lln.voorlopig == "0"', "where: not Lln.einddatum or Lln.einddatum >= today"
    )
    compiled = mappings(tmp_path, text)
    data = source(pupil("1", einddatum="2026-01-10"), pupil("2", "Piet"))
    assert set(build_desired(compiled, data, today=dt.date(2026, 1, 10)).accounts) == {"1", "2"}
    assert set(build_desired(compiled, data, today=dt.date(2026, 1, 11)).accounts) == {"2"}


def test_where_sees_only_the_source_data_set(tmp_path):
    text = PUPILS.replace(
        'persons: {source: Lln, where: Lln.voorlopig == "0"}',
        "persons: {source: Lln, join: [LlnExtra], where: LlnExtra.Internaat == ''}",
    )
    with pytest.raises(MappingError, match="unknown name 'LlnExtra' \\(where and prefer see only"):
        mappings(tmp_path, text)


def test_a_misspelt_var_is_a_compile_error(tmp_path):
    text = "vars: {domain: x.be}\n" + PUPILS.replace("@x.be", "@{{ vars.domian }}")
    with pytest.raises(MappingError, match=r"vars\.domian is not defined \(defined: domain\)"):
        mappings(tmp_path, text)


def test_fields_read_through_filter_chains_are_fetched(tmp_path):
    text = PUPILS.replace(
        "persons: {source: Lln,",
        "persons: {source: Lln, join_many: [Subgroepen],",
    ).replace(
        'mail: "{{ username }}@x.be"',
        'mail: "{{ username }}@x.be"\n'
        "      klas: \"{{ Subgroepen | selectattr('Groeptype', 'equalto', '0') "
        "| map(attribute='Klascode') | join(',') }}\"\n"
        '      eerste: "{{ (Subgroepen | first).Klasnr }}"',
    )
    compiled = mappings(tmp_path, text)
    assert fields_to_fetch(compiled)["Subgroepen"] == ["Groeptype", "Klascode", "Klasnr"]


def test_reading_a_field_that_was_not_fetched_is_an_error_not_an_empty_value(tmp_path):
    compiled = mappings(
        tmp_path, PUPILS.replace('mail: "{{ username }}@x.be"', 'mail: "{{ Lln.Klascode }}@x.be"')
    )
    data = source(pupil("1", Klascode="1A"))
    data.datasets["Lln"].kept = frozenset({"Voornaam", "Naam", "voorlopig"})  # Klascode left out
    data.datasets["Lln"].rows[0][1].pop("Klascode")
    state = build_desired(compiled, data)
    assert "1" not in state.accounts
    assert any("field 'Klascode' was not fetched" in e for e in state.report.errors)


def test_schools_must_be_schools_of_the_source(tmp_path):
    text = PUPILS.replace(
        'persons: {source: Lln, where: Lln.voorlopig == "0"}',
        "persons: {source: Lln, schools: ['30577']}",
    )
    state = build_desired(mappings(tmp_path, text), source(pupil("1")))
    assert any(
        "schools: 30577 is not one of the source's schools (030569, 030577)" in e
        for e in state.report.errors
    )


def test_an_empty_group_key_holds_that_person(tmp_path):
    text = (
        PUPILS
        + """\
groups:
  klassen:
    members: [pupils]
    key: "{{ Lln.Klascode }}"
"""
    )
    state = build_desired(
        mappings(tmp_path, text), source(pupil("1"), pupil("2", "Piet", Klascode="1A"))
    )
    assert set(state.groups) == {"1A"}
    assert not state.report.errors and "1" not in state.accounts
    (hold,) = state.held
    assert hold.key == "1" and "groups.klassen.key: the group key template gives an empty key" in (
        hold.reason
    )


def test_a_template_bomb_stops_the_run_with_one_error_naming_file_line_and_person(tmp_path):
    text = PUPILS.replace(
        'mail: "{{ username }}@x.be"',
        'mail: "{{ username }}@x.be"\n      info: |-\n        first line\n        {{ "x" * 10**9 }}',
    )
    compiled = mappings(tmp_path, text)
    with pytest.raises(RenderLimitError) as caught:
        build_desired(compiled, source(pupil("1"), pupil("2", "Piet")))
    # The template's second line: the block scalar's text starts on line 8, below "info: |-".
    assert str(caught.value) == (
        f"{tmp_path / 'm.yaml'}:9: accounts.pupils.attributes.info: a template makes a value "
        "longer than 64 KiB (repeated 1,000,000,000 times); mapping values are names, addresses "
        "and paths: check the template (person 1)"
    )


def test_a_value_over_64_kib_from_the_data_holds_only_that_person(tmp_path):
    compiled = mappings(tmp_path, PUPILS.replace("{{ username }}@x.be", "{{ Lln.Klascode }}"))
    huge = "1A" * (32 * 1024 + 1)
    state = build_desired(
        compiled, source(pupil("1", Klascode=huge), pupil("2", "Piet", Klascode="1B"))
    )
    assert not state.report.errors
    (hold,) = state.held
    # Held before any template sees the value: joined with other text in a template it would
    # otherwise hit the sandbox's limit, which stops the whole run.
    assert hold.reason == (
        "Lln.Klascode: a value of 65,538 characters; no field of a person is longer than 4,096: "
        "a damaged record in the source"
    )
    assert (hold.dataset, hold.field, hold.anchor) == ("Lln", "Klascode", "1")
    assert "1" not in state.accounts and "2" in state.accounts


def test_the_values_of_one_run_are_capped_together(tmp_path, monkeypatch):
    from provisioner.mapping import templates

    compiled = mappings(tmp_path, PUPILS)
    people = [pupil(str(n), f"Voornaam{n}") for n in range(1, 40)]
    assert len(build_desired(compiled, source(*people)).accounts) == 39
    monkeypatch.setattr(templates, "MAX_RUN_CHARS", 1000)
    with pytest.raises(RenderLimitError, match=r"made more than 0 MiB of values in this run"):
        build_desired(compiled, source(*people))


def test_the_loops_of_one_run_are_capped_together(tmp_path, monkeypatch):
    from provisioner.mapping import templates

    text = PUPILS.replace(
        'mail: "{{ username }}@x.be"',
        'mail: "{{ username }}@x.be"\n      info: "{% for i in range(100) %}{% endfor %}{{ key }}"',
    )
    compiled = mappings(tmp_path, text)
    people = [pupil(str(n), f"Voornaam{n}") for n in range(1, 40)]
    state = build_desired(compiled, source(*people))
    assert state.accounts["7"].attributes["info"].value == "7"
    monkeypatch.setattr(templates, "MAX_RUN_ITERATIONS", 1000)
    with pytest.raises(
        RenderLimitError, match=r"ran their loops more than 1,000 times .*person 11"
    ):
        build_desired(compiled, source(*people))
