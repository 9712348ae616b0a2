"""Alerting's Prometheus metrics (served by :func:`skysentry.metrics.serve_metrics`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

# outcome: fired corroborated refresh pending replay stale (the confirmation's), or skipped before it:
# summary, not_alerting_label (a class seen that is not in alerting.alert_labels), below_threshold, too_old
DETECTIONS = Counter("skysentry_alerting_detections", "Detections read, by what became of them", ["outcome"])
INVALID = Counter("skysentry_alerting_invalid_records", "Records on `detections` sent to the DLQ")
DEDUP_HITS = Counter("skysentry_alerting_dedup_hits", "Detections that did not make a new alert",
                     ["reason"])  # replay (seen before) | active_alert (absorbed by a firing alert)
ALERTS_FIRING = Gauge("skysentry_alerting_alerts_firing", "Alerts firing now (all replicas)")
RESOLVES_DEFERRED = Counter("skysentry_alerting_resolves_deferred", "Resolve checks put off because detections "
                            "up to the resolve time were not all read yet (consumer lag, restart, rebalance), "
                            "or a source's processor has not reported up to it yet")
STALE = Counter("skysentry_alerting_alerts_stale", "Firing alerts that went stale: a source's processor stopped "
                "reporting (no summary, no detection for stale_after), so the alert neither resolves nor repeats")
READ_LAG = Gauge("skysentry_alerting_read_lag_seconds", "Now minus the watermark: detections written since then "
                 "may not be read yet, and resolves wait for them")
ALERT_EVENTS = Counter("skysentry_alerting_alert_events", "Lifecycle events decided", ["event"])
SUPPRESSED = Counter("skysentry_alerting_notifications_suppressed", "Notifications held back",
                     ["reason"])  # silenced | inhibited | acknowledged (repeats of an acknowledged alert)
SENT = Counter("skysentry_alerting_notifications_sent", "Notifications the channel confirmed", ["channel"])
FAILED = Counter("skysentry_alerting_notifications_failed", "Notifications dead-lettered after their last "
                 "attempt", ["channel"])
RETRIED = Counter("skysentry_alerting_notifications_retried", "Failed attempts that will be retried", ["channel"])
DELIVERY_LATENCY = Histogram("skysentry_alerting_delivery_latency_seconds",
                             "Decision (outbox write) to confirmed delivery", ["channel"], buckets=_LATENCY_BUCKETS)
DETECTION_TO_DELIVERY = Histogram("skysentry_alerting_detection_to_delivery_seconds",
                                  "Capture time of the newest detection to confirmed delivery of a firing "
                                  "notification", ["channel"], buckets=_LATENCY_BUCKETS)
BREAKER_OPEN = Gauge("skysentry_alerting_breaker_open", "1 while the channel's circuit breaker is open", ["channel"])
OUTBOX_DEPTH = Gauge("skysentry_alerting_outbox_depth", "Notifications waiting or in flight", ["channel"])
