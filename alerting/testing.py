"""A real HTTP server on loopback that records what it receives: it stands in for Slack,
Twilio and webhook receivers in tests, benches and demos (DESIGN §8 — no mocks).

    with RecordingReceiver() as rx:
        rx.respond("/hook", [500])          # this path now answers 500, always
        ... url = rx.url("/hook") ...
        got = rx.wait_for(1, "/slack", timeout=10)

Runs in its own thread (``ThreadingHTTPServer``), so it answers while the test's event loop
is busy and serves subprocesses as well.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    at: float  # time.time() when the request was complete
    status: int  # what we answered

    def json(self):
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}


class RecordingReceiver:
    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self._lock = threading.Condition()
        self._received: list[Received] = []
        self._plans: dict[str, tuple[list[int], float]] = {}
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, delay = receiver._next_status(self.path)
                if delay:
                    time.sleep(delay)
                reply = b'{"ok": true}' if status < 400 else b'{"error": "simulated"}'
                with receiver._lock:
                    receiver._received.append(Received("POST", self.path, {k.lower(): v for k, v in self.headers.items()},
                                                       body, time.time(), status))
                    receiver._lock.notify_all()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            do_PUT = do_POST

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="recording-receiver", daemon=True)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> "RecordingReceiver":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "RecordingReceiver":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    # ------------------------------------------------------------------ behaviour

    def respond(self, path_prefix: str, statuses: Sequence[int], delay_s: float = 0.0) -> None:
        """Answer requests under ``path_prefix`` with these statuses in turn (the last one
        repeats), after ``delay_s``. Default for unplanned paths: 200 at once."""
        with self._lock:
            self._plans[path_prefix] = (list(statuses), delay_s)

    def _next_status(self, path: str) -> tuple[int, float]:
        with self._lock:
            for prefix, (statuses, delay) in self._plans.items():
                if path.startswith(prefix):
                    status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
                    return status, delay
        return 200, 0.0

    # ------------------------------------------------------------------ what arrived

    def requests(self, path_prefix: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self._received if path_prefix is None or r.path.startswith(path_prefix)]

    def wait_for(self, count: int, path_prefix: str | None = None, timeout: float = 10.0) -> list[Received]:
        """Block until at least ``count`` requests arrived (under the prefix); return them all.
        Raises TimeoutError saying how many did arrive."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                got = [r for r in self._received if path_prefix is None or r.path.startswith(path_prefix)]
                left = deadline - time.monotonic()
                if len(got) >= count:
                    return got
                if left <= 0:
                    raise TimeoutError(f"{len(got)} of {count} request(s) to {path_prefix or '/'} "
                                       f"within {timeout:g} s")
                self._lock.wait(left)

    async def await_for(self, count: int, path_prefix: str | None = None, timeout: float = 10.0) -> list[Received]:
        """:meth:`wait_for` without blocking the event loop."""
        return await asyncio.to_thread(self.wait_for, count, path_prefix, timeout)


def json_log_lines(log) -> list[dict]:
    """The JSON records of a service's log file (``setup_logging``'s format); other lines skipped."""
    out = []
    for line in Path(log).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out
