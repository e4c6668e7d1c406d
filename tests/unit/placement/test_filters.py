"""Every hard filter accepts what it should and rejects the rest with a reason in words."""

from __future__ import annotations

import numpy as np
import pytest
from placement_fleets import (
    fleet,
    image,
    inference,
    job,
    link,
    policy,
    pool,
    site,
    source,
)

from fleetplane.errors import ValidationError
from fleetplane.model.fleet import Fleet
from fleetplane.placement._internal import feasibility
from fleetplane.placement._internal.context import PlanContext
from fleetplane.placement._internal.pipeline import choose_policy
from fleetplane.placement._internal.rules import compile_policy


def context(f: Fleet) -> PlanContext:
    return PlanContext.build(f, compile_policy(choose_policy(f, None)))


def feasible_sites(f: Fleet, workload: str) -> set[str]:
    ctx = context(f)
    (cands,) = feasibility.candidates_for(ctx, [ctx.view(workload)])
    return {ctx.index.sites[int(s)].name for s in cands.site}


def rejection(f: Fleet, workload: str, site_name: str) -> tuple[str, str]:
    """(stage key, reason) of the given site's best miss."""
    ctx = context(f)
    view = ctx.view(workload)
    misses = feasibility.diagnose(ctx, view).by_site(ctx)
    miss = misses[ctx.index.site_index[site_name]]
    return feasibility.STAGES[miss.stage][0], feasibility.reason(ctx, view, miss)


def two_sites(**b_options: object) -> list[dict[str, object]]:
    """Site ``a`` (always fine) and site ``b`` built with the given options, one link."""
    return [
        image(),
        site("a"),
        site("b", **b_options),  # type: ignore[arg-type]
        link("a", "b", p50="1ms", p99="1ms"),
        source("cams", "a"),
    ]


def test_cordoned_site_is_rejected() -> None:
    f = fleet(*two_sites(cordoned=True), inference("w", ["cams"]))
    assert feasible_sites(f, "w") == {"a"}
    assert rejection(f, "w", "b") == ("site", "b/cpu: site is cordoned")


def test_workload_residency_limits_zones() -> None:
    f = fleet(
        *two_sites(zone="us"),
        source("cams-us", "b"),
        inference("w", ["cams", "cams-us"], residency=["eu"]),
    )
    assert feasible_sites(f, "w") == {"a"}
    stage, why = rejection(f, "w", "b")
    assert stage == "residency"
    assert "zone us is not among the workload's zones eu" in why


def test_source_data_stays_in_its_zone() -> None:
    f = fleet(*two_sites(zone="us"), inference("w", ["cams"]))
    assert feasible_sites(f, "w") == {"a"}
    stage, why = rejection(f, "w", "b")
    assert stage == "residency"
    assert "data must stay in eu" in why


def test_source_zone_can_be_declared_explicitly() -> None:
    docs = two_sites(zone="us")
    docs[-1] = source("cams", "a", zone="us")
    f = fleet(*docs, inference("w", ["cams"]))
    assert feasible_sites(f, "w") == {"b"}


GPU_L4 = {"kind": "gpu", "model": "l4", "count": 1, "memory": "24Gi", "watts": "72W"}
GPU_T4 = {"kind": "gpu", "model": "t4", "count": 1, "memory": "16Gi", "watts": "70W"}


NPU = {"kind": "npu", "model": "l4", "count": 1}


@pytest.mark.parametrize(
    ("request_", "accepted", "rejected", "why"),
    [
        ({"kind": "gpu"}, GPU_L4, GPU_T4, "needs a l4; pool has 1× gpu t4 16Gi"),
        ({"kind": "npu"}, NPU, GPU_L4, "l4 is a gpu, the workload requests a npu"),
        ({"kind": "gpu", "models": ["l4"]}, GPU_L4, GPU_T4, "needs a l4; pool has"),
        ({"kind": "gpu", "memory": "20Gi"}, GPU_L4, {**GPU_L4, "memory": "16Gi"}, "l4 has 16Gi"),
        (
            {"kind": "gpu", "count": 2},
            {**GPU_L4, "count": 4},
            GPU_L4,
            "nodes have 1× l4, one replica needs 2",
        ),
    ],
)
def test_accelerator_kind_model_memory_count(
    request_: dict[str, object],
    accepted: dict[str, object],
    rejected: dict[str, object],
    why: str,
) -> None:
    f = fleet(
        image("img", accelerators=("l4", "t4")),
        site("a", pools=[pool("acc", accelerators=[accepted])]),
        site("b", pools=[pool("acc", accelerators=[rejected])]),
        link("a", "b", p50="1ms", p99="1ms"),
        source("cams", "a"),
        inference(
            "w",
            ["cams"],
            accelerator=request_,
            profiles=[{"hardware": "l4", "serviceTime": {"mean": "5ms"}}],
        ),
    )
    assert feasible_sites(f, "w") == {"a"}
    stage, reason = rejection(f, "w", "b")
    assert stage == "hardware"
    assert why in reason


def test_accelerator_outside_allowed_models() -> None:
    f = fleet(
        image("img", accelerators=("l4",)),
        site("a", pools=[pool("acc", accelerators=[GPU_L4])]),
        source("cams", "a"),
        inference(
            "w",
            ["cams"],
            accelerator={"kind": "gpu", "models": ["a100-80g"]},
            profiles=[{"hardware": "l4", "serviceTime": {"mean": "5ms"}}],
        ),
    )
    assert feasible_sites(f, "w") == set()
    assert "l4 is not among the allowed models a100-80g" in rejection(f, "w", "a")[1]


def test_cpu_profile_arch() -> None:
    f = fleet(
        image("img", arches=("amd64", "arm64")),
        site("a", pools=[pool(arch="arm64")]),
        site("b"),
        link("a", "b", p50="1ms", p99="1ms"),
        source("cams", "a"),
        inference(
            "w",
            ["cams"],
            p99="200ms",
            profiles=[{"hardware": "cpu/arm64", "serviceTime": {"mean": "5ms"}}],
        ),
    )
    assert feasible_sites(f, "w") == {"a"}
    assert "profile 'cpu/arm64' needs arm64 nodes, pool is amd64" in rejection(f, "w", "b")[1]


@pytest.mark.parametrize(
    ("runtime", "b_image", "why"),
    [
        (
            {"drivers": {"cuda": ">=12.0"}},
            image("old", drivers={"cuda": "11.8"}),
            "node image old has cuda 11.8, workload needs >=12.0",
        ),
        (
            {"drivers": {"cuda": ">=12.0"}},
            image("old", drivers={}),
            "node image old has no cuda driver (needs >=12.0)",
        ),
        (
            {"containerRuntime": "containerd>=1.7"},
            image("old", runtime=("containerd", "1.6.21")),
            "node image old has containerd 1.6.21, workload needs >=1.7",
        ),
        (
            {"containerRuntime": "apptainer"},
            image("old"),
            "node image old runs containerd, workload needs apptainer",
        ),
        ({"arches": ["arm64"]}, image("old"), "pool is amd64, workload runs on arm64"),
    ],
)
def test_node_image_compatibility(
    runtime: dict[str, object], b_image: dict[str, object], why: str
) -> None:
    good = image(
        "img",
        arches=("amd64", "arm64"),
        drivers={"cuda": "12.10"},
        runtime=(
            "apptainer" if runtime.get("containerRuntime") == "apptainer" else "containerd",
            "1.7.12",
        ),
    )
    f = fleet(
        good,
        b_image,
        site("a", pools=[pool(arch="arm64" if runtime.get("arches") else "amd64")]),
        site("b", pools=[pool(image="old")]),
        link("a", "b", p50="1ms", p99="1ms"),
        source("cams", "a"),
        inference("w", ["cams"], runtime=runtime),
    )
    # 12.10 is newer than 12.0 and 12.9: versions compare as versions, not strings.
    assert feasible_sites(f, "w") == {"a"}
    stage, reason = rejection(f, "w", "b")
    assert stage == "image"
    assert why in reason


def test_image_must_support_the_accelerator() -> None:
    f = fleet(
        image("img", accelerators=("l4",)),
        image("plain"),
        site("a", pools=[pool("gpu", accelerators=[GPU_L4])]),
        site("b", pools=[pool("gpu", image="plain", accelerators=[GPU_L4])]),
        link("a", "b", p50="1ms", p99="1ms"),
        source("cams", "a"),
        inference("w", ["cams"], profiles=[{"hardware": "l4", "serviceTime": {"mean": "5ms"}}]),
    )
    assert feasible_sites(f, "w") == {"a"}
    assert "node image plain does not support l4" in rejection(f, "w", "b")[1]


def test_malformed_version_range_is_an_input_error() -> None:
    f = fleet(*two_sites(), inference("w", ["cams"], runtime={"drivers": {"cuda": ">=12.x"}}))
    with pytest.raises(ValidationError) as info:
        feasible_sites(f, "w")
    text = str(info.value)
    assert "spec.runtime.drivers.cuda" in text
    assert "'>=12.x' is not a version range" in text


def test_storage_media() -> None:
    nvme = {"media": "nvme", "readLatency": "100us"}
    hdd = {"media": "hdd", "readLatency": "8ms"}
    f = fleet(
        image(),
        site("a", pools=[pool(storage=[nvme])]),
        site("b", pools=[pool(storage=[hdd])]),
        link("a", "b", p50="1ms", p99="1ms"),
        source("cams", "a"),
        inference("w", ["cams"], storage={"reads": 2, "media": ["nvme", "ssd"]}),
    )
    assert feasible_sites(f, "w") == {"a"}
    assert "reads storage (nvme, ssd); pool has hdd" in rejection(f, "w", "b")[1]


def test_capacity_one_replica_must_fit_a_node() -> None:
    f = fleet(*two_sites(pools=[pool(cpu=2, memory="4Gi")]), inference("w", ["cams"], cpu=4))
    assert feasible_sites(f, "w") == {"a"}
    stage, why = rejection(f, "w", "b")
    assert stage == "capacity"
    assert "one replica needs 4 cpu / 1Gi, a node has 2 cpu / 4Gi" in why


def test_power_budget() -> None:
    f = fleet(
        *two_sites(power_budget="100W", pools=[pool(cpu=8, watts="400W")]),
        inference("w", ["cams"], cpu=4),
    )
    # Half a node's 400 W is 200 W, over b's 100 W budget; a has no budget.
    assert feasible_sites(f, "w") == {"a"}
    stage, why = rejection(f, "w", "b")
    assert stage == "power"
    assert "one replica draws 200 W, the site's budget is 100 W" in why


def test_deadline() -> None:
    f = fleet(
        image(),
        site("a"),
        job("slow", deadline="2h", runtime="3h"),
        job("fast", deadline="2h", runtime="1h"),
    )
    assert feasible_sites(f, "fast") == {"a"}
    assert feasible_sites(f, "slow") == set()
    stage, why = rejection(f, "slow", "a")
    assert stage == "deadline"
    assert "runs 3h on cpu, deadline 2h" in why


def test_network_path_from_every_source_of_a_job() -> None:
    f = fleet(
        image(),
        site("a"),
        site("b"),
        site("island"),
        link("a", "b"),
        source("lake", "a"),
        job("etl", sources=["lake"]),
    )
    assert feasible_sites(f, "etl") == {"a", "b"}
    stage, why = rejection(f, "etl", "island")
    assert stage == "network"
    assert "no network path from lake" in why


def test_latency_without_queueing_must_fit() -> None:
    f = fleet(
        image(),
        site("store"),
        site("hub", tier="regional"),
        link("store", "hub", p50="20ms", p99="30ms"),
        source("cams", "store"),
        inference(
            "w",
            ["cams"],
            p99="40ms",
            profiles=[{"hardware": "cpu", "serviceTime": {"mean": "5ms", "cv": 0}}],
        ),
    )
    assert feasible_sites(f, "w") == {"store"}
    stage, why = rejection(f, "w", "hub")
    assert stage == "latency"
    assert why.startswith("hub/cpu: p99 ")
    assert "> 40ms SLO from cams" in why


def test_policy_require_rule() -> None:
    rules = [{"name": "edge-only", "when": "true", "require": "site.tier == 'edge'"}]
    f = fleet(*two_sites(tier="regional"), policy(rules), inference("w", ["cams"]))
    assert feasible_sites(f, "w") == {"a"}
    stage, why = rejection(f, "w", "b")
    assert stage == "policy"
    assert "rule 'edge-only' requires site.tier == 'edge'" in why


def test_filters_apply_per_profile() -> None:
    # The GPU profile is only usable at b; the CPU profile at both.
    f = fleet(
        image("img", accelerators=("l4",)),
        site("a"),
        site("b", pools=[pool("gpu", accelerators=[GPU_L4])]),
        link("a", "b", p50="1ms", p99="1ms"),
        source("cams", "a"),
        inference(
            "w",
            ["cams"],
            profiles=[
                {"hardware": "l4", "serviceTime": {"mean": "2ms"}},
                {"hardware": "cpu", "serviceTime": {"mean": "5ms"}},
            ],
        ),
    )
    ctx = context(f)
    (cands,) = feasibility.candidates_for(ctx, [ctx.view("w")])
    pairs = {
        (ctx.index.row_label(int(r)), ctx.view("w").profiles[int(p)].hardware)
        for r, p in zip(cands.row, cands.profile, strict=True)
    }
    assert pairs == {("a/cpu", "cpu"), ("b/gpu", "l4"), ("b/gpu", "cpu")}


def test_unknown_zone_in_residency_has_no_candidates() -> None:
    f = fleet(*two_sites(), inference("w", ["cams"], residency=["mars"]))
    assert feasible_sites(f, "w") == set()


def test_latency_reason_is_the_smallest_overshoot_of_every_target_and_source() -> None:
    from fleetplane.placement._internal import prediction

    f = fleet(
        image(),
        site("s1"),
        site("s2"),
        site("hub", tier="regional"),
        link("s1", "hub", p50="30ms", p99="45ms"),
        link("s2", "hub", p50="22ms", p99="60ms"),
        source("cams", "s1"),
        source("door", "s2"),
        inference(
            "w",
            ["cams", "door"],
            p50="20ms",
            p99="40ms",
            profiles=[{"hardware": "cpu", "serviceTime": {"mean": "5ms", "cv": 0.5}}],
        ),
    )
    ctx = context(f)
    view = ctx.view("w")
    profile = view.profiles[0]
    row = next(r for r in range(ctx.index.n_rows) if ctx.index.site_of_row(r).name == "hub")
    rows = np.array([row], dtype=np.int64)
    parts = feasibility.latency_parts(
        ctx, view, profile, rows, feasibility.storage_latency(ctx, view, rows)
    )
    overshoots = []
    for q, target in view.targets:  # one call per target, every source: the plain way
        values = prediction.quantiles(np.full(parts.size, q), parts)
        overshoots += [(float(v / target), q, s) for s, v in enumerate(values.tolist())]
    assert len([o for o in overshoots if o[0] > 1.0]) >= 3
    _, q, s = min(o for o in overshoots if o[0] > 1.0)
    stage, why = rejection(f, "w", "hub")
    assert stage == "latency"
    label = "p50" if q == 0.5 else "p99"
    assert why.startswith(f"hub/cpu: {label} ") and f"from {view.sources[s].name} " in why, why
