"""The console's Prometheus metrics, on the metrics port every service has (``metrics:``
section; /metrics, /livez, /readyz by :func:`skysentry.metrics.serve_metrics`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

BROWSERS = Gauge("skysentry_console_browsers", "Event streams open now")
FRAMES = Counter("skysentry_console_frames_total", "Frames read from the frames topic")
SKIPS = Counter("skysentry_console_frame_skips_total", "Times the wall fell max_frame_age behind and jumped to the end")
INVALID = Counter("skysentry_console_invalid_records_total", "Records the console could not read (not the contract)")
WRITES = Counter("skysentry_console_writes_total", "Writes made from the console", ["kind"])  # ack | silence | expire
REFUSED = Counter("skysentry_console_refused_total", "Requests refused", ["reason"])  # unauthenticated | csrf | cross_origin | login | host
