"""No password lost or wrong, on a real Samba AD DC: every password on every sheet logs on; a sheet
that cannot be written sets no password; an interrupted run leaves every password it may have set
on disk; an account that was already there gets "password unknown", never a password that was not
set; a password reset writes its sheet first."""

from __future__ import annotations

import csv
import resource
import signal
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from ldap3.core.exceptions import LDAPBindError

from provisioner.apply import apply_changes, reset_password
from provisioner.cli import main
from provisioner.errors import ProvisionerError
from provisioner.passwords import PENDING, UNKNOWN, Handout, PasswordConfig, SheetError
from provisioner.pipeline import open_target, plan_for, prepare, read_for_mappings
from provisioner.plan.model import Action
from provisioner.state import StateStore
from provisioner.targets.base import Result
from tests import test_ad
from tests.test_ad import users_below

ad_env = test_ad.ad_env  # the fixture: a managed root OU, state store and mappings of its own

pytestmark = pytest.mark.usefixtures("samba_dc")


def sheet_rows(directory: Path) -> list[dict[str, str]]:
    """Every line of every CSV sheet in *directory*."""
    rows: list[dict[str, str]] = []
    for path in sorted(directory.glob("*.csv")):
        with path.open(encoding="utf-8", newline="") as handle:
            rows += list(csv.DictReader(handle))
    return rows


def logs_on(samba_dc, username: str, password: str) -> bool:
    """A simple bind over LDAPS with the account's own name and password."""
    try:
        conn = samba_dc.connect(f"{samba_dc.domain}\\{username}", password)
    except LDAPBindError:
        return False
    bound = conn.bound
    conn.unbind()
    return bound


def fresh_plan(config: Path):
    prepared = prepare(config)
    target = open_target(prepared)
    try:
        return prepared, plan_for(prepared, read_for_mappings(prepared), target)
    finally:
        target.close()


def test_every_password_on_every_sheet_logs_on(samba_dc, informat_server, ad_env, capsys):
    config_for, root = ad_env
    config = config_for(informat_server.url)
    assert main(["apply", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    sheets = config.parent / "password-sheets"
    assert stat.S_IMODE(sheets.stat().st_mode) == 0o700
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in sheets.iterdir())
    rows = sheet_rows(sheets)
    made = {u["sAMAccountName"].casefold() for u in users_below(samba_dc, root).values()}
    assert len(rows) == len(made) > 100
    assert {r["username"].casefold() for r in rows} == made  # everyone, once
    assert {r["status"] for r in rows} == {"set"}
    failures = [r["username"] for r in rows if not logs_on(samba_dc, r["username"], r["password"])]
    assert failures == []
    html = next(sheets.glob("*.html")).read_text(encoding="utf-8")
    assert all(r["password"] in html for r in rows)
    assert f"Initial passwords of {len(rows)} new account(s)" in out
    assert logs_on(samba_dc, rows[0]["username"], rows[0]["password"] + "x") is False  # can fail


def test_a_sheets_directory_others_can_write_to_stops_the_run_before_anything_is_set(
    samba_dc, informat_server, ad_env, capsys
):
    config_for, root = ad_env
    config = config_for(informat_server.url)
    sheets = config.parent / "password-sheets"
    sheets.mkdir()
    sheets.chmod(0o777)
    assert main(["apply", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "writable by others" in err and f"chmod 700 {sheets}" in err
    assert "Traceback" not in err
    assert users_below(samba_dc, root) == {}  # no account, so no password, was set
    assert list(sheets.iterdir()) == []


def test_a_full_disk_when_the_escrow_is_written_applies_nothing(samba_dc, informat_server, ad_env):
    """RLIMIT_FSIZE fails the escrow's write as a full disk would (EFBIG for ENOSPC)."""
    config_for, root = ad_env
    config = config_for(informat_server.url)
    prepared, plan = fresh_plan(config)
    sheets = config.parent / "password-sheets"
    target = open_target(prepared)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    with StateStore(config.parent / "state.db") as store:
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
        try:
            with pytest.raises(SheetError, match="no password was set and nothing was changed"):
                apply_changes(plan, target, store, sheets=sheets)
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
            signal.signal(signal.SIGXFSZ, previous)
            target.close()
    assert users_below(samba_dc, root) == {}
    assert list(sheets.iterdir()) == []  # no half-written sheet either


class Interrupted(Exception):
    pass


def test_an_interrupted_run_leaves_every_password_it_may_have_set_on_the_escrow(
    samba_dc, informat_server, ad_env
):
    config_for, root = ad_env
    config = config_for(informat_server.url)
    prepared, plan = fresh_plan(config)
    target = open_target(prepared)
    creates = [i for i, c in enumerate(plan.changes) if c.action is Action.CREATE]
    stop_at = creates[20]

    class StopsHalfWay:
        """The real DC; the run stops (a crash, Ctrl-C) after the 20th account."""

        name_attributes = target.name_attributes

        def check(self, change):
            return target.check(change)

        def apply_all(self, changes, passwords) -> Iterator[Result]:
            for index, result in enumerate(target.apply_all(changes, passwords)):
                if index == stop_at:
                    raise Interrupted
                yield result

    sheets = config.parent / "password-sheets"
    with StateStore(config.parent / "state.db") as store, pytest.raises(Interrupted):
        apply_changes(plan, StopsHalfWay(), store, sheets=sheets)  # type: ignore[arg-type]
    target.close()
    rows = sheet_rows(sheets)
    done = [r for r in rows if r["status"] == "set"]
    pending = [r for r in rows if r["status"] == PENDING]
    assert len(rows) == len(creates) and len(done) == 20
    assert all(logs_on(samba_dc, r["username"], r["password"]) for r in done)
    made = {u["sAMAccountName"].casefold() for u in users_below(samba_dc, root).values()}
    # The create in flight when the run stopped may or may not be done: it is still pending.
    assert {r["username"].casefold() for r in done} <= made
    assert made <= {r["username"].casefold() for r in done + pending}


def test_an_account_already_there_gets_password_unknown_never_a_password_not_set(
    samba_dc, informat_server, ad_env
):
    """Two runs race: the other one made the accounts between this run's check and its create.
    This run's passwords were never set, so none may reach a sheet; the other run's still work."""
    config_for, _root = ad_env
    config = config_for(informat_server.url)
    prepared, plan = fresh_plan(config)
    first_sheets = config.parent / "first-run-sheets"
    target = open_target(prepared)
    with StateStore(config.parent / "state.db") as store:
        apply_changes(plan, target, store, sheets=first_sheets)
    target.close()
    first = {r["username"]: r["password"] for r in sheet_rows(first_sheets)}
    assert len(first) > 100

    target = open_target(prepared)
    target.already_there = lambda change: None  # type: ignore[method-assign] - the race window
    given: dict[int, str] = {}

    class Racing:
        """The real target, with the passwords it is given kept for the test to look for."""

        name_attributes = target.name_attributes

        def check(self, change):
            return target.check(change)

        def apply_all(self, changes, passwords) -> Iterator[Result]:
            given.update(passwords)
            return target.apply_all(changes, passwords)

    second_sheets = config.parent / "second-run-sheets"
    with StateStore(config.parent / "state.db") as store:
        outcome = apply_changes(plan, Racing(), store, sheets=second_sheets)  # type: ignore[arg-type]
    target.close()
    creates = [r for r in outcome.results if r.change.action is Action.CREATE]
    assert creates and all(r.password_unknown for r in creates)
    rows = sheet_rows(second_sheets)
    assert {r["username"] for r in rows} == set(first)
    assert {(r["status"], r["password"]) for r in rows} == {(UNKNOWN, "")}
    html = next(second_sheets.glob("*.html")).read_text(encoding="utf-8")
    assert "password unknown: use `provisioner password reset`" in html
    everything = html + "".join(p.read_text() for p in second_sheets.iterdir())
    assert given and not any(password in everything for password in given.values())
    # Nothing changed the accounts' passwords: the first run's sheet is still right.
    assert all(logs_on(samba_dc, username, password) for username, password in first.items())


def test_a_password_reset_writes_its_sheet_first_and_removes_it_when_the_reset_fails(
    samba_dc, informat_server, ad_env, capsys
):
    config_for, root = ad_env
    config = config_for(informat_server.url)
    assert main(["apply", "--config", str(config)]) == 0
    capsys.readouterr()
    sheets = config.parent / "password-sheets"
    row = sheet_rows(sheets)[0]
    username, old = row["username"], row["password"]
    (anchor,) = [
        a for a, u in users_below(samba_dc, root).items() if u["sAMAccountName"] == username
    ]
    before = sorted(sheets.iterdir())

    # On the command line: a new sheet whose password logs on, and the old one no longer does.
    assert main(["password", "reset", "--config", str(config), anchor]) == 0
    assert f"New password for {username}" in capsys.readouterr().out
    made = sorted(set(sheets.iterdir()) - set(before))
    assert [p.suffix for p in made] == [".csv", ".html"]
    (reset,) = sheet_rows_of(made[0])
    assert reset["status"] == "set" and reset["group"] == row["group"]
    assert logs_on(samba_dc, username, reset["password"])
    assert not logs_on(samba_dc, username, old)

    # The directory refuses (no such account): the sheet is removed and the error says so.
    prepared = prepare(config)
    target = open_target(prepared)
    line = Handout(username, row["name"], row["group"], password="")
    try:
        with pytest.raises(ProvisionerError, match=r"was not reset .* its sheet was removed"):
            reset_password(
                target, "no-such-anchor", line, passwords=PasswordConfig(), sheets=sheets
            )
    finally:
        target.close()
    assert sorted(sheets.iterdir()) == sorted([*before, *made])

    # A sheets directory others can write to: refused before the password is touched.
    sheets.chmod(0o777)
    try:
        assert main(["password", "reset", "--config", str(config), anchor]) == 1
    finally:
        sheets.chmod(0o700)
    assert "writable by others" in capsys.readouterr().err
    assert logs_on(samba_dc, username, reset["password"])  # unchanged
    assert sorted(sheets.iterdir()) == sorted([*before, *made])


def sheet_rows_of(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))
