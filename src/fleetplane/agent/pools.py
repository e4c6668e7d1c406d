"""Node-pool health checks the agent runs itself, connected to the control plane or not.

Each check is a shell command given per pool (``--pool-check cpu='test -e
/run/cpu-pool-ok'``): exit 0 within the timeout means healthy, anything
else means the pool is failing, and its replicas move to the first healthy
failover pool the desired state lists (the desired state carries those
pools precisely so this needs no server). A pool that passes again gets its
replicas back. Marks by an operator (``POST /v1/pools/<pool>/fail``) are
kept in the local state and are separate from these.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

log = logging.getLogger("fleetplane.agent")


class PoolChecks:
    def __init__(self, commands: dict[str, str], interval: float,
                 on_change: Callable[[], None], timeout: float = 10.0) -> None:
        self.commands = commands
        self.interval = interval
        self.timeout = min(timeout, max(interval, 1.0))
        self.on_change = on_change
        self.failing: set[str] = set()

    async def run(self) -> None:
        if not self.commands:
            return
        while True:
            await asyncio.sleep(self.interval)
            await self.check_all()

    async def check_all(self) -> None:
        results = await asyncio.gather(*(self._passes(c) for c in self.commands.values()))
        failing = {pool for pool, ok in zip(self.commands, results, strict=True) if not ok}
        if failing != self.failing:
            for pool in sorted(failing - self.failing):
                log.warning("node pool %s failed its health check; moving its replicas to "
                            "its failover pools", pool)
            for pool in sorted(self.failing - failing):
                log.info("node pool %s passes its health check again", pool)
            self.failing = failing
            self.on_change()

    async def _passes(self, command: str) -> bool:
        process = await asyncio.create_subprocess_shell(
            command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL)
        try:
            return await asyncio.wait_for(process.wait(), self.timeout) == 0
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            return False
