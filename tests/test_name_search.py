"""The search for a free unique value skips the values that are free for no one still to search
(``_ValueCursor``): it saves the k-th Jan Peeters with a long name from trying the k−1 values
before his, and changes nobody's outcome. Checked against the search without it, on crowds of
namesakes with names kept from a run before, names given before, and mappings whose login and
mail share a domain."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provisioner.mapping import engine
from provisioner.mapping.filters import username
from provisioner.mapping.spec import Template
from provisioner.mapping.templates import Compiled, Row, TemplateError
from provisioner.model import DesiredState
from tests.test_anchors import DEFAULTS, pupil, school, teacher
from tests.test_names import desired, observed_from

FIRST = ["Jan", "Marie-Louise", "An"]
LAST = ["Peeters", "Vandenbroucke-Vermeulen", "Vandenbossche"]

person = st.tuples(st.sampled_from(FIRST), st.sampled_from(LAST))
crowd = st.lists(person, min_size=1, max_size=40)


def mappings(tmp_path: Path, upn_from_login: bool) -> Path:
    """The default mappings; with *upn_from_login* the pupils' UPN is the login's, in the mail's
    domain, so a value the mail search meets may be a later person's own UPN."""
    target = tmp_path / f"mappings-{upn_from_login}"
    if not target.exists():
        shutil.copytree(DEFAULTS["ad"], target)
        if upn_from_login:
            pupils = target / "pupils.yaml"
            text = pupils.read_text()
            old = 'userPrincipalName: "{{ name }}@{{ vars.pupil_domain }}"'
            assert old in text
            pupils.write_text(
                text.replace(old, 'userPrincipalName: "{{ username }}@{{ vars.pupil_domain }}"')
            )
    return target


def outcome(state: DesiredState) -> dict[str, tuple]:
    return {
        anchor: (account.username, sorted((k, d.value) for k, d in account.attributes.items()))
        for anchor, account in state.accounts.items()
    } | {f"held {h.kind} {h.key}": (h.reason,) for h in state.held}


def run(
    folder: Path,
    rows,
    before: DesiredState | None,
    issued: set[str],
    own: dict[str, set[str]] | None = None,
) -> DesiredState:
    """The desired state of *rows* after *before* (its names kept), with names given before."""
    observed = observed_from(before) if before is not None else None
    given = issued | {name for names in (own or {}).values() for name in names}
    return desired(folder, rows, observed, issued=given, own=own)


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[bool, Path]:
    tmp = tmp_path_factory.mktemp("name-search")
    return {flag: mappings(tmp, flag) for flag in (False, True)}


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    pupils=crowd,
    staff=st.lists(person, max_size=8),
    stay=st.lists(st.booleans(), min_size=48, max_size=48),
    issued=st.lists(
        st.sampled_from(
            [
                "jan.peeters3@leerling.school.be",
                "marie-louise.vandenbroucke-vermeulen2@leerling.school.be",
                "an.vandenbossche",
                "marie-louise.vandenb4",
                "jan.peeters5",
            ]
        ),
        max_size=3,
    ),
    upn_from_login=st.booleans(),
    returning=st.lists(st.tuples(st.integers(0, 39), st.integers(2, 6)), max_size=4),
)
def test_skipping_values_changes_no_outcome(
    folders, monkeypatch, pupils, staff, stay, issued, upn_from_login, returning
):
    folder = folders[upn_from_login]
    rows = school(
        pupils=[pupil(str(10 + i), first, last) for i, (first, last) in enumerate(pupils)],
        staff=[teacher(str(100 + i), first, last) for i, (first, last) in enumerate(staff)],
    )
    # A run before, of some of the same persons (others are newcomers now), its names kept.
    earlier = school(
        pupils=[pupil(str(10 + i), f, n) for i, (f, n) in enumerate(pupils) if stay[i % 48]],
        staff=[],
    )
    before = run(folder, earlier, None, set())
    # Pupils who come back: a mail given to them before (with a suffix) is their own again,
    # while their login then was another.
    own: dict[str, set[str]] = {}
    for index, suffix in returning:
        if index < len(pupils):
            first, last = pupils[index]
            mail = f"{username(f'{first}.{last}')}{suffix}@leerling.school.be"
            own.setdefault(f"lln-{10 + index}", set()).add(mail)
    with_skips = run(folder, rows, before, set(issued), own)
    with monkeypatch.context() as patched:
        patched.setattr(engine._ValueCursor, "passed", lambda self, n, candidate: None)
        without = run(folder, rows, before, set(issued), own)
    assert outcome(with_skips) == outcome(without)


def test_the_kth_namesake_with_a_long_name_tries_few_values(monkeypatch, tmp_path):
    """Forty pupils Marie-Louise Vandenbroucke-Vermeulen: their logins are cut (marie-louise.
    vandenb…), their mail is whole. Each mail search now tries about three values (the plain one, then from where the free ones begin), not k."""
    rows = school(
        pupils=[pupil(str(i), "Marie-Louise", "Vandenbroucke-Vermeulen") for i in range(1, 41)],
        staff=[],
    )
    tried: list[str] = []
    first_free = engine.Engine._first_free

    def counted(self, base, scheme, is_free, cursors, attribute="username", values=None):
        def noted(name: str) -> bool:
            tried.append(attribute)
            return is_free(name)

        return first_free(self, base, scheme, noted, cursors, attribute, values)

    monkeypatch.setattr(engine.Engine, "_first_free", counted)
    state = run(DEFAULTS["ad"], rows, None, set())
    mails = {a.attributes["mail"].value for a in state.accounts.values()}
    assert len(mails) == 40 and state.held == []
    assert tried.count("mail") <= 3 * 40, tried.count("mail")
    monkeypatch.setattr(engine._ValueCursor, "passed", lambda self, n, candidate: None)
    tried.clear()
    run(DEFAULTS["ad"], rows, None, set())
    assert tried.count("mail") > 10 * 40  # what the search tried without skipping values


INSERTING = [
    "{{ name }}@{{ vars.domain }}",
    "{{ name }}",
    "  {{ vars.before }}{{ name }}{{ vars.after }}  ",
    "{{ vars.before }} {{ name }} x",
    "{{ name }}@{{ vars.domain | replace('a', 'b') }}",  # the other part through Jinja
]
NOT_INSERTING = ["{{ name }}.{{ name }}", "{{ name | upper }}@{{ vars.domain }}", "x"]
text = st.text(alphabet=st.sampled_from(["a", "B", " ", "\t", "\n", "é", ".", "\u3000"]))


@settings(max_examples=300, deadline=None)
@given(
    source=st.sampled_from(INSERTING + NOT_INSERTING),
    parts=st.fixed_dictionaries({"domain": text, "before": text, "after": text}),
    names=st.lists(st.one_of(text, st.sampled_from(["jan.peeters2", "", " jan ", "a b"]))),
)
def test_name_values_are_the_renderings(source, parts, names):
    """Every value the search tries is what rendering the template with that name makes, also
    when it is made from the text around the name, rendered once (``_NameValues``)."""
    template = Compiled(Template(source, Path("m.yaml"), 1, "test"), expression=False, datasets={})
    context = {"vars": Row(parts), "username": "u"}
    values = engine._NameValues(template, context, "1")
    values.fixed()
    assert (values.around() is not None) == (source in INSERTING)
    for name in names:
        assert values(name) == template.render({**context, "name": name}, "1")


def test_a_name_value_too_long_fails_as_its_rendering():
    template = Compiled(
        Template("{{ name }}@{{ vars.domain }}", Path("m.yaml"), 1, "test"),
        expression=False,
        datasets={},
    )
    values = engine._NameValues(template, {"vars": Row({"domain": "x" * 60_000})}, "1")
    assert values.around() is not None
    assert values("a" * 100).startswith("a" * 100)
    with pytest.raises(TemplateError, match="longer than 64 KiB"):
        values("a" * 6_000)
