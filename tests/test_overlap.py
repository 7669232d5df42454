"""The source and the target are read at the same time (issue 17): in production they are two
remote services. A source and a target that each take half a second are read in well under a
second; an error of either read comes out as it did when they ran one after the other, and the
target's read is never left running."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from pathlib import Path
from types import SimpleNamespace

import pytest

from provisioner import sources
from provisioner.cli import main
from provisioner.errors import ConfigError, SourceError
from provisioner.model import ObservedAccount, ObservedState
from provisioner.pipeline import (
    Prepared,
    compare,
    plan_for,
    plan_of,
    prepare,
    read_and_compare,
    read_for_mappings,
    read_source_and_target,
)
from provisioner.plan.model import Change
from provisioner.plan.planfile import plan_to_json
from provisioner.sources.base import Fields, Progress, SourceRead
from provisioner.targets.base import Result, TargetError
from tests.test_architecture import (
    PEOPLE,
    PeopleFileSettings,
    PeopleFileSource,
    write_people_config,
)

PAUSE = 0.5
"""How long each slow read waits, as a remote service would."""


class SlowPeopleSource(PeopleFileSource):
    """The people file, read as slowly as a remote source; *error* makes the read fail after
    the wait."""

    error: Exception | None = None

    def read(
        self,
        fields: Fields,
        *,
        progress: Callable[[Progress], None] = lambda _p: None,
        save: Path | None = None,
    ) -> SourceRead:
        time.sleep(PAUSE)
        if self.error is not None:
            raise self.error
        return super().read(fields, progress=progress, save=save)


class SlowTarget:
    """A directory behind the Target protocol alone: it holds Ann already, and its read takes
    :data:`PAUSE` (or fails after it with *error*)."""

    config = SimpleNamespace(match_on=("username",), full_read_every=7)
    limits: Mapping[str, int] = {}
    group_limits: Mapping[str, int] = {}
    has_ous = True
    has_owners = False
    needs_owner = False
    fallback_owner: str | None = None
    archive_ou: tuple[str, ...] = ()
    name_attributes = frozenset({"username"})

    def __init__(self, error: Exception | None = None, refuses: str | None = None) -> None:
        self.error = error
        self.refuses = refuses
        self.reads_finished = 0
        self.reading_threads: list[str] = []

    def describe(self) -> str:
        return "a slow test directory"

    def unsupported(
        self, account_attributes: Collection[str], group_attributes: Collection[str]
    ) -> list[str]:
        return (
            [f"accounts: {self.refuses} (not here)"] if self.refuses in account_attributes else []
        )

    def read(self, attributes: Collection[str], base: object = None) -> ObservedState:
        self.reading_threads.append(threading.current_thread().name)
        try:
            time.sleep(PAUSE)
            if self.error is not None:
                raise self.error
            state = ObservedState()
            state.accounts.append(
                ObservedAccount(
                    id="guid-1",
                    target="CN=ann.peeters",
                    anchor="x1",
                    username="ann.peeters",
                    attributes={"displayName": "Ann Peeters"},
                    ou=("Extern",),
                )
            )
            state.ous.add(("Extern",))
            return state
        finally:
            self.reads_finished += 1

    def taken_outside(self, values: Collection[str]) -> dict[str, str]:
        return {}

    def anchored_outside(self) -> list[ObservedAccount]:
        return []

    def check(self, change: Change) -> str | None:
        return None

    def apply_all(
        self, changes: Iterable[Change], passwords: Mapping[int, str]
    ) -> Iterator[Result]:
        raise AssertionError("nothing is applied here")

    def reset_password(self, anchor: str, password: str) -> str:
        raise AssertionError("no password is reset here")

    def manage_attributes(
        self, account_attributes: Collection[str], group_attributes: Collection[str]
    ) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture
def prepared(tmp_path, monkeypatch) -> Prepared:
    """The people-file configuration of test_architecture, with a state store and the slow
    source."""
    monkeypatch.setitem(
        sources.SOURCES, "people_file", sources.SourceKind(PeopleFileSettings, SlowPeopleSource)
    )
    prepared = prepare(write_people_config(tmp_path, PEOPLE))
    config = dataclasses.replace(prepared.config, state=tmp_path / "state.db")
    return dataclasses.replace(prepared, config=config)


def no_target_read_running() -> bool:
    return not any(t.name == "target read" for t in threading.enumerate())


def changes(plan) -> list[dict]:
    return plan_to_json(plan)["changes"]


def test_the_source_and_the_target_are_read_at_the_same_time(prepared):
    target = SlowTarget()
    started = time.perf_counter()
    read, observed = read_source_and_target(prepared, target)
    plan = plan_of(prepared, read, target, compare(prepared, read, target, observed))
    elapsed = time.perf_counter() - started
    assert elapsed < 1.6 * PAUSE, f"the reads took {elapsed:.2f} s: one after the other"
    assert target.reading_threads == ["target read"]  # not the caller's thread
    assert no_target_read_running()

    # The same plan as the reads one after the other (compare reading the target itself).
    started = time.perf_counter()
    one_after_the_other = plan_for(prepared, read_for_mappings(prepared), target)
    assert time.perf_counter() - started >= 2 * PAUSE
    assert changes(plan) == changes(one_after_the_other)
    assert [c["key"] for c in changes(plan) if c["action"] == "create"] == ["x2"]  # Ann is there


def test_a_source_error_comes_out_unchanged_after_the_target_read_ended(prepared):
    error = SourceError("Informat answered 503 for Personen")
    prepared.source.error = error  # type: ignore[attr-defined]
    target = SlowTarget(error=TargetError("cannot reach the directory"))
    with pytest.raises(SourceError) as raised:
        read_source_and_target(prepared, target)
    assert raised.value is error  # the source's error first, as when it was read first
    assert target.reads_finished == 1  # waited for, not left running
    assert no_target_read_running()


@pytest.mark.parametrize(
    ("target", "kind", "message"),
    [
        (SlowTarget(error=TargetError("cannot reach the directory")), TargetError, None),
        (
            SlowTarget(refuses="displayName"),
            ConfigError,
            "the mappings set what a slow test directory cannot hold: "
            "accounts: displayName (not here)",
        ),
    ],
    ids=["read fails", "mappings refused"],
)
def test_a_target_error_comes_out_unchanged(prepared, target, kind, message):
    with pytest.raises(kind) as raised:
        read_source_and_target(prepared, target)
    if target.error is not None:
        assert raised.value is target.error
    else:
        assert str(raised.value) == message
    assert no_target_read_running()
    # The same error as compare reading the target itself, after the source.
    with pytest.raises(kind) as alone:
        compare(prepared, read_for_mappings(prepared), target)
    assert str(alone.value) == str(raised.value)


def test_the_mapping_of_the_persons_runs_while_the_target_is_still_read(prepared, monkeypatch):
    """The mapping's first part (persons, anchors, the attributes that use no name) waits on
    the directory, not after it; the plan is the one of the three steps one after the other."""
    from provisioner import pipeline

    mapped = threading.Event()

    class WaitingTarget(SlowTarget):
        """Its read ends only once the persons are mapped (or after 5 s, when they are not
        mapped meanwhile): no race between two equal pauses."""

        def read(self, attributes: Collection[str], base: object = None) -> ObservedState:
            mapped.wait(timeout=5)
            return super().read(attributes, base)

    target = WaitingTarget()
    mapped_while_reading: list[bool] = []
    persons_of = pipeline.persons_of

    def noted(prepared: Prepared, read: SourceRead):
        mapped_while_reading.append(target.reads_finished == 0)
        mapped.set()
        return persons_of(prepared, read)

    monkeypatch.setattr(pipeline, "persons_of", noted)
    read, comparison = read_and_compare(prepared, target)
    assert mapped_while_reading == [True]
    assert no_target_read_running()
    plan = plan_of(prepared, read, target, comparison)
    one_after_the_other = plan_for(prepared, read_for_mappings(prepared), target)
    assert changes(plan) == changes(one_after_the_other)
    assert [c["key"] for c in changes(plan) if c["action"] == "create"] == ["x2"]


def test_a_mapping_error_comes_after_the_target_error(prepared, monkeypatch):
    """When the mapping's first part and the target's read both fail, the target's error comes
    out, as when the mapping ran after the read; either way no read is left running."""
    from provisioner import pipeline

    mapping_error = ConfigError("the mapping templates made more than 256 MiB of values")

    def failing(_prepared: Prepared, _read: SourceRead):
        raise mapping_error

    monkeypatch.setattr(pipeline, "persons_of", failing)
    target_error = TargetError("cannot reach the directory")
    with pytest.raises(TargetError) as raised:
        read_and_compare(prepared, SlowTarget(error=target_error))
    assert raised.value is target_error
    assert no_target_read_running()
    with pytest.raises(ConfigError) as raised_alone:
        read_and_compare(prepared, SlowTarget())
    assert raised_alone.value is mapping_error
    assert no_target_read_running()


def test_without_a_target_only_the_source_is_read(prepared):
    read, observed = read_source_and_target(prepared, None)
    assert observed is None
    assert read.counts == {"Personen": {"000042": 2}}


# -- through the command line: the same message and exit code --------------------------------------


class FailingSource(PeopleFileSource):
    def read(self, fields: Fields, **_options: object) -> SourceRead:
        raise SourceError("the people file is being rewritten: try again later")


def ad_config(tmp_path: Path, monkeypatch) -> Path:
    """The people file against a DC on an unassigned loopback address: nothing answers there,
    so the target's read fails at once."""
    monkeypatch.setenv("TEST_AD_PASSWORD", "x")
    config = write_people_config(tmp_path, PEOPLE)
    config.write_text(
        config.read_text(encoding="utf-8") + "state: state.db\n"
        "target:\n  ad:\n    url: ldaps://127.0.0.77\n    bind_user: SCHOOL\\\\p\n"
        "    password: ${TEST_AD_PASSWORD}\n    base_dn: DC=school,DC=be\n"
        "    managed_root: OU=Provisioner\n",
        encoding="utf-8",
    )
    return config


@pytest.mark.parametrize(
    ("source", "error"),
    [
        (PeopleFileSource, "error: cannot reach ldaps://127.0.0.77"),
        (FailingSource, "error: the people file is being rewritten: try again later"),
    ],
    ids=["target fails", "source and target fail"],
)
def test_plan_reports_the_first_failing_read_as_before(
    tmp_path, monkeypatch, capsys, source, error
):
    monkeypatch.setitem(
        sources.SOURCES, "people_file", sources.SourceKind(PeopleFileSettings, source)
    )
    config = ad_config(tmp_path, monkeypatch)
    assert main(["plan", "--config", str(config)]) == 1
    assert capsys.readouterr().err.splitlines()[-1].startswith(error)
    assert no_target_read_running()
