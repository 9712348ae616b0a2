"""After Redis lost its data, rebuild the open alerts from the ``alerts`` topic (the log of every
lifecycle event) instead of starting blind — blind, a drone still in the sky fired a second
alert under a new id and the first one never resolved.

Detection: every replica keeps a marker key (``P:marker``) in Redis. It is written at start;
Redis that comes back without it has lost what it held (or never held anything: then the topic
has no open alert and nothing is rebuilt). An alert is open when the last event of its
fingerprint on the topic is not ``resolved``; it is written back as firing with its
``alert_id``, labels, sources and lineage, its ``alerts``-topic sequence (so the resolve gets
the next key) and, for the routes that match it, the notification state of one told
firing-plus-repeats (assumed delivered: what sat in the lost outbox is not on the topic and
cannot be rebuilt). A rebuilt alert resolves ``resolve_after`` after its next detection, or
after its sources are reported on again (``stale_after``), like any other.
"""

from __future__ import annotations

import logging

import redis.asyncio as aioredis
from aiokafka import TopicPartition

from alerting.config import AlertingSettings
from alerting.routing import Router
from alerting.state import AlertSnapshot, fingerprint
from skysentry.bus import make_consumer
from skysentry.config import KafkaSettings
from skysentry.messages import Alert, ContractError, decode_structured

log = logging.getLogger(__name__)

# Write one rebuilt alert unless the fingerprint already has one (another replica was quicker,
# or a detection opened a new incarnation meanwhile). ARGV: prefix, fp, site, last_seen_ms,
# detection ids (comma-separated, newest last), source fingerprints (comma), then field/value pairs.
REBUILD = r"""
local P, fp, site = ARGV[1], ARGV[2], ARGV[3]
local ak = P .. ':alert:' .. fp
if redis.call('EXISTS', ak) == 1 then return 0 end
local fields = {}
for i = 7, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', ak, unpack(fields))
for d in string.gmatch(ARGV[5], '[^,]+') do redis.call('LPUSH', P .. ':dets:' .. fp, d) end
for s in string.gmatch(ARGV[6], '[^,]+') do redis.call('SET', P .. ':src:' .. s, fp) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', P .. ':site:' .. site, tonumber(ARGV[4]), fp)
redis.call('ZADD', P .. ':firing', now, fp)
redis.call('ZADD', P .. ':timers', now, fp)
return 1
"""


def marker_key(prefix: str) -> str:
    return f"{prefix}:marker"


async def read_open_alerts(kafka: KafkaSettings, topic: str) -> dict[str, tuple[Alert, int, list[str]]]:
    """Fingerprint → (its last event, how many events its incarnation put on the topic, the
    modalities of its firing), for the fingerprints whose last event on ``topic`` is not
    ``resolved``."""
    consumer = make_consumer(kafka, group_id=None)
    await consumer.start()
    last: dict[str, tuple[Alert, int, list[str]]] = {}
    try:
        await consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public refresh
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not parts:
            return {}
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await consumer.end_offsets(parts)
        while any([await consumer.position(tp) < ends[tp] for tp in parts]):
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for r in records:
                    try:
                        _, alert = decode_structured(r.value, Alert)
                    except ContractError:
                        continue
                    prev = last.get(alert.fingerprint)
                    if prev is not None and prev[0].alert_id == alert.alert_id:
                        last[alert.fingerprint] = (alert, prev[1] + 1, prev[2])
                    else:
                        last[alert.fingerprint] = (alert, 1, list(alert.modalities))
    finally:
        await consumer.stop()
    return {fp: v for fp, v in last.items() if v[0].event != "resolved"}


async def rebuild_if_lost(redis: aioredis.Redis, settings: AlertingSettings, router: Router, kafka: KafkaSettings,
                          topic: str, instance: str) -> int | None:
    """Rebuild the open alerts if Redis has lost its marker; return how many were written
    (None: Redis had its data, nothing to do). Writes the marker either way."""
    prefix = settings.key_prefix
    if await redis.exists(marker_key(prefix)):
        return None
    open_alerts = await read_open_alerts(kafka, topic)
    script = redis.register_script(REBUILD)
    written = 0
    for fp, (a, events, fired_with) in open_alerts.items():
        # The contract names the source that confirmed it, and its firing that source's modality
        # unless it was corroborated before it fired. Rebuilt with the one source, a corroborating
        # source of the other modality joins it again by site when its detections come (the
        # observe script lets a firing alert with fewer sources than modalities take one back),
        # instead of opening an alert of its own.
        modalities = fired_with if len(fired_with) == 1 else a.modalities
        seen_ms = int(a.last_seen_at.timestamp() * 1000)
        raw = {"fp": fp, "alert_id": a.alert_id or "", "inc": 1, "status": "firing", "site": a.site,
               "source": a.source, "label": a.label, "sources": a.source,
               "sfps": fingerprint(a.site, a.source, a.label),
               "modalities": ",".join(modalities), "severity": a.severity, "max_score": a.max_score,
               "starts_ms": int(a.starts_at.timestamp() * 1000), "last_seen_ms": seen_ms, "idx_ms": seen_ms,
               "version": 1, "evidence": "", "rebuilt": 1,
               "k:seq": events, "k:sev": a.severity}
        snap = AlertSnapshot({k: str(v) for k, v in raw.items()})
        t = await redis.time()
        now = int(t[0]) * 1000 + int(t[1]) // 1000
        raw.update({"last_obs_ms": now, "created_ms": now, "k:last_ms": now})
        for route in router.match(snap.labels()):  # assumed told: firing plus the repeats the topic shows
            raw.update({f"n:{route.id}:seq": events, f"n:{route.id}:last_ms": now, f"n:{route.id}:sev": a.severity})
        args: list = [prefix, fp, a.site, seen_ms, ",".join(a.detection_ids), raw["sfps"]]
        for k, v in raw.items():
            args += [k, v]
        written += int(await script(args=args))
    await redis.set(marker_key(prefix), instance)
    if written:
        log.warning("Redis had lost its data (no marker): rebuilt %d open alert(s) from the %s topic; what was "
                    "waiting in the outbox is gone", written, topic, extra={"fields": {"rebuilt": written}})
    return written
