"""The agent port's revision hub works when a watch arrives before the notifier is bound.

Agents reconnect the moment a restarted server listens, which can be before
the human API's start-up has bound the change notifier to the event loop.
The hub used to die on that (``bind() was not called``) and no watch was
ever woken by a new revision again.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from fleetplane.control.agent_api.desired import RevisionHub
from fleetplane.control.controllers.transactions import write_site_states
from fleetplane.control.plane import ControlPlane
from fleetplane.control.settings import Settings


def test_a_watch_before_start_up_is_still_woken_by_the_next_revision(tmp_path: Path) -> None:
    plane = ControlPlane.open(Settings(database_url=f"sqlite:///{tmp_path / 'store.db'}"))
    try:
        assert plane.notifier.loop is None
        asyncio.run(_watch_then_revise(plane))
    finally:
        plane.close()


async def _watch_then_revise(plane: ControlPlane) -> None:
    hub = RevisionHub(plane)
    woken = hub.event("a")
    await asyncio.sleep(0)  # let the hub task reach its first wait (scheduling, not timing)
    await asyncio.to_thread(
        write_site_states, plane.store, {"a": {"workloads": []}}, actor="t", keep=100
    )
    await asyncio.wait_for(woken.wait(), 30)
    fresh = hub.continuing("a", 0)
    assert fresh is not None and [r.revision for r in fresh] == [1]
    plane.notifier.close()
