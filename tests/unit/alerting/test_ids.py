"""Alert incarnation ids and the notification keys derived from them (alerting/ids.py)."""

from __future__ import annotations

import uuid

from alerting.config import AlertingSettings
from alerting.dispatch import Dispatcher
from alerting.ids import idempotency_key, uuid7
from alerting.lifecycle import Decision, Planned
from alerting.state import AlertSnapshot


def test_uuid7_is_an_rfc_9562_version_7_uuid_carrying_the_time():
    u = uuid.UUID(uuid7(ms=0x0123_4567_89AB))
    assert u.version == 7 and u.variant == uuid.RFC_4122
    assert u.int >> 80 == 0x0123_4567_89AB


def test_uuid7_never_repeats_and_sorts_by_time():
    same_ms = {uuid7(ms=1_700_000_000_000) for _ in range(20_000)}
    assert len(same_ms) == 20_000  # 74 random bits tell apart ids of one millisecond
    ordered = [uuid7(ms=t) for t in (1_700_000_000_000, 1_700_000_000_001, 1_800_000_000_000)]
    assert ordered == sorted(ordered)


def test_keys_are_deterministic_and_differ_by_incarnation_and_by_everything_else():
    args = ("skysentry:alerting", "0190a6f2-0000-7000-8000-000000000001", "root", "firing", 1, "hook", None)
    assert idempotency_key(*args) == idempotency_key(*args)  # a resend carries the same key
    variants = [
        ("other:prefix", *args[1:]),
        (args[0], "0190a6f2-0000-7000-8000-000000000002", *args[2:]),
        (*args[:2], "child", *args[3:]),
        (*args[:3], "resolved", *args[4:]),
        (*args[:4], 2, *args[5:]),
        (*args[:5], "slack", None),
        (*args[:6], "+15550111"),
    ]
    keys = {idempotency_key(*v) for v in variants}
    assert len(keys) == len(variants) and idempotency_key(*args) not in keys


def _alerts_topic_key(prefix: str, raw: dict) -> str:
    settings = AlertingSettings(key_prefix=prefix)
    dispatcher = Dispatcher(None, None, None, None, {}, settings)  # notifications() touches no I/O
    decision = Decision(planned=[Planned("firing", None, 1)])
    [n] = dispatcher.notifications(AlertSnapshot(raw), decision, now=2_000)
    return n.idempotency_key


RAW = {"fp": "f1", "alert_id": "0190a6f2-0000-7000-8000-000000000001", "inc": "1", "version": "3",
       "status": "firing", "site": "north", "source": "cam-1", "sources": "cam-1", "modalities": "vision",
       "severity": "warning", "max_score": "0.9", "starts_ms": "1000", "last_seen_ms": "1000",
       "created_ms": "1000"}


def test_two_deployments_never_share_a_key_for_the_same_alert():
    assert _alerts_topic_key("site-a:alerting", RAW) != _alerts_topic_key("site-b:alerting", RAW)
    assert _alerts_topic_key("site-a:alerting", RAW) == _alerts_topic_key("site-a:alerting", RAW)


def test_a_new_incarnation_of_one_fingerprint_gets_new_keys_even_with_the_same_counter():
    # what Redis holds after the resolved alert expired and the fingerprint fired again: inc 1 again
    again = {**RAW, "alert_id": "0190a6f2-0000-7000-8000-0000000000ff"}
    assert _alerts_topic_key("p", RAW) != _alerts_topic_key("p", again)


def test_an_alert_written_before_ids_existed_keeps_one_id_for_its_lifetime():
    legacy = {k: v for k, v in RAW.items() if k != "alert_id"}
    assert AlertSnapshot(legacy).alert_id == AlertSnapshot(dict(legacy)).alert_id
    assert AlertSnapshot(legacy).alert_id != AlertSnapshot({**legacy, "created_ms": "5000"}).alert_id
