"""The SQLite state store: anchors, issued names, run history, schema version and migrations."""

from __future__ import annotations

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
