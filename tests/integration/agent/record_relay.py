"""A TCP relay that hands the agent the server's TLS records one at a time, spaced apart.

On loopback, revisions the server streams back to back usually reach the agent in one
read; over a WAN they arrive apart. Forwarding each server-to-agent TLS record after
a pause reproduces the WAN's spacing deterministically (each line the server writes on
the watch is its own record), so a test can see what the agent does between two lines.
"""

from __future__ import annotations

import asyncio
import threading

from harness import free_port, wait_for

HEADER = 5  # TLS record: type, version (2), length (2)


class RecordRelay:
    def __init__(self, target_port: int, gap: float) -> None:
        self.target_port, self.gap = target_port, gap
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        wait_for(lambda: self._server is not None, 10, "relay listening")

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            relaying = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in relaying:
                task.cancel()
            # Awaited, so no cancelled task is left to complain when the loop is gone.
            await asyncio.gather(*relaying, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def _relay(self, agent_in: asyncio.StreamReader, agent_out: asyncio.StreamWriter
                     ) -> None:
        try:
            server_in, server_out = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            agent_out.close()
            return
        await asyncio.gather(self._copy(agent_in, server_out),
                             self._records(server_in, agent_out), return_exceptions=True)
        for writer in (agent_out, server_out):
            writer.close()

    @staticmethod
    async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
        writer.close()

    async def _records(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                       ) -> None:
        while True:
            try:
                header = await reader.readexactly(HEADER)
                body = await reader.readexactly(int.from_bytes(header[3:5], "big"))
            except asyncio.IncompleteReadError:
                writer.close()
                return
            writer.write(header + body)
            await writer.drain()
            await asyncio.sleep(self.gap)  # the WAN's spacing between two records
