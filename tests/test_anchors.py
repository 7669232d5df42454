"""Anchors that cannot collide, and accounts carried over from the anchor they had before.

The default mappings (AD and Entra) anchor pupils on ``lln-<p_persoon>`` and staff on
``pers-<p_persoon>``; the plan carries an account that still carries its former anchor (the bare
p_persoon of the old default) over to the new one in place. The same on a real DC:
``tests/test_anchors_ad.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.mapping.engine import build_desired, compile_mappings
from provisioner.mapping.spec import load_mappings
from provisioner.model import (
    Dataset,
    DesiredAccount,
    DesiredGroup,
    DesiredState,
    ObservedAccount,
    ObservedGroup,
    ObservedState,
    SourceRows,
)
from provisioner.plan.diff import carry_over, diff
from provisioner.plan.model import Action, Change, PlanFormatError, Precondition
from provisioner.sources.informat.operations import OPERATIONS, operation
from provisioner.state import StateStore
from provisioner.targets.base import Current, carried_over, drift

ROOT = Path(__file__).resolve().parent.parent
DEFAULTS = {"ad": ROOT / "mappings", "entra": ROOT / "examples" / "entra" / "mappings"}
ANCHOR_LIMIT = 16
"""employeeID (AD) and employeeId (Graph) hold at most 16 characters."""
SCHOOL = "030569"


def school(*, pupils: list[dict], staff: list[dict]) -> SourceRows:
    """What the default mappings read, for these pupils and staff members (one school)."""

    def dataset(name: str, rows: list[dict]) -> Dataset:
        return Dataset(
            operation(name).key,
            [(SCHOOL, row) for row in rows],
            frozenset(f for row in rows for f in row) | {operation(name).key},
        )

    return SourceRows(
        [SCHOOL],
        {
            "Lln": dataset("Lln", pupils),
            "Leerkrachten": dataset("Leerkrachten", staff),
            "LeerkrachtenVrijevelden": dataset("LeerkrachtenVrijevelden", []),
            "Subgroepen": dataset("Subgroepen", []),
        },
    )


def pupil(key: str, voornaam: str = "Jan", naam: str = "Peeters") -> dict:
    return {
        "p_persoon": key,
        "Voornaam": voornaam,
        "Naam": naam,
        "voorlopig": "0",
        "Klascode": "1A",
        "school": "Sint-Jan",
    }


def teacher(key: str, voornaam: str = "Jan", naam: str = "Peeters") -> dict:
    return {"p_persoon": key, "Voornaam": voornaam, "Naam": naam, "Actief": "J"}


def desired_by_defaults(target: str, data: SourceRows, **kwargs) -> DesiredState:
    compiled = compile_mappings(load_mappings(DEFAULTS[target]), OPERATIONS)
    return build_desired(compiled, data, **kwargs)


# -- the default anchors -------------------------------------------------------------------------


@pytest.mark.parametrize("target", DEFAULTS)
def test_a_pupil_and_a_staff_member_with_one_9_digit_key_both_get_an_account(target):
    key = "123456789"
    state = desired_by_defaults(
        target, school(pupils=[pupil(key)], staff=[teacher(key, "An", "Smet")])
    )
    assert state.report.errors == []
    assert set(state.accounts) == {f"lln-{key}", f"pers-{key}"}
    assert all(len(anchor) <= ANCHOR_LIMIT for anchor in state.accounts)
    assert state.accounts[f"lln-{key}"].kind == "pupils"
    assert state.accounts[f"pers-{key}"].kind == "staff"


@pytest.mark.parametrize("target", DEFAULTS)
def test_one_person_who_is_pupil_and_staff_gets_two_accounts_with_two_names(target):
    """A pupil who also works at the school (a student job, a trainee teacher): two accounts,
    each with a name of its own; their groups are those of each kind."""
    state = desired_by_defaults(target, school(pupils=[pupil("42")], staff=[teacher("42")]))
    assert state.report.errors == []
    pupil_account, staff_account = state.accounts["lln-42"], state.accounts["pers-42"]
    assert {pupil_account.username, staff_account.username} == {"jan.peeters", "jan.peeters2"}
    upns = {a.attributes["userPrincipalName"].value for a in state.accounts.values()}
    assert len(upns) == 2
    assert "lln-42" in state.groups["leerlingen-030569"].members
    assert state.groups["personeel"].members == {"pers-42"}


@pytest.mark.parametrize("target", DEFAULTS)
def test_the_longest_anchor_of_a_9_digit_key_fits_every_target(target):
    keys = ["1", "99999", "123456789", "999999999"]
    state = desired_by_defaults(
        target,
        school(
            pupils=[pupil(k, "P", f"N{k}") for k in keys],
            staff=[teacher(k, "S", f"N{k}") for k in keys],
        ),
    )
    assert len(state.accounts) == 2 * len(keys)
    assert max(len(a) for a in state.accounts) == len("pers-999999999") <= ANCHOR_LIMIT


@pytest.mark.parametrize("target", DEFAULTS)
@pytest.mark.parametrize(
    ("voornaam", "naam", "expected_pupil", "expected_staff"),
    [
        ("伟", "王", "lln7", "pers7"),  # CJK: no transliteration installed, the fallback
        ("محمد", "علي", "lln7", "pers7"),  # Arabic (right to left): the fallback
        ("😀", "🎉", "lln7", "pers7"),  # emoji only
        ("", "", "lln7", "pers7"),  # no name at all
        ("Олена", "Шевченко", "olena.shevchenko", "olena.shevchenko2"),  # Cyrillic
        ("Ελένη", "Παππά", "eleni.pappa", "eleni.pappa2"),  # Greek
    ],
)
def test_a_name_without_latin_letters_never_gives_an_empty_username(
    target, voornaam, naam, expected_pupil, expected_staff
):
    state = desired_by_defaults(
        target, school(pupils=[pupil("7", voornaam, naam)], staff=[teacher("7", voornaam, naam)])
    )
    assert state.report.errors == []
    assert state.accounts["lln-7"].username == expected_pupil
    assert state.accounts["pers-7"].username == expected_staff


# -- anchor_was: what the accounts carried before ----------------------------------------------


@pytest.mark.parametrize("target", DEFAULTS)
def test_the_former_anchor_goes_to_the_kind_that_held_it(target):
    """Under the old default the first kind (pupils) kept a shared key and the staff member was
    left out: only the pupil's account can carry the bare key, so only it is carried over."""
    state = desired_by_defaults(target, school(pupils=[pupil("5")], staff=[teacher("5", "An")]))
    assert state.accounts["lln-5"].anchor_was == "5"
    assert state.accounts["pers-5"].anchor_was is None
    lonely = desired_by_defaults(target, school(pupils=[], staff=[teacher("6")]))
    assert lonely.accounts["pers-6"].anchor_was == "6"


def test_the_former_anchor_follows_the_name_of_the_account_that_carries_it():
    """Under the old default a pupil without a usable name got no account, so the staff member
    with the same key held the bare key. Now the pupil's name falls back to lln<key>: the
    account named een.leraar is still the staff member's, not the pupil's."""
    data = school(pupils=[pupil("9", "伟", "王")], staff=[teacher("9", "Een", "Leraar")])
    state = desired_by_defaults("ad", data, existing={"9": "een.leraar"}, issued={"een.leraar"})
    assert state.accounts["pers-9"].anchor_was == "9"
    assert state.accounts["pers-9"].username == "een.leraar"
    assert state.accounts["lln-9"].anchor_was is None
    assert state.accounts["lln-9"].username == "lln9"
    # The pupil's account, with a suffixed name: still the pupil's.
    data = school(pupils=[pupil("5")], staff=[teacher("5", "An", "Smet")])
    state = desired_by_defaults("ad", data, existing={"5": "jan.peeters3"})
    assert (state.accounts["lln-5"].anchor_was, state.accounts["pers-5"].anchor_was) == ("5", None)


def test_a_carried_over_account_keeps_its_username():
    """The name the state store gave to the old anchor stays the account's name; without
    anchor_was the person would be a newcomer and get jan.peeters2."""
    data = school(pupils=[pupil("5")], staff=[])
    state = desired_by_defaults("ad", data, existing={"5": "jan.peeters"}, issued={"jan.peeters"})
    assert state.accounts["lln-5"].username == "jan.peeters"


# -- the plan carries accounts over ------------------------------------------------------------


def account(anchor: str, username: str, anchor_was: str | None = None) -> DesiredAccount:
    return DesiredAccount(
        "pupils", anchor, username, ("Leerlingen",), {}, SCHOOL, anchor_was=anchor_was
    )


def desired(*accounts: DesiredAccount, members: set[str] | None = None) -> DesiredState:
    state = DesiredState()
    for a in accounts:
        state.accounts[a.anchor] = a
    state.ous.add(("Leerlingen",))
    if members is not None:
        state.groups["klas-1A"] = DesiredGroup("classes", "klas-1A", (), {}, members=members)
    return state


def observed(*anchors: str | None, members: set[str] | None = None) -> ObservedState:
    state = ObservedState(
        accounts=[
            ObservedAccount(f"guid-{i}", f"CN=a{i}", anchor, f"user{i}", ("Leerlingen",), {})
            for i, anchor in enumerate(anchors)
        ],
        ous={("Leerlingen",)},
    )
    if members is not None:
        state.groups.append(ObservedGroup("gid", "CN=klas-1A", "klas-1A", (), {}, members=members))
    return state


def carried_diff(want: DesiredState, have: ObservedState) -> list[Change]:
    """The diff as the planner makes it: accounts with a former anchor carried over first."""
    return diff(want, carry_over(want, have))


def test_an_account_with_its_former_anchor_is_carried_over_in_place():
    want = desired(
        account("lln-5", "user0", anchor_was="5"),
        account("lln-6", "user1", anchor_was="6"),
        members={"lln-5", "lln-6"},
    )
    have = observed("5", "6", members={"5", "6"})
    changes = carried_diff(want, have)
    assert [(c.action, c.key, c.target) for c in changes] == [
        (Action.ADOPT, "lln-5", "CN=a0"),
        (Action.ADOPT, "lln-6", "CN=a1"),
    ]  # no create, no disable, no membership change
    first = changes[0]
    assert (first.before, first.after) == ({"anchor": "5"}, {"anchor": "lln-5"})
    assert first.precondition == Precondition(id="guid-0", anchored="5")
    assert "carried over" in first.why[0]
    # Once applied, the accounts carry the new anchors: nothing more to do.
    assert carried_diff(want, observed("lln-5", "lln-6", members={"lln-5", "lln-6"})) == []


def test_a_carried_over_account_gets_its_other_changes_in_the_same_plan():
    want = desired(account("lln-5", "jan", anchor_was="5"))
    have = observed("5")  # named user0: the mappings now want "jan"
    actions = [(c.action, c.key) for c in carried_diff(want, have)]
    assert actions == [(Action.ADOPT, "lln-5"), (Action.RENAME, "lln-5")]


@pytest.mark.parametrize(
    ("want", "have", "why"),
    [
        # someone in the source still has the old anchor as their own: it stays theirs
        (
            desired(account("lln-5", "user0", anchor_was="5"), account("5", "x")),
            observed("5"),
            "the old anchor is still wanted",
        ),
        # two accounts carry the old anchor: a conflict for a person, never a guess
        (desired(account("lln-5", "user0", anchor_was="5")), observed("5", "5"), "two carry it"),
        # the new anchor is already on an account: that one is the person's
        (
            desired(account("lln-5", "user0", anchor_was="5")),
            observed("5", "lln-5"),
            "the new anchor exists",
        ),
    ],
)
def test_no_carry_over_where_it_would_be_a_guess(want, have, why):
    assert carry_over(want, have) is have, why
    assert not [c for c in carried_diff(want, have) if c.precondition.anchored], why


def test_carry_over_is_idempotent_and_renames_members_and_owners():
    want = desired(account("lln-5", "user0", anchor_was="5"), members={"lln-5"})
    have = observed("5", members={"5", "99"})
    have.groups[0].owners = {"5"}
    once = carry_over(want, have)
    assert [(a.anchor, a.carried_from) for a in once.accounts] == [("lln-5", "5")]
    assert (once.groups[0].members, once.groups[0].owners) == ({"lln-5", "99"}, {"lln-5"})
    assert carry_over(want, once) is once
    assert have.accounts[0].anchor == "5"  # the observed state itself is left as read


# -- the plan file and the targets ---------------------------------------------------------------


def test_the_old_anchor_travels_in_the_plan_file_as_the_precondition_anchor():
    pre = Precondition(id="guid", anchored="5")
    assert pre.to_json() == {"id": "guid", "anchor": "5"}
    assert Precondition.from_json({"id": "guid", "anchor": "5"}) == pre
    assert Precondition.from_json({"anchor": None}) == Precondition(unanchored=True)
    with pytest.raises(PlanFormatError, match="precondition anchor must be null"):
        Precondition.from_json({"anchor": 5})
    with pytest.raises(PlanFormatError, match="precondition anchor must be null"):
        Precondition.from_json({"anchor": ""})


def test_a_target_writes_a_new_anchor_only_over_the_old_one_the_plan_names():
    change = Change(
        Action.ADOPT,
        "account",
        "lln-5",
        "CN=a0",
        before={"anchor": "5"},
        after={"anchor": "lln-5"},
        precondition=Precondition(id="guid-0", anchored="5"),
    )
    assert carried_over(change, "5")
    assert not carried_over(change, "6")  # another person's account: refused
    assert not carried_over(change, None)  # an account without anchor is adopted otherwise
    update = Change(Action.UPDATE, "account", "lln-5", "CN=a0", precondition=change.precondition)
    assert not carried_over(update, "5")  # only an adoption writes an anchor

    def now(anchor: str | None) -> Current:
        return Current(lambda _name: None, username="u", enabled=True, anchor=anchor)

    names = ("sAMAccountName", "employeeID")
    assert drift(change.precondition, now("5"), names) is None
    assert drift(change.precondition, now("lln-5"), names) == (
        "changed in the directory since the plan: employeeID"
    )


def test_the_state_store_moves_what_it_keeps_under_the_old_anchor(tmp_path):
    import datetime as dt

    with StateStore(tmp_path / "state.db") as store:
        store.issue_names([("5", "jan.peeters")])
        store.remember_kinds([("5", "pupils", SCHOOL)])
        store.remember_anchors("account", [("5", "guid-0")])
        store.track_leavers(["5"], [], dt.date(2026, 1, 1))
        store.move_anchor("5", "lln-5")
        assert store.issued_to() == {"lln-5": "jan.peeters"}
        assert store.kinds() == {"lln-5": "pupils"}
        assert store.anchor_ids("account") == {"lln-5": "guid-0"}
        assert store.leavers() == {}
