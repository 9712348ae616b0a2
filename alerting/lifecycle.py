"""The alert lifecycle as a pure function: given an alert, the time, the routing tree and
whether the alert is muted, what is due now and when to look again.

    firing ──(group_wait per route)──▶ first notification
       │  ──(repeat_interval per route, or at once when the severity rises)──▶ repeat
       └──(resolve_after without detections)──▶ resolved (to routes that heard "firing")

An acknowledged alert (alerting/acks.py) skips its "still active" repeats; escalation and
resolve still notify.

"Without detections" means none was *written* in that time, not merely none read: while the
detections up to the resolve time may still be unread (a consumer restarting, a rebalance, a
backlog), the resolve waits for the watermark (:meth:`alerting.state.AlertState.watermark_ms`).

Silence is not absence: a source whose processor sends score summaries must have been reported
on without a break (:class:`alerting.state.Coverage`) for the whole ``resolve_after``, up to the
resolve time, before its alert resolves. A dead processor, a dead camera or a stalled pipeline
leaves the alert *stale* (``stale_ms`` set) once nothing came for ``stale_after``: it neither
resolves nor repeats "still active" until reports flow again; then it needs ``resolve_after``
of them to resolve, and repeats count from then.

Behind is not "still active" either: a "still active" repeat says what the service read, so it
is held while the detections stream is behind, that is while the watermark (everything written
to ``detections`` before it has been read) is more than ``behind_after`` old — the consumer
lags, cannot read (broker down) or nobody reads some partition. An escalation (the severity
rose, from detections that were read) still goes out. Once reading catches up, a due repeat goes
out with what is known: the alert's ``last_seen_at``.

Kept free of I/O so the rules can be tested exhaustively; :mod:`alerting.dispatch` reads the
alert, calls :func:`evaluate`, and commits the result atomically.

Notification state lives in the alert hash, per route: ``n:<route>:seq`` (notifications sent
in this incarnation; 0/absent = firing not sent yet), ``n:<route>:last_ms``,
``n:<route>:sev`` (severity last told). ``k:*`` is the same for the ``alerts`` topic, which
follows the root route's timing and is never muted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from alerting.notification import SEVERITY_RANK, Event
from alerting.routing import Route, Router
from alerting.state import AlertSnapshot, Coverage


@dataclass(frozen=True)
class Planned:
    """One decided notification: ``route`` None means the ``alerts`` topic."""

    event: Event
    route: Route | None
    seq: int
    escalated: bool = False


@dataclass
class Decision:
    updates: dict[str, object] = field(default_factory=dict)
    planned: list[Planned] = field(default_factory=list)
    next_tick_ms: int | None = None
    resolve: bool = False
    resolve_deferred: bool = False  # due, but detections up to the resolve time may be unread
    went_stale: bool = False  # a source of it stopped reporting just now
    muted: list[tuple[str, str]] = field(default_factory=list)  # (route id, why)


@dataclass(frozen=True)
class Timing:
    resolve_after_ms: int
    mute_recheck_ms: int
    watermark_recheck_ms: int = 500
    stale_after_ms: int = 5000
    stale_recheck_ms: int = 1000
    behind_after_ms: int = 5000  # 0: repeats never wait for the watermark


def _ms(seconds: float) -> int:
    return int(round(seconds * 1000))


def sent_routes(a: AlertSnapshot) -> list[str]:
    """Routes that were told this incarnation is firing."""
    return [k[2:-4] for k, v in a.raw.items() if k.startswith("n:") and k.endswith(":seq") and int(v) > 0]


def resolve_at(a: AlertSnapshot, now: int, timing: Timing, coverage: Coverage | None = None) -> int:
    """When the alert resolves unless a detection refreshes it: ``resolve_after`` past its last
    one, and past the start of its sources' unbroken reports."""
    due = (a.ms("last_obs_ms") or now) + timing.resolve_after_ms
    return max(due, coverage.since_ms + timing.resolve_after_ms) if coverage else due


def is_stale(now: int, timing: Timing, coverage: Coverage | None) -> bool:
    """A source of the alert that sends summaries has sent nothing for ``stale_after``."""
    return coverage is not None and now - coverage.last_ms > timing.stale_after_ms


def is_behind(now: int, timing: Timing, watermark_ms: int | None) -> bool:
    """The detections stream is behind: what was written more than ``behind_after`` ago may be
    unread (None: no consumer has reported yet, nothing known to be behind)."""
    return bool(timing.behind_after_ms) and watermark_ms is not None and now - watermark_ms > timing.behind_after_ms


def evaluate(a: AlertSnapshot, now: int, router: Router, timing: Timing, *,
             silenced_by: str | None = None, inhibited_by: str | None = None,
             watermark_ms: int | None = None, coverage: Coverage | None = None,
             acknowledged: bool = False) -> Decision:
    """``watermark_ms``: every detection written before it has been observed (None: unknown,
    no consumer has reported yet; the resolve then goes by the clock alone). ``coverage``:
    how its sources' processors have reported (None: no source of it sends summaries).
    ``acknowledged``: an operator acknowledged this incarnation (alerting/acks.py): its
    "still active" repeats are held back (counted as sent, so they are not retried every tick);
    an escalation and the resolve still go out."""
    if a.status != "firing":
        return Decision()
    d = Decision()
    sev = SEVERITY_RANK[a.severity]
    created = a.ms("created_ms") or now
    resolve_due = resolve_at(a, now, timing, coverage)
    stale = is_stale(now, timing, coverage)
    behind = is_behind(now, timing, watermark_ms)
    if stale and not a.ms("stale_ms"):
        d.updates["stale_ms"] = now
        d.went_stale = True
    elif not stale and a.ms("stale_ms"):  # reports flow again; "still active" only a full interval later
        d.updates.update({"stale_ms": "", **{f"n:{rid}:last_ms": now for rid in sent_routes(a)}})
        if a.raw.get("k:seq"):
            d.updates["k:last_ms"] = now
    raw = {**a.raw, **d.updates}

    # a detection written before the resolve time may be unread, or a processor has not yet
    # reported on a source up to that time (it sends a summary about every second)
    unread = (watermark_ms is not None and watermark_ms < resolve_due) or (
        coverage is not None and coverage.last_ms < resolve_due)
    if now >= resolve_due and not unread and not stale:
        d.resolve = True
        d.updates.update(status="resolved", ends_ms=now)
        kseq = int(raw.get("k:seq", 0))
        if kseq:
            d.updates["k:seq"] = kseq + 1
            d.planned.append(Planned("resolved", None, kseq + 1))
        for rid in sent_routes(a):
            route = router.get(rid)
            if route is None or not route.send_resolved:
                continue
            if silenced_by:
                d.muted.append((rid, f"silenced by {silenced_by}"))
                continue
            seq = int(raw[f"n:{rid}:seq"]) + 1
            d.updates.update({f"n:{rid}:seq": seq, f"n:{rid}:last_ms": now})
            d.planned.append(Planned("resolved", route, seq))
        return d

    next_due = resolve_due
    if stale:  # no resolve, no repeat: look again soon for reports flowing again
        next_due = now + timing.stale_recheck_ms
    elif now >= resolve_due:  # and a detection that would keep it firing may still be unread
        d.resolve_deferred = True
        next_due = now + timing.watermark_recheck_ms
    root = router.root

    # The alerts topic: every alert, never muted, on the root's timing.
    kseq = int(raw.get("k:seq", 0))
    if kseq == 0:
        due = created + _ms(root.group_wait)
        if now >= due:
            d.planned.append(Planned("firing", None, 1))
            d.updates.update({"k:seq": 1, "k:last_ms": now, "k:sev": a.severity})
            next_due = min(next_due, now + _ms(root.repeat_interval))
        else:
            next_due = min(next_due, due)
    elif not stale:
        last, told = int(raw["k:last_ms"]), SEVERITY_RANK[raw.get("k:sev", a.severity)]
        due = last + _ms(root.repeat_interval)
        if behind and sev <= told and now >= due:  # held: look again once reading may have caught up
            next_due = min(next_due, now + timing.watermark_recheck_ms)
        elif sev > told or now >= due:
            d.planned.append(Planned("repeat", None, kseq + 1, escalated=sev > told))
            d.updates.update({"k:seq": kseq + 1, "k:last_ms": now, "k:sev": a.severity})
            next_due = min(next_due, now + _ms(root.repeat_interval))
        else:
            next_due = min(next_due, due)

    muted_by = f"silenced by {silenced_by}" if silenced_by else (
        f"inhibited by {inhibited_by}" if inhibited_by else None)
    for route in router.match(a.labels()):
        rid = route.id
        seq = int(raw.get(f"n:{rid}:seq", 0))
        if seq == 0:
            due = created + _ms(route.group_wait)
            event, escalated = "firing", False
        elif stale:
            continue
        else:
            told = SEVERITY_RANK[raw.get(f"n:{rid}:sev", a.severity)]
            escalated = sev > told
            due = now if escalated else int(raw[f"n:{rid}:last_ms"]) + _ms(route.repeat_interval)
            event = "repeat"
            if behind and not escalated and now >= due:
                next_due = min(next_due, now + timing.watermark_recheck_ms)
                continue
            if acknowledged and not escalated and now >= due:
                d.muted.append((rid, "acknowledged"))
                d.updates[f"n:{rid}:last_ms"] = now
                next_due = min(next_due, now + _ms(route.repeat_interval))
                continue
        if now < due:
            next_due = min(next_due, due)
            continue
        if muted_by:
            d.muted.append((rid, muted_by))
            next_due = min(next_due, now + timing.mute_recheck_ms)
            continue
        d.planned.append(Planned(event, route, seq + 1, escalated))  # type: ignore[arg-type]
        d.updates.update({f"n:{rid}:seq": seq + 1, f"n:{rid}:last_ms": now, f"n:{rid}:sev": a.severity})
        next_due = min(next_due, now + _ms(route.repeat_interval))

    d.next_tick_ms = max(next_due, now + 1)
    return d
