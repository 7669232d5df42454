"""Apply stays below the managed root whatever a plan file says, on a real Samba AD DC.

Tampered plans are built in Python (a saved plan, its changes edited) and applied through the
pipeline's target and ``apply_changes``, so these tests do not depend on how plan files are
sealed; one test goes through the command line. Every test reads the directory afterwards: the
account in CN=Users and Domain Admins are exactly as they were.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ldap3 import BASE

from provisioner.apply import apply_changes
from provisioner.cli import main
from provisioner.pipeline import open_target, prepare
from provisioner.plan.model import Action, Change, Kind, Plan
from provisioner.plan.planfile import load_plan
from provisioner.plan.seal import key_path, load_key, seal
from provisioner.secret import Secret
from provisioner.state import StateStore
from provisioner.targets.ad import ActiveDirectory, _guid
from provisioner.targets.ad_settings import AdConfig
from provisioner.targets.base import Result
from tests import test_ad
from tests.test_ad import users_below

ad_env = test_ad.ad_env  # the fixture: a managed root OU of its own per test

DOMAIN_ADMINS = "CN=Domain Admins,CN=Users"


@dataclasses.dataclass
class Victim:
    """An account in CN=Users, outside the managed root, that a tampered plan aims at."""

    dn: str
    guid: str
    anchor: str


@pytest.fixture
def victim(samba_dc) -> Iterator[Victim]:
    name = f"victim-{secrets.token_hex(3)}"
    dn = f"CN={name},CN=Users,{samba_dc.base_dn}"
    anchor = f"99{secrets.randbelow(10**6):06d}"
    conn = samba_dc.connect()
    # It even carries an anchor-like employeeID: being outside the root is what counts.
    assert conn.add(
        dn,
        ["top", "person", "organizationalPerson", "user"],
        {"sAMAccountName": name, "description": "untouched", "employeeID": anchor},
    )
    yield Victim(dn, guid_of(samba_dc, dn), anchor)
    conn.delete(dn)


def guid_of(samba_dc, dn: str) -> str:
    conn = samba_dc.connect()
    assert conn.search(dn, "(objectClass=*)", search_scope=BASE, attributes=["objectGUID"])
    return _guid(conn.response[0]["attributes"])


def read(samba_dc, dn: str, *attributes: str) -> dict[str, Any] | None:
    conn = samba_dc.connect()
    if not conn.search(dn, "(objectClass=*)", search_scope=BASE, attributes=list(attributes)):
        return None
    return dict(conn.response[0]["attributes"])


def domain_admins(samba_dc) -> set[str]:
    found = read(samba_dc, f"{DOMAIN_ADMINS},{samba_dc.base_dn}", "member")
    assert found is not None
    return {m.lower() for m in found.get("member", [])}


def change(action: Action, kind: Kind, key: str, **fields: Any) -> Change:
    return Change(action, kind, key, "(tampered)", **fields)


def apply_tampered(config: Path, changes: list[Change], template: Plan) -> list[Result]:
    """The changes applied as a saved plan is: through the pipeline's target (which knows what
    the mappings set) and apply_changes."""
    prepared = prepare(config)
    target = open_target(prepared)
    assert target is not None
    plan = dataclasses.replace(template, changes=changes)
    try:
        with StateStore(config.parent / "state.db") as store:
            return apply_changes(plan, target, store).results
    finally:
        target.close()


def test_tampered_plans_change_nothing_outside_the_managed_root(
    samba_dc, informat_server, ad_env, victim, tmp_path, capsys
):
    config_for, root = ad_env
    config = config_for(informat_server.url)
    assert main(["apply", "--config", str(config)]) == 0
    capsys.readouterr()
    saved = tmp_path / "plan.json"
    assert main(["plan", "--config", str(config), "--out", str(saved)]) == 0
    template = load_plan(saved)

    users = users_below(samba_dc, root)
    pupil_key, pupil = next((k, u) for k, u in sorted(users.items()) if u.get("department"))
    pupil_guid = guid_of(samba_dc, pupil["dn"])
    group_dn = f"CN=personeel,OU=Groepen,{root},{samba_dc.base_dn}"
    group_guid = guid_of(samba_dc, group_dn)
    admins_before = domain_admins(samba_dc)
    victim_flags = (read(samba_dc, victim.dn, "userAccountControl") or {})["userAccountControl"]
    admins_guid = guid_of(samba_dc, f"{DOMAIN_ADMINS},{samba_dc.base_dn}")
    # A group below the root that does not carry the connector's key (made by hand).
    keyless = f"CN=handmade,OU=Groepen,{root},{samba_dc.base_dn}"
    assert samba_dc.connect().add(keyless, ["top", "group"], {"description": "by hand"})

    tampered = {
        "update CN=Users": change(
            Action.UPDATE,
            Kind.ACCOUNT,
            victim.anchor,
            after={"department": "pwned"},
            precondition={"id": victim.guid},
        ),
        "delete CN=Users": change(
            Action.DELETE, Kind.ACCOUNT, victim.anchor, precondition={"id": victim.guid}
        ),
        "disable CN=Users": change(
            Action.DISABLE,
            Kind.ACCOUNT,
            victim.anchor,
            after={"enabled": "false"},
            precondition={"id": victim.guid, "enabled": True},
        ),
        "move CN=Users in": change(
            Action.MOVE,
            Kind.ACCOUNT,
            victim.anchor,
            after={"ou": ["Leerlingen"]},
            precondition={"id": victim.guid},
        ),
        "add to Domain Admins": change(
            Action.ADD_MEMBER,
            Kind.GROUP,
            "personeel",
            after={"members": [pupil_key]},
            precondition={"id": admins_guid},
        ),
        "delete Domain Admins": change(
            Action.DELETE_GROUP, Kind.GROUP, "personeel", precondition={"id": admins_guid}
        ),
        "keyless group": change(
            Action.UPDATE_GROUP,
            Kind.GROUP,
            "handmade",
            after={"description": "taken over"},
            precondition={"id": guid_of(samba_dc, keyless)},
        ),
        "update as a group": change(
            Action.UPDATE_GROUP,
            Kind.GROUP,
            pupil_key,
            after={"description": "x"},
            precondition={"id": pupil_guid},
        ),
        "not mapped": change(
            Action.UPDATE,
            Kind.ACCOUNT,
            pupil_key,
            after={
                "userAccountControl": "66048",
                "adminCount": "1",
                "servicePrincipalName": "HTTP/evil",
                "title": "not in any mapping",
            },
            precondition={"id": pupil_guid},
        ),
        "anchor rewritten": change(
            Action.UPDATE,
            Kind.ACCOUNT,
            pupil_key,
            after={"EmployeeID": victim.anchor},
            precondition={"id": pupil_guid},
        ),
        "another's key": change(
            Action.UPDATE,
            Kind.ACCOUNT,
            "not-this-one",
            after={"department": "X"},
            precondition={"id": pupil_guid},
        ),
        "create with a DN for an OU": change(
            Action.CREATE,
            Kind.ACCOUNT,
            "777777",
            after={"username": "intruder", "ou": f"CN=Users,{samba_dc.base_dn}"},
            precondition={"absent": True},
        ),
        "create an empty OU name": change(
            Action.CREATE_OU, Kind.OU, "x", after={"ou": ["Leerlingen", ""]}
        ),
        "member not managed": change(
            Action.ADD_MEMBER,
            Kind.GROUP,
            "personeel",
            after={"members": [victim.anchor]},
            precondition={"id": group_guid},
        ),
        "no object named": change(Action.DELETE, Kind.ACCOUNT, pupil_key),
        "not an id": change(
            Action.DELETE,
            Kind.ACCOUNT,
            pupil_key,
            precondition={"id": f"x>,{DOMAIN_ADMINS},{samba_dc.base_dn}"},
        ),
    }
    results = apply_tampered(config, list(tampered.values()), template)
    by_name = dict(zip(tampered, results, strict=True))
    assert {n: r.status for n, r in by_name.items()} == {n: "failed" for n in tampered}
    outside_root = f"is outside the managed OU {root},{samba_dc.base_dn}"
    for name in ("update CN=Users", "delete CN=Users", "disable CN=Users", "move CN=Users in"):
        assert outside_root in by_name[name].message, name
    assert (
        f"{DOMAIN_ADMINS},{samba_dc.base_dn} is outside" in by_name["add to Domain Admins"].message
    )
    assert "is outside the managed OU" in by_name["delete Domain Admins"].message
    assert "does not carry the connector's key 'handmade'" in by_name["keyless group"].message
    assert "is not a group" in by_name["update as a group"].message
    not_mapped = by_name["not mapped"].message
    for name in ("userAccountControl", "adminCount", "servicePrincipalName"):
        assert f"{name} (the connector never writes it" in not_mapped
    assert "title (the mappings do not set it)" in not_mapped
    assert "EmployeeID (the connector's key" in by_name["anchor rewritten"].message
    assert "does not carry the connector's key 'not-this-one'" in by_name["another's key"].message
    assert "is not a list of OU names" in by_name["create with a DN for an OU"].message
    assert "is not a list of OU names" in by_name["create an empty OU name"].message
    assert f"not a managed account (no account below the managed OU {root}" in (
        by_name["member not managed"].message
    )
    assert "names no object in the directory" in by_name["no object named"].message
    assert "is not an object id (an objectGUID)" in by_name["not an id"].message
    assert all(
        r.message.startswith("refused, nothing done")
        for n, r in by_name.items()
        if n != "member not managed"
    )

    # The directory afterwards: nothing outside the root changed, nothing inside either.
    found = read(samba_dc, victim.dn, "description", "department", "userAccountControl")
    assert found is not None and found["description"] == ["untouched"]
    assert not found.get("department") and found["userAccountControl"] == victim_flags
    assert domain_admins(samba_dc) == admins_before
    assert pupil["dn"].lower() not in domain_admins(samba_dc)
    now = users_below(samba_dc, root)
    assert now[pupil_key]["userAccountControl"] == pupil["userAccountControl"]
    assert now[pupil_key]["department"] == pupil["department"]
    assert "777777" not in now and victim.anchor not in now
    assert read(samba_dc, keyless, "description") == {"description": ["by hand"]}
    members = read(samba_dc, group_dn, "member")
    assert members is not None and victim.dn.lower() not in {m.lower() for m in members["member"]}
    extra = read(samba_dc, pupil["dn"], "title", "servicePrincipalName", "adminCount")
    assert extra is not None and not any(extra.values())


def test_a_move_cannot_leave_the_root_and_ou_names_are_only_names(
    samba_dc, informat_server, ad_env, tmp_path, capsys
):
    """An OU path is relative to the root and every name in it is escaped: a name that looks
    like a DN is an OU of that (odd) name below the root, never a place outside it."""
    config_for, root = ad_env
    config = config_for(informat_server.url)
    assert main(["apply", "--config", str(config)]) == 0
    capsys.readouterr()
    saved = tmp_path / "plan.json"
    assert main(["plan", "--config", str(config), "--out", str(saved)]) == 0
    users = users_below(samba_dc, root)
    key, pupil = next((k, u) for k, u in sorted(users.items()) if u.get("department"))
    move = change(
        Action.MOVE,
        Kind.ACCOUNT,
        key,
        after={"ou": [f"CN=Users,{samba_dc.base_dn}"]},
        precondition={"id": guid_of(samba_dc, pupil["dn"])},
    )
    (result,) = apply_tampered(config, [move], load_plan(saved))
    assert result.status == "failed" and "parent does not exist" in result.message
    assert users_below(samba_dc, root)[key]["dn"] == pupil["dn"]  # where it was


def test_a_create_that_meets_its_twin_keeps_it_and_marks_the_password_unknown(
    samba_dc, informat_server, ad_env, tmp_path, capsys
):
    """Two runs at once (two machines): the second create of one account finds the first one's
    object with its key, so it counts as done and its password, never set, goes on no sheet."""
    config_for, root = ad_env
    config = config_for(informat_server.url)
    saved = tmp_path / "plan.json"
    assert main(["plan", "--config", str(config), "--out", str(saved)]) == 2
    plan = load_plan(saved)
    ous = [c for c in plan.changes if c.action is Action.CREATE_OU]
    create = next(c for c in plan.changes if c.action is Action.CREATE)
    group = next(c for c in plan.changes if c.action is Action.CREATE_GROUP)
    prepared = prepare(config)
    first, second = open_target(prepared), open_target(prepared)
    assert isinstance(first, ActiveDirectory) and isinstance(second, ActiveDirectory)
    try:
        assert all(first.apply(c).status == "applied" for c in ous)
        second.read([])  # the second run looks before the first one makes the account
        assert first.apply(create, password="Eerste-Run-1234!").status == "applied"
        assert first.apply(group).status == "applied"
        twin = second.apply(create, password="Tweede-Run-5678!")
        group_twin = second.apply(group)
    finally:
        first.close()
        second.close()
    assert twin.status == "applied" and twin.password_unknown
    assert "was already there (made by another run" in twin.message
    assert group_twin.status == "applied" and not group_twin.password_unknown
    assert list(users_below(samba_dc, root)) == [create.key]


def test_the_command_line_refuses_a_plan_edited_to_reach_cn_users(
    samba_dc, informat_server, ad_env, victim, tmp_path, capsys
):
    """The plan file as a person edits it: only its changes, header untouched. The seal refuses
    it; resealed by someone who can read the plan key, the scope check still refuses it."""
    config_for, root = ad_env
    config = config_for(informat_server.url)
    saved = tmp_path / "plan.json"
    assert main(["plan", "--config", str(config), "--out", str(saved)]) == 2
    data = json.loads(saved.read_text())
    data["changes"] = [
        {
            "action": "update",
            "kind": "account",
            "key": victim.anchor,
            "target": victim.dn,
            "before": {"department": None},
            "after": {"department": "pwned"},
            "why": ["edited"],
            "precondition": {"id": victim.guid, "attributes": {"department": None}},
        },
        {
            "action": "delete",
            "kind": "account",
            "key": victim.anchor,
            "target": victim.dn,
            "before": {},
            "after": {},
            "why": ["edited"],
            "precondition": {"id": victim.guid},
        },
    ]
    saved.write_text(json.dumps(data))
    capsys.readouterr()
    assert main(["apply", "--config", str(config), str(saved)]) == 1
    assert "it was changed after it was saved" in capsys.readouterr().err
    data["seal"] = seal(data, load_key(key_path(config.parent / "state.db"), create=False))
    saved.write_text(json.dumps(data))
    # The recomputed policy verdict wants an approval for these; given, the scope still holds.
    assert main(["apply", "--config", str(config), str(saved), "--approve", "test"]) == 1
    out = capsys.readouterr().out
    assert f"{victim.dn} is outside the managed OU {root},{samba_dc.base_dn}" in out
    found = read(samba_dc, victim.dn, "description", "department")
    assert found is not None and found["description"] == ["untouched"]
    assert not found.get("department")


def test_below_the_root_is_decided_on_parsed_dns_not_on_a_string_suffix():
    """No DC needed: where a DN lies, and what a mapping may never set."""
    config = AdConfig(
        url="ldaps://dc.invalid",
        bind_user="provisioner@school.test",
        password=Secret("not-used", "test"),
        base_dn="DC=school,DC=test",
        managed_root="OU=Evil",
    )
    target = ActiveDirectory(config)
    assert target.below_root("CN=a,OU=Klas,OU=Evil,DC=school,DC=test")
    assert target.below_root("cn=a,ou=evil,dc=SCHOOL,dc=test")  # names compare case-insensitively
    assert not target.below_root("OU=Evil,DC=school,DC=test")  # the root itself is no account
    assert not target.below_root("CN=a,OU=xEvil,DC=school,DC=test")  # a suffix, not the root
    assert not target.below_root("CN=a,OU=Evil,DC=other,DC=school,DC=test")
    assert not target.below_root(r"CN=x\,OU\=Evil\,DC\=school\,DC\=test,CN=Users,DC=school,DC=test")
    assert not target.below_root("not a DN")
    hostile = r"CN=a,OU=Klas\+1\,OU\=evil\;\"x\"\\#\<y\>,OU=Evil,DC=school,DC=test"
    assert target.below_root(hostile)  # a name the DC holds that ldap3's parser refuses
    assert target.below_root(r"CN=a,OU=\45vil,DC=school,DC=test")  # a hex escape of E
    assert target.unsupported({"mail", "userAccountControl", "EmployeeID"}, {"member", "cn"}) == [
        "accounts: EmployeeID (the connector's key: the connector writes it itself)",
        "accounts: userAccountControl (the connector never writes it: it carries rights or the "
        "connector sets it)",
        "groups: member (the connector never writes it: it carries rights or the connector "
        "sets it)",
    ]
