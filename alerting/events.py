"""Lifecycle events on the ``alerts`` topic (CloudEvents structured JSON, key = fingerprint).

They go through the outbox like any notification — a pseudo-channel that cannot be muted —
so a crash between deciding and publishing neither loses nor doubles an event: the
CloudEvents ``id`` is the notification's idempotency key, identical on every retry and never
used for another event (it derives from the alert's ``alert_id``, see alerting/ids.py).
Consumers deduplicate by ``ce_id`` and group an incursion's events by ``alert_id``.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from alerting.channels.base import Channel, ChannelSettings, DeliveryError
from alerting.notification import Notification, iso
from alerting.state import AlertSnapshot
from skysentry.messages import Alert, encode_structured

ALERTS_CHANNEL = "_alerts"  # reserved name: configured channel names cannot start with "_"


class AlertsTopicChannel(Channel):
    TYPE = "kafka"

    def __init__(self, producer: AIOKafkaProducer, topic: str, source_name: str, *, timeout_s: float):
        super().__init__(ALERTS_CHANNEL, ChannelSettings(
            timeout=timeout_s, max_attempts=1_000_000, backoff_initial=0.5, backoff_max=30.0,
            breaker_failures=1_000_000, concurrency=8))
        self.producer = producer
        self.topic = topic
        self.source_name = source_name
        # Records handed to the client and not yet acknowledged, by idempotency key. The delivery
        # stage gives up on an attempt after its timeout, but the record stays in the client's
        # buffer and is written when the broker answers again: a retry that sent it anew wrote the
        # event twice (a 20 s broker freeze gave four copies of one firing). A retry waits for the
        # record already in flight instead, and sends again only once that one has failed.
        self._in_flight: dict[str, asyncio.Future] = {}

    async def send(self, n: Notification) -> None:
        key = n.idempotency_key
        sent = self._in_flight.get(key)
        if sent is None or (sent.done() and (sent.cancelled() or sent.exception() is not None)):
            value, headers = encode_structured(n.alert, source=self.source_name, id=key, time=n.decided_at)
            try:
                sent = await self.producer.send(self.topic, value=value, key=n.alert.fingerprint.encode(),
                                                headers=headers)
            except KafkaError as exc:
                raise DeliveryError(f"alerts topic {self.topic}: {type(exc).__name__}: {exc}") from None
            self._in_flight[key] = sent
        try:
            await asyncio.shield(sent)  # a timed-out attempt leaves the record in flight for the next one
        except KafkaError as exc:
            raise DeliveryError(f"alerts topic {self.topic}: {type(exc).__name__}: {exc}") from None
        self._in_flight.pop(key, None)


def ms_to_dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, timezone.utc)


def summary_of(a: AlertSnapshot, event: str, now_ms: int) -> str:
    """One sentence for people: what, where, seen by what, how sure."""
    what = a.label.capitalize()
    mods = " + ".join(a.modalities)
    if event == "resolved":
        return (f"{what} at site {a.site} no longer detected by {', '.join(a.sources)}; "
                f"last seen {iso(ms_to_dt(a.ms('last_seen_ms') or now_ms))}")
    if len(a.sources) > 1:
        said = (f"{what} at site {a.site} corroborated by {' and '.join(a.sources)} ({mods}), "
                f"confidence {a.max_score:.0%}")
    else:
        said = f"{what} confirmed at site {a.site} by {a.source} ({mods}), confidence {a.max_score:.0%}"
    if event == "repeat":  # what is known, not a claim about now
        return f"Still active: {said}; last seen {iso(ms_to_dt(a.ms('last_seen_ms') or now_ms))}"
    return said


def alert_of(a: AlertSnapshot, event: str, now_ms: int) -> Alert:
    """The contract view of an alert at one lifecycle event."""
    resolved = event == "resolved"
    starts_ms, last_seen_ms = a.ms("starts_ms") or now_ms, a.ms("last_seen_ms") or now_ms
    # Capture times are the senders' clocks (up to max_clock_skew ahead), the resolve time is
    # Redis's: an alert never ends before it started or was last seen.
    ends_ms = max(now_ms, starts_ms, last_seen_ms)
    return Alert(
        fingerprint=a.fp, alert_id=a.alert_id, event=event,  # type: ignore[arg-type]
        status="resolved" if resolved else "firing",
        severity=a.severity, site=a.site, source=a.source, label=a.label,  # type: ignore[arg-type]
        modalities=a.modalities, max_score=min(1.0, a.max_score),  # type: ignore[arg-type]
        starts_at=ms_to_dt(starts_ms), last_seen_at=ms_to_dt(last_seen_ms),
        ends_at=ms_to_dt(ends_ms) if resolved else None, detection_ids=a.detection_ids,
        summary=summary_of(a, event, now_ms))
