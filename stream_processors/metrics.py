"""Prometheus metrics of the stream processors (served by :func:`skysentry.metrics.serve_metrics`).

Every window that enters a processor ends in exactly one outcome: ``inferred``, ``stale``
(skipped, older than the max age), ``gated`` (the motion / level gate said nothing changed) or
``dead_lettered``. ``windows_in - sum(outcomes)`` is what is in flight.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

WINDOWS_IN = Counter("skysentry_processor_windows_in_total", "windows (frames, audio windows) received",
                     ["modality"])
WINDOWS_OUT = Counter("skysentry_processor_windows_total", "windows by outcome",
                      ["modality", "outcome"])  # inferred | stale | gated | dead_lettered
SKIPPED = Counter("skysentry_processor_skipped_total", "windows skipped as stale (older than max age)",
                  ["modality"])
GATED = Counter("skysentry_processor_gated_total", "windows a gate kept from inference", ["modality", "gate"])
DEAD_LETTERED = Counter("skysentry_processor_dead_lettered_total", "inputs sent to the DLQ", ["modality", "reason"])
DETECTIONS = Counter("skysentry_processor_detections_total", "detections produced and acknowledged", ["modality"])
SUMMARIES = Counter("skysentry_processor_summaries_total", "score summaries produced", ["modality"])
BATCH_SIZE = Histogram("skysentry_processor_batch_size", "windows per inference batch", ["modality"],
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128))
INFERENCE_SECONDS = Histogram("skysentry_processor_inference_seconds", "model run time per batch", ["modality"],
                              buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
DECODE_SECONDS = Histogram("skysentry_processor_decode_seconds", "JPEG decode + letterbox time per batch",
                           ["modality"], buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1))
CAPTURE_TO_DETECTION = Histogram(
    "skysentry_processor_capture_to_detection_seconds",
    "capture time → detection acknowledged by Kafka", ["modality"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
SEND_RETRIES = Counter("skysentry_processor_send_retries_total", "output batches retried after a Kafka error",
                       ["modality"])
MODEL_INFO = Gauge("skysentry_processor_model_info", "1 for the model now serving", ["modality", "name", "version"])
MODEL_RELOADS = Counter("skysentry_processor_model_reloads_total", "model announcements handled",
                        ["modality", "result"])  # loaded | refused | ignored | invalid
ASSIGNED_PARTITIONS = Gauge("skysentry_processor_assigned_partitions", "input partitions this process owns",
                            ["modality"])
