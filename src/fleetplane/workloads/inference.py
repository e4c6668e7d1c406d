"""The bundled inference service: digits classification over HTTP.

``python -m fleetplane.workloads.inference --port P [--model PATH]
[--extra-compute-ms N] [--error-rate F]``

* ``POST /predict`` ``{"pixels": [[64 numbers 0..16], …]}`` → ``{"digits": […]}``
* ``GET /livez`` (the process answers), ``GET /readyz`` (model loaded)
* ``GET /stats``: cumulative request/error counts and latency buckets, which
  the agent turns into per-interval telemetry.
* A W3C ``traceparent`` on a request is answered with the same trace id and a
  new span id, so a caller's trace continues through the replica.

Knobs (flags or environment): ``FLEETPLANE_MODEL``, ``FLEETPLANE_EXTRA_COMPUTE_MS``
(busy compute added per request, to emulate a heavier model) and
``FLEETPLANE_ERROR_RATE`` (fraction of predictions answered 500, for
rollout and alerting tests).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from fleetplane.workloads.mlp import Mlp, train

# Upper bounds of the latency buckets in seconds; the last bucket is open.
BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.errors = 0
        self.latency_sum = 0.0
        self.buckets = [0] * (len(BUCKETS) + 1)

    def observe(self, seconds: float, failed: bool) -> None:
        index = next((i for i, bound in enumerate(BUCKETS) if seconds <= bound), len(BUCKETS))
        with self._lock:
            self.requests += 1
            self.errors += int(failed)
            self.latency_sum += seconds
            self.buckets[index] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self.requests,
                "errors": self.errors,
                "latencySum": self.latency_sum,
                "buckets": list(self.buckets),
                "bucketBounds": list(BUCKETS),
                "pid": os.getpid(),
            }


class Service:
    def __init__(self, model: Mlp | None, extra_compute: float, error_rate: float) -> None:
        self.model = model
        self.extra_compute = extra_compute
        self.error_rate = error_rate
        self.stats = Stats()
        self.started = time.time()

    def predict(self, body: dict[str, Any]) -> list[int]:
        if self.model is None:
            raise RuntimeError("model not loaded yet")
        pixels = np.asarray(body["pixels"], dtype=np.float64)
        if pixels.ndim != 2 or pixels.shape[1] != 64:
            raise ValueError("pixels must be a list of rows of 64 numbers (8×8 images, 0..16)")
        deadline = time.perf_counter() + self.extra_compute
        while time.perf_counter() < deadline:
            # Busy work, not a sleep: the knob emulates CPU cost that queues other requests.
            np.dot(pixels, pixels.T)
        return [int(d) for d in self.model.predict(pixels / 16.0)]


def child_traceparent(header: str | None) -> str | None:
    if header is None:
        return None
    match = _TRACEPARENT.match(header.strip().lower())
    if match is None or match.group(1) == "0" * 32:
        return None
    return f"00-{match.group(1)}-{secrets.token_hex(8)}-{match.group(3)}"


def handler_for(service: Service) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _send(self, code: int, value: Any) -> None:
            data = json.dumps(value).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            trace = child_traceparent(self.headers.get("traceparent"))
            if trace is not None:
                self.send_header("traceparent", trace)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path == "/livez":
                self._send(200, {"status": "alive"})
            elif self.path == "/readyz":
                ready = service.model is not None
                self._send(200 if ready else 503, {"ready": ready})
            elif self.path == "/stats":
                self._send(200, service.stats.snapshot())
            else:
                self._send(404, {"error": f"no route {self.path}; try POST /predict"})

        def do_POST(self) -> None:
            if self.path != "/predict":
                self._send(404, {"error": f"no route {self.path}; try POST /predict"})
                return
            start = time.perf_counter()
            failed = True
            try:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                digits = service.predict(body)
                if random.random() < service.error_rate:
                    self._send(500, {"error": "injected error (FLEETPLANE_ERROR_RATE)"})
                    return
                failed = False
                self._send(200, {"digits": digits})
            except (ValueError, KeyError, TypeError) as error:
                self._send(400, {"error": str(error)})
            except RuntimeError as error:
                self._send(503, {"error": str(error)})
            finally:
                service.stats.observe(time.perf_counter() - start, failed)

    return Handler


def load_model(path: Path | None) -> Mlp:
    if path is not None:
        return Mlp.load(path)
    model, _ = train()
    return model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="fleetplane bundled inference service")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", type=Path, default=_env_path("FLEETPLANE_MODEL"))
    parser.add_argument("--extra-compute-ms", type=float,
                        default=float(os.environ.get("FLEETPLANE_EXTRA_COMPUTE_MS", "0")))
    parser.add_argument("--error-rate", type=float,
                        default=float(os.environ.get("FLEETPLANE_ERROR_RATE", "0")))
    arguments = parser.parse_args(argv)
    if not 0.0 <= arguments.error_rate <= 1.0:
        parser.error(f"--error-rate {arguments.error_rate}: give a fraction between 0 and 1")
    service = Service(None, arguments.extra_compute_ms / 1000.0, arguments.error_rate)
    server = ThreadingHTTPServer((arguments.host, arguments.port), handler_for(service))
    server.daemon_threads = True
    # Graceful stop: SIGTERM ends serve_forever; in-flight requests finish on their threads.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    # Live at once, ready when the model is loaded (training without an artifact takes seconds).
    loader = threading.Thread(
        target=lambda: setattr(service, "model", load_model(arguments.model)), daemon=True
    )
    loader.start()
    print(f"serving on {arguments.host}:{arguments.port}", file=sys.stderr, flush=True)
    server.serve_forever()
    server.server_close()


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


if __name__ == "__main__":
    main()
