"""Prometheus metrics: every service exposes ``/metrics`` (DESIGN §9).

Metrics are module-level objects in the service that owns them; this module only starts the
HTTP endpoint, on the configured port (0 picks a free one, which is returned and logged).
"""

from __future__ import annotations

import logging

from prometheus_client import start_http_server

from skysentry.config import MetricsSettings

log = logging.getLogger(__name__)


def serve_metrics(settings: MetricsSettings) -> int | None:
    """Start the /metrics endpoint in a background thread; return its port (None if disabled)."""
    if not settings.enabled:
        return None
    server, _thread = start_http_server(settings.port, addr=settings.host)
    port = server.server_port
    log.info("metrics on http://%s:%d/metrics", settings.host, port)
    return port
