"""Class codes that differ only by case, against a real Samba AD DC: AD holds ``1a`` and ``1A``
as one OU and one group, so the plan follows the directory and converges (the next plan is
empty, nothing fails with entryAlreadyExists)."""

from __future__ import annotations

import json
from typing import Any

from ldap3 import LEVEL

from provisioner.cli import main
from tests import test_ad
from tests.conftest import REFERENCE_DAY
from tests.fakes.informat_server import InformatServer
from tests.test_ad import plan_json, users_below

ad_env = test_ad.ad_env  # the fixture: its own managed root OU, state store and mappings


def pupil(key: str, naam: str, klascode: str) -> dict[str, str]:
    return {
        "p_persoon": key,
        "Naam": naam,
        "Voornaam": "Jan",
        "voorlopig": "0",
        "Klascode": klascode,
        "school": "S",
        "instelnr": "030569",
        "_instelnr": "030569",
    }


def klas(key: str, klascode: str) -> dict[str, str]:
    return {
        "p_persoon": key,
        "Klascode": klascode,
        "Groeptype": "0",
        "Instelnr": "030569",
        "School": "S",
        "_instelnr": "030569",
    }


def data(*pupils: tuple[str, str, str]) -> dict[str, Any]:
    rows = {
        "Lln": [pupil(*p) for p in pupils],
        "Subgroepen": [klas(key, code) for key, _naam, code in pupils],
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
    return {"rows": rows, "schooljaar": "2025-26"}


def one_school(config_path):
    config_path.write_text(
        config_path.read_text().replace("instelnrs: ['030569', '030577']", "instelnrs: ['030569']")
    )
    return config_path


def apply(config, capsys) -> dict:
    code = main(["apply", "--config", str(config), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0, out
    failed = [r for r in out["results"] if r["status"] != "applied"]
    assert failed == []  # no entryAlreadyExists, no skipped create_ou
    return out


def class_ous(samba_dc, root: str) -> list[str]:
    conn = samba_dc.connect()
    conn.search(
        f"OU=030569,OU=Leerlingen,{root},{samba_dc.base_dn}",
        "(objectClass=organizationalUnit)",
        search_scope=LEVEL,
        attributes=["ou"],
    )
    return sorted(
        str(
            e["attributes"]["ou"][0]
            if isinstance(e["attributes"]["ou"], list)
            else e["attributes"]["ou"]
        )
        for e in conn.response
    )


def class_groups(samba_dc, root: str) -> dict[str, list[str]]:
    conn = samba_dc.connect()
    conn.search(
        f"{root},{samba_dc.base_dn}",
        "(&(objectClass=group)(adminDescription=klas-*))",
        attributes=["adminDescription", "member"],
    )
    return {
        str(e["attributes"]["adminDescription"]): sorted(e["attributes"]["member"])
        for e in conn.response
    }


def test_classes_1a_and_1A_in_one_night_are_one_ou_and_the_next_plan_is_empty(
    samba_dc, ad_env, capsys
):
    config_for, root = ad_env
    night = data(("1", "Peeters", "1a"), ("2", "Janssens", "1A"))
    with InformatServer(night, today=REFERENCE_DAY) as server:
        config = one_school(config_for(server.url))
        first = plan_json(config, capsys)
        assert any("differs only by case" in w for w in first["header"]["warnings"])
        apply(config, capsys)
        users = users_below(samba_dc, root)
        assert set(users) == {"lln-1", "lln-2", "pers-9"}  # the shipped anchors
        assert class_ous(samba_dc, root) == ["1A"]
        [(key, members)] = class_groups(samba_dc, root).items()
        assert key == "klas-030569-1A" and len(members) == 2
        assert plan_json(config, capsys)["changes"] == []
        assert plan_json(config, capsys)["changes"] == []  # the third plan too


def test_a_class_code_whose_case_changes_between_nights_converges(samba_dc, ad_env, capsys):
    config_for, root = ad_env
    with InformatServer(
        data(("1", "Peeters", "1a"), ("2", "Janssens", "1a")), today=REFERENCE_DAY
    ) as server:
        apply(one_school(config_for(server.url)), capsys)
    assert class_ous(samba_dc, root) == ["1a"]
    with InformatServer(
        data(("1", "Peeters", "1A"), ("2", "Janssens", "1A")), today=REFERENCE_DAY
    ) as server:
        config = one_school(config_for(server.url))
        second = plan_json(config, capsys)
        # Only the text that follows the class code changes: no OU, no move, no new group.
        actions = {(c["action"], c["kind"]) for c in second["changes"]}
        assert actions <= {("update", "account"), ("update_group", "group")}, actions
        apply(config, capsys)
        assert plan_json(config, capsys)["changes"] == []
        assert plan_json(config, capsys)["changes"] == []
    users = users_below(samba_dc, root)
    assert users["lln-1"]["department"] == "1A"
    assert ",OU=1a,OU=030569," in users["lln-1"]["dn"]
    assert list(class_groups(samba_dc, root)) == ["klas-030569-1a"]
