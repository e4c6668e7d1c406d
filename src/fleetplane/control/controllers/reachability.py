"""The reachability controller: sites whose agents fell silent become Unreachable (or Lost).

Unreachable changes nothing about where workloads run (see ``planner.py``);
only Lost does, and only an operator (`fleetplane site lost`) or the
``lost_after`` grace period set for the server declares it.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from fleetplane.control.controllers.settings import ControllerSettings
from fleetplane.control.controllers.transactions import write_statuses
from fleetplane.control.plane import ControlPlane

UNREACHABLE, LOST, REACHABLE = "Unreachable", "Lost", "Reachable"


def parse_time(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def next_reachability(
    status: dict[str, Any] | None, now: datetime, settings: ControllerSettings
) -> str | None:
    """The reachability a site's status should now show, or None to leave it alone."""
    status = status or {}
    state = status.get("reachability", "Unknown")
    heartbeat = parse_time(status.get("heartbeat"))
    if heartbeat is None or state == LOST:
        return None
    silent = (now - heartbeat).total_seconds()
    if silent < settings.heartbeat_timeout:
        return None
    if state != UNREACHABLE:
        return UNREACHABLE
    # The grace period runs from the moment the site became Unreachable.
    grace = settings.lost_after
    if grace is not None and silent >= settings.heartbeat_timeout + grace:
        return LOST
    return None


class ReachabilityController:
    name = "reachability"

    def __init__(self, settings: ControllerSettings) -> None:
        self.settings = settings

    async def run(self, plane: ControlPlane) -> None:
        while True:
            await asyncio.to_thread(self.check, plane, datetime.now(UTC))
            await asyncio.sleep(self.settings.reachability_interval)

    def check(self, plane: ControlPlane, now: datetime) -> list[str]:
        """Mark what is due; the names of the sites changed."""
        # Statuses only: decoding every site's spec and metadata each round would cost
        # more than the check (the write below re-reads each due site in its transaction).
        statuses = plane.store.statuses("Site")
        due = [
            (name, state)
            for name, status in sorted(statuses.items())
            if (state := next_reachability(status, now, self.settings)) is not None
        ]

        def mark(state: str) -> Any:
            def change(status: dict[str, Any] | None) -> dict[str, Any] | None:
                # Re-checked in the write transaction: a heartbeat may have just arrived.
                if next_reachability(status, now, self.settings) != state:
                    return status
                return {**(status or {}), "reachability": state}

            return change

        if due:
            write_statuses(plane.store, [("Site", name, mark(state)) for name, state in due])
        return [name for name, _ in due]
