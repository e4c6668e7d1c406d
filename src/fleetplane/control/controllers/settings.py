"""Knobs of the controllers, the lease and the agent port (tests shorten them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ControllerSettings:
    # Passes start at least this long after the previous one ended, so a burst of applies
    # plans once; a change after a quieter spell is planned at once (leading edge).
    debounce: float = 1.0
    # A site whose agent has not written its status for this long is Unreachable.
    heartbeat_timeout: float = 60.0
    # How often reachability is checked.
    reachability_interval: float = 5.0
    # When set, a site Unreachable for this long is declared Lost (its workloads then move).
    lost_after: float | None = None
    # Revisions of each site's desired state kept for agents that reconnect.
    revisions_kept: int = 100
    # Leader lease: holders renew at a third of it; others take over after it expires.
    lease_ttl: float = 15.0
    # Name of the one Placement object the controller writes.
    placement_name: str = "fleet"
