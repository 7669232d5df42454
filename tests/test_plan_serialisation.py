"""The plan's JSON is built field by field and written a batch of changes at a time: the document,
the file's bytes and the seal are exactly what the earlier implementation (``dataclasses.asdict``
and one ``json.dumps``, kept here as the reference) made of the same plan."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import math
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provisioner.errors import ConfigError
from provisioner.plan import jsontext
from provisioner.plan.model import (
    Action,
    Category,
    Change,
    Kind,
    Observations,
    Plan,
    PlanHeader,
    PolicyBlock,
    Precondition,
)
from provisioner.plan.planfile import (
    FORMAT,
    load_sealed_plan,
    plan_to_json,
    plan_to_write,
    save_plan,
)
from provisioner.plan.seal import _DOMAIN, PlanKey, canonical, key_path, load_key, seal

# -- the reference: the implementation before, as it was --------------------------------------


def reference_change_to_json(change: Change) -> dict[str, Any]:
    data = asdict(change)
    data["action"] = str(change.action)
    data["kind"] = str(change.kind)
    data["why"] = list(change.why)
    data["precondition"] = change.precondition.to_json()
    return data


def reference_plan_to_json(plan: Plan) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "header": asdict(plan.header),
        "counts": plan.counts(),
        "changes": [reference_change_to_json(c) for c in plan.changes],
        "observations": asdict(plan.observations),
    }


def reference_canonical(document: dict[str, Any]) -> bytes:
    body = {name: value for name, value in document.items() if name != "seal"}
    text = json.dumps(
        body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return _DOMAIN + text.encode("utf-8")


def reference_file_bytes(plan: Plan, key: PlanKey | None) -> bytes:
    document = reference_plan_to_json(plan)
    if key is not None:
        mac = hmac.new(key.secret, reference_canonical(document), hashlib.sha256).hexdigest()
        document["seal"] = {"alg": "HMAC-SHA256", "key_id": key.id, "mac": mac}
    return (json.dumps(document, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


# -- a plan that says everything a plan can say ------------------------------------------------

AWKWARD = 'Çédille "quoted" back\\slash\ttab\nline \u2028 \U0001f600 \x00'
VALUES: list[Any] = [
    "text",
    AWKWARD,
    "",
    ["a", AWKWARD],
    [],
    None,
    True,
    False,
    ("a", "tuple"),
]


def varied_plan() -> Plan:
    changes = []
    for index, action in enumerate(Action):
        for kind in Kind:
            value = VALUES[index % len(VALUES)]
            other = VALUES[(index + 3) % len(VALUES)]
            changes.append(
                Change(
                    action,
                    kind,
                    f"key-{index}-{kind}",
                    f"CN={AWKWARD},OU=Leerlingen",
                    before={"value": value, "other": other} if index % 4 else {},
                    after={"value": other, "more": value, "ou": ["Leerlingen", "1A"]},
                    why=(f"reason {index}", AWKWARD) if index % 3 else (),
                    precondition=(
                        Precondition(
                            absent=index % 2 == 0,
                            created_in_this_plan=index % 3 == 0,
                            id=f"guid-{index}",
                            attributes={"department": "1A", "mail": None},
                            username="user",
                            ou=("Leerlingen", "1A"),
                            enabled=index % 2 == 1,
                            unanchored=index % 5 == 0,
                            anchored=None if index % 5 == 0 else f"old-{index}",
                        )
                        if index % 2
                        else Precondition()
                    ),
                )
            )
    header = PlanHeader(
        created="2026-12-01T22:00:00+00:00",
        expires="2026-12-02T10:00:00+00:00",
        config_hash="c" * 64,
        mappings_hash="m" * 64,
        source_hash="s" * 64,
        target=f"ldaps://dc.invalid {AWKWARD}",
        source_as_of="2026-12-01",
        blocked=["a school answered empty", AWKWARD],
        policy_blocked=["3 account disables exceed max_disable 2", "an older block"],
        policy_blocks=[
            PolicyBlock(Category.LEAVERS, "3 account disables exceed max_disable 2"),
            PolicyBlock("drop", "persons fell", school="030569"),
            PolicyBlock("", "a block of no category"),
        ],
        warnings=[AWKWARD],
        persons={"030569": 3, "030577": 0},
        school_counts={"030569": {"create": 2, "disable": 1}},
        managed_accounts=7,
        managed_per_school={"030569": 7},
        managed_groups=2,
        synced_left_alone=3,
        account_schools={"1": "030569", "2": "030577"},
        held=[
            {"kind": "pupils", "key": "7", "school": "030569", "reason": AWKWARD, "nights": 1},
            {"kind": "staff", "key": "8", "school": None, "since": "2026-03-02", "nights": 2},
        ],
        school_names={"030569": "Atheneum Çédille"},
        people={"1": {"name": AWKWARD, "username": "u1", "group": "klas-1A"}},
        group_names={"klas-1A": "Klas 1A"},
        leaver_dates={"3": {"gone": "2026-08-20", "disable": "2026-09-01", "delete": None}},
    )
    observations = Observations(
        left=["3"],
        returned=["4"],
        accounts={"1": ["pupils", "030569"]},
        ids={"account": {"1": "guid-1"}, "group": {"klas-1A": "guid-g"}},
        held=[["pupils", "7"]],
        released=[["staff", "9"]],
        disabled=["5"],
        archived={"klas-old": "2026-07-01"},
    )
    return Plan(header, changes, observations)


def test_the_varied_plan_says_everything():
    plan = varied_plan()
    assert {(c.action, c.kind) for c in plan.changes} == {(a, k) for a in Action for k in Kind}
    for part in (plan.header, plan.observations):
        for f in fields(part):  # every field filled: a new field must be added here too
            assert getattr(part, f.name) not in ([], {}, 0), f.name
    values = [v for c in plan.changes for v in (*c.before.values(), *c.after.values())]
    assert all(any(v == x and type(v) is type(x) for v in values) for x in VALUES)


# -- the same document, bytes and seal ---------------------------------------------------------


def as_read(document: dict[str, Any]) -> Any:
    """The document as JSON gives it back (a tuple comes back a list)."""
    return json.loads(json.dumps(document))


@pytest.fixture
def key(tmp_path: Path) -> PlanKey:
    return load_key(key_path(tmp_path / "state.db"), create=True)


def test_plan_to_json_is_the_same_document_as_before():
    plan = varied_plan()
    document = plan_to_json(plan)
    assert document == reference_plan_to_json(plan)
    assert json.dumps(document) == json.dumps(reference_plan_to_json(plan))


def test_the_saved_file_and_its_seal_are_byte_for_byte_as_before(tmp_path, key):
    plan = varied_plan()
    path = tmp_path / "plan.json"
    save_plan(plan, path, key)
    assert path.read_bytes() == reference_file_bytes(plan, key)
    document = plan_to_json(plan)
    assert canonical(document) == reference_canonical(reference_plan_to_json(plan))
    assert seal(document, key) == json.loads(path.read_bytes())["seal"]
    assert as_read(plan_to_json(load_sealed_plan(path, key.path))) == as_read(document)
    save_plan(plan, path, None)
    assert path.read_bytes() == reference_file_bytes(plan, None)


@pytest.mark.parametrize("changes", [0, 1, 2, 3, 4, 5, 7])
def test_batches_join_exactly_at_every_boundary(tmp_path, key, monkeypatch, changes):
    monkeypatch.setattr(jsontext, "BATCH", 2)
    varied = varied_plan()
    plan = Plan(varied.header, varied.changes[:changes], varied.observations)
    path = tmp_path / "plan.json"
    save_plan(plan, path, key)
    assert path.read_bytes() == reference_file_bytes(plan, key)
    loaded = load_sealed_plan(path, key.path)
    assert as_read(plan_to_json(loaded)) == as_read(plan_to_json(plan))
    printed = io.StringIO()  # plan --json: the changes made JSON-ready as they are written
    jsontext.write_indented(plan_to_write(plan), printed)
    reference = json.dumps(reference_plan_to_json(plan), indent=1, ensure_ascii=False)
    assert printed.getvalue() == reference + "\n"


def test_the_printed_document_with_more_members_is_json_dumps():
    """``plan --json`` and ``apply --json`` add members (transition, results) and print it."""
    document = plan_to_json(varied_plan())
    document["results"] = [{"status": "applied", "message": AWKWARD}]
    written = plan_to_write(varied_plan())
    written["results"] = document["results"]
    for printing in (document, written):
        printed = io.StringIO()
        jsontext.write_indented(printing, printed)
        assert printed.getvalue() == json.dumps(document, indent=1, ensure_ascii=False) + "\n"


def test_a_value_json_does_not_allow_is_refused_when_sealing(key):
    document = plan_to_json(varied_plan())
    document["changes"][0]["after"]["value"] = math.nan
    with pytest.raises(ConfigError, match="a value JSON does not allow"):
        seal(document, key)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.sampled_from(list(Action)),  # a str subclass
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(st.text(), inner, max_size=4)
        | st.dictionaries(st.integers(), inner, max_size=3)  # keys sort_keys can order
        | st.dictionaries(st.sampled_from(list(Kind)), inner, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    document=st.dictionaries(st.text(), JSON_VALUES, max_size=4),
    changes=st.none() | st.lists(JSON_VALUES, max_size=7),
    batch=st.integers(1, 3),
    converted=st.booleans(),
)
def test_the_pieces_are_json_dumps_of_any_document(document, changes, batch, converted):
    """Also with the changes made JSON-ready only as they are written (``Converted``), and
    with batches small enough that the document's dicts and lists are split at every depth."""
    written = dict(document)
    if changes is not None:
        document[jsontext.STREAMED] = changes
        written[jsontext.STREAMED] = (
            jsontext.Converted(range(len(changes)), changes.__getitem__) if converted else changes
        )
    original = jsontext.BATCH
    jsontext.BATCH = batch
    try:
        indented = "".join(jsontext.indented_pieces(written))
        compact = "".join(jsontext.canonical_pieces(written))
    finally:
        jsontext.BATCH = original
    assert indented == json.dumps(document, indent=1, ensure_ascii=False)
    assert compact == json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
