"""The group lifecycle on a real Samba AD DC: in the school-year freeze nothing about leavers or
emptied groups changes; outside it a class that disappears is moved to the archive OU with its
members, moved back when it returns, and deleted once the grace since the archive has passed;
made anew only with a warning."""

# The DC and the configuration are test_ad's fixtures, imported by name.
# ruff: noqa: F401, F811

from __future__ import annotations

import sqlite3

from ldap3 import SUBTREE

from provisioner.cli import main
from tests.conftest import REFERENCE_DAY
from tests.fakes.informat_server import InformatServer
from tests.scenarios import pupil
from tests.test_ad import ad_env, plan_json
from tests.test_group_lifecycle_entra import one_class, without_class

NO_FREEZE = "policy:\n  freeze_leavers: []\n"
ALWAYS_FROZEN = "policy:\n  freeze_leavers: [01-01, 12-31]\n"


def groups_below(samba_dc, root: str) -> dict[str, dict]:
    """The groups below the managed root by key: their DN and members."""
    conn = samba_dc.connect()
    conn.search(
        f"{root},{samba_dc.base_dn}",
        "(objectClass=group)",
        search_scope=SUBTREE,
        attributes=["adminDescription", "member"],
    )
    return {
        e["attributes"]["adminDescription"]: {
            "dn": e["dn"],
            "members": set(e["attributes"]["member"]),
        }
        for e in conn.response
        if e.get("type") == "searchResEntry"
    }


def test_a_class_waits_in_the_freeze_then_is_archived_restored_and_deleted_after_the_grace(
    samba_dc, informat_server, synthetic, ad_env, capsys
):
    config_for, root = ad_env
    base = f"{root},{samba_dc.base_dn}".lower()

    def at(url: str, policy: str = NO_FREEZE):  # one configuration file, tonight's source
        path = config_for(url)
        path.write_text(path.read_text().replace(NO_FREEZE, policy))
        return path

    def apply(config) -> None:
        assert main(["apply", "--config", str(config)]) == 0
        capsys.readouterr()

    apply(at(informat_server.url))
    school, klas = one_class(synthetic)
    key = f"klas-{school}-{klas}"
    made = groups_below(samba_dc, root)[key]
    assert made["members"]
    dissolved = without_class(synthetic, school, klas)
    # ... and a pupil of another class leaves, in the same night
    leaver_row = next(r for r in dissolved.rows["Lln"] if r["Klascode"] != klas)
    leaver = pupil(leaver_row["p_persoon"])
    dissolved.rows["Lln"] = [r for r in dissolved.rows["Lln"] if r is not leaver_row]

    with InformatServer(dissolved, today=REFERENCE_DAY) as server:
        # The freeze: nothing about leavers changes, no group is archived or deleted.
        frozen = plan_json(at(server.url, ALWAYS_FROZEN), capsys)
        assert not [
            c
            for c in frozen["changes"]
            if c["action"] in ("archive_group", "delete_group", "disable", "delete")
            or (c["action"] == "remove_member" and leaver in c["before"]["members"])
        ]
        assert any(
            "group membership(s) of leavers and 1 group(s) the source no longer has wait" in w
            for w in frozen["header"]["warnings"]
        )
        apply(at(server.url, ALWAYS_FROZEN))
        assert groups_below(samba_dc, root)[key] == made

        # Outside it: archived into the archive OU (made first), members and all.
        plan = plan_json(at(server.url), capsys)
        mine = [(c["action"], c["key"]) for c in plan["changes"] if c["kind"] != "account"]
        assert ("create_ou", "Archief") in mine
        assert ("archive_group", key) in mine
        assert ("delete_group", key) not in mine
        assert not [c for c in plan["changes"] if c["key"] == key and "member" in c["action"]]
        apply(at(server.url))
        archived = groups_below(samba_dc, root)[key]
        assert archived["dn"].lower().endswith(f",ou=archief,{base}")
        assert archived["members"] == made["members"]
        again = plan_json(at(server.url), capsys)
        assert not [c for c in again["changes"] if c["kind"] == "group"]

    # Back: moved back where it was, with its members; then nothing more to do.
    config = at(informat_server.url)
    plan = plan_json(config, capsys)
    restore = [c for c in plan["changes"] if c["key"] == key]
    assert [c["action"] for c in restore] == ["restore_group"]
    assert restore[0]["before"]["ou"] == ["Archief"]
    apply(config)
    back = groups_below(samba_dc, root)[key]
    assert back["dn"].lower() == made["dn"].lower()
    assert len(back["members"]) == len(made["members"])
    assert plan_json(config, capsys)["changes"] == []

    # Gone for good: archived again, deleted only once the grace since the archive has passed.
    with InformatServer(without_class(synthetic, school, klas), today=REFERENCE_DAY) as server:
        gone = at(server.url)
        apply(gone)
        db = sqlite3.connect(gone.parent / "state.db")
        db.execute("UPDATE group_lifecycle SET archived = date(archived, '-364 days')")
        db.commit()
        assert not [c for c in plan_json(gone, capsys)["changes"] if c["kind"] == "group"]
        db.execute("UPDATE group_lifecycle SET archived = date(archived, '-1 days')")
        db.commit()
        db.close()
        plan = plan_json(gone, capsys)
        assert [(c["action"], c["key"]) for c in plan["changes"]] == [("delete_group", key)]
        day = plan["header"]["source_as_of"]
        apply(gone)
        assert key not in groups_below(samba_dc, root)

    # Made anew: a new group (a new SID), and the plan says so.
    config = at(informat_server.url)
    plan = plan_json(config, capsys)
    assert ("create_group", key) in {(c["action"], c["key"]) for c in plan["changes"]}
    assert any(
        w.startswith(f"group {key} was deleted on {day} and is made anew")
        and "file shares and Teams that used the old group will not follow" in w
        for w in plan["header"]["warnings"]
    )
    apply(config)
    assert groups_below(samba_dc, root)[key]["dn"].lower() == made["dn"].lower()
