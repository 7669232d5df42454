"""The cyclic collector is paused for a stage and left as it was found afterwards."""

from __future__ import annotations

import gc
import weakref

import pytest

from provisioner.gcpause import paused_gc


@pytest.fixture(autouse=True)
def collector_restored():
    was = gc.isenabled()
    yield
    (gc.enable if was else gc.disable)()


def test_paused_inside_and_on_again_after():
    gc.enable()
    with paused_gc():
        assert not gc.isenabled()
    assert gc.isenabled()


def test_on_again_after_an_error():
    gc.enable()
    with pytest.raises(KeyError), paused_gc():
        raise KeyError("x")
    assert gc.isenabled()


def test_a_nested_pause_does_not_turn_it_on_early():
    gc.enable()
    with paused_gc():
        with paused_gc():
            pass
        assert not gc.isenabled()
    assert gc.isenabled()


def test_left_off_when_it_was_off():
    gc.disable()
    with paused_gc():
        pass
    assert not gc.isenabled()


def test_as_a_decorator_each_call_pauses():
    gc.enable()

    @paused_gc()
    def stage() -> bool:
        return gc.isenabled()

    assert stage() is False
    assert stage() is False
    assert gc.isenabled()


def test_what_the_stage_built_counts_as_old_and_a_cycle_in_it_is_still_collected():
    gc.enable()

    class Node:
        pass

    with paused_gc():
        built = [{"n": n} for n in range(10_000)]
        cycle = Node()
        cycle.self = cycle  # type: ignore[attr-defined]
        gone = weakref.ref(cycle)
    assert gc.get_count()[0] < 100  # not 10,000 young objects for the next collection to walk
    assert gc.get_freeze_count() == 0  # nothing left frozen
    del cycle
    gc.collect()
    assert gone() is None
    assert len(built) == 10_000


def test_the_pipelines_mapping_comparison_and_plan_run_paused(monkeypatch):
    """At 50,000 pupils the collector walked the desired state 1,450 times in one comparison
    made outside the engine's own pauses (its checks, the fit, the new names): 2.3 s."""
    from types import SimpleNamespace

    from provisioner import pipeline
    from provisioner.model import DesiredState

    gc.enable()
    seen: list[bool] = []

    def noted(result):
        def stage(*_args, **_kwargs):
            seen.append(gc.isenabled())
            return result

        return stage

    monkeypatch.setattr(pipeline, "desired_state", noted(DesiredState()))
    monkeypatch.setattr(pipeline, "names_in_directory", noted(None))
    monkeypatch.setattr(pipeline, "new_names", noted({}))
    monkeypatch.setattr(pipeline, "_fitted", noted(SimpleNamespace(plan=None)))
    monkeypatch.setattr(pipeline, "plan_of", noted(None))
    pipeline.compare(SimpleNamespace(config=None), None, None)  # type: ignore[arg-type]
    pipeline.foresee(None, None, None, None, None, None)  # type: ignore[arg-type]
    assert seen == [False] * 6
    assert gc.isenabled()
