"""The candidate cap never turns "a dearer pool has room" into an unplaceable workload."""

from __future__ import annotations

import numpy as np
import pytest
from placement_fleets import fleet, image, inference, job, link, pool, site, source

from fleetplane.model.fleet import Fleet
from fleetplane.placement import plan
from fleetplane.placement._internal import feasibility

SERVICE = [{"hardware": "cpu", "serviceTime": {"mean": "5ms"}}]


@pytest.fixture
def cap_of_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables keep only the cheapest row, so the second workload's one row is full."""
    monkeypatch.setattr(feasibility, "CANDIDATES_PER_JOB", 1)
    monkeypatch.setattr(feasibility, "CANDIDATES_PER_SOURCE", 1)


def jobs_fleet(dear_nodes: int) -> Fleet:
    return fleet(
        image(),
        site("cheap", tier="regional", pools=[pool(count=1, cpu=8)], cpu_hour="0.01/h"),
        site("dear", tier="regional", pools=[pool(count=dear_nodes, cpu=8)], cpu_hour="0.10/h"),
        job("a", cpu=6),
        job("b", cpu=6),
    )


@pytest.mark.usefixtures("cap_of_one")
def test_a_job_whose_kept_candidates_are_full_goes_beyond_the_cap() -> None:
    result = plan(jobs_fleet(dear_nodes=1))
    assert result.complete
    sites = sorted(a.site for w in result.placement.spec.workloads for a in w.assignments)
    assert sites == ["cheap", "dear"]
    # The table it was placed from is the whole one.
    assert all(c.beyond_cap == 0 for c in result.candidates.values() if c.size > 1)


@pytest.mark.usefixtures("cap_of_one")
def test_a_request_workload_whose_kept_candidates_are_full_goes_beyond_the_cap() -> None:
    f = fleet(
        image(),
        site("cheap", pools=[pool(count=1, cpu=8)], cpu_hour="0.01/h"),
        site("dear", pools=[pool(count=1, cpu=8)], cpu_hour="0.10/h"),
        link("cheap", "dear", p50="1ms", p99="1ms"),
        source("s1", "cheap", rate="1/s"),
        source("s2", "cheap", rate="1/s"),
        inference("w1", ["s1"], p99="1s", cpu=6, profiles=SERVICE),
        inference("w2", ["s2"], p99="1s", cpu=6, profiles=SERVICE),
    )
    result = plan(f)
    assert result.complete


@pytest.mark.usefixtures("cap_of_one")
def test_capacity_is_reported_only_when_every_feasible_pool_is_full() -> None:
    f = fleet(
        image(),
        site("cheap", tier="regional", pools=[pool(count=1, cpu=8)], cpu_hour="0.01/h"),
        site("dear", tier="regional", pools=[pool(count=1, cpu=8)], cpu_hour="0.10/h"),
        job("a", cpu=6),
        job("b", cpu=6),
        job("c", cpu=6),
    )
    result = plan(f)
    (unplaced,) = result.unplaceable
    assert unplaced.reason.startswith("2 candidate(s) on 2 site(s) could serve it")
    # Reported against both feasible sites, not just the one the cap kept.
    assert "cheap" in unplaced.reason and "dear" in unplaced.reason


def test_without_the_cap_nothing_is_solved_twice() -> None:
    result = plan(jobs_fleet(dear_nodes=1))
    assert result.complete
    assert all(c.beyond_cap == 0 for c in result.candidates.values())


def test_a_full_candidate_is_counted_once_however_often_it_is_evaluated() -> None:
    """The capacity verdict counts distinct candidates, not every time one was found full."""
    from fleetplane.placement._internal.capacity import CapacityState
    from fleetplane.placement._internal.greedy import _Planner
    from fleetplane.placement._internal.scoring import build_scorer

    f = fleet(
        image(),
        site("cheap", tier="regional", pools=[pool(count=1, cpu=8)], cpu_hour="0.01/h"),
        site("dear", tier="regional", pools=[pool(count=1, cpu=8)], cpu_hour="0.10/h"),
        site("dearer", tier="regional", pools=[pool(count=1, cpu=8)], cpu_hour="0.20/h"),
        job("a", cpu=6),
    )
    result = plan(f)
    assert result.context is not None
    cands = result.candidates["a"]
    assert cands.size == 3
    planner = _Planner(
        cands, build_scorer(cands, result.context.objective), np.zeros(3, dtype=np.int64)
    )
    state = CapacityState(result.context.index)
    by_site = {result.context.index.sites[int(s)].name: c for c, s in enumerate(cands.site)}

    def fill(name: str) -> None:
        c = by_site[name]
        assert state.place(int(cands.row[c]), 1, cands.demand(c)) is not None

    fill("cheap")
    for _ in range(3):  # evaluated again and again while cheap stays full
        assert planner.evaluate(state) is not None
    assert planner.failure.full == {by_site["cheap"]}
    fill("dear")
    fill("dearer")
    assert planner.evaluate(state) is None
    verdict = planner.failure.verdict(cands, [])
    assert verdict.code == "capacity"
    assert verdict.detail.startswith("3 candidate(s) on 3 site(s) could serve it")


def test_a_star_out_of_room_for_its_last_sources_names_them() -> None:
    """Sources served first, the rest without room: the verdict is about the rest.

    ``w`` is fed by stores a and b: sa can be served by the boxes of a and
    of its neighbour c, sb only by b's box (the link to b is too slow for the
    target). ``filler`` has only b's box and ``hog`` only c's (the only one
    with its memory), so both go first. ``w`` serves sa at a, then finds b
    full. c's box, full too, could only ever have served sa: not counted.
    """
    f = fleet(
        image(),
        site("a", pools=[pool(count=1, cpu=8)]),
        site("b", pools=[pool(count=1, cpu=8)]),
        site("c", pools=[pool(count=1, cpu=8, memory="64Gi")]),
        job("hog", cpu=6, memory="48Gi"),
        link("a", "b", p50="80ms", p99="90ms"),
        link("a", "c", p50="1ms", p99="1ms"),
        source("sa", "a", rate="1/s"),
        source("sb", "b", rate="1/s"),
        inference("filler", ["sb"], p99="50ms", cpu=6, profiles=SERVICE),
        inference("w", ["sa", "sb"], p99="50ms", cpu=6, profiles=SERVICE),
    )
    result = plan(f)
    (unplaced,) = result.unplaceable
    assert unplaced.workload == "w"
    assert unplaced.reason.startswith(
        "1 candidate(s) on 1 site(s) could serve data source(s) sb (1 of 2, left once the "
        "others were served), but their nodes or power budgets are taken"
    ), unplaced.reason
