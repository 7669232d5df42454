"""Informat plus a file of extra staff, night after night, applied to the Samba DC and to the
Graph server: the file's persons get accounts like Informat's, one removed from the file becomes a
leaver like any other, and an emptied or vanished file blocks the night and disables nobody."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from provisioner.cli import main
from tests import test_entra
from tests.scenarios import ad_target, config_head
from tests.test_ad import users_below
from tests.test_entra import entra_target, users

ROOT = Path(__file__).resolve().parent.parent
graph_ca, graph, clock, cli = (
    test_entra.graph_ca,
    test_entra.graph,
    test_entra.clock,
    test_entra.cli,
)

HEADER = "\ufeffp_persoon;Naam;Voornaam;Actief;instelnr\r\n"
EXTRA_STAFF = HEADER + "ext1;Vermeulen;Lotte;J;030569\r\next2;Goossens;Bram;J;030577\r\n"
FILES = "  files:\n    - {path: extra-staff.csv, kind: staff, prefix: ext}\n"
"""Below config_head's ``source: informat:`` section: the second source."""


def night(config: Path, capsys, run=main) -> tuple[int, dict]:
    """One ``provisioner run``: its exit code and its results.json."""
    code = run(["run", "--config", str(config)])
    out = capsys.readouterr().out
    last = sorted((config.parent / "runs").iterdir())[-1]
    results = json.loads((last / "results.json").read_text())
    results["out"] = out
    return code, results


def nights_with_a_file(config: Path, capsys, enabled, run=main) -> None:
    """The nights every target goes through; *enabled* reads the target's accounts by anchor
    (True: enabled)."""
    extra = config.parent / "extra-staff.csv"
    extra.write_text(EXTRA_STAFF, encoding="utf-8", newline="")
    code, results = night(config, capsys, run)
    assert code == 0 and results["outcome"] == "applied", results["out"]
    accounts = enabled()
    assert accounts["pers-ext1"] and accounts["pers-ext2"]
    informat_staff = {a for a in accounts if a.startswith("pers-") and not a.startswith("pers-ext")}
    assert len(informat_staff) > 5  # Informat's staff beside the file's

    # The next night Bram is no longer in the file: a leaver like any other (disabled at once).
    extra.write_text(EXTRA_STAFF.replace("ext2;Goossens;Bram;J;030577\r\n", ""), newline="")
    code, results = night(config, capsys, run)
    assert code == 0, results["out"]
    changes = {(c["action"], c["key"]) for c in results["changes"] if c["kind"] == "account"}
    assert changes == {("disable", "pers-ext2")}
    # besides: Bram leaves the groups he was in (staff), nothing else
    assert {c["action"] for c in results["changes"] if c["kind"] != "account"} <= {"remove_member"}
    accounts = enabled()
    assert accounts["pers-ext1"] and not accounts["pers-ext2"]

    # An emptied file (the header only), then a vanished one: the night is blocked, nobody left.
    for broken in ("header", "gone"):
        if broken == "header":
            extra.write_text(HEADER, encoding="utf-8")
        else:
            extra.unlink()
        code, results = night(config, capsys, run)
        assert code == 2 and results["outcome"] == "blocked", results["out"]
        assert "Leerkrachten for extra-staff" in results["out"]
        assert enabled()["pers-ext1"], broken
        assert enabled() == accounts


@pytest.fixture
def ad_files_env(samba_dc, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_INFORMAT_PASSWORD", "geheim")
    monkeypatch.setenv("TEST_AD_PASSWORD", samba_dc.admin_password)
    root = f"OU=t{secrets.token_hex(4)}"
    yield root
    samba_dc.connect().delete(
        f"{root},{samba_dc.base_dn}", controls=[("1.2.840.113556.1.4.805", True, None)]
    )


def test_informat_and_an_extra_staff_file_on_the_samba_dc(
    samba_dc, informat_server, ad_files_env, tmp_path, capsys
):
    root = ad_files_env
    config = tmp_path / "provisioner.yaml"
    config.write_text(
        config_head(informat_server.url, ROOT / "mappings") + FILES + ad_target(samba_dc, root)
    )

    def enabled() -> dict[str, bool]:
        return {
            anchor: not int(user["userAccountControl"]) & 2
            for anchor, user in users_below(samba_dc, root).items()
        }

    nights_with_a_file(config, capsys, enabled)
    lotte = users_below(samba_dc, root)["pers-ext1"]
    assert lotte["sAMAccountName"] == "lotte.vermeulen"
    assert "OU=030569,OU=Personeel" in lotte["dn"]


def test_informat_and_an_extra_staff_file_on_the_graph_server(
    graph, informat_server, tmp_path, monkeypatch, capsys, cli
):
    monkeypatch.setenv("TEST_INFORMAT_PASSWORD", "geheim")
    monkeypatch.setenv("TEST_ENTRA_SECRET", test_entra.SECRET)
    config = tmp_path / "provisioner.yaml"
    config.write_text(
        config_head(informat_server.url, ROOT / "examples/entra/mappings")
        + FILES
        + entra_target(graph)
    )

    def enabled() -> dict[str, bool]:
        return {anchor: bool(user["accountEnabled"]) for anchor, user in users(graph).items()}

    nights_with_a_file(config, capsys, enabled, run=cli)
    assert users(graph)["pers-ext1"]["displayName"] == "Lotte Vermeulen"
