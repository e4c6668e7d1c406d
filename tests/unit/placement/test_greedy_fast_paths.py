"""The solver's fast paths give the very same numbers as the general functions they replace.

Greedy sizes a workload's candidates for subsets of its sources
(``sizing.StarSizer``), prices single candidates in plain floats
(``Scorer.objective_one``) and counts node fits in plain Python for small
pools (``CapacityState._pool_fits``) and, for big ones, only over the nodes
changed since the last count (``capacity._BigPools``). Each must equal its general, vectorised
counterpart bit for bit, or plans would change.
"""

from __future__ import annotations

import numpy as np
import pytest

from fleetplane.latency.queueing import mgc_wait_many
from fleetplane.model.synthetic import generate_fleet
from fleetplane.placement import plan
from fleetplane.placement._internal import capacity, sizing
from fleetplane.placement._internal.candidates import Candidates
from fleetplane.placement._internal.capacity import CapacityState, Demand
from fleetplane.placement._internal.context import PlanContext
from fleetplane.placement._internal.pipeline import SOLVERS, choose_policy
from fleetplane.placement._internal.rules import compile_policy
from fleetplane.placement._internal.scoring import Scorer


@pytest.fixture(scope="module")
def planned() -> object:
    return plan(generate_fleet(40, 300, 3), seed=3)


def _request_tables(planned: object) -> list[Candidates]:
    tables: dict[str, Candidates] = planned.candidates  # type: ignore[attr-defined]
    return [
        c
        for c in tables.values()
        if c.view.sources and not c.view.is_job and c.view.targets and c.size
    ]


def test_star_sizer_matches_conservative_then_tighten(planned: object) -> None:
    rng = np.random.default_rng(0)
    tables = _request_tables(planned)
    assert len(tables) > 20
    budgets = sizing.wait_budgets(tables)
    compared = lowered = 0
    for cands, paths in zip(tables, budgets, strict=True):
        sizer = sizing.StarSizer(cands, paths)
        alone = sizing.StarSizer(cands)  # its own budgets: the same
        rates = sizing.design_rates(cands)
        for _ in range(4):
            idx = rng.choice(cands.size, size=min(cands.size, int(rng.integers(1, 12))))
            idx = np.asarray(idx, dtype=np.int64)
            keep = rng.random((cands.source_ok.shape[0], idx.size)) < 0.6
            groups = cands.source_ok[:, idx] & keep
            load = rates @ groups
            req = sizing.Request(cands, idx, groups, load)
            conservative = sizing.conservative([req])
            want = sizing.tighten([req], conservative)[0]
            got = sizer.size(idx, groups, load)
            assert got.tolist() == want.tolist()
            assert alone.size(idx, groups, load).tolist() == want.tolist()
            assert sizer.floor(idx, load).tolist() == sizing._floor(req).tolist()
            compared += idx.size
            lowered += int((want < conservative[0]).sum())
    assert compared > 500
    assert lowered > 0  # the tightening loop ran


def test_star_sizer_outside_source_ok_falls_back(planned: object) -> None:
    cands = next(c for c in _request_tables(planned) if not c.source_ok.all())
    s, c = np.argwhere(~cands.source_ok)[0]
    idx = np.array([c], dtype=np.int64)
    groups = np.zeros((cands.source_ok.shape[0], 1), dtype=bool)
    groups[s, 0] = True
    load = sizing.design_rates(cands) @ groups
    req = sizing.Request(cands, idx, groups, load)
    want = sizing.tighten([req], sizing.conservative([req]))[0]
    assert sizing.StarSizer(cands).size(idx, groups, load).tolist() == want.tolist()


def test_scalar_wait_matches_mgc_wait_many() -> None:
    rng = np.random.default_rng(1)
    n = 4000
    mean = rng.random(n) * 0.2 + 1e-4
    cv = rng.choice([0.0, 0.5, 1.0, 2.0], n)
    servers = rng.integers(1, 65, n)
    lam = servers / mean * rng.random(n) * 1.05  # some unstable
    p_wait, theta = mgc_wait_many(lam, mean, cv, servers)
    for j in range(n):
        got = sizing._mgc_wait(float(lam[j]), float(mean[j]), float(cv[j]), int(servers[j]))
        assert got == (float(p_wait[j]), float(theta[j]))


def _random_scorer(rng: np.random.Generator, sources: int, size: int, unreachable: float) -> Scorer:
    """Terms spanning nine orders of magnitude (where summation order shows), some infinite."""
    per_source = rng.random((sources, size)) * 10.0 ** rng.integers(-3, 6, (sources, size))
    per_source[rng.random((sources, size)) < unreachable] = np.inf
    return Scorer(
        None,  # type: ignore[arg-type]
        rng.random(size) * 100,
        rng.random(size) * 10,
        per_source,
        rng.random(size),
        np.ones(sources),
    )


@pytest.mark.parametrize("sources", [0, 1, 3, 7, 8, 9, 16, 40, 127, 128, 129, 300])
def test_objective_one_matches_objective(sources: int) -> None:
    rng = np.random.default_rng(sources)
    size = 6
    scorer = _random_scorer(rng, sources, size, unreachable=0.1)
    for _ in range(200):
        c, k = int(rng.integers(size)), int(rng.integers(1, 50))
        alpha = float(rng.choice([1.0, 0.5, float(rng.random())]))
        shares = rng.random(sources) * (rng.random(sources) < 0.7)
        want = scorer.objective(np.array([c]), np.array([k]), shares[:, None], alpha)[0]
        assert scorer.objective_one(c, k, tuple(shares.tolist()), alpha) == want


@pytest.mark.parametrize("small_pool", [0, 24, 10**6])
def test_pool_fits_match_node_fits(small_pool: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(capacity, "_SMALL_POOL", small_pool)
    fleet = generate_fleet(60, 10, 5)
    ctx = PlanContext.build(fleet, compile_policy(choose_policy(fleet, None)))
    state = CapacityState(ctx.index)
    rng = np.random.default_rng(2)
    # Use up nodes unevenly, then compare both ways of counting per pool.
    state.free_cpu -= rng.random(state.free_cpu.size) * state.free_cpu * 0.9
    state.free_memory -= rng.random(state.free_memory.size) * state.free_memory * 0.5
    if state.free_acc.size:
        state.free_acc -= (rng.random(state.free_acc.shape) * state.free_acc * 0.7).astype(
            state.free_acc.dtype
        )
    demands = [Demand(0.5, 1.0, -1, 0, 0.0), Demand(3.0, 7.5, -1, 0, 50.0)]
    demands += [Demand(1.0, 2.0, e, 1, 80.0) for e in range(state.free_acc.shape[1])]
    sizes = set()
    for row in range(state.index.n_rows):
        nodes = np.arange(state.start[row], state.start[row + 1])
        sizes.add(nodes.size)
        for demand in demands:
            want = state._node_fits(nodes, demand).tolist()
            assert state._pool_fits(row, demand) == want
            # First fit, node by node in order, as placing packs them.
            for replicas in {0, 1, 2, 5, sum(want) // 2, sum(want)}:
                packed, left = [], replicas
                for node, fit in enumerate(want):
                    take = min(fit, left)
                    if take:
                        packed.append((node, take))
                        left -= take
                assert state._first_fit(row, replicas, demand) == packed
    assert max(sizes) > 24 >= min(sizes)


def test_demand_hash_follows_its_fields() -> None:
    a, b = Demand(1.0, 2.0, -1, 0, 3.0), Demand(1.0, 2.0, -1, 0, 3.0)
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert Demand(1.0, 2.0, 0, 1, 3.0) != a


def test_full_star_batch_shares_elements_and_floors(planned: object) -> None:
    tables: dict[str, Candidates] = planned.candidates  # type: ignore[attr-defined]
    requests = []
    for cands in tables.values():
        n_src = len(cands.view.sources)
        groups = cands.source_ok if n_src else np.zeros((0, cands.size), dtype=bool)
        load = sizing.design_rates(cands) @ groups if n_src else np.zeros(cands.size)
        requests.append(sizing.Request(cands, np.arange(cands.size), groups, load))
    assert len(requests) >= sizing._FLAT_FROM
    floors = np.concatenate([sizing._floor(req) for req in requests])
    assert sizing._floors(requests).tolist() == floors.tolist()
    counts = sizing.conservative(requests)
    assert sizing._HANDOVER  # left for the tighten() that follows
    handed = sizing.tighten(requests, counts)
    assert not sizing._HANDOVER
    fresh = sizing.tighten(requests, counts)  # computes its own elements and floors
    assert [a.tolist() for a in handed] == [b.tolist() for b in fresh]
    # A tighten() of other requests does not take another batch's elements.
    sizing.conservative(requests)
    other = requests[: sizing._FLAT_FROM]
    assert [a.tolist() for a in sizing.tighten(other, counts[: len(other)])] == [
        b.tolist() for b in fresh[: len(other)]
    ]


def test_a_whole_star_asked_again_gets_the_full_star_count(planned: object) -> None:
    """Greedy's later steps reuse the full-star count where a candidate's sources are all unserved.

    The shortcut must give what sizing the star again would: the star sizer's
    count, or the full-star count where the bound cannot decide.
    """
    from fleetplane.placement._internal.greedy import _Planner
    from fleetplane.placement._internal.pipeline import _full_star_replicas
    from fleetplane.placement._internal.scoring import build_scorer

    tables = [c for c in _request_tables(planned) if len(c.view.sources) > 1]
    assert len(tables) > 10
    reused = 0
    for cands, full in zip(tables, _full_star_replicas(tables), strict=True):
        planner = _Planner(cands, build_scorer(cands, planned.context.objective), full)  # type: ignore[attr-defined]
        idx = np.arange(cands.size, dtype=np.int64)
        whole = cands.source_ok[:, idx]
        sized = sizing.StarSizer(cands).size(idx, whole, planner.rates @ whole)
        want = np.where(sized == sizing.UNSIZEABLE, full, sized)
        assert planner._size(idx, whole).tolist() == want.tolist()
        assert planner._size(idx, whole).tolist() == full.tolist()
        reused += idx.size
    assert reused > 100


def test_a_jobs_two_options_are_the_best_two_sites_of_every_candidate(planned: object) -> None:
    """The job walk (bound order, early stop, two best sites kept) against pricing them all."""
    from fleetplane.placement._internal.greedy import _Planner
    from fleetplane.placement._internal.scoring import build_scorer

    ctx = planned.context  # type: ignore[attr-defined]
    tables: dict[str, Candidates] = planned.candidates  # type: ignore[attr-defined]
    jobs = [c for c in tables.values() if c.view.is_job and c.size > 2]
    assert len(jobs) > 5
    state = CapacityState(ctx.index)
    # Kept across rounds: what they learnt about room (_room_bounds) must stay true as
    # pools fill.
    planners = [
        _Planner(cands, build_scorer(cands, ctx.objective), np.zeros(cands.size, np.int64))
        for cands in jobs
    ]
    checked = 0
    for round_ in range(3):
        for cands, planner in zip(jobs, planners, strict=True):
            if planner.spread:
                continue
            best, second = planner._task_options(state, planner.tasks)
            options = []
            for c in range(cands.size):
                k = min(planner._room(state, c), planner.tasks)
                if k > 0:
                    f = k / planner.tasks
                    cost = planner.scorer.objective_one(c, k, [f] * planner.n_src, f)
                    options.append((cost / k, c, k))
            options.sort()
            if not options:
                assert best is None and second is None
                continue
            assert best is not None and (best.primary, best.replicas) == options[0][1:]
            other = [o for o in options if cands.site[o[1]] != cands.site[best.primary]]
            want = (other[0][1], other[0][2]) if other else None
            assert (None if second is None else (second.primary, second.replicas)) == want
            checked += 1
            # Fill the best candidate's pool a little before the next workload looks.
            if round_ < 2:
                state.place(int(cands.row[best.primary]), 1, cands.demand(best.primary))
    assert checked > 10


def test_room_found_too_small_is_not_asked_again_until_a_release(planned: object) -> None:
    """Greedy remembers room per candidate while nothing is given back (room only shrinks)."""
    from fleetplane.placement._internal.greedy import _Planner
    from fleetplane.placement._internal.scoring import build_scorer

    ctx = planned.context  # type: ignore[attr-defined]
    tables: dict[str, Candidates] = planned.candidates  # type: ignore[attr-defined]
    cands = next(c for c in tables.values() if c.size > 1)
    planner = _Planner(cands, build_scorer(cands, ctx.objective), np.ones(cands.size, np.int64))
    state = CapacityState(ctx.index)
    asked: list[int] = []
    fit_count = state.fit_count

    def counting(row: int, demand: Demand) -> int:
        asked.append(row)
        return fit_count(row, demand)

    state.fit_count = counting  # type: ignore[method-assign]
    row, demand = int(cands.row[0]), cands.demand(0)
    room = planner._room(state, 0)
    assert room > 0 and len(asked) == 1
    assert not planner._fits(state, 0, room + 1)  # known too small: not asked again
    assert len(asked) == 1
    nodes = state.place(row, room, demand)
    assert nodes is not None and len(asked) == 2
    assert not planner._fits(state, 0, 1)  # asked: the bound (room) does not rule it out
    assert len(asked) == 3
    assert not planner._fits(state, 0, 1)  # now known full
    assert len(asked) == 3
    state.release(row, nodes, demand)
    assert planner._fits(state, 0, 1)  # a release drops what was learnt
    assert len(asked) == 4


@pytest.mark.parametrize("seed", range(5))
def test_two_best_sites_keeps_what_sorting_every_site_keeps(seed: int) -> None:
    from fleetplane.placement._internal.greedy import _two_best_sites

    rng = np.random.default_rng(seed)
    best: dict[int, tuple[float, int, int]] = {}
    top: list[tuple[float, int, int]] = []
    for c in range(300):
        site = int(rng.integers(0, 6))
        found = (float(rng.integers(0, 40)), c, site)
        if site in best and best[site] <= found:
            continue
        best[site] = found
        top = _two_best_sites(top, found)
        assert top == sorted(best.values())[:2]


def test_interned_demands_are_the_tables_own(planned: object) -> None:
    """Greedy looks demands up by their fields; each must be what the table would build."""
    from fleetplane.placement._internal.greedy import _Planner
    from fleetplane.placement._internal.scoring import build_scorer

    ctx = planned.context  # type: ignore[attr-defined]
    tables: dict[str, Candidates] = planned.candidates  # type: ignore[attr-defined]
    interned: dict[tuple[float, float, int, int, float], Demand] = {}
    seen: dict[Demand, Demand] = {}
    for cands in tables.values():
        planner = _Planner(cands, build_scorer(cands, ctx.objective), np.ones(cands.size, np.int64))
        planner.interned = interned
        for c in range(cands.size):
            got = planner._demand(c)
            assert got == cands.demand(c)
            assert seen.setdefault(got, got) is got  # one object per distinct demand
    assert 1 < len(interned) < sum(c.size for c in tables.values())


@pytest.mark.parametrize(("max_changed", "max_walk"), [(0, 0), (3, 2), (64, 128)])
def test_big_pool_counts_follow_places_and_releases(
    max_changed: int, max_walk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counts brought up to date node by node equal a full recount after every change,
    and first fit from the last open node found packs as node-by-node first fit."""
    monkeypatch.setattr(capacity, "_SMALL_POOL", 0)
    monkeypatch.setattr(capacity, "_MAX_CHANGED", max_changed)
    monkeypatch.setattr(capacity, "_MAX_WALK", max_walk)
    fleet = generate_fleet(30, 10, 7)
    ctx = PlanContext.build(fleet, compile_policy(choose_policy(fleet, None)))
    state = CapacityState(ctx.index)
    rng = np.random.default_rng(4)
    demands = [Demand(0.5, 1.0, -1, 0, 0.0), Demand(3.0, 7.5, -1, 0, 0.0)]
    demands += [Demand(1.0, 2.0, e, 1, 0.0) for e in range(state.free_acc.shape[1])]
    rows = [r for r in range(state.index.n_rows) if state.start[r + 1] - state.start[r] > 2]
    placed: list[tuple[int, list[tuple[int, int]], Demand]] = []

    def recount(row: int, demand: Demand) -> int:
        nodes = np.arange(state.start[row], state.start[row + 1])
        return int(state._node_fits(nodes, demand).sum())

    for step in range(400):
        row = rows[int(rng.integers(len(rows)))]
        demand = demands[int(rng.integers(len(demands)))]
        if placed and rng.random() < 0.3:
            state.release(*placed.pop(int(rng.integers(len(placed)))))
        else:
            room = state.fit_count(row, demand)
            nodes = state.place(row, int(rng.integers(1, max(room, 1) + 1)), demand)
            if nodes is not None:
                placed.append((row, nodes, demand))
        if step == 200:
            # A copy that goes its own way, then is adopted back.
            other = state.copy()
            spot = next((r, d) for r in rows for d in demands if other.fit_count(r, d) > 0)
            assert other.place(*spot[:1], 1, spot[1]) is not None
            state.adopt(other)
        for r in rows:
            for d in demands:
                assert state.fit_count(r, d) == recount(r, d)
                nodes = np.arange(state.start[r], state.start[r + 1])
                fits = state._node_fits(nodes, d).tolist()
                replicas = min(int(rng.integers(1, 6)), sum(fits))
                packed, left = [], replicas
                for node, fit in enumerate(fits):
                    if left and fit:
                        packed.append((node, min(fit, left)))
                        left -= packed[-1][1]
                assert state._first_fit(r, replicas, d) == packed


@pytest.mark.parametrize("sources", [1, 7, 9, 40, 129])
def test_objective_of_a_candidate_does_not_depend_on_the_others(sources: int) -> None:
    """Priced alone, with a few others or with many, a candidate gets the same value.

    Numpy sums a column of a wide array row by row but a narrow one pairwise;
    the objective sums each candidate's terms along a row, so solvers may
    price any subset of candidates and compare the values bit for bit.
    """
    rng = np.random.default_rng(sources)
    size = 50
    scorer = _random_scorer(rng, sources, size, unreachable=0.0)
    idx = np.arange(size)
    replicas = rng.integers(1, 9, size)
    shares = rng.random((sources, size)) * (rng.random((sources, size)) < 0.8)
    everyone = scorer.objective(idx, replicas, shares, 0.5)
    for _ in range(40):
        some = np.flatnonzero(rng.random(size) < rng.random())
        got = scorer.objective(idx[some], replicas[some], shares[:, some], 0.5)
        assert got.tolist() == everyone[some].tolist()


def test_released_since_names_the_pools_a_release_may_have_grown() -> None:
    """A release grows its own pool, and its site's others only where power is budgeted."""
    fleet = generate_fleet(60, 10, 2)
    ctx = PlanContext.build(fleet, compile_policy(choose_policy(fleet, None)))
    index = ctx.index
    budgeted = np.isfinite(index.site_power_budget)
    state = CapacityState(index)
    demand = Demand(0.5, 1.0, -1, 0, 10.0)

    def other_row_of(site: int, row: int) -> int | None:
        rows = [int(r) for r in index.rows_of_site(site) if int(r) != row]
        return rows[0] if rows else None

    seen_budgeted = seen_open = False
    for row in range(index.n_rows):
        site = int(index.row_site[row])
        sibling = other_row_of(site, row)
        if sibling is None or state.fit_count(row, demand) == 0:
            continue
        elsewhere = next(r for r in range(index.n_rows) if int(index.row_site[r]) != site)
        before = state.releases
        nodes = state.place(row, 1, demand)
        assert nodes is not None
        assert not state.released_since(before, np.array([row, sibling, elsewhere]))
        state.release(row, nodes, demand)
        assert state.released_since(before, np.array([row]))
        assert not state.released_since(before, np.array([elsewhere]))
        assert state.released_since(before, np.array([sibling])) == bool(budgeted[site])
        seen_budgeted |= bool(budgeted[site])
        seen_open |= not bool(budgeted[site])
        if seen_budgeted and seen_open:
            break
    assert seen_budgeted and seen_open
    copy = state.copy()
    before = state.releases
    state.adopt(copy)
    assert state.released_since(before, np.array([elsewhere]))


def test_a_star_kept_through_releases_elsewhere_is_what_evaluating_again_finds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Greedy keeps a star's evaluation across releases on pools that could not change it."""
    from fleetplane.placement._internal import greedy

    kept = 0
    stale = greedy._Planner.stale

    def checked(self: greedy._Planner, state: CapacityState) -> bool:
        nonlocal kept
        ev = self.evaluation
        answer = stale(self, state)
        if not answer and ev is not None and ev.releases not in (-1, state.releases):
            best, second = self._options(state, self._every_source, self.tasks, True)
            assert _same(best, ev.best) and _same(second, ev.second)
            kept += 1
        return answer

    monkeypatch.setattr(greedy._Planner, "stale", checked)
    monkeypatch.setitem(SOLVERS, "greedy-heuristic", greedy.solve)
    plan(generate_fleet(200, 2000, 0), solver="greedy-heuristic")
    assert kept > 20


def _same(a: object, b: object) -> bool:
    if a is None or b is None:
        return a is b
    fields = ("primary", "replicas", "cost", "work", "partner", "partner_replicas")
    same = all(getattr(a, f) == getattr(b, f) for f in fields)
    return same and bool(np.array_equal(a.group, b.group))  # type: ignore[attr-defined]


def test_a_stars_evaluation_goes_stale_when_a_cheaper_full_pool_gets_room(planned: object) -> None:
    """Released room on a pool the walk found full (before the best) sends the star back;
    released room on a pool it never looked at does not."""
    from fleetplane.placement._internal.greedy import _Planner
    from fleetplane.placement._internal.pipeline import _full_star_replicas
    from fleetplane.placement._internal.scoring import build_scorer

    ctx = planned.context  # type: ignore[attr-defined]
    tables: dict[str, Candidates] = planned.candidates  # type: ignore[attr-defined]
    checked = 0
    for cands in sorted(tables.values(), key=lambda c: c.view.name):
        planner = _Planner(
            cands, build_scorer(cands, ctx.objective), _full_star_replicas([cands])[0]
        )
        if planner.is_job or planner.spread or len(set(cands.site.tolist())) < 3:
            continue
        state = CapacityState(ctx.index)
        first = planner.evaluate(state)
        assert first is not None
        cheapest = first.best.primary
        row, demand = int(cands.row[cheapest]), cands.demand(cheapest)
        filled = state.place(row, state.fit_count(row, demand), demand)
        assert filled is not None
        ev = planner.evaluate(state)
        if ev is None or ev.second is None or int(cands.row[ev.best.primary]) == row:
            continue
        # Something placed on the best's pool: its rows changed, so the releases decide.
        best_row = int(cands.row[ev.best.primary])
        nodes = state.place(best_row, 1, cands.demand(ev.best.primary))
        assert nodes is not None
        unrelated = next(
            r for r in range(ctx.index.n_rows)
            if r not in set(cands.row.tolist())
            and int(ctx.index.row_site[r]) not in set(cands.site.tolist())
            and state.fit_count(r, demand) > 0
        )
        elsewhere = state.place(unrelated, 1, demand)
        assert elsewhere is not None
        state.release(unrelated, elsewhere, demand)
        assert not planner.stale(state)
        state.release(row, filled, demand)
        assert state.place(best_row, 1, cands.demand(ev.best.primary)) is not None
        assert planner.stale(state)
        checked += 1
        if checked == 5:
            break
    assert checked == 5
