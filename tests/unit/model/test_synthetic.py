"""The synthetic fleet generator: deterministic, sized as asked, realistic, loadable."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import cel
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from fleetplane.errors import ValidationError
from fleetplane.model.fleet import Fleet
from fleetplane.model.loader import load_fleet
from fleetplane.model.references import check_references
from fleetplane.model.synthetic import (
    fleet_documents,
    generate_documents,
    generate_fleet,
    render_yaml,
)

KINDS = ("Site", "Link", "NodeImage", "DataSource", "Workload", "PlacementPolicy")


@pytest.fixture(scope="module")
def medium() -> Fleet:
    return generate_fleet(200, 1000, seed=3)


def _load_yaml(text: str) -> list[Any]:
    return list(YAML(typ="safe", pure=True).load_all(text))


# ------------------------------------------------------------------ determinism and size


def test_the_same_seed_gives_the_same_documents() -> None:
    first = generate_documents(40, 150, seed=11)
    assert first == generate_documents(40, 150, seed=11)
    again = render_yaml(fleet_documents(generate_fleet(40, 150, seed=11)))
    assert render_yaml(fleet_documents(generate_fleet(40, 150, seed=11))) == again


def test_another_seed_gives_another_fleet() -> None:
    assert generate_documents(40, 150, seed=11) != generate_documents(40, 150, seed=12)


@settings(max_examples=25, deadline=None)
@given(
    sites=st.integers(min_value=1, max_value=60),
    workloads=st.integers(min_value=0, max_value=80),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_sizes_are_honoured_and_every_reference_resolves(
    sites: int, workloads: int, seed: int
) -> None:
    fleet = generate_fleet(sites, workloads, seed)
    assert len(fleet.sites) == sites
    assert len(fleet.workloads) == workloads
    assert len(fleet.policies) == 1
    assert check_references(fleet) == []


@pytest.mark.parametrize(("sites", "workloads"), [(0, 5), (3, -1)])
def test_impossible_sizes_are_input_errors(sites: int, workloads: int) -> None:
    with pytest.raises(ValidationError):
        generate_fleet(sites, workloads, seed=0)


# ------------------------------------------------------------------ structure


def test_regions_have_a_hub_and_edge_sites_hang_off_it(medium: Fleet) -> None:
    tiers = Counter(site.spec.tier for site in medium.sites.values())
    assert tiers["regional"] >= 3
    assert tiers["hpc"] >= 1
    assert tiers["edge"] > tiers["regional"] + tiers["hpc"]
    hubs = {s.spec.region: s.name for s in medium.sites.values() if s.spec.tier == "regional"}
    links_of: dict[str, list[tuple[str, str]]] = {}
    for link in medium.links.values():
        links_of.setdefault(link.spec.a, []).append((link.spec.a, link.spec.b))
        links_of.setdefault(link.spec.b, []).append((link.spec.a, link.spec.b))
    for site in medium.sites.values():
        if site.spec.tier != "regional":
            assert links_of[site.name] == [(site.name, hubs[site.spec.region])]


def test_hubs_are_meshed(medium: Fleet) -> None:
    hubs = {s.name for s in medium.sites.values() if s.spec.tier == "regional"}
    pairs = {
        frozenset((link.spec.a, link.spec.b))
        for link in medium.links.values()
        if link.spec.a in hubs and link.spec.b in hubs
    }
    assert len(pairs) == len(hubs) * (len(hubs) - 1) // 2


def test_several_residency_zones(medium: Fleet) -> None:
    zones = {site.spec.residency_zone for site in medium.sites.values()}
    assert {"us", "eu"} <= zones
    assert len(zones) >= 3


def test_accelerators_on_a_fraction_of_edge_sites(medium: Fleet) -> None:
    edges = [s for s in medium.sites.values() if s.spec.tier == "edge"]
    accelerated = [s for s in edges if any(p.accelerators for p in s.spec.node_pools)]
    assert 0.2 < len(accelerated) / len(edges) < 0.8
    kinds = {a.kind for s in accelerated for p in s.spec.node_pools for a in p.accelerators}
    assert kinds == {"gpu", "npu", "fpga"}
    images = {p.node_image for s in medium.sites.values() for p in s.spec.node_pools}
    assert images <= set(medium.node_images)
    assert "jetpack-5.1" in images  # an older image keeps CUDA-12 workloads away


def test_data_sources_at_every_edge_site(medium: Fleet) -> None:
    with_sources = {d.spec.site for d in medium.data_sources.values()}
    edges = {s.name for s in medium.sites.values() if s.spec.tier == "edge"}
    assert edges <= with_sources


def test_workloads_mix_classes_and_a_few_are_hard(medium: Fleet) -> None:
    classes = Counter(w.spec.class_ for w in medium.workloads.values())
    assert set(classes) == {"inference", "streaming", "control", "batch", "training"}
    hard = sum(w.metadata.labels.get("difficulty") == "hard" for w in medium.workloads.values())
    assert 0.01 <= hard / len(medium.workloads) <= 0.06


def test_edge_scoped_workloads_are_served_where_their_data_is(medium: Fleet) -> None:
    """A budget of 50 ms or less cannot afford the WAN: their sources are all at edge sites."""
    for workload in medium.workloads.values():
        if workload.metadata.labels["scope"] != "edge":
            continue
        assert workload.spec.slo.latency is not None
        assert workload.spec.slo.latency.p99 is not None
        assert workload.spec.slo.latency.p99 <= 0.1
        for demand in workload.spec.demand:
            site = medium.data_sources[demand.source].spec.site
            assert medium.sites[site].spec.tier == "edge"


def test_policy_rules_compile_as_cel(medium: Fleet) -> None:
    policy = medium.policy
    assert policy is not None
    for rule in policy.spec.rules:
        for expression in (rule.when, rule.require, rule.prefer):
            if expression is not None:
                cel.compile(expression)


# ------------------------------------------------------------------ YAML


def test_generated_yaml_loads_back_as_the_same_fleet(tmp_path: Path) -> None:
    fleet = generate_fleet(30, 100, seed=7)
    by_kind: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    for document in fleet_documents(fleet):
        by_kind[document["kind"]].append(document)
    for kind, documents in by_kind.items():
        (tmp_path / f"{kind}.yaml").write_text(render_yaml(documents), encoding="utf-8")
    loaded = load_fleet(tmp_path)
    for kind in KINDS:
        assert list(loaded.collection(kind)) == list(fleet.collection(kind))
        assert loaded.collection(kind) == fleet.collection(kind)


def test_documents_are_compact_and_start_with_the_envelope() -> None:
    documents = fleet_documents(generate_fleet(5, 10, seed=1))
    for document in documents:
        assert list(document)[:2] == ["apiVersion", "kind"]
        assert "annotations" not in document["metadata"]
        assert "status" not in document


def test_rendered_documents_parse_to_the_same_data() -> None:
    documents = fleet_documents(generate_fleet(15, 60, seed=9))
    assert _load_yaml(render_yaml(documents)) == documents


_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
_SCALARS = st.one_of(
    _TEXT,
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents=st.lists(st.dictionaries(_TEXT, _VALUES, min_size=1, max_size=5), max_size=3))
def test_any_plain_data_survives_rendering(documents: list[dict[str, Any]]) -> None:
    assert _load_yaml(render_yaml(documents)) == documents


@pytest.mark.parametrize(
    "text", ["12.4", "1e3", "yes", "no", "on", "null", "~", "", "-", "a: b", "#x", "- x", "0x1F"]
)
def test_strings_yaml_would_misread_are_quoted(text: str) -> None:
    assert _load_yaml(render_yaml([{"value": text}])) == [{"value": text}]
    assert f'"{text}"' in render_yaml([{"value": text}])


# ------------------------------------------------------------------ placeable


def test_every_workload_not_marked_hard_is_placed() -> None:
    placement = pytest.importorskip("fleetplane.placement")
    fleet = generate_fleet(40, 160, seed=2)
    result = placement.plan(fleet)
    unplaced = {u.workload for u in result.placement.spec.unplaceable}
    not_hard = {
        name for name, w in fleet.workloads.items() if w.metadata.labels.get("difficulty") != "hard"
    }
    assert unplaced.isdisjoint(not_hard), sorted(unplaced & not_hard)
