"""docs/policy.md documents every CEL variable and field the engine builds, and no others."""

from __future__ import annotations

import re
from pathlib import Path

from fleetplane.placement._internal.activation import VARIABLES

DOC = Path(__file__).resolve().parents[3] / "docs" / "policy.md"


def documented() -> dict[str, set[str]]:
    text = DOC.read_text(encoding="utf-8")
    sections = re.split(r"^### `(\w+)`\s*$", text, flags=re.M)
    out: dict[str, set[str]] = {}
    for name, body in zip(sections[1::2], sections[2::2], strict=True):
        out[name] = set(re.findall(r"^\| `(\w+)` \|", body, flags=re.M))
    return out


def test_every_variable_and_field_is_documented() -> None:
    assert documented() == {name: set(fields) for name, fields in VARIABLES.items()}
