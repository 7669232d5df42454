"""The SQLite state store: anchors, issued names, run history, schema version and migrations."""

from __future__ import annotations

import datetime as dt
import sqlite3
import stat

import pytest

from provisioner.state import MIGRATIONS, SCHEMA_VERSION, StateError, StateStore


def test_a_new_store_is_private_and_at_the_current_version(tmp_path):
    path = tmp_path / "state.db"
    with StateStore(path) as store:
        assert store.version == SCHEMA_VERSION == len(MIGRATIONS)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_anchors_and_names_survive_a_reopen(tmp_path):
    path = tmp_path / "state.db"
    with StateStore(path) as store:
        store.remember_anchors("account", [("123", "guid-1")])
        store.issue_names([("123", "Jan.Peeters"), ("124", "an.smet")])
        store.issue_names([("999", "jan.peeters")])  # same name, other case: first holder stays
    with StateStore(path) as store:
        assert store.target_id("account", "123") == "guid-1"
        assert store.target_id("account", "nope") is None
        assert store.issued_names() == {"Jan.Peeters", "an.smet"}
        store.remember_anchors("account", [("123", "guid-2")])  # re-created object: new id
        assert store.target_id("account", "123") == "guid-2"


def test_run_history(tmp_path):
    with StateStore(tmp_path / "state.db") as store:
        run = store.start_run("apply")
        store.finish_run(run, "ok", {"create": 3})
        (latest,) = store.runs()
        assert (latest["command"], latest["outcome"], latest["summary"]) == (
            "apply",
            "ok",
            {"create": 3},
        )
        assert latest["finished"] is not None


def test_an_older_file_is_migrated_and_a_newer_one_refused(tmp_path):
    path = tmp_path / "state.db"
    sqlite3.connect(path).close()  # version 0: an empty database
    with StateStore(path) as store:
        assert store.version == SCHEMA_VERSION
        store.issue_names([("1", "a")])
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    with pytest.raises(StateError, match="upgrade provisioner"):
        StateStore(path)


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path):
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StateError, match="cannot be opened"):
        StateStore(path)


# -- transactions: one per step ---------------------------------------------------------------


def _rows(path, table):
    """Count rows through a second connection: what another process (or a crash) would see."""
    db = sqlite3.connect(path)
    try:
        return db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        db.close()


class Boom(Exception):
    pass


def test_a_failure_inside_a_transaction_leaves_nothing_written(tmp_path):
    path = tmp_path / "state.db"
    with StateStore(path) as store:
        with pytest.raises(Boom), store.transaction():
            store.remember_anchors("account", [("1", "guid-1"), ("2", "guid-2")])
            store.issue_names([("1", "jan.peeters")])
            store.remember_kinds([("1", "pupils", "030569")])
            store.track_leavers(["3"], [], dt.date(2026, 1, 15))
            store.finish_run(store.start_run("apply"), "ok", {})
            raise Boom
        # The store is usable afterwards: not stuck inside the rolled-back transaction.
        assert not store.db.in_transaction
        store.issue_names([("4", "an.smet")])
    for table in ("anchors", "account_kinds", "leavers", "runs"):
        assert _rows(path, table) == 0, table
    assert _rows(path, "issued_names") == 1


def test_many_rows_commit_together_at_the_end_of_the_step(tmp_path):
    path = tmp_path / "state.db"
    with StateStore(path) as store:
        statements: list[str] = []
        store.db.set_trace_callback(statements.append)
        with store.transaction():
            store.remember_anchors("account", [(str(i), f"guid-{i}") for i in range(500)])
            for i in range(500):  # one call per created account, as apply records usernames
                store.issue_names([(str(i), f"user{i}")])
            store.remember_kinds((str(i), "pupils", "030569") for i in range(500))
            store.track_leavers([], [str(i) for i in range(500)], dt.date(2026, 1, 15))
            assert _rows(path, "anchors") == 0  # nothing visible before the commit
        store.db.set_trace_callback(None)
        assert statements.count("BEGIN IMMEDIATE") == 1
        assert statements.count("COMMIT") == 1
        assert _rows(path, "anchors") == _rows(path, "issued_names") == 500


def test_a_write_outside_a_transaction_is_one_transaction_of_its_own(tmp_path):
    path = tmp_path / "state.db"
    with StateStore(path) as store:
        statements: list[str] = []
        store.db.set_trace_callback(statements.append)
        store.issue_names([(str(i), f"user{i}") for i in range(500)])
        store.db.set_trace_callback(None)
        assert (statements.count("BEGIN IMMEDIATE"), statements.count("COMMIT")) == (1, 1)
        # All or nothing: the second pair reuses guid-1 (one object, one anchor), so neither stays.
        with pytest.raises(sqlite3.IntegrityError):
            store.remember_anchors("account", [("1", "guid-1"), ("2", "guid-1")])
        assert store.target_id("account", "1") is None
        assert not store.db.in_transaction


def test_a_nested_failure_undoes_only_its_own_writes(tmp_path):
    path = tmp_path / "state.db"
    with StateStore(path) as store:
        with store.transaction():
            store.issue_names([("1", "jan.peeters")])
            with pytest.raises(Boom), store.transaction():
                store.issue_names([("2", "an.smet")])
                raise Boom
            with pytest.raises(sqlite3.IntegrityError):  # a failing write method, likewise
                store.remember_anchors("account", [("1", "guid-1"), ("2", "guid-1")])
            store.remember_anchors("account", [("1", "guid-1")])
            with store.transaction():  # joins: committed only with the outer transaction
                store.track_leavers(["3"], [], dt.date(2026, 1, 15))
            assert _rows(path, "leavers") == 0
        assert store.issued_names() == {"jan.peeters"}
        assert store.target_id("account", "1") == "guid-1"
        assert store.leavers() == {"3": dt.date(2026, 1, 15)}


def test_a_failed_migration_is_rolled_back(tmp_path):
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE leavers (anchor TEXT)")  # in the way of migration 2
    db.execute("PRAGMA user_version = 1")
    db.close()
    with pytest.raises(StateError, match="migration to 2 failed"):
        StateStore(path)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "account_kinds" not in tables  # created by migration 2 before it failed, then undone
    db.close()


def test_an_anchor_changed_by_hand_moves_the_id_to_the_new_anchor(tmp_path):
    with StateStore(tmp_path / "state.db") as store:
        store.remember_anchors("account", [("123", "guid-1")])
        store.remember_anchors("account", [("456", "guid-1")])  # employeeID edited in the DC
        assert store.anchor_ids("account") == {"456": "guid-1"}
        assert store.anchor_ids("group") == {}


def test_a_store_made_before_with_a_wide_mode_becomes_private(tmp_path):
    """An older state.db (or one copied in) readable by everyone: opening it tightens it, and its
    journal and write-ahead files with it."""
    path = tmp_path / "state.db"
    with StateStore(path) as store:
        store.issue_names([("123", "jan.peeters")])
    side = [tmp_path / "state.db-journal", tmp_path / "state.db-wal"]
    for file in side:
        file.write_bytes(b"")
    for file in (path, *side):
        file.chmod(0o644)
    with StateStore(path) as store:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert [stat.S_IMODE(f.stat().st_mode) for f in side if f.exists()] == [0o600, 0o600]
        assert store.issued_names() == {"jan.peeters"}


def test_a_link_in_place_of_the_store_is_refused(tmp_path):
    from provisioner.errors import ConfigError

    elsewhere = tmp_path / "elsewhere.db"
    elsewhere.write_bytes(b"")
    elsewhere.chmod(0o644)
    (tmp_path / "state.db").symlink_to(elsewhere)
    with pytest.raises(ConfigError, match="symbolic link"):
        StateStore(tmp_path / "state.db")
    assert stat.S_IMODE(elsewhere.stat().st_mode) == 0o644
