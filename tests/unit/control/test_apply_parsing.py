"""An apply body is read into the same plain data by the fast path as by ruamel's safe loader."""

from __future__ import annotations

from pathlib import Path

import pytest
from ruamel.yaml import YAML

from fleetplane.control.api.status import ApiError
from fleetplane.control.validation import _plain_documents
from fleetplane.model.positions import fast_documents

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"

ODD_SCALARS = """
apiVersion: fleetplane/v1
kind: Site
metadata:
  name: s1
  labels: {exp: 1e3, yes: no, on: off, octal: 0o17, date: 2026-11-29, nothing: null, t: true}
spec: {numbers: [1, 1.0, -0.0, .inf, -.inf, 12345678901234567890, 0x1f], text: "café — ü"}
---
---
apiVersion: fleetplane/v1
kind: Link
metadata: {name: l1}
spec:
  rule: 'site.tier != "edge" && !(x)'
  empty: ""
  folded: >
    two lines
    folded
"""

# The fast path hands merge keys to ruamel's own loaders.
MERGED = """
base: &base {a: 1}
kind: Site
metadata: {name: s2}
spec:
  <<: *base
  b: 2
"""


def _safe(text: str) -> list[object]:
    return [d for d in YAML(typ="safe", pure=True).load_all(text) if d is not None]


@pytest.mark.parametrize(
    "text",
    [
        ODD_SCALARS,
        "\n---\n".join(p.read_text() for p in sorted((EXAMPLES / "retail-edge").glob("*.yaml"))),
    ],
    ids=["odd-scalars", "retail-edge"],
)
def test_the_fast_path_reads_what_the_safe_loader_reads(text: str) -> None:
    assert fast_documents(text, "body") is not None  # the fast path is the one tested
    assert _plain_documents(text, "body") == _safe(text)


def test_what_the_fast_path_refuses_is_read_by_the_safe_loader() -> None:
    assert fast_documents(MERGED, "body") is None
    assert _plain_documents(MERGED, "body") == _safe(MERGED)
    assert _plain_documents(MERGED, "body")[0]["spec"] == {"a": 1, "b": 2}


def test_unreadable_yaml_is_still_a_400_with_its_position() -> None:
    with pytest.raises(ApiError) as raised:
        _plain_documents("kind: Site\nmetadata: {name: [oops\n", "body.yaml")
    assert raised.value.code == 400
    assert [c["position"] for c in raised.value.details["causes"]] == ["body.yaml:3:1"]


def test_an_ordinary_body_never_reaches_the_pure_python_loader(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fleetplane.control import validation

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the pure-Python loader was used")

    monkeypatch.setattr(validation, "YAML", refuse)
    assert len(_plain_documents(ODD_SCALARS, "body")) == 2
