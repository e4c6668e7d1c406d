"""Improvement pass after greedy: relocate, then ruin-and-recreate on contested pools.

Why this stage exists. Greedy commits workloads one at a time in order of
absolute regret. On a pool that many workloads want — measured on the quality
instances: the on-prem ``dgx-h100`` pool of an HPC site, six 8-GPU nodes that
every training job prefers to the cloud — that order is a poor knapsack rule:
the jobs with the largest absolute regret are the biggest ones (whole-node
tasks), so they take the pool first, while jobs with 1-GPU tasks save several
times more per GPU and end up on cloud GPUs. The exact solver's plans differ
from greedy's on those instances almost only there (plus a few request stars
that an earlier capacity state made greedy split over two pools, and that one
pool could serve whole once the plan was complete).

What it does, in rounds (at most ``ROUNDS``, stopping when a round changes nothing):

1. **Targets** — placed workloads that cost more than their cheapest
   whole-workload pattern in an empty fleet (``patterns.cheapest_whole``), and
   workloads greedy left unplaced that have such a pattern. Only those can
   gain, so the pass costs nothing on workloads greedy already placed at their
   optimum (most of them).
2. **Relocate** — each target in turn takes its cheapest option that fits the
   capacity left by all the others, if that is cheaper than what it has. This
   fixes the split stars.
3. **Ruin and recreate** on each pool a target's cheaper option is blocked
   on: take out the targets blocked there and the pool's largest occupants,
   then put them back in several orders — by saving per unit of the pool
   (gain / dominant share: the knapsack rule greedy's regret lacks), by
   absolute saving, and ``SHUFFLES`` seeded random orders — each workload
   taking its cheapest option that still fits. The best order is kept if it
   places every workload that was placed before and is cheaper, or places
   more; otherwise the pool stays as it was.

Options of a workload are its whole-workload patterns (``patterns.generate``,
the exact solver's columns), its current allocations, and for a job whose
tasks may be split, greedy's fill (as many tasks as fit on the cheapest
candidate, then the next).

Invariants. Every replica is packed through ``CapacityState.place`` (the
state is only ever changed by ``place``/``release``; trials run on copies and
the winning order is replayed on the real state, where it packs identically);
``verify`` re-checks the plan afterwards. The result is never worse than
greedy's: a change is kept only when it is strictly better. Deterministic: no
clocks, work is bounded by counts (``MAX_TARGETS``, ``MAX_OCCUPANTS``,
``MAX_POOLS``, ``SHUFFLES``, ``ROUNDS``), shuffles come from the plan's seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from fleetplane.placement._internal import exact, greedy
from fleetplane.placement._internal.candidates import Allocation, Candidates
from fleetplane.placement._internal.capacity import CapacityState
from fleetplane.placement._internal.patterns import (
    Pattern,
    allocation_cost,
    cheapest_whole_many,
    empty_fits,
    generate,
    pattern_of,
)
from fleetplane.placement._internal.scoring import Scorer
from fleetplane.placement._internal.solve import SolverInput, SolverOutput, needs_spread

# Rounds of relocate + ruin-and-recreate (a later round sees the capacity the previous freed).
ROUNDS = 2
# Targets per round, largest excess first: bounds the pass on fleets where greedy is far off
# (measured on 2,000 sites × 20,000 workloads: ~1,000 targets; without the caps the pass took
# longer than greedy itself).
MAX_TARGETS = 128
# Contested pools ruined per round, by the total excess of the targets blocked on them.
MAX_POOLS = 8
# Targets blocked on one pool taken out together, largest excess first.
MAX_BLOCKED = 32
# Occupants of a contested pool taken out with the targets, largest share of the pool first:
# the knapsack's mistakes are the large items; a cloud pool with thousands of small ones
# would otherwise make one ruin cost as much as greedy.
MAX_OCCUPANTS = 24
# Seeded random insertion orders tried beside the two ranked ones.
SHUFFLES = 2
# Branch-and-bound nodes for a neighbourhood's MILP: a work limit, so the result is deterministic;
# the seconds are only a safety net (a neighbourhood has tens of workloads and solves in
# milliseconds when measured).
SUB_MAX_NODES = 500
SUB_TIME_LIMIT = 5.0
# MILP solves per neighbourhood when its choice does not pack node by node (see _solve_exactly).
REPACK_TRIES = 2
# Smallest saving worth a change, relative to the workloads' cost (float noise is not a gain).
REL_TOL = 1e-9


@dataclass
class ImproveStats:
    targets: int = 0
    relocated: int = 0
    pools_ruined: int = 0
    pools_improved: int = 0
    newly_placed: int = 0
    before: float = 0.0
    after: float = 0.0
    rounds: int = 0


@dataclass
class _Held:
    """A workload's current allocations (packed) and their objective."""

    allocations: list[Allocation]
    cost: float


@dataclass
class _State:
    inp: SolverInput
    held: dict[int, _Held]
    ideal: dict[int, float]  # cheapest whole pattern in an empty fleet, where one exists
    occupants: dict[int, set[int]] = field(default_factory=dict)  # pool row -> workloads
    options: dict[int, list[Pattern]] = field(default_factory=dict)
    task_order: dict[int, list[int]] = field(default_factory=dict)  # jobs: candidates by cost/task

    def cands(self, w: int) -> Candidates:
        return self.inp.table[w]

    def rows(self, w: int, allocs: list[Allocation] | tuple[Allocation, ...]) -> set[int]:
        cands = self.cands(w)
        return {int(cands.row[a.candidate]) for a in allocs}

    def hold(self, w: int, held: _Held | None) -> None:
        old = self.held.pop(w, None)
        if old is not None:
            for r in self.rows(w, old.allocations):
                self.occupants[r].discard(w)
        if held is not None:
            self.held[w] = held
            for r in self.rows(w, held.allocations):
                self.occupants.setdefault(r, set()).add(w)

    def excess(self, w: int) -> float:
        held = self.held.get(w)
        if held is None:
            return float("inf")
        return held.cost - self.ideal[w]


def _tol(cost: float) -> float:
    return REL_TOL * max(abs(cost), 1.0)


# -- options and packing ----------------------------------------------------------------------


def _options(state: _State, w: int) -> list[Pattern]:
    """Static options of ``w``, cheapest first: whole patterns and greedy's own allocations."""
    found = state.options.get(w)
    if found is None:
        inp = state.inp
        cands, scorer, full = inp.table[w], inp.scorers[w], inp.full_replicas[w]
        found = generate(cands, scorer, full, empty_fits(inp.capacity.index, cands))
        held = state.held.get(w)
        if held is not None:
            found.append(pattern_of(scorer, held.allocations, "greedy"))
        found.sort(key=lambda p: p.cost)
        state.options[w] = found
    return found


def _splittable_job(cands: Candidates) -> bool:
    return cands.view.is_job and not needs_spread(cands) and cands.view.min_replicas > 1


def _job_fill(state: _State, capacity: CapacityState, w: int) -> Pattern | None:
    """Greedy's job rule on ``capacity``: fill the cheapest candidate per task, then the next."""
    cands, scorer = state.cands(w), state.inp.scorers[w]
    tasks = cands.view.min_replicas
    n_src = len(cands.view.sources)
    order = state.task_order.get(w)
    if order is None:
        idx = np.arange(cands.size)
        per_task = scorer.objective(
            idx, np.full(cands.size, tasks), np.ones((n_src, cands.size)), 1.0
        )
        order = idx[np.lexsort((idx, per_task))].tolist()
        state.task_order[w] = order
    remaining = tasks
    allocs: list[Allocation] = []
    for c in order:
        k = min(capacity.fit_count(int(cands.row[c]), cands.demand(c)), remaining)
        if k <= 0:
            continue
        f = k / tasks
        allocs.append(Allocation(c, k, (f,) * n_src, (f,) * n_src, (), f))
        remaining -= k
        if remaining == 0:
            return Pattern(tuple(allocs), sum(allocation_cost(scorer, a) for a in allocs), "fill")
    return None


def _place(capacity: CapacityState, cands: Candidates, pattern: Pattern) -> list[Allocation] | None:
    """Pack every allocation of ``pattern``, or none of them."""
    placed: list[Allocation] = []
    for a in pattern.allocations:
        nodes = capacity.place(int(cands.row[a.candidate]), a.replicas, cands.demand(a.candidate))
        if nodes is None:
            _release(capacity, cands, placed)
            return None
        placed.append(replace(a, nodes=tuple(nodes)))
    return placed


def _release(capacity: CapacityState, cands: Candidates, allocs: list[Allocation]) -> None:
    for a in reversed(allocs):
        capacity.release(int(cands.row[a.candidate]), a.nodes, cands.demand(a.candidate))


def _insert(
    state: _State, capacity: CapacityState, w: int, below: float = float("inf")
) -> tuple[Pattern, list[Allocation]] | None:
    """Place ``w``'s cheapest option costing less than ``below`` that fits; None if none does."""
    cands = state.cands(w)
    candidates = [p for p in _options(state, w) if p.cost < below]
    if _splittable_job(cands):
        fill = _job_fill(state, capacity, w)
        if fill is not None and fill.cost < below:
            candidates = sorted([*candidates, fill], key=lambda p: p.cost)
    for pattern in candidates:
        placed = _place(capacity, cands, pattern)
        if placed is not None:
            return pattern, placed
    return None


# -- relocate ---------------------------------------------------------------------------------


def _relocate(state: _State, w: int) -> bool:
    """Move ``w`` to its cheapest option that fits now, if cheaper; True when it moved."""
    capacity = state.inp.capacity
    cands = state.cands(w)
    held = state.held.get(w)
    if held is None:
        found = _insert(state, capacity, w)
        if found is None:
            return False
        state.hold(w, _Held(found[1], found[0].cost))
        return True
    below = held.cost - _tol(held.cost)
    if not any(p.cost < below for p in _options(state, w)) and not _splittable_job(cands):
        return False
    rows = [int(cands.row[a.candidate]) for a in held.allocations]
    # Re-packing a workload's own replicas after releasing them always fits, except when two
    # of its allocations share a pool (first-fit may then interleave them): work on a copy.
    shared_pool = len(set(rows)) < len(rows)
    work = capacity.copy() if shared_pool else capacity
    _release(work, cands, held.allocations)
    found = _insert(state, work, w, below)
    if found is None:
        if not shared_pool:
            back = _place(work, cands, pattern_of(state.inp.scorers[w], held.allocations, "held"))
            assert back is not None, "released replicas re-pack where they were"
            state.hold(w, _Held(back, held.cost))
        return False
    if shared_pool:
        _release(capacity, cands, held.allocations)
        placed = _place(capacity, cands, found[0])
        assert placed is not None, "the copy showed it packs"
        found = (found[0], placed)
    state.hold(w, _Held(found[1], found[0].cost))
    return True


# -- ruin and recreate ------------------------------------------------------------------------


def _blocked_pool(state: _State, w: int) -> int | None:
    """The pool ``w``'s cheapest better option does not fit on (its first such pool)."""
    capacity = state.inp.capacity
    cands = state.cands(w)
    held = state.held.get(w)
    below = held.cost - _tol(held.cost) if held is not None else float("inf")
    for pattern in _options(state, w):
        if pattern.cost >= below:
            return None
        for a in pattern.allocations:
            row = int(cands.row[a.candidate])
            if capacity.fit_count(row, cands.demand(a.candidate)) < a.replicas:
                return row
    return None


def _pool_share(
    state: _State, w: int, row: int, allocs: tuple[Allocation, ...] | list[Allocation]
) -> float:
    """The largest fraction of the pool's cpu, memory or accelerators ``allocs`` take there."""
    index = state.inp.capacity.index
    cands = state.cands(w)
    nodes = float(index.row_nodes[row])
    share = 0.0
    for a in allocs:
        if int(cands.row[a.candidate]) != row:
            continue
        d = cands.demand(a.candidate)
        parts = [d.cpu / index.row_cpu[row], d.memory / index.row_memory[row]]
        if d.entry >= 0 and d.accelerators > 0:
            parts.append(d.accelerators / max(float(index.row_acc_count[row, d.entry]), 1e-12))
        share += a.replicas * max(parts) / nodes
    return share


def _ranks(state: _State, members: list[int], row: int) -> tuple[list[int], list[int]]:
    """Insertion orders: by saving per unit of the pool, and by absolute saving."""
    density: dict[int, float] = {}
    gain: dict[int, float] = {}
    for w in members:
        cands = state.cands(w)
        on = [
            p
            for p in _options(state, w)
            if any(int(cands.row[a.candidate]) == row for a in p.allocations)
        ]
        off = [p for p in _options(state, w) if p not in on]
        if not on:
            gain[w], density[w] = 0.0, 0.0
            continue
        best_off = off[0].cost if off else float("inf")
        saving = max(best_off - on[0].cost, 0.0)
        if not np.isfinite(saving):
            saving = 1e12  # only this pool will do: it goes first
        gain[w] = saving
        density[w] = saving / max(_pool_share(state, w, row, on[0].allocations), 1e-12)
    by_density = sorted(members, key=lambda w: (-density[w], w))
    by_gain = sorted(members, key=lambda w: (-gain[w], w))
    return by_density, by_gain


@dataclass
class _Trial:
    placed: dict[int, tuple[Pattern, list[Allocation]]]
    capacity: CapacityState
    how: str

    @property
    def cost(self) -> float:
        return sum(p.cost for p, _ in self.placed.values())


def _recreate(state: _State, base: CapacityState, order: list[int], how: str) -> _Trial:
    """Each workload in turn takes its cheapest option that still fits."""
    capacity = base.copy()
    placed: dict[int, tuple[Pattern, list[Allocation]]] = {}
    for w in order:
        found = _insert(state, capacity, w)
        if found is not None:
            placed[w] = found
    return _Trial(placed, capacity, how)


def _columns(state: _State, base: CapacityState, w: int) -> list[Pattern]:
    """``w``'s options as MILP columns, each way of running it once (what it holds first)."""
    found: list[Pattern] = []
    held = state.held.get(w)
    if held is not None:
        found.append(pattern_of(state.inp.scorers[w], held.allocations, "held"))
    found += _options(state, w)
    if _splittable_job(state.cands(w)):
        fill = _job_fill(state, base, w)
        if fill is not None:
            found.append(fill)
    unique: dict[tuple[tuple[int, int, tuple[float, ...]], ...], Pattern] = {}
    for p in found:
        unique.setdefault(tuple((a.candidate, a.replicas, a.shares) for a in p.allocations), p)
    return list(unique.values())


def _solve_exactly(state: _State, base: CapacityState, members: list[int]) -> _Trial | None:
    """The neighbourhood as a small MILP (the exact solver's, on what is left free), packed.

    The MILP sees pool totals and node-level cuts, not every node: a choice
    can still fail to pack when the other workloads on a pool left its nodes
    fragmented. Then that choice is banned and the MILP solved again (up to
    ``REPACK_TRIES`` times); the best packed result is kept.
    """
    inp = state.inp
    sub = replace(
        inp,
        table=[inp.table[w] for w in members],
        scorers=[inp.scorers[w] for w in members],
        full_replicas=[inp.full_replicas[w] for w in members],
        capacity=base,
        moves=None,
        progress=None,
        time_limit=SUB_TIME_LIMIT,
    )
    every = [(i, p) for i, w in enumerate(members) for p in _columns(state, base, w)]
    must = [w in state.held for w in members]
    banned: set[int] = set()
    best: _Trial | None = None
    for _ in range(REPACK_TRIES):
        kept = [k for k in range(len(every)) if k not in banned]
        columns = [exact.Column(every[k][0], every[k][1], every[k][1].cost, False) for k in kept]
        start = [-1] * len(members)
        for j, col in enumerate(columns):
            if col.pattern.origin == "held":
                start[col.workload] = j
        chosen, _, _, _ = exact.milp(sub, columns, must, start, max_nodes=SUB_MAX_NODES)
        if chosen is None:
            break
        capacity = base.copy()
        patterns = {i: columns[j].pattern for i, j in enumerate(chosen) if j >= 0}
        packed, failed = exact.pack_each(sub, capacity, patterns)
        if failed:
            banned |= {kept[chosen[i]] for i in failed}
            capacity = base.copy()
            done = exact.pack_repairing(
                replace(sub, capacity=capacity), capacity, patterns, columns
            )
            placed = {members[i]: (done.patterns[i], a) for i, a in done.allocations.items()}
        else:
            placed = {members[i]: (patterns[i], a) for i, a in packed.items()}
        trial = _Trial(placed, capacity, "milp")
        if best is None or (len(trial.placed), -trial.cost) > (len(best.placed), -best.cost):
            best = trial
        if not failed:
            break
    return best


def _ruin_and_recreate(state: _State, row: int, blocked: list[int], seed: int) -> bool:
    """Take out the pool's targets and largest occupants and put them back the best way found."""
    capacity = state.inp.capacity
    occupants = sorted(
        (w for w in state.occupants.get(row, set()) if w not in blocked),
        key=lambda w: (-_pool_share(state, w, row, state.held[w].allocations), w),
    )[:MAX_OCCUPANTS]
    members = sorted(set(blocked[:MAX_BLOCKED]) | set(occupants))
    before = [w for w in members if w in state.held]
    old_cost = sum(state.held[w].cost for w in before)
    base = capacity.copy()
    for w in before:
        _release(base, state.cands(w), state.held[w].allocations)
    by_density, by_gain = _ranks(state, members, row)
    rng = np.random.default_rng([seed, row])
    orders = [("density", by_density), ("gain", by_gain)]
    orders += [
        ("shuffle", [members[i] for i in rng.permutation(len(members))]) for _ in range(SHUFFLES)
    ]
    trials = [_recreate(state, base, order, how) for how, order in orders]
    solved = _solve_exactly(state, base, members)
    if solved is not None:
        trials.append(solved)
    best: _Trial | None = None
    for trial in trials:
        if any(w not in trial.placed for w in before):
            continue  # never unplace a workload to save money
        if best is None or (len(trial.placed), -trial.cost) > (len(best.placed), -best.cost):
            best = trial
    if best is None:
        return False
    if not (len(best.placed) > len(before) or best.cost < old_cost - _tol(old_cost)):
        return False
    capacity.adopt(best.capacity)
    for w in before:
        state.hold(w, None)
    for w, (pattern, allocs) in best.placed.items():
        state.hold(w, _Held(allocs, pattern.cost))
    return True


# -- driver -------------------------------------------------------------------------------------


def _cost(scorer: Scorer, allocs: list[Allocation]) -> float:
    """``Scorer.objective`` of allocations, in plain floats (called once per placed workload)."""
    total = 0.0
    for a in allocs:
        c = a.candidate
        total += a.replicas * float(scorer.per_replica[c]) + float(scorer.per_site[c])
        total += a.weight * float(scorer.per_share[c])
        for s, share in enumerate(a.shares):
            if share > 0:
                total += share * float(scorer.per_source[s, c])
    return total


def _initial_state(inp: SolverInput, out: SolverOutput) -> _State:
    index = {c.view.name: w for w, c in enumerate(inp.table)}
    held: dict[int, _Held] = {}
    for name, allocs in out.allocations.items():
        w = index[name]
        held[w] = _Held(list(allocs), _cost(inp.scorers[w], allocs))
    considered = [
        w for w, c in enumerate(inp.table) if c.size and (w in held or c.view.name in out.unplaced)
    ]
    ideal = cheapest_whole_many(
        inp.capacity.index, inp.table, inp.scorers, inp.full_replicas, considered
    )
    state = _State(inp, {}, ideal)
    for w, h in held.items():
        state.hold(w, h)
    return state


def _targets(state: _State) -> list[int]:
    found = [w for w, ideal in state.ideal.items() if state.excess(w) > _tol(ideal)]
    found.sort(key=lambda w: (-state.excess(w), w))
    return found[:MAX_TARGETS]


def _round(state: _State, stats: ImproveStats, seed: int) -> bool:
    targets = _targets(state)
    stats.targets = max(stats.targets, len(targets))
    changed = False
    for w in targets:
        if _relocate(state, w):
            stats.relocated += 1
            changed = True
    blocked: dict[int, list[int]] = {}
    weight: dict[int, float] = {}
    for w in targets:
        if state.excess(w) <= _tol(state.ideal[w]):
            continue
        row = _blocked_pool(state, w)
        if row is None:
            continue
        blocked.setdefault(row, []).append(w)
        weight[row] = weight.get(row, 0.0) + min(state.excess(w), 1e12)
    for row in sorted(blocked, key=lambda r: (-weight[r], r))[:MAX_POOLS]:
        stats.pools_ruined += 1
        if _ruin_and_recreate(state, row, blocked[row], seed):
            stats.pools_improved += 1
            changed = True
    return changed


def improve(inp: SolverInput, out: SolverOutput, stats: ImproveStats | None = None) -> SolverOutput:
    """A plan at least as good as ``out`` (placed on ``inp.capacity``), changed in place there."""
    stats = stats if stats is not None else ImproveStats()
    state = _initial_state(inp, out)
    names = [c.view.name for c in inp.table]
    stats.before = sum(h.cost for h in state.held.values())
    placed_before = set(state.held)
    for _ in range(ROUNDS):
        stats.rounds += 1
        if not _round(state, stats, inp.seed):
            break
    stats.after = sum(h.cost for h in state.held.values())
    new = sorted(set(state.held) - placed_before)
    stats.newly_placed = len(new)
    result = SolverOutput(
        allocations={names[w]: state.held[w].allocations for w in sorted(state.held)},
        unplaced={n: u for n, u in out.unplaced.items() if n not in {names[w] for w in new}},
        order=[*out.order, *(names[w] for w in new)],
        status=out.status,
        objective=stats.after,
    )
    return result


def solve(inp: SolverInput) -> SolverOutput:
    """The ``greedy`` solver: regret-ordered greedy (greedy.py), then this improvement pass."""
    return improve(inp, greedy.solve(inp))
