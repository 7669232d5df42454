"""The incremental read of Active Directory (provisioner.targets.ad_read) against a real Samba DC:
objects changed by hand between two nights, then the read that folds the changes into the kept
one must give exactly what a full read gives, and the plan made from it the same plan."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import secrets
import shutil
import sqlite3
import subprocess
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ldap3 import BASE, MODIFY_ADD, MODIFY_DELETE, MODIFY_REPLACE, SUBTREE, Connection, Server
from ldap3.protocol.formatters.formatters import format_sid

from provisioner import log
from provisioner.cli import main
from provisioner.helper import Helper
from provisioner.model import ObservedState
from provisioner.pipeline import FORESEEN, NOT_FORESEEN
from provisioner.readcache import ReadCache
from provisioner.secret import Secret
from provisioner.state import StateStore
from provisioner.targets import ad_apart, ad_read
from provisioner.targets.ad import ActiveDirectory
from provisioner.targets.ad_settings import AdConfig
from provisioner.targets.base import TargetError
from tests.conftest import REFERENCE_DAY
from tests.fakes.informat_server import InformatServer
from tests.scenarios import ad_target, config_head, day_two

ROOT = Path(__file__).resolve().parent.parent
ATTRIBUTES = frozenset({"sAMAccountName", "displayName", "department", "description"})
TREE_DELETE = ("1.2.840.113556.1.4.805", True, None)
SHOW_DELETED = ("1.2.840.113556.1.4.417", True, None)
USER = ["top", "person", "organizationalPerson", "user"]
SVC_PASSWORD = "Svc-Passw0rd!"
# Object classes' schemaIDGUIDs, for the delegation of docs/getting-started.md (dsacls /I:T /G
# "SVC:CCDC;user" "SVC:CCDC;group" "SVC:CCDC;organizationalUnit", and RPWP below).
CLASS_GUIDS = {
    "user": "bf967aba-0de6-11d0-a285-00aa003049e2",
    "group": "bf967a9c-0de6-11d0-a285-00aa003049e2",
    "organizationalUnit": "bf967aa5-0de6-11d0-a285-00aa003049e2",
}


def bare(samba_dc: Any, user: str | None = None, password: str | None = None) -> Connection:
    """An ldap3 connection as the target makes it (no schema: values as the DC sends them)."""
    server = Server("127.0.0.1", port=636, use_ssl=True, tls=samba_dc.tls(), get_info=None)
    return Connection(
        server,
        user=user or samba_dc.admin_user,
        password=password or samba_dc.admin_password,
        auto_bind=True,
        receive_timeout=120,
    )


@dataclasses.dataclass
class Tree:
    """A managed root, a place outside it (also adopt_from) and the DNs of what was made."""

    conn: Connection
    base_dn: str
    root: str
    outside: str
    dn: dict[str, str] = dataclasses.field(default_factory=dict)

    def ou(self, name: str, parent: str) -> str:
        dn = f"OU={name},{parent}"
        assert self.conn.add(dn, ["top", "organizationalUnit"]), self.conn.result
        self.dn[name] = dn
        return dn

    def user(self, name: str, parent: str, anchor: str | None = None, **values: str) -> str:
        dn = f"CN={name},{parent}"
        attributes = {"sAMAccountName": name, "displayName": f"User {name}", **values}
        if anchor:
            attributes["employeeID"] = anchor
        assert self.conn.add(dn, USER, attributes), self.conn.result
        self.dn[name] = dn
        return dn

    def group(self, name: str, parent: str, members: list[str]) -> str:
        dn = f"CN={name},{parent}"
        values: dict[str, Any] = {"sAMAccountName": name, "adminDescription": f"key-{name}"}
        if members:
            values["member"] = [self.dn[m] for m in members]
        assert self.conn.add(dn, ["top", "group"], values), self.conn.result
        self.dn[name] = dn
        return dn

    def move(self, name: str, rdn: str, parent: str | None = None) -> None:
        old = self.dn[name]
        parent = parent or old.split(",", 1)[1]
        assert self.conn.modify_dn(old, rdn, new_superior=parent), self.conn.result
        new = f"{rdn},{parent}"
        for key, dn in list(self.dn.items()):  # everything below follows
            if dn == old or dn.endswith("," + old):
                self.dn[key] = dn[: len(dn) - len(old)] + new

    def modify(self, name: str, changes: dict[str, Any]) -> None:
        assert self.conn.modify(self.dn[name], changes), self.conn.result

    def delete(self, name: str) -> None:
        assert self.conn.delete(self.dn[name]), self.conn.result


@pytest.fixture
def tree(samba_dc: Any) -> Iterator[Tree]:
    """Night 1's directory: a managed root with a school of two classes and a staff OU, a
    place outside it that adopt_from names, and class groups."""
    conn = bare(samba_dc)
    tag = secrets.token_hex(4)
    root = f"OU=ti{tag},{samba_dc.base_dn}"
    outside = f"OU=to{tag},{samba_dc.base_dn}"
    made = Tree(conn, samba_dc.base_dn, root, outside)
    made.ou(f"ti{tag}", samba_dc.base_dn)
    made.ou(f"to{tag}", samba_dc.base_dn)
    school = made.ou("School", root)
    one_a, one_b, staff = made.ou("1A", school), made.ou("1B", school), made.ou("Staff", root)
    for n in range(1, 7):
        made.user(f"a{n}", one_a, f"10{n}", department="1A")
    for n in range(1, 4):
        made.user(f"b{n}", one_b, f"20{n}", department="1B")
    made.user("t1", staff, "301", description="teacher")
    made.user("plain", one_a)  # no anchor: made before the connector
    made.user("x1", outside, "401")  # outside, with an anchor: adopt_from shows it
    made.user("x2", outside)
    made.group("g1a", one_a, ["a1", "a2", "a3", "a4", "a6", "t1"])
    made.group("g1b", one_b, ["b1", "b2", "b3", "x2"])
    made.group("gone", school, ["a1"])
    yield made
    for dn in (root, outside):
        conn.delete(dn, controls=[TREE_DELETE])
    conn.unbind()


def config(samba_dc: Any, tree: Tree, **overrides: Any) -> AdConfig:
    values: dict[str, Any] = {
        "url": samba_dc.ldaps_url,
        "bind_user": samba_dc.admin_user,
        "password": Secret(samba_dc.admin_password, "test"),
        "base_dn": samba_dc.base_dn,
        "managed_root": tree.root.removesuffix("," + samba_dc.base_dn),
        "ca_file": samba_dc.ca_file,
        "adopt_from": [tree.outside],
        "page_size": 7,  # several pages even for a small tree
        **overrides,
    }
    return AdConfig(**values)


class Night:
    """One night's read: a fresh target (as each run makes one) and the state store's cache."""

    def __init__(
        self, settings: AdConfig, store: Path, events: list[str], size_limit: int = 0, **cache: Any
    ) -> None:
        """*size_limit*: a search without pages gives only so many entries and sizeLimitExceeded,
        as AD does beyond its MaxPageSize (Samba has no such limit, nor heeds a search's own)."""
        self.settings, self.store, self.events, self.cache = settings, store, events, cache
        self.size_limit = size_limit

    def read(self, attributes: frozenset[str] = ATTRIBUTES) -> tuple[ObservedState, str]:
        """The observed state and the target's log line about the read."""
        target = ActiveDirectory(self.settings)
        if self.size_limit:  # on every connection the target opens, in this process
            target.read_apart = False
            open_connection = target._open
            target._open = lambda: limit_searches(open_connection(), self.size_limit)  # type: ignore[method-assign]
        expected: list[ObservedState] = []
        options = {"mappings": "m1", "full_read_every": 7, "expect": expected.append, **self.cache}
        base = ReadCache(self.store, target.describe(), **options)
        before = len(self.events)
        try:
            state = target.read(attributes, base)
            index = _index(target)
        finally:
            target.close()
        (line,) = [e for e in self.events[before:] if e.startswith("read the managed OU")]
        self.last_index = index
        # The read ended as expected: it gave the very state it foretold.
        self.as_expected = any(state is told for told in expected)
        return state, line

    def full(self, attributes: frozenset[str] = ATTRIBUTES) -> ObservedState:
        """A full read without a kept read (the reference)."""
        target = ActiveDirectory(self.settings)
        try:
            state = target.read(attributes)
            self.full_index = _index(target)
        finally:
            target.close()
        return state


def limit_searches(conn: Connection, size_limit: int) -> Connection:
    """*conn*'s searches without pages end as AD ends them beyond its MaxPageSize."""
    search = conn.search

    def as_ad(*args: Any, **kwargs: Any) -> bool:
        done = search(*args, **kwargs)
        paged = kwargs.get("paged_size") or (len(args) > 10 and args[10])
        if paged or len(conn.response) <= size_limit:
            return done
        conn.response = conn.response[:size_limit]
        conn.result = {**conn.result, "result": 4, "description": "sizeLimitExceeded"}
        return False

    conn.search = as_ad  # type: ignore[method-assign]
    return conn


def _index(target: ActiveDirectory) -> tuple[dict, set]:
    return dict(target._anchors._by_anchor), set(target._anchors._ambiguous)


def normalised(state: ObservedState) -> dict[str, Any]:
    return {
        "accounts": sorted((dataclasses.asdict(a) for a in state.accounts), key=lambda a: a["id"]),
        "groups": sorted((dataclasses.asdict(g) for g in state.groups), key=lambda g: g["id"]),
        "ous": sorted(state.ous),
        "outside": sorted((dataclasses.asdict(a) for a in state.outside), key=lambda a: a["id"]),
    }


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    real = log.event

    def record(message: str, *args: Any, **fields: Any) -> None:
        seen.append(message)
        real(message, *args, **fields)

    monkeypatch.setattr(log, "event", record)
    return seen


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "state.db"
    StateStore(path).close()
    return path


def usn_changed(tree: Tree, name: str) -> int:
    tree.conn.search(tree.dn[name], "(objectClass=*)", BASE, attributes=["uSNChanged"])
    return int(tree.conn.response[0]["attributes"]["uSNChanged"][0])


def assert_same(night: Night, incremental: ObservedState) -> ObservedState:
    full = night.full()
    assert normalised(incremental) == normalised(full)
    assert night.last_index == night.full_index  # the anchor index as after a full read
    return full


LIMITED = (
    "the DC limits what one search returns (sizeLimitExceeded): the managed OU is read in pages"
)


@pytest.mark.parametrize(
    ("overrides", "size_limit"),
    [({}, 0), ({"paged_reads": True}, 0), ({}, 5)],
    ids=["in one search", "paged_reads", "a DC that limits one search"],
)
def test_an_incremental_read_equals_a_full_read_after_changes_by_hand(
    samba_dc: Any,
    tree: Tree,
    store: Path,
    events: list[str],
    overrides: dict[str, Any],
    size_limit: int,
) -> None:
    night = Night(config(samba_dc, tree, **overrides), store, events, size_limit)
    first, line = night.read()
    assert line.startswith("read the managed OU in full") and "no earlier read is kept" in line
    assert {a.anchor for a in first.outside} == {"401"}
    # nothing changed: incremental, and nothing read again
    second, line = night.read()
    assert line.startswith("read the managed OU incrementally: 0 changed, 0 gone"), line
    assert_same(night, second)
    assert night.as_expected

    t = tree
    t.modify("a1", {"displayName": [(MODIFY_REPLACE, ["Ann Renamed"])]})  # an attribute
    t.move("a2", "CN=a2", t.outside)  # a member moved out of the root
    t.move("x1", "CN=x1", t.dn["1A"])  # moved in from outside, with an anchor
    t.delete("a3")  # a member deleted
    t.delete("gone")  # a group deleted
    before = usn_changed(t, "g1a")
    t.modify("g1a", {"member": [(MODIFY_ADD, [t.dn["a5"]])]})  # membership added
    assert usn_changed(t, "g1a") > before  # a member added or removed changes the group
    t.modify("g1a", {"member": [(MODIFY_DELETE, [t.dn["a6"]])]})  # and removed
    before = usn_changed(t, "g1a")
    t.move("a4", "CN=a4 renamed")  # renamed: still a member of g1a
    assert usn_changed(t, "g1a") == before  # its member value changed, the group's USN did not
    t.move("1B", "OU=1C")  # an OU renamed: b1..b3 and g1b follow
    t.move("Staff", "OU=Staff", t.outside)  # an OU moved out: t1 leaves g1a's managed members
    moved_in = t.ou("Incoming", t.outside)
    t.user("n1", moved_in, "501")
    t.group("gin", moved_in, ["n1", "a1"])
    t.move("Incoming", "OU=Incoming", t.dn["School"])  # an OU moved in, with what it holds
    t.move("x2", "CN=x2", t.dn["1B"])  # an unmanaged member moved in: g1b's members follow
    computer = f"CN=pc1,{t.dn['1A']}"  # a user to objectClass, never a managed account
    assert t.conn.add(computer, [*USER, "computer"], {"sAMAccountName": "pc1$"}), t.conn.result
    contact = f"CN=c1,{t.dn['1A']}"  # neither
    assert t.conn.add(contact, ["top", "person", "organizationalPerson", "contact"]), t.conn.result

    third, line = night.read()
    assert line.startswith("read the managed OU incrementally"), line
    full = assert_same(night, third)
    assert not night.as_expected  # objects gone, moved, come in: only the list shows them
    groups = {g.key: g for g in full.groups}
    assert groups["key-g1a"].members == {"101", "104", "105"}
    assert "key-gone" not in groups and groups["key-gin"].ou[-1] == "Incoming"
    assert groups["key-g1b"].ou == ("School", "1C")
    accounts = {a.anchor: a for a in full.accounts}
    assert accounts["101"].attributes["displayName"] == "Ann Renamed"
    assert accounts["104"].target.startswith("CN=a4 renamed,")
    assert accounts["201"].ou == ("School", "1C") and accounts["401"].ou == ("School", "1A")
    assert accounts["501"].ou == ("School", "Incoming")
    assert {"102", "103", "301"}.isdisjoint(accounts)
    assert not {computer, contact} & {a.target for a in full.accounts}
    assert {a.anchor for a in full.outside} == {"102", "301"}  # adopt_from: read live

    fourth, line = night.read()  # and the folded read is a good base in turn
    assert line.startswith("read the managed OU incrementally: 0 changed, 0 gone"), line
    assert_same(night, fourth)
    assert night.as_expected

    # nothing gone: only what changed is written, beside the objects as written whole before
    (whole,) = kept_objects(store)
    t.modify("a1", {"displayName": [(MODIFY_REPLACE, ["Ann Again"])]})
    t.move("1B", "OU=1D")  # (1C now) b1..b3 and g1b move with it, without a change of their own
    fifth, line = night.read()
    assert_same(night, fifth)
    ((changes,),) = [row[-1:] for row in kept_reads(store)]
    assert kept_objects(store) == [whole] and changes is not None
    changed = json.loads(zlib.decompress(changes))
    assert {dn.split(",")[0] for dn, *_rest in changed.values()} >= {"CN=a1", "CN=b1", "OU=1D"}
    sixth, line = night.read()  # the objects written whole with the changes folded in
    assert line.startswith("read the managed OU incrementally: 0 changed, 0 gone"), line
    assert_same(night, sixth)
    assert night.as_expected
    # what is there is listed in one search, unless the DC refuses one or pages are asked for
    assert events.count(LIMITED) == (5 if size_limit else 0)


def test_an_ou_renamed_by_hand_is_not_as_expected(
    samba_dc: Any, tree: Tree, store: Path, events: list[str]
) -> None:
    """Renaming an OU moves its subtree without a change of the objects' own: the changes read
    cannot see it, so the read does not end as it expected, and what it gives is the full read's."""
    night = Night(config(samba_dc, tree), store, events)
    night.read()
    tree.move("1B", "OU=1C")
    renamed, line = night.read()
    assert line.startswith("read the managed OU incrementally: 1 changed, 0 gone"), line
    assert not night.as_expected
    full = assert_same(night, renamed)
    assert {a.ou for a in full.accounts if a.anchor == "201"} == {("School", "1C")}


def test_a_read_made_apart_gives_what_a_read_here_gives_and_its_errors(
    samba_dc: Any, tree: Tree, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reads of the whole root that a helper process makes: the same objects as a read in
    this process, and an error said as it would be here (the password went over the socket)."""
    settings = config(samba_dc, tree)
    here = ActiveDirectory(settings)
    here.read_apart = False
    try:
        wanted = here.read_attributes(ATTRIBUTES)
        in_full = here._read_all(wanted)
        assert ad_apart.read_apart(settings, "_read_all", wanted=wanted) == in_full
        assert ActiveDirectory(settings)._read_whole(wanted)[0] == in_full and len(in_full) > 10
        listed = ad_apart.read_apart(settings, "_list", whole=True)
        assert listed == here._list(whole=True) and listed[1] is None and len(listed[0]) > 10
    finally:
        here.close()
    wrong = dataclasses.replace(settings, password=Secret("not the password", "test"))
    with pytest.raises(TargetError, match="the DC refused the bind as"):
        ad_apart.read_apart(wrong, "_list", whole=True)
    # a helper that dies without a word (out of memory, killed): an error, never an empty read
    monkeypatch.setattr(ad_apart, "Helper", lambda _module: Helper("provisioner.no_such_module"))
    with pytest.raises(TargetError, match="the process reading it stopped unexpectedly"):
        ad_apart.read_apart(settings, "_list", whole=True)


def test_a_full_read_whenever_the_base_cannot_be_trusted(
    samba_dc: Any, tree: Tree, store: Path, events: list[str]
) -> None:
    settings = config(samba_dc, tree)
    night = Night(settings, store, events)
    night.read()
    assert night.read()[1].startswith("read the managed OU incrementally")
    # a dry run (plan) reads from the kept read but keeps nothing
    kept = kept_reads(store)
    tree.modify("a1", {"displayName": [(MODIFY_REPLACE, ["Dry"])]})
    dry_run = Night(settings, store, events, keeps=False)
    dry, line = dry_run.read()
    assert line.startswith("read the managed OU incrementally: 1 changed"), line
    assert kept_reads(store) == kept
    assert_same(dry_run, dry)

    # another DC answered (or this one was restored): another invocationId
    target = ActiveDirectory(settings).describe()
    with StateStore(store) as kept:
        row = kept.last_read(target)
        assert row is not None
        watermark = {**row["watermark"], "invocation_id": "00000000-0000-0000-0000-000000000001"}
        kept.keep_read(
            target,
            scope=row["scope"],
            watermark=watermark,
            full_read_at=row["full_read_at"],
            objects=row["objects"],
            changes=row["changes"],
        )
    state, line = night.read()
    assert line.startswith("read the managed OU in full") and "another DC answered" in line
    assert_same(night, state)
    assert night.read()[1].startswith("read the managed OU incrementally")

    # other attributes (the mappings changed), other mappings, a request, full_read_every
    line = night.read(ATTRIBUTES | {"mail"})[1]
    assert "the mappings or the managed scope changed" in line
    assert (
        "the mappings or the managed scope changed"
        in Night(settings, store, events, mappings="m2").read(ATTRIBUTES | {"mail"})[1]
    )
    assert "a full read was asked for" in Night(settings, store, events, full_read=True).read()[1]
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=8)
    line = Night(settings, store, events, now=lambda: later).read()[1]
    assert "the last full read was 8 day(s) ago" in line
    # another archive OU or anchor attribute is another scope
    other = config(samba_dc, tree, group_anchor_attribute="description")
    assert "the managed scope changed" in Night(other, store, events).read()[1]


def test_a_full_read_is_foreseen_from_the_kept_read_and_compared_with_it(
    samba_dc: Any, tree: Tree, store: Path, events: list[str]
) -> None:
    """A full read due (asked for, every full_read_every days) also hands over what it will
    most likely give: the kept read, however old, with the changes since folded in. It stands
    only when the full read gives exactly that."""
    settings = config(samba_dc, tree)
    Night(settings, store, events).read()
    asked = Night(settings, store, events, full_read=True)
    state, line = asked.read()
    assert "a full read was asked for" in line and asked.as_expected
    assert_same(asked, state)

    tree.modify("a1", {"displayName": [(MODIFY_REPLACE, ["Changed since"])]})
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=8)
    weekly = Night(settings, store, events, now=lambda: later)
    state, line = weekly.read()
    assert "the last full read was 8 day(s) ago" in line
    assert weekly.as_expected  # the change was folded into what it foretold
    assert {a.attributes.get("displayName") for a in state.accounts} >= {"Changed since"}
    assert_same(weekly, state)

    tree.move("1B", "OU=1C")  # an OU renamed: its subtree's DNs change, their USNs do not
    state, _line = asked.read()
    assert not asked.as_expected
    assert_same(asked, state)
    tree.delete("a3")  # gone: the full read does not give it
    state, _line = asked.read()
    assert not asked.as_expected
    assert_same(asked, state)

    # a dry run keeps nothing and takes no watermark: it foretells nothing either
    dry_run = Night(settings, store, events, full_read=True, keeps=False)
    state, _line = dry_run.read()
    assert not dry_run.as_expected
    assert_same(dry_run, state)


def delegated_account(samba_dc: Any, tree: Tree) -> str:
    """A bind account with the rights docs/getting-started.md delegates on the managed root
    (create and delete users, groups and OUs; write their attributes), no administrator: its
    UPN. Made with samba-tool dsacl on the DC's database."""
    conn = tree.conn
    name = f"svc{secrets.token_hex(3)}"
    dn = f"CN={name},CN=Users,{tree.base_dn}"
    password = f'"{SVC_PASSWORD}"'.encode("utf-16-le")
    values = {"sAMAccountName": name, "userPrincipalName": f"{name}@school.test"}
    assert conn.add(dn, USER, {**values, "unicodePwd": password, "userAccountControl": 512})
    conn.search(dn, "(objectClass=*)", BASE, attributes=["objectSid"])
    sid = format_sid(conn.response[0]["raw_attributes"]["objectSid"][0])
    aces = "".join(f"(OA;CI;CCDC;{guid};;{sid})" for guid in CLASS_GUIDS.values())
    aces += "".join(f"(OA;CIIO;RPWP;;{guid};{sid})" for guid in CLASS_GUIDS.values())
    dsacl(samba_dc, tree.root, aces)
    return f"{name}@school.test"


def dsacl(samba_dc: Any, dn: str, sddl: str) -> None:
    samba_tool = shutil.which("samba-tool", path="/usr/bin:/usr/sbin:/bin:/sbin")
    assert samba_tool and samba_dc.directory
    subprocess.run(
        [
            samba_tool,
            "dsacl",
            "set",
            "-H",
            str(samba_dc.directory / "private" / "sam.ldb"),
            "-s",
            str(samba_dc.directory / "etc" / "smb.conf"),
            f"--objectdn={dn}",
            f"--sddl={sddl}",
        ],
        check=True,
        capture_output=True,
    )


def test_with_the_delegated_account_deleted_and_hidden_objects_are_gone(
    samba_dc: Any, tree: Tree, store: Path, events: list[str]
) -> None:
    svc = delegated_account(samba_dc, tree)
    as_svc = config(samba_dc, tree, bind_user=svc, password=Secret(SVC_PASSWORD, "test"))
    night = Night(as_svc, store, events)
    night.read()

    # A place the bind account may not read (an explicit deny): moved there, an object vanishes.
    conn = tree.conn
    hidden = tree.ou("Hidden", tree.outside)
    conn.search(f"CN={svc.split('@')[0]},CN=Users,{tree.base_dn}", "(objectClass=*)", BASE,
                attributes=["objectSid"])  # fmt: skip
    sid = format_sid(conn.response[0]["raw_attributes"]["objectSid"][0])
    dsacl(samba_dc, hidden, f"(D;CI;RPLCLORC;;;{sid})")
    tree.delete("a3")
    tree.delete("gone")
    tree.move("b1", "CN=b1", hidden)

    # Why the read does not look for them among the deleted objects or in the whole domain:
    # this account sees neither the tombstones nor the hidden account, and DirSync is refused.
    svc_conn = bare(samba_dc, svc, SVC_PASSWORD)
    svc_conn.search(
        tree.base_dn, "(isDeleted=TRUE)", SUBTREE, attributes=["objectGUID"],
        controls=[SHOW_DELETED],
    )  # fmt: skip
    assert [e["dn"] for e in svc_conn.response if e["type"] == "searchResEntry"] == [
        f"CN=Deleted Objects,{tree.base_dn}"
    ]
    svc_conn.search(tree.base_dn, "(sAMAccountName=b1)", SUBTREE, attributes=["objectGUID"])
    assert [e for e in svc_conn.response if e["type"] == "searchResEntry"] == []
    with pytest.raises(Exception, match="insufficientAccessRights"):
        svc_conn.extend.microsoft.dir_sync(tree.base_dn, attributes=["objectGUID"]).loop()
    admin = bare(samba_dc)
    admin.search(
        tree.base_dn, "(isDeleted=TRUE)", SUBTREE, attributes=["objectGUID"],
        controls=[SHOW_DELETED],
    )  # fmt: skip
    assert any("a3\\0ADEL:" in e["dn"] for e in admin.response if e["type"] == "searchResEntry")

    state, line = night.read()
    assert line.startswith("read the managed OU incrementally: 0 changed, 3 gone"), line
    assert_same(night, state)
    assert {"103", "201"}.isdisjoint(a.anchor for a in state.accounts)
    assert "key-gone" not in {g.key for g in state.groups}
    assert {g.key: g.members for g in state.groups}["key-g1b"] == {"202", "203"}


def test_members_kept_by_dn_are_read_again_every_night() -> None:
    """A member value without an objectGUID (ldap3 reads a very large group's rest in range
    steps, without the extended-DN control) is kept as its DN, and the group is read again."""
    guid = "2f3e1d0c-0b0a-0908-0706-050403020100"
    extended = "<GUID=0c1d3e2f0a0b0809" + "0706050403020100>;<SID=0105>;CN=A\\, B,OU=X,DC=s"
    found, dn = ad_read.split_extended(extended)
    assert (found, dn) == (guid, "CN=A\\, B,OU=X,DC=s")
    assert ad_read.split_extended("CN=plain,DC=s") == (None, "CN=plain,DC=s")
    values = {
        "objectClass": ["top", "group"],
        "member": [extended, "CN=ranged,OU=X,DC=s"],
        "sAMAccountName": ["g"],
        "description": [b"bytes \xc3\xa9"],
    }
    key, kept = ad_read.kept_object(
        f"<GUID={'11' * 16}>;CN=g,OU=X,DC=s",
        values,
        ad_read.kept_attributes(["description", "member", "sAMAccountName", "objectGUID"]),
    )
    assert key == "11111111-1111-1111-1111-111111111111"
    assert kept == ["CN=g,OU=X,DC=s", "g", {"description": "bytes é", "samaccountname": "g"},
                    [guid, "CN=ranged,OU=X,DC=s"]]  # fmt: skip
    assert ad_read.ranged(kept) and not ad_read.ranged([*kept[:3], [guid]])
    assert json.loads(json.dumps(kept)) == kept


def test_the_parent_of_a_dn_with_escaped_commas() -> None:
    assert ad_read.parent_dn("CN=a,OU=b,DC=s") == "OU=b,DC=s"
    assert ad_read.parent_dn("CN=Peeters\\, An,OU=1A\\,B,DC=s") == "OU=1A\\,B,DC=s"
    assert ad_read.parent_dn("CN=ends in \\\\,OU=b") == "OU=b"  # an escaped backslash
    assert ad_read.parent_dn("CN=a\\2Cb,OU=b") == "OU=b"
    assert ad_read.parent_dn("DC=s") == ""


def kept_reads(path: Path) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute("SELECT * FROM last_read").fetchall()


def kept_objects(path: Path) -> list[bytes]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return [row[0] for row in db.execute("SELECT objects FROM last_read_objects")]


def test_a_plan_from_an_incremental_read_equals_the_full_one(
    samba_dc: Any, informat_server: InformatServer, synthetic: Any, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], events: list[str],
) -> None:  # fmt: skip
    """Through the CLI: night 1 applied, the run's own writes and changes by hand between the
    nights; `plan` (incremental) and `plan --full-read` give the same plan."""
    monkeypatch.setenv("TEST_INFORMAT_PASSWORD", "geheim")
    monkeypatch.setenv("TEST_AD_PASSWORD", samba_dc.admin_password)
    root = f"OU=tp{secrets.token_hex(4)}"
    path = tmp_path / "provisioner.yaml"

    def write_config(url: str) -> Path:
        path.write_text(config_head(url, ROOT / "mappings") + ad_target(samba_dc, root))
        return path

    def plan(*extra: str) -> dict[str, Any]:
        before = len(events)
        main(["plan", "--config", str(path), "--json", *extra])
        data = json.loads(capsys.readouterr().out)
        (line,) = [e for e in events[before:] if e.startswith("read the managed OU")]
        data["read"] = line
        data["foresight"] = [e for e in events[before:] if e in (FORESEEN, NOT_FORESEEN)]
        return data

    def same_plan() -> dict[str, Any]:
        incremental, full = plan(), plan("--full-read")
        assert incremental["read"].startswith("read the managed OU incrementally")
        assert full["read"].startswith("read the managed OU in full")
        assert incremental["changes"] == full["changes"]
        assert incremental["counts"] == full["counts"]
        assert full["foresight"] == []  # a full read foretells nothing
        return incremental

    conn = bare(samba_dc)
    try:
        write_config(informat_server.url)
        assert main(["apply", "--config", str(path)]) == 0
        capsys.readouterr()
        assert plan()["read"].startswith("read the managed OU in full")  # nothing kept yet
        # a no-op apply keeps its read (a plan keeps none: it leaves the state store alone)
        assert main(["apply", "--config", str(path)]) == 0
        capsys.readouterr()
        kept = kept_reads(tmp_path / "state.db")
        assert len(kept) == 1
        unchanged = same_plan()
        assert unchanged["changes"] == [] and unchanged["foresight"] == [FORESEEN]
        assert kept_reads(tmp_path / "state.db") == kept
        # the weekly full read of a night: foreseen from the kept read, and found as foreseen
        before = len(events)
        assert main(["apply", "--config", str(path), "--full-read"]) == 0
        capsys.readouterr()
        assert [e for e in events[before:] if e in (FORESEEN, NOT_FORESEEN)] == [FORESEEN]

        # the run's own writes between two nights: day two's apply
        with InformatServer(day_two(synthetic).data, today=REFERENCE_DAY) as server:
            write_config(server.url)
            day_two_plan = plan()
            changes = day_two_plan["changes"]
            creates = [c for c in changes if c["action"] == "create"]
            assert creates and day_two_plan["foresight"] == [FORESEEN]  # new names, free
            # a new name taken outside the managed OU since: the foreseen plan does not stand
            squatter = f"CN=squatter{secrets.token_hex(4)},CN=Users,{samba_dc.base_dn}"
            taken = creates[0]["after"]["username"]
            assert conn.add(squatter, ["top", "person", "organizationalPerson", "user"],
                            {"sAMAccountName": taken})  # fmt: skip
            again = plan()
            assert again["foresight"] == [NOT_FORESEEN]
            (create,) = [c for c in again["changes"] if c["key"] == creates[0]["key"]]
            assert create["after"]["username"] not in (taken, "")
            assert again["changes"] == plan("--full-read")["changes"]
            assert conn.delete(squatter)
            assert main(["apply", "--config", str(path)]) == 0
            capsys.readouterr()
            assert same_plan()["changes"] == []

            # by hand: an attribute, a rename, an account moved out, a group's member removed
            root_dn = f"{root},{samba_dc.base_dn}"
            conn.search(root_dn, "(&(objectClass=user)(employeeID=*))", SUBTREE,
                        attributes=["employeeID", "memberOf"])  # fmt: skip
            users = [e for e in conn.response if e["type"] == "searchResEntry"]
            members = [u for u in users if u["attributes"]["memberOf"]]
            first, second, third = members[0], members[1], members[2]
            assert conn.modify(first["dn"], {"sn": [(MODIFY_REPLACE, ["Handmatig"])]})
            assert conn.modify_dn(second["dn"], "CN=hand renamed")
            outside = f"OU=tq{secrets.token_hex(4)},{samba_dc.base_dn}"
            assert conn.add(outside, ["top", "organizationalUnit"])
            assert conn.modify_dn(third["dn"], third["dn"].split(",")[0], new_superior=outside)
            group = members[3]["attributes"]["memberOf"][0]
            assert conn.modify(group, {"member": [(MODIFY_DELETE, [members[3]["dn"]])]})
            changed = same_plan()
            assert {c["action"] for c in changed["changes"]} >= {"update", "add_member", "create"}
            assert changed["foresight"] == [NOT_FORESEEN]  # the account moved out: made again
            conn.delete(outside, controls=[TREE_DELETE])
    finally:
        conn.delete(f"{root},{samba_dc.base_dn}", controls=[TREE_DELETE])
        conn.unbind()
