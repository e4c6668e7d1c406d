"""The greedy solver: regret-ordered, capacity-aware, one workload at a time.

Order. Each workload's *regret* is what it loses if it cannot have its best
option: its second-best option on another site, priced for the same amount
of work, minus the best. Workloads with one option (infinite regret) go
first, then the largest regrets; ties go to the scarcer workload (fewer
feasible sites), then to a permutation drawn from the seed, so the seed only
ever breaks exact ties. Regrets are kept lazily: when a workload comes up and
capacity on the rows of its best or second-best option changed since it was
evaluated, it is re-evaluated and queued again instead of being placed on
stale numbers.

Request-serving workloads are placed by greedy facility location over their
data sources ("stars"): every candidate offers to serve all still-unserved
sources it may serve; the offer with the lowest objective per unit of demand
served is taken, those sources are marked served, and the rest are offered
again. A workload fed by 40 stores thus ends up on one hub when serving all
40 there is cheaper per request than the stores' own boxes, on 40 boxes when
those are cheaper, and on a mix when latency allows the hub only for some.

Jobs (training, batch) need ``replicas.min`` independent tasks; they fill the
candidate with the lowest objective per task with as many tasks as fit, then
the next, so a full on-prem cluster overflows to the cloud.

Availability ≥ 99.9% spreads every star (and a job's tasks) over two failure
domains: a primary and a partner in another domain, *each sized for the
whole peak* so that losing either domain still serves it, with traffic split
evenly while both are up. Two full-size copies is the simplest rule that
survives any single-domain loss; k > 2 domains at 1/(k-1) each would be
cheaper and is a possible refinement.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, replace

import numpy as np

from fleetplane.placement._internal import sizing
from fleetplane.placement._internal.candidates import Allocation, Candidates
from fleetplane.placement._internal.capacity import CapacityState, Demand
from fleetplane.placement._internal.fleet_index import BoolArray, FloatArray, IntArray
from fleetplane.placement._internal.long_lived import LongLivedObjects
from fleetplane.placement._internal.scoring import Scorer
from fleetplane.placement._internal.solve import SolverInput, SolverOutput, Unplaced, needs_spread

# How many primaries (in order of their own cost) are paired with a partner
# before taking the best pair found: pairing is costly, and a primary far down
# the order rarely makes the cheapest pair.
MAX_PRIMARIES = 12
# _partner's context for a star's first step (a job's is its tasks remaining, >= 1).
_FIRST_STEP = -1
# Candidates sized at once when a step after the first sizes lazily (doubling each time).
LAZY_BATCH = 8
# Workloads whose sizing path parts (sizing.wait_budgets) are worked out together.
_BUDGET_BLOCK = 1024
# Workloads taken off the queue between two freezes of what the solve keeps (long_lived.py).
_SETTLE_EVERY = 4096


# A primary's partners: candidates, their replicas, the primary's, sources shared, pair cost,
# work, and positions by (pair ratio, candidate).
_PartnerPlan = tuple[IntArray, IntArray, IntArray, BoolArray, FloatArray, FloatArray, list[int]]


@dataclass(frozen=True)
class Option:
    """One step: a primary candidate (and a partner when spread) serving ``group``.

    ``work`` is what the step achieves, in the unit regret compares: the demand
    share served (requests) or the number of tasks placed (jobs).
    """

    primary: int
    replicas: int
    group: BoolArray
    cost: float
    work: float
    partner: int = -1
    partner_replicas: int = 0

    @property
    def ratio(self) -> float:
        return self.cost / self.work


@dataclass(frozen=True)
class Evaluation:
    best: Option
    second: Option | None
    stamp: tuple[tuple[int, int], ...]  # (row, capacity version) of the rows it relied on
    releases: int = -1  # CapacityState.releases when evaluated (-1: not reusable, see stale())
    # Pools where giving replicas back could change the two options (None: any; see stale()).
    watched: IntArray | None = None

    @property
    def regret(self) -> float:
        if self.second is None:
            return float("inf")
        return self.second.ratio * self.best.work - self.best.cost


class _Failure:
    """Why no option was found, most specific reason winning."""

    def __init__(self) -> None:
        # Candidates that passed every filter but were found without room (each once).
        self.full: set[int] = set()
        self.no_partner = 0
        self.partner_domains: set[int] = set()

    def verdict(
        self, cands: Candidates, uncovered: list[int], left: BoolArray | None = None
    ) -> Unplaced:
        """Why, for a workload whose sources ``left`` were still unserved (None: all)."""
        view = cands.view
        if uncovered:
            src = uncovered[0]
            return Unplaced("sources", f"no candidate can serve {view.sources[src].name}", src)
        full, what = self.full, "it"
        if left is not None and not left.all():
            # Some sources were served before the rest found no room: the verdict is about
            # the rest, and so are the candidates counted.
            serving = np.asarray(cands.source_ok[left].any(axis=0), dtype=bool)
            full = {c for c in self.full if serving[c]}
            names = [view.sources[int(s)].name for s in np.flatnonzero(left)]
            shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            what = (
                f"data source(s) {shown} ({len(names)} of {len(view.sources)}, "
                "left once the others were served)"
            )
        if self.no_partner and not full:
            sites = sorted({int(s) for s in cands.site.tolist()})
            return Unplaced(
                "availability",
                f"availability {view.availability:.4%} needs two failure domains able to take "
                f"all of the load, but the candidates that can ({len(sites)} site(s)) "
                "leave no second domain for at least one data source",
            )
        if full:
            n_sites = len({int(cands.site[c]) for c in full})
            return Unplaced(
                "capacity",
                f"{len(full)} candidate(s) on {n_sites} site(s) could serve {what}, but their "
                "nodes or power budgets are taken by workloads placed earlier",
            )
        return Unplaced(
            "replicas",
            f"needs more than {view.max_replicas} replicas (replicas.max) at every candidate",
        )


class _Planner:
    def __init__(self, cands: Candidates, scorer: Scorer, full_replicas: IntArray) -> None:
        self.cands = cands
        self.scorer = scorer
        # Per candidate as Python values: pool row, site, and demand (filled on first use).
        self._rows: list[int] = cands.row.tolist()
        self._site_of: list[int] = cands.site.tolist()
        self._demands: list[Demand | None] = [None] * cands.size
        # Demands by their fields, shared by every planner of a solve (see _demand).
        self.interned: dict[tuple[float, float, int, int, float], Demand] = {}
        self.full = full_replicas
        view = cands.view
        self.is_job = view.is_job
        self.n_src = len(view.sources)
        self.weights = scorer.source_weight
        self.spread = needs_spread(cands)
        self.tasks = view.min_replicas
        self.sites = len(set(self._site_of))
        self.evaluation: Evaluation | None = None
        # Every source (unserved at a first step; a job's tasks serve all): shared, read-only.
        self._every_source = np.ones(self.n_src, dtype=bool)
        self._every_source.flags.writeable = False
        self.failure = _Failure()
        self._sizes: dict[tuple[int, bytes], int] = {}
        self._star_sizer: sizing.StarSizer | None = None
        self._design_rates: FloatArray | None = None
        self._uncoverable: list[int] | None = None  # sources no candidate may serve
        # The sizer's load-independent path parts, computed for many workloads at once (solve).
        self.wait_budgets: sizing.WaitBudgets | None = None
        self._serving: dict[bytes, BoolArray] = {}
        # Jobs: per number of tasks remaining, candidates by bound on cost per task, and the bounds.
        # (Priced as if all fit: the objective, which is also its value when they do.)
        self._task_bounds: dict[int, tuple[list[int], list[float], list[float]]] = {}
        # A star's first step (every source unserved): groups, valid, order, replicas, cost, work.
        self._first_step: (
            tuple[BoolArray, BoolArray, IntArray, IntArray, FloatArray, FloatArray] | None
        ) = None
        # Spread: partners per (primary, context), see _partner.
        self._partners: dict[tuple[int, int], _PartnerPlan | str] = {}
        # Room found per candidate since the capacity state's last release (_room_bounds).
        self._bounds_at = -1
        self._bounds: dict[int, int] = {}

    # -- sizing and capacity --------------------------------------------------------------

    def _size(self, idx: IntArray, groups: BoolArray) -> IntArray:
        """Replicas for candidates ``idx`` serving ``groups``.

        Sizing here is the closed-form bound, tightened with the Erlang-C
        factor (which matters on small edge boxes: one replica instead of two
        can decide whether a star fits), and no exact quantiles. Where the
        bound cannot decide, the count for serving the candidate's *whole*
        star is used: serving fewer sources never needs more replicas (less
        load, no slower source), so it is safe; trimming takes back surplus.
        Results are remembered per (candidate, group), since re-evaluations
        ask the same questions again.
        """
        if not idx.size:
            return np.zeros(0, dtype=np.int64)
        if self.is_job or not self.n_src:
            return np.full(idx.size, self.tasks, dtype=np.int64)
        out = np.zeros(idx.size, dtype=np.int64)
        # A candidate asked for every source it may serve is asked for its whole star,
        # whose count is known (a star's first step, and later ones for candidates whose
        # sources are all still unserved).
        whole = np.all(groups == self.cands.source_ok[:, idx], axis=0)
        if whole.any():
            out[whole] = self.full[idx[whole]]
        todo: list[int] = []
        keys: list[tuple[int, bytes]] = []
        for j in np.flatnonzero(~whole).tolist():
            key = (int(idx[j]), groups[:, j].tobytes())
            known = self._sizes.get(key)
            if known is None:
                todo.append(j)
                keys.append(key)
            else:
                out[j] = known
        if todo:
            cols = np.array(todo, dtype=np.int64)
            sub = groups[:, cols]
            found = self._sizer().size(idx[cols], sub, self.rates @ sub)
            unsure = found == sizing.UNSIZEABLE
            found[unsure] = self.full[idx[cols][unsure]]
            out[cols] = found
            self._sizes.update(zip(keys, found.tolist(), strict=True))
        return out

    @property
    def rates(self) -> FloatArray:
        """Per source: the design rate (sizing.design_rates), worked out on first use."""
        if self._design_rates is None:
            self._design_rates = sizing.design_rates(self.cands)
        return self._design_rates

    @property
    def sizes_later(self) -> bool:
        """Whether this workload may size candidates for a subset of its sources.

        A request star's first step reuses the full-star counts; later steps
        (sources left unserved) and spread partners need sizing.
        """
        return not self.is_job and (self.n_src > 1 or self.spread)

    def _sizer(self) -> sizing.StarSizer:
        if self._star_sizer is None:
            self._star_sizer = sizing.StarSizer(self.cands, self.wait_budgets)
        return self._star_sizer

    def _demand(self, c: int) -> Demand:
        demand = self._demands[c]
        if demand is None:
            # One object per distinct demand across workloads: the capacity state's fit cache
            # is keyed by it, and an identical key is found without comparing fields. Looked
            # up by its fields, so that most candidates never build one of their own.
            key = self.cands.demand_fields(c)
            demand = self.interned.get(key)
            if demand is None:
                demand = self.interned[key] = self.cands.demand(c)
            self._demands[c] = demand
        return demand

    def _room(self, capacity: CapacityState, c: int) -> int:
        room = capacity.fit_count(self._rows[c], self._demand(c))
        self._room_bounds(capacity)[c] = room
        return room

    def _room_bounds(self, capacity: CapacityState) -> dict[int, int]:
        """Per candidate: the room it was last found with — at most what it has now.

        Until replicas are given back somewhere, room only shrinks, so a
        candidate once found too small (most often: full) is too small again
        without asking the capacity state, whose lookups are most of a walk
        over the candidates. The bounds are dropped at each release.
        """
        if self._bounds_at != capacity.releases:
            self._bounds_at = capacity.releases
            self._bounds = {}
        return self._bounds

    def _fits(self, capacity: CapacityState, c: int, n: int) -> bool:
        bound = self._room_bounds(capacity).get(c)
        if bound is not None and bound < n:
            return False
        return self._room(capacity, c) >= n

    # -- request workloads: stars ---------------------------------------------------------

    def _groups(self, unserved: BoolArray) -> BoolArray:
        return self.cands.source_ok & unserved[:, None]

    def _work(self, groups: BoolArray) -> FloatArray:
        return np.asarray(self.weights @ groups + 1e-12 * groups.sum(axis=0), dtype=np.float64)

    def _star_options(
        self, capacity: CapacityState, unserved: BoolArray, first: bool
    ) -> tuple[Option | None, Option | None]:
        cands = self.cands
        if first and self._first_step is not None:
            # Every source unserved: the same arrays as the last evaluation (only room differs).
            groups, valid, order, replicas, cost_of, work_of = self._first_step
        else:
            groups = self._groups(unserved)
            valid = np.asarray(groups.any(axis=0), dtype=bool)
            idx = np.flatnonzero(valid)
            if not first and not self.spread and self.n_src and idx.size > LAZY_BATCH:
                lazy = self._lazy_single(capacity, groups, idx)
                if lazy is not None:
                    return lazy
            replicas = np.zeros(cands.size, dtype=np.int64)
            # A first step asks every candidate for its whole star (see _size).
            replicas[idx] = self.full[idx] if first else self._size(idx, groups[:, idx])
            sized = idx[replicas[idx] > 0]
            alpha = 0.5 if self.spread else 1.0
            shares = np.asarray(groups[:, sized] * alpha, dtype=np.float64)
            cost = self.scorer.objective(sized, replicas[sized], shares, alpha)
            work = self._work(groups[:, sized])
            order = sized[np.lexsort((sized, cost / work))]
            cost_of = np.full(cands.size, np.inf)
            work_of = np.ones(cands.size)
            cost_of[sized] = cost
            work_of[sized] = work
            if first:
                self._first_step = (groups, valid, order, replicas, cost_of, work_of)
        if not self.spread:
            return self._single(capacity, order, replicas, groups, cost_of, work_of)
        return self._paired(
            capacity,
            order,
            replicas,
            groups,
            cost_of,
            work_of,
            np.asarray(valid),
            _FIRST_STEP if first else None,
        )

    def _lazy_single(
        self, capacity: CapacityState, groups: BoolArray, idx: IntArray
    ) -> tuple[Option | None, Option | None] | None:
        """:meth:`_single` over candidates sized only as far as the walk needs them.

        Sizing every candidate for a step after the first (the sources left
        unserved) is most of a step's time, while the walk stops at the
        second candidate that fits. The objective grows with replicas, and no
        count is below ``sizing.floor`` (the minimum and a stable queue), so
        the objective at the floor bounds each candidate's ratio from below:
        candidates are sized in batches, cheapest bound first, and a sized
        candidate is walked once its exact (ratio, index) is below every
        unsized candidate's bound — the order the full sort gives. None when
        the bound does not hold (then everything is sized, as before).
        """
        scorer = self.scorer
        sub = groups[:, idx]
        if bool((scorer.per_replica[idx] < 0).any()):
            return None
        # sizing's own floor: conservative() starts from it and tighten() never goes below it.
        floor = self._sizer().floor(idx, self.rates @ sub)
        work = self._work(sub)
        cost_of = np.full(idx.size, np.inf)
        shares = np.asarray(sub, dtype=np.float64)
        low = scorer.objective(idx, floor, shares, 1.0) / work
        pending = np.lexsort((idx, low))  # positions into idx, by (bound, candidate)
        at = 0
        ready: list[tuple[float, int, int, int]] = []  # (ratio, candidate, replicas, position)
        best: Option | None = None
        batch = LAZY_BATCH
        while True:
            while ready and (
                at >= pending.size
                or (ready[0][0], ready[0][1]) < (float(low[pending[at]]), int(idx[pending[at]]))
            ):
                _, c, n, j = heapq.heappop(ready)
                if not self._eligible(capacity, best, c, n):
                    continue
                option = Option(c, n, sub[:, j].copy(), float(cost_of[j]), float(work[j]))
                if best is None:
                    best = option
                else:
                    return best, option
            if at >= pending.size:
                return best, None
            take = pending[at : at + batch]
            at += take.size
            batch *= 2
            cols = idx[take]
            n_take = self._size(cols, sub[:, take])
            if bool(((n_take > 0) & (n_take < floor[take])).any()):
                return None
            ok = n_take > 0
            good = take[ok]
            cost = scorer.objective(idx[good], n_take[ok], shares[:, good], 1.0)
            cost_of[good] = cost
            ratio = cost / work[good]
            for j, c, n, r in zip(
                good.tolist(), idx[good].tolist(), n_take[ok].tolist(), ratio.tolist(), strict=True
            ):
                heapq.heappush(ready, (r, c, n, j))

    def _eligible(self, capacity: CapacityState, best: Option | None, c: int, n: int) -> bool:
        """Candidate ``c`` with ``n`` replicas may be the best or the runner-up option.

        The runner-up must be on another site than the best: regret measures
        what losing the best site would cost.
        """
        if best is not None and self._site_of[c] == self._site_of[best.primary]:
            return False
        if not self._fits(capacity, c, n):
            self.failure.full.add(c)
            return False
        return True

    def _single(
        self,
        capacity: CapacityState,
        order: IntArray,
        replicas: IntArray,
        groups: BoolArray,
        cost_of: FloatArray,
        work_of: FloatArray,
    ) -> tuple[Option | None, Option | None]:
        best: Option | None = None
        for c in order.tolist():
            n = int(replicas[c])
            if not self._eligible(capacity, best, c, n):
                continue
            option = Option(c, n, groups[:, c].copy(), float(cost_of[c]), float(work_of[c]))
            if best is None:
                best = option
            else:
                return best, option
        return best, None

    def _paired(
        self,
        capacity: CapacityState,
        order: IntArray,
        replicas: IntArray,
        groups: BoolArray,
        cost_of: FloatArray,
        work_of: FloatArray,
        valid: BoolArray,
        context: int | None = None,
    ) -> tuple[Option | None, Option | None]:
        site = self.cands.site
        found: list[Option] = []
        tried = 0
        for c in order.tolist():
            if tried >= MAX_PRIMARIES:
                break
            # Heuristic pruning: a pair costs at least its primary, so once a primary
            # alone costs more per unit of work than the best pair on a second site,
            # later primaries are unlikely to do better.
            if found:
                ranked = sorted(found, key=lambda o: (o.ratio, o.primary))
                other = [o for o in ranked if int(site[o.primary]) != int(site[ranked[0].primary])]
                if other and cost_of[c] / work_of[c] >= other[0].ratio:
                    break
            if not self._fits(capacity, c, int(replicas[c])):
                self.failure.full.add(c)
                continue
            tried += 1
            option = self._partner(capacity, c, groups[:, c], valid, replicas, groups, context)
            if option is not None:
                found.append(option)
        return _best_two(found, site)

    def _partner(
        self,
        capacity: CapacityState,
        c: int,
        group: BoolArray,
        valid: BoolArray,
        replicas: IntArray,
        groups: BoolArray,
        context: int | None = None,
    ) -> Option | None:
        """The cheapest pair of ``c`` and a candidate in another failure domain.

        The pair serves the sources both can serve (each alone), so a partner
        that can take only some of the primary's sources still forms a pair
        for those; the rest are offered again in the next step. With a
        ``context`` (the arrays given are the same whenever it is: a star's
        first step, or a job's tasks remaining) the pairs are worked out once.
        """
        key = (c, context) if context is not None else None
        plan = self._partners.get(key) if key is not None else None
        if plan is None:
            plan = self._partner_plan(c, group, valid, replicas, groups)
            if key is not None:
                self._partners[key] = plan
        if isinstance(plan, str):
            # Replay what working it out counted (a partner that cannot be sized counts nothing).
            if plan == "no_partner":
                self.failure.no_partner += 1
            return None
        idx, n_p, n_c, shared, cost, work, ranked = plan
        for j in ranked:
            p = int(idx[j])
            if self._fits(capacity, p, int(n_p[j])):
                return Option(
                    c,
                    int(n_c[j]),
                    shared[:, j].copy(),
                    float(cost[j]),
                    float(work[j]),
                    p,
                    int(n_p[j]),
                )
            self.failure.full.add(p)
        return None

    def _partner_plan(
        self, c: int, group: BoolArray, valid: BoolArray, replicas: IntArray, groups: BoolArray
    ) -> _PartnerPlan | str:
        """Partners of ``c`` by pair ratio, before room is checked (or why there are none)."""
        cands = self.cands
        requests = bool(self.n_src) and not self.is_job
        ok = valid & (cands.domain != cands.domain[c])
        if requests:
            ok &= self._serves_some(group)
        idx = np.flatnonzero(ok)
        if not idx.size:
            return "no_partner"
        if requests:
            shared = cands.source_ok[:, idx] & group[:, None]
        else:
            shared = np.ones((self.n_src, idx.size), dtype=bool)
        n_p = np.where(np.all(groups[:, idx] == shared, axis=0), replicas[idx], 0)
        redo = np.flatnonzero(n_p == 0)
        if redo.size:
            n_p[redo] = self._size(idx[redo], shared[:, redo])
        n_c = np.where(np.all(shared == group[:, None], axis=0), replicas[c], 0)
        redo = np.flatnonzero(n_c == 0)
        if redo.size:
            n_c[redo] = self._size(np.full(redo.size, c), shared[:, redo])
        keep = (n_p > 0) & (n_c > 0)
        idx, n_p, n_c, shared = idx[keep], n_p[keep], n_c[keep], shared[:, keep]
        if not idx.size:
            return "unsizeable"
        half = np.asarray(shared * 0.5, dtype=np.float64)
        cost_p = self.scorer.objective(idx, n_p, half, 0.5)
        cost = cost_p + self.scorer.objective(np.full(idx.size, c), n_c, half, 0.5)
        work = np.full(idx.size, float(self.tasks)) if not requests else self._work(shared)
        ratio = cost / work
        return idx, n_p, n_c, shared, cost, work, np.lexsort((idx, ratio)).tolist()

    def _serves_some(self, group: BoolArray) -> BoolArray:
        """Per candidate: it may serve some source of ``group`` (remembered per group)."""
        key = group.tobytes()
        found = self._serving.get(key)
        if found is None:
            found = self._serving[key] = np.asarray(
                self.cands.source_ok[group].any(axis=0), dtype=bool
            )
        return found

    # -- jobs: tasks --------------------------------------------------------------------------

    def _task_options(
        self, capacity: CapacityState, remaining: int
    ) -> tuple[Option | None, Option | None]:
        """Fill the candidate with the lowest objective per task with as many tasks as fit."""
        cands = self.cands
        if self.spread:
            groups = np.ones((self.n_src, cands.size), dtype=bool)
            replicas = np.full(cands.size, remaining, dtype=np.int64)
            idx = np.arange(cands.size)
            cost_of = self.scorer.objective(idx, replicas, groups * 0.5, 0.5)
            order = idx[np.lexsort((idx, cost_of))]
            work_of = np.full(cands.size, float(remaining))
            return self._paired(
                capacity,
                order,
                replicas,
                groups,
                cost_of,
                work_of,
                np.ones(cands.size, dtype=bool),
                remaining,
            )
        known = self._task_bounds.get(remaining)
        if known is None:
            idx = np.arange(cands.size)
            fraction = remaining / self.tasks
            shares = np.full((self.n_src, cands.size), fraction)
            # Priced as if all remaining tasks fit: a lower bound on the cost per task,
            # since the per-site term is then spread over the most tasks.
            all_fit = self.scorer.objective(idx, np.full(cands.size, remaining), shares, fraction)
            bound_of = all_fit / remaining
            known = (
                idx[np.lexsort((idx, bound_of))].tolist(),
                bound_of.tolist(),
                all_fit.tolist(),
            )
            self._task_bounds[remaining] = known
        ranked, bound, all_fit_cost = known
        # The best option per site: the best overall is the best of these, and the
        # runner-up on another site (the stopping test, and the second option) the best
        # of the rest. A site's best only improves, so the two best sites are kept as
        # they change (the same two a sort of every site's best by (ratio, candidate)
        # would give); an option is only made for a site's new best.
        per_site: dict[int, Option] = {}
        top: list[tuple[float, int, int]] = []  # (ratio, candidate, site) of the two best sites
        runner_up = np.inf
        room_bounds = self._room_bounds(capacity)
        for c in ranked:
            if len(per_site) > 1 and bound[c] >= runner_up:
                break
            k = 0 if room_bounds.get(c, 1) <= 0 else min(self._room(capacity, c), remaining)
            if k <= 0:
                self.failure.full.add(c)
                continue
            if k == remaining:
                # objective_one's value to the bit (a candidate's objective does not
                # depend on the others it was priced with).
                one = all_fit_cost[c]
            else:
                f = k / self.tasks
                one = self.scorer.objective_one(c, k, [f] * self.n_src, f)
            ratio = one / float(k)  # Option.ratio
            site = self._site_of[c]
            held = per_site.get(site)
            if held is None or (ratio, c) < (held.ratio, held.primary):
                per_site[site] = Option(c, k, self._every_source, one, float(k))
                top = _two_best_sites(top, (ratio, c, site))
                runner_up = top[1][0] if len(top) > 1 else float("inf")
        best = per_site[top[0][2]] if top else None
        return best, per_site[top[1][2]] if len(top) > 1 else None

    # -- evaluation and commit --------------------------------------------------------------

    def uncovered(self, unserved: BoolArray | None = None) -> list[int]:
        """Sources of ``unserved`` (None: all) that no candidate may serve."""
        if not self.n_src or self.is_job:
            return []
        uncoverable = self._uncoverable
        if uncoverable is None:
            uncoverable = self._uncoverable = np.flatnonzero(
                ~self.cands.source_ok.any(axis=1)
            ).tolist()
        if unserved is None:
            return list(uncoverable)
        return [s for s in uncoverable if unserved[s]]

    def _options(
        self, capacity: CapacityState, unserved: BoolArray, remaining: int, first: bool
    ) -> tuple[Option | None, Option | None]:
        if self.is_job:
            return self._task_options(capacity, remaining)
        return self._star_options(capacity, unserved, first)

    def evaluate(self, capacity: CapacityState) -> Evaluation | None:
        best, second = self._options(capacity, self._every_source, self.tasks, True)
        if best is None:
            self.evaluation = None
            return None
        # Without a partner (no spread), the two options come from a walk whose answers
        # only get worse as rooms shrink; see stale() for why that lets them be kept.
        reusable = not self.spread
        self.evaluation = Evaluation(
            best,
            second,
            self._stamp(capacity, best, second),
            capacity.releases if reusable else -1,
            self._watched(best, second) if reusable else None,
        )
        return self.evaluation

    def _watched(self, best: Option, second: Option | None) -> IntArray | None:
        """Pools whose growing could change a reusable evaluation's two options (None: any).

        A star's walk takes, in a fixed order, the first candidate that fits
        and the next that fits on another site; more room changes nothing for
        a candidate that fit. So only the candidates before the second that
        did not fit matter (before the best, every one).

        A job's options would depend only on the candidates its walk found
        short of room, were its cost per task exactly non-increasing in the
        tasks taken; but ``objective(k) / k`` can come out one unit in the
        last place below the per-replica price for a smaller ``k``, so a
        fresh walk can break an exact tie between equally priced pools the
        other way. Any release still sends a job back, as it always did,
        which keeps plans as they were.
        """
        if self.is_job:
            return None
        assert self._first_step is not None
        order = self._first_step[2]
        site = self.cands.site
        at_best = int(np.flatnonzero(order == best.primary)[0])
        end = order.size if second is None else int(np.flatnonzero(order == second.primary)[0])
        between = order[at_best + 1 : end]
        between = between[site[between] != site[best.primary]]
        return np.asarray(self.cands.row[np.concatenate([order[:at_best], between])], np.int64)

    def _stamp(
        self, capacity: CapacityState, best: Option, second: Option | None
    ) -> tuple[tuple[int, int], ...]:
        rows = {
            self._rows[c]
            for option in (best, second)
            if option is not None
            for c in (option.primary, option.partner)
            if c >= 0
        }
        return tuple((r, capacity.version.item(r)) for r in sorted(rows))

    def stale(self, capacity: CapacityState) -> bool:
        """Whether the evaluation must be made again before committing on it.

        Not when the rows it relied on are unchanged. Nor, without spread,
        when nothing was released since on the pools it watches (_watched:
        for a star the pools that might have let a cheaper candidate fit, for
        a job every pool), so their room only shrank, and its best and second
        options still fit as they were. A single star walks its candidates in
        a fixed cost order and takes the first two that fit: those before them
        did not fit then and fit even less now. A job takes at each candidate
        as many tasks as fit, and its cost per task only grows as that number
        shrinks (the per-site term is carried by fewer tasks; the bound order
        of _task_options rests on the same fact; to the last bit it may not,
        see _watched): no other candidate got cheaper. Either way evaluating
        again would find the same two options (and the same candidates
        without room, already counted). A release frees one pool's nodes and
        its site's power, so only that pool, and where power is budgeted the
        site's others, can have grown (CapacityState.released_since).
        """
        ev = self.evaluation
        if ev is None:
            return True
        if all(capacity.version.item(r) == v for r, v in ev.stamp):
            return False
        if ev.releases < 0:
            return True
        if ev.watched is None:
            if ev.releases != capacity.releases:
                return True
        elif capacity.released_since(ev.releases, ev.watched):
            return True
        for option in (ev.best, ev.second):
            if option is not None and not self._fits(capacity, option.primary, option.replicas):
                return True
        self.evaluation = replace(ev, stamp=self._stamp(capacity, ev.best, ev.second))
        return False

    def _allocation(
        self, c: int, n: int, option: Option, nodes: list[tuple[int, int]]
    ) -> Allocation:
        if self.is_job:
            # A spread job runs in full on each side; a split one runs its share of tasks.
            fraction = 0.5 if self.spread else n / self.tasks
            design = 1.0 if self.spread else fraction
            return Allocation(
                c, n, (fraction,) * self.n_src, (design,) * self.n_src, tuple(nodes), fraction
            )
        half = 0.5 if self.spread else 1.0
        shares = option.group * half
        return Allocation(
            c,
            n,
            tuple(shares.tolist()),
            tuple(option.group.astype(float).tolist()),
            tuple(nodes),
            float(self.weights @ shares) if self.n_src else half,
        )

    def commit(self, capacity: CapacityState) -> list[Allocation] | Unplaced:
        """Place every step of this workload, or nothing (and say why)."""
        assert self.evaluation is not None
        unserved = np.ones(self.n_src, dtype=bool)
        remaining = self.tasks
        option: Option | None = self.evaluation.best
        placed: list[Allocation] = []
        while True:
            if option is None:
                self._rollback(capacity, placed)
                left = unserved if self.n_src and not self.is_job else None
                return self.failure.verdict(self.cands, self.uncovered(unserved), left)
            for c, n in (
                (option.primary, option.replicas),
                (option.partner, option.partner_replicas),
            ):
                if c < 0:
                    continue
                nodes = capacity.place(self._rows[c], n, self._demand(c))
                if nodes is None:  # options() checked the fit; never expected
                    self._rollback(capacity, placed)
                    return self.failure.verdict(self.cands, [])
                placed.append(self._allocation(c, n, option, nodes))
            if self.is_job:
                remaining -= option.replicas if not self.spread else remaining
                if remaining <= 0:
                    return placed
            else:
                unserved &= ~option.group
                if not unserved.any():
                    return placed
                missing = self.uncovered(unserved)
                if missing:
                    self._rollback(capacity, placed)
                    return self.failure.verdict(self.cands, missing)
            option, _ = self._options(capacity, unserved, remaining, False)

    def _rollback(self, capacity: CapacityState, placed: list[Allocation]) -> None:
        for alloc in reversed(placed):
            c = alloc.candidate
            capacity.release(self._rows[c], alloc.nodes, self._demand(c))

    def objective(self, allocations: list[Allocation]) -> float:
        return float(
            sum(
                self.scorer.objective_one(a.candidate, a.replicas, a.shares, a.weight)
                for a in allocations
            )
        )


def _two_best_sites(
    top: list[tuple[float, int, int]], better: tuple[float, int, int]
) -> list[tuple[float, int, int]]:
    """The two best sites' (ratio, candidate, site) once ``better`` is its site's new best.

    ``sorted(t for t in top if t[2] != better[2]) + [better])[:2]``, case by case: it
    runs for every site a job's walk improves.
    """
    site = better[2]
    if not top or (len(top) == 1 and top[0][2] == site):
        return [better]
    first = top[0]
    if len(top) == 1:
        return [first, better] if first < better else [better, first]
    second = top[1]
    if first[2] == site or second[2] == site:
        other = second if first[2] == site else first
        return [other, better] if other < better else [better, other]
    if better < first:
        return [better, first]
    return [first, better] if better < second else top


def _best_two(found: list[Option], site: IntArray) -> tuple[Option | None, Option | None]:
    if not found:
        return None, None
    found = sorted(found, key=lambda o: (o.ratio, o.primary))
    best = found[0]
    second = next((o for o in found[1:] if int(site[o.primary]) != int(site[best.primary])), None)
    return best, second


def solve(inp: SolverInput) -> SolverOutput:
    # The solve allocates many small objects, and every full pass of the cycle collector
    # would walk the fleet model and candidate tables, which outlive it (long_lived.py).
    with LongLivedObjects() as long_lived:
        return _solve(inp, long_lived)


def _solve(inp: SolverInput, long_lived: LongLivedObjects) -> SolverOutput:
    out = SolverOutput()
    capacity = inp.capacity
    planners = [
        _Planner(c, s, n) for c, s, n in zip(inp.table, inp.scorers, inp.full_replicas, strict=True)
    ]
    interned: dict[tuple[float, float, int, int, float], Demand] = {}
    for planner in planners:
        planner.interned = interned
    later = [p for p in planners if p.sizes_later]
    # In blocks, which bounds the temporary per-path arrays (the values do not depend on it).
    for start in range(0, len(later), _BUDGET_BLOCK):
        block = later[start : start + _BUDGET_BLOCK]
        for planner, budgets in zip(
            block, sizing.wait_budgets([p.cands for p in block]), strict=True
        ):
            planner.wait_budgets = budgets
    tiebreak = np.random.default_rng(inp.seed).permutation(len(planners)).tolist()
    heap: list[tuple[float, int, int, int]] = []

    def enqueue(i: int) -> None:
        planner = planners[i]
        name = planner.cands.view.name
        missing = planner.uncovered()
        if planner.cands.size == 0 or missing:
            out.unplaced[name] = planner.failure.verdict(planner.cands, missing)
            return
        ev = planner.evaluate(capacity)
        if ev is None:
            out.unplaced[name] = planner.failure.verdict(planner.cands, [])
            return
        heapq.heappush(heap, (-ev.regret, planner.sites, tiebreak[i], i))

    # What the planners keep (orders, sizes, evaluations) and what is placed lives to the
    # end of the solve: frozen, the collector's full passes no longer walk it each time.
    long_lived.settle()
    for i in range(len(planners)):
        if i and i % _SETTLE_EVERY == 0:
            long_lived.settle()
        enqueue(i)
    long_lived.settle()
    total = len(planners)
    popped = 0
    while heap:
        popped += 1
        if popped % _SETTLE_EVERY == 0:
            long_lived.settle()
        _, _, _, i = heapq.heappop(heap)
        planner = planners[i]
        if planner.stale(capacity):
            enqueue(i)
            continue
        result = planner.commit(capacity)
        name = planner.cands.view.name
        if isinstance(result, Unplaced):
            out.unplaced[name] = result
        else:
            out.allocations[name] = result
            out.order.append(name)
            out.objective += planner.objective(result)
        if inp.progress is not None:
            inp.progress(len(out.allocations) + len(out.unplaced), total)
    return out
