"""Field-level differences between two versions of a resource, for apply --dry-run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


ABSENT: Any = _Absent()


@dataclass(frozen=True)
class FieldChange:
    path: str
    before: Any
    after: Any

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path}
        if self.before is not ABSENT:
            out["before"] = self.before
        if self.after is not ABSENT:
            out["after"] = self.after
        return out


def diff(before: Any, after: Any, path: str = "") -> list[FieldChange]:
    """Changes from ``before`` to ``after``, descending into mappings and equal-length lists.

    Lists of different lengths are reported as one change of the whole list:
    an index-by-index diff of an insertion would name every later element.
    """
    if before == after:
        return []
    if isinstance(before, dict) and isinstance(after, dict):
        changes: list[FieldChange] = []
        for key in [*before, *(k for k in after if k not in before)]:
            changes += diff(before.get(key, ABSENT), after.get(key, ABSENT), _join(path, key))
        return changes
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        changes = []
        for index, (old, new) in enumerate(zip(before, after, strict=True)):
            changes += diff(old, new, f"{path}[{index}]")
        return changes
    return [FieldChange(path, before, after)]


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
