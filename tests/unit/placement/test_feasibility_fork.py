"""Feasibility chunks shared with a forked helper process come out as if worked out here.

The helper (feasibility_fork) and this process claim chunks one at a time,
biggest first; the helper's tables come back packed (candidates.pack_tables).
Whatever the split, the tables, the plan and the first error in chunk order
must be those of working every chunk out in this process; a helper that dies
costs time, not tables; a process with other threads running forks nothing.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from test_screen_chunks import _same_table

from fleetplane.model.fleet import Fleet
from fleetplane.model.synthetic import generate_fleet
from fleetplane.placement._internal import feasibility, feasibility_fork, pipeline
from fleetplane.placement._internal.candidates import Candidates, pack_tables, unpack_tables
from fleetplane.placement._internal.context import PlanContext
from fleetplane.placement._internal.rules import CacheStats, compile_policy
from fleetplane.placement._internal.workload_view import WorkloadView

CHUNK = 40


@pytest.fixture(scope="module")
def fleet() -> Fleet:
    return generate_fleet(40, 400, 11)


def _context(fleet: Fleet) -> PlanContext:
    return PlanContext.build(fleet, compile_policy(pipeline.choose_policy(fleet, None)))


def _chunks(ctx: PlanContext, fleet: Fleet) -> list[list[WorkloadView]]:
    views = [ctx.view(n) for n in sorted(fleet.workloads)]
    return [views[at : at + CHUNK] for at in range(0, len(views), CHUNK)]


def _work(ctx: PlanContext):  # type: ignore[no-untyped-def]
    def work(chunk: Sequence[WorkloadView]) -> list[Candidates]:
        screened = feasibility.screen_many(ctx, chunk)
        feasibility.resolve_latency(screened)
        return [feasibility.finish(ctx, s) for s in screened]

    return work


def _serial(fleet: Fleet) -> list[Candidates]:
    ctx = _context(fleet)
    return feasibility_fork.tables(_chunks(ctx, fleet), _work(ctx), CacheStats(), helper=False)


class _Spy:
    """Counts the chunks the helper delivered (unpacked here)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.delivered = 0
        monkeypatch.setattr(feasibility_fork, "unpack_tables", self._unpack)

    def _unpack(self, packed, views):  # type: ignore[no-untyped-def]
        self.delivered += 1
        return unpack_tables(packed, views)


def test_tables_with_a_helper_equal_tables_worked_out_here(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = _Spy(monkeypatch)
    ctx = _context(fleet)
    chunks = _chunks(ctx, fleet)
    seen: list[int] = []
    stats = ctx.rules.stats
    helped = feasibility_fork.tables(
        chunks, _work(ctx), stats, helper=True, progress=seen.append
    )
    alone = _serial(fleet)
    assert spy.delivered > 0, "the helper delivered no chunk"
    assert [t.view.name for t in helped] == [t.view.name for t in alone]
    for a, b in zip(helped, alone, strict=True):
        _same_table(a, b)
        assert a.view is ctx.view(a.view.name)  # joined to this process's views
    # Like feasibility's own batches, a chunk's tables share one batch list.
    assert all(t.batch is not None and t in t.batch for t in helped)
    assert seen == sorted(seen) and seen[-1] == len(helped)
    # The helper's CEL work is counted too.
    assert stats.lookups >= _context_lookups(fleet) > 0


def _context_lookups(fleet: Fleet) -> int:
    ctx = _context(fleet)
    feasibility_fork.tables(_chunks(ctx, fleet), _work(ctx), ctx.rules.stats, helper=False)
    # Both processes look up what one process does; each evaluates its own misses.
    return ctx.rules.stats.lookups


def test_plan_with_a_helper_equals_plan_without(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = _Spy(monkeypatch)
    monkeypatch.setattr(pipeline, "FEASIBILITY_CHUNK", CHUNK)
    monkeypatch.setattr(feasibility_fork, "helper_allowed", lambda: True)

    def document(helper: bool) -> str:
        result = pipeline.run(fleet, helper_process=helper)
        assert result.feasibility_helper is helper
        data = result.placement.model_dump(mode="json")
        data["spec"]["solver"].pop("time_seconds")
        return json.dumps(data, sort_keys=True)

    assert document(True) == document(False)
    assert spy.delivered > 0
    # One chunk: nothing to share, nothing forked.
    monkeypatch.setattr(pipeline, "FEASIBILITY_CHUNK", len(fleet.workloads))
    assert not pipeline.run(fleet).feasibility_helper


def test_the_first_error_in_chunk_order_is_raised(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = _context(fleet)
    chunks = _chunks(ctx, fleet)
    failing = {chunks[3][0].name: "third", chunks[-2][0].name: "second to last"}
    work = _work(ctx)

    def flaky(chunk: Sequence[WorkloadView]) -> list[Candidates]:
        if chunk[0].name in failing:
            raise ValueError(failing[chunk[0].name])
        return work(chunk)

    with pytest.raises(ValueError, match=r"^third$"):
        feasibility_fork.tables(chunks, flaky, CacheStats(), helper=True)


def test_a_helper_that_dies_costs_no_table(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = _context(fleet)
    chunks = _chunks(ctx, fleet)
    work = _work(ctx)
    parent = os.getpid()
    started = [0]  # each process counts its own

    def deadly(chunk: Sequence[WorkloadView]) -> list[Candidates]:
        if os.getpid() != parent:
            started[0] += 1
            if started[0] == 2:
                os._exit(9)  # the helper is killed on its second chunk
        return work(chunk)

    helped = feasibility_fork.tables(chunks, deadly, CacheStats(), helper=True)
    for a, b in zip(helped, _serial(fleet), strict=True):
        _same_table(a, b)


def test_an_interrupted_plan_does_not_wait_for_the_helpers_chunks(
    fleet: Fleet, tmp_path: Path
) -> None:
    ctx = _context(fleet)
    chunks = _chunks(ctx, fleet)
    work = _work(ctx)
    parent = os.getpid()

    def interrupted(chunk: Sequence[WorkloadView]) -> list[Candidates]:
        if os.getpid() == parent:
            raise KeyboardInterrupt  # Ctrl-C in this process's first chunk
        (tmp_path / chunk[0].name).touch()  # a chunk the helper started
        return work(chunk)

    with pytest.raises(KeyboardInterrupt):
        feasibility_fork.tables(chunks, interrupted, CacheStats(), helper=True)
    # The helper was told to claim nothing more, and its chunks were not waited for.
    assert len(list(tmp_path.iterdir())) < len(chunks) - 1


def test_no_helper_while_another_thread_runs() -> None:
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert not feasibility_fork.helper_allowed()
    finally:
        stop.set()
        other.join()


def test_packed_tables_keep_layout_and_dtype(fleet: Fleet) -> None:
    tables = _serial(fleet)[:30]
    # A column-major array and a dtype of its own must come back as they were.
    tables[0].rtt_mu = np.asfortranarray(tables[0].rtt_mu)
    tables[1].row = tables[1].row.astype(np.int32)
    back = unpack_tables(pack_tables(tables), [t.view for t in tables])
    for a, b in zip(back, tables, strict=True):
        _same_table(a, b)
        for name in ("row", "rtt_mu", "source_ok"):
            x, y = getattr(a, name), getattr(b, name)
            assert x.dtype == y.dtype and x.shape == y.shape
            assert x.flags.f_contiguous == y.flags.f_contiguous, name
    assert back[0].rtt_mu.flags.f_contiguous
    assert back[1].row.dtype == np.int32
