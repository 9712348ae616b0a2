"""The health page's data: each service up or down, consumer lag per group, windows/s and the
model serving in each processor — from the services' own probes and metrics, and from Kafka.

Every ``health_interval`` each configured service (``console.services``: name → base URL of its
metrics port) is asked for ``/livez`` (up: the event loop runs), ``/readyz`` (ready, with the
lines saying what is missing) and ``/metrics`` (read with prometheus_client's parser):
windows/s is the rate of ``skysentry_processor_windows_total`` between two probes, the model is
the ``skysentry_processor_model_info`` series whose value is 1 (stream_processors/metrics.py).
Lag per group is Kafka's: the end offset of each partition the group has committed on, minus
its committed offset, summed (the way KEDA's Kafka scaler counts it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import asdict, dataclass, field

import httpx
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client.parser import text_string_to_metric_families

from console.live import Hub
from skysentry.bus import client_options, make_consumer
from skysentry.config import KafkaSettings

log = logging.getLogger(__name__)

WINDOWS = "skysentry_processor_windows_total"
MODEL_INFO = "skysentry_processor_model_info"
MAX_GROUPS = 50


@dataclass
class ServiceHealth:
    name: str
    url: str
    up: bool = False  # /livez answered 200
    ready: bool = False  # /readyz answered 200
    detail: list[str] = field(default_factory=list)  # /readyz's lines, or why it could not be reached
    models: list[dict] = field(default_factory=list)  # [{modality, name, version}]
    windows_per_s: float | None = None
    checked_at: float | None = None
    _windows: tuple[float, float] | None = None  # (monotonic, total) at the previous probe

    def view(self) -> dict:
        d = asdict(self)
        d.pop("_windows")
        return d


@dataclass
class GroupLag:
    group: str
    lag: int
    topics: dict[str, int]  # topic → lag
    partitions: int


def read_metrics(text: str) -> tuple[float | None, list[dict]]:
    """(windows counted so far, the models serving) from a Prometheus exposition."""
    windows: float | None = None
    models = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == WINDOWS:
                windows = (windows or 0.0) + sample.value
            elif sample.name == MODEL_INFO and sample.value == 1:
                models.append({k: sample.labels.get(k) for k in ("modality", "name", "version")})
    return windows, sorted(models, key=lambda m: (m["modality"] or "", m["name"] or ""))


class HealthMonitor:
    def __init__(self, services: dict[str, str], kafka: KafkaSettings, hub: Hub, *, client_id: str,
                 interval_s: float = 5.0, timeout_s: float = 2.0, groups: list[str] | None = None):
        self.services = {name: ServiceHealth(name, url) for name, url in services.items()}
        self.kafka = kafka.model_copy(update={"client_id": client_id})
        self.hub = hub
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.groups = groups
        self.lag: list[GroupLag] = []
        self.kafka_error: str | None = "not checked yet"
        self.rounds = 0

    def view(self) -> dict:
        processors = [{"service": s.name, "modality": m["modality"], "name": m["name"], "version": m["version"],
                       "windows_per_s": s.windows_per_s}
                      for s in self.services.values() for m in s.models]
        return {"services": [s.view() for s in self.services.values()], "processors": processors,
                "lag": [asdict(g) for g in self.lag], "kafka_error": self.kafka_error, "rounds": self.rounds}

    async def run(self, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False) as http:
            while not stop.is_set():
                await asyncio.gather(*(self._probe(http, s) for s in self.services.values()),
                                     self._lag(), return_exceptions=True)
                self.rounds += 1
                self.hub.publish(("health",), "health", self.view())
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.interval_s)

    async def _probe(self, http: httpx.AsyncClient, s: ServiceHealth) -> None:
        try:
            live, ready, metrics = await asyncio.gather(http.get(f"{s.url}/livez"), http.get(f"{s.url}/readyz"),
                                                        http.get(f"{s.url}/metrics"))
        except httpx.HTTPError as exc:
            s.up = s.ready = False
            s.detail = [f"not reachable: {type(exc).__name__}"]
            s.windows_per_s, s._windows = None, None
            s.checked_at = time.time()
            return
        s.up, s.ready = live.status_code == 200, ready.status_code == 200
        s.detail = (ready.text.strip().splitlines()[1:] if ready.status_code in (200, 503)
                    else [f"/readyz answered {ready.status_code}"])
        s.checked_at = time.time()
        if metrics.status_code != 200:
            return
        try:
            total, s.models = read_metrics(metrics.text)
        except ValueError as exc:  # not a Prometheus exposition
            s.detail.append(f"unreadable /metrics: {exc}")
            return
        now = time.monotonic()
        if total is not None and s._windows is not None and now > s._windows[0] and total >= s._windows[1]:
            s.windows_per_s = round((total - s._windows[1]) / (now - s._windows[0]), 2)
        s._windows = (now, total) if total is not None else None

    async def _lag(self) -> None:
        try:
            self.lag = await asyncio.wait_for(consumer_lag(self.kafka, self.groups), self.interval_s + 5)
            self.kafka_error = None
        except Exception as exc:  # noqa: BLE001 - the page says Kafka is not readable, and why
            self.kafka_error = f"{type(exc).__name__}: {str(exc)[:200]}"


async def consumer_lag(kafka: KafkaSettings, groups: list[str] | None = None) -> list[GroupLag]:
    """Lag of each group (``groups``, or every group the broker lists, at most 50): per
    partition it has committed on, end offset minus committed offset."""
    admin = AIOKafkaAdminClient(**client_options(kafka))
    consumer = make_consumer(kafka, group_id=None)
    await admin.start()
    try:
        await consumer.start()
        if groups is None:
            groups = sorted(g[0] for g in await admin.list_consumer_groups())[:MAX_GROUPS]
        committed = {}
        for group in groups:
            committed[group] = {tp: meta.offset for tp, meta in (await admin.list_consumer_group_offsets(group)).items()
                                if meta is not None and meta.offset >= 0}
        tps = sorted({tp for offsets in committed.values() for tp in offsets})
        ends = await consumer.end_offsets(tps) if tps else {}
        out = []
        for group in groups:
            topics: dict[str, int] = {}
            for tp, offset in committed[group].items():
                topics[tp.topic] = topics.get(tp.topic, 0) + max(0, ends.get(tp, offset) - offset)
            out.append(GroupLag(group, sum(topics.values()), topics, len(committed[group])))
        return out
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()
        with contextlib.suppress(Exception):
            await admin.close()

