"""The loader: documents → validated resources, every problem at file:line:column."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetplane.errors import Problem, ValidationError
from fleetplane.model import Site
from fleetplane.model.loader import load_documents, load_fleet, read_fleet, read_text

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "loader"
FLEET = FIXTURES / "fleet"


def at(text: str, needle: str, occurrence: int = 1) -> tuple[int, int]:
    """1-based line and column of the n-th occurrence of ``needle`` (plain text search)."""
    index = -1
    for _ in range(occurrence):
        index = text.index(needle, index + 1)
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return line, column


def problems(text: str, filename: str = "f.yaml") -> list[Problem]:
    result = read_text(textwrap.dedent(text), filename)
    assert not result.valid
    return result.problems


def only(text: str) -> Problem:
    found = problems(text)
    assert len(found) == 1, [str(p) for p in found]
    return found[0]


def where(problem: Problem) -> tuple[int | None, int | None]:
    assert problem.position is not None
    return problem.position.line, problem.position.column


SITE = """\
apiVersion: fleetplane/v1
kind: Site
metadata:
  name: edge-1
spec:
  tier: edge
  region: eu-central
  residencyZone: eu
  nodePools:
    - name: small
      count: 2
      cpu: 4
      memory: 16Gi
      nodeImage: img
  cost:
    opex: {cpuHour: 0.03/h}
"""

IMAGE = """\
apiVersion: fleetplane/v1
kind: NodeImage
metadata: {name: img}
spec:
  os: ubuntu-22.04
  containerRuntime: {name: containerd, version: "1.7"}
  arches: [amd64]
"""


def site_with(old: str, new: str) -> str:
    assert old in SITE
    return SITE.replace(old, new, 1) + "---\n" + IMAGE


# ------------------------------------------------------------------ success


def test_fixture_fleet_loads_with_every_kind_and_internal_units() -> None:
    fleet = load_fleet(FLEET)
    assert fleet.name == "fleet"
    assert len(fleet.sites) == 5
    assert len(fleet.links) == 4
    assert len(fleet.node_images) == 3
    assert len(fleet.data_sources) == 3
    assert {w.spec.class_ for w in fleet.workloads.values()} == {
        "inference",
        "training",
        "streaming",
        "control",
        "batch",
    }
    assert fleet.policy is not None and fleet.policy.name == "default"
    assert list(fleet.scenarios) == ["berlin-uplink-degraded"]
    berlin = fleet.sites["store-berlin-01"]
    assert berlin.spec.node_pools[0].memory == 64 * 2**30
    assert berlin.spec.node_pools[0].storage[0].read_latency == pytest.approx(100e-6)
    assert fleet.links["berlin-to-region"].spec.bandwidth == pytest.approx(200e6)
    assert fleet.workloads["shelf-detector"].spec.slo.availability == pytest.approx(0.995)
    assert fleet.data_sources["berlin-shelf-cameras"].spec.diurnal is not None


def test_positions_point_at_each_document_start() -> None:
    fleet = load_fleet(FLEET)
    sites_file = FLEET / "infrastructure" / "sites.yaml"
    text = sites_file.read_text()
    position = fleet.position_of("Site", "factory-lyon")
    assert position is not None
    assert position.file == str(sites_file)
    # The document starts at its first key, three lines above its name.
    name_line, _ = at(text, "name: factory-lyon")
    assert (position.line, position.column) == (name_line - 3, 1)
    assert len(fleet.positions) == sum(1 for _ in fleet.resources())


def test_directories_load_recursively_in_sorted_path_order(tmp_path: Path) -> None:
    # Written in reverse order, so the file system's creation order differs from sorted order.
    names = ["z-site", "m-site", "a-site"]
    for name, file in zip(names, ["b/z.yaml", "a/m.yml", "a.yaml"], strict=True):
        path = tmp_path / file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(SITE.replace("edge-1", name) + "---\n" + IMAGE.replace("img", name))
    (tmp_path / "notes.txt").write_text("not: yaml: at all: [")
    hidden = tmp_path / ".github" / "workflows"
    hidden.mkdir(parents=True)
    (hidden / "ci.yml").write_text("on: push\n")
    first = read_fleet(tmp_path, references=False)
    again = read_fleet(tmp_path, references=False)
    assert first.valid, [str(p) for p in first.problems]
    # Sorted by path components: the directory a/ comes before the file a.yaml.
    assert list(first.fleet.sites) == ["m-site", "a-site", "z-site"]
    assert list(again.fleet.sites) == list(first.fleet.sites)


def test_same_file_given_twice_is_read_once() -> None:
    fleet = load_fleet(FLEET, FLEET / "infrastructure" / "sites.yaml")
    assert len(fleet.sites) == 5


def test_load_documents_reads_text_without_files() -> None:
    text = SITE + "---\n" + IMAGE
    fleet = load_documents(text, "upload")
    assert list(fleet.sites) == ["edge-1"]
    assert fleet.name == "default"
    position = fleet.position_of("NodeImage", "img")
    assert position is not None
    assert (position.file, position.line, position.column) == ("upload", *at(text, "apiVersion", 2))


def test_empty_documents_are_skipped() -> None:
    fleet = load_documents("---\n# only a comment\n---\n" + IMAGE + "---\n")
    assert list(fleet.node_images) == ["img"]


def test_references_can_be_left_to_the_caller() -> None:
    fleet = load_documents(SITE, references=False)
    assert list(fleet.sites) == ["edge-1"]
    with pytest.raises(ValidationError, match="unknown NodeImage 'img'"):
        load_documents(SITE)


def test_snake_case_keys_are_accepted_and_errors_still_located() -> None:
    text = site_with("nodePools:", "node_pools:").replace("memory: 16Gi", "memory: lots")
    problem = only(text)
    # The path names the key as it was written.
    assert problem.field_path == "spec.node_pools[0].memory"
    assert where(problem) == at(text, "lots")


# ------------------------------------------------------------- YAML errors


def test_malformed_yaml_is_located() -> None:
    text = site_with("region: eu-central", 'region: "eu-central')
    problem = only(text)
    assert problem.message.startswith("invalid YAML:")
    assert problem.position is not None and problem.position.file == "f.yaml"
    # The scanner notices the unterminated quote at the next document separator.
    assert where(problem) == at(text, "---")
    quote_line, _ = at(text, '"eu')
    assert problem.message == (
        "invalid YAML: found unexpected document separator "
        f"(while scanning a quoted scalar that started at line {quote_line})"
    )


def test_bad_indentation_is_located() -> None:
    text = "apiVersion: fleetplane/v1\nkind: Site\nmetadata:\n  name: a\n   labels: {}\n"
    problem = only(text)
    assert problem.message.startswith("invalid YAML: mapping values are not allowed here")
    assert where(problem) == (5, 10)


def test_duplicate_key_points_at_the_second_occurrence() -> None:
    text = site_with("      cpu: 4\n", "      cpu: 4\n      cpu: 8\n")
    problem = only(text)
    assert problem.message == f"duplicate key 'cpu' (first at line {at(text, 'cpu: 4')[0]})"
    assert where(problem) == at(text, "cpu: 8")


def test_documents_after_a_duplicate_key_are_still_checked() -> None:
    broken = IMAGE.replace("  os: ubuntu-22.04\n", "  os: ubuntu-22.04\n  os: rocky-9\n")
    text = broken + "---\n" + SITE.replace("tier: edge", "tier: cloud")
    found = problems(text)
    assert [p.field_path for p in found] == [None, "spec.tier"]
    assert where(found[1]) == at(text, "cloud")
    # 'img' was declared (if badly): the Site's reference to it is not reported as dangling.
    assert not any("unknown NodeImage" in p.message for p in found)


def test_non_mapping_documents_are_reported() -> None:
    text = IMAGE + "---\n- a\n- b\n---\njust words\n"
    found = problems(text)
    assert [p.message for p in found] == [
        "a document must be a mapping, found a list",
        "a document must be a mapping, found a string ('just words')",
    ]
    assert [where(p) for p in found] == [at(text, "- a"), at(text, "just words")]


# ------------------------------------------------------------ schema errors


def test_unknown_field_points_at_the_key_with_did_you_mean() -> None:
    text = site_with("memory: 16Gi", "memroy: 16Gi")
    found = problems(text)
    unknown = [p for p in found if p.message == "unknown field 'memroy'"]
    assert len(unknown) == 1
    assert unknown[0].field_path == "spec.nodePools[0].memroy"
    assert unknown[0].hint == "did you mean 'memory'?"
    assert where(unknown[0]) == at(text, "memroy")
    # Misspelling a required field also leaves it missing.
    missing = [p for p in found if p.message == "missing required field 'memory'"]
    assert len(missing) == 1
    assert where(missing[0]) == at(text, "name: small")
    assert missing[0].hint == "memory: memory per node"


def test_unknown_field_without_close_match_lists_allowed_fields() -> None:
    problem = only(site_with("  tier: edge\n", "  tier: edge\n  colour: blue\n"))
    assert problem.message == "unknown field 'colour'"
    assert problem.hint is not None and problem.hint.startswith("allowed fields: tier, region,")


def test_wrong_type_is_located_at_the_value() -> None:
    text = site_with("count: 2", "count: two")
    problem = only(text)
    assert problem.field_path == "spec.nodePools[0].count"
    assert problem.message.startswith("must be a valid integer")
    assert problem.message.endswith("got 'two'")
    assert where(problem) == at(text, "two")


def test_a_mapping_where_a_list_belongs_and_vice_versa() -> None:
    text = site_with("metadata:\n  name: edge-1\n", "metadata: edge-1\n")
    problem = only(text)
    assert problem.message == "must be a mapping (key: value lines), got 'edge-1'"
    assert where(problem) == at(text, "edge-1")

    text = site_with("    - name: small\n", "      name: small\n")
    problem = only(text)
    assert problem.field_path == "spec.nodePools"
    assert problem.message == "must be a list ('- item' lines or [a, b]), got a mapping"
    assert where(problem) == at(text, "nodePools")


def test_unquoted_versions_get_a_quoting_hint() -> None:
    text = IMAGE.replace('version: "1.7"', "version: 1.7")
    problem = only(text)
    assert problem.field_path == "spec.containerRuntime.version"
    assert problem.message == "must be a valid string, got 1.7"
    assert problem.hint == 'quote it: "1.7" (YAML reads it unquoted as a number)'
    assert where(problem) == at(text, "1.7")

    text = IMAGE.replace("os: ubuntu-22.04", "os: 2024-01-01")
    problem = only(text)
    assert problem.message == "must be a valid string, got the date 2024-01-01"
    assert problem.hint == 'quote it: "2024-01-01" (YAML reads it unquoted as a date)'


def test_non_string_keys_are_located_at_the_key() -> None:
    text = IMAGE.replace("  os: ubuntu", "  drivers: {12: x}\n  os: ubuntu")
    problem = only(text)
    assert problem.field_path == "spec.drivers[12]"
    assert problem.message == "must be a valid string, got 12"
    assert where(problem) == at(text, "12")

    text = IMAGE.replace("  os: ubuntu", "  7: x\n  os: ubuntu")
    problem = only(text)
    assert problem.message == "keys must be strings, got 7"
    assert where(problem) == at(text, "7: x")


def test_values_merged_from_an_anchor_are_located_where_they_are_written() -> None:
    pools = """\
    - &small
      name: small
      count: 2
      cpu: 4
      memory: 16Gx
      nodeImage: img
    - <<: *small
      name: big
      cpu: 0.5Gi
"""
    text = site_with(SITE[SITE.index("    - name: small") : SITE.index("  cost:")], pools)
    found = problems(text)
    # Sorted by position: the merged pool's memory error is where the anchor wrote it.
    assert [(p.field_path, where(p)) for p in found] == [
        ("spec.nodePools[0].memory", at(text, "16Gx")),
        ("spec.nodePools[1].memory", at(text, "16Gx")),
        ("spec.nodePools[1].cpu", at(text, "0.5Gi")),
    ]


def test_bad_unit_names_the_known_units() -> None:
    text = site_with("memory: 16Gi", "memory: 16Gb")
    problem = only(text)
    assert problem.field_path == "spec.nodePools[0].memory"
    assert problem.message.startswith("unknown unit 'Gb' in '16Gb' for a size; use one of:")
    assert where(problem) == at(text, "16Gb")


LINK = """\
apiVersion: fleetplane/v1
kind: Link
metadata: {name: l}
spec:
  a: x
  b: y
  latency: {p50: 5, p99: 9ms}
  bandwidth: 1Gbps
"""


def test_bare_number_where_a_unit_is_needed() -> None:
    problem = only(LINK)
    assert problem.field_path == "spec.latency.p50"
    assert problem.message == "5 has no unit; write the duration with one, like '45ms' or '1.5s'"
    assert where(problem) == at(LINK, "5,")


def test_literal_with_did_you_mean() -> None:
    text = site_with("tier: edge", "tier: egde")
    problem = only(text)
    assert problem.message == "must be 'edge', 'regional' or 'hpc', got 'egde'"
    assert problem.hint == "did you mean 'edge'?"
    assert where(problem) == at(text, "egde")


def test_missing_required_field_points_at_the_parent_mapping() -> None:
    text = site_with("  region: eu-central\n", "")
    problem = only(text)
    assert problem.message == "missing required field 'region'"
    assert problem.field_path == "spec.region"
    assert where(problem) == at(text, "spec:")


def test_missing_metadata_name() -> None:
    text = IMAGE.replace("metadata: {name: img}", "metadata: {labels: {a: b}}")
    problem = only(text)
    assert problem.message == "missing required field 'name'"
    assert problem.field_path == "metadata.name"
    assert where(problem) == at(text, "metadata")


def test_invalid_name() -> None:
    text = IMAGE.replace("name: img", "name: Img_1")
    problem = only(text)
    assert problem.field_path == "metadata.name"
    assert problem.message.startswith("name 'Img_1' must be lower-case")
    assert where(problem) == at(text, "Img_1")


@pytest.mark.parametrize(
    ("old", "new", "field", "message"),
    [
        ("count: 2", "count: 0", "spec.nodePools[0].count", "must be greater than 0, got 0"),
        ("count: 2", "count: -3", "spec.nodePools[0].count", "must be greater than 0, got -3"),
        ("cpu: 4", "cpu: -2", "spec.nodePools[0].cpu", "CPU quantity -2 must not be negative"),
        ("memory: 16Gi", "memory: -1Gi", "spec.nodePools[0].memory", "size '-1Gi' must not be"),
    ],
)
def test_negative_or_zero_capacity_at_the_value(
    old: str, new: str, field: str, message: str
) -> None:
    text = site_with(old, new)
    problem = only(text)
    assert problem.field_path == field
    assert problem.message.startswith(message)
    assert where(problem) == at(text, new.split(": ")[1])


def test_object_level_errors_point_at_the_object() -> None:
    text = site_with("cpu: 4", "cpu: 0")
    problem = only(text)
    # The pool's own check (cpu > 0) runs on the whole pool: placed at its list item.
    assert problem.message == "node pool 'small': cpu must be > 0 (cores per node)"
    assert problem.field_path == "spec.nodePools[0]"
    assert where(problem) == at(text, "name: small")


def test_object_level_error_of_a_nested_mapping_points_at_its_key() -> None:
    text = site_with("opex: {cpuHour: 0.03/h}", "currency: EUR")
    problem = only(text)
    assert problem.field_path == "spec.cost"
    assert problem.message.startswith("give either 'opex'")
    assert where(problem) == at(text, "cost:")


WORKLOAD = """\
apiVersion: fleetplane/v1
kind: Workload
metadata: {name: w}
spec:
  class: inference
  slo:
    latency: {p99: 50ms}
  demand: [{source: cams}]
  resources: {cpu: 1, memory: 1Gi}
  profiles:
    - hardware: cpu
      serviceTime: {mean: 5ms}
"""


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "    latency: {p99: 50ms}\n",
            "    throughput: 10/s\n",
            "an inference workload needs slo.latency (e.g. p99: 50ms)",
        ),
        (
            "class: inference",
            "class: batch",
            "a batch workload needs slo.deadline (e.g. 6h)",
        ),
        (
            "    latency: {p99: 50ms}\n",
            "    latency: {p99: 50ms}\n    deadline: 1h\n",
            "slo.deadline is for batch/training, not inference workloads",
        ),
        (
            "      serviceTime: {mean: 5ms}\n",
            "      concurrency: 2\n",
            "profiles ['cpu'] need serviceTime for an inference workload",
        ),
    ],
)
def test_slo_fields_must_fit_the_workload_class(old: str, new: str, message: str) -> None:
    text = WORKLOAD.replace(old, new)
    problem = only(text)
    assert problem.message == message
    assert problem.field_path == "spec"
    assert where(problem) == at(text, "spec:")


def test_unknown_kind_with_did_you_mean() -> None:
    text = IMAGE + "---\n" + IMAGE.replace("kind: NodeImage", "kind: Nodeimage")
    problem = only(text)
    assert problem.message == "unknown kind 'Nodeimage'"
    assert problem.hint is not None
    assert problem.hint.startswith("did you mean 'NodeImage'? known kinds: Site, Link,")
    assert where(problem) == at(text, "Nodeimage")


def test_missing_kind_and_api_version() -> None:
    text = IMAGE.replace("kind: NodeImage\n", "").replace("apiVersion: fleetplane/v1\n", "")
    found = problems(text)
    assert [p.message for p in found] == ["missing apiVersion", "missing kind"]
    assert [where(p) for p in found] == [(1, 1), (1, 1)]


def test_wrong_api_version_names_the_right_one() -> None:
    text = IMAGE.replace("apiVersion: fleetplane/v1", "apiVersion: v1")
    problem = only(text)
    assert problem.message == "must be 'fleetplane/v1', got 'v1'"
    assert problem.field_path == "apiVersion"
    assert where(problem) == at(text, "v1")


def test_kind_specific_fields_use_the_kinds_model() -> None:
    # A Link field inside a Site: not known to the Site model.
    text = site_with("  tier: edge\n", "  tier: edge\n  bandwidth: 1Gbps\n")
    problem = only(text)
    assert problem.message == "unknown field 'bandwidth'"
    assert where(problem) == at(text, "bandwidth")


def test_invalid_label_key_is_located() -> None:
    text = IMAGE.replace("metadata: {name: img}", "metadata:\n  name: img\n  labels:\n    a: [x]\n")
    problem = only(text)
    assert problem.field_path == "metadata.labels.a"
    assert where(problem) == at(text, "a: [x]")


# ----------------------------------------------------------- across files


def test_duplicate_names_across_files_name_both_positions(tmp_path: Path) -> None:
    shutil.copytree(FLEET, tmp_path / "fleet")
    extra = tmp_path / "fleet" / "zz-more-images.yaml"
    extra.write_text("# another team's copy\n" + IMAGE.replace("name: img", "name: rocky-9-slurm"))
    problem = only_problem(read_fleet(tmp_path / "fleet").problems)
    first = tmp_path / "fleet" / "infrastructure" / "node-images.yaml"
    first_line, _ = at(first.read_text(), "rocky-9-slurm")
    assert problem.message == (
        f"NodeImage 'rocky-9-slurm' is defined twice; first at {first}:{first_line - 3}:1"
    )
    assert problem.position is not None and problem.position.file == str(extra)
    assert where(problem) == at(extra.read_text(), "rocky-9-slurm")


def test_duplicate_names_in_one_file() -> None:
    text = SITE + "---\n" + IMAGE + "---\n" + IMAGE
    found = problems(text)
    first_line = at(text, "kind: NodeImage")[0] - 1
    assert [p.message for p in found] == [
        f"NodeImage 'img' is defined twice; first at f.yaml:{first_line}:1"
    ]
    assert where(found[0]) == at(text, "img", 3)


def test_same_name_in_different_kinds_is_fine() -> None:
    both = SITE + "---\n" + IMAGE.replace("name: img", "name: edge-1") + "---\n" + IMAGE
    assert read_text(both, "f.yaml").valid


def test_every_problem_of_every_file_is_reported_in_order(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        site_with("tier: edge", "tier: egde").replace("cpu: 4", "cpu: x")
    )
    (tmp_path / "b.yaml").write_text(WORKLOAD.replace("class: inference", "class: batch"))
    (tmp_path / "c.yaml").write_text("kind: [\n")
    with pytest.raises(ValidationError) as caught:
        load_fleet(tmp_path)
    found = caught.value.problems
    assert [(Path(p.position.file).name, p.field_path) for p in found if p.position] == [
        ("a.yaml", "spec.tier"),
        ("a.yaml", "spec.nodePools[0].cpu"),
        ("b.yaml", "spec"),
        ("c.yaml", None),
    ]
    assert str(caught.value).startswith("4 problems:\n  ")


def test_a_yaml_syntax_error_suppresses_reference_checks(tmp_path: Path) -> None:
    # What the broken file defines is unknown: do not guess that names are dangling.
    (tmp_path / "site.yaml").write_text(SITE)
    (tmp_path / "images.yaml").write_text(IMAGE + "---\nkind: [\n")
    found = read_fleet(tmp_path).problems
    assert len(found) == 1
    assert found[0].message.startswith("invalid YAML")


def test_missing_path_and_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    found = read_fleet(tmp_path / "nope.yaml", tmp_path / "empty").problems
    assert [p.message for p in found] == [
        "no such file or directory",
        "no *.yaml or *.yml files in this directory",
    ]


def test_unreadable_bytes_are_a_problem(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("city: Köln\n".encode("latin-1"))
    problem = only_problem(read_fleet(bad).problems)
    assert problem.message.startswith("cannot read file:")


def test_fleet_name_comes_from_the_first_path(tmp_path: Path) -> None:
    (tmp_path / "retail").mkdir()
    file = tmp_path / "retail" / "site.yaml"
    file.write_text(SITE + "---\n" + IMAGE)
    assert load_fleet(file).name == "retail"
    assert load_fleet(tmp_path / "retail").name == "retail"


def test_valid_documents_are_kept_when_others_fail() -> None:
    result = read_text(SITE + "---\n" + IMAGE + "---\n" + WORKLOAD.replace("1Gi", "1Gx"), "f.yaml")
    assert not result.valid
    assert isinstance(result.fleet.sites["edge-1"], Site)
    assert "w" not in result.fleet.workloads


def only_problem(found: list[Problem]) -> Problem:
    assert len(found) == 1, [str(p) for p in found]
    return found[0]


# ------------------------------------------------------------- robustness

_TOKENS = [":", "- ", "  ", "{", "}", "[", "]", "&a ", "*a", "<<: *a", '"', "'", "---", "!t ", "~"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(_TOKENS)), max_size=4))
def test_mangled_input_gives_located_problems_never_a_crash(edits: list[tuple[int, str]]) -> None:
    text = SITE + "---\n" + IMAGE + "---\n" + WORKLOAD
    for offset, token in edits:
        offset %= len(text)
        text = text[:offset] + token + text[offset:]
    result = read_text(text, "f.yaml")
    for problem in result.problems:
        assert problem.position is not None and problem.position.file == "f.yaml"
        assert problem.position.line is None or 1 <= problem.position.line <= text.count("\n") + 1
        assert str(problem)
