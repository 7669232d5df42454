"""Names and adoption across the whole domain, on a real Samba AD DC: renames (the old mail kept as
an ``smtp:`` proxy address), names taken outside the managed root, accounts outside it that carry
an anchor, and the one way in from outside (``adopt_from``).

The target is used directly with hand-made changes, as apply hands them over; each test has a
managed root, an ``adopt_from`` OU and an OU not named by it, all of its own, tree-deleted at the
end, and deletes what it made in ``CN=Users``.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ldap3 import MODIFY_ADD, MODIFY_DELETE, SUBTREE

from provisioner.config import load_config
from provisioner.errors import ConfigError
from provisioner.plan.model import Action, Change, Kind, Precondition
from provisioner.secret import Secret
from provisioner.targets.ad import ActiveDirectory
from provisioner.targets.ad_settings import AdConfig
from tests.fakes.samba import SambaDC
from tests.scenarios import config_head
from tests.test_scope_ad import guid_of, read

TREE_DELETE = ("1.2.840.113556.1.4.805", True, None)
USER = ["top", "person", "organizationalPerson", "user"]
MAPPED = {"sAMAccountName", "userPrincipalName", "mail", "department", "displayName"}


@dataclasses.dataclass
class Domain:
    """One test's places in the shared DC, and a target that manages ``root``."""

    dc: SambaDC
    tag: str
    root: str
    """The managed root's DN."""
    old: str
    """An OU outside the root, named by adopt_from."""
    other: str
    """An OU outside the root, not named by adopt_from."""
    target: ActiveDirectory
    made: list[str]
    """What the test made outside its OUs (in CN=Users), deleted at the end."""

    def add(self, dn: str, attributes: dict[str, Any], classes: list[str] | None = None) -> str:
        conn = self.dc.connect()
        assert conn.add(dn, classes or USER, attributes), conn.result
        if not any(dn.endswith(place) for place in (self.root, self.old, self.other)):
            self.made.append(dn)
        return dn

    def users(self, name: str) -> str:
        """A DN in CN=Users, made unique to this test."""
        return f"CN={name}-{self.tag},CN=Users,{self.dc.base_dn}"

    def values(self, dn: str, *attributes: str) -> dict[str, Any]:
        found = read(self.dc, dn, *attributes)
        assert found is not None, f"{dn} is gone"
        return found


def ad_config(dc: SambaDC, root: str, adopt_from: list[str]) -> AdConfig:
    return AdConfig(
        url=dc.ldaps_url,
        bind_user=dc.admin_user,
        password=Secret(dc.admin_password, "test"),
        base_dn=dc.base_dn,
        managed_root=root,
        ca_file=dc.ca_file,
        adopt_from=adopt_from,
    )


@pytest.fixture
def domain(samba_dc: SambaDC) -> Iterator[Domain]:
    tag = secrets.token_hex(3)
    root, old, other = (f"OU={prefix}{tag}" for prefix in ("t", "oud", "ander"))
    conn = samba_dc.connect()
    for ou in (root, old, other):
        assert conn.add(f"{ou},{samba_dc.base_dn}", ["top", "organizationalUnit"])
    target = ActiveDirectory(ad_config(samba_dc, root, [old]))
    target.manage_attributes(MAPPED, {"description"})
    base = samba_dc.base_dn
    made: list[str] = []
    yield Domain(samba_dc, tag, f"{root},{base}", f"{old},{base}", f"{other},{base}", target, made)
    target.close()
    for dn in made:
        conn.delete(dn)
    for ou in (root, old, other):
        conn.delete(f"{ou},{base}", controls=[TREE_DELETE])


def make_ou(domain: Domain, *path: str) -> None:
    for depth in range(1, len(path) + 1):
        change = Change(
            Action.CREATE_OU, Kind.OU, "/".join(path[:depth]), "", after={"ou": list(path[:depth])}
        )
        result = domain.target.apply(change)
        assert result.status == "applied" or result.message == "already exists", result.message


def by_sam(dc: SambaDC, name: str) -> list[str]:
    conn = dc.connect()
    conn.search(dc.base_dn, f"(sAMAccountName={name})", search_scope=SUBTREE, attributes=["1.1"])
    return [e["dn"] for e in conn.response if e["type"] == "searchResEntry"]


def rename(
    dn: str, guid: str, anchor: str, before: dict[str, str], after: dict[str, str]
) -> Change:
    """A RENAME as the planner makes it: username in both, the unique attributes that change."""
    unique = {name: value for name, value in before.items() if name != "username"}
    return Change(
        Action.RENAME,
        Kind.ACCOUNT,
        anchor,
        dn,
        before=dict(before),
        after=dict(after),
        precondition=Precondition(id=guid, username=before["username"], attributes=unique),
    )


def adopt(dn: str, guid: str, anchor: str, after: dict[str, Any]) -> Change:
    """An ADOPT from outside as the planner makes it: by the account's own anchor, into the root."""
    return Change(
        Action.ADOPT,
        Kind.ACCOUNT,
        anchor,
        dn,
        before={"anchor": anchor, "ou": None},
        after={"anchor": anchor, **after},
        precondition=Precondition(id=guid, anchored=anchor),
    )


# -- renames ----------------------------------------------------------------------------------


def test_the_target_names_its_name_attributes():
    config = AdConfig(
        url="ldaps://dc.invalid",
        bind_user="provisioner@school.test",
        password=Secret("not-used", "test"),
        base_dn="DC=school,DC=test",
        managed_root="OU=Beheerd",
    )
    assert ActiveDirectory(config).name_attributes == {
        "sAMAccountName",
        "userPrincipalName",
        "mail",
    }


def test_a_rename_changes_every_name_and_keeps_the_old_mail_as_a_proxy_address(domain: Domain):
    make_ou(domain, "Leerlingen")
    old_name, new_name = f"lore.{domain.tag}", f"l.{domain.tag}"
    old_mail, new_mail = f"{old_name}@school.be", f"Lore.Dhondt.{domain.tag}@school.be"
    dn = domain.add(
        f"CN={old_name},OU=Leerlingen,{domain.root}",
        {
            "sAMAccountName": old_name,
            "userPrincipalName": f"{old_name}@school.test",
            "mail": old_mail,
            "employeeID": "4711",
            "proxyAddresses": ["X500:/o=school/cn=lore", "smtp:lore@oud.school.be"],
        },
    )
    guid = guid_of(domain.dc, dn)
    before = {
        "username": old_name,
        "userPrincipalName": f"{old_name}@school.test",
        "mail": old_mail,
    }
    after = {
        "username": new_name,
        "userPrincipalName": f"{new_name}@school.test",
        "mail": new_mail,
    }
    change = rename(dn, guid, "4711", before, after)
    result = domain.target.apply(change)
    assert result.status == "applied", result.message

    new_dn = f"CN={new_name},OU=Leerlingen,{domain.root}"
    found = domain.values(
        new_dn, "sAMAccountName", "userPrincipalName", "mail", "proxyAddresses", "objectGUID"
    )
    assert guid_of(domain.dc, new_dn) == guid  # the same object, its RDN new
    assert found["sAMAccountName"] == new_name
    assert found["userPrincipalName"] == f"{new_name}@school.test"
    assert found["mail"] == new_mail
    assert sorted(found["proxyAddresses"]) == sorted(
        ["X500:/o=school/cn=lore", "smtp:lore@oud.school.be", f"smtp:{old_mail}"]
    )
    assert by_sam(domain.dc, old_name) == []  # the old logon name no longer finds anyone
    assert by_sam(domain.dc, new_name) == [new_dn]

    # Applied again (a saved plan run twice): its precondition no longer holds; nothing changes.
    again = domain.target.apply(change)
    assert again.status == "skipped" and "sAMAccountName" in again.message
    assert domain.values(new_dn, "proxyAddresses")["proxyAddresses"] == found["proxyAddresses"]


def test_a_rename_adds_no_second_proxy_address_and_skips_on_drift(domain: Domain):
    make_ou(domain, "Personeel")
    name = f"an.{domain.tag}"
    old_mail = f"An.{domain.tag}@school.be"
    dn = domain.add(
        f"CN=An Peeters {domain.tag},OU=Personeel,{domain.root}",  # named by hand
        {
            "sAMAccountName": name,
            "mail": old_mail,
            "employeeID": "4712",
            # The old address is there already, as the primary one and in another case.
            "proxyAddresses": [f"SMTP:{old_mail.upper()}"],
        },
    )
    guid = guid_of(domain.dc, dn)
    # Someone changed the mail by hand after the plan: the rename is skipped, nothing written.
    stale = rename(
        dn,
        guid,
        "4712",
        {"username": name, "mail": "stale@school.be"},
        {"username": f"a.{domain.tag}", "mail": f"a.{domain.tag}@school.be"},
    )
    skipped = domain.target.apply(stale)
    assert skipped.status == "skipped" and "mail" in skipped.message
    assert domain.values(dn, "sAMAccountName")["sAMAccountName"] == name

    # Only the mail changes (the username stays): the object keeps its name (the same DN) and
    # no second entry is added for the old address.
    change = rename(
        dn,
        guid,
        "4712",
        {"username": name, "mail": old_mail},
        {"username": name, "mail": f"anna.{domain.tag}@school.be"},
    )
    assert domain.target.apply(change).status == "applied"
    found = domain.values(dn, "mail", "proxyAddresses", "sAMAccountName")
    assert found["mail"] == f"anna.{domain.tag}@school.be" and found["sAMAccountName"] == name
    assert found["proxyAddresses"] == [f"SMTP:{old_mail.upper()}"]


def test_a_rename_keeps_the_object_name_the_mappings_set_and_writes_no_proxy_without_old_mail(
    domain: Domain,
):
    make_ou(domain, "Personeel")
    name = f"bo.{domain.tag}"
    dn = domain.add(
        f"CN=Bo Peeters {domain.tag},OU=Personeel,{domain.root}",
        {"sAMAccountName": name, "employeeID": "4713"},
    )
    domain.target.manage_attributes({*MAPPED, "cn"}, {"description"})  # cn is the mappings' own
    change = rename(
        dn,
        guid_of(domain.dc, dn),
        "4713",
        {"username": name, "mail": ""},
        {"username": f"b.{domain.tag}", "mail": f"b.{domain.tag}@school.be"},
    )
    assert domain.target.apply(change).status == "applied"
    found = domain.values(dn, "sAMAccountName", "mail", "proxyAddresses")  # the same DN
    assert found["sAMAccountName"] == f"b.{domain.tag}"
    assert found["mail"] == f"b.{domain.tag}@school.be"
    assert not found["proxyAddresses"]  # there was no old address to keep


def test_a_rename_whose_object_name_is_taken_renames_the_logon_names_all_the_same(
    domain: Domain,
):
    make_ou(domain, "Leerlingen")
    old_name, new_name = f"cas.{domain.tag}", f"c.{domain.tag}"
    dn = domain.add(
        f"CN={old_name},OU=Leerlingen,{domain.root}",
        {"sAMAccountName": old_name, "employeeID": "4716"},
    )
    domain.add(  # a contact someone made by hand holds the new object name in that OU
        f"CN={new_name},OU=Leerlingen,{domain.root}",
        {"description": "by hand"},
        ["top", "person", "organizationalPerson", "contact"],
    )
    change = rename(
        dn, guid_of(domain.dc, dn), "4716", {"username": old_name}, {"username": new_name}
    )
    result = domain.target.apply(change)
    assert result.status == "applied"
    assert f"its object name stays CN={old_name}: CN={new_name} is taken" in result.message
    assert domain.values(dn, "sAMAccountName")["sAMAccountName"] == new_name
    assert by_sam(domain.dc, new_name) == [dn]


def test_a_rename_outside_the_root_or_of_unmapped_attributes_is_refused(domain: Domain):
    name = f"victim{domain.tag}"
    victim = domain.add(
        domain.users("victim"), {"sAMAccountName": name, "employeeID": "4714", "mail": "v@x.be"}
    )
    make_ou(domain, "Leerlingen")
    inside = domain.add(
        f"CN=in{domain.tag},OU=Leerlingen,{domain.root}",
        {"sAMAccountName": f"in{domain.tag}", "employeeID": "4715"},
    )
    outside_root = rename(
        victim,
        guid_of(domain.dc, victim),
        "4714",
        {"username": name},
        {"username": f"pwned{domain.tag}", "mail": "pwned@x.be"},
    )
    unmapped = rename(
        inside,
        guid_of(domain.dc, inside),
        "4715",
        {"username": f"in{domain.tag}"},
        {"username": f"in2{domain.tag}", "title": "boss", "adminCount": "1"},
    )
    first, second = domain.target.apply(outside_root), domain.target.apply(unmapped)
    assert first.status == "failed"
    assert f"{victim} is outside the managed OU {domain.root}" in first.message
    assert second.status == "failed"
    assert "title (the mappings do not set it)" in second.message
    assert "adminCount (the connector never writes it" in second.message
    assert domain.values(victim, "sAMAccountName", "mail", "proxyAddresses") == {
        "sAMAccountName": name,
        "mail": "v@x.be",
        "proxyAddresses": [],
    }
    assert domain.values(inside, "sAMAccountName")["sAMAccountName"] == f"in{domain.tag}"


# -- names taken outside the managed root ------------------------------------------------------


def test_names_taken_anywhere_outside_the_root_are_found_and_nothing_is_a_wildcard(
    domain: Domain, monkeypatch
):
    legacy = domain.add(
        f"CN=Lore Dhondt,CN=Users,{domain.dc.base_dn}", {"sAMAccountName": "lore.dhondt"}
    )
    contact = domain.add(
        domain.users("contact"),
        {"mail": "X@School.be"},
        ["top", "person", "organizationalPerson", "contact"],
    )
    group = domain.add(
        f"CN=groep{domain.tag},{domain.other}",
        {
            "sAMAccountName": f"groep{domain.tag}",
            "proxyAddresses": [f"SMTP:Groep.{domain.tag}@School.be", "smtp:alias@school.be"],
        },
        ["top", "group"],
    )
    upn = domain.add(
        f"CN=upn{domain.tag},{domain.old}",
        {
            "sAMAccountName": f"upn{domain.tag}",
            "userPrincipalName": f"upn.{domain.tag}@school.test",
        },
    )
    make_ou(domain, "Leerlingen")
    domain.add(  # in the managed root: the planner's own business, not "outside"
        f"CN=jan{domain.tag},OU=Leerlingen,{domain.root}",
        {"sAMAccountName": f"jan{domain.tag}", "mail": f"jan.{domain.tag}@school.be"},
    )
    wanted = {
        "lore.dhondt": legacy,
        "x@school.be": contact,
        f"groep.{domain.tag}@school.be": group,
        "alias@school.be": group,
        f"upn.{domain.tag}@school.test": upn,
    }
    hostile = ["*", "lore*", "*dhondt", "(sAMAccountName=*)", ")(|(mail=*", "a\\b", "x\x00y"]
    noise = [f"nobody{i}.{domain.tag}" for i in range(230)]
    values = [
        "Lore.Dhondt",  # another case: AD's names compare without case
        "X@SCHOOL.BE",
        f"groep.{domain.tag}@school.be",
        "ALIAS@school.be",
        f"upn.{domain.tag}@school.test",
        f"jan{domain.tag}",
        f"jan.{domain.tag}@school.be",
        "",
        *hostile,
        *noise,
    ]
    searches = []
    original = ActiveDirectory._paged

    def counted(self, base, search_filter, attributes, **kwargs):
        searches.append(search_filter)
        return original(self, base, search_filter, attributes, **kwargs)

    monkeypatch.setattr(ActiveDirectory, "_paged", counted)
    taken = domain.target.taken_outside(values)
    assert taken == {name: dn for name, dn in wanted.items()}
    assert len(searches) == 3  # 242 names in batches of 100
    assert all(search.count("(sAMAccountName=") <= 100 for search in searches)
    assert domain.target.taken_outside([]) == {}


# -- accounts outside that carry an anchor ----------------------------------------------------


@dataclasses.dataclass
class Outside:
    plain: str
    admin_count: str
    nested_admin: str
    unanchored: str
    computer: str
    elsewhere: str
    in_users: str
    managed: str


@pytest.fixture
def outside(domain: Domain) -> Iterator[Outside]:
    """Accounts in the adopt_from OU (one fit to adopt, two protected, one without an anchor, a
    computer), one in an OU not named by adopt_from, one in CN=Users and one managed."""
    t = domain.tag
    add = domain.add
    plain = add(
        f"CN=Oud Account {t},{domain.old}",
        {"sAMAccountName": f"oud{t}", "employeeID": f"A{t}", "department": "oud"},
    )
    admin_count = add(
        f"CN=admin{t},{domain.old}",
        {"sAMAccountName": f"admin{t}", "employeeID": f"B{t}", "adminCount": "1"},
    )
    nested_admin = add(
        f"CN=nested{t},{domain.old}", {"sAMAccountName": f"nested{t}", "employeeID": f"C{t}"}
    )
    helpers = add(f"CN=helpers{t},{domain.old}", {"member": [nested_admin]}, ["top", "group"])
    conn = domain.dc.connect()
    admins = f"CN=Domain Admins,CN=Users,{domain.dc.base_dn}"
    assert conn.modify(admins, {"member": [(MODIFY_ADD, [helpers])]})
    unanchored = add(f"CN=plain{t},{domain.old}", {"sAMAccountName": f"plain{t}"})
    computer = add(
        f"CN=pc{t},{domain.old}",
        {"sAMAccountName": f"pc{t}$", "employeeID": f"D{t}"},
        [*USER, "computer"],
    )
    elsewhere = add(
        f"CN=ander{t},{domain.other}", {"sAMAccountName": f"ander{t}", "employeeID": f"E{t}"}
    )
    in_users = add(domain.users("legacy"), {"sAMAccountName": f"leg{t}", "employeeID": f"F{t}"})
    make_ou(domain, "Leerlingen")
    managed = add(
        f"CN=beheerd{t},OU=Leerlingen,{domain.root}",
        {"sAMAccountName": f"beheerd{t}", "employeeID": f"G{t}"},
    )
    yield Outside(
        plain, admin_count, nested_admin, unanchored, computer, elsewhere, in_users, managed
    )
    # Deleting the group (with its OU) takes it out of Domain Admins; made sure of here.
    conn.modify(admins, {"member": [(MODIFY_DELETE, [helpers])]})


def test_read_lists_the_anchored_accounts_of_adopt_from_with_why_some_are_protected(
    domain: Domain, outside: Outside
):
    state = domain.target.read(["department", "sAMAccountName"])
    by_dn = {account.target: account for account in state.outside}
    assert set(by_dn) == {outside.plain, outside.admin_count, outside.nested_admin}
    plain = by_dn[outside.plain]
    assert (plain.anchor, plain.username, plain.ou) == (f"A{domain.tag}", f"oud{domain.tag}", ())
    assert plain.attributes == {"department": "oud", "sAMAccountName": f"oud{domain.tag}"}
    assert plain.id == guid_of(domain.dc, outside.plain) and plain.protected is None
    assert by_dn[outside.admin_count].protected == "adminCount=1 (a protected, privileged account)"
    nested = by_dn[outside.nested_admin].protected
    assert nested is not None and nested.startswith("member of the privileged group Domain Admins")
    assert f"through CN=helpers{domain.tag}" in nested
    assert [a.target for a in state.accounts] == [outside.managed]  # the managed scope as ever


def test_anchored_outside_lists_every_anchored_user_outside_the_root(
    domain: Domain, outside: Outside
):
    found = {
        account.target: account
        for account in domain.target.anchored_outside()
        if domain.tag in account.target
    }
    assert set(found) == {
        outside.plain,
        outside.admin_count,
        outside.nested_admin,
        outside.elsewhere,
        outside.in_users,
    }
    assert found[outside.in_users].anchor == f"F{domain.tag}"
    assert found[outside.plain].attributes["department"] == "oud"  # a mapped attribute
    assert found[outside.elsewhere].protected is None
    assert found[outside.admin_count].protected is not None


# -- adoption from outside ----------------------------------------------------------------------


def test_an_account_is_adopted_from_adopt_from_by_its_anchor_and_moved_in(
    domain: Domain, outside: Outside
):
    make_ou(domain, "Leerlingen", "1A")
    anchor = f"A{domain.tag}"
    guid = guid_of(domain.dc, outside.plain)
    change = adopt(outside.plain, guid, anchor, {"ou": ["Leerlingen", "1A"], "department": "1A"})
    result = domain.target.apply(change)
    assert result.status == "applied", result.message
    assert f"moved in from {domain.old}" in result.message
    moved = f"CN=Oud Account {domain.tag},OU=1A,OU=Leerlingen,{domain.root}"
    assert guid_of(domain.dc, moved) == guid
    assert domain.values(moved, "department", "employeeID") == {
        "department": "1A",
        "employeeID": anchor,
    }
    assert read(domain.dc, outside.plain, "1.1") is None  # gone from where it was
    # Later changes of the same plan act on it where it is now: a rename.
    follow = rename(
        moved, guid, anchor, {"username": f"oud{domain.tag}"}, {"username": f"nieuw{domain.tag}"}
    )
    assert domain.target.apply(follow).status == "applied"
    assert by_sam(domain.dc, f"nieuw{domain.tag}") == [
        f"CN=nieuw{domain.tag},OU=1A,OU=Leerlingen,{domain.root}"
    ]
    state = domain.target.read(["department"])
    assert anchor in {a.anchor for a in state.accounts}  # managed now, no longer outside
    assert anchor not in {a.anchor for a in state.outside}


def test_adoption_from_outside_is_refused_unless_everything_fits(domain: Domain, outside: Outside):
    make_ou(domain, "Leerlingen")
    t = domain.tag
    other_anchor = domain.add(
        f"CN=other{t},{domain.old}", {"sAMAccountName": f"other{t}", "employeeID": f"H{t}"}
    )
    into = {"ou": ["Leerlingen"], "department": "taken"}

    def adopt_of(dn: str, anchor: str, after: dict) -> Change:
        return adopt(dn, guid_of(domain.dc, dn), anchor, after)

    cases = {
        # found by name alone (no anchor): never
        "unanchored": (
            adopt_of(outside.unanchored, f"A{t}", into),
            "it carries none",
        ),
        "by name": (
            dataclasses.replace(
                adopt_of(outside.unanchored, f"Z{t}", into),
                precondition=Precondition(
                    id=guid_of(domain.dc, outside.unanchored), unanchored=True
                ),
            ),
            "never by its name",
        ),
        "another anchor": (
            adopt_of(other_anchor, f"A{t}", into),
            f"it carries 'H{t}'",
        ),
        "adminCount=1": (
            adopt_of(outside.admin_count, f"B{t}", into),
            "adminCount=1",
        ),
        "nested admin": (
            adopt_of(outside.nested_admin, f"C{t}", into),
            "privileged group Domain Admins",
        ),
        "computer": (
            adopt_of(outside.computer, f"D{t}", into),
            "not a user account",
        ),
        "not adopt_from": (
            adopt_of(outside.elsewhere, f"E{t}", into),
            "in no place named by adopt_from",
        ),
        "CN=Users": (
            adopt_of(outside.in_users, f"F{t}", into),
            "in no place named by adopt_from",
        ),
        "not moved in": (
            adopt_of(outside.plain, f"A{t}", {"department": "taken"}),
            "does not move it into the managed OU",
        ),
        "place outside": (
            adopt_of(
                outside.plain,
                f"A{t}",
                {"ou": f"CN=Users,{domain.dc.base_dn}"},
            ),
            "is not a list of OU names",
        ),
    }
    before = {
        dn: domain.values(dn, "department", "employeeID")
        for dn in (*dataclasses.astuple(outside), other_anchor)
    }
    for name, (change, why) in cases.items():
        result = domain.target.apply(change)
        assert result.status == "failed", name
        assert result.message.startswith("refused, nothing done"), name
        assert why in result.message, (name, result.message)
    for dn, values in before.items():
        assert domain.values(dn, "department", "employeeID") == values, dn  # all where they were


def test_adoption_is_refused_for_every_outside_account_without_adopt_from(
    samba_dc: SambaDC, domain: Domain, outside: Outside
):
    make_ou(domain, "Leerlingen")
    target = ActiveDirectory(ad_config(samba_dc, domain.root.split(",")[0], []))
    try:
        change = adopt(
            outside.plain,
            guid_of(samba_dc, outside.plain),
            f"A{domain.tag}",
            {"ou": ["Leerlingen"]},
        )
        result = target.apply(change)
        assert target.read([]).outside == []
    finally:
        target.close()
    assert result.status == "failed" and "adopt_from names no place" in result.message
    assert read(samba_dc, outside.plain, "1.1") is not None


# -- the configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("adopt_from", "message"),
    [
        ("OU=x,OU=Beheerd", "overlaps the managed root OU=Beheerd,DC=school,DC=test"),
        ("DC=school,DC=test", "is the whole domain"),
        ("OU=Oud,DC=elders,DC=be", "is not an OU of the domain DC=school,DC=test"),
        ("Oud", "is not a DN"),
    ],
)
def test_adopt_from_must_name_a_place_in_the_domain_outside_the_managed_root(
    tmp_path: Path, monkeypatch, adopt_from: str, message: str
):
    monkeypatch.setenv("TEST_INFORMAT_PASSWORD", "geheim")
    monkeypatch.setenv("TEST_AD_PASSWORD", "geheim")
    path = tmp_path / "provisioner.yaml"
    path.write_text(
        config_head("http://127.0.0.1:1/wsInformat.asmx", tmp_path) + "target:\n  ad:\n"
        "    url: ldaps://127.0.0.1\n"
        "    bind_user: SCHOOL\\provisioner\n"
        "    password: ${TEST_AD_PASSWORD}\n"
        "    base_dn: DC=school,DC=test\n"
        "    managed_root: OU=Beheerd\n"
        f"    adopt_from: ['{adopt_from}']\n"
    )
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert message in str(raised.value)
    assert str(raised.value).startswith(f"{path}:")  # where to correct it


def test_adopt_from_takes_names_below_base_dn_or_whole_dns():
    config = AdConfig(
        url="ldaps://dc.invalid",
        bind_user="provisioner@school.test",
        password=Secret("not-used", "test"),
        base_dn="DC=school,DC=test",
        managed_root="OU=Beheerd",
        adopt_from=["OU=Oud,OU=Leerlingen", "CN=Users,DC=school,DC=test"],
    )
    assert config.adopt_from_dns == [
        "OU=Oud,OU=Leerlingen,DC=school,DC=test",
        "CN=Users,DC=school,DC=test",
    ]
