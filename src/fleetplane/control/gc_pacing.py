"""Keep the cycle collector's full passes short in a long-running server.

CPython's full (generation 2) collection walks every tracked object while
holding the GIL. A server with 2,000 agents connected holds millions of
them (connections, watch streams, cached documents), nearly all long-lived,
and each full pass stopped every request for 450-510 ms (measured with
``benchmarks/control_plane.py``, every 20-40 s at 200 status writes/s):
the p99 of status writes was those pauses, and the passes freed almost
nothing (0-85 objects each).

So after each full pass its survivors are frozen (``gc.freeze``: moved to
the permanent generation, which collections skip); the next full pass walks
only what arrived since. Frozen objects are still freed by reference
counting the moment nothing refers to them; only garbage *cycles* among
them (a closed connection's protocol, transport and task, say) wait, until
they are thawed: every ``thaw_every`` seconds (default 10 minutes) the
permanent generation goes back to the oldest one, and the next full pass
looks at everything once. One long pass per period instead of one every
few tens of seconds, and no memory kept for good.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable

THAW_EVERY = 600.0
CHECK_EVERY = 1.0


def full_collections() -> int:
    return int(gc.get_stats()[2]["collections"])


class CollectionPacer:
    """Freezes the survivors of each full collection; thaws them every ``thaw_every`` seconds."""

    def __init__(self, thaw_every: float = THAW_EVERY, clock: Callable[[], float] = time.monotonic):
        self.thaw_every = thaw_every
        self._clock = clock
        self._thawed_at = clock()
        self._seen = full_collections()

    def step(self) -> str | None:
        """Freeze or thaw if due: ``"froze"``, ``"thawed"`` or None."""
        now, full = self._clock(), full_collections()
        if now - self._thawed_at >= self.thaw_every:
            gc.unfreeze()
            self._thawed_at, self._seen = now, full
            return "thawed"
        if full != self._seen:
            # Freezing right after a full pass moves only what that pass kept alive.
            gc.freeze()
            self._seen = full
            return "froze"
        return None


async def pace_collections(pacer: CollectionPacer | None = None) -> None:
    """Run ``pacer`` (a new one by default) every second until cancelled; thaw on the way out."""
    pacer = pacer or CollectionPacer()
    try:
        while True:
            await asyncio.sleep(CHECK_EVERY)
            pacer.step()
    finally:
        gc.unfreeze()
