"""On a real Samba AD DC: an installation made with the old default anchors (the bare p_persoon)
is carried over to the new ones (lln-/pers-) by the plan, in place: the same objects (objectGUID),
the same names, the same groups; no account is made, disabled or moved. Afterwards a staff member
whose p_persoon equals a pupil's gets an account of their own."""

from __future__ import annotations

import json
import re
import secrets
import shutil
from pathlib import Path

import pytest

from provisioner.cli import main
from provisioner.state import StateStore
from tests.conftest import REFERENCE_DAY
from tests.fakes.informat_server import InformatServer
from tests.scenarios import ad_target, config_head

ROOT = Path(__file__).resolve().parent.parent
SCHOOL = "030569"


def rows(*, with_colliding_staff: bool = False) -> dict:
    def pupil(key: str, voornaam: str, naam: str, klas: str) -> dict:
        return {
            "p_persoon": key,
            "Voornaam": voornaam,
            "Naam": naam,
            "voorlopig": "0",
            "Klascode": klas,
            "school": "Sint-Jan",
            "_instelnr": SCHOOL,
        }

    def klas(key: str, code: str) -> dict:
        return {
            "p_persoon": key,
            "Klascode": code,
            "Groeptype": "0",
            "Instelnr": SCHOOL,
            "School": "Sint-Jan",
            "Klastitularis": "Leraar Een",
            "_instelnr": SCHOOL,
        }

    staff = [
        {"p_persoon": "9", "Naam": "Leraar", "Voornaam": "Een", "Actief": "J", "_instelnr": SCHOOL}
    ]
    if with_colliding_staff:  # the old default could not give this one an account
        staff.append(
            {"p_persoon": "1", "Naam": "Smet", "Voornaam": "An", "Actief": "J", "_instelnr": SCHOOL}
        )
    return {
        "rows": {
            "Lln": [
                pupil("1", "Jan", "Peeters", "1A"),
                pupil("2", "Zoë", "Çelik", "1A"),
                pupil("123456789", "Marie", "Claes", "2B"),
            ],
            "Subgroepen": [klas("1", "1A"), klas("2", "1A"), klas("123456789", "2B")],
            "Leerkrachten": staff,
            "LeerkrachtenVrijevelden": [],
        },
        "schooljaar": "2025-26",
    }


def old_default_mappings(folder: Path) -> Path:
    """The shipped mappings as they were before: no anchor (the bare p_persoon), no anchor_was."""
    shutil.copytree(ROOT / "mappings", folder)
    for name in ("pupils.yaml", "staff.yaml"):
        path = folder / name
        text = path.read_text(encoding="utf-8")
        old = re.sub(r"\n    anchor(_was)?: .*", "", text)
        assert "\n    anchor: " not in old and "\n    anchor_was: " not in old
        path.write_text(old, encoding="utf-8")
    return folder


@pytest.fixture
def dc_config(samba_dc, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_INFORMAT_PASSWORD", "geheim")
    monkeypatch.setenv("TEST_AD_PASSWORD", samba_dc.admin_password)
    root = f"OU=t{secrets.token_hex(4)}"

    def config_for(informat_url: str, mappings: Path) -> Path:
        path = tmp_path / "provisioner.yaml"
        text = config_head(informat_url, mappings) + ad_target(samba_dc, root)
        path.write_text(text.replace("instelnrs: ['030569', '030577']", f"instelnrs: ['{SCHOOL}']"))
        return path

    yield config_for, root
    samba_dc.connect().delete(
        f"{root},{samba_dc.base_dn}", controls=[("1.2.840.113556.1.4.805", True, None)]
    )


def accounts(samba_dc, root: str) -> dict[str, dict]:
    """Every user below the managed root by objectGUID: anchor, name, place, groups, enabled."""
    from ldap3 import SUBTREE

    conn = samba_dc.connect()
    conn.search(
        f"{root},{samba_dc.base_dn}",
        "(objectClass=user)",
        search_scope=SUBTREE,
        attributes=["objectGUID", "employeeID", "sAMAccountName", "memberOf", "userAccountControl"],
    )
    return {
        str(e["attributes"]["objectGUID"]): {
            "anchor": e["attributes"]["employeeID"] or None,
            "name": e["attributes"]["sAMAccountName"],
            "dn": e["dn"],
            "groups": sorted(e["attributes"]["memberOf"]),
            "enabled": not int(e["attributes"]["userAccountControl"]) & 2,
        }
        for e in conn.response
    }


def plan(config: Path, capsys) -> dict:
    code = main(["plan", "--config", str(config), "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == (2 if data["changes"] else 0), data["header"]
    return data


def test_old_default_anchors_are_carried_over_in_place_on_the_dc(
    samba_dc, dc_config, capsys, tmp_path
):
    config_for, root = dc_config
    with InformatServer(rows(), today=REFERENCE_DAY) as server:
        # Night 1, with the old default: accounts anchored on the bare p_persoon.
        old = config_for(server.url, old_default_mappings(tmp_path / "old-mappings"))
        assert main(["apply", "--config", str(old)]) == 0, capsys.readouterr()
        capsys.readouterr()
        before = accounts(samba_dc, root)
        assert sorted(a["anchor"] for a in before.values()) == ["1", "123456789", "2", "9"]
        assert all(a["groups"] for a in before.values())

        # Night 2, with the shipped mappings (lln-/pers- and anchor_was): only the anchors change.
        new = config_for(server.url, ROOT / "mappings")
        carried = plan(new, capsys)
        assert carried["header"]["blocked"] == []
        assert sorted(
            (c["action"], c["key"], c["before"], c["after"]) for c in carried["changes"]
        ) == [
            ("adopt", "lln-1", {"anchor": "1"}, {"anchor": "lln-1"}),
            ("adopt", "lln-123456789", {"anchor": "123456789"}, {"anchor": "lln-123456789"}),
            ("adopt", "lln-2", {"anchor": "2"}, {"anchor": "lln-2"}),
            ("adopt", "pers-9", {"anchor": "9"}, {"anchor": "pers-9"}),
        ]
        adopt = carried["changes"][0]
        assert adopt["precondition"]["anchor"] == adopt["before"]["anchor"]
        assert main(["apply", "--config", str(new)]) == 0
        capsys.readouterr()

        after = accounts(samba_dc, root)
        assert after.keys() == before.keys()  # the same objects: nothing made or removed
        for guid, was in before.items():
            now = after[guid]
            prefix = "pers-" if "OU=Personeel" in was["dn"] else "lln-"
            assert now["anchor"] == prefix + was["anchor"]
            assert (now["name"], now["dn"], now["groups"], now["enabled"]) == (
                was["name"],
                was["dn"],
                was["groups"],
                True,
            )
        assert len(max((a["anchor"] for a in after.values()), key=len)) <= 16
        assert plan(new, capsys)["changes"] == []  # converged

        # The state store keeps names and ids under the new anchors.
        with StateStore(new.parent / "state.db") as store:
            issued = store.issued_to()
            assert {issued[a["anchor"]] for a in after.values()} == {
                a["name"] for a in after.values()
            }
            assert set(store.anchor_ids("account")) == {a["anchor"] for a in after.values()}

    # A staff member whose p_persoon equals a pupil's: an account of their own, nothing else.
    with InformatServer(rows(with_colliding_staff=True), today=REFERENCE_DAY) as server:
        new = config_for(server.url, ROOT / "mappings")
        day3 = plan(new, capsys)
        accounts_changed = [
            (c["action"], c["key"]) for c in day3["changes"] if c["kind"] == "account"
        ]
        assert accounts_changed == [("create", "pers-1")]
        assert main(["apply", "--config", str(new)]) == 0
        capsys.readouterr()
        final = accounts(samba_dc, root)
        assert {a["anchor"] for a in final.values()} == {
            "lln-1",
            "lln-2",
            "lln-123456789",
            "pers-9",
            "pers-1",
        }
        assert plan(new, capsys)["changes"] == []
