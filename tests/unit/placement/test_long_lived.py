"""A plan keeps the collector's full passes off what it holds: frozen inside, as it was after."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from fleetplane.model.synthetic import generate_fleet
from fleetplane.placement._internal import pipeline
from fleetplane.placement._internal.greedy import solve as greedy_solve
from fleetplane.placement._internal.long_lived import LongLivedObjects
from fleetplane.placement._internal.solve import SolverInput, SolverOutput


@pytest.fixture(autouse=True)
def nothing_frozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_objects_alive_on_entry_and_at_each_settle_are_frozen_until_exit() -> None:
    with LongLivedObjects() as long_lived:
        on_entry = gc.get_freeze_count()
        assert on_entry > 0
        kept = [[i] for i in range(10_000)]
        long_lived.settle()
        assert gc.get_freeze_count() >= on_entry + len(kept)
    assert gc.get_freeze_count() == 0


def test_everything_is_unfrozen_when_the_plan_raises() -> None:
    with pytest.raises(RuntimeError), LongLivedObjects():
        raise RuntimeError("boom")
    assert gc.get_freeze_count() == 0


def test_objects_someone_else_froze_are_left_frozen_and_nothing_more_is() -> None:
    gc.freeze()
    before = gc.get_freeze_count()
    with LongLivedObjects() as long_lived:
        _made = [[i] for i in range(1_000)]
        long_lived.settle()
        assert gc.get_freeze_count() == before
    assert gc.get_freeze_count() == before


def test_a_plan_solves_with_its_inputs_frozen_and_leaves_nothing_frozen() -> None:
    seen: list[int] = []

    def recording(inp: SolverInput) -> SolverOutput:
        seen.append(gc.get_freeze_count())
        return greedy_solve(inp)

    pipeline.SOLVERS["recording"] = recording
    try:
        result = pipeline.run(generate_fleet(12, 40, seed=3), solver="recording")
    finally:
        del pipeline.SOLVERS["recording"]
    assert seen and seen[0] > 0
    assert gc.get_freeze_count() == 0
    assert result.placement.spec.workloads


def test_a_nested_plan_leaves_the_outer_plans_objects_frozen() -> None:
    with LongLivedObjects():
        with LongLivedObjects() as inner:
            inner.settle()
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0


def test_a_nested_plan_settles_into_the_outer_plans_freeze() -> None:
    """A solver's own LongLivedObjects, inside the pipeline's, freezes what it keeps too."""
    with LongLivedObjects():
        with LongLivedObjects() as inner:
            before = gc.get_freeze_count()
            kept = [[i] for i in range(5_000)]
            inner.settle()
            assert gc.get_freeze_count() >= before + len(kept)
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0


def test_the_solve_freezes_what_its_planners_keep_as_it_goes() -> None:
    """Greedy settles while it works: its growing state stays out of the full passes."""
    counts: list[tuple[int, int]] = []

    def recording(inp: SolverInput) -> SolverOutput:
        before = gc.get_freeze_count()
        out = greedy_solve(inp)
        counts.append((before, gc.get_freeze_count()))
        return out

    pipeline.SOLVERS["recording"] = recording
    try:
        pipeline.run(generate_fleet(20, 400, seed=3), solver="recording")
    finally:
        del pipeline.SOLVERS["recording"]
    ((before, after),) = counts
    assert after - before > 200  # about one object per workload here; 0 without settling


def test_entering_freezes_without_walking_what_the_caller_just_made() -> None:
    """What exists on entry is alive anyway: frozen as it is, no collection on the way in."""
    passes: list[int] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            passes.append(info["generation"])

    gc.callbacks.append(count)
    try:
        with LongLivedObjects() as long_lived:
            assert passes == [] and gc.get_freeze_count() > 0
            long_lived.settle()
            assert passes == [1]  # between stages, the young are collected first
    finally:
        gc.callbacks.remove(count)
