"""Two ``provisioner apply`` processes at once against the real Samba AD DC: one applies, the
other is refused (or waits and then finds nothing to do); no twin, and every password on every
sheet logs on."""

from __future__ import annotations

import csv
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.scenarios import ad_target, config_head

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Run:
    code: int
    out: str
    err: str
    pid: int
    config: Path


def apply_at_once(*configs: Path) -> list[Run]:
    """Start ``provisioner -v apply`` for each configuration (the same one twice: give it twice)
    together, and wait for all of them."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "provisioner", "-v", "apply", "--config", str(config)],
            cwd=ROOT,  # the worktree's provisioner, not an installed one
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for config in configs
    ]
    runs = []
    for process, config in zip(processes, configs, strict=True):
        out, err = process.communicate(timeout=900)
        runs.append(Run(process.returncode, out, err, process.pid, config))
    return runs


def password_marker(cell: str) -> bool:
    """A cell that stands for a password not known (a create that found its account already
    there): such rows are not passwords and are skipped."""
    return not cell.strip() or "unknown" in cell.lower()


def sheet_passwords(directory: Path) -> list[tuple[str, str]]:
    """``(username, password)`` of every row of every CSV sheet in *directory*, read leniently:
    any column named like username / password, rows with a password marker skipped."""
    found = []
    for sheet in sorted(directory.glob("**/*.csv")):
        with sheet.open(encoding="utf-8", newline="") as handle:
            for row in csv.DictReader(handle):
                fields = {(k or "").strip().lower(): (v or "") for k, v in row.items()}
                username = next((v for k, v in fields.items() if "user" in k), "")
                password = next((v for k, v in fields.items() if "password" in k), "")
                if username and not password_marker(password):
                    found.append((username, password))
    return found


def one_password_each(rows: list[tuple[str, str]]) -> dict[str, str]:
    """Username -> password; the same row on two files (a sheet and its escrow) is one, but an
    account with two different passwords is the bug this guards against."""
    passwords: dict[str, set[str]] = {}
    for username, password in rows:
        passwords.setdefault(username.lower(), set()).add(password)
    twice = sorted(name for name, found in passwords.items() if len(found) > 1)
    assert twice == [], f"accounts with two different passwords on the sheets: {twice[:5]}"
    return {name: found.pop() for name, found in passwords.items()}


def winner_and_loser(runs: list[Run]) -> tuple[Run, Run]:
    assert sorted(r.code for r in runs) == [0, 1], [(r.code, r.err[-2000:]) for r in runs]
    winner, loser = sorted(runs, key=lambda r: r.code)
    return winner, loser


@pytest.fixture
def concurrent_ad(samba_dc, tmp_path, monkeypatch):
    """Write a configuration with its own managed root; delete that root afterwards."""
    monkeypatch.setenv("TEST_INFORMAT_PASSWORD", "geheim")
    monkeypatch.setenv("TEST_AD_PASSWORD", samba_dc.admin_password)
    root = f"OU=c{secrets.token_hex(4)}"

    def config_for(informat_url: str, wait: float = 0) -> Path:
        path = tmp_path / "provisioner.yaml"
        path.write_text(
            config_head(informat_url, ROOT / "mappings")
            + ad_target(samba_dc, root)
            + f"lock:\n  wait: {wait}\n  directory: {tmp_path / 'locks'}\n"
        )
        return path

    yield config_for, root
    samba_dc.connect().delete(
        f"{root},{samba_dc.base_dn}", controls=[("1.2.840.113556.1.4.805", True, None)]
    )


def managed(samba_dc, root: str, object_class: str, anchor: str) -> list[str]:
    """The anchors of every managed object of a class below *root* (duplicates kept)."""
    from ldap3 import SUBTREE

    conn = samba_dc.connect()
    conn.search(
        f"{root},{samba_dc.base_dn}",
        f"(&(objectClass={object_class})({anchor}=*))",
        search_scope=SUBTREE,
        attributes=[anchor],
        paged_size=1000,
    )
    return [
        str(e["attributes"][anchor]) for e in conn.response if e.get("type") == "searchResEntry"
    ]


def assert_one_of_everything_and_every_password_logs_on(samba_dc, root: str, config: Path):
    users = managed(samba_dc, root, "user", "employeeID")
    groups = managed(samba_dc, root, "group", "adminDescription")
    assert len(users) > 100 and len(users) == len(set(users)), "twin accounts"
    assert groups and len(groups) == len(set(groups)), "twin groups"

    logins = one_password_each(sheet_passwords(config.parent / "password-sheets"))
    assert len(logins) == len(users)  # every new account on a sheet, with its password
    refused = []
    for username, password in logins.items():
        conn = samba_dc.connect(f"{samba_dc.domain}\\{username}", password)
        if not conn.bound:
            refused.append(username)
        conn.unbind()
    assert refused == []


def test_two_applies_at_once_one_applies_the_other_is_refused(
    samba_dc, informat_server, concurrent_ad
):
    config_for, root = concurrent_ad
    config = config_for(informat_server.url)
    winner, loser = winner_and_loser(apply_at_once(config, config))

    assert f"error: another run (pid {winner.pid}, `provisioner apply --config {config}`" in (
        loser.err
    )
    assert ", started at 20" in loser.err and "wait for it or stop it" in loser.err
    assert loser.out == ""
    assert "Initial passwords of " in winner.out
    assert_one_of_everything_and_every_password_logs_on(samba_dc, root, config)


def test_a_second_apply_waits_and_then_finds_nothing_to_do(
    samba_dc, informat_server, concurrent_ad
):
    config_for, root = concurrent_ad
    config = config_for(informat_server.url, wait=600)
    runs = apply_at_once(config, config)
    assert [r.code for r in runs] == [0, 0], [r.err[-2000:] for r in runs]
    (waiter,) = [r for r in runs if "waiting up to 600 s" in r.err]
    (first,) = [r for r in runs if r is not waiter]
    assert f"another run (pid {first.pid}, `provisioner apply" in waiter.err
    assert "Initial passwords of " in first.out
    assert "Initial passwords" not in waiter.out  # it found every account there
    assert len(list((config.parent / "password-sheets").glob("*.csv"))) == 1
    assert_one_of_everything_and_every_password_logs_on(samba_dc, root, config)
