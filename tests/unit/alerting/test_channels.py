"""Channel payloads, signatures, backoff and the circuit breaker (no network)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from alerting.breaker import CircuitBreaker
from alerting.channels import ChannelConfig, build_channel
from alerting.channels.slack import message_of
from alerting.channels.webhook import body_of, sign, verify_signature
from alerting.config import AlertingServiceSettings
from alerting.delivery import backoff_delay
from alerting.notification import Evidence, Notification
from pydantic import TypeAdapter
from skysentry.messages import Alert

T0 = datetime(2026, 5, 1, 12, 0, 3, tzinfo=timezone.utc)


def notification(event="firing", **kw) -> Notification:
    alert = Alert(fingerprint="abcd", event=event, status="resolved" if event == "resolved" else "firing",
                  severity="critical", site="north", source="cam-1", label="drone", modalities=["vision", "audio"],
                  max_score=0.93, starts_at=T0, last_seen_at=T0 + timedelta(seconds=4),
                  ends_at=T0 + timedelta(seconds=60) if event == "resolved" else None,
                  detection_ids=["d1", "d2", "d3"], summary="drone at site north corroborated by cam-1 and mic-1")
    return Notification(idempotency_key="key-1", channel="ops", route="root", event=event, alert=alert,
                        sources=["cam-1", "mic-1"], decided_at=T0 + timedelta(seconds=5),
                        evidence=Evidence(detection_id="d3", input_event_id="frame-9", modality="vision",
                                          model="drone-vision 3", box=[0.1, 0.2, 0.3, 0.4]), **kw)


def test_signature_round_trip_and_tamper_and_age():
    body = body_of(notification())
    sig = sign("s3cr3t", "1700000000", body)
    assert sig.startswith("sha256=")
    assert verify_signature("s3cr3t", "1700000000", body, sig, now=1700000010)
    assert not verify_signature("s3cr3t", "1700000000", body + b" ", sig, now=1700000010)
    assert not verify_signature("other", "1700000000", body, sig, now=1700000010)
    assert not verify_signature("s3cr3t", "1700000000", body, sig, now=1700009999)  # too old: replay


def test_slack_message_is_readable_block_kit():
    doc = message_of(notification())
    text = str(doc)
    assert doc["blocks"][0]["type"] == "header"
    for needle in ("*What*", "Drone (critical)", "*Where*", "site north", "cam-1, mic-1", "*Confidence*", "93%",
                   "*First seen*", "<!date^", "drone-vision 3", "frame-9"):
        assert needle in text, needle
    assert "Resolved" in message_of(notification("resolved"))["blocks"][0]["text"]["text"]


def test_sms_is_one_segment():
    text = notification().short_text()
    assert len(text) <= 160 and "CRITICAL" in text and "north" in text and "93%" in text
    assert "RESOLVED" in notification("resolved").short_text()


def test_channel_configs_are_discriminated_by_type_and_targets_split():
    adapter = TypeAdapter(ChannelConfig)
    tw = adapter.validate_python({"type": "twilio", "account_sid": "AC1", "auth_token": "t", "from": "+1555",
                                  "to": ["+1", "+2"]})
    assert build_channel("sms", tw).targets() == ["+1", "+2"]
    with pytest.raises(ValueError, match="from"):
        adapter.validate_python({"type": "twilio", "account_sid": "AC1", "auth_token": "t", "to": ["+1"]})
    with pytest.raises(ValueError):
        adapter.validate_python({"type": "carrier-pigeon"})


def test_secrets_come_from_the_environment_and_are_scrubbed(monkeypatch, tmp_path):
    cfg = tmp_path / "a.yaml"
    cfg.write_text("alerting:\n  channels:\n    ops_hook: {type: webhook, url: 'http://127.0.0.1:9/h'}\n"
                   "    chat: {type: slack, url: 'http://placeholder'}\n")
    monkeypatch.setenv("SKYSENTRY_ALERTING__CHANNELS__OPS_HOOK__SECRET", "hmac-key-123")
    monkeypatch.setenv("SKYSENTRY_ALERTING__CHANNELS__CHAT__URL", "https://hooks.slack.com/services/T/B/XYZ")
    s = AlertingServiceSettings.load(cfg)
    hook = s.alerting.channels["ops_hook"]
    assert hook.secret.get_secret_value() == "hmac-key-123"
    assert "hmac-key-123" not in repr(s) and "XYZ" not in str(s.model_dump())
    chat = build_channel("chat", s.alerting.channels["chat"])
    assert chat.scrub("failed posting to https://hooks.slack.com/services/T/B/XYZ") == "failed posting to ***"


def test_backoff_doubles_with_jitter_and_honours_retry_after():
    rng = random.Random(1)
    delays = [backoff_delay(n, 1.0, 60.0, 0.0) for n in range(1, 9)]
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60]
    jittered = [backoff_delay(3, 1.0, 60.0, 0.2, rng=rng) for _ in range(200)]
    assert 3.2 <= min(jittered) < 4 < max(jittered) <= 4.8
    assert backoff_delay(1, 1.0, 60.0, 0.0, retry_after=7) == 7


def test_breaker_opens_then_probes_on_a_short_back_off_and_logs_every_change(caplog):
    now = [0.0]
    b = CircuitBreaker(failures=3, reset_s=10, probe_s=1, clock=lambda: now[0], name="hook")
    caplog.set_level("INFO", logger="alerting.breaker")
    for _ in range(3):
        assert b.allow()
        b.failure()
    assert b.state == "open" and not b.allow()
    now[0] = 1.0  # a short back-off, not the whole reset period
    assert b.state == "half-open" and b.allow() and not b.allow()  # one probe at a time
    b.failure()  # the probe failed: twice as long
    assert b.state == "open" and b.retry_in() == 2.0
    for t in (3.0, 7.0, 15.0, 25.0):  # 2, 4, 8, then capped at reset_s = 10
        now[0] = t - 0.01
        assert b.state == "open"
        now[0] = t
        assert b.allow()
        b.failure()
    assert b.retry_in() == 10.0
    now[0] = 35.0
    assert b.allow()
    b.success()
    assert b.state == "closed" and b.allow()
    said = [r.getMessage() for r in caplog.records]
    assert said[0] == "circuit breaker of channel hook open: 3 consecutive failures; first probe in 1 s"
    assert said[1] == "circuit breaker of channel hook half-open: letting one probe through"
    assert said[2] == "circuit breaker of channel hook open: the probe failed; next probe in 2 s"
    assert said[-1] == "circuit breaker of channel hook closed: a send succeeded"
    assert len(said) == 2 + 2 * 5 + 1  # opened, then half-open and open per failed probe, half-open, closed
    b.failure()  # closed again: one failure does not open it, and the back-off starts short again
    assert b.state == "closed" and b._open_for == 1


def test_every_secret_field_is_scrubbed():
    adapter = TypeAdapter(ChannelConfig)
    hook = build_channel("h", adapter.validate_python({"type": "webhook", "url": "http://127.0.0.1:9/h", "secret": "k1",
                                                       "headers": {"Authorization": "Bearer t0k3n"}}))
    sms = build_channel("s", adapter.validate_python({"type": "twilio", "account_sid": "AC1", "auth_token": "tw-tok",
                                                      "from": "+1", "to": ["+2"]}))
    assert hook.scrub("k1 Bearer t0k3n") == "*** ***" and sms.scrub("token tw-tok") == "token ***"
