"""Chunk-wide screening (feasibility.screen_many) and pricing equal the one-workload paths.

screen_many groups a chunk's profiles by requirement signature and runs the
size, policy and per-source stages on matrices and flat arrays; the answer
(rows, per-source arrays, candidate tables) and the rule evaluator's counters
must be those of screening each workload alone. RuleEvaluator.penalties must
equal penalty() called per request, counters included.
"""

from __future__ import annotations

import numpy as np
import pytest

from fleetplane.model.fleet import Fleet
from fleetplane.model.synthetic import generate_fleet
from fleetplane.placement._internal import feasibility, pipeline, prediction
from fleetplane.placement._internal.candidates import Candidates
from fleetplane.placement._internal.context import PlanContext
from fleetplane.placement._internal.rules import compile_policy

ENTRY_FIELDS = ("storage", "source_ok", "rtt_mu", "rtt_sigma", "loss", "price")
TABLE_FIELDS = (
    "row",
    "profile",
    "entry",
    "site",
    "domain",
    "storage",
    "svc_mean",
    "svc_cv",
    "concurrency",
    "model_cost",
    "penalty",
    "source_ok",
    "rtt_mu",
    "rtt_sigma",
    "loss",
    "egress",
)


def _context(fleet: Fleet, *, cel_cache: bool = True) -> PlanContext:
    policy = compile_policy(pipeline.choose_policy(fleet, None))
    return PlanContext.build(fleet, policy, cel_cache=cel_cache)


def _same_screened(a: feasibility.Screened, b: feasibility.Screened) -> None:
    assert a.view.name == b.view.name
    assert [e.profile.index for e in a.profiles] == [e.profile.index for e in b.profiles]
    for x, y in zip(a.profiles, b.profiles, strict=True):
        assert x.timed == y.timed
        np.testing.assert_array_equal(x.rows, y.rows)
        np.testing.assert_array_equal(x.hw.entry, y.hw.entry)
        for name in ("count", "watts", "price", "units"):
            np.testing.assert_array_equal(getattr(x.hw.acc, name), getattr(y.hw.acc, name))
        for name in ENTRY_FIELDS:
            left, right = getattr(x, name), getattr(y, name)
            assert left.shape == right.shape and left.dtype == right.dtype, name
            np.testing.assert_array_equal(left, right)


def _same_table(a: Candidates, b: Candidates) -> None:
    assert a.beyond_cap == b.beyond_cap
    for name in TABLE_FIELDS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    for name in a.rates.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(a.rates, name), getattr(b.rates, name))


@pytest.mark.parametrize(("seed", "cel_cache"), [(0, True), (3, True), (5, False)])
def test_chunk_screen_equals_one_workload_at_a_time(seed: int, cel_cache: bool) -> None:
    fleet = generate_fleet(40, 300, seed)
    names = sorted(fleet.workloads)
    alone = _context(fleet, cel_cache=cel_cache)
    chunked = _context(fleet, cel_cache=cel_cache)
    one = [feasibility.screen(alone, alone.view(n)) for n in names]
    many: list[feasibility.Screened] = []
    for start in range(0, len(names), 64):
        many += feasibility.screen_many(
            chunked, [chunked.view(n) for n in names[start : start + 64]]
        )
    assert sum(len(s.profiles) for s in many) > 0
    for a, b in zip(one, many, strict=True):
        _same_screened(a, b)
    assert alone.rules.stats == chunked.rules.stats
    feasibility.resolve_latency(one)
    feasibility.resolve_latency(many)
    for a, b in zip(one, many, strict=True):
        _same_table(feasibility.finish(alone, a), feasibility.finish(chunked, b))
    assert alone.rules.stats == chunked.rules.stats


def test_penalties_equal_penalty_per_request() -> None:
    fleet = generate_fleet(40, 300, 2)
    ctx = _context(fleet)
    assert ctx.policy.prefers  # the generated policy prefers edge sites for tight budgets
    screened = feasibility.screen_many(ctx, [ctx.view(n) for n in sorted(fleet.workloads)])
    asks = [(s.view, e.profile, e.rows) for s in screened for e in s.profiles]
    # Twice each: the first pass fills the tables (slow path), the second reads them.
    one, many = _context(fleet), _context(fleet)
    for _ in range(2):
        want = np.concatenate([one.rules.penalty(v, p, r) for v, p, r in asks])
        got = many.rules.penalties(asks)
        np.testing.assert_array_equal(got, want)
        assert many.rules.stats == one.rules.stats
    # Half the rows first, then all: some requests are partly known.
    one, many = _context(fleet), _context(fleet)
    halves = [(v, p, r[::2]) for v, p, r in asks[::3]]
    for batch in (halves, asks):
        want = np.concatenate([one.rules.penalty(v, p, r) for v, p, r in batch])
        np.testing.assert_array_equal(many.rules.penalties(batch), want)
        assert many.rules.stats == one.rules.stats


def _latency_check_everywhere(
    ctx: PlanContext,
    view: feasibility.WorkloadView,
    profile: feasibility.ProfileView,
    rows: np.ndarray,
    source: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """latency_check with an exact quantile for every element the bounds leave open."""
    storage = feasibility.storage_latency(ctx, view, rows)
    parts = feasibility.latency_parts(ctx, view, profile, rows, storage)
    n_src = len(view.sources)
    usable = (
        feasibility.source_zone_ok(ctx, view, rows) & feasibility.source_reachable(ctx, view, rows)
    ).ravel()
    worst = np.zeros(n_src * rows.size)
    for q, target in view.targets:
        levels = np.full(parts.size, q)
        lower, upper = prediction.no_wait_bounds(levels, parts)
        value = np.where(lower > target, lower, upper)
        unsure = np.flatnonzero(usable & (lower <= target) & (upper > target))
        value[unsure] = prediction.quantiles(levels[unsure], parts.take(unsure))
        worst = np.maximum(worst, value / target)
    table = np.where(usable, worst, np.inf).reshape(n_src, rows.size)
    ratio = table[source] if source is not None else table.min(axis=0)
    return ratio <= 1.0 + 1e-9, ratio


def test_diagnosis_latency_check_skips_only_quantiles_that_cannot_matter() -> None:
    """Rows it passes are those every exact quantile passes; failing rows keep their ratio."""
    fleet = generate_fleet(40, 120, 4)
    ctx = PlanContext.build(fleet, compile_policy(pipeline.choose_policy(fleet, None)))
    rows = np.arange(ctx.index.n_rows, dtype=np.int64)
    checked = failed = passed = 0
    for name in sorted(fleet.workloads):
        view = ctx.view(name)
        if not (view.targets and view.sources):
            continue
        for profile in view.profiles:
            for source in (None, *range(min(2, len(view.sources)))):
                ok, ratio = prediction.answer(
                    feasibility.latency_checking(ctx, view, profile, rows, source)
                )
                want_ok, want_ratio = _latency_check_everywhere(ctx, view, profile, rows, source)
                assert ok.tolist() == want_ok.tolist()
                assert ratio[~ok].tolist() == want_ratio[~want_ok].tolist()
                checked += 1
                failed += int((~ok).sum())
                passed += int(ok.sum())
    assert checked > 50 and failed > 100 and passed > 100


def test_diagnoses_and_reasons_asked_together_equal_those_asked_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Explaining many unplaceable workloads computes their exact latencies in shared calls."""
    fleet = generate_fleet(40, 120, 4)
    ctx = PlanContext.build(fleet, compile_policy(pipeline.choose_policy(fleet, None)))
    asked = [
        (view, source)
        for view in (ctx.view(name) for name in sorted(fleet.workloads))
        if view.targets and view.sources
        for source in (None, 0)
    ]
    alone = [feasibility.diagnose(ctx, view, source) for view, source in asked]
    calls: list[int] = []
    quantiles = prediction.quantiles
    monkeypatch.setattr(
        prediction, "quantiles", lambda q, parts: calls.append(parts.size) or quantiles(q, parts)
    )
    together = prediction.answer_together(
        [feasibility.diagnosing(ctx, view, source) for view, source in asked]
    )
    rounds = max(len(view.profiles) * len(view.targets) for view, _ in asked)
    assert 0 < len(calls) <= rounds < len(asked)
    for a, b in zip(alone, together, strict=True):
        assert (a.rows.tolist(), a.stage.tolist(), a.profile.tolist(), a.passed) == (
            b.rows.tolist(),
            b.stage.tolist(),
            b.profile.tolist(),
            b.passed,
        )
        assert a.ratio.tolist() == b.ratio.tolist()
    latency = feasibility.STAGE_INDEX["latency"]
    misses = [
        (view, d.miss(k))
        for (view, _), d in zip(asked, alone, strict=True)
        for k in np.flatnonzero(d.stage == latency)[:3].tolist()
    ]
    assert len(misses) > 20
    calls.clear()
    words = prediction.answer_together([feasibility.reasoning(ctx, v, m) for v, m in misses])
    assert len(calls) == 1
    assert words == [feasibility.reason(ctx, v, m) for v, m in misses]
    assert all(" > " in text and "SLO from" in text for text in words)


def test_unplaceable_summaries_made_in_small_blocks_are_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fleetplane.placement import plan
    from fleetplane.placement._internal import explain

    fleet = generate_fleet(40, 300, 3)
    whole = plan(fleet).placement.spec.unplaceable
    assert len(whole) >= 3
    monkeypatch.setattr(explain, "_SUMMARY_BLOCK", 2)
    assert plan(fleet).placement.spec.unplaceable == whole


def test_path_parts_equal_latency_parts_for_the_same_pairs() -> None:
    # verify.design_paths gathers many workloads' paths at once through path_parts.
    fleet = generate_fleet(40, 300, 2)
    ctx = _context(fleet)
    rng = np.random.default_rng(5)
    want: list[prediction.Parts] = []
    sites, rows = [], []
    views = [ctx.view(n) for n in sorted(fleet.workloads)]
    for view in [v for v in views if v.sources and not v.is_job][:60]:
        profile = view.profiles[0]
        chosen = np.sort(rng.choice(ctx.index.n_rows, size=3, replace=False))
        storage = feasibility.storage_latency(ctx, view, chosen)
        parts = feasibility.latency_parts(ctx, view, profile, chosen, storage)
        want.append(parts)
        # latency_parts is (sources × rows) flattened, row-major.
        sites += [s.site for s in view.sources for _ in chosen]
        rows += [int(r) for _ in view.sources for r in chosen]
    expected = prediction.Parts.concat(want)
    got = feasibility.path_parts(
        _context(fleet),  # its own network rows, filled by path_parts alone
        np.array(sites, dtype=np.int64),
        np.array(rows, dtype=np.int64),
        expected.storage,
        expected.svc_mean,
        expected.svc_cv,
    )
    assert expected.size > 300
    for field in ("rtt_mu", "rtt_sigma", "loss"):
        np.testing.assert_array_equal(getattr(got, field), getattr(expected, field))
