"""The alerting's rule for acknowledged alerts (alerting/lifecycle.py, alerting/acks.py), as a pure
function: repeats are held back, the alerts topic still gets them, an escalation and the resolve
still notify, and a held repeat does not make the alert tick every millisecond."""

from __future__ import annotations

from alerting.acks import ack_of
from alerting.config import RouteConfig
from alerting.lifecycle import Timing, evaluate
from alerting.routing import Router
from alerting.state import AlertSnapshot

T = Timing(resolve_after_ms=5000, mute_recheck_ms=500)


def snap(**fields) -> AlertSnapshot:
    raw = {"fp": "f1", "alert_id": "a1", "inc": "1", "version": "3", "status": "firing", "site": "north",
           "source": "cam-1", "label": "drone", "sources": "cam-1", "sfps": "f1", "modalities": "vision",
           "severity": "warning", "max_score": "0.9", "starts_ms": "1000", "last_seen_ms": "1000",
           "last_obs_ms": "1000", "created_ms": "1000"}
    raw.update({k: str(v) for k, v in fields.items()})
    return AlertSnapshot(raw)


def apply(a: AlertSnapshot, d) -> AlertSnapshot:
    return AlertSnapshot({**a.raw, **{k: str(v) for k, v in d.updates.items()}})


ROUTER = Router(RouteConfig(receivers=["hook"], group_wait=1.0, repeat_interval=10.0, send_resolved=True))


def told_firing() -> AlertSnapshot:
    a = snap()
    d = evaluate(a, 2000, ROUTER, T)
    assert {(p.event, p.route is None) for p in d.planned} == {("firing", False), ("firing", True)}
    a = apply(a, d)
    a.raw["last_obs_ms"] = "11000"  # detections keep coming: resolve due at 16000, repeat at 12000
    return a


def test_an_acknowledged_alert_skips_its_repeat_but_the_alerts_topic_still_gets_it():
    a = told_firing()
    assert {p.event for p in evaluate(a, 12000, ROUTER, T).planned if p.route} == {"repeat"}  # not acknowledged
    d = evaluate(a, 12000, ROUTER, T, acknowledged=True)
    assert [(p.event, p.route) for p in d.planned] == [("repeat", None)]  # the topic only
    assert d.muted == [("root", "acknowledged")]
    # counted as due-and-handled: the next look is a repeat interval (or the resolve) away, not every tick
    assert d.updates["n:root:last_ms"] == 12000 and "n:root:seq" not in d.updates  # nothing was sent
    assert d.next_tick_ms == 16000
    a = apply(a, d)
    assert evaluate(a, 12001, ROUTER, T, acknowledged=True).planned == []


def test_an_acknowledged_alert_still_escalates_and_resolves():
    a = told_firing()
    a.raw.update(severity="critical", modalities="audio,vision", sources="cam-1,mic-1")
    d = evaluate(a, 12000, ROUTER, T, acknowledged=True)
    assert {(p.event, p.escalated, p.route is None) for p in d.planned} == {("repeat", True, False),
                                                                          ("repeat", True, True)}
    a = apply(a, d)
    d = evaluate(a, 16000, ROUTER, T, acknowledged=True)
    assert d.resolve and {(p.event, p.route is None) for p in d.planned} == {("resolved", False),
                                                                           ("resolved", True)}


def test_ack_of_reads_the_incarnations_fields():
    assert ack_of(snap()) is None
    ack = ack_of(snap(ack_by="ana", ack_ms=5000, ack_comment="on it"))
    assert (ack.by, ack.at_ms, ack.comment) == ("ana", 5000, "on it")
