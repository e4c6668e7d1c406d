"""Watch streams: newline-delimited JSON events from a resource version onwards.

Without ``resourceVersion`` the stream starts with the current objects as
ADDED (one consistent list) and continues from that list's version; with
one, it resumes right after it, so a client that reconnects with the last
version it saw misses nothing. Versions whose events were compacted answer
410 before the stream starts (or an ERROR event if it happens mid-stream).

With a label selector, an object that starts matching arrives as ADDED and
one that stops matching as DELETED, like Kubernetes watches.

BOOKMARK events carry only a resourceVersion: when a watcher's kind is
quiet they still move its resume point forward, past other kinds' events,
so a reconnect after a long quiet spell does not fall off the event log.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.types import Receive

from fleetplane.control.api.status import status_body
from fleetplane.control.plane import ControlPlane
from fleetplane.control.selectors import Selector
from fleetplane.control.store.errors import Expired
from fleetplane.control.store.records import WatchEvent
from fleetplane.model.base import API_VERSION


@dataclass(frozen=True)
class WatchRequest:
    kind: str
    selector: Selector
    since: int | None
    timeout: float | None
    bookmarks: bool = True


def line(event_type: str, document: dict[str, Any]) -> bytes:
    return (json.dumps({"type": event_type, "object": document}) + "\n").encode("utf-8")


def bookmark(kind: str, version: int) -> bytes:
    return line(
        "BOOKMARK",
        {"apiVersion": API_VERSION, "kind": kind, "metadata": {"resourceVersion": str(version)}},
    )


def visible_type(event: WatchEvent, selector: Selector) -> str | None:
    """The event type this watcher sees, or None when the change is outside its selector."""
    if selector.empty:
        return event.type
    now = selector(event.labels)
    before = selector(event.prev_labels if event.prev_labels is not None else event.labels)
    if event.type == "ADDED":
        return "ADDED" if now else None
    if event.type == "DELETED":
        return "DELETED" if now else None
    if before and now:
        return "MODIFIED"
    if now:
        return "ADDED"
    if before:
        return "DELETED"
    return None


async def open_watch(
    plane: ControlPlane, request: WatchRequest, receive: Receive
) -> AsyncIterator[bytes]:
    """Check the start version (410 now, before any byte is sent) and return the stream."""
    if request.since is not None:
        await asyncio.to_thread(plane.store.events_since, request.since, kind=request.kind, limit=1)
    return _stream(plane, request, receive)


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        continue


async def _wait(
    plane: ControlPlane, since: int, timeout: float, gone: asyncio.Future[None]
) -> None:
    """Until a version above ``since`` is committed, the timeout, or the client leaves.

    Servers speaking ASGI 2.4 only report a vanished client when the next
    write fails, which for an idle watch is the next bookmark; listening for
    ``http.disconnect`` frees the watch at once.
    """
    waiter: asyncio.Future[Any] = asyncio.ensure_future(plane.notifier.wait_for(since, timeout))
    pending: set[asyncio.Future[Any]] = {waiter, gone}
    try:
        await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()


async def _stream(
    plane: ControlPlane, request: WatchRequest, receive: Receive
) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    deadline = None if request.timeout is None else loop.time() + request.timeout
    interval = plane.settings.watch.bookmark_interval
    metrics = plane.metrics
    gone = asyncio.ensure_future(_disconnected(receive))
    metrics.watches.inc()
    try:
        if request.since is None:
            items, since = await asyncio.to_thread(
                plane.store.list_resources, request.kind, where=request.selector
            )
            for item in items:
                metrics.watch_events.labels("ADDED").inc()
                yield line("ADDED", plane.store.reveal(item).to_document())
        else:
            since = request.since
        last_sent = loop.time()
        while True:
            try:
                batch = await asyncio.to_thread(
                    plane.store.events_since,
                    since,
                    kind=request.kind,
                    limit=plane.settings.watch.batch_size,
                )
            except Expired as error:
                yield line("ERROR", status_body(410, str(error), "Expired"))
                return
            for event in batch.events:
                shown = visible_type(event, request.selector)
                if shown is not None:
                    metrics.watch_events.labels(shown).inc()
                    yield line(shown, _reveal(plane, event))
                    last_sent = loop.time()
            since = batch.through
            if len(batch.events) >= plane.settings.watch.batch_size:
                continue
            now = loop.time()
            if deadline is not None and now >= deadline:
                return
            if request.bookmarks and now - last_sent >= interval:
                metrics.watch_events.labels("BOOKMARK").inc()
                yield bookmark(request.kind, since)
                last_sent = now
            wait = interval - (now - last_sent) if request.bookmarks else interval
            if deadline is not None:
                wait = min(wait, deadline - now)
            await _wait(plane, since, max(wait, 0.0), gone)
            if plane.notifier.closed or gone.done():
                return
    finally:
        gone.cancel()
        metrics.watches.dec()


def _reveal(plane: ControlPlane, event: WatchEvent) -> dict[str, Any]:
    if event.kind not in plane.store.codec.kinds or event.type == "DELETED":
        return event.object
    spec = plane.store.codec.open(event.kind, event.name, event.object.get("spec") or {})
    return {**event.object, "spec": spec}
