"""The alerts page's data: firing and recent alerts as cards, read through the alerting's own
modules, and the two writes the console makes (acknowledge, silence).

    Redis (alerting/state.py: AlertState.firing, load)  ─┐
    alerts topic (lifecycle events: the timeline)       ─┼─▶ AlertBook ─▶ cards ─▶ /api/alerts, SSE "alert"
    evidence store (alerting/evidence.py)               ─┤
    detections read by the wall (lineage → input ids)   ─┘

A card: id (the incarnation's ``alert_id``), fingerprint, status (``firing``, ``stale`` — firing
but a source stopped reporting — or ``resolved``), acknowledgement, severity, sources, lineage
(alert → detection ids → input event ids, as far as the console has read those detections, plus
the evidence detection's, which the alert names itself), timeline (its events on the alerts
topic, when it went stale, was corroborated, acknowledged) and its snapshot: the boxed frame, or
for audio the spectrogram, by a signed link when the evidence secret is set (else by path,
served to a session).

Redis is polled every ``alerts_poll`` (one ZRANGE and one pipelined HGETALL per firing alert); a
card is pushed only when it changed. The alerts topic is read without a group from ``history``
ago, so recent alerts survive a console restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from datetime import datetime, timezone

from aiokafka import TopicPartition
from redis.exceptions import RedisError

from alerting.acks import AckOutcome, AckStore, ack_of
from alerting.evidence import FILES, META, EvidenceSettings, EvidenceStore, signed_url
from alerting.silences import Silence, SilenceStore
from alerting.state import AlertSnapshot, AlertState
from console.live import Hub, Lineage, assign_all, keep_reading
from skysentry.bus import make_consumer
from skysentry.config import KafkaSettings
from skysentry.messages import Alert, ContractError, decode_structured

log = logging.getLogger(__name__)

SCOPES = ("source", "site", "label")
EVENTS_KEPT = 50  # timeline entries per alert from the topic


def iso_ms(ms: int | None) -> str | None:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat() if ms is not None else None


def matcher(name: str, value: str) -> str:
    """``name=value``, quoted when the value would read as another operator or lose spaces."""
    if value[:1] in "~=\"'" or value != value.strip() or not value:
        return f'{name}="{value}"'
    return f"{name}={value}"


def scope_matchers(scope: str, card: dict) -> list[str]:
    """The silence an alert card's button makes: its source, its site, or its label (everywhere)."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}")
    return [matcher(scope, card[scope])]


class EvidenceLinks:
    """Where an alert's evidence set is, and links to its files (cached: sets never change)."""

    def __init__(self, settings: EvidenceSettings, store: EvidenceStore, link_ttl_s: float):
        self.settings = settings
        self.store = store
        self.link_ttl_s = link_ttl_s
        self._found: OrderedDict[str, tuple[str, list[str]] | None] = OrderedDict()
        self._missed: dict[str, float] = {}

    def _find(self, alert_id: str, detection_id: str | None) -> tuple[str, list[str]] | None:
        """(set prefix, files) of the alert's evidence: the named detection's set, else the newest
        complete set stored for the alert (blocking: a thread). Lists the alert's folder only."""
        if detection_id:
            meta = self.store.meta(f"{alert_id}/{detection_id}")
            if meta:
                return f"{alert_id}/{detection_id}", list(meta.get("files", []))
        try:
            folders = self.store.fs.ls(f"{self.store.root}/{alert_id}", detail=False)
        except (FileNotFoundError, NotADirectoryError):
            return None
        best: tuple[str, dict] | None = None
        for path in folders:
            prefix = f"{alert_id}/{str(path).rstrip('/').rsplit('/', 1)[-1]}"
            try:
                meta = self.store.meta(prefix)
            except ValueError:  # not a set's folder (a temporary file)
                continue
            if meta and (best is None or meta.get("stored_at", "") >= best[1].get("stored_at", "")):
                best = (prefix, meta)
        return (best[0], list(best[1].get("files", []))) if best else None

    async def media(self, alert_id: str, detection_id: str | None, *, age_s: float = 0.0) -> dict | None:
        """{file field: URL} of the alert's stored evidence, or None (nothing stored yet). A young
        alert's store is looked at again soon (its evidence is being written), an old one's rarely."""
        key = f"{alert_id}/{detection_id}"
        if key not in self._found:
            if time.monotonic() - self._missed.get(key, 0.0) < (0.5 if age_s < 60 else 10.0):
                return None
            try:
                found = await asyncio.to_thread(self._find, alert_id, detection_id)
            except Exception as exc:  # noqa: BLE001 - a store that cannot be read shows no picture
                log.warning("evidence store not readable: %s: %s", type(exc).__name__, str(exc)[:200])
                found = None
            if found is None:
                if len(self._missed) > 5000:
                    self._missed.clear()
                self._missed[key] = time.monotonic()
                return None
            self._found[key] = found
            while len(self._found) > 2000:
                self._found.popitem(last=False)
        prefix, files = self._found[key]
        secret = self.settings.secret.get_secret_value() if self.settings.secret is not None else None
        # links expire on a 10-minute grid, so a card does not change (and is not pushed again) each poll
        expires = int((time.time() // 600 + 1) * 600 + self.link_ttl_s)
        out = {}
        for name in files:
            if name in FILES:
                k = f"{prefix}/{name}"
                out[FILES[name][1]] = signed_url("", secret, k, expires) if secret else f"/evidence/{k}"
        return out or None


class AlertBook:
    def __init__(self, state: AlertState, silences: SilenceStore, acks: AckStore, evidence: EvidenceLinks,
                 lineage: Lineage, hub: Hub, *, recent_max: int = 100):
        self.state = state
        self.silences = silences
        self.acks = acks
        self.evidence = evidence
        self.lineage = lineage
        self.hub = hub
        self.recent_max = recent_max
        self.cards: dict[str, dict] = {}  # alert_id → card
        self.events: OrderedDict[str, dict] = OrderedDict()  # alert_id → {"alert": latest Alert, "timeline": [...]}
        self.redis_error: str | None = "not read yet"
        self.topic_connected = False

    # ------------------------------------------------------------------ cards

    async def card(self, snap: AlertSnapshot | None, alert: Alert | None) -> dict:
        """One card from the Redis snapshot (current) and/or the latest topic event (history)."""
        alert_id = snap.alert_id if snap is not None else alert.alert_id  # type: ignore[union-attr]
        if snap is not None:
            raw = snap.raw
            status = snap.status
            if status == "firing" and raw.get("stale_ms"):
                status = "stale"
            ack = ack_of(snap)
            evidence = snap.evidence or {}
            detection_ids = snap.detection_ids
            card = {"alert_id": alert_id, "fingerprint": snap.fp, "status": status, "severity": snap.severity,
                    "site": snap.site, "source": snap.source, "sources": snap.sources, "label": snap.label,
                    "modalities": snap.modalities, "max_score": snap.max_score,
                    "starts_at": iso_ms(snap.ms("starts_ms")), "last_seen_at": iso_ms(snap.ms("last_seen_ms")),
                    "ends_at": iso_ms(snap.ms("ends_ms")), "summary": alert.summary if alert else None,
                    "acknowledged": ack is not None,
                    "ack": {"by": ack.by, "at": iso_ms(ack.at_ms), "comment": ack.comment} if ack else None}
        else:
            assert alert is not None
            evidence, detection_ids = {}, alert.detection_ids
            card = {"alert_id": alert_id, "fingerprint": alert.fingerprint, "status": alert.status,
                    "severity": alert.severity, "site": alert.site, "source": alert.source,
                    "sources": [alert.source], "label": alert.label, "modalities": list(alert.modalities),
                    "max_score": alert.max_score, "starts_at": alert.starts_at.isoformat(),
                    "last_seen_at": alert.last_seen_at.isoformat(),
                    "ends_at": alert.ends_at.isoformat() if alert.ends_at else None, "summary": alert.summary,
                    "acknowledged": False, "ack": None}
        confirmed = self.events.get(alert_id, {}).get("confirmed", [])
        card["lineage"] = self._lineage(_merge(confirmed, detection_ids), evidence)
        card["evidence_detection_id"] = evidence.get("detection_id")
        started = datetime.fromisoformat(card["starts_at"]).timestamp() if card["starts_at"] else time.time()
        media = await self.evidence.media(alert_id, evidence.get("detection_id"),
                                          age_s=time.time() - started) if alert_id else None
        card["evidence"] = media
        card["snapshot"] = (media or {}).get("snapshot") or (media or {}).get("spectrogram")
        card["timeline"] = self._timeline(alert_id, snap)
        labels = snap.labels() if snap is not None else {
            "site": (card["site"],), "source": tuple(card["sources"]), "label": (card["label"],),
            "severity": (card["severity"],), "modality": tuple(card["modalities"]), "fingerprint": (card["fingerprint"],)}
        silence = await self.silences.silencing(labels) if card["status"] != "resolved" else None
        card["silenced_by"] = silence.id if silence else None
        return card

    def _lineage(self, detection_ids: list[str], evidence: dict) -> list[dict]:
        out = []
        for det in detection_ids:
            known = self.lineage.get(det)
            if known is None and evidence.get("detection_id") == det:
                known = {"detection_id": det, "input_event_id": evidence.get("input_event_id"),
                         "source": evidence.get("source"), "captured_at": evidence.get("captured_at"),
                         "score": evidence.get("score"), "model": evidence.get("model")}
            out.append(known or {"detection_id": det, "input_event_id": None})
        return out

    def _timeline(self, alert_id: str, snap: AlertSnapshot | None) -> list[dict]:
        entries = list(self.events.get(alert_id, {}).get("timeline", []))
        if snap is not None:
            for name, event, detail in (("created_ms", "confirmed", "confirmed by the alerting"),
                                        ("corroborated_ms", "corroborated", "another modality of the site agreed"),
                                        ("stale_ms", "stale", "a source's processor stopped reporting"),
                                        ("ack_ms", "acknowledged", f"by {snap.raw.get('ack_by', '?')}")):
                if snap.ms(name) is not None:
                    entries.append({"at": iso_ms(snap.ms(name)), "event": event, "detail": detail})
        return sorted(entries, key=lambda e: e["at"] or "")

    def _put(self, card: dict) -> None:
        """Keep the card; push it to the browsers when it changed."""
        if self.cards.get(card["alert_id"]) != card:
            self.cards[card["alert_id"]] = card
            self.hub.publish(("alert", card["alert_id"]), "alert", card)

    def list(self) -> list[dict]:
        """Firing and stale first (newest first), then recent ones (latest ended first)."""
        active = [c for c in self.cards.values() if c["status"] != "resolved"]
        done = [c for c in self.cards.values() if c["status"] == "resolved"]
        active.sort(key=lambda c: c["starts_at"] or "", reverse=True)
        done.sort(key=lambda c: c["ends_at"] or c["last_seen_at"] or "", reverse=True)
        return active + done[:self.recent_max]

    def _prune(self) -> None:
        done = sorted((c for c in self.cards.values() if c["status"] == "resolved"),
                      key=lambda c: c["ends_at"] or c["last_seen_at"] or "", reverse=True)
        for c in done[self.recent_max:]:
            self.cards.pop(c["alert_id"], None)
        while len(self.events) > 4 * self.recent_max + 100:
            self.events.popitem(last=False)

    # ------------------------------------------------------------------ Redis

    async def refresh(self) -> None:
        """One look at Redis: every firing alert, and those that just left the firing set."""
        snaps = await self._firing()
        seen = set()
        for snap in snaps:
            seen.add(snap.alert_id)
            self._put(await self.card(snap, self._latest(snap.alert_id)))
        for alert_id, card in list(self.cards.items()):
            if card["status"] != "resolved" and alert_id not in seen:
                snap = await self.state.load(card["fingerprint"])
                if snap is not None and snap.alert_id == alert_id:
                    self._put(await self.card(snap, self._latest(alert_id)))
                elif (alert := self._latest(alert_id)) is not None:
                    self._put(await self.card(None, alert))
                else:  # gone from Redis (expired) and never seen on the topic
                    self._put({**card, "status": "resolved"})
        self._prune()
        self.redis_error = None

    async def _firing(self) -> list[AlertSnapshot]:
        """The firing alerts with their lineage (AlertState.firing reads the hashes only), in one
        round trip."""
        st = self.state
        fps = await st.redis.zrange(st.key("firing"), 0, -1)
        if not fps:
            return []
        async with st.redis.pipeline(transaction=False) as pipe:
            for fp in fps:
                pipe.hgetall(st.key("alert", fp))
                pipe.lrange(st.key("dets", fp), 0, st.settings.lineage_max - 1)
            out = await pipe.execute()
        return [AlertSnapshot(raw, list(reversed(dets))) for raw, dets in zip(out[::2], out[1::2]) if raw]

    async def poll(self, stop: asyncio.Event, interval_s: float) -> None:
        while not stop.is_set():
            try:
                await self.refresh()
            except (RedisError, OSError) as exc:
                if self.redis_error is None:
                    log.warning("alerts: Redis not readable: %s", type(exc).__name__)
                self.redis_error = f"{type(exc).__name__}: {str(exc)[:200]}"
            except Exception:  # noqa: BLE001 - keep polling; the log says what broke
                log.exception("alerts: refresh failed")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)

    def _latest(self, alert_id: str | None) -> Alert | None:
        entry = self.events.get(alert_id) if alert_id else None
        return entry["alert"] if entry else None

    # ------------------------------------------------------------------ the alerts topic

    async def on_event(self, ce_id: str, at: datetime, alert: Alert) -> None:
        if not alert.alert_id:
            return
        entry = self.events.setdefault(alert.alert_id, {"alert": alert, "timeline": [], "ids": set()})
        self.events.move_to_end(alert.alert_id)
        if ce_id in entry["ids"]:
            return  # a resent event (consumers deduplicate by ce_id)
        entry["ids"].add(ce_id)
        entry["alert"] = alert
        if alert.event == "firing":  # the detections that confirmed it: kept in its lineage for good
            entry["confirmed"] = list(alert.detection_ids)
        entry["timeline"].append({"at": at.isoformat(), "event": alert.event, "detail": alert.summary})
        del entry["timeline"][:-EVENTS_KEPT]

    async def follow_topic(self, kafka: KafkaSettings, topic: str, history_s: float, stop: asyncio.Event) -> None:
        await keep_reading("alerts", f"topic {topic}", lambda: self._follow(kafka, topic, history_s, stop), stop,
                           on_down=lambda: setattr(self, "topic_connected", False))

    async def _follow(self, kafka: KafkaSettings, topic: str, history_s: float, stop: asyncio.Event) -> None:
        consumer = make_consumer(kafka, group_id=None, auto_offset_reset="latest", fetch_max_wait_ms=200)
        await consumer.start()
        try:
            assigned: set[TopicPartition] = set()
            next_look = 0.0
            while not stop.is_set():
                if time.monotonic() >= next_look:
                    before = assigned
                    assigned, complete = await assign_all(consumer, [topic], assigned)
                    new = sorted(assigned - before)
                    if new and history_s > 0:  # from `history` ago (assign_all put them at the end)
                        since = int((time.time() - history_s) * 1000)
                        found = await consumer.offsets_for_times({tp: since for tp in new})
                        for tp, ot in found.items():
                            if ot is not None:
                                consumer.seek(tp, ot.offset)
                    self.topic_connected = bool(assigned)
                    next_look = time.monotonic() + (10.0 if complete else 1.0)
                if not assigned:
                    await asyncio.sleep(0.2)
                    continue
                batch = await consumer.getmany(timeout_ms=200, max_records=500)
                touched = set()
                for records in batch.values():
                    for r in records:
                        try:
                            envelope, alert = decode_structured(r.value, Alert)
                        except ContractError:
                            continue
                        await self.on_event(envelope.id, envelope.time, alert)  # type: ignore[arg-type]
                        touched.add(alert.alert_id)  # type: ignore[attr-defined]
                for alert_id in touched:
                    await self._touch(alert_id)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(consumer.stop(), 3.0)

    async def _touch(self, alert_id: str) -> None:
        """A topic event arrived: rebuild the alert's card (from Redis while it is there)."""
        alert = self._latest(alert_id)
        if alert is None:
            return
        try:
            snap = await self.state.load(alert.fingerprint)
        except (RedisError, OSError):
            snap = None
        if snap is not None and snap.alert_id != alert_id:
            snap = None
        if snap is None and alert.status == "firing" and alert_id not in self.cards:
            return  # an old firing whose alert Redis no longer has: wait for its resolve or the poll
        self._put(await self.card(snap, alert))
        self._prune()

    # ------------------------------------------------------------------ writes

    def find(self, alert_id: str) -> dict | None:
        return self.cards.get(alert_id)

    async def acknowledge(self, alert_id: str, *, by: str, comment: str = "") -> tuple[AckOutcome, dict | None]:
        card = self.find(alert_id)
        if card is None:
            return AckOutcome.NOT_FOUND, None
        outcome, _ = await self.acks.acknowledge(card["fingerprint"], alert_id, by=by, comment=comment)
        snap = await self.state.load(card["fingerprint"])
        if snap is not None and snap.alert_id == alert_id:
            card = await self.card(snap, self._latest(alert_id))
            self._put(card)
        return outcome, card

    async def silence(self, alert_id: str, *, scope: str, duration_s: float, by: str,
                      comment: str = "") -> Silence | None:
        card = self.find(alert_id)
        if card is None:
            return None
        note = comment or f"from the console, alert {alert_id}"
        silence = await self.silences.add(scope_matchers(scope, card), duration_s=duration_s, created_by=by,
                                          comment=note)
        with contextlib.suppress(RedisError, OSError):
            await self.refresh()
        return silence


def _merge(confirmed: list[str], latest: list[str], limit: int = 60) -> list[str]:
    """The detections that confirmed the alert, then the latest ones (Redis keeps the newest
    ``lineage_max``), each once, oldest first, at most ``limit``."""
    seen = set(confirmed)
    rest = [d for d in latest if d not in seen]
    return list(confirmed) + rest[-max(0, limit - len(confirmed)):] if rest else list(confirmed)


def silence_view(s: Silence) -> dict:
    doc = json.loads(s.model_dump_json())
    doc["ends_in_s"] = max(0, round(s.ends_at.timestamp() - time.time()))
    return doc
