"""Names of existing accounts: renames as a policy (``username.rename: keep | follow``), unique
attributes with a suffix of their own (``{{ name }}``: the whole name in mail and UPN while the
login is cut to 20), names taken outside the managed scope, and adoption from outside by anchor.

The engine and the planner are exercised here on plain data; the same on the real DC is in
``tests/test_names_e2e_ad.py`` and against the Graph server in ``tests/test_names_entra.py``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from provisioner.apply import names_given
from provisioner.mapping.engine import MappingError, build_desired, compile_mappings
from provisioner.mapping.names import SENTINEL, NameBook, Scheme, name_in
from provisioner.mapping.spec import load_mappings
from provisioner.model import (
    DesiredState,
    ObservedAccount,
    ObservedGroup,
    ObservedState,
    SourceRows,
)
from provisioner.plan.diff import diff
from provisioner.plan.model import Action, Change, Kind, Precondition
from provisioner.plan.planner import names_in_use
from provisioner.sources.informat.operations import OPERATIONS
from tests.test_anchors import DEFAULTS, pupil, school, teacher

INITIAL_AND_SURNAME = "{{ (Lln.Voornaam[:1] ~ '.' ~ Lln.Naam) | username(fallback='lln' ~ key) }}"
DEFAULT_PUPIL_TEMPLATE = "{{ (Lln.Voornaam ~ '.' ~ Lln.Naam) | username(fallback='lln' ~ key) }}"


def mappings_dir(tmp_path: Path, *, template: str | None = None, rename: str | None = None) -> Path:
    """The default AD mappings, with the pupils' username template and rename policy changed."""
    target = tmp_path / "mappings"
    shutil.copytree(DEFAULTS["ad"], target)
    pupils = target / "pupils.yaml"
    text = pupils.read_text()
    if template is not None:
        assert DEFAULT_PUPIL_TEMPLATE in text
        text = text.replace(DEFAULT_PUPIL_TEMPLATE, template)
    if rename is not None:
        text = text.replace(
            "      max_length: 20 ", f"      rename: {rename}\n      max_length: 20 "
        )
    pupils.write_text(text)
    return target


def desired(mappings: Path, data: SourceRows, observed: ObservedState | None = None, **kw):
    names = names_in_use(
        observed or ObservedState(),
        kw.pop("issued_to", {}),
        kw.pop("issued", set()),
        own=kw.pop("own", None),
        unique={"sAMAccountName", "userPrincipalName", "mail"},
    )
    compiled = compile_mappings(load_mappings(mappings), OPERATIONS)
    return build_desired(
        compiled,
        data,
        existing=names.existing,
        issued=names.issued,
        held_values=names.held_values,
        own=names.own,
    )


def observed_from(state: DesiredState) -> ObservedState:
    """The directory after *state* was applied: every account as the plan made it."""
    return ObservedState(
        accounts=[
            ObservedAccount(
                id=f"id-{account.anchor}",
                target=f"CN={account.username}",
                anchor=account.anchor,
                username=account.username,
                ou=account.ou,
                attributes={n: d.value for n, d in account.attributes.items()},
            )
            for account in state.accounts.values()
        ],
        groups=[
            ObservedGroup(
                id=f"id-{group.key}",
                target=f"CN={group.key}",
                key=group.key,
                ou=group.ou,
                attributes={n: d.value for n, d in group.attributes.items()},
                members=set(group.members),
            )
            for group in state.groups.values()
        ],
        ous=set(state.ous),
    )


# -- the schemes ----------------------------------------------------------------------------------


def test_a_scheme_tells_which_names_it_makes_from_a_base():
    scheme = Scheme(20, "{n}", 2)
    assert scheme.fits("jan.peeters", "jan.peeters")
    assert scheme.fits("Jan.Peeters12", "jan.peeters")
    assert scheme.number("jan.peeters12", "jan.peeters") == 12
    assert not scheme.fits("j.peeters", "jan.peeters")
    assert not scheme.fits("jan.peeters1", "jan.peeters")  # 1 is below the first number
    # a base ending in digits (the fallback lln<key>): suffix 2 of lln1234, not 34 of lln12
    assert scheme.number("lln12342", "lln1234") == 2
    # cut to the length, the suffix in place of the end
    assert scheme.numbered("marie-louise.vandenbossche", 2) == "marie-louise.vanden2"
    assert scheme.fits("marie-louise.vanden2", "marie-louise.vandenbossche")
    hyphen = Scheme(20, "-{n}", 2)
    assert hyphen.numbered("jan.peeters", 3) == "jan.peeters-3"
    assert hyphen.number("jan.peeters-3", "jan.peeters") == 3
    assert not hyphen.fits("jan.peeters3", "jan.peeters")


def test_the_name_inside_a_value_is_found_by_the_fixed_parts_of_its_template():
    assert name_in("Jan.Peeters2@school.be", f"{SENTINEL}@school.be") == "Jan.Peeters2"
    assert name_in("jan.peeters@old.be", f"{SENTINEL}@school.be") is None
    assert name_in("@school.be", f"{SENTINEL}@school.be") is None
    assert name_in("x", "fixed") is None


def test_a_name_given_before_is_free_only_for_its_own_holder():
    book = NameBook(issued={"Jan.Peeters"}, own={"lln-1": {"jan.peeters"}})
    assert book.free("jan.peeters", "lln-1")
    assert not book.free("JAN.PEETERS", "lln-2")
    book.claim("an.smet", "lln-3")
    assert book.free("An.Smet", "lln-3") and not book.free("an.smet", "lln-1")


# -- the whole name in mail and UPN ---------------------------------------------------------------


def test_a_long_name_keeps_its_whole_mail_while_the_login_is_cut(tmp_path):
    data = school(
        pupils=[],
        staff=[
            teacher("1", "Marie-Louise", "Vandenbroucke"),
            teacher("2", "Marie-Louise", "Vandenbossche"),
        ],
    )
    state = desired(DEFAULTS["ad"], data)
    first, second = state.accounts["pers-1"], state.accounts["pers-2"]
    assert (first.username, second.username) == ("marie-louise.vandenb", "marie-louise.vanden2")
    assert first.attributes["mail"].value == "marie-louise.vandenbroucke@school.be"
    assert second.attributes["mail"].value == "marie-louise.vandenbossche@school.be"
    assert second.attributes["userPrincipalName"].value == "marie-louise.vandenbossche@school.be"
    assert first.attributes["sAMAccountName"].value == "marie-louise.vandenb"
    assert state.report.errors == [] and state.held == []


def test_the_same_full_name_twice_gets_a_suffix_in_mail_too():
    data = school(pupils=[], staff=[teacher("1"), teacher("2")])
    state = desired(DEFAULTS["ad"], data)
    assert state.accounts["pers-2"].username == "jan.peeters2"
    assert state.accounts["pers-2"].attributes["mail"].value == "jan.peeters2@school.be"


def test_a_unique_template_that_reads_the_person_is_made_per_person(tmp_path):
    # The fixed part of "{{ name }}@{{ vars.pupil_domain }}" is the same for everyone and made
    # once; one that reads the person's own values is made for each person.
    mappings = mappings_dir(tmp_path)
    pupils = mappings / "pupils.yaml"
    text = pupils.read_text()
    old = 'mail: "{{ name }}@{{ vars.pupil_domain }}"'
    assert old in text
    pupils.write_text(text.replace(old, 'mail: "{{ name }}@{{ Lln.Klascode | lower }}.be"'))
    data = school(pupils=[pupil("1"), {**pupil("2"), "Klascode": "2B"}, pupil("3")], staff=[])
    state = desired(mappings, data)
    mails = [state.accounts[f"lln-{n}"].attributes["mail"].value for n in "123"]
    assert mails == ["jan.peeters@1a.be", "jan.peeters2@2b.be", "jan.peeters3@1a.be"]
    domain = [state.accounts[f"lln-{n}"].attributes["userPrincipalName"].value for n in "12"]
    assert domain == ["jan.peeters@leerling.school.be", "jan.peeters2@leerling.school.be"]


def test_the_mail_of_someone_who_left_is_never_given_to_a_newcomer():
    """jan.peeters was given before (a leaver whose account is deleted): the newcomer's login
    and mail both get a suffix, also where the old mail was never recorded (made before mail was
    recorded: its login was)."""
    data = school(pupils=[], staff=[teacher("7")])
    for issued in ({"jan.peeters"}, {"jan.peeters@school.be"}):
        state = desired(DEFAULTS["ad"], data, issued=issued)
        account = state.accounts["pers-7"]
        assert account.attributes["mail"].value == "jan.peeters2@school.be", issued


def test_a_holder_keeps_a_suffixed_mail_when_the_first_holder_leaves():
    data = school(pupils=[], staff=[teacher("1"), teacher("2")])
    state = desired(DEFAULTS["ad"], data)
    observed = observed_from(state)
    # the first Jan Peeters leaves: the second keeps jan.peeters2, login and mail
    later = desired(DEFAULTS["ad"], school(pupils=[], staff=[teacher("2")]), observed)
    account = later.accounts["pers-2"]
    assert account.username == "jan.peeters2"
    assert account.attributes["mail"].value == "jan.peeters2@school.be"
    accounts = [c for c in diff(later, observed) if c.kind is Kind.ACCOUNT]
    assert [(c.action, c.key) for c in accounts] == [(Action.DISABLE, "pers-1")]  # the leaver


def test_a_login_cut_before_mail_was_whole_gets_the_whole_mail_only_with_follow(tmp_path):
    """Accounts made when mail was {{ username }}@…: keep leaves the cut mail (and says so);
    follow gives the whole name, as a rename."""
    data = school(pupils=[pupil("5", "Marie-Louise", "Vandenbroucke")], staff=[])
    observed = ObservedState(
        accounts=[
            ObservedAccount(
                "id-5",
                "CN=marie-louise.vandenb",
                "lln-5",
                "marie-louise.vandenb",
                ("Leerlingen", "030569", "1A"),
                {
                    "sAMAccountName": "marie-louise.vandenb",
                    "mail": "marie-louise.vandenb@leerling.school.be",
                    "userPrincipalName": "marie-louise.vandenb@leerling.school.be",
                },
            )
        ]
    )
    kept = desired(mappings_dir(tmp_path / "keep"), data, observed)
    assert kept.accounts["lln-5"].attributes["mail"].value == (
        "marie-louise.vandenb@leerling.school.be"
    )
    assert {c.attribute for c in kept.report.names} == {"mail", "userPrincipalName"}
    assert all(not c.follows for c in kept.report.names)
    assert any("1 existing account(s) keep a name" in w for w in kept.report.warnings)
    assert not [c for c in diff(kept, observed) if c.action is Action.RENAME]

    followed = desired(mappings_dir(tmp_path / "follow", rename="follow"), data, observed)
    (rename,) = [c for c in diff(followed, observed) if c.action is Action.RENAME]
    assert rename.before["username"] == rename.after["username"] == "marie-louise.vandenb"
    assert rename.after["mail"] == "marie-louise.vandenbroucke@leerling.school.be"
    assert rename.after["userPrincipalName"] == "marie-louise.vandenbroucke@leerling.school.be"
    assert rename.precondition.attributes == {
        "mail": "marie-louise.vandenb@leerling.school.be",
        "userPrincipalName": "marie-louise.vandenb@leerling.school.be",
    }


def test_a_new_mail_domain_follows_the_suffix_the_login_has():
    """The fixed part of mail changed (another domain): each account's mail keeps the name that
    goes with its login, so the two Jan Peeters never swap addresses."""
    data = school(pupils=[], staff=[teacher("1"), teacher("2")])
    observed = observed_from(desired(DEFAULTS["ad"], data))
    for account in observed.accounts:
        for attribute in ("mail", "userPrincipalName"):
            account.attributes[attribute] = account.attributes[attribute].replace(
                "@school.be", "@oude-school.be"
            )
    state = desired(DEFAULTS["ad"], data, observed)
    assert state.accounts["pers-1"].attributes["mail"].value == "jan.peeters@school.be"
    assert state.accounts["pers-2"].attributes["mail"].value == "jan.peeters2@school.be"
    renames = [c for c in diff(state, observed) if c.action is Action.RENAME]
    assert len(renames) == 2
    assert all(c.before["mail"].endswith("@oude-school.be") for c in renames)


def test_name_outside_a_unique_attribute_is_an_error_at_its_line(tmp_path):
    mappings = mappings_dir(tmp_path)
    staff = mappings / "staff.yaml"
    staff.write_text(
        staff.read_text().replace(
            'displayName: "{{ Leerkrachten.Voornaam }} {{ Leerkrachten.Naam }}"',
            'displayName: "{{ name }}"',
        )
    )
    with pytest.raises(MappingError) as caught:
        compile_mappings(load_mappings(mappings), OPERATIONS)
    message = str(caught.value)
    assert "staff.yaml:" in message and "unknown name 'name'" in message
    assert "add displayName to accounts.staff.unique" in message


# -- renames as a policy --------------------------------------------------------------------------


def test_with_keep_a_new_naming_rule_leaves_existing_accounts_and_says_how_many(tmp_path):
    data = school(pupils=[pupil("1"), pupil("2", "An", "Smet")], staff=[])
    observed = observed_from(desired(DEFAULTS["ad"], data))
    newcomer = school(
        pupils=[pupil("1"), pupil("2", "An", "Smet"), pupil("3", "Bo", "Maes")], staff=[]
    )
    state = desired(mappings_dir(tmp_path, template=INITIAL_AND_SURNAME), newcomer, observed)
    assert state.accounts["lln-1"].username == "jan.peeters"
    assert state.accounts["lln-3"].username == "b.maes"  # a newcomer gets the new rule
    kept = {c.anchor for c in state.report.names if c.attribute == "username"}
    assert kept == {"lln-1", "lln-2"}
    (warning,) = [w for w in state.report.warnings if "keep a name" in w]
    assert "2 existing account(s)" in warning and "'jan.peeters', now 'j.peeters'" in warning
    assert "rename: follow" in warning and "pupils.yaml:" in warning
    changes = [c for c in diff(state, observed) if c.kind is Kind.ACCOUNT]
    assert [(c.action, c.key) for c in changes] == [(Action.CREATE, "lln-3")]


def test_with_follow_existing_accounts_take_the_new_name_and_nobody_gets_an_old_one(tmp_path):
    data = school(pupils=[pupil("1"), pupil("2", "Jef", "Peeters")], staff=[])
    observed = observed_from(desired(DEFAULTS["ad"], data))
    mappings = mappings_dir(tmp_path, template=INITIAL_AND_SURNAME, rename="follow")
    state = desired(mappings, data, observed)
    assert state.accounts["lln-1"].username == "j.peeters"
    assert state.accounts["lln-2"].username == "j.peeters2"
    renames = {c.key: c for c in diff(state, observed) if c.action is Action.RENAME}
    assert set(renames) == {"lln-1", "lln-2"}
    assert renames["lln-1"].before == {
        "username": "jan.peeters",
        "sAMAccountName": "jan.peeters",
        "userPrincipalName": "jan.peeters@leerling.school.be",
        "mail": "jan.peeters@leerling.school.be",
    }
    assert renames["lln-1"].after["mail"] == "j.peeters@leerling.school.be"
    assert all(c.follows for c in state.report.names)
    assert not any("keep a name" in w for w in state.report.warnings)
    # the next night, with the old names recorded as issued: everything stays (the plan is
    # empty), and a newcomer Jan Peeters under the old rule would not get jan.peeters back
    after = observed_from(state)
    old = {"jan.peeters", "jan.peeters@leerling.school.be", "jef.peeters"}
    again = desired(mappings, data, after, issued=old, own={"lln-1": {"jan.peeters"}})
    assert diff(again, after) == []
    newcomer = desired(DEFAULTS["ad"], school(pupils=[pupil("9")], staff=[]), issued=old)
    assert newcomer.accounts["lln-9"].username == "jan.peeters2"


def test_with_follow_a_name_that_still_fits_is_kept(tmp_path):
    """jan.peeters2 is one of the names the rule makes for Jan Peeters: not renamed when the
    first Jan Peeters leaves, with follow too."""
    data = school(pupils=[pupil("1"), pupil("2")], staff=[])
    observed = observed_from(desired(DEFAULTS["ad"], data))
    mappings = mappings_dir(tmp_path, rename="follow")
    state = desired(mappings, school(pupils=[pupil("2")], staff=[]), observed)
    assert state.accounts["lln-2"].username == "jan.peeters2"
    assert state.report.names == []


def test_a_name_changed_in_the_source_follows_the_same_rule(tmp_path):
    observed = observed_from(
        desired(DEFAULTS["ad"], school(pupils=[pupil("4", "An", "Smet")], staff=[]))
    )
    married = school(pupils=[pupil("4", "An", "Janssens")], staff=[])
    kept = desired(DEFAULTS["ad"], married, observed)
    assert kept.accounts["lln-4"].username == "an.smet"
    assert kept.accounts["lln-4"].attributes["sn"].value == "Janssens"
    assert [(c.held, c.wanted) for c in kept.report.names if c.attribute == "username"] == [
        ("an.smet", "an.janssens")
    ]
    followed = desired(mappings_dir(tmp_path, rename="follow"), married, observed)
    assert followed.accounts["lln-4"].username == "an.janssens"
    actions = sorted(c.action for c in diff(followed, observed))
    assert actions == [Action.RENAME, Action.UPDATE]  # the name, then sn and displayName


# -- adoption from outside the managed scope -----------------------------------------------------


def outside_account(anchor: str, *, protected: str | None = None) -> ObservedAccount:
    return ObservedAccount(
        id="guid-outside",
        target="CN=lore.dhondt,OU=Oud,DC=school,DC=be",
        anchor=anchor,
        username="lore.dhondt",
        ou=(),
        attributes={"sAMAccountName": "lore.dhondt", "givenName": "Lore"},
        enabled=False,
        protected=protected,
    )


def test_an_account_outside_with_the_persons_anchor_is_adopted_in_place_of_a_create():
    data = school(pupils=[pupil("8", "Lore", "Dhondt")], staff=[])
    observed = ObservedState(outside=[outside_account("lln-8")])
    state = desired(DEFAULTS["ad"], data, observed)
    assert state.accounts["lln-8"].username == "lore.dhondt"  # it keeps its name
    changes = diff(state, observed)
    actions = [c.action for c in changes]
    assert Action.CREATE not in actions
    adopt = changes[actions.index(Action.ADOPT)]
    assert adopt.target == "CN=lore.dhondt,OU=Oud,DC=school,DC=be"
    assert adopt.after["ou"] == ["Leerlingen", "030569", "1A"] and adopt.before["ou"] is None
    assert adopt.precondition == Precondition(id="guid-outside", anchored="lln-8")
    assert Action.ENABLE in actions and Action.RENAME not in actions
    # the names it lacks are given with the adoption: nothing is taken away, no rename
    assert adopt.after["mail"] == "lore.dhondt@leerling.school.be"


def test_a_protected_account_outside_is_a_conflict_never_an_adoption():
    data = school(pupils=[pupil("8", "Lore", "Dhondt")], staff=[])
    observed = ObservedState(outside=[outside_account("lln-8", protected="adminCount=1")])
    changes = [
        c for c in diff(desired(DEFAULTS["ad"], data, observed), observed) if c.kind is Kind.ACCOUNT
    ]
    assert [c.action for c in changes] == [Action.CONFLICT]
    assert "adminCount=1" in changes[-1].why[0]


# -- what apply records ---------------------------------------------------------------------------


class _Named:
    name_attributes = frozenset({"sAMAccountName", "userPrincipalName", "mail"})


def test_apply_records_the_new_and_the_old_names_of_a_rename():
    rename = Change(
        Action.RENAME,
        Kind.ACCOUNT,
        "lln-1",
        "CN=jan.peeters",
        before={"username": "jan.peeters", "mail": "jan.peeters@x.be"},
        after={"username": "j.peeters", "mail": "j.peeters@x.be"},
    )
    given, taken = names_given(rename, _Named())  # type: ignore[arg-type]
    assert given == [("lln-1", "username", "j.peeters"), ("lln-1", "mail", "j.peeters@x.be")]
    assert taken == [("lln-1", "username", "jan.peeters"), ("lln-1", "mail", "jan.peeters@x.be")]
    update = Change(Action.UPDATE, Kind.ACCOUNT, "lln-1", "x", after={"givenName": "Jan"})
    assert names_given(update, _Named()) == ([], [])  # type: ignore[arg-type]


def test_new_names_are_the_names_no_account_of_the_person_or_without_an_anchor_holds() -> None:
    """What the planner asks the directory about outside the managed scope: only names that are
    new to the person, compared without case (AD's rule); the exact value held is the quick
    way, a value held in another case or by an account without an anchor the slow one."""
    from provisioner.pipeline import new_names
    from tests.test_plan import account, desired

    wants = desired(
        account("1", "jan", mail="jan@school.be"),  # holds both as they are
        account("2", "An.Smet", mail="an@school.be"),  # holds its username in other case
        account("3", "piet", mail="piet2@school.be"),  # renamed mail; username held elsewhere
        account("4", "nieuw", mail="nieuw@school.be"),  # a new person
        account("5", "gedeeld"),  # its username held by an account without an anchor
    )
    for anchor in ("1", "2", "3", "4"):
        wants.accounts[anchor].unique = ("mail",)

    def holding(anchor: str | None, username: str, **attributes: str) -> ObservedAccount:
        return ObservedAccount(f"id-{username}", f"CN={username}", anchor, username, (), attributes)

    observed = ObservedState(
        accounts=[
            holding("1", "jan", mail="jan@school.be"),
            holding("2", "an.smet", mail="AN@school.be"),
            holding("3", "x", mail="piet@school.be"),
            holding(None, "GEDEELD"),
        ],
        outside=[holding("3", "piet")],  # adopt_from: its username is its own
    )
    assert new_names(wants, observed) == {
        "piet2@school.be": "3",
        "nieuw": "4",
        "nieuw@school.be": "4",
    }
