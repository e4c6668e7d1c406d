"""Canonical JSON: one byte string per value, so hashes of equal values are equal.

Sorted keys, no insignificant whitespace, UTF-8, no NaN/Infinity, and
datetimes as UTC ISO 8601 with microseconds and a ``Z``. Floats use
Python's shortest round-trip repr; a value that went through a store and
back hashes the same only if the store keeps it exactly, so stores keep
hashed JSON as text (see docs/security.md).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from fleetplane.security.clock import as_utc


def format_timestamp(moment: datetime) -> str:
    """``2026-01-02T03:04:05.000006Z``: UTC, always with microseconds."""
    return as_utc(moment).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def to_json_value(value: Any, path: str = "$") -> Any:
    """``value`` as plain JSON types; TypeError names the path of anything else."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise TypeError(f"{path}: {value} cannot be represented in JSON")
        return value
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, Mapping):
        result: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{path}: object keys must be strings, got {key!r}")
            result[key] = to_json_value(item, f"{path}.{key}")
        return result
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return [to_json_value(item, f"{path}[{index}]") for index, item in enumerate(value)]
    raise TypeError(f"{path}: {type(value).__name__} is not a JSON value")


def canonical_json(value: Any) -> bytes:
    return json.dumps(
        to_json_value(value),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    ).encode("utf-8")


def digest(value: Any) -> str:
    """``sha256:<hex>`` of the canonical JSON of ``value`` (e.g. a resource document)."""
    return "sha256:" + hashlib.sha256(canonical_json(value)).hexdigest()
