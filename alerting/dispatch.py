"""The wait and route stages: when an alert's timer is due, decide what to tell whom, and
write that decision — alert state and outbox entries together — in one atomic step.

    timer due ─▶ load alert ─▶ silenced? inhibited? ─▶ lifecycle.evaluate ─▶ notifications
              ─▶ commit (compare-and-set on the alert's version) ─▶ wake channel workers

A detection that lands between the load and the commit bumps the version; the commit then
fails and the decision is made again on fresh state, so two replicas (or a replica and a
late detection) can never both send "firing".
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING
from datetime import datetime, timezone

from alerting import faults, metrics
from alerting.acks import ack_of
from alerting.channels.base import Channel
from alerting.config import AlertingSettings
from alerting.events import ALERTS_CHANNEL, alert_of
from alerting.ids import idempotency_key
from alerting.inhibition import Inhibitor
from alerting.lifecycle import Decision, Timing, evaluate
from alerting.notification import Evidence, Notification
from alerting.routing import Router
from alerting.silences import SilenceStore
from alerting.state import AlertSnapshot, AlertState
from skysentry.logs import kv
from skysentry.messages import EvidenceMedia

if TYPE_CHECKING:
    from alerting.capture import EvidenceCollector

log = logging.getLogger(__name__)

COMMIT_ATTEMPTS = 8


class Dispatcher:
    def __init__(self, state: AlertState, router: Router, silences: SilenceStore, inhibitor: Inhibitor,
                 channels: dict[str, Channel], settings: AlertingSettings,
                 on_outbox: Callable[[Iterable[str]], None] = lambda _: None,
                 evidence: EvidenceCollector | None = None):
        self.state = state
        self.router = router
        self.silences = silences
        self.inhibitor = inhibitor
        self.channels = channels
        self.on_outbox = on_outbox
        self.evidence = evidence
        self.prefix = settings.key_prefix
        self.timing = Timing(int(settings.resolve_after * 1000), int(settings.mute_recheck * 1000),
                             stale_after_ms=int(settings.stale_after * 1000),
                             behind_after_ms=int(settings.behind_after * 1000))

    async def tick(self, fp: str, now: int) -> Decision | None:
        """Evaluate one alert whose timer is due (and that this replica has claimed)."""
        for _ in range(COMMIT_ATTEMPTS):
            snap = await self.state.load(fp)
            if snap is None:  # expired: drop its timer unless a new incarnation appeared meanwhile
                if await self.state.commit(fp, None, updates={}, outbox=[], next_tick_ms=None):
                    return None
                continue
            silenced = inhibited = coverage = None
            if snap.status == "firing":
                if self.timing.stale_after_ms:
                    coverage = await self.state.coverage(snap)
                silence = await self.silences.silencing(snap.labels())
                silenced = silence.id if silence else None
                if not silenced and self.inhibitor.targets_possible(snap):
                    inhibited = self.inhibitor.inhibited_by(snap, await self.state.site_alerts(snap.site))
            # the watermark holds a due resolve and, while it lags, "still active" repeats
            watermark = await self.state.watermark_ms() if snap.status == "firing" else None
            decision = evaluate(snap, now, self.router, self.timing, silenced_by=silenced, inhibited_by=inhibited,
                                watermark_ms=watermark, coverage=coverage, acknowledged=ack_of(snap) is not None)
            media = await self._media(snap, decision)
            notifications = self.notifications(snap, decision, now, media=media)
            # one alert's notifications to one channel and target go out in the order decided
            entries = [(n.channel, n.idempotency_key, n.model_dump_json(), f"{n.channel}/{fp}/{n.target or ''}")
                       for n in notifications]
            if await self.state.commit(fp, snap.version, updates=decision.updates, outbox=entries,
                                       next_tick_ms=decision.next_tick_ms, resolve=decision.resolve):
                if any(n.channel != ALERTS_CHANNEL for n in notifications):
                    faults.crash_point(faults.CRASH_AFTER_OUTBOX_WRITE)
                self._account(snap, decision, notifications)
                if notifications:
                    self.on_outbox({n.channel for n in notifications})
                return decision
            now = await self.state.now_ms()
        log.warning("alert %s changed under %d decisions in a row; trying again shortly", fp, COMMIT_ATTEMPTS)
        await self.state.schedule(fp, now + 200)
        return None

    async def _media(self, snap: AlertSnapshot, decision: Decision) -> EvidenceMedia | None:
        """Store the evidence of a firing or repeat (before the decision is committed, so it
        exists when the notification arrives) and sign links to it."""
        if self.evidence is None or not snap.evidence or not snap.alert_id or \
                not any(p.event in ("firing", "repeat") for p in decision.planned):
            return None
        return await self.evidence.media(snap.alert_id, Evidence.model_validate(snap.evidence))

    def notifications(self, snap: AlertSnapshot, decision: Decision, now: int,
                      media: EvidenceMedia | None = None) -> list[Notification]:
        out: list[Notification] = []
        told: set[tuple[str, str, str | None]] = set()  # (event, channel, target) already in this decision
        decided_at = datetime.fromtimestamp(now / 1000, timezone.utc)
        evidence = Evidence.model_validate(snap.evidence) if snap.evidence else None
        if evidence is not None and media is not None:
            evidence = evidence.model_copy(update={"media": media})
        for p in decision.planned:
            alert = alert_of(snap, p.event, now)
            common = dict(event=p.event, alert=alert, sources=snap.sources, evidence=evidence,
                          escalated=p.escalated, decided_at=decided_at)
            if p.route is None:
                key = idempotency_key(self.prefix, snap.alert_id, "", p.event, p.seq, ALERTS_CHANNEL, None)
                out.append(Notification(idempotency_key=key, channel=ALERTS_CHANNEL, route="", **common))
                continue
            for receiver in p.route.receivers:
                channel = self.channels.get(receiver)
                if channel is None:
                    log.error("route %s names channel %s, which this replica does not have", p.route.id, receiver)
                    continue
                for target in channel.targets():
                    # Two routes naming one channel (an escalated alert heard on both, or
                    # `continue`) still give that channel one notification per event.
                    if (p.event, receiver, target) in told:
                        continue
                    told.add((p.event, receiver, target))
                    key = idempotency_key(self.prefix, snap.alert_id, p.route.id, p.event, p.seq, receiver, target)
                    out.append(Notification(idempotency_key=key, channel=receiver, target=target,
                                            route=p.route.id, **common))
        return out

    def _account(self, snap: AlertSnapshot, decision: Decision, notifications: list[Notification]) -> None:
        if decision.resolve_deferred:
            metrics.RESOLVES_DEFERRED.inc()
        if decision.went_stale:
            metrics.STALE.inc()
            log.warning("alert stale: its sources' processors stopped reporting; it neither resolves nor repeats "
                        "until they report again", extra=kv(fingerprint=snap.fp, site=snap.site, sources=snap.sources))
        elif decision.updates.get("stale_ms") == "":
            log.info("alert no longer stale: reports flow again", extra=kv(fingerprint=snap.fp, site=snap.site))
        for p in decision.planned:
            if p.route is None:
                metrics.ALERT_EVENTS.labels(p.event).inc()
                log.info("alert %s", "escalated" if p.escalated else p.event,
                         extra=kv(fingerprint=snap.fp, site=snap.site, sources=snap.sources, severity=snap.severity,
                                  modalities=snap.modalities, score=snap.max_score))
        for rid, why in decision.muted:
            metrics.SUPPRESSED.labels(why.split()[0]).inc()  # silenced | inhibited | acknowledged
            log.debug("notification held back", extra=kv(fingerprint=snap.fp, route=rid, why=why))
        if notifications:
            log.info("notifications decided", extra=kv(
                fingerprint=snap.fp, channels=sorted({n.channel for n in notifications if n.channel != ALERTS_CHANNEL}),
                events=sorted({n.event for n in notifications})))
