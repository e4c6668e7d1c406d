"""A catch-up request that outlives httpx's timeouts is abandoned, not waited on forever.

httpx enforces its timeouts in the transport; a connection httpcore left
locked never reaches them. A transport that never answers stands in for it.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from fleetplane.agent.state import LocalState
from fleetplane.agent.sync import DesiredStateSync, StuckRequest


class NeverAnswers(httpx.AsyncBaseTransport):
    def __init__(self) -> None:
        self.requests = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


def test_a_catch_up_that_never_returns_raises_stuck_request(tmp_path: Path) -> None:
    sync = DesiredStateSync("store-1", LocalState(tmp_path), lambda desired: None)
    sync.catch_up_deadline = 0.2
    transport = NeverAnswers()

    async def attempt() -> None:
        async with httpx.AsyncClient(transport=transport) as client:
            await sync.watch(client, "https://control.example", lambda: None)

    with pytest.raises(StuckRequest, match="catching up from revision 0"):
        asyncio.run(asyncio.wait_for(attempt(), 30))
    assert transport.requests == 1
