"""Plan and apply against a real Samba AD DC: day 1, day 2, drift, resuming, hostile names."""

from __future__ import annotations

import copy
import datetime as dt
import json
import secrets
from pathlib import Path

import pytest

from provisioner.apply import apply_changes
from provisioner.cli import main
from provisioner.pipeline import prepare
from provisioner.plan.planfile import load_plan
from provisioner.state import StateStore
from tests.conftest import REFERENCE_DAY
from tests.fakes.informat_server import InformatServer
from tests.scenarios import NEWCOMER, ad_target, config_head, day_two, pupil, staff

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def ad_env(samba_dc, tmp_path, monkeypatch):
    """A configuration for one test: its own managed root OU, state store and mappings."""
    monkeypatch.setenv("TEST_INFORMAT_PASSWORD", "geheim")
    monkeypatch.setenv("TEST_AD_PASSWORD", samba_dc.admin_password)
    root = f"OU=t{secrets.token_hex(4)}"

    def config_for(informat_url: str, extra_ad: str = "") -> Path:
        path = tmp_path / "provisioner.yaml"
        path.write_text(
            config_head(informat_url, ROOT / "mappings") + ad_target(samba_dc, root) + extra_ad
        )
        return path

    yield config_for, root
    # Tree delete (control 1.2.840.113556.1.4.805): the OU and everything below it in one go.
    samba_dc.connect().delete(
        f"{root},{samba_dc.base_dn}", controls=[("1.2.840.113556.1.4.805", True, None)]
    )


def plan_json(config: Path, capsys) -> dict:
    code = main(["plan", "--config", str(config), "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == (2 if data["changes"] else 0)
    return data


def users_below(samba_dc, root: str) -> dict[str, dict]:
    from ldap3 import SUBTREE

    conn = samba_dc.connect()
    conn.search(
        f"{root},{samba_dc.base_dn}",
        "(&(objectClass=user)(employeeID=*))",
        search_scope=SUBTREE,
        attributes=[
            "employeeID",
            "sAMAccountName",
            "department",
            "sn",
            "userAccountControl",
            "mail",
        ],
    )
    return {
        e["attributes"]["employeeID"]: {"dn": e["dn"], **e["attributes"]} for e in conn.response
    }


def test_day_one_creates_everything_and_then_the_plan_is_empty(
    samba_dc, informat_server, ad_env, capsys
):
    config_for, root = ad_env
    config = config_for(informat_server.url)
    first = plan_json(config, capsys)
    assert first["header"]["target"].startswith("Active Directory ldaps://127.0.0.1")
    counts = first["counts"]
    assert counts["create"] == len([c for c in first["changes"] if c["action"] == "create"]) > 100

    assert main(["apply", "--config", str(config), "--json"]) == 0
    applied = json.loads(capsys.readouterr().out)
    import jsonschema

    jsonschema.validate(
        applied, json.loads((ROOT / "provisioner/schemas/plan.schema.json").read_text())
    )
    assert [r["status"] for r in applied["results"]] == ["applied"] * len(first["changes"])

    users = users_below(samba_dc, root)
    assert len(users) == counts["create"]
    assert all(int(u["userAccountControl"]) & 2 == 0 for u in users.values())  # enabled
    assert plan_json(config, capsys)["changes"] == []  # re-plan after apply is empty

    with StateStore(config.parent / "state.db") as store:
        assert len(store.issued_to()) == counts["create"]  # a username per account
        issued = store.issued_names()  # and every other name given: mail, UPN
        assert {u[a] for u in users.values() for a in ("sAMAccountName", "mail")} <= issued
        (run,) = store.runs()
        assert run["outcome"] == "applied" and run["summary"]["applied"] == len(first["changes"])


def test_day_two_gives_exactly_the_expected_changes(
    samba_dc, informat_server, synthetic, ad_env, capsys
):
    config_for, root = ad_env
    assert main(["apply", "--config", str(config_for(informat_server.url))]) == 0
    capsys.readouterr()
    before = users_below(samba_dc, root)

    scenario = day_two(synthetic)
    leaver, mover, renamed = (pupil(k) for k in (scenario.leaver, scenario.mover, scenario.renamed))
    new_class = scenario.new_class

    with InformatServer(scenario.data, today=REFERENCE_DAY) as server:
        config = config_for(server.url)
        plan = plan_json(config, capsys)
        by_key: dict[tuple[str, str], dict] = {(c["action"], c["key"]): c for c in plan["changes"]}
        accounts = {k: c for k, c in by_key.items() if c["kind"] == "account"}
        assert set(accounts) == {
            ("create", pupil(NEWCOMER)),
            ("disable", leaver),
            ("move", mover),
            ("update", mover),
            ("update", renamed),
        }
        assert accounts[("update", renamed)]["after"] == {
            "sn": "Nieuwenaam",
            "displayName": accounts[("update", renamed)]["after"]["displayName"],
        }
        assert accounts[("update", mover)]["after"]["department"] == new_class
        assert accounts[("move", mover)]["after"]["ou"][-1] == new_class
        members = [c for c in plan["changes"] if c["action"] in ("add_member", "remove_member")]
        assert any(mover in c["after"].get("members", []) for c in members)
        assert any(leaver in c["before"].get("members", []) for c in members)

        assert main(["apply", "--config", str(config)]) == 0
        capsys.readouterr()
        after = users_below(samba_dc, root)
        assert int(after[leaver]["userAccountControl"]) & 2  # disabled, not deleted
        assert after[renamed]["sAMAccountName"] == before[renamed]["sAMAccountName"]  # name kept
        assert after[renamed]["sn"] == "Nieuwenaam"
        assert f"OU={new_class}," in after[mover]["dn"]
        assert plan_json(config, capsys)["changes"] == []


def test_drift_is_skipped_or_refuses_the_plan_with_strict(
    samba_dc, informat_server, synthetic, ad_env, capsys, tmp_path
):
    config_for, root = ad_env
    config = config_for(informat_server.url)
    assert main(["apply", "--config", str(config)]) == 0
    capsys.readouterr()
    # Two accounts get a wrong department by hand; the plan will set them back.
    users = users_below(samba_dc, root)
    first, second = sorted(k for k, u in users.items() if u.get("department"))[:2]  # pupils
    conn = samba_dc.connect()
    from ldap3 import MODIFY_REPLACE

    for key in (first, second):
        conn.modify(users[key]["dn"], {"department": [(MODIFY_REPLACE, ["X"])]})
    plan_file = tmp_path / "plan.json"
    assert main(["plan", "--config", str(config), "--out", str(plan_file)]) == 2
    capsys.readouterr()
    assert {(c.action, c.key) for c in load_plan(plan_file).changes} == {
        ("update", first),
        ("update", second),
    }
    # Then someone changes one of them again, after the plan was made.
    conn.modify(users[first]["dn"], {"department": [(MODIFY_REPLACE, ["Y"])]})

    assert main(["apply", "--config", str(config), str(plan_file), "--strict"]) == 1
    assert "--strict: 1 change(s) no longer fit: update" in capsys.readouterr().err
    assert users_below(samba_dc, root)[second]["department"] == "X"  # nothing applied

    report = tmp_path / "apply.html"
    assert main(["apply", "--config", str(config), str(plan_file), "--report", str(report)]) == 0
    out = capsys.readouterr().out
    assert "Applied 1, skipped 1, failed 0." in out
    html = report.read_text()
    assert "<h2 id='results'>Results</h2>" in html and "<strong>skipped</strong>: update" in html
    assert f"skipped: update account {first}" in out and "changed in the directory" in out
    assert users_below(samba_dc, root)[first]["department"] == "Y"  # left as found


def test_a_saved_plan_is_refused_when_the_mappings_changed(
    samba_dc, informat_server, ad_env, tmp_path, capsys
):
    config_for, _root = ad_env
    mappings = tmp_path / "mappings"
    import shutil

    shutil.copytree(ROOT / "mappings", mappings)
    config = config_for(informat_server.url)
    config.write_text(
        config.read_text().replace(f"mappings: {ROOT / 'mappings'}", "mappings: mappings")
    )
    plan_file = tmp_path / "plan.json"
    assert main(["plan", "--config", str(config), "--out", str(plan_file)]) == 2
    (mappings / "vars.yaml").write_text(
        (mappings / "vars.yaml").read_text().replace("school.be", "andere.be")
    )
    assert main(["apply", "--config", str(config), str(plan_file)]) == 1
    assert (
        "refusing the plan: the mappings changed since the plan was made" in capsys.readouterr().err
    )


def test_an_interrupted_apply_converges_without_duplicates(
    samba_dc, informat_server, ad_env, capsys
):
    config_for, root = ad_env
    config = config_for(informat_server.url)
    prepared = prepare(config)
    from provisioner.pipeline import open_target, plan_for, read_for_mappings

    plan = plan_for(prepared, read_for_mappings(prepared), open_target(prepared))
    half = copy.copy(plan)
    half.changes = plan.changes[: len(plan.changes) // 2]  # a run that died half-way
    target = open_target(prepared)
    with StateStore(config.parent / "state.db") as store:
        results = apply_changes(half, target, store).results
    target.close()
    assert all(r.status == "applied" for r in results)
    # The full, old plan again (as after a crash): what was done is skipped, the rest applied.
    target = open_target(prepared)
    with StateStore(config.parent / "state.db") as store:
        again = apply_changes(plan, target, store).results
    target.close()
    done = [r for r in again if r.status == "skipped"]
    assert len(done) == len(half.changes) - sum(1 for c in half.changes if c.action == "add_member")
    assert all(r.status in ("applied", "skipped") for r in again)
    users = users_below(samba_dc, root)
    assert len(users) == plan.counts()["create"]  # no duplicate accounts
    assert plan_json(config, capsys)["changes"] == []  # converged, memberships included


def test_hostile_names_are_escaped_and_kept_within_ad_limits(samba_dc, ad_env, capsys):
    config_for, root = ad_env
    hostile_class = 'Klas+1,OU=evil;"x"\\#<y>'
    rows = {
        "Lln": [
            {
                "p_persoon": "1",
                "Naam": 'Pee+ters, "Jr" <x>; \\#',
                "Voornaam": "Zoë-Ølaf",
                "voorlopig": "0",
                "Klascode": hostile_class,
                "school": "S",
                "instelnr": "030569",
                "_instelnr": "030569",
            },
            {
                "p_persoon": "2",
                "Naam": "Vanden Eynde-Van Acker de Ghellinck d'Elseghem" * 2,
                "Voornaam": "Marie-Louise Anaïs",
                "voorlopig": "0",
                "Klascode": "1A",
                "school": "S",
                "instelnr": "030569",
                "_instelnr": "030569",
            },
        ],
        "Subgroepen": [
            {
                "p_persoon": "1",
                "Klascode": hostile_class,
                "Groeptype": "0",
                "Instelnr": "030569",
                "School": "S",
                "_instelnr": "030569",
            },
        ],
        "Leerkrachten": [
            {
                "p_persoon": "9",
                "Naam": "Leraar",
                "Voornaam": "Een",
                "Actief": "J",
                "_instelnr": "030569",
            }
        ],
        "LeerkrachtenVrijevelden": [],
    }
    with InformatServer({"rows": rows, "schooljaar": "2025-26"}, today=REFERENCE_DAY) as server:
        config_path = config_for(server.url)
        config_path.write_text(
            config_path.read_text().replace(
                "instelnrs: ['030569', '030577']", "instelnrs: ['030569']"
            )
        )
        assert main(["apply", "--config", str(config_path)]) == 0, capsys.readouterr()
        capsys.readouterr()
        users = users_below(samba_dc, root)
        assert set(users) == {pupil("1"), pupil("2"), staff("9")}
        # The hostile class name became one OU, exactly, below the school's OU.
        parent = users[pupil("1")]["dn"].split(",", 1)[1]
        conn = samba_dc.connect()
        from ldap3 import BASE

        conn.search(
            parent, "(objectClass=organizationalUnit)", search_scope=BASE, attributes=["ou"]
        )
        assert conn.response[0]["attributes"]["ou"] in (hostile_class, [hostile_class])
        assert parent.endswith(f",OU=030569,OU=Leerlingen,{root},{samba_dc.base_dn}")
        assert users[pupil("1")]["sn"] == 'Pee+ters, "Jr" <x>; \\#'
        assert len(users[pupil("2")]["sAMAccountName"]) <= 20
        assert len(users[pupil("2")]["sn"]) == 64  # cut to AD's limit, with a warning in the plan
        assert plan_json(config_path, capsys)["changes"] == []


def test_a_dc_that_dies_mid_apply_converges_on_the_next_run(
    samba_dc, informat_server, ad_env, capsys
):
    config_for, root = ad_env
    config = config_for(informat_server.url)
    prepared = prepare(config)
    from provisioner.pipeline import open_target, plan_for, read_for_mappings

    plan = plan_for(prepared, read_for_mappings(prepared), open_target(prepared))
    target = open_target(prepared)

    class DyingDC:
        """The real target; the DC is killed (SIGKILL) just before the 40th change."""

        name_attributes = target.name_attributes

        def check(self, change):
            return target.check(change)

        def apply_all(self, changes, passwords):
            for index, change in enumerate(changes):
                if index == 39:
                    samba_dc.crash()
                yield target.apply(change, password=passwords.get(index))

    try:
        with StateStore(config.parent / "state.db") as store:
            results = apply_changes(plan, DyingDC(), store).results
    finally:
        samba_dc.restart()
    assert [r.status for r in results[:39]] == ["applied"] * 39
    after = results[39:]
    assert all(r.status == "failed" or r.change.action == "add_member" for r in after)
    assert sum(r.status == "failed" for r in after) > 10  # the DC was gone
    capsys.readouterr()
    # The nightly run after the crash: plans anew, applies what is missing, creates nothing twice.
    assert main(["apply", "--config", str(config)]) == 0
    capsys.readouterr()
    users = users_below(samba_dc, root)
    assert len(users) == plan.counts()["create"]
    assert len({u["sAMAccountName"] for u in users.values()}) == len(users)
    assert plan_json(config, capsys)["changes"] == []  # memberships complete too


def test_reads_are_paged_and_large_groups_read_in_ranges(samba_dc, ad_env, monkeypatch):
    """Samba does not stop at AD's 1,000 entries per page, so paging is checked by watching the
    client; member lists beyond Samba's range limit (1,500) must come back whole."""
    from ldap3 import Connection

    from provisioner.config import load_config
    from provisioner.targets.ad import ActiveDirectory

    config_for, root = ad_env
    conn = samba_dc.connect()
    root_dn = f"{root},{samba_dc.base_dn}"
    conn.add(root_dn, ["top", "organizationalUnit"])
    members = []
    for i in range(1600):  # without passwords: 3 ms each instead of 22
        dn = f"CN=u{i},{root_dn}"
        assert conn.add(
            dn,
            ["top", "person", "organizationalPerson", "user"],
            {"sAMAccountName": f"bulk{root[3:]}{i}"[:20], "employeeID": str(i)},
        )
        members.append(dn)
    group = f"CN=big,{root_dn}"
    conn.add(group, ["top", "group"], {"adminDescription": "big"})
    for start in range(0, len(members), 500):
        conn.modify(group, {"member": [("MODIFY_ADD", members[start : start + 500])]})

    pages = []
    original = Connection.search

    def spy(self, *args, **kwargs):
        # ldap3's paged search passes paged_size as the 11th positional argument
        pages.append(kwargs.get("paged_size", args[10] if len(args) > 10 else None))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Connection, "search", spy)
    ad = load_config(
        config_for("http://127.0.0.1:1/wsInformat.asmx", "    page_size: 400\n")
    ).target.ad
    target = ActiveDirectory(ad)
    target.read_apart = False  # the spy watches this process (a helper reads the same way)
    observed = target.read({"sAMAccountName"})
    target.close()
    assert len(observed.accounts) == 1600
    (big,) = observed.groups
    assert len(big.members) == 1600  # all of them, past the 1,500-value range
    assert pages.count(400) >= 5  # 1,600 users + OU + group in pages of 400


def test_connection_problems_are_one_clear_line(samba_dc, informat_server, ad_env, capsys):
    config_for, _root = ad_env
    good = config_for(informat_server.url).read_text()
    path = Path(config_for(informat_server.url))

    def plan_error(text: str) -> str:
        path.write_text(text)
        assert main(["plan", "--config", str(path)]) == 1
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        return err

    wrong_password = plan_error(good.replace("${TEST_AD_PASSWORD}", "${TEST_INFORMAT_PASSWORD}"))
    assert (
        "the DC refused the bind as SCHOOL\\Administrator: wrong user name or password"
        in wrong_password
    )
    untrusted = plan_error("\n".join(line for line in good.splitlines() if "ca_file" not in line))
    assert "certificate verify failed" in untrusted and "give that CA as ca_file" in untrusted
    unreachable = plan_error(good.replace(samba_dc.ldaps_url, "ldaps://127.0.0.1:1"))
    assert "cannot reach ldaps://127.0.0.1:1" in unreachable


def test_a_name_taken_outside_after_the_plan_fails_clearly_then_the_next_free_one_is_given(
    samba_dc, informat_server, synthetic, ad_env, capsys
):
    """A saved plan whose new name something outside the managed OU took since: that create
    fails, clearly, and the rest is applied (new accounts must change their password). The next
    night checks the name against the whole domain and gives the next free one: no night after
    fails on it."""
    config_for, root = ad_env
    config = config_for(informat_server.url, "    must_change_password: true\n")
    saved = config.parent / "plan.json"
    assert main(["plan", "--config", str(config), "--json", "--out", str(saved)]) == 2
    plan = json.loads(capsys.readouterr().out)
    taken = next(c for c in plan["changes"] if c["action"] == "create")
    outside = f"CN=squatter-{root[3:]},CN=Users,{samba_dc.base_dn}"
    conn = samba_dc.connect()
    assert conn.add(
        outside,
        ["top", "person", "organizationalPerson", "user"],
        {"sAMAccountName": taken["after"]["username"]},
    )
    try:
        assert main(["apply", "--config", str(config), str(saved)]) == 1
        out = capsys.readouterr().out
        assert f"failed: create account {taken['key']}" in out
        assert "the name is already used by another object in the domain" in out
        assert "Failed changes are tried again on the next run." in out
        users = users_below(samba_dc, root)
        assert taken["key"] not in users and len(users) == plan["counts"]["create"] - 1
        conn.search(
            next(iter(users.values()))["dn"],
            "(objectClass=user)",
            search_scope="BASE",
            attributes=["pwdLastSet"],
        )
        assert conn.response[0]["raw_attributes"]["pwdLastSet"] == [b"0"]  # change at next logon
        # The object outside the managed OU was neither adopted nor changed.
        conn.search(outside, "(objectClass=user)", search_scope="BASE", attributes=["employeeID"])
        assert conn.response[0]["attributes"]["employeeID"] in ([], None)

        # The next night: the name is taken outside, so the next free one is given.
        assert main(["apply", "--config", str(config)]) == 0
        capsys.readouterr()
        given = users_below(samba_dc, root)[taken["key"]]["sAMAccountName"]
        assert given != taken["after"]["username"]
        assert given.startswith(taken["after"]["username"].rstrip("0123456789")[:15])
        assert plan_json(config, capsys)["changes"] == []
    finally:
        conn.delete(outside)


def test_accounts_made_before_the_connector_are_adopted_not_duplicated(
    samba_dc, informat_server, ad_env, capsys
):
    config_for, root = ad_env
    config = config_for(informat_server.url)
    first = plan_json(config, capsys)
    wanted = next(
        c for c in first["changes"] if c["action"] == "create" and "Leerlingen" in c["target"]
    )
    # The school made this account by hand, years ago, in the managed OU, without an anchor.
    conn = samba_dc.connect()
    root_dn = f"{root},{samba_dc.base_dn}"
    conn.add(root_dn, ["top", "organizationalUnit"])
    handmade = f"CN=handmade,{root_dn}"
    assert conn.add(
        handmade,
        ["top", "person", "organizationalPerson", "user"],
        {"sAMAccountName": wanted["after"]["username"], "department": "oud"},
    )
    plan = plan_json(config, capsys)
    (adopt,) = [c for c in plan["changes"] if c["action"] == "adopt"]
    assert (adopt["key"], adopt["target"]) == (wanted["key"], handmade)
    assert adopt["after"]["anchor"] == wanted["key"]
    assert not [c for c in plan["changes"] if c["action"] == "create" and c["key"] == wanted["key"]]

    assert main(["apply", "--config", str(config)]) == 0
    capsys.readouterr()
    users = users_below(samba_dc, root)
    ou = ",".join(f"OU={part}" for part in reversed(wanted["after"]["ou"]))
    assert users[wanted["key"]]["dn"] == f"CN=handmade,{ou},{root},{samba_dc.base_dn}"  # moved
    assert users[wanted["key"]]["department"] == wanted["after"]["department"]
    assert (
        len([u for u in users.values() if u["sAMAccountName"] == wanted["after"]["username"]]) == 1
    )
    assert plan_json(config, capsys)["changes"] == []


def test_starttls_on_the_plain_port_works_and_plain_ldap_needs_consent(
    samba_dc, informat_server, ad_env, capsys
):
    config_for, _root = ad_env
    path = config_for(informat_server.url)
    text = path.read_text().replace(samba_dc.ldaps_url, samba_dc.ldap_url)
    path.write_text(text)
    assert main(["plan", "--config", str(path)]) == 1
    assert "ldap:// sends the password in clear" in capsys.readouterr().err
    path.write_text(text + "    start_tls: true\n")
    assert main(["plan", "--config", str(path)]) == 2
    assert capsys.readouterr().out.startswith(f"Plan against Active Directory {samba_dc.ldap_url}")


def test_groups_are_renamed_by_cn_and_archived_when_their_class_is_gone(
    samba_dc, informat_server, synthetic, ad_env, tmp_path, capsys
):
    import shutil

    config_for, root = ad_env
    mappings = tmp_path / "mappings"
    shutil.copytree(ROOT / "mappings", mappings)
    config = config_for(informat_server.url)
    config.write_text(
        config.read_text().replace(f"mappings: {ROOT / 'mappings'}", "mappings: mappings")
    )
    assert main(["apply", "--config", str(config)]) == 0
    capsys.readouterr()

    # Day 2: the class groups get readable names (cn), and one class is dissolved.
    groups = mappings / "groups.yaml"
    groups.write_text(
        groups.read_text().replace(
            'cn: "klas-{{ Subgroepen.Instelnr }}-{{ Subgroepen.Klascode }}"',
            'cn: "Klas {{ Subgroepen.Klascode }} ({{ Subgroepen.Instelnr }})"',
        )
    )
    dissolved = "OV3LOG"
    day2 = copy.deepcopy(synthetic)
    day2.rows["Subgroepen"] = [r for r in day2.rows["Subgroepen"] if r.get("Klascode") != dissolved]
    with InformatServer(day2, today=REFERENCE_DAY) as server:
        config.write_text(config.read_text().replace(informat_server.url, server.url))
        plan = plan_json(config, capsys)
        actions = {(c["action"], c["key"]) for c in plan["changes"]}
        assert ("archive_group", f"klas-030569-{dissolved}") in actions
        renamed = [
            c for c in plan["changes"] if c["action"] == "update_group" and "cn" in c["after"]
        ]
        assert renamed and renamed[0]["after"]["cn"].startswith("Klas ")
        assert main(["apply", "--config", str(config)]) == 0
        capsys.readouterr()
        conn = samba_dc.connect()
        from ldap3 import SUBTREE

        conn.search(
            f"{root},{samba_dc.base_dn}",
            "(objectClass=group)",
            search_scope=SUBTREE,
            attributes=["adminDescription", "member"],
        )
        by_key = {e["attributes"]["adminDescription"]: e for e in conn.response}
        archived = by_key[f"klas-030569-{dissolved}"]  # archived, not deleted: members kept
        assert archived["dn"].lower().endswith(f",ou=archief,{root},{samba_dc.base_dn}".lower())
        assert archived["attributes"]["member"]
        klas = by_key["klas-030569-1A"]
        assert klas["dn"].startswith("CN=Klas 1A (030569),")  # renamed in place (modify_dn)
        assert klas["attributes"]["member"]  # and its members came along
        assert plan_json(config, capsys)["changes"] == []


def test_mass_leavers_block_the_plan_until_a_person_approves(
    samba_dc, informat_server, synthetic, ad_env, capsys
):
    config_for, root = ad_env
    assert main(["apply", "--config", str(config_for(informat_server.url))]) == 0
    capsys.readouterr()
    day2 = copy.deepcopy(synthetic)
    gone = {r["p_persoon"] for r in day2.rows["Lln"][::4]}  # a quarter of the pupils "left"
    day2.rows["Lln"] = [r for r in day2.rows["Lln"] if r["p_persoon"] not in gone]
    with InformatServer(day2, today=REFERENCE_DAY) as server:
        config = config_for(server.url)
        assert main(["apply", "--config", str(config)]) == 2
        out = capsys.readouterr().out
        assert "BLOCKED by policy (leavers): approve with" in out
        assert "account disables exceed max_disable 5%" in out
        users = users_below(samba_dc, root)
        assert not any(int(u["userAccountControl"]) & 2 for u in users.values())  # nothing done

        assert main(["apply", "--config", str(config), "--approve", "end of the school year"]) == 0
        capsys.readouterr()
        users = users_below(samba_dc, root)
        disabled = {k for k, u in users.items() if int(u["userAccountControl"]) & 2}
        assert disabled and disabled <= {pupil(k) for k in gone}
    with StateStore(config.parent / "state.db") as store:
        latest = store.runs()[0]
        assert latest["summary"]["approved"]["reason"] == "end of the school year"
        assert any("max_disable" in o for o in latest["summary"]["approved"]["overrides"])


def test_new_accounts_get_passwords_on_private_sheets_and_nowhere_else(
    samba_dc, informat_server, ad_env, capsys, tmp_path
):
    import csv
    import stat

    config_for, _root = ad_env
    config = config_for(informat_server.url)
    plan_file = tmp_path / "plan.json"
    assert main(["plan", "--config", str(config), "--out", str(plan_file)]) == 2
    report = tmp_path / "apply.html"
    assert main(["apply", "--config", str(config), str(plan_file), "--report", str(report)]) == 0
    out = capsys.readouterr().out
    sheets = sorted((config.parent / "password-sheets").iterdir())
    assert [p.suffix for p in sheets] == [".csv", ".html"]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in sheets)
    rows = list(csv.DictReader(sheets[0].open(encoding="utf-8")))
    created = [c for c in load_plan(plan_file).changes if c.action == "create"]
    assert sorted(r["username"] for r in rows) == sorted(str(c.after["username"]) for c in created)
    html = sheets[1].read_text(encoding="utf-8")
    assert html.count('<section class="page">') == len({r["group"] for r in rows})  # page per class
    # The password on the sheet is the account's password.
    first = rows[0]
    conn = samba_dc.connect(f"{samba_dc.domain}\\{first['username']}", first["password"])
    assert conn.bound
    # And it is nowhere else: not in the plan, the state store, or what apply printed.
    state = (config.parent / "state.db").read_bytes()
    for row in rows:
        assert row["password"] not in plan_file.read_text()
        assert row["password"].encode() not in state
        assert row["password"] not in out
        assert row["password"] not in report.read_text()
    # A second run creates nobody and writes no new sheet.
    assert main(["apply", "--config", str(config)]) == 0
    capsys.readouterr()
    assert sorted((config.parent / "password-sheets").iterdir()) == sheets


def test_the_leaver_cycle_disable_reactivate_and_delete_after_grace(
    samba_dc, informat_server, synthetic, ad_env, capsys
):
    import sqlite3

    config_for, root = ad_env
    lifecycle = "lifecycle:\n  disabled_ou: [Uitgeschakeld]\n"
    config = config_for(informat_server.url)
    config.write_text(lifecycle + config.read_text())
    assert main(["apply", "--config", str(config)]) == 0
    capsys.readouterr()
    before = users_below(samba_dc, root)
    key = synthetic.notable["diacritics"]
    leaver = pupil(key)

    def day_with(rows):
        data = copy.deepcopy(synthetic)
        data.rows["Lln"] = rows
        return InformatServer(data, today=REFERENCE_DAY)

    def groups_of(anchor):
        conn = samba_dc.connect()
        from ldap3 import BASE

        conn.search(
            users_below(samba_dc, root)[anchor]["dn"],
            "(objectClass=user)",
            search_scope=BASE,
            attributes=["memberOf"],
        )
        return set(conn.response[0]["attributes"]["memberOf"])

    memberships = groups_of(leaver)
    assert memberships
    without = [r for r in synthetic.rows["Lln"] if r["p_persoon"] != key]
    with day_with(without) as server:
        config.write_text(config.read_text().replace(informat_server.url, server.url))
        plan = plan_json(config, capsys)
        mine = {
            c["action"] for c in plan["changes"] if c["key"] == leaver and c["kind"] == "account"
        }
        assert mine == {"disable", "move"}
        disable = next(c for c in plan["changes"] if c["action"] == "disable")
        assert "deletion due on" in disable["why"][0]
        assert main(["apply", "--config", str(config)]) == 0
        capsys.readouterr()
        gone = users_below(samba_dc, root)[leaver]
        assert int(gone["userAccountControl"]) & 2
        assert f"OU=Uitgeschakeld,{root}" in gone["dn"]
        assert groups_of(leaver) == set()  # out of the managed groups
        config.write_text(config.read_text().replace(server.url, informat_server.url))

    # Back in September: same account, same name, back in its OU and its groups.
    assert main(["apply", "--config", str(config)]) == 0
    capsys.readouterr()
    back = users_below(samba_dc, root)[leaver]
    assert back["sAMAccountName"] == before[leaver]["sAMAccountName"]
    assert back["dn"] == before[leaver]["dn"]
    assert not int(back["userAccountControl"]) & 2
    assert groups_of(leaver) == memberships

    # Gone again, for good: after the grace (the clock moved back 100 days) it is deleted.
    with day_with(without) as server:
        config.write_text(config.read_text().replace(informat_server.url, server.url))
        assert main(["apply", "--config", str(config)]) == 0
        capsys.readouterr()
        db = sqlite3.connect(config.parent / "state.db")
        db.execute(  # the deletion grace counts from the disable
            "UPDATE leavers SET since = date(since, '-100 days'), "
            "disabled = date(disabled, '-100 days')"
        )
        db.commit()
        db.close()
        plan = plan_json(config, capsys)
        assert [(c["action"], c["key"]) for c in plan["changes"]] == [("delete", leaver)]
        assert main(["apply", "--config", str(config)]) == 0
        capsys.readouterr()
        assert leaver not in users_below(samba_dc, root)
        config.write_text(config.read_text().replace(server.url, informat_server.url))

    # Returning after deletion: a new account, with the name that was theirs.
    assert main(["apply", "--config", str(config)]) == 0
    capsys.readouterr()
    again = users_below(samba_dc, root)[leaver]
    assert again["sAMAccountName"] == before[leaver]["sAMAccountName"]


def test_a_sharp_drop_of_one_school_blocks_the_plan_and_changes_nothing(
    samba_dc, informat_server, synthetic, ad_env, capsys
):
    config_for, root = ad_env
    config = config_for(informat_server.url)
    config.write_text(
        config.read_text().replace(
            "  freeze_leavers: []\n", "  freeze_leavers: []\n  max_disable: 100%\n"
        )
    )
    assert main(["apply", "--config", str(config)]) == 0
    capsys.readouterr()
    before = users_below(samba_dc, root)
    day2 = copy.deepcopy(synthetic)
    school = [r for r in day2.rows["Lln"] if r["_instelnr"] == "030577"]
    gone = {r["p_persoon"] for r in school[: len(school) // 3]}
    day2.rows["Lln"] = [r for r in day2.rows["Lln"] if r["p_persoon"] not in gone]
    with InformatServer(day2, today=REFERENCE_DAY) as server:
        config.write_text(config.read_text().replace(informat_server.url, server.url))
        assert main(["apply", "--config", str(config)]) == 2
        out = capsys.readouterr().out
        assert "BLOCKED by policy (drop): approve with" in out
        assert "  - school 030577 has" in out and "max_drop 20%" in out
        assert users_below(samba_dc, root) == before  # nothing changed in the directory


def test_password_reset_for_one_account_with_a_sheet(
    samba_dc, informat_server, synthetic, ad_env, capsys
):
    import csv

    config_for, _root = ad_env
    config = config_for(informat_server.url)
    assert main(["apply", "--config", str(config)]) == 0
    capsys.readouterr()
    key = synthetic.notable["diacritics"]
    assert main(["password", "reset", "--config", str(config), key]) == 0
    out = capsys.readouterr().out
    assert out.startswith("New password for zoe.celik: on the sheet ")
    sheet = Path(out.rsplit(" ", 1)[1].strip())
    csv_sheet = sheet.with_suffix(".csv") if sheet.suffix == ".html" else sheet
    (row,) = list(csv.DictReader(csv_sheet.open(encoding="utf-8")))
    assert row["username"] == "zoe.celik"
    assert samba_dc.connect(f"{samba_dc.domain}\\zoe.celik", row["password"]).bound
    assert row["password"] not in out
    assert main(["password", "reset", "--config", str(config), "Peeters"]) == 1
    assert "matches" in capsys.readouterr().err


def test_a_school_that_answers_empty_changes_nothing_in_the_directory(
    samba_dc, informat_server, ad_env, capsys
):
    config_for, root = ad_env
    config = config_for(informat_server.url)
    assert main(["apply", "--config", str(config)]) == 0
    capsys.readouterr()
    before = users_below(samba_dc, root)
    # The web-service account loses its rights on one school: Informat answers it empty.
    informat_server.accounts["halve-rechten@school.be"] = ("geheim", {"030569"})
    config.write_text(
        config.read_text().replace("webservices@school.be", "halve-rechten@school.be")
    )
    try:
        assert main(["apply", "--config", str(config), "--approve", "trying to force it"]) == 2
        out = capsys.readouterr().out
        assert "BLOCKED: Lln for 030577 answered with no rows" in out
    finally:
        del informat_server.accounts["halve-rechten@school.be"]
    assert users_below(samba_dc, root) == before  # nobody disabled, nothing changed


def test_json_logs_of_a_nightly_run_hold_no_secret(samba_dc, informat_server, ad_env, capsys):
    config_for, _root = ad_env
    config = config_for(informat_server.url)
    assert main(["--log-format", "json", "apply", "--config", str(config)]) == 0
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.err.splitlines() if line.startswith("{")]
    messages = [line["message"] for line in lines]
    assert "made the plan" in messages and "applied the plan" in messages
    sheet = next((config.parent / "password-sheets").glob("*.csv")).read_text()
    secrets_used = [samba_dc.admin_password, "geheim"] + [
        row.split(",")[-1] for row in sheet.splitlines()[1:]
    ]
    everything = captured.err + captured.out
    assert all(secret not in everything for secret in secrets_used)


def test_on_1_july_leavers_wait_and_nothing_is_disabled(
    samba_dc, informat_server, synthetic, ad_env, tmp_path, capsys
):
    """The school-year transition: the data describes 1 July (a snapshot fetched for that day),
    pupils missing from it are not disabled; the plan says they wait."""
    config_for, root = ad_env
    config = config_for(informat_server.url)
    assert main(["apply", "--config", str(config)]) == 0
    capsys.readouterr()
    before = users_below(samba_dc, root)
    day = copy.deepcopy(synthetic)
    missing = {r["p_persoon"] for r in day.rows["Lln"][:3]}
    day.rows["Lln"] = [r for r in day.rows["Lln"] if r["p_persoon"] not in missing]
    for row in day.rows["Lln"]:  # the rows must still be valid on 1 July
        if row.get("_tot") and row["_tot"] < "2026-07-01":
            row["_tot"] = None
    with InformatServer(day, today=REFERENCE_DAY) as server:
        fetch = (
            config_for(server.url)
            .read_text()
            .replace(f"referentiedatum: {REFERENCE_DAY:%d-%m-%Y}", "referentiedatum: 01-07-2026")
        )
        (tmp_path / "fetch.yaml").write_text(fetch)
        snapshot = tmp_path / "snapshot-1-july"
        assert (
            main(["fetch", "--config", str(tmp_path / "fetch.yaml"), "--save", str(snapshot)]) == 0
        )
    live = config_for(informat_server.url).read_text()  # config_for rewrote the file above
    offline = live.replace(f"    url: {informat_server.url}\n", f"    snapshot: {snapshot}\n")
    offline = offline.replace("  freeze_leavers: []\n", "  freeze_leavers: [07-01, 08-31]\n")
    config.write_text(offline)
    capsys.readouterr()
    code = main(["plan", "--config", str(config), "--json"])
    captured = capsys.readouterr()
    assert code == 2, captured.err
    plan = json.loads(captured.out)
    assert not [c for c in plan["changes"] if c["action"] in ("disable", "delete")]
    assert any(
        "leaver action(s) wait: 2026-07-01 is in the school-year" in w
        for w in plan["header"]["warnings"]
    )
    assert main(["apply", "--config", str(config)]) in (0, 2)
    capsys.readouterr()
    after = users_below(samba_dc, root)
    assert {pupil(k) for k in missing} <= set(before)
    assert all(not int(after[k]["userAccountControl"]) & 2 for k in before)  # nobody disabled


def test_a_dry_run_leaves_the_state_store_byte_for_byte(
    samba_dc, informat_server, synthetic, ad_env, capsys, tmp_path
):
    """``plan`` (and validate, explain, a saved plan) leaves the state store as it found it;
    only an apply records what the source showed, dated by the plan's source day."""
    config_for, _root = ad_env
    assert main(["apply", "--config", str(config_for(informat_server.url))]) == 0
    state = tmp_path / "state.db"
    scenario = day_two(synthetic)
    with InformatServer(scenario.data, today=REFERENCE_DAY) as server:
        config = config_for(server.url)
        before = state.read_bytes()
        plan_file = tmp_path / "plan.json"
        assert main(["plan", "--config", str(config), "--out", str(plan_file)]) == 2
        assert main(["validate", "--config", str(config)]) == 0
        assert main(["explain", "--config", str(config), scenario.leaver]) in (0, 1)
        assert state.read_bytes() == before  # no leaver clock, no kind, no id recorded
        with StateStore(state) as store:
            assert pupil(scenario.leaver) not in store.leavers()
            assert pupil(NEWCOMER) not in store.kinds()

        # What the plan would teach the store travels in it ...
        saved = json.loads(plan_file.read_text(encoding="utf-8"))
        assert saved["observations"]["left"] == [pupil(scenario.leaver)]
        assert pupil(NEWCOMER) in saved["observations"]["accounts"]
        # ... and is recorded when it is applied, dated by the plan's source day.
        capsys.readouterr()
        assert main(["apply", "--config", str(config), str(plan_file)]) == 0
        with StateStore(state) as store:
            day = dt.date.fromisoformat(saved["header"]["source_as_of"])
            assert store.leavers() == {pupil(scenario.leaver): day}
            assert store.kinds()[pupil(NEWCOMER)] == "pupils"
            # and the DC's objectGUIDs of the accounts it saw (the newcomer's comes next night)
            assert set(store.anchor_ids("account")) == set(saved["observations"]["ids"]["account"])
    # Day one's data again: the leaver is back (their clock stops), the newcomer gone (theirs starts).
    assert main(["apply", "--config", str(config_for(informat_server.url))]) == 0
    with StateStore(state) as store:
        assert list(store.leavers()) == [pupil(NEWCOMER)]
