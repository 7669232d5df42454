"""No password lost or wrong, on Entra ID (the real msgraph-sdk against the project's Graph
server, which keeps the password each user was given): every password on every sheet is the
user's; a sheets directory others can write to sets nothing; an account already there gets
"password unknown"; a password reset's sheet holds the password the user now has."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.apply import apply_changes, reset_password
from provisioner.errors import ProvisionerError
from provisioner.passwords import UNKNOWN, Handout, PasswordConfig
from provisioner.pipeline import open_target, plan_for, prepare, read_for_mappings
from provisioner.plan.model import Action
from provisioner.state import StateStore
from provisioner.targets.base import Result
from tests import test_entra

# The Graph server, its CA and the test's clock, as tests/test_entra.py makes them.
graph_ca, clock, graph, entra_env, cli = (
    test_entra.graph_ca,
    test_entra.clock,
    test_entra.graph,
    test_entra.entra_env,
    test_entra.cli,
)


def sheet_rows(directory: Path) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for path in sorted(directory.glob("*.csv")):
        with path.open(encoding="utf-8", newline="") as handle:
            rows += list(csv.DictReader(handle))
    return rows


def passwords_held(server) -> dict[str, str]:
    """What the server holds: each managed user's password, by mailNickname (the username)."""
    return {
        str(user["mailNickname"]).casefold(): user["passwordProfile"]["password"]
        for user in server.users.values()
        if user.get("employeeId")
    }


def test_every_password_on_every_sheet_is_the_users_password(
    graph, informat_server, entra_env, cli
):
    config = entra_env(informat_server.url)
    cli.apply(config)
    rows = sheet_rows(config.parent / "password-sheets")
    held = passwords_held(graph)
    assert len(rows) == len(held) > 100
    assert {r["status"] for r in rows} == {"set"}
    wrong = [r["username"] for r in rows if held.get(r["username"].casefold()) != r["password"]]
    assert wrong == []


def test_a_sheets_directory_others_can_write_to_creates_nobody(
    graph, informat_server, entra_env, cli, capsys
):
    config = entra_env(informat_server.url)
    sheets = config.parent / "password-sheets"
    sheets.mkdir()
    sheets.chmod(0o757)
    assert cli(["apply", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "writable by others" in err and "chmod 700" in err and "Traceback" not in err
    assert passwords_held(graph) == {}
    assert list(sheets.iterdir()) == []


def test_an_account_already_there_gets_password_unknown_never_a_password_not_set(
    graph, informat_server, entra_env, clock
):
    """Two runs race: the other made the users between this run's check and its create."""
    config = entra_env(informat_server.url)
    prepared = prepare(config)
    seams = {"sleep": clock.wait, "clock": clock}
    target = open_target(prepared, **seams)
    plan = plan_for(prepared, read_for_mappings(prepared), target)
    target.close()
    target = open_target(prepared, **seams)
    with StateStore(config.parent / "state.db") as store:
        apply_changes(plan, target, store, sheets=config.parent / "first")
    target.close()
    first = {r["username"].casefold(): r["password"] for r in sheet_rows(config.parent / "first")}
    assert first == passwords_held(graph)

    target = open_target(prepared, **seams)
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

    with StateStore(config.parent / "state.db") as store:
        outcome = apply_changes(plan, Racing(), store, sheets=config.parent / "second")  # type: ignore[arg-type]
    target.close()
    creates = [r for r in outcome.results if r.change.action is Action.CREATE]
    assert creates and all(r.status == "applied" for r in creates)
    rows = sheet_rows(config.parent / "second")
    assert {r["username"].casefold() for r in rows} == set(first)
    assert {(r["status"], r["password"]) for r in rows} == {(UNKNOWN, "")}
    everything = "".join(p.read_text() for p in (config.parent / "second").iterdir())
    assert given and not any(password in everything for password in given.values())
    assert passwords_held(graph) == first  # nobody's password changed


def test_a_password_reset_sheet_holds_the_users_new_password(
    graph, informat_server, entra_env, cli, clock, capsys
):
    config = entra_env(informat_server.url)
    cli.apply(config)
    sheets = config.parent / "password-sheets"
    before = set(sheets.iterdir())
    user = next(u for u in graph.users.values() if u.get("employeeId"))
    assert cli(["password", "reset", "--config", str(config), user["employeeId"]]) == 0
    assert "New password for" in capsys.readouterr().out
    made = sorted(set(sheets.iterdir()) - before)
    assert [p.suffix for p in made] == [".csv", ".html"]
    # The p_persoon alone would do too, unless the person also has a staff account; a query
    # that finds nobody, or several accounts, says what to give instead.
    assert cli(["password", "reset", "--config", str(config), "Nobody-Anywhere"]) == 1
    assert "matches no account; give an anchor, a p_persoon or a name" in capsys.readouterr().err
    (row,) = sheet_rows_of(next(p for p in made if p.suffix == ".csv"))
    assert row["status"] == "set"
    assert user["passwordProfile"]["password"] == row["password"]

    prepared = prepare(config)
    target = open_target(prepared, sleep=clock.wait, clock=clock)
    line = Handout("nobody", "Nobody", "1A", password="")
    try:
        with pytest.raises(ProvisionerError, match=r"was not reset .* its sheet was removed"):
            reset_password(
                target, "no-such-anchor", line, passwords=PasswordConfig(), sheets=sheets
            )
    finally:
        target.close()
    assert set(sheets.iterdir()) == before | set(made)


def sheet_rows_of(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))
