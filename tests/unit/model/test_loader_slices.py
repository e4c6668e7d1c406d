"""A file the fast path refuses is re-read slowly only where it must be; positions stay exact."""

from __future__ import annotations

from typing import Any

import pytest

from fleetplane.errors import Problem
from fleetplane.model import loader
from fleetplane.model.loader import read_text
from fleetplane.model.positions import document_slices


def _site(i: int) -> str:
    return (
        "apiVersion: fleetplane/v1\n"
        "kind: Site\n"
        "metadata:\n"
        f"  name: s{i}\n"
        "spec:\n"
        "  tier: edge\n"
        "  region: eu-west\n"
        "  residencyZone: eu\n"
        "  nodePools:\n"
        "    - name: p\n"
        "      count: 2\n"
        "      cpu: 8\n"
        "      memory: 32Gi\n"
        "      nodeImage: img\n"
        "  cost:\n"
        "    opex: {cpuHour: 0.03/h, memoryGibHour: 0.004/h}\n"
    )


def _many(count: int, broken: dict[int, str]) -> str:
    """``count`` Site documents, with document i replaced by ``broken[i]``."""
    return "".join("---\n" + broken.get(i, _site(i)) for i in range(count))


BROKEN = {
    "duplicate key": _site(0).replace("kind: Site\n", "kind: Site\nkind: Site\n"),
    "open quote": _site(0).replace("residencyZone: eu", 'residencyZone: "eu'),
    "not a mapping": "- just\n- a list\n",
    "bad indentation": _site(0).replace("  tier: edge", "    tier: edge\n  zone"),
}


def _rendered(problems: list[Problem]) -> list[str]:
    return [f"{p.position} {p.message} [{p.field_path}] {p.hint}" for p in problems]


def _whole_file(monkeypatch: pytest.MonkeyPatch, text: str) -> list[str]:
    with monkeypatch.context() as patch:
        patch.setattr(loader, "document_slices", lambda text: None)
        return _rendered(read_text(text, "fleet.yaml", references=False).problems)


@pytest.mark.parametrize("case", sorted(BROKEN))
@pytest.mark.parametrize("at", [0, 37, 149])
def test_sliced_reading_reports_what_the_whole_file_reading_does(
    monkeypatch: pytest.MonkeyPatch, case: str, at: int
) -> None:
    text = _many(150, {at: BROKEN[case]})
    sliced = _rendered(read_text(text, "fleet.yaml", references=False).problems)
    assert sliced, "the broken document must be reported"
    whole = _whole_file(monkeypatch, text)
    # A syntax error ends the whole-file reading; the sliced one goes on, so
    # it may find more, but what the whole-file reading found comes first and the same.
    assert sliced[: len(whole)] == whole


def test_only_the_broken_document_is_read_slowly(monkeypatch: pytest.MonkeyPatch) -> None:
    text = _many(500, {420: BROKEN["duplicate key"]})
    read_slowly: list[int] = []
    original = loader._Reader._round_trip_documents

    def spy(self: Any, text: str, filename: str, lines: int = 0) -> Any:
        read_slowly.append(len(text))
        return original(self, text, filename, lines)

    monkeypatch.setattr(loader._Reader, "_round_trip_documents", spy)
    result = read_text(text, "fleet.yaml", references=False)
    assert len(result.fleet.sites) == 499
    assert sum(read_slowly) <= len(BROKEN["duplicate key"]) + len("---\n") * 2
    (problem,) = result.problems
    first_line = 1 + text[: text.index(BROKEN["duplicate key"])].count("\n")
    assert problem.position is not None
    assert problem.position.line == first_line + 2
    assert f"(first at line {first_line + 1})" in problem.message


def test_documents_after_a_syntax_error_are_still_checked() -> None:
    text = _many(10, {3: BROKEN["open quote"], 7: _site(7).replace("count: 2", "count: -2")})
    problems = read_text(text, "fleet.yaml", references=False).problems

    def line_of(offset: int) -> int:
        return 1 + text[:offset].count("\n")

    next_marker = text.index("---\n", text.index('"eu'))  # where the open quote is noticed
    assert [p.position.line for p in problems if p.position] == [
        line_of(next_marker),
        line_of(text.index("count: -2")),
    ]
    assert "unexpected document separator" in problems[0].message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: 1\n", None),  # one document: nothing to cut
        ("%YAML 1.2\n---\na: 1\n---\nb: 2\n", None),  # a directive applies across documents
        ("a: 1\n...\n---\nb: 2\n", None),  # an explicit document end
        ("a: 1\n---\nb: 2\n", [("a: 1\n", 0), ("---\nb: 2\n", 1)]),
        ("---\na: 1\n--- \nb: 2\n", [("---\na: 1\n", 0), ("--- \nb: 2\n", 2)]),
        # Not markers: not at column 0, or not followed by a space.
        ("a: '---'\nb: |\n  ---x\n", None),
    ],
)
def test_document_slices(text: str, expected: list[tuple[str, int]] | None) -> None:
    assert document_slices(text) == expected
