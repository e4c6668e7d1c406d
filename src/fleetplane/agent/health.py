"""The agent's own small HTTP endpoint: /healthz, Prometheus /metrics, replicas, pool marks.

Plain asyncio, not an ASGI stack: the agent must stay small (the issue's goal
is ≤ 70 MB RSS), and four routes do not need a framework. It listens on
loopback by default; the pool routes let a local operator (or a test) mark a
node pool failed so its replicas move to a failover pool.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("fleetplane.agent")

Handler = Callable[[str, str], Awaitable[tuple[int, str, bytes]]]


async def serve(host: str, port: int, handler: Handler) -> asyncio.Server:
    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), 5.0)
            while (await asyncio.wait_for(reader.readline(), 5.0)) not in (b"\r\n", b"\n", b""):
                pass
            parts = request.decode("latin-1").split()
            if len(parts) < 2:
                return
            code, content_type, body = await handler(parts[0], parts[1])
            writer.write(
                f"HTTP/1.1 {code} {'OK' if code < 400 else 'Error'}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode() + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError):
            return
        finally:
            writer.close()

    return await asyncio.start_server(connection, host, port)


def json_body(code: int, value: Any) -> tuple[int, str, bytes]:
    return code, "application/json", json.dumps(value).encode()


def prometheus(metrics: list[tuple[str, str, str, dict[str, str], float]]) -> bytes:
    """Text exposition format from (name, type, help, labels, value) rows."""
    lines: list[str] = []
    described: set[str] = set()
    for name, kind, text, labels, value in metrics:
        if name not in described:
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
            described.add(name)
        label_text = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        lines.append(f"{name}{{{label_text}}} {value}" if label_text else f"{name} {value}")
    return ("\n".join(lines) + "\n").encode()
