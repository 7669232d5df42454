"""Two ``provisioner apply`` processes at once against Entra ID (the real msgraph-sdk in each,
against the project's Graph server): one applies, the other is refused (or waits and then finds
nothing to do); no twin group, and every password on every sheet is the one the account has."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.fakes.graph_server import GraphServer
from tests.scenarios import config_head
from tests.test_concurrency_ad import (
    apply_at_once,
    one_password_each,
    sheet_passwords,
    winner_and_loser,
)
from tests.test_entra import CLIENT, SECRET, TENANT, entra_target

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def graph(tmp_path):
    """A Graph server on real time: the runs are separate processes with their own clocks."""
    with GraphServer(tls=True) as server:
        server.register_app(TENANT, CLIENT, secret=SECRET)
        yield server


@pytest.fixture
def config_for(graph, tmp_path, monkeypatch):
    monkeypatch.setenv("TEST_INFORMAT_PASSWORD", "geheim")
    monkeypatch.setenv("TEST_ENTRA_SECRET", SECRET)

    def write(informat_url: str, wait: float = 0) -> Path:
        path = tmp_path / "provisioner.yaml"
        path.write_text(
            config_head(informat_url, ROOT / "examples/entra/mappings")
            + entra_target(graph)
            + f"lock:\n  wait: {wait}\n  directory: {tmp_path / 'locks'}\n"
        )
        return path

    return write


def assert_no_twins_and_every_password_is_set(graph: GraphServer, config: Path) -> None:
    nicknames = Counter(g["mailNickname"] for g in graph.groups.values())
    assert nicknames and max(nicknames.values()) == 1, "twin groups"
    anchors = Counter(u.get("employeeId") for u in graph.users.values() if u.get("employeeId"))
    assert len(anchors) > 100 and max(anchors.values()) == 1, "twin accounts"

    # The server keeps each user's passwordProfile as it was last set: the one to log on with.
    by_name = {u["mailNickname"].lower(): u for u in graph.users.values()}
    by_name |= {u["userPrincipalName"].lower(): u for u in graph.users.values()}
    logins = one_password_each(sheet_passwords(config.parent / "password-sheets"))
    assert len(logins) == len(anchors)  # every new account on a sheet
    wrong = [
        username
        for username, password in logins.items()
        if by_name[username]["passwordProfile"]["password"] != password
    ]
    assert wrong == []


def test_two_applies_at_once_one_applies_the_other_is_refused(graph, informat_server, config_for):
    config = config_for(informat_server.url)
    winner, loser = winner_and_loser(apply_at_once(config, config))
    assert f"error: another run (pid {winner.pid}, `provisioner apply --config {config}`" in (
        loser.err
    )
    assert ", started at 20" in loser.err and "wait for it or stop it" in loser.err
    assert "holds the lock on " in loser.err
    assert_no_twins_and_every_password_is_set(graph, config)


def test_a_second_apply_waits_and_then_finds_nothing_to_do(graph, informat_server, config_for):
    config = config_for(informat_server.url, wait=600)
    runs = apply_at_once(config, config)
    assert [r.code for r in runs] == [0, 0], [r.err[-2000:] for r in runs]
    (waiter,) = [r for r in runs if "waiting up to 600 s" in r.err]
    (first,) = [r for r in runs if r is not waiter]
    assert f"another run (pid {first.pid}, `provisioner apply" in waiter.err
    assert "Initial passwords of " in first.out
    assert "Initial passwords" not in waiter.out
    assert len(list((config.parent / "password-sheets").glob("*.csv"))) == 1
    assert_no_twins_and_every_password_is_set(graph, config)


def test_two_configurations_with_their_own_state_store_collide_on_the_tenant(
    graph, informat_server, config_for, tmp_path
):
    """A copy of the configuration in another folder (its own state store, as a second school
    year's folder would have): the lock on the directory still keeps the runs apart."""
    config = config_for(informat_server.url)
    other = tmp_path / "copy" / "provisioner.yaml"
    other.parent.mkdir()
    other.write_text(config.read_text())
    winner, loser = winner_and_loser(apply_at_once(config, other))
    assert f"error: another run (pid {winner.pid}, `provisioner apply --config" in loser.err
    assert "holds the lock on Entra ID" in loser.err
    assert_no_twins_and_every_password_is_set(graph, winner.config)
    assert not list(loser.config.parent.glob("password-sheets/*.csv"))
