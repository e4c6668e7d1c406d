"""Policy rules in CEL: when/require/prefer, errors that name the rule, and the result cache."""

from __future__ import annotations

import pytest
from placement_fleets import fleet, image, inference, job, link, policy, pool, site, source

from fleetplane.errors import PolicyError
from fleetplane.model.fleet import Fleet
from fleetplane.model.loader import read_text
from fleetplane.placement import default_policy, plan
from fleetplane.placement._internal.rules import compile_policy, fields_read


def tiers_fleet(*extra: dict[str, object]) -> Fleet:
    return fleet(
        image(),
        site("store"),
        site("hub", tier="regional", cpu_hour="0.001/h", memory_hour="0/h"),
        link("store", "hub", p50="2ms", p99="3ms"),
        source("cams", "store"),
        inference("vision", ["cams"], p99="200ms", labels={"team": "vision"}),
        *extra,
    )


def placed_sites(f: Fleet, workload: str = "vision") -> set[str]:
    result = plan(f)
    (item,) = [w for w in result.placement.spec.workloads if w.workload == workload]
    return {a.site for a in item.assignments}


def test_without_rules_the_cheaper_hub_wins() -> None:
    assert placed_sites(tiers_fleet(policy())) == {"hub"}


def test_require_rule_applies_only_when_its_when_holds() -> None:
    edge_for_vision = {
        "name": "vision-at-the-edge",
        "when": "workload.labels['team'] == 'vision'",
        "require": "site.tier == 'edge'",
    }
    assert placed_sites(tiers_fleet(policy([edge_for_vision]))) == {"store"}
    other_team = dict(edge_for_vision, when="workload.labels['team'] == 'payments'")
    assert placed_sites(tiers_fleet(policy([other_team]))) == {"hub"}


def test_prefer_rule_weight_is_money_per_month() -> None:
    def prefer(weight: float) -> dict[str, object]:
        return {"name": "edge", "prefer": "site.tier == 'edge'", "weight": weight}

    # The store costs about 30/month more than the hub here (cpu prices 0.04 vs 0.001/h).
    assert placed_sites(tiers_fleet(policy([prefer(1.0)]))) == {"hub"}
    assert placed_sites(tiers_fleet(policy([prefer(1000.0)]))) == {"store"}
    result = plan(tiers_fleet(policy([prefer(1000.0)])))
    assert result.placement.spec.workloads[0].rules_fired == ["edge: preferred, holds"]


def test_rules_read_durations_sizes_and_lists() -> None:
    big_memory = {
        "name": "big-pools-for-tight-budgets",
        "when": "has(workload.slo.p99) && workload.slo.p99 <= duration('200ms')",
        "require": "pool.memory >= 48 * 1024 * 1024 * 1024",
    }
    f = tiers_fleet(policy([big_memory]))
    f.sites["store"].spec.node_pools[0].memory = 64 * 2**30
    assert placed_sites(f) == {"store"}
    needs_storage = {"name": "needs-storage", "require": "size(pool.storage) > 0"}
    result = plan(tiers_fleet(policy([needs_storage])))
    assert not result.placement.spec.workloads
    (missing,) = result.placement.spec.unplaceable
    assert missing.rejections[0].constraint == "policy rule"
    assert "rule 'needs-storage' requires size(pool.storage) > 0" in missing.rejections[0].example


def test_compile_error_names_rule_position_and_caret() -> None:
    text = """
apiVersion: fleetplane/v1
kind: PlacementPolicy
metadata: {name: broken}
spec:
  rules:
    - name: fine
      require: "true"
    - name: half-written
      require: "site.tier == "
"""
    loaded = read_text(text, "policy.yaml")
    resource = next(iter(loaded.fleet.policies.values()))
    with pytest.raises(PolicyError) as info:
        compile_policy(resource, loaded.sources.locate)
    message = str(info.value)
    assert message.startswith("policy.yaml:10:")
    assert "spec.rules[1].require" in message
    assert "rule 'half-written' does not compile" in message
    assert "at 1:14" in message
    assert "^" in message


def test_unknown_field_suggests_the_closest() -> None:
    bad = policy([{"name": "typo", "require": "site.teir == 'edge'"}])
    with pytest.raises(PolicyError, match="site has no field 'teir'; did you mean 'tier'"):
        plan(tiers_fleet(bad))


def test_unknown_variable_lists_the_known_ones() -> None:
    bad = policy([{"name": "typo", "require": "node.tier == 'edge'"}])
    with pytest.raises(
        PolicyError, match="unknown variable 'node'; rules can use workload, site, pool"
    ):
        plan(tiers_fleet(bad))


def test_missing_field_names_rule_and_field_and_suggests_has() -> None:
    # slo.p99 is absent for a job: reading it without has() is an error.
    bad = policy([{"name": "fast", "when": "workload.slo.p99 < duration('1s')", "require": "true"}])
    f = tiers_fleet(bad, job("nightly"))
    with pytest.raises(PolicyError) as info:
        plan(f)
    message = str(info.value)
    assert "rule 'fast'" in message
    assert "field 'workload.slo.p99' is not set for workload 'nightly'" in message
    assert "has(" in message


def test_guarded_field_is_fine() -> None:
    good = policy(
        [
            {
                "name": "fast",
                "when": "has(workload.slo.p99) && workload.slo.p99 < duration('1s')",
                "require": "site.tier == 'edge'",
            }
        ]
    )
    result = plan(tiers_fleet(good, job("nightly")))
    assert result.complete


def test_rule_must_be_boolean() -> None:
    bad = policy([{"name": "number", "require": "pool.cpu"}])
    with pytest.raises(PolicyError, match=r"rule 'number' .* must be true or false, got 8"):
        plan(tiers_fleet(bad))


def test_results_are_cached_by_the_fields_a_rule_reads() -> None:
    # 60 stores, all edge tier: a rule reading site.tier and workload.class is
    # evaluated once per distinct (tier, class), not once per store.
    stores = [site(f"store-{i:02d}") for i in range(60)]
    links = [link(f"store-{i:02d}", "hub", p50="2ms", p99="3ms") for i in range(60)]
    rule = {
        "name": "edge",
        "when": "workload.class == 'inference'",
        "require": "site.tier == 'edge'",
    }
    f = fleet(
        image(),
        site("hub", tier="regional"),
        *stores,
        *links,
        *[source(f"cams-{i:02d}", f"store-{i:02d}") for i in range(60)],
        inference("a", [f"cams-{i:02d}" for i in range(60)], p99="200ms"),
        inference("b", [f"cams-{i:02d}" for i in range(30)], p99="200ms"),
        policy([rule]),
    )
    result = plan(f)
    assert result.complete
    # when: one value of workload.class; require: two tiers (edge, regional).
    assert result.cel_evaluations <= 3
    assert result.cel_lookups > 3 * result.cel_evaluations


def test_fields_read_ignores_strings_and_comprehension_variables() -> None:
    fields = fields_read(
        "site.tier == 'workload.name' && pool.accelerators.exists(a, a.kind == 'gpu') "
        "&& has(workload.slo.p99)"
    )
    assert fields == {"pool": ("accelerators",), "site": ("tier",), "workload": ("slo",)}


def test_default_policy_compiles_and_steers_small_batch_inference_to_the_edge() -> None:
    compiled = compile_policy(default_policy())
    assert [r.name for r in compiled.rules] == [
        "small-batch-inference-at-the-edge",
        "large-batch-training-on-gpu-pools",
    ]
    # No policy in the fleet: the default applies, and its 150/month preference
    # outweighs the hub's ~30/month saving for a 40 ms budget.
    f = fleet(
        image(),
        site("store"),
        site("hub", tier="regional", cpu_hour="0.001/h", memory_hour="0/h"),
        link("store", "hub", p50="2ms", p99="3ms"),
        source("cams", "store"),
        inference("vision", ["cams"], p99="40ms"),
    )
    result = plan(f)
    assert result.placement.spec.policy == "fleetplane-default"
    assert placed_sites(f) == {"store"}


def test_default_policy_sends_gpu_training_to_gpu_pools_off_the_edge() -> None:
    gpu = {"kind": "gpu", "model": "l4", "count": 1, "memory": "24Gi"}
    f = fleet(
        image("img", accelerators=("l4",)),
        site("store", pools=[pool("gpu", accelerators=[gpu])], accelerator_hour={"l4": "0.1/h"}),
        site(
            "hub",
            tier="regional",
            pools=[pool("gpu", accelerators=[gpu])],
            accelerator_hour={"l4": "0.8/h"},
        ),
        link("store", "hub", p50="2ms", p99="3ms"),
        job(
            "train",
            cls="training",
            hardware="l4",
            accelerator={"kind": "gpu"},
            deadline="48h",
            runtime="10h",
        ),
    )
    result = plan(f)
    (item,) = result.placement.spec.workloads
    assert item.assignments[0].site == "hub"
    assert item.rules_fired == ["large-batch-training-on-gpu-pools: preferred, holds"]
