"""Cross-reference checks: dangling names, isolated sites, repeated demand sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetplane.errors import Problem
from fleetplane.model.loader import load_fleet, read_text
from fleetplane.model.references import check_references, render_path

FLEET = Path(__file__).resolve().parents[2] / "fixtures" / "loader" / "fleet"


def at(text: str, needle: str) -> tuple[int, int]:
    """1-based line and column of the only occurrence of ``needle`` (plain text search)."""
    assert text.count(needle) == 1, f"{needle!r} occurs {text.count(needle)} times"
    index = text.index(needle)
    return text.count("\n", 0, index) + 1, index - (text.rfind("\n", 0, index) + 1) + 1


def fleet_text() -> str:
    """The fixture fleet as one multi-document text."""
    files = sorted(FLEET.rglob("*.yaml"))
    return "---\n".join(f.read_text() for f in files)


def without(text: str, name: str) -> str:
    """The text without the document that defines ``name``."""
    documents = text.split("---\n")
    kept = [d for d in documents if f"name: {name}\n" not in d]
    assert len(kept) == len(documents) - 1
    return "---\n".join(kept)


def check(text: str) -> list[Problem]:
    return read_text(text, "fleet.yaml").problems


def only(text: str) -> Problem:
    found = check(text)
    assert len(found) == 1, [str(p) for p in found]
    return found[0]


def where(problem: Problem) -> tuple[int | None, int | None]:
    assert problem.position is not None
    return problem.position.line, problem.position.column


def test_fixture_fleet_has_no_dangling_references() -> None:
    fleet = load_fleet(FLEET)
    assert check_references(fleet) == []
    # Several workloads read the same stream: shares may add up to more than 1.
    shares = [
        d.share
        for w in fleet.workloads.values()
        for d in w.spec.demand
        if d.source == "lyon-line-sensors"
    ]
    assert sum(shares) > 1
    # Secrets are not resources (yet): naming one is not a dangling reference.
    assert fleet.workloads["shelf-detector"].spec.secrets == ["camera-api-key"]


@pytest.mark.parametrize(
    ("old", "typo", "message", "field", "suggestion"),
    [
        (
            "nodeImage: rocky-9-slurm",
            "rocky-9-slrum",
            "Site 'hpc-juelich' refers to unknown NodeImage 'rocky-9-slrum'",
            "spec.nodePools[0].nodeImage",
            "rocky-9-slurm",
        ),
        (
            "a: factory-lyon",
            "factory-lyonn",
            "Link 'lyon-to-region' refers to unknown Site 'factory-lyonn'",
            "spec.a",
            "factory-lyon",
        ),
        (
            "b: hpc-juelich",
            "hpc-julich",
            "Link 'region-to-hpc' refers to unknown Site 'hpc-julich'",
            "spec.b",
            "hpc-juelich",
        ),
        (
            "site: store-munich-02\n  requestRate",
            "store-munch-02",
            "DataSource 'munich-shelf-cameras' refers to unknown Site 'store-munch-02'",
            "spec.site",
            "store-munich-02",
        ),
        (
            "- source: munich-shelf-cameras",
            "munich-shelf-camera",
            "Workload 'shelf-detector' refers to unknown DataSource 'munich-shelf-camera'",
            "spec.demand[1].source",
            "munich-shelf-cameras",
        ),
        (
            "- source: berlin-shelf-cameras\n      pattern",
            "berlin-shelf-cams",
            "Scenario 'berlin-uplink-degraded' refers to unknown DataSource 'berlin-shelf-cams'",
            "spec.traffic[0].source",
            "berlin-shelf-cameras",
        ),
        (
            "link: berlin-to-region",
            "berlin-to-regoin",
            "Scenario 'berlin-uplink-degraded' refers to unknown Link 'berlin-to-regoin'",
            "spec.faults[0].link",
            "berlin-to-region",
        ),
        (
            "site: store-munich-02}",
            "store-munich-2",
            "Scenario 'berlin-uplink-degraded' refers to unknown Site 'store-munich-2'",
            "spec.faults[1].site",
            "store-munich-02",
        ),
        (
            "peer: region-eu-central}",
            "region-eu-centrl",
            "Scenario 'berlin-uplink-degraded' refers to unknown Site 'region-eu-centrl'",
            "spec.faults[2].peer",
            "region-eu-central",
        ),
    ],
)
def test_dangling_names_point_at_the_name_with_did_you_mean(
    old: str, typo: str, message: str, field: str, suggestion: str
) -> None:
    text = fleet_text()
    assert text.count(old) == 1
    good = old.split(": ")[1].split("\n")[0].rstrip("}")
    mutated = old.replace(good, typo)
    text = text.replace(old, mutated)
    problem = only(text)
    assert problem.message == message
    assert problem.field_path == field
    assert problem.hint is not None
    assert problem.hint.startswith(f"did you mean '{suggestion}'")
    line, column = at(text, mutated)
    assert where(problem) == (line, column + mutated.index(typo))


def test_without_a_close_name_the_hint_lists_the_defined_ones() -> None:
    text = fleet_text().replace("nodeImage: rocky-9-slurm", "nodeImage: windows-11")
    problem = only(text)
    assert problem.hint == "defined NodeImages: jetpack-6.0, ubuntu-22.04-cuda12, rocky-9-slurm"


def test_all_dangling_names_are_reported_in_one_run() -> None:
    text = (
        fleet_text()
        .replace("nodeImage: rocky-9-slurm", "nodeImage: rocky-8")
        .replace("b: hpc-juelich", "b: hpc-garching")
        .replace("- source: munich-shelf-cameras", "- source: munich-cams")
    )
    found = check(text)
    assert [p.field_path for p in found] == [
        "spec.b",
        "spec.nodePools[0].nodeImage",
        "spec.demand[1].source",
    ]


PLACEMENT = """\
---
apiVersion: fleetplane/v1
kind: Placement
metadata: {name: current}
spec:
  solver: {name: greedy, version: "1", seed: 0}
  workloads:
    - workload: shelf-detector
      workloadClass: inference
      assignments:
        - {site: store-berlin-01, pool: orin, profile: orin-agx, replicas: 2}
        - {site: SITE, pool: POOL, profile: l4, replicas: 1}
"""


def test_a_placement_is_optional_input_and_must_name_real_sites_and_pools() -> None:
    valid = fleet_text() + PLACEMENT.replace("SITE", "region-eu-central").replace("POOL", "gpu-l4")
    assert check(valid) == []

    text = fleet_text() + PLACEMENT.replace("SITE", "region-eu-centra").replace("POOL", "gpu-l4")
    problem = only(text)
    assert problem.message == "Placement 'current' refers to unknown Site 'region-eu-centra'"
    assert problem.field_path == "spec.workloads[0].assignments[1].site"
    assert problem.hint == "did you mean 'region-eu-central'?"
    assert where(problem) == at(text, "region-eu-centra,")

    text = fleet_text() + PLACEMENT.replace("SITE", "region-eu-central").replace("POOL", "gpu-l5")
    problem = only(text)
    assert problem.message == "site 'region-eu-central' has no node pool 'gpu-l5'"
    assert problem.field_path == "spec.workloads[0].assignments[1].pool"
    assert problem.hint == "did you mean 'gpu-l4'?"
    assert where(problem) == at(text, "gpu-l5")


def test_a_workload_naming_the_same_source_twice() -> None:
    text = fleet_text().replace(
        "    - {source: lyon-line-sensors, share: 0.2}\n",
        "    - {source: lyon-line-sensors, share: 0.2}\n"
        "    - {source: lyon-line-sensors, share: 0.1}\n",
    )
    problem = only(text)
    assert (
        problem.message == "DataSource 'lyon-line-sensors' appears twice in demand (also demand[0])"
    )
    assert problem.field_path == "spec.demand[1].source"
    assert where(problem) == at(text, "lyon-line-sensors, share: 0.1")


def test_a_data_source_site_without_links_is_an_error_at_the_site() -> None:
    text = without(fleet_text(), "munich-to-region")
    problem = only(text)
    assert problem.message == (
        "site 'store-munich-02' has no Link to any other site, so requests from "
        "DataSource 'munich-shelf-cameras' cannot reach the other 4 sites"
    )
    assert problem.hint == "add a Link with a: store-munich-02 and b: region-eu-central"
    assert problem.field_path == "metadata.name"
    assert where(problem) == at(text, "store-munich-02\n  labels")


def test_a_site_with_links_through_another_site_is_connected() -> None:
    # hpc-juelich reaches the stores only through the region: two hops are enough.
    text = without(fleet_text(), "lyon-to-region").replace(
        "  a: region-eu-central\n  b: hpc-juelich",
        "  a: factory-lyon\n  b: hpc-juelich",
    )
    assert check(text) == []


def test_isolated_sites_without_data_sources_are_fine() -> None:
    assert check(without(fleet_text(), "region-to-hpc")) == []


def test_a_single_site_fleet_needs_no_links() -> None:
    text = without(fleet_text(), "berlin-uplink-degraded")
    for name in ("berlin-to-region", "munich-to-region", "lyon-to-region", "region-to-hpc"):
        text = without(text, name)
    # Three data-source sites, none linked.
    assert [p.field_path for p in check(text)] == ["metadata.name"] * 3
    for name in ("store-munich-02", "store-berlin-01", "region-eu-central", "hpc-juelich"):
        text = without(text, name)
    for name in ("berlin-shelf-cameras", "munich-shelf-cameras", "shelf-detector"):
        text = without(text, name)
    assert check(text) == []


def test_a_misspelt_link_end_is_reported_once() -> None:
    text = fleet_text().replace("a: store-munich-02", "a: store-munch-02")
    problem = only(text)
    assert problem.field_path == "spec.a"


def test_accelerator_models_nobody_has_are_left_to_the_placement_engine() -> None:
    text = fleet_text().replace("models: [orin-agx, l4]", "models: [h100]")
    assert check(text) == []


def test_without_a_source_map_problems_point_at_the_resource() -> None:
    fleet = load_fleet(FLEET)
    fleet.sites["factory-lyon"].spec.node_pools[0].node_image = "ubuntu-24.04"
    (problem,) = check_references(fleet)
    assert problem.position == fleet.position_of("Site", "factory-lyon")
    assert problem.field_path == "spec.nodePools[0].nodeImage"
    assert problem.message == "Site 'factory-lyon' refers to unknown NodeImage 'ubuntu-24.04'"


def test_render_path() -> None:
    assert render_path(("spec", "nodePools", 0, "memory")) == "spec.nodePools[0].memory"
    assert render_path(("metadata", "labels", "x", "[key]")) == "metadata.labels.x"
    assert render_path(()) == ""
