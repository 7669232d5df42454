"""The base every target shares (``provisioner/targets/base.py``), without a directory: dispatch
through a table checked when the target is built, the precondition checks and their hooks, the
anchor index, the error explanation, and the password of a create that was given none."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from provisioner.log import redact
from provisioner.plan.model import Action, Change, Kind
from provisioner.secret import Secret
from provisioner.targets import open_target
from provisioner.targets.base import (
    AnchorIndex,
    BaseTarget,
    Current,
    Result,
    explain,
    text,
    tls_hint,
)


class Toy(BaseTarget):
    """A directory of two users in memory: just enough for the base to work on."""

    actions = frozenset({Action.CREATE, Action.DISABLE})
    names = ("login", "anchorAttr")

    def __init__(self, table: Mapping[Any, Callable[..., Result]] | None = None) -> None:
        self.made: dict[str, str] = {}
        self.objects = {"id-1": {"login": "an", "enabled": True, "anchor": "1", "title": "x"}}
        self.table = table
        super().__init__()

    def handlers(self) -> Mapping[Any, Callable[..., Result]]:
        if self.table is not None:
            return self.table
        return {Action.CREATE: self.create, Action.DISABLE: self.disable}

    def create(self, change: Change, *, password: str) -> Result:
        self.made[change.key] = password
        return Result(change, "applied")

    def disable(self, change: Change) -> Result:
        return Result(change, "applied")

    def already_there(self, change: Change) -> str | None:
        return "already exists" if change.key == "1" else None

    def group_exists(self, key: str) -> bool:
        return key == "klas-1A"

    def current(self, change: Change) -> Current | None:
        found = self.objects.get(str(change.precondition.id))
        if found is None:
            return None
        return Current(
            found.get,
            username=found["login"],
            enabled=found["enabled"],
            anchor=found["anchor"],
        )

    def run(self, change: Change, password: str | None = None) -> Result:
        step = self.ready(change, password)
        return step if isinstance(step, Result) else step(change)


def change(action: str, key: str = "2", **precondition: Any) -> Change:
    kind = "group" if "group" in action or "member" in action else "account"
    after = {"username": "bo"} if action == "create" else {}
    return Change(action, kind, key, key, after=after, precondition=precondition)


def test_a_handler_missing_for_a_claimed_action_fails_when_the_target_is_built():
    with pytest.raises(TypeError, match=r"without a handler: \['disable'\]"):
        Toy({Action.CREATE: lambda c: Result(c, "applied")})
    with pytest.raises(TypeError, match=r"not an Action: \['disable'\]"):
        Toy({Action.CREATE: lambda c: Result(c, "applied"), "disable": lambda c: c})
    with pytest.raises(TypeError, match=r"not claimed: \['enable'\]"):
        table = {a: (lambda c: Result(c, "applied")) for a in (*Toy.actions, Action.ENABLE)}
        Toy(table)


def test_both_targets_build_with_a_handler_for_every_action_they_claim():
    from provisioner.config import TargetConfig
    from provisioner.targets.ad_settings import AdConfig
    from provisioner.targets.entra_settings import EntraConfig

    ad = AdConfig(
        url="ldaps://dc.example",
        bind_user="EXAMPLE\\p",
        password=Secret("x", "test"),
        base_dn="DC=example",
        managed_root="OU=Managed",
    )
    entra = EntraConfig(
        tenant_id="school.onmicrosoft.com",
        client_id="6f1c2d3e-4a5b-4c6d-8e7f-0a1b2c3d4e5f",
        domains=["example.org"],
        client_secret=Secret("x", "t"),
    )
    seams = {"sleep": None, "clock": None}
    for config, owners, ous in (
        (TargetConfig(ad=ad), set(), {Action.CREATE_OU, Action.MOVE, Action.MOVE_GROUP}),
        (TargetConfig(entra=entra), {Action.ADD_OWNER, Action.REMOVE_OWNER}, set()),
    ):
        target = open_target(config, **seams)
        assert isinstance(target, BaseTarget)
        try:
            assert Action.CONFLICT not in target.actions
            assert {Action.ADD_OWNER, Action.REMOVE_OWNER} & target.actions == owners
            assert target.has_owners == bool(owners)
            assert {Action.CREATE_OU, Action.MOVE, Action.MOVE_GROUP} & target.actions == ous
            assert target.has_ous == bool(ous)
        finally:
            target.close()


def test_an_action_without_a_handler_is_skipped_with_one_message():
    toy = Toy()
    for action in ("conflict", "add_owner", "create_ou"):
        result = toy.run(change(action))
        assert (result.status, result.message) == (
            "skipped",
            f"{action}: resolve by hand; nothing applied",
        )


def test_preconditions_are_checked_by_the_base_through_the_targets_hooks():
    toy = Toy()
    assert toy.check(change("create", "1", absent=True)) == "already exists"
    assert toy.check(change("create", "2", absent=True)) is None
    assert toy.check(change("add_member", "klas-1A", created_in_this_plan=True)) is None
    assert (
        toy.check(change("add_member", "klas-1B", created_in_this_plan=True))
        == "the group does not exist"
    )
    assert toy.check(change("disable", "1")) is None  # no id: nothing to compare
    gone = toy.check(change("disable", "1", id="id-9"))
    assert gone == "the object is gone from the directory (drift)"
    assert toy.check(change("disable", "1", id="id-1", enabled=True)) is None
    toy.objects["id-1"]["enabled"] = False
    assert toy.check(change("disable", "1", id="id-1", enabled=True)) == "already disabled"
    drifted = toy.check(
        change("disable", "1", id="id-1", username="jan", attributes={"title": "y"})
    )
    assert drifted == "changed in the directory since the plan: title, login"
    # A change whose precondition fails is skipped before its handler runs.
    result = toy.run(change("create", "1", absent=True), "Pass-Word-12")
    assert (result.status, result.message) == ("skipped", "already exists")
    assert toy.made == {}


def test_a_create_given_no_password_gets_a_random_one_nobody_can_log():
    toy = Toy()
    assert toy.run(change("create", "2", absent=True), "Boom-Vis-Wolk-42").status == "applied"
    assert toy.run(change("create", "3", absent=True)).status == "applied"
    given, made = toy.made["2"], toy.made["3"]
    assert given == "Boom-Vis-Wolk-42"
    assert re.fullmatch(r"[A-Za-z0-9]{24}", made)
    assert made not in redact(f"password {made}")


def test_the_anchor_index_refuses_an_anchor_two_objects_carry():
    index: AnchorIndex[str] = AnchorIndex(lambda a, b: a.lower() == b.lower())
    index.remember(Kind.ACCOUNT, "1", "CN=a,OU=x")
    index.remember(Kind.ACCOUNT, "1", "cn=A,ou=X")  # the same object, found again
    index.remember(Kind.GROUP, "1", "CN=g,OU=x")  # another kind: no clash
    assert index.find(Kind.ACCOUNT, "1") == "cn=A,ou=X"
    index.remember(Kind.ACCOUNT, "1", "CN=b,OU=x")
    assert index.ambiguous(Kind.ACCOUNT, "1") and index.find(Kind.ACCOUNT, "1") is None
    assert index.find(Kind.GROUP, "1") == "CN=g,OU=x"
    index.put(Kind.ACCOUNT, "2", "CN=c,OU=x")
    index.forget(Kind.ACCOUNT, "2")
    assert index.find(Kind.ACCOUNT, "2") is None


def test_errors_values_and_certificates_in_plain_words():
    meanings = {"E1": "the first problem", "E2": "the second"}
    assert explain("409 E2: taken", ("E9", "E2", "E1"), meanings) == "the second (409 E2: taken)"
    assert explain("500 E9: oops", ("E9",), meanings) == "500 E9: oops"
    assert tls_hint("[SSL: CERTIFICATE_VERIFY_FAILED] self-signed").endswith(
        "give that CA as ca_file"
    )
    assert tls_hint("connection refused") == "connection refused"
    assert [text(v) for v in (None, "", [], ["a", "b"], b"\xc3\xa9", True, False, 7)] == [
        None,
        None,
        None,
        "a",
        "é",
        "true",
        "false",
        "7",
    ]
