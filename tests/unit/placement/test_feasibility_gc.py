"""The feasibility stage's collector setting: full collections deferred within a chunk only."""

from __future__ import annotations

import gc

import pytest

from fleetplane.placement._internal.feasibility import _NO_FULL_COLLECTION, _young_gc_only


def test_full_collections_are_deferred_inside_and_the_thresholds_restored_after() -> None:
    before = gc.get_threshold()
    seen: list[tuple[int, int, int]] = []

    @_young_gc_only
    def chunk(x: int) -> int:
        seen.append(gc.get_threshold())
        return x + 1

    assert chunk(1) == 2
    assert seen == [(before[0], before[1], _NO_FULL_COLLECTION)]
    assert gc.get_threshold() == before


def test_thresholds_are_restored_when_the_chunk_raises() -> None:
    before = gc.get_threshold()

    @_young_gc_only
    def failing() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        failing()
    assert gc.get_threshold() == before
