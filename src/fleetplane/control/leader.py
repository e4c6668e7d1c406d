"""Leader election through a lease row: one replica runs the controllers.

Acquire and renew are one conditional UPDATE each — ``SET holder = me …
WHERE name = 'controllers' AND (holder = me OR expires_at < now)`` — which
both SQLite and PostgreSQL execute atomically, so two replicas can never
both see rowcount 1 for the same expired lease. The holder renews every
TTL/3; a holder that cannot renew before its own expiry stops its
controllers (it may be partitioned from the database, and someone else may
hold the lease by then). Clocks of replicas are assumed to agree to well
within the TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Sequence

from prometheus_client import Gauge
from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from fleetplane.control.controllers.tables import LeaseRow
from fleetplane.control.plane import Controller, ControlPlane

log = logging.getLogger(__name__)

LEASE_NAME = "controllers"


def replica_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Lease:
    """The lease row, read and written with single atomic statements."""

    def __init__(self, engine: Engine, holder: str, ttl: float, name: str = LEASE_NAME) -> None:
        self.engine = engine
        self.holder = holder
        self.ttl = ttl
        self.name = name

    def try_acquire(self, now: float | None = None) -> bool:
        """Take or renew the lease; True when this replica holds it until now + ttl."""
        moment = time.time() if now is None else now
        with self.engine.begin() as connection:
            result = connection.execute(
                update(LeaseRow)
                .where(
                    LeaseRow.name == self.name,
                    (LeaseRow.holder == self.holder) | (LeaseRow.expires_at < moment),
                )
                .values(
                    holder=self.holder,
                    expires_at=moment + self.ttl,
                    epoch=LeaseRow.epoch + 1,
                )
            )
            if result.rowcount == 1:
                return True
            exists = connection.execute(
                select(LeaseRow.name).where(LeaseRow.name == self.name)
            ).first()
        if exists is not None:
            return False
        try:
            with self.engine.begin() as connection:
                connection.execute(
                    insert(LeaseRow).values(
                        name=self.name, holder=self.holder, expires_at=moment + self.ttl, epoch=1
                    )
                )
        except IntegrityError:
            return False  # another replica created it first
        return True

    def release(self) -> None:
        """Give the lease up now (clean shutdown), so a standby need not wait for the TTL."""
        with self.engine.begin() as connection:
            connection.execute(
                update(LeaseRow)
                .where(LeaseRow.name == self.name, LeaseRow.holder == self.holder)
                .values(expires_at=0.0)
            )

    def current_holder(self) -> tuple[str, float] | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                select(LeaseRow.holder, LeaseRow.expires_at).where(LeaseRow.name == self.name)
            ).first()
        return (row.holder, float(row.expires_at)) if row is not None else None


class LeaderElected:
    """A controller that runs ``controllers`` only while this replica holds the lease."""

    name = "leader-election"

    def __init__(
        self, controllers: Sequence[Controller], ttl: float, holder: str | None = None
    ) -> None:
        self.controllers = list(controllers)
        self.ttl = ttl
        self.holder = holder or replica_identity()
        self.is_leader = False
        self.transitions = 0

    def details(self) -> dict[str, object]:
        return {"holder": self.holder, "leader": self.is_leader, "leaseTtl": self.ttl}

    async def run(self, plane: ControlPlane) -> None:
        lease = Lease(plane.engine, self.holder, self.ttl)
        _expose(plane, self)
        tasks: list[asyncio.Task[None]] = []
        valid_until = 0.0
        try:
            while True:
                started = time.time()
                try:
                    held = await asyncio.to_thread(lease.try_acquire, started)
                except Exception as error:
                    log.warning("lease renewal failed: %s", error)
                    held = False if time.time() >= valid_until else self.is_leader
                if held:
                    valid_until = started + self.ttl
                if held and not self.is_leader:
                    log.info("%s is now the leader: starting controllers", self.holder)
                    tasks = [
                        asyncio.create_task(_supervise(c, plane), name=f"controller-{c.name}")
                        for c in self.controllers
                    ]
                elif not held and self.is_leader:
                    log.warning("%s lost the lease: stopping controllers", self.holder)
                    await _cancel(tasks)
                    tasks = []
                if held != self.is_leader:
                    self.transitions += 1
                self.is_leader = held
                await asyncio.sleep(self.ttl / 3)
        finally:
            await _cancel(tasks)
            if self.is_leader:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(lease.release)
            self.is_leader = False


def _expose(plane: ControlPlane, elected: LeaderElected) -> None:
    """Leadership in /metrics (a gauge) and /readyz (``plane.leadership``)."""
    gauge = Gauge(
        "fleetplane_controllers_leader",
        "1 while this replica holds the controllers' lease and runs them.",
        registry=plane.metrics.registry,
    )
    gauge.set_function(lambda: 1.0 if elected.is_leader else 0.0)
    setattr(plane, "leadership", elected)  # noqa: B010 - read by /readyz; ControlPlane has no slot


RESTART_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)


async def _supervise(controller: Controller, plane: ControlPlane) -> None:
    """Run a controller while leading; restart it after a crash (a leader must keep planning).

    A crash is usually the database failing a transaction; waiting a little
    longer after each one keeps a persistent fault from spinning.
    """
    crashes = 0
    while True:
        try:
            await controller.run(plane)
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            delay = RESTART_DELAYS[min(crashes, len(RESTART_DELAYS) - 1)]
            crashes += 1
            log.exception(
                "controller %s stopped with an error; restarting it in %.0f s",
                controller.name,
                delay,
            )
            await asyncio.sleep(delay)


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
