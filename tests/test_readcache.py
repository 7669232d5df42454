"""The kept read of the directory (provisioner.readcache): when it may be the base of an
incremental read, and what is kept. The targets' incremental reads are tested against the Samba
DC and the Graph server in their own files."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from provisioner.readcache import ReadCache
from provisioner.state import StateStore

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
