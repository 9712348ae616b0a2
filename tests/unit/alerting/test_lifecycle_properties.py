"""An alert never ends before it starts (issue 13 item 4), whatever the clocks did: a property
over the lifecycle rules and the alert event they produce. Capture times come from the senders'
clocks (a detection may be dated up to max_clock_skew ahead of the consumer's clock, which may
itself differ from Redis's), observation and resolve times from Redis's, so a resolve computed
from the last observation could precede the first capture time when resolve_after is shorter
than the skew: the resolve's `ends_at` was then before its `starts_at`."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from alerting.config import RouteConfig
from alerting.events import alert_of
from alerting.lifecycle import Timing, evaluate
from alerting.routing import Router
from alerting.state import AlertSnapshot

T0 = 1_767_225_600_000
ROUTER = Router(RouteConfig(receivers=["hook"], group_wait=0.0, repeat_interval=10.0, send_resolved=True))


@settings(max_examples=400, deadline=None)
@given(created=st.integers(0, 600_000), starts_ahead=st.integers(-600_000, 30_000), seen_span=st.integers(0, 600_000),
       obs_after=st.integers(0, 600_000), resolve_after=st.integers(0, 120_000), wait=st.integers(0, 900_000),
       told=st.booleans())
def test_a_resolved_alert_never_ends_before_it_started_or_was_last_seen(created, starts_ahead, seen_span, obs_after,
                                                                       resolve_after, wait, told):
    created_ms = T0 + created
    last_obs = created_ms + obs_after
    starts = created_ms + starts_ahead  # the first confirming capture: sender's clock, may be ahead
    raw = {"fp": "f1", "inc": "1", "version": "3", "status": "firing", "site": "north", "source": "cam-1",
           "label": "drone", "sources": "cam-1", "sfps": "f1", "modalities": "vision", "severity": "warning",
           "max_score": "0.9", "starts_ms": str(starts), "last_seen_ms": str(starts + seen_span),
           "last_obs_ms": str(last_obs), "created_ms": str(created_ms)}
    if told:
        raw.update({"k:seq": "1", "k:last_ms": str(created_ms), "k:sev": "warning"})
    now = last_obs + wait
    d = evaluate(AlertSnapshot(dict(raw)), now, ROUTER, Timing(resolve_after_ms=resolve_after, mute_recheck_ms=500),
                 watermark_ms=now)
    alert = AlertSnapshot({**raw, **{k: str(v) for k, v in d.updates.items()}})
    for event in ("resolved",) if d.resolve else ("firing", "repeat"):
        a = alert_of(alert, event, now)
        assert a.last_seen_at >= a.starts_at
        if event == "resolved":
            assert a.ends_at is not None and a.ends_at >= a.starts_at and a.ends_at >= a.last_seen_at, (a.starts_at,
                                                                                                      a.ends_at)
        else:
            assert a.ends_at is None
