"""The kept read of the directory (provisioner.readcache): when it may be the base of an
incremental read, and what is kept. The targets' incremental reads are tested against the Samba
DC and the Graph server in their own files."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import zlib
from pathlib import Path

import pytest

from provisioner.readcache import ReadCache
from provisioner.state import MIGRATIONS, StateStore

START = dt.datetime(2026, 12, 1, 2, 30, tzinfo=dt.UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> dt.datetime:
        return self.now


def cache(path: Path | None, clock: Clock, **options: object) -> ReadCache:
    settings: dict = {"mappings": "m1", "full_read_every": 7, **options}
    return ReadCache(path, "ad ldaps://dc/OU=Managed", now=clock, **settings)


def store(tmp_path: Path) -> Path:
    path = tmp_path / "state.db"
    StateStore(path).close()
    return path


def test_a_kept_read_comes_back_as_the_base_of_the_next(tmp_path: Path) -> None:
    path, clock = store(tmp_path), Clock()
    first = cache(path, clock)
    assert first.last("root|attrs") is None
    assert first.why_full == "no earlier read is kept"
    objects = {"guid-1": ["CN=Ann,OU=Managed", {"sn": ["Peeters"]}]}
    first.keep("root|attrs", {"usn": 41, "invocation_id": "abc"}, objects, full=True)

    clock.now += dt.timedelta(days=1)
    second = cache(path, clock)
    base = second.last("root|attrs")
    assert base is not None and second.why_full == ""
    assert base.objects == objects
    assert base.watermark == {"usn": 41, "invocation_id": "abc"}
    assert base.full_read_at == START

    # an incremental read keeps the time of the full read it builds on
    second.keep("root|attrs", {"usn": 57, "invocation_id": "abc"}, {}, full=False)
    with StateStore(path) as kept:
        row = kept.last_read("ad ldaps://dc/OU=Managed")
    assert row is not None and row["full_read_at"] == START
    assert row["watermark"] == {"usn": 57, "invocation_id": "abc"}


def test_a_full_read_is_due_after_full_read_every_days(tmp_path: Path) -> None:
    path, clock = store(tmp_path), Clock()
    cache(path, clock).keep("s", {"usn": 1}, [], full=True)
    clock.now += dt.timedelta(days=6, hours=23)
    assert cache(path, clock).last("s") is not None
    clock.now += dt.timedelta(hours=1)
    late = cache(path, clock)
    assert late.last("s") is None
    assert late.why_full == "the last full read was 7 day(s) ago (full_read_every: 7)"
    # a full read restarts the clock
    late.keep("s", {"usn": 2}, [], full=True)
    assert cache(path, clock).last("s") is not None


def test_other_mappings_another_scope_a_request_or_zero_days_mean_a_full_read(
    tmp_path: Path,
) -> None:
    path, clock = store(tmp_path), Clock()
    cache(path, clock).keep("s", {"usn": 1}, [], full=True)
    changed = {
        "the mappings or the managed scope changed since the last read": [
            (cache(path, clock, mappings="m2"), "s"),
            (cache(path, clock), "another root"),
        ],
        "a full read was asked for": [(cache(path, clock, full_read=True), "s")],
        "full_read_every is 0": [(cache(path, clock, full_read_every=0), "s")],
    }
    for why, cases in changed.items():
        for each, scope in cases:
            assert each.last(scope) is None
            assert each.why_full == why
    assert cache(path, clock).last("s") is not None


def test_without_a_state_store_nothing_is_kept_or_made(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "state.db"
    for each in (cache(path, clock), cache(None, clock)):
        each.keep("s", {"usn": 1}, {"a": 1}, full=True)
        assert each.last("s") is None
        assert each.why_full == "no earlier read is kept (no state store yet)"
    assert not path.exists()


def test_a_dry_run_keeps_nothing(tmp_path: Path) -> None:
    path, clock = store(tmp_path), Clock()
    cache(path, clock).keep("s", {"usn": 1}, {"a": 1}, full=True)
    before = path.read_bytes()
    dry = cache(path, clock, keeps=False)
    assert not dry.keeps and cache(path, clock).keeps
    assert not cache(path, clock, full_read_every=0).keeps
    assert not cache(tmp_path / "none.db", clock).keeps
    base = dry.last("s")
    assert base is not None and base.objects == {"a": 1}  # it still reads from the kept read
    dry.keep("s", {"usn": 2}, {"a": 2}, full=True)
    assert path.read_bytes() == before


def test_the_kept_read_is_compressed_and_private(tmp_path: Path) -> None:
    path, clock = store(tmp_path), Clock()
    objects = {
        f"guid-{n}": [f"CN=Pupil {n},OU=1A,OU=Managed", {"sn": ["Peeters"]}] for n in range(2000)
    }
    cache(path, clock).keep("s", {"usn": 1}, objects, full=True)
    with StateStore(path) as kept:
        row = kept.last_read("ad ldaps://dc/OU=Managed")
        assert row is not None and len(row["objects"]) < 20_000  # ~80 kB of JSON
        kept.forget_reads()
        assert kept.last_read("ad ldaps://dc/OU=Managed") is None
    assert path.stat().st_mode & 0o777 == 0o600


def pupils(count: int) -> dict[str, list]:
    return {
        f"guid-{n}": [f"CN=Pupil {n},OU=1A,OU=Managed", "u", {"sn": "Peeters"}, []]
        for n in range(count)
    }


def kept_row(path: Path) -> dict:
    with StateStore(path) as kept:
        row = kept.last_read("ad ldaps://dc/OU=Managed")
    assert row is not None
    return row


def test_a_night_that_changed_a_few_objects_writes_only_those(tmp_path: Path) -> None:
    path, clock = store(tmp_path), Clock()
    objects = pupils(500)
    cache(path, clock).keep("s", {"usn": 1}, objects, full=True)
    whole = kept_row(path)["objects"]

    # night 2: one moved, one new (the target says which keys may differ)
    night = cache(path, clock)
    base = night.last("s")
    assert base is not None and base.objects == objects
    folded = dict(base.objects)
    folded["guid-1"] = ["CN=Pupil 1,OU=1B,OU=Managed", "u", {"sn": "Peeters"}, []]
    folded["guid-new"] = ["CN=New,OU=1A,OU=Managed", "u", {"sn": "Smet"}, []]
    night.keep("s", {"usn": 9}, folded, full=False, changed=["guid-1", "guid-new"])
    row = kept_row(path)
    assert row["objects"] == whole  # the objects written whole are left as they were
    assert row["changes"] is not None and len(row["changes"]) < 200
    assert row["watermark"] == {"usn": 9}

    # night 3 gets them folded in, and its own changes are added to the last night's
    third = cache(path, clock)
    base = third.last("s")
    assert base is not None and base.objects == folded
    folded = dict(base.objects)
    folded["guid-3"] = ["CN=Pupil 3,OU=1A,OU=Managed", "u", {"sn": "Janssens"}, []]
    third.keep("s", {"usn": 12}, folded, full=False, changed=["guid-3"])
    assert kept_row(path)["objects"] == whole
    base = cache(path, clock).last("s")
    assert base is not None and base.objects == folded

    # a night with nothing new still keeps the changes since the objects were written whole
    quiet = cache(path, clock)
    base = quiet.last("s")
    assert base is not None and base.objects == folded
    quiet.keep("s", {"usn": 13}, folded, full=False, changed=[])
    assert kept_row(path)["objects"] == whole
    base = cache(path, clock).last("s")
    assert base is not None and base.objects == folded and base.watermark == {"usn": 13}

    # an object gone: everything is written whole, so that nothing of it stays in the file
    gone = cache(path, clock)
    base = gone.last("s")
    assert base is not None and base.objects == folded
    del folded["guid-2"]
    gone.keep("s", {"usn": 14}, folded, full=False, changed=["guid-2"])
    row = kept_row(path)
    assert row["changes"] is None and b"Pupil 2," not in zlib.decompress(row["objects"])
    assert cache(path, clock).last("s").objects == folded  # type: ignore[union-attr]


def test_the_objects_are_written_whole_again_after_a_full_read_or_many_changes(
    tmp_path: Path,
) -> None:
    path, clock = store(tmp_path), Clock()
    objects = pupils(500)
    cache(path, clock).keep("s", {"usn": 1}, objects, full=True)
    # a tenth of the objects changed (50 of 500) is still kept as changes; more is not
    night = cache(path, clock)
    base = night.last("s")
    assert base is not None
    folded = dict(base.objects)
    for key in list(folded)[:50]:
        folded[key] = [folded[key][0], "u", {"sn": "Smet"}, []]
    night.keep("s", {"usn": 2}, folded, full=False, changed=list(folded)[:50])
    assert kept_row(path)["changes"] is not None
    night = cache(path, clock)
    base = night.last("s")
    assert base is not None and base.objects == folded
    folded = dict(base.objects)
    folded["guid-60"] = [folded["guid-60"][0], "u", {"sn": "Smet"}, []]
    night.keep("s", {"usn": 3}, folded, full=False, changed=["guid-60"])
    assert kept_row(path)["changes"] is None  # 51 since the objects were written whole
    assert cache(path, clock).last("s").objects == folded  # type: ignore[union-attr]

    # a full read writes everything whole, whatever the target says changed
    night = cache(path, clock)
    assert night.last("s") is not None
    night.keep("s", {"usn": 4}, objects, full=True, changed=["guid-1"])
    assert kept_row(path)["changes"] is None
    # a target that cannot tell what changed (changed=None) has everything written whole
    night = cache(path, clock)
    base = night.last("s")
    assert base is not None and base.objects == objects
    night.keep("s", {"usn": 5}, folded, full=False)
    assert kept_row(path)["changes"] is None
    assert cache(path, clock).last("s").objects == folded  # type: ignore[union-attr]


def test_a_kept_read_of_an_older_store_survives_its_migration(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    for script in MIGRATIONS[:8]:
        db.executescript(script)
    blob = zlib.compress(json.dumps({"guid-1": ["CN=Ann,OU=Managed", "u", {}, []]}).encode())
    db.execute(
        "INSERT INTO last_read VALUES (?, ?, ?, ?, ?, ?)",
        (
            "ad ldaps://dc/OU=Managed",
            "m1|s",
            '{"usn": 5}',
            START.isoformat(),
            START.isoformat(),
            blob,
        ),
    )
    db.execute("PRAGMA user_version = 8")
    db.commit()
    db.close()
    base = cache(path, Clock()).last("s")
    assert base is not None and base.watermark == {"usn": 5}
    assert base.objects == {"guid-1": ["CN=Ann,OU=Managed", "u", {}, []]}


def test_the_kept_objects_are_decoded_only_when_asked_for(tmp_path: Path) -> None:
    path, clock = store(tmp_path), Clock()
    objects = pupils(50)
    cache(path, clock).keep("s", {"usn": 1}, objects, full=True)
    with StateStore(path) as kept:
        kept.db.execute("UPDATE last_read_objects SET objects = x'00'")  # undecodable
    night = cache(path, clock)
    base = night.last("s")  # the watermark, without decoding the objects
    assert base is not None and base.watermark == {"usn": 1}
    with pytest.raises(zlib.error):
        _ = base.objects
    # a target that never used the objects (it read in full) has everything written whole
    night.keep("s", {"usn": 2}, objects, full=False, changed=["guid-1"])
    assert kept_row(path)["changes"] is None
    assert cache(path, clock).last("s").objects == objects  # type: ignore[union-attr]
