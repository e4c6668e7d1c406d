from __future__ import annotations

from pathlib import Path

from fleetplane.security import policy_markdown

DOC = Path(__file__).resolve().parents[3] / "docs" / "security.md"


def test_documented_policy_is_the_policy() -> None:
    text = DOC.read_text(encoding="utf-8")
    documented = text.split("<!-- policy:begin -->\n", 1)[1].split("<!-- policy:end -->", 1)[0]
    assert documented == policy_markdown(), "regenerate the table with policy_markdown()"
