"""On a real Samba AD DC, through the command line, night after night: a naming change with
``rename: keep`` (a notice, nothing renamed) and with ``follow`` (renamed with --approve: login,
UPN, mail and the object's name; the old address kept in proxyAddresses, the old names recorded
and never given again; the plan after it empty), a long staff name with its whole mail, a legacy
account in CN=Users holding a wanted name (skipped for the next free one: no night fails), and
adoption from an allowed OU by anchor (never by name alone, never an adminCount=1 account)."""

from __future__ import annotations

import json
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.cli import main
from provisioner.state import StateStore
from tests.conftest import REFERENCE_DAY
from tests.fakes.informat_server import InformatServer
from tests.scenarios import config_head
from tests.test_anchors import pupil as pupil_row
from tests.test_anchors import teacher as teacher_row

ROOT = Path(__file__).resolve().parent.parent
SCHOOL = "030569"
DEFAULT_TEMPLATE = "{{ (Lln.Voornaam ~ '.' ~ Lln.Naam) | username(fallback='lln' ~ key) }}"
INITIAL_TEMPLATE = "{{ (Lln.Voornaam | left(1) ~ Lln.Naam) | username(fallback='lln' ~ key) }}"


def pupil(key: str, voornaam: str, naam: str) -> dict:
    return {**pupil_row(key, voornaam, naam), "_instelnr": SCHOOL}


def teacher(key: str, voornaam: str, naam: str) -> dict:
    return {**teacher_row(key, voornaam, naam), "_instelnr": SCHOOL}


def data(pupils: list[dict], staff: list[dict] | None = None) -> dict:
    return {
        "rows": {
            "Lln": pupils,
            "Subgroepen": [],
            "Leerkrachten": staff or [teacher("99", "Een", "Leraar")],
            "LeerkrachtenVrijevelden": [],
        },
        "schooljaar": "2025-26",
    }


class Site:
    """A managed root of its own, a place outside it, and provisioner.yaml for both."""

    def __init__(self, samba_dc, tmp_path: Path) -> None:
        self.dc = samba_dc
        self.tmp = tmp_path
        self.token = token = secrets.token_hex(4)
        self.root = f"OU=t{token},{samba_dc.base_dn}"
        self.old = f"OU=oud{token},{samba_dc.base_dn}"
        self.legacy: list[str] = []
        self.mappings = tmp_path / "mappings"
        shutil.copytree(ROOT / "mappings", self.mappings)
        assert self.dc.connect().add(self.old, ["top", "organizationalUnit"])

    def config(self, url: str, *, adopt_from: bool = False) -> Path:
        path = self.tmp / "provisioner.yaml"
        text = config_head(url, self.mappings) + (
            "target:\n  ad:\n"
            f"    url: {self.dc.ldaps_url}\n"
            f"    bind_user: {self.dc.admin_user}\n"
            "    password: ${TEST_AD_PASSWORD}\n"
            f"    base_dn: {self.dc.base_dn}\n"
            f"    managed_root: {self.root.removesuffix(',' + self.dc.base_dn)}\n"
            f"    ca_file: {self.dc.ca_file}\n"
            + (f"    adopt_from: ['{self.old}']\n" if adopt_from else "")
        )
        path.write_text(text.replace("instelnrs: ['030569', '030577']", f"instelnrs: ['{SCHOOL}']"))
        return path

    def pupils_mapping(self, template: str, rename: str = "keep") -> None:
        path = self.mappings / "pupils.yaml"
        text = (ROOT / "mappings" / "pupils.yaml").read_text()
        assert DEFAULT_TEMPLATE in text
        text = text.replace(DEFAULT_TEMPLATE, template).replace(
            "      max_length: 20 ", f"      rename: {rename}\n      max_length: 20 "
        )
        path.write_text(text)

    def add_user(self, dn: str, name: str, **attributes: object) -> None:
        conn = self.dc.connect()
        values = {"sAMAccountName": name, "userAccountControl": 514, **attributes}
        assert conn.add(dn, ["top", "person", "organizationalPerson", "user"], values), conn.result
        self.legacy.append(dn)

    def users(self, base: str | None = None) -> dict[str, dict]:
        """Users below *base* (default: the managed root) by sAMAccountName."""
        from ldap3 import SUBTREE

        conn = self.dc.connect()
        conn.search(
            base or self.root,
            "(objectClass=user)",
            search_scope=SUBTREE,
            attributes=[
                "sAMAccountName",
                "userPrincipalName",
                "mail",
                "proxyAddresses",
                "employeeID",
                "objectGUID",
                "cn",
            ],
        )
        return {
            e["attributes"]["sAMAccountName"]: {**e["attributes"], "dn": e["dn"]}
            for e in conn.response
            if e.get("type") == "searchResEntry"
        }

    def clean(self) -> None:
        conn = self.dc.connect()
        for dn in self.legacy:
            conn.delete(dn)
        tree = [("1.2.840.113556.1.4.805", True, None)]
        for base in (self.root, self.old):
            conn.delete(base, controls=tree)


@pytest.fixture
def site(samba_dc, tmp_path, monkeypatch) -> Iterator[Site]:
    monkeypatch.setenv("TEST_INFORMAT_PASSWORD", "geheim")
    monkeypatch.setenv("TEST_AD_PASSWORD", samba_dc.admin_password)
    made = Site(samba_dc, tmp_path)
    try:
        yield made
    finally:
        made.clean()


def plan_json(config: Path, capsys, *extra: str) -> dict:
    code = main(["plan", "--config", str(config), "--json", *extra])
    out = capsys.readouterr().out
    data = json.loads(out)
    blocked = data["header"]["blocked"] or data["header"].get("policy_blocked")
    assert code == (2 if data["changes"] or blocked else 0), data["header"]
    return data


def adoption_report(config: Path, capsys, *, exit_code: int) -> str:
    """The text of ``plan --adoption-report`` (after the plan)."""
    code = main(["plan", "--config", str(config), "--adoption-report"])
    out = capsys.readouterr().out
    assert code == exit_code, out
    return out


def apply(config: Path, capsys, *extra: str) -> int:
    code = main(["apply", "--config", str(config), *extra])
    capsys.readouterr()
    return code


def test_a_naming_change_is_kept_or_followed_and_old_names_are_never_given_again(site, capsys):
    people = [pupil("1", "Wannes", "Vervaeke"), pupil("2", "Ilse", "Verhaegen")]
    staff = [teacher("3", "Marie-Louise", "Vandenbroucke-Oosterlinck")]
    with InformatServer(data(people, staff), today=REFERENCE_DAY) as server:
        config = site.config(server.url)
        assert apply(config, capsys) == 0
        users = site.users()
        assert set(users) == {"wannes.vervaeke", "ilse.verhaegen", "marie-louise.vandenb"}
        # the whole name in mail and UPN, the login cut to 20
        long = users["marie-louise.vandenb"]
        assert long["mail"] == "marie-louise.vandenbroucke-oosterlinck@school.be"
        assert long["userPrincipalName"] == long["mail"]

        # rename: keep (the default): nothing renamed, and the plan says how many keep a name
        site.pupils_mapping(INITIAL_TEMPLATE, "keep")
        code = main(["plan", "--config", str(config)])
        out = capsys.readouterr().out
        assert code == 0, out
        assert "2 existing account(s) keep a name the mappings would now make otherwise" in out
        assert "'wannes.vervaeke', now 'wvervaeke'" in out or "now 'iverhaegen'" in out
        # explain: what the directory holds beside what the mappings make, and why
        assert main(["explain", "--config", str(config), "Wannes"]) == 0
        out = capsys.readouterr().out
        assert "In the directory (Active Directory " in out
        assert f"  wannes.vervaeke  CN=wannes.vervaeke,OU=1A,OU={SCHOOL}" in out
        assert (
            "username: keeps 'wannes.vervaeke'; the mappings would now make 'wvervaeke' "
            "(username.rename: keep; set follow to rename)" in out
        )

        # rename: follow: renamed, within max_rename (blocked without --approve)
        site.pupils_mapping(INITIAL_TEMPLATE, "follow")
        planned = plan_json(config, capsys)
        renames = {c["key"]: c for c in planned["changes"] if c["action"] == "rename"}
        assert set(renames) == {"lln-1", "lln-2"}
        assert renames["lln-1"]["after"] == {
            "username": "wvervaeke",
            "sAMAccountName": "wvervaeke",
            "userPrincipalName": "wvervaeke@leerling.school.be",
            "mail": "wvervaeke@leerling.school.be",
        }
        assert planned["header"]["policy_blocked"]
        assert apply(config, capsys) == 2  # blocked: nothing renamed yet
        assert "wannes.vervaeke" in site.users()
        assert apply(config, capsys, "--approve", "first letter and surname from now on") == 0

        users = site.users()
        assert set(users) == {"wvervaeke", "iverhaegen", "marie-louise.vandenb"}
        renamed = users["wvervaeke"]
        assert renamed["userPrincipalName"] == "wvervaeke@leerling.school.be"
        assert renamed["mail"] == "wvervaeke@leerling.school.be"
        assert renamed["dn"].startswith("CN=wvervaeke,")
        assert "smtp:wannes.vervaeke@leerling.school.be" in renamed["proxyAddresses"]
        assert plan_json(config, capsys)["changes"] == []  # every pupil carries the new name

        with StateStore(config.parent / "state.db") as store:
            issued = store.issued_names()
            assert {"wannes.vervaeke", "wannes.vervaeke@leerling.school.be", "wvervaeke"} <= issued
            assert store.issued_to()["lln-1"] == "wvervaeke"

    # A newcomer Wannes Vervaeke under the old rule never gets the old name or address.
    site.pupils_mapping(DEFAULT_TEMPLATE, "keep")
    newcomer = [*people, pupil("4", "Wannes", "Vervaeke")]
    with InformatServer(data(newcomer, staff), today=REFERENCE_DAY) as server:
        config = site.config(server.url)
        created = [c for c in plan_json(config, capsys)["changes"] if c["action"] == "create"]
        assert [(c["key"], c["after"]["username"], c["after"]["mail"]) for c in created] == [
            ("lln-4", "wannes.vervaeke2", "wannes.vervaeke2@leerling.school.be")
        ]


def test_a_legacy_account_outside_with_a_wanted_name_never_fails_a_night(site, capsys):
    users_dn = f"CN=Users,{site.dc.base_dn}"
    site.add_user(
        f"CN=lore.dhondt-{site.token},{users_dn}",
        "lore.dhondt",
        mail="lore.dhondt@leerling.school.be",
    )
    with InformatServer(data([pupil("8", "Lore", "Dhondt")]), today=REFERENCE_DAY) as server:
        config = site.config(server.url)
        out = adoption_report(config, capsys, exit_code=2)
        assert "2 name(s) the mappings would give are taken outside the managed scope" in out
        assert "Names taken outside the managed scope (" in out
        assert f"lore.dhondt (lln-8): held by CN=lore.dhondt-{site.token}," in out
        assert "→ given lore.dhondt2" in out
        assert apply(config, capsys) == 0
        assert site.users()["lore.dhondt2"]["mail"] == "lore.dhondt2@leerling.school.be"
        for _night in range(2):  # every night after stays clean
            assert plan_json(config, capsys)["changes"] == []
        # A legacy account inside the managed OU that matches nobody: listed, left alone.
        site.add_user(f"CN=oud.account,{site.root}", f"oud.{site.token}")
        out = adoption_report(config, capsys, exit_code=0)
        assert "Accounts in the managed scope that match nobody in the source (1):" in out
        assert f"oud.{site.token}  CN=oud.account,{site.root}" in out


def test_adoption_from_an_allowed_ou_by_anchor_only(site, capsys):
    site.add_user(f"CN=Bram Maes,{site.old}", "bram.maes", employeeID="lln-5")
    site.add_user(f"CN=Bo Goossens,{site.old}", "bo.goossens")  # the right name, no anchor
    site.add_user(f"CN=Admin Wouters,{site.old}", "els.wouters", employeeID="lln-7", adminCount=1)
    people = [
        pupil("5", "Bram", "Maes"),
        pupil("6", "Bo", "Goossens"),
        pupil("7", "Els", "Wouters"),
    ]
    with InformatServer(data(people), today=REFERENCE_DAY) as server:
        # Without adopt_from: nothing outside is touched; the report says what it found.
        config = site.config(server.url)
        out = adoption_report(config, capsys, exit_code=2)
        assert "add its OU to adopt_from to adopt it" in out
        assert "never adopted (adminCount=1" in out

        config = site.config(server.url, adopt_from=True)
        planned = plan_json(config, capsys)
        by_key = {}
        for change in planned["changes"]:
            if change["kind"] == "account":
                by_key.setdefault(change["key"], []).append(change["action"])
        assert "adopt" in by_key["lln-5"] and "create" not in by_key["lln-5"]
        assert by_key["lln-6"] == ["create"]  # never adopted by name alone
        assert by_key["lln-7"] == ["conflict"]  # adminCount=1: never adopted
        assert apply(config, capsys) == 0  # the conflict is reported, not applied
        inside = site.users()
        assert inside["bram.maes"]["employeeID"] == "lln-5"
        assert inside["bram.maes"]["dn"].endswith(f"OU=1A,OU={SCHOOL},OU=Leerlingen,{site.root}")
        assert "bo.goossens2" in inside  # the name outside was skipped
        assert "els.wouters" not in inside
        outside = site.users(site.old)
        assert set(outside) == {"bo.goossens", "els.wouters"}  # left where they were
        changes = plan_json(config, capsys)["changes"]
        assert [(c["action"], c["key"]) for c in changes] == [("conflict", "lln-7")]
