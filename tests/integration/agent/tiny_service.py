"""A minimal replica for agent tests: /livez, /readyz, /stats, /tag; optionally hogs memory.

Run by the agent's process runtime as ``python -m tiny_service --port P`` (the
test puts this directory on the replica's PYTHONPATH through the desired
state's env). ``TINY_STARTS=PATH`` appends "pid TINY_TAG" to PATH at every start;
``TINY_HOG_MB`` allocates and touches that many MiB before it
serves, to exceed a memory limit for real; ``TINY_IGNORE_TERM=1`` ignores SIGTERM (it
ends only at the agent's SIGKILL after the grace period). Starts in milliseconds, unlike the
inference workload, so scenarios with many restarts stay short.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path in ("/livez", "/readyz"):
            body = b"ok"
        elif self.path == "/tag":
            body = os.environ.get("TINY_TAG", "").encode()
        elif self.path == "/stats":
            body = json.dumps({"pid": os.getpid(), "requests": 0, "errors": 0,
                               "latencySum": 0.0, "buckets": [0], "bucketBounds": []}).encode()
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        return


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    arguments = parser.parse_args()
    starts = os.environ.get("TINY_STARTS")
    if starts:
        # One line per process start, so a test can see every replica that ever ran.
        with open(starts, "a") as journal:
            journal.write(f"{os.getpid()} {os.environ.get('TINY_TAG', '')}\n")
    hog = int(os.environ.get("TINY_HOG_MB", "0"))
    held = bytearray(hog * 1024 * 1024)
    for offset in range(0, len(held), 4096):
        held[offset] = 1  # touch every page: resident, not just reserved
    server = ThreadingHTTPServer(("127.0.0.1", arguments.port), Handler)
    server.daemon_threads = True
    if os.environ.get("TINY_IGNORE_TERM") == "1":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM,
                      lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever()


if __name__ == "__main__":
    main()
