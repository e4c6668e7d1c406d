"""How specs of sensitive kinds are sealed before they reach the database.

The store calls a :class:`SpecCodec` on every write and every comparison of
the kinds it names; everything else (events, backups) only ever holds the
sealed form. :class:`PlainCodec` is for stores without sensitive kinds.
"""

from __future__ import annotations

from typing import Any, Protocol


class SpecCodec(Protocol):
    @property
    def kinds(self) -> frozenset[str]:
        """Kinds whose specs are sealed."""
        ...

    def seal(self, kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        """The spec as stored."""
        ...

    def open(self, kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        """The spec as the user wrote it."""
        ...

    def redact(self, kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        """The spec with sensitive values replaced, safe to show in diffs and logs."""
        ...


class PlainCodec:
    kinds: frozenset[str] = frozenset()

    def seal(self, kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return spec

    def open(self, kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return spec

    def redact(self, kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return spec
