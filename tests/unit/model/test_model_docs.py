"""docs/model.md stays in step with the models: every kind and every field is mentioned."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pydantic

from fleetplane.model.base import Metadata
from fleetplane.model.kinds import KINDS

DOC = Path(__file__).resolve().parents[3] / "docs" / "model.md"


def models_under(annotation: object) -> list[type[pydantic.BaseModel]]:
    """The models in ``annotation`` and every model their fields contain, each once."""
    found: list[type[pydantic.BaseModel]] = []
    pending = nested_models(annotation)
    while pending:
        current = pending.pop()
        if current in found:
            continue
        found.append(current)
        for info in current.model_fields.values():
            pending.extend(nested_models(info.annotation))
    return found


def nested_models(annotation: object) -> list[type[pydantic.BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in nested_models(arg)]


def test_every_kind_has_a_section() -> None:
    text = DOC.read_text()
    for kind in KINDS:
        assert f"\n## {kind}\n" in text, f"docs/model.md has no section for {kind}"


def test_every_field_is_mentioned() -> None:
    text = DOC.read_text()
    missing = []
    for kind, cls in KINDS.items():
        for part in ("spec", "status"):
            for model in models_under(cls.model_fields[part].annotation):
                for name, info in model.model_fields.items():
                    alias = info.alias or name
                    if not re.search(rf"\b{re.escape(alias)}\b", text):
                        missing.append(f"{kind} {model.__name__}.{alias}")
    for name, info in Metadata.model_fields.items():
        if f"`{info.alias or name}`" not in text:
            missing.append(f"metadata.{info.alias or name}")
    assert not missing, f"fields not documented in docs/model.md: {missing}"
