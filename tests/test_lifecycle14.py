"""The school year on plain data: the whole freeze, the deletion grace counted from the disable,
and the group lifecycle (archived, restored, deleted after a grace, made anew with a warning)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest

from provisioner.apply import record_lifecycle, record_observations
from provisioner.model import ObservedState
from provisioner.plan.lifecycle import LifecycleConfig
from provisioner.plan.model import Action, Change, Kind, Plan
from provisioner.plan.planfile import plan_to_json
from provisioner.plan.planner import Memory, Origin, Rules, make_plan
from provisioner.plan.policy import PolicyConfig
from provisioner.state import SCHEMA_VERSION, StateStore
from tests.test_plan import account, desired, observed_from

JUNE = dt.date(2026, 6, 20)
JULY = dt.date(2026, 7, 15)
SEPTEMBER = dt.date(2026, 9, 8)
KINDS = {a: "pupils" for a in "1234"}
SCHEMA = Path(__file__).resolve().parent.parent / "provisioner" / "schemas" / "plan.schema.json"


def plan_on(
    day: dt.date,
    tonight,
    directory: ObservedState,
    *,
    memory: Memory | None = None,
    has_ous: bool = True,
    lifecycle: LifecycleConfig | None = None,
) -> Plan:
    rules = Rules(
        policy=PolicyConfig(max_disable="100%", max_delete="100%", max_drop="100%"),
        lifecycle=lifecycle or LifecycleConfig(),
        has_ous=has_ous,
    )
    memory = memory or Memory(kinds=KINDS)
    origin = Origin("a" * 64, "b" * 64, "c" * 64, day, "a test directory")
    return make_plan(tonight, directory, origin=origin, rules=rules, memory=memory)


def by_key(plan: Plan) -> dict[tuple[Action, str], Change]:
    return {(c.action, c.key): c for c in plan.changes}


def end_of_year():
    """Pupils 1–4 in June; then 3 and 4 leave (3 graduates: its class klas-6 is gone), 2 moves
    to klas-2A, and klas-X is gone from the source although its member 1 stays."""
    before = desired(
        account("1", "jan"),
        account("2", "piet"),
        account("3", "an", "6"),
        account("4", "els"),
        groups={"klas-1A": {"1", "2", "4"}, "klas-6": {"3"}, "klas-X": {"1"}},
    )
    after = desired(
        account("1", "jan"),
        account("2", "piet", "2A"),
        groups={"klas-1A": {"1"}, "klas-2A": {"2"}},
    )
    return observed_from(before), after


def test_in_the_freeze_nothing_about_leavers_changes_but_class_moves_go_on():
    directory, tonight = end_of_year()
    plan = plan_on(JULY, tonight, directory)
    changes = by_key(plan)
    # the mover leaves klas-1A; the leaver 4 stays in it
    assert changes[(Action.REMOVE_MEMBER, "klas-1A")].before == {"members": ["2"]}
    assert (Action.ADD_MEMBER, "klas-2A") in changes
    assert not [c for c in plan.changes if c.key in {"3", "4"}]
    assert not [
        c
        for c in plan.changes
        if c.action in (Action.ARCHIVE_GROUP, Action.DELETE_GROUP, Action.DELETE, Action.DISABLE)
    ]
    # one note for the memberships and groups, besides the policy's for the accounts
    assert (
        "1 group membership(s) of leavers and 2 group(s) the source no longer has wait: "
        "2026-07-15 is in the school-year transition window 07-01 – 08-31 (freeze_leavers); "
        "nothing about leavers changes until it ends"
    ) in plan.header.warnings
    assert any("2 leaver action(s) wait" in w for w in plan.header.warnings)


@pytest.mark.parametrize("day", [JUNE, SEPTEMBER], ids=["june", "september"])
def test_outside_the_freeze_leavers_go_and_emptied_groups_are_archived(day):
    directory, tonight = end_of_year()
    plan = plan_on(day, tonight, directory)
    changes = by_key(plan)
    assert changes[(Action.REMOVE_MEMBER, "klas-1A")].before == {"members": ["2", "4"]}
    assert {(Action.DISABLE, "3"), (Action.DISABLE, "4")} <= changes.keys()
    for key in ("klas-6", "klas-X"):
        archive = changes[(Action.ARCHIVE_GROUP, key)]
        assert archive.after == {"archived": day.isoformat(), "ou": ["Archief"]}
        assert archive.before == {"ou": ["Groepen"]}
        assert archive.precondition.to_json() == {"id": f"gid-{key}", "ou": ["Groepen"]}
        due = day + dt.timedelta(days=365)
        assert f"deletion due on {due} (365 days" in archive.why[0]
        # archived with its members: none is taken out, the group is not deleted
        assert (Action.REMOVE_MEMBER, key) not in changes
        assert (Action.DELETE_GROUP, key) not in changes
    # the archive OU is made before the groups move into it
    archive_ou = changes[(Action.CREATE_OU, "Archief")]
    assert plan.changes.index(archive_ou) < plan.changes.index(
        changes[(Action.ARCHIVE_GROUP, "klas-6")]
    )
    assert not any("wait: " in w and "group membership" in w for w in plan.header.warnings)


def test_without_ous_a_group_is_marked_with_the_configured_prefix_and_no_ou_is_made():
    directory, tonight = end_of_year()
    lifecycle = LifecycleConfig(archive_prefix="[oud] ")
    plan = plan_on(JUNE, tonight, directory, has_ous=False, lifecycle=lifecycle)
    archive = by_key(plan)[(Action.ARCHIVE_GROUP, "klas-6")]
    assert archive.after == {"archived": "2026-06-20", "prefix": "[oud] "}
    assert archive.before == {}
    assert archive.precondition.to_json() == {"id": "gid-klas-6"}
    assert not [c for c in plan.changes if c.action is Action.CREATE_OU and c.key == "Archief"]


def test_an_archive_ou_must_be_named():
    with pytest.raises(ValueError, match="archive_ou needs at least one OU name"):
        LifecycleConfig(archive_ou=[])
    with pytest.raises(ValueError, match="negative"):
        LifecycleConfig(delete_groups_after_days=-1)


def archived_directory(archived: str = "") -> ObservedState:
    """Jan in klas-1A; klas-6 (member 3, who left) archived in the archive OU."""
    state = desired(account("1", "jan"), account("3", "an"), groups={"klas-1A": {"1"}})
    state.groups["klas-6"] = dataclasses.replace(
        state.groups["klas-1A"], key="klas-6", ou=("Archief",), members={"3"}
    )
    directory = observed_from(state)
    directory.ous.add(("Archief",))
    for group in directory.groups:
        if group.key == "klas-6":
            group.archived = archived
    for leaver in directory.accounts:
        leaver.enabled = leaver.anchor != "3"
    return directory


def test_an_archived_group_is_deleted_only_when_its_grace_since_the_archive_ends():
    tonight = desired(account("1", "jan"), groups={"klas-1A": {"1"}})
    archived_on = dt.date(2025, 6, 20)
    memory = Memory(
        kinds=KINDS,
        archived={"klas-6": archived_on},
        leavers={"3": archived_on},
        disabled={"3": archived_on + dt.timedelta(days=1000)},  # the account: not due
    )
    day_before = archived_on + dt.timedelta(days=364)
    plan = plan_on(day_before, tonight, archived_directory(), memory=memory)
    assert plan.changes == []
    assert (
        "1 archived group(s) are kept, with their members, until 365 days after they were "
        "archived (delete_groups_after_days); the first is due on 2026-06-20"
    ) in plan.header.warnings
    plan = plan_on(
        archived_on + dt.timedelta(days=365), tonight, archived_directory(), memory=memory
    )
    delete = by_key(plan)[(Action.DELETE_GROUP, "klas-6")]
    assert delete.before == {"members": ["3"]}
    assert delete.why[0].startswith("archived since 2025-06-20: 365 days or more")
    assert plan.observations.archived == {}  # the day was known
    # due in the freeze: it waits, like everything about leavers
    july = dt.date(2026, 7, 2)
    plan = plan_on(july, tonight, archived_directory(), memory=memory)
    assert (Action.DELETE_GROUP, "klas-6") not in by_key(plan)
    assert any("and 1 group(s) the source no longer has wait" in w for w in plan.header.warnings)


def test_an_archived_group_whose_day_is_not_recorded_counts_from_the_day_shown_or_tonight():
    tonight = desired(account("1", "jan"), groups={"klas-1A": {"1"}})
    memory = Memory(kinds=KINDS, disabled={"3": JUNE})
    # Entra ID shows the day in its mark
    plan = plan_on(JUNE, tonight, archived_directory("2025-06-01"), memory=memory)
    assert plan.observations.archived == {"klas-6": "2025-06-01"}
    assert (Action.DELETE_GROUP, "klas-6") in by_key(plan)
    # AD shows none (it lies in the archive OU): from tonight, so nothing is deleted early
    plan = plan_on(JUNE, tonight, archived_directory(""), memory=memory)
    assert plan.observations.archived == {"klas-6": "2026-06-20"}
    assert plan.changes == []


def test_an_archived_group_desired_again_is_restored_with_its_members():
    tonight = desired(account("1", "jan"), account("3", "an"), groups={"klas-1A": {"1"}})
    tonight.groups["klas-6"] = dataclasses.replace(
        tonight.groups["klas-1A"], key="klas-6", members={"1", "3"}
    )
    directory = archived_directory("")
    for a in directory.accounts:
        a.enabled = True
    plan = plan_on(JUNE, tonight, directory)
    changes = by_key(plan)
    restore = changes[(Action.RESTORE_GROUP, "klas-6")]
    assert restore.after == {"ou": ["Groepen"]}
    assert restore.before == {"ou": ["Archief"]}
    assert restore.precondition.to_json() == {"id": "gid-klas-6", "ou": ["Archief"]}
    assert "restored from the archive" in restore.why[0]
    assert (Action.MOVE_GROUP, "klas-6") not in changes  # the restore moves it
    assert changes[(Action.ADD_MEMBER, "klas-6")].after == {"members": ["1"]}
    assert (Action.REMOVE_MEMBER, "klas-6") not in changes
    # a restore comes before the members' changes it enables
    order = [c.action for c in plan.changes]
    assert order.index(Action.RESTORE_GROUP) < order.index(Action.ADD_MEMBER)


def test_a_restore_without_ous_carries_the_attributes_the_mark_changed():
    tonight = desired(account("1", "jan"), groups={"klas-1A": {"1"}})
    directory = observed_from(tonight)
    directory.groups[0].archived = "2026-01-05"
    directory.groups[0].attributes["cn"] = "(archief) klas-1A"
    plan = plan_on(JUNE, tonight, directory, has_ous=False)
    [restore] = plan.changes
    assert restore.action is Action.RESTORE_GROUP
    assert restore.after == {"cn": "klas-1A"}
    assert restore.before == {"archived": "2026-01-05", "cn": "(archief) klas-1A"}
    assert restore.precondition.to_json() == {
        "id": "gid-klas-1A",
        "attributes": {"cn": "(archief) klas-1A"},
    }


def test_groups_the_mappings_place_in_the_archive_ou_are_not_taken_for_archived():
    tonight = desired(account("1", "jan"), groups={"klas-1A": {"1"}})
    directory = observed_from(tonight)
    directory.groups[0].archived = ""  # the AD target's reading: it lies in the archive OU
    plan = plan_on(JUNE, tonight, directory, lifecycle=LifecycleConfig(archive_ou=["groepen"]))
    assert plan.changes == []  # no restore, night after night
    assert any(
        w.startswith("the mappings place group(s) klas-1A in groepen, the archive OU")
        for w in plan.header.warnings
    )


@pytest.mark.parametrize(
    ("memory", "said"),
    [
        (Memory(deleted_groups={"klas-6": dt.date(2026, 3, 1)}), "was deleted on 2026-03-01"),
        (
            Memory(ids={"group": {"klas-6": "old-id"}}),
            "is gone from the directory (the state store knew it)",
        ),
    ],
    ids=["deleted-by-the-connector", "known-id"],
)
def test_a_group_made_anew_under_a_known_key_is_never_silent(memory, said):
    tonight = desired(account("1", "jan"), groups={"klas-6": {"1"}})
    directory = observed_from(desired(account("1", "jan")))
    plan = plan_on(JUNE, tonight, directory, memory=memory)
    assert (Action.CREATE_GROUP, "klas-6") in by_key(plan)
    assert (
        f"group klas-6 {said} and is made anew: file shares and Teams that used the old group "
        "will not follow (they used its SID/object id); give the new group access to them again"
    ) in plan.header.warnings
    fresh = plan_on(JUNE, tonight, directory)
    assert not any("made anew" in w for w in fresh.header.warnings)


# -- the deletion grace counts from the disable -----------------------------------------------


def graduate_directory(enabled: bool) -> tuple[ObservedState, object]:
    directory = observed_from(desired(account("1", "jan"), account("3", "an")))
    directory.accounts[1].enabled = enabled
    return directory, desired(account("1", "jan"))


def test_a_graduate_gone_in_july_and_disabled_in_september_is_deleted_90_days_after_the_disable(
    tmp_path,
):
    store = StateStore(tmp_path / "state.db")
    directory, tonight = graduate_directory(enabled=True)

    def memory() -> Memory:
        return Memory(kinds=KINDS, leavers=store.leavers(), disabled=store.disabled_since())

    def applied(plan: Plan) -> None:
        record_observations(plan, store)
        day = dt.date.fromisoformat(plan.header.source_as_of)
        for change in plan.changes:
            record_lifecycle(change, store, day)

    gone = dt.date(2026, 7, 5)
    applied(plan_on(gone, tonight, directory, memory=memory()))  # the freeze: the clock starts
    assert store.leavers() == {"3": gone}
    assert store.disabled_since() == {}
    plan = plan_on(SEPTEMBER, tonight, directory, memory=memory())
    disable = by_key(plan)[(Action.DISABLE, "3")]
    assert disable.why == (
        "gone from the source since 2026-07-05; deletion due on 2026-12-07 (90 days after the "
        "disable)",
    )
    applied(plan)
    assert store.disabled_since() == {"3": SEPTEMBER}
    directory, tonight = graduate_directory(enabled=False)
    for day in (dt.date(2026, 10, 3), dt.date(2026, 12, 6)):  # 90 days after leaving; a day early
        assert plan_on(day, tonight, directory, memory=memory()).changes == []
    plan = plan_on(dt.date(2026, 12, 7), tonight, directory, memory=memory())
    [delete] = plan.changes
    assert (delete.action, delete.key) == (Action.DELETE, "3")
    assert "disabled since 2026-09-08" in delete.why[0]
    store.close()


def test_an_account_disabled_before_its_day_was_recorded_counts_from_the_first_night_seen(
    tmp_path,
):
    store = StateStore(tmp_path / "state.db")
    directory, tonight = graduate_directory(enabled=False)
    long_ago = dt.date(2025, 1, 1)
    memory = Memory(kinds=KINDS, leavers={"3": long_ago})
    plan = plan_on(JUNE, tonight, directory, memory=memory)
    assert plan.changes == []  # not deleted although it left long ago
    assert plan.observations.disabled == ["3"]
    record_observations(plan, store)
    assert store.disabled_since() == {"3": JUNE}
    # seen again later: the first day stays
    record_observations(plan_on(SEPTEMBER, tonight, directory, memory=memory), store)
    assert store.disabled_since() == {"3": JUNE}
    memory = dataclasses.replace(memory, disabled=store.disabled_since())
    due = JUNE + dt.timedelta(days=90)
    assert plan_on(due - dt.timedelta(days=1), tonight, directory, memory=memory).changes == []
    assert [c.action for c in plan_on(due, tonight, directory, memory=memory).changes] == [
        Action.DELETE
    ]
    store.close()


def test_the_state_store_keeps_disable_and_archive_days_and_forgets_them_on_return(tmp_path):
    with StateStore(tmp_path / "state.db") as store:
        assert store.version == SCHEMA_VERSION
        store.track_leavers(["a"], [], JUNE)
        store.record_disabled(["a"], SEPTEMBER)
        store.record_disabled(["a"], dt.date(2026, 9, 9), seen=True)  # seen: the first stays
        assert store.disabled_since() == {"a": SEPTEMBER}
        store.record_disabled(["a"], dt.date(2026, 9, 10))  # the connector disabled it again
        assert store.disabled_since() == {"a": dt.date(2026, 9, 10)}
        store.track_leavers([], ["a"], dt.date(2026, 9, 11))  # back: both clocks stop
        assert store.disabled_since() == {} and store.leavers() == {}

        store.record_archived({"g": JUNE})
        store.record_archived({"g": SEPTEMBER}, seen=True)
        assert store.archived_groups() == {"g": JUNE}
        store.record_group_deleted("g", SEPTEMBER)
        assert store.archived_groups() == {}
        assert store.deleted_groups() == {"g": SEPTEMBER}
        store.record_restored(["g"])  # made anew
        assert store.deleted_groups() == {}


def test_apply_records_what_each_applied_change_starts_or_ends(tmp_path):
    with StateStore(tmp_path / "state.db") as store:
        group = Change(Action.ARCHIVE_GROUP, Kind.GROUP, "g", "t", after={"archived": "x"})
        record_lifecycle(group, store, JUNE)
        assert store.archived_groups() == {"g": JUNE}
        record_lifecycle(dataclasses.replace(group, action=Action.RESTORE_GROUP), store, JULY)
        assert store.archived_groups() == {}
        record_lifecycle(dataclasses.replace(group, action=Action.DELETE_GROUP), store, JULY)
        assert store.deleted_groups() == {"g": JULY}
        record_lifecycle(dataclasses.replace(group, action=Action.CREATE_GROUP), store, JULY)
        assert store.deleted_groups() == {}
        account = Change(Action.DISABLE, Kind.ACCOUNT, "a", "t")
        record_lifecycle(account, store, SEPTEMBER)
        assert store.disabled_since() == {"a": SEPTEMBER}


def test_a_plan_with_the_new_words_fits_the_published_schema():
    jsonschema = pytest.importorskip("jsonschema")
    directory, tonight = end_of_year()
    plan = plan_on(JUNE, tonight, directory)
    plan.observations.disabled = ["4"]
    plan.observations.archived = {"klas-9": "2026-06-01"}
    data = json.loads(json.dumps(plan_to_json(plan)))
    assert {c["action"] for c in data["changes"]} >= {"archive_group"}
    jsonschema.validate(data, json.loads(SCHEMA.read_text()))
