"""Wake-ups for watchers and controllers when the store's version moves.

Writes in this process publish their version right after commit (from
whatever thread committed); a poller adds versions committed by other
processes or replicas sharing the database. Waiters only learn *that*
something changed and up to which version; they read the events from the
store, which is the single source of truth, so a lost or coalesced wake-up
costs latency, never correctness.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)


class ChangeNotifier:
    """The highest committed version seen so far, and a way to wait for a higher one."""

    def __init__(self, version: int = 0) -> None:
        self._version = version
        # Replaced by a fresh Event on every advance: waiters hold the one that
        # was current when they checked the version, so no wake-up is missed.
        self._changed: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    @property
    def version(self) -> int:
        return self._version

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop

    @property
    def closed(self) -> bool:
        """True once the server is shutting down: waiters return and watches end."""
        return self._closed

    def close(self) -> None:
        """Wake every waiter for good (call on the notifier's loop)."""
        self._closed = True
        changed = self._changed
        if changed is not None:
            changed.set()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Attach to the event loop waiters run on (call from that loop; again is a no-op).

        Binding twice to the same loop must not replace the Event: a waiter
        already holding it would miss the next wake-up.
        """
        if self._loop is loop and self._changed is not None:
            return
        self._loop = loop
        self._changed = asyncio.Event()

    def publish(self, version: int) -> None:
        """Record ``version``; safe to call from any thread, before or after :meth:`bind`."""
        loop = self._loop
        if loop is None or loop.is_closed():
            self._version = max(self._version, version)
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._advance(version)
        else:
            with contextlib.suppress(RuntimeError):  # loop closed while shutting down
                loop.call_soon_threadsafe(self._advance, version)

    def _advance(self, version: int) -> None:
        if version <= self._version:
            return
        self._version = version
        changed = self._changed
        if changed is not None:
            self._changed = asyncio.Event()
            changed.set()

    async def wait_for(self, after: int, timeout: float) -> int:
        """Wait until a version above ``after`` is known, at most ``timeout`` seconds.

        Returns the highest known version (``<= after`` on timeout).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._version <= after and not self._closed:
            changed = self._changed
            remaining = deadline - loop.time()
            if changed is None:
                raise RuntimeError("ChangeNotifier.bind() was not called on this event loop")
            if remaining <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), remaining)
        return self._version


async def poll_versions(
    notifier: ChangeNotifier,
    read_version: Callable[[], int],
    interval: float,
) -> None:
    """Publish the store's version every ``interval`` seconds (for other writers' commits).

    ``read_version`` is blocking (a database query), so it runs in a thread.
    A failing database is logged and retried: readiness reports it, and
    watchers carry on once it is back.
    """
    while True:
        try:
            notifier.publish(await asyncio.to_thread(read_version))
        except Exception as error:
            log.warning("polling the store's version failed: %s", error)
        await asyncio.sleep(interval)
