"""``provisioner state backup|restore`` (and what ``rebuild`` reads), and what the state store
keeps of a deleted person: only the names."""

from __future__ import annotations

import datetime as dt
import sqlite3
import stat
from pathlib import Path

import pytest

from provisioner.apply import record_lifecycle
from provisioner.cli import main
from provisioner.config import load_config
from provisioner.lock import run_lock
from provisioner.model import ObservedAccount, ObservedGroup, ObservedState
from provisioner.pipeline import prepare
from provisioner.plan.model import Action, Change, Kind, Precondition
from provisioner.plan.seal import key_path, load_key
from provisioner.state import MIGRATIONS, SCHEMA_VERSION, StateStore
from provisioner.statecmds import recover
from tests.test_cli_mapping import sample_with_mappings

DAY = dt.date(2026, 12, 1)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """The sample configuration with a state store that has a run, names and a plan key."""
    path = sample_with_mappings(tmp_path)
    path.write_text(path.read_text() + "state: state.db\n")
    with StateStore(tmp_path / "state.db") as store:
        run = store.start_run("apply")
        store.issue_names([("lln-1", "jjanssens"), ("lln-2", "apeeters")])
        store.finish_run(run, "ok", {"applied": 2})
    load_key(key_path(tmp_path / "state.db"), create=True)
    return path


def backups_of(folder: Path) -> list[Path]:
    return sorted(p for p in (folder / "backups").glob("state-*.db"))


def test_a_backup_is_consistent_while_another_process_reads_and_writes(config, capsys):
    state = config.parent / "state.db"
    reader = sqlite3.connect(state, isolation_level=None)
    writer = sqlite3.connect(state, isolation_level=None)
    try:
        reader.execute("BEGIN")
        assert reader.execute("SELECT COUNT(*) FROM issued_names").fetchone() == (2,)
        # A night half-way: its write is not committed, so it is not in the backup.
        writer.execute("BEGIN IMMEDIATE")
        writer.execute(
            "INSERT INTO issued_names (name_folded, name, anchor, issued) "
            "VALUES ('half', 'half', 'lln-3', '2026-12-01')"
        )
        assert main(["state", "backup", "--config", str(config)]) == 0
    finally:
        writer.execute("ROLLBACK")
        reader.execute("COMMIT")
        reader.close()
        writer.close()
    out = capsys.readouterr().out
    (backup,) = backups_of(config.parent)
    assert str(backup) in out and str(key_path(backup)) in out
    assert mode(backup) == 0o600 and mode(key_path(backup)) == 0o600
    assert mode(backup.parent) == 0o700
    assert key_path(backup).read_bytes() == key_path(state).read_bytes()
    with StateStore(backup) as copy:
        assert copy.issued_names() == {"jjanssens", "apeeters"}
        assert [r["outcome"] for r in copy.runs()] == ["ok"]


def test_a_backup_never_overwrites_a_file(config, tmp_path, capsys):
    target = tmp_path / "elsewhere.db"
    target.write_text("precious")
    assert main(["state", "backup", "--config", str(config), "--to", str(target)]) == 1
    assert "exists already" in capsys.readouterr().err
    assert target.read_text() == "precious"
    assert main(["state", "backup", "--config", str(config), "--to", str(tmp_path / "b.db")]) == 0
    assert mode(tmp_path / "b.db") == 0o600 and (tmp_path / "b.db.plan-key").exists()


def test_restore_puts_a_lost_store_back_with_its_key(config, capsys):
    state = config.parent / "state.db"
    assert main(["state", "backup", "--config", str(config)]) == 0
    (backup,) = backups_of(config.parent)
    key = key_path(state).read_bytes()
    state.unlink()
    key_path(state).unlink()
    journal = state.with_name("state.db-journal")
    journal.write_bytes(b"left by the lost store")  # never to be played into the restored one
    assert main(["state", "restore", "--config", str(config), str(backup)]) == 0
    out = capsys.readouterr().out
    assert "restored the state store" in out and "replaced" not in out
    assert not journal.exists()
    (aside,) = config.parent.glob("state.db.replaced-*-journal")
    assert aside.read_bytes() == b"left by the lost store"
    assert mode(state) == 0o600 and mode(key_path(state)) == 0o600
    assert key_path(state).read_bytes() == key
    with StateStore(state) as store:
        assert store.issued_names() == {"jjanssens", "apeeters"}
        assert store.version == SCHEMA_VERSION


def test_restore_refuses_a_store_with_newer_runs_unless_forced(config, capsys):
    state = config.parent / "state.db"
    assert main(["state", "backup", "--config", str(config)]) == 0
    (backup,) = backups_of(config.parent)
    with StateStore(state) as store:  # a night after the backup
        run = store.start_run("apply")
        store.issue_names([("lln-9", "nieuw")])
        store.finish_run(run, "ok", {"applied": 1})
    capsys.readouterr()
    assert main(["state", "restore", "--config", str(config), str(backup)]) == 1
    err = capsys.readouterr().err
    assert "holds 1 run(s) newer than the backup" in err and "--force" in err
    with StateStore(state) as store:
        assert "nieuw" in store.issued_names()  # untouched

    assert main(["state", "restore", "--config", str(config), str(backup), "--force"]) == 0
    (aside,) = config.parent.glob("state.db.replaced-*")
    assert str(aside) in capsys.readouterr().out
    assert mode(aside) == 0o600
    with StateStore(aside) as replaced:
        assert "nieuw" in replaced.issued_names()  # kept aside, not lost
    with StateStore(state) as store:
        assert "nieuw" not in store.issued_names()


def test_restore_over_an_older_store_keeps_it_aside(config, capsys):
    state = config.parent / "state.db"
    assert main(["state", "backup", "--config", str(config)]) == 0
    (backup,) = backups_of(config.parent)
    state.unlink()
    with StateStore(state):
        pass  # an empty store, made by a plan after the loss: no runs, nothing to lose
    assert main(["state", "restore", "--config", str(config), str(backup)]) == 0
    assert len(list(config.parent.glob("state.db.replaced-*"))) == 1
    with StateStore(state) as store:
        assert store.issued_names() == {"jjanssens", "apeeters"}


def old_store(path: Path, version: int) -> None:
    """A state store as an older provisioner left it (schema *version*)."""
    db = sqlite3.connect(path)
    for script in MIGRATIONS[:version]:
        db.executescript(script)
    db.execute(f"PRAGMA user_version = {version}")
    db.execute(
        "INSERT INTO runs (started, finished, command, outcome) "
        "VALUES ('2026-01-01T02:00:00+00:00', '2026-01-01T02:05:00+00:00', 'apply', 'ok')"
    )
    db.execute(
        "INSERT INTO issued_names (name_folded, name, anchor, issued) "
        "VALUES ('oud', 'oud', 'lln-7', '2026-01-01T02:00:00+00:00')"
    )
    db.commit()
    db.close()


def test_restore_brings_an_older_backup_up_to_date(config, tmp_path):
    backup = tmp_path / "old.db"
    old_store(backup, 1)
    state = config.parent / "state.db"
    state.unlink()
    assert main(["state", "restore", "--config", str(config), str(backup)]) == 0
    with StateStore(state) as store:
        assert store.version == SCHEMA_VERSION
        assert store.issued_to() == {"lln-7": "oud"}
    assert sqlite3.connect(backup).execute("PRAGMA user_version").fetchone() == (1,)  # as it was


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda p: p.write_text("anchor;name\nlln-1;jan\n"), "not an SQLite database"),
        (
            lambda p: sqlite3.connect(p).execute("CREATE TABLE t (x)").connection.commit(),
            "no provisioner state store",
        ),
        (
            lambda p: (old_store(p, SCHEMA_VERSION), _set_version(p, SCHEMA_VERSION + 1)),
            f"newer than this provisioner knows ({SCHEMA_VERSION})",
        ),
    ],
    ids=["text", "other-database", "newer-schema"],
)
def test_restore_refuses_what_is_no_sound_state_store(config, tmp_path, capsys, make, problem):
    state = config.parent / "state.db"
    before = state.read_bytes()
    wrong = tmp_path / "wrong.db"
    make(wrong)
    assert main(["state", "restore", "--config", str(config), str(wrong)]) == 1
    err = capsys.readouterr().err
    assert problem in err and "nothing was changed" in err
    assert state.read_bytes() == before
    # nothing set aside, nothing left over
    assert not [*config.parent.glob("state.db.replaced-*"), *config.parent.glob("*.restoring-*")]


def _set_version(path: Path, version: int) -> None:
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {version}")
    db.commit()
    db.close()


def test_restore_refuses_a_damaged_backup(config, tmp_path, capsys):
    backup = tmp_path / "b.db"
    assert main(["state", "backup", "--config", str(config), "--to", str(backup)]) == 0
    db = sqlite3.connect(backup)
    (size,) = db.execute("PRAGMA page_size").fetchone()
    (root,) = db.execute(
        "SELECT rootpage FROM sqlite_master WHERE name = 'issued_names'"
    ).fetchone()
    db.close()
    damaged = bytearray(backup.read_bytes())
    start = (root - 1) * size
    damaged[start + 1 : start + 12] = b"\xff" * 11  # the names' table page: its header overwritten
    backup.write_bytes(bytes(damaged))
    capsys.readouterr()
    assert main(["state", "restore", "--config", str(config), str(backup)]) == 1
    err = capsys.readouterr().err
    assert "refusing to restore" in err and "damaged" in err


def with_target(config: Path, monkeypatch) -> Path:
    """*config* with an AD target (never contacted: the lock comes from the configuration)."""
    monkeypatch.setenv("TEST_AD_PASSWORD", "geheim")
    config.write_text(
        config.read_text() + f"lock:\n  directory: {config.parent / 'locks'}\n"
        "target:\n  ad:\n    url: ldaps://127.0.0.9:9\n    bind_user: SCHOOL\\\\provisioner\n"
        "    password: ${TEST_AD_PASSWORD}\n    base_dn: DC=school,DC=be\n"
        "    managed_root: OU=Provisioned\n"
    )
    return config


def test_restore_and_rebuild_refuse_while_a_night_runs(config, monkeypatch, capsys):
    config = with_target(config, monkeypatch)
    assert main(["state", "backup", "--config", str(config)]) == 0
    (backup,) = backups_of(config.parent)
    capsys.readouterr()
    with run_lock(load_config(config), "provisioner apply --config x"):
        assert main(["state", "restore", "--config", str(config), str(backup), "--force"]) == 1
        assert "another run" in capsys.readouterr().err
        assert main(["state", "rebuild", "--config", str(config), "--force"]) == 1
        assert "another run" in capsys.readouterr().err
    assert not list(config.parent.glob("state.db.replaced-*"))


def test_rebuild_refuses_when_a_store_exists(config, monkeypatch, capsys):
    config = with_target(config, monkeypatch)
    before = (config.parent / "state.db").read_bytes()
    assert main(["state", "rebuild", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "exists: rebuild only replaces a lost one" in err and "state restore" in err
    assert (config.parent / "state.db").read_bytes() == before


def test_rebuild_reads_kinds_schools_names_and_disabled_accounts(config):
    prepared = prepare(config)
    accounts = prepared.compiled.accounts.values()

    def account(anchor: str | None, username: str, ou: tuple[str, ...], enabled: bool = True):
        return ObservedAccount(
            id=f"id-{username}",
            target=f"CN={username}",
            anchor=anchor,
            username=username,
            ou=ou,
            attributes={"mail": f"{username}@school.be", "department": "1A"},
            enabled=enabled,
        )

    observed = ObservedState(
        accounts=[
            account("lln-1", "jjanssens", ("Leerlingen", "030569", "1A")),
            account("pers-2", "kpeeters", ("Personeel", "030577")),
            account("lln-3", "oud", ("Uitgeschakeld",), enabled=False),
            account("x-4", "vreemd", ("Uitgeschakeld",), enabled=False),
            account(None, "admin", ("Personeel", "030569")),
        ],
        groups=[
            ObservedGroup("g1", "CN=klas", "klas-1A", ("Groepen",), {}),
            ObservedGroup("g2", "CN=oud", "klas-oud", ("Archief",), {}, archived=""),
            # Entra ID: the day of the archive mark in its description
            ObservedGroup("g3", "(archief) 2B", "klas-2B", (), {}, archived="2026-11-02"),
        ],
    )
    found = recover(observed, accounts, name_attributes={"sAMAccountName", "mail"}, today=DAY)
    assert found.account_ids == {
        "lln-1": "id-jjanssens",
        "pers-2": "id-kpeeters",
        "lln-3": "id-oud",
        "x-4": "id-vreemd",
    }
    assert found.kinds == {
        "lln-1": ("pupils", "030569"),
        "pers-2": ("staff", "030577"),
        "lln-3": ("pupils", None),  # in the disabled-accounts OU: no school there
    }
    assert ("lln-1", "mail", "jjanssens@school.be") in found.names
    assert ("lln-3", "username", "oud") in found.names
    assert not any(value == "1A" for _, _, value in found.names)  # not a name attribute
    assert not any(anchor == "admin" for anchor, _, _ in found.names)
    assert sorted(found.disabled) == ["lln-3", "x-4"] and found.unknown_kind == 1
    assert found.group_ids == {"klas-1A": "g1", "klas-oud": "g2", "klas-2B": "g3"}
    assert found.archived == {"klas-oud": DAY, "klas-2B": dt.date(2026, 11, 2)}


def delete_of(anchor: str) -> Change:
    return Change(
        Action.DELETE,
        Kind.ACCOUNT,
        anchor,
        f"CN={anchor}",
        before={"username": "jjanssens"},
        precondition=Precondition(id="guid-1", enabled=False),
    )


def test_a_deleted_person_is_forgotten_but_for_the_names_given(tmp_path):
    with StateStore(tmp_path / "state.db") as store:
        store.remember_kinds([("lln-1", "pupils", "030569"), ("lln-2", "pupils", "030569")])
        store.remember_anchors("account", [("lln-1", "guid-1"), ("lln-2", "guid-2")])
        store.issue_values([("lln-1", "username", "jjanssens"), ("lln-1", "mail", "j@s.be")])
        store.record_disabled(["lln-1", "lln-2"], DAY)
        store.track_held([("pupils", "lln-1")], [], DAY)

        record_lifecycle(delete_of("lln-1"), store, DAY)

        assert "lln-1" not in store.kinds() and "lln-1" not in store.schools()
        assert "lln-1" not in store.leavers() and "lln-1" not in store.disabled_since()
        assert "lln-1" not in store.anchor_ids("account")
        assert store.held_since() == {}
        # The names stay taken, and given back to the same person should they return.
        assert store.issued_names() == {"jjanssens", "j@s.be"}
        assert store.issued_to() == {"lln-1": "jjanssens"}
        # Someone else is untouched.
        assert store.kinds() == {"lln-2": "pupils"}
        assert store.disabled_since() == {"lln-2": DAY}
        assert store.anchor_ids("account") == {"lln-2": "guid-2"}
        # A group's deletion is not a person's.
        group = Change(Action.DELETE_GROUP, Kind.GROUP, "lln-2", "CN=g")
        record_lifecycle(group, store, DAY)
        assert store.kinds() == {"lln-2": "pupils"}


def test_backups_older_than_keep_days_are_removed(config, capsys):
    folder = config.parent / "backups"
    assert main(["state", "backup", "--config", str(config)]) == 0
    (recent,) = backups_of(config.parent)
    old = folder / f"state-{dt.datetime.now(dt.UTC) - dt.timedelta(days=31):%Y-%m-%dT%H%M%SZ}.db"
    old.write_bytes(recent.read_bytes())
    key_path(old).write_bytes(key_path(recent).read_bytes())
    other = folder / "state-kept-by-hand.db"  # not named as backup names its files: left alone
    other.write_text("x")
    assert main(["state", "backup", "--config", str(config), "--keep-days", "0"]) == 0
    assert old.exists()  # 0 keeps every backup
    capsys.readouterr()
    assert main(["state", "backup", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"removed the backup {old}, older than 30 days" in out
    assert not old.exists() and not key_path(old).exists()
    assert other.exists() and recent.exists()
    made = [p for p in backups_of(config.parent) if p != other]
    assert len(made) == 3  # within one second too, each a name of its own
