"""The server's collector pacing: survivors of a full pass frozen, thawed every period."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from fleetplane.control.gc_pacing import CollectionPacer, pace_collections


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def thawed() -> Iterator[None]:
    # The collector is process-wide: leave it as found whatever a test does.
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_survivors_of_a_full_pass_are_frozen_and_thawed_each_period() -> None:
    clock = Clock()
    pacer = CollectionPacer(thaw_every=600.0, clock=clock)
    assert pacer.step() is None  # no full pass yet: nothing to freeze
    assert gc.get_freeze_count() == 0

    kept = [[index] for index in range(1_000)]  # long-lived containers
    gc.collect()
    clock.now += 1
    assert pacer.step() == "froze"
    frozen = gc.get_freeze_count()
    assert frozen >= len(kept)
    # The next full pass walks only what came since, not the frozen survivors.
    assert pacer.step() is None

    clock.now += 600
    assert pacer.step() == "thawed"
    assert gc.get_freeze_count() == 0
    del kept


def test_a_frozen_cycle_is_collected_once_thawed() -> None:
    clock = Clock()
    pacer = CollectionPacer(thaw_every=600.0, clock=clock)

    class Node:
        other: Node

    first, second = Node(), Node()
    first.other, second.other = second, first
    watch = weakref.ref(first)
    gc.collect()
    assert pacer.step() == "froze"
    del first, second
    gc.collect()
    assert watch() is not None  # frozen: the cycle waits for the thaw
    clock.now += 600
    assert pacer.step() == "thawed"
    gc.collect()
    assert watch() is None


def test_the_pacing_task_thaws_when_cancelled() -> None:
    async def run() -> None:
        gc.collect()
        pacer = CollectionPacer(thaw_every=600.0)
        pacer._seen -= 1  # a full pass "happened": the first step freezes
        task = asyncio.create_task(pace_collections(pacer))
        while gc.get_freeze_count() == 0:
            await asyncio.sleep(0.05)  # polling the task's first step, not a race
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    assert gc.get_freeze_count() == 0


def test_serve_paces_collections_while_it_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    from fleetplane.cli import serve
    from fleetplane.control import gc_pacing

    seen: list[str] = []

    async def pacing() -> None:
        seen.append("started")
        try:
            await asyncio.Event().wait()
        finally:
            seen.append("stopped")

    class Human:
        async def serve(self) -> None:
            await asyncio.sleep(0)
            seen.append("served")

    monkeypatch.setattr(gc_pacing, "pace_collections", pacing)
    asyncio.run(serve._serve_both(Human(), None))  # type: ignore[arg-type]
    assert seen == ["started", "served", "stopped"]
