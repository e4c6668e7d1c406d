"""The fast path (C parser, positions on demand) and the round-trip path read the same fleets.

Every comparison runs the loader twice: as it is, and with the fast path
switched off so that every file goes through ruamel's round-trip loader (the
positional path). Fleets, problems and positions must be identical.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML
from typer.testing import CliRunner

from fleetplane.cli.main import app
from fleetplane.errors import Problem
from fleetplane.model import loader
from fleetplane.model.loader import LoadResult, read_fleet, read_text
from fleetplane.model.positions import LazyDocument, fast_documents
from fleetplane.model.references import Loc

EXAMPLES = sorted(p for p in (Path(__file__).parents[3] / "examples").iterdir() if p.is_dir())


def _round_trip_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader, "fast_documents", lambda text, filename: None)


def _both(monkeypatch: pytest.MonkeyPatch, read: Any, *args: Any) -> tuple[LoadResult, LoadResult]:
    fast = read(*args)
    with monkeypatch.context() as patch:
        _round_trip_only(patch)
        slow = read(*args)
    return fast, slow


def _rendered(problems: list[Problem]) -> list[str]:
    return [f"{p.position} {p.message} [{p.field_path}] {p.hint}" for p in problems]


def _paths(value: Any, prefix: Loc = ()) -> Iterator[Loc]:
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from _paths(child, (*prefix, i))


def _assert_same_positions(fast: LoadResult, slow: LoadResult) -> int:
    checked = 0
    for resource in fast.fleet.resources():
        written = resource.model_dump(by_alias=True, exclude_unset=True)
        for loc in (*_paths(written), ("spec", "notAField"), ("spec", "nodePools", 99)):
            where = fast.sources.locate(resource.kind, resource.name, loc)
            assert where == slow.sources.locate(resource.kind, resource.name, loc), loc
            checked += 1
    return checked


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("generated")
    result = CliRunner().invoke(
        app, ["generate", "--sites", "40", "--workloads", "300", "--seed", "3", "--out", str(out)]
    )
    assert result.exit_code == 0, result.stderr
    return out


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_examples_load_identically_with_identical_positions(
    example: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast, slow = _both(monkeypatch, read_fleet, example)
    assert fast.fleet == slow.fleet  # resources, and where each document starts
    assert _rendered(fast.problems) == _rendered(slow.problems)
    assert _assert_same_positions(fast, slow) > 100


def test_generated_fleet_loads_identically(
    generated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast, slow = _both(monkeypatch, read_fleet, generated)
    assert fast.valid and slow.valid
    assert len(fast.fleet.workloads) == 300
    assert fast.fleet == slow.fleet
    workloads = [w for w in fast.fleet.workloads.values()][::37]
    for workload in workloads:
        for loc in _paths(workload.model_dump(by_alias=True, exclude_unset=True)):
            expected = slow.sources.locate("Workload", workload.name, loc)
            assert fast.sources.locate("Workload", workload.name, loc) == expected


def test_generated_data_files_take_the_fast_path(generated: Path) -> None:
    # The generator writes no tags, anchors or merges; only the CEL policy
    # (with != and &&) is left to the round-trip loader.
    for name in ("sites.yaml", "links.yaml", "data-sources.yaml", "workloads.yaml"):
        text = (generated / name).read_text()
        documents = fast_documents(text, name)
        assert documents is not None, name
        assert len(documents) == text.count("\nkind: ") + text.startswith("kind: ")


def _break_workload(text: str, index: int, old: str, new: str) -> tuple[str, int]:
    """Replace ``old`` in the ``index``-th document; return the text and the line it is on."""
    documents = text.split("\n---\n")
    assert old in documents[index]
    documents[index] = documents[index].replace(old, new, 1)
    changed = "\n---\n".join(documents)
    offset = len("\n---\n".join(documents[:index])) + len("\n---\n")
    line = changed.count("\n", 0, offset + documents[index].index(new)) + 1
    return changed, line


def _workloads_with(generated: Path, tmp_path: Path, text: str) -> Path:
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    for file in generated.iterdir():
        (fleet / file.name).write_text(file.read_text())
    (fleet / "workloads.yaml").write_text(text)
    return fleet


def test_a_schema_problem_deep_in_a_big_file_is_located_exactly(
    generated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = (generated / "workloads.yaml").read_text()
    text, line = _break_workload(original, 250, "replicas: {max:", "replicas: {maks:")
    fleet = _workloads_with(generated, tmp_path, text)
    fast, slow = _both(monkeypatch, read_fleet, fleet)
    assert _rendered(fast.problems) == _rendered(slow.problems)
    [problem] = fast.problems
    assert problem.message == "unknown field 'maks'"
    assert problem.position is not None
    assert problem.position.file.endswith("workloads.yaml")
    assert problem.position.line == line
    assert text.splitlines()[line - 1][(problem.position.column or 0) - 1 :].startswith("maks:")


def test_a_dangling_reference_deep_in_a_big_file_is_located_exactly(
    generated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = (generated / "workloads.yaml").read_text()
    text, line = _break_workload(original, 200, "{source: ", "{source: nowhere-")
    fleet = _workloads_with(generated, tmp_path, text)
    fast, slow = _both(monkeypatch, read_fleet, fleet)
    assert _rendered(fast.problems) == _rendered(slow.problems)
    [problem] = fast.problems
    assert "refers to unknown DataSource 'nowhere-" in problem.message
    assert problem.position is not None and problem.position.line == line
    assert text.splitlines()[line - 1][(problem.position.column or 0) - 1 :].startswith("nowhere-")


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("  resources: {cpu:", "  resources: {cpu: 1, cpu:", "duplicate key 'cpu'"),
        ("  residency: [", "  residency: [[", "invalid YAML"),
    ],
)
def test_yaml_problems_deep_in_a_big_file_read_as_before(
    generated: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    old: str,
    new: str,
    message: str,
) -> None:
    original = (generated / "workloads.yaml").read_text()
    text, line = _break_workload(original, 150, old, new)
    assert fast_documents(text, "workloads.yaml") is None
    fast, slow = _both(
        monkeypatch, lambda t: read_text(t, "workloads.yaml", references=False), text
    )
    assert _rendered(fast.problems) == _rendered(slow.problems)
    [problem] = [p for p in fast.problems if message in p.message]
    assert problem.position is not None
    assert problem.position.line is not None and problem.position.line >= line


def test_a_located_document_is_reread_alone(generated: Path) -> None:
    text = (generated / "workloads.yaml").read_text()
    documents = fast_documents(text, "workloads.yaml")
    assert documents is not None
    positions = documents[-1].positions
    assert isinstance(positions, LazyDocument)
    found = positions.walk(("spec", "class"))
    assert text.splitlines()[found.line][found.column :].startswith(
        str(documents[-1].data["spec"]["class"])
    )
    assert positions.source._whole is None  # only that document's lines were parsed


SCALARS = [
    "010", "0o17", "0x1F", "0b101", "1_000", "1e3", "1.5e-3", ".inf", "-.Inf", "yes", "NO", "on",
    "~", "null", "", "true", "True", "FALSE", "12.2", "1:20", "+12", "-0", "0.", "2024-01-01",
    "2024-1-1", "2024-01-01t10:00:00.5+02:00", "2024-01-01 10:00:00", "'x'", '"a\\tb"', "<x",
    "|\n  a\n  b\n", ">\n  a\n  b\n\n  c\n", "[1, '2', 3.0]", "{a: 1, 'b': c}",
    "é✓", "\n  - 1\n  - 2",
]  # fmt: skip


@pytest.mark.parametrize("scalar", SCALARS)
def test_values_read_the_same_on_both_paths(scalar: str) -> None:
    text = f"k: {scalar}\nn: 1\n"
    documents = fast_documents(text, "t.yaml")
    round_trip = YAML(typ="rt").load(text)
    assert documents is not None  # plain YAML: no reason to leave it to the round-trip loader
    [document] = documents
    assert document.data == loader._plain(round_trip)
    assert type(document.data["k"]) is type(loader._plain(round_trip)["k"])


@pytest.mark.parametrize(
    "text",
    [
        "k: 'site.tier != \"edge\" and !(x)'\n",
        "- a: x != y\n  b: [1, 2]\n",
        "k: |\n  requires site.tier != 'edge'\n",
        "when: >-\n  workload.class == 'inference' && has(workload.latencyBudget)\n",
        "k: 'a && b'\n",
    ],
)
def test_cel_operators_in_text_do_not_look_like_tags(text: str) -> None:
    """Policy rules, and rule text quoted in a Placement's explanations, read on the fast
    path, the same."""
    wrapped = f"kind: Placement\nv:\n  {text.replace(chr(10), chr(10) + '  ')}"
    documents = fast_documents(wrapped, "t.yaml")
    assert documents is not None
    assert documents[0].data == loader._plain(YAML(typ="rt").load(wrapped))


@pytest.mark.parametrize(
    "text",
    [
        "k: != x\n",
        "k: && x\n",
        "k: [&&a]\n",
        "k: [!=a]\n",
        "k: !(a)\n",
        "k: ! x\n",
        "k: !!str 1\n",
        "a: &x {b: 1}\nc: *x\n",
        "a: {b: 1}\nc:\n  <<: {d: 2}\n",
        "%YAML 1.1\n---\nk: yes\n",
        "k: 1\r  \n",
        "k: a\u2028b\n",
        "- 1\n",
        "a: 1\na: 2\n",
        "{[1]: 2}\n",
        "k: x\t\n",
    ],
)
def test_what_the_fast_path_cannot_vouch_for_goes_the_round_trip_way(text: str) -> None:
    assert fast_documents(text, "t.yaml") is None


_TOKENS = [
    ":",
    ": ",
    "- ",
    "  ",
    "\n",
    "{",
    "}",
    "[",
    "]",
    ",",
    '"',
    "'",
    "---",
    "...",
    "#",
    "?",
    "|",
    ">",
    "~",
    "1",
    "é",
]
_TEXT = (Path(__file__).parents[3] / "examples" / "retail-edge" / "workloads.yaml").read_text()[
    :1500
]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=st.lists(st.tuples(st.integers(0, 10_000), st.sampled_from(_TOKENS)), max_size=4))
def test_mangled_input_reads_the_same_on_both_paths(edits: list[tuple[int, str]]) -> None:
    """Wherever libyaml and ruamel's own parser could disagree, the result must not."""
    text = _TEXT
    for offset, token in edits:
        offset %= len(text)
        text = text[:offset] + token + text[offset:]
    with pytest.MonkeyPatch.context() as patch:
        fast, slow = _both(patch, partial(read_text, references=False), text, "f.yaml")
    assert _rendered(fast.problems) == _rendered(slow.problems)
    assert fast.fleet == slow.fleet
