"""Prometheus metrics and health probes: every service serves ``/metrics``, ``/livez`` and
``/readyz`` on one port (DESIGN §9; the Kubernetes chart probes the last two).

Metrics are module-level objects in the service that owns them; this module starts the HTTP
endpoint, on the configured port (0 picks a free one, which is returned and logged).
``/metrics`` is prometheus_client's own WSGI app, unchanged (same bytes, content negotiation,
``name[]`` filters); the two probes are answered beside it:

* ``/livez`` — the event loop is alive: :meth:`Health.start_heartbeat` (called by
  :func:`skysentry.service.run_until_signalled`, i.e. in every service's loop) stamps the time
  every ``interval_s``; a stamp older than ``stale_after_s`` means the loop is blocked or dead,
  and ``/livez`` answers 503. Before any loop is watched it answers 200 (a process starting).
* ``/readyz`` — the loop runs and every readiness condition the service declared is met (a
  processor: its model warmed up and its group assignment received; alerting: its consumer
  started and its assignment received). A service that declares none (the producers) is ready
  once its loop runs.

Both answer ``text/plain``: ``ok`` or ``fail``, then one line per check, so
``curl :PORT/readyz`` says what is missing.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import REGISTRY, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from skysentry.config import MetricsSettings

log = logging.getLogger(__name__)

LIVEZ, READYZ = "/livez", "/readyz"


class Health:
    """Liveness (an event-loop heartbeat) and readiness (named conditions) of one process.

    Thread-safe: the loop writes, the HTTP threads read."""

    def __init__(self, stale_after_s: float = 10.0) -> None:
        self.stale_after_s = stale_after_s
        self._lock = threading.Lock()
        self._beat: float | None = None  # time.monotonic() of the loop's last heartbeat
        self._conditions: dict[str, tuple[bool, str]] = {}

    # -- readiness -----------------------------------------------------------------------

    def require(self, *names: str) -> None:
        """Declare readiness conditions; each is unmet until :meth:`set` says otherwise."""
        with self._lock:
            for name in names:
                self._conditions[name] = (False, "not yet")

    def set(self, name: str, ok: bool, detail: str = "") -> None:
        with self._lock:
            self._conditions[name] = (bool(ok), detail)

    def readiness(self) -> tuple[bool, list[str]]:
        """Ready: the loop has run (its first heartbeat: by then the service declared its
        conditions) and every declared condition is met."""
        with self._lock:
            conditions = dict(self._conditions)
            started = self._beat is not None
        lines = [f"{'ok' if started else 'fail'} event-loop: {'running' if started else 'not started'}"]
        lines += [f"{'ok' if ok else 'fail'} {name}{': ' + detail if detail else ''}"
                  for name, (ok, detail) in sorted(conditions.items())]
        return started and all(ok for ok, _ in conditions.values()), lines

    # -- liveness ------------------------------------------------------------------------

    def beat(self) -> None:
        with self._lock:
            self._beat = time.monotonic()

    def start_heartbeat(self, interval_s: float = 1.0) -> asyncio.Task:
        """Stamp the heartbeat from the running loop every ``interval_s`` (cancel the task, or
        let the loop end, to stop). A loop blocked by a synchronous call stops stamping."""

        async def heartbeat() -> None:
            while True:
                self.beat()
                await asyncio.sleep(interval_s)

        # the first stamp comes from the task, once the loop runs it: after the synchronous start
        # of the service (which declares its readiness conditions), so /readyz is never 200 early
        return asyncio.get_running_loop().create_task(heartbeat(), name="health-heartbeat")

    def liveness(self) -> tuple[bool, list[str]]:
        with self._lock:
            beat = self._beat
        if beat is None:
            return True, ["ok event-loop: not watched yet (starting)"]
        age = time.monotonic() - beat
        ok = age <= self.stale_after_s
        return ok, [f"{'ok' if ok else 'fail'} event-loop: last heartbeat {age:.1f} s ago "
                    f"(stale after {self.stale_after_s:g} s)"]

    def reset(self) -> None:
        """Forget the conditions and the heartbeat (a process that runs several services in
        turn, such as a test session)."""
        with self._lock:
            self._beat = None
            self._conditions.clear()


#: The process's health: the services declare and set their readiness here.
HEALTH = Health()


def make_app(health: Health = HEALTH, registry=REGISTRY):
    """The WSGI app: the probes, and prometheus_client's app for everything else (``/metrics``)."""
    metrics_app = make_wsgi_app(registry)

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path in (LIVEZ, READYZ):
            ok, lines = health.liveness() if path == LIVEZ else health.readiness()
            body = ("\n".join(["ok" if ok else "fail", *lines]) + "\n").encode()
            start_response("200 OK" if ok else "503 Service Unavailable",
                           [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body))),
                            ("Cache-Control", "no-store")])
            return [body] if environ.get("REQUEST_METHOD") != "HEAD" else [b""]
        return metrics_app(environ, start_response)

    return app


class _SilentHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        """Probes every few seconds would flood the log."""


def start_server(host: str, port: int, health: Health = HEALTH, registry=REGISTRY):
    """Serve the app in a daemon thread; return the server (``server_port``, ``shutdown()``)."""
    family, _, _, _, sockaddr = next(iter(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)))

    class Server(ThreadingWSGIServer):
        address_family = family

    httpd = make_server(sockaddr[0], port, make_app(health, registry), Server, handler_class=_SilentHandler)
    threading.Thread(target=httpd.serve_forever, name="metrics-http", daemon=True).start()
    return httpd


def serve_metrics(settings: MetricsSettings) -> int | None:
    """Start /metrics, /livez and /readyz in a background thread; return the port (None if disabled)."""
    if not settings.enabled:
        return None
    server = start_server(settings.host, settings.port)
    port = server.server_port
    log.info("metrics on http://%s:%d/metrics (probes: %s, %s)", settings.host, port, LIVEZ, READYZ)
    return port
