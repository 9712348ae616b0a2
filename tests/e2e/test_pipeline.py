"""End to end on the real broker and Redis, every service its own process, the shipped models:
a camera and the synthetic microphone of one site → processors → detections → alerting →
webhook / Slack / SMS stand-ins on loopback. The same run as ``make demo``
(deploy/local/pipeline.py), shorter. The camera plays the real drone clip of ``samples/``
(looping, 5 fps): the shipped vision model is trained on real sky footage and reports the
synthetic scene's procedural drones as birds, while this test is about the pipeline and the
alerting's corroboration, which need a drone on camera while the microphone hears rotors."""

from __future__ import annotations

import base64
import uuid

import pytest

from alerting.testing import RecordingReceiver
from deploy.local.pipeline import group_ids, percentile, run_pipeline, sample_clips
from skysentry.config import Settings, TopicSettings
from skysentry.topics import ensure_topics

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def report(stack, tmp_path_factory):
    uid = uuid.uuid4().hex[:8]
    topics = TopicSettings(frames=f"e2e-{uid}.frames", audio=f"e2e-{uid}.audio", detections=f"e2e-{uid}.detections",
                           alerts=f"e2e-{uid}.alerts", models=f"e2e-{uid}.models", partitions=3)
    drone = next(c for c in sample_clips() if c.truth == "drone")
    settings = Settings(kafka={"bootstrap_servers": stack.bootstrap_servers}, redis={"url": stack.redis_url},
                        topics=topics, camera={"source": str(drone.path), "loop": True})
    await ensure_topics(settings.kafka, settings.topics, groups=tuple(group_ids(f"e2e-{uid}").values()))
    # 18 s of streaming: the drone is in the clip throughout, and the synthetic microphone's
    # first rotor interval (mic-1: 9.2–14.2 s) falls inside it.
    with RecordingReceiver() as receiver:
        return await run_pipeline(settings, receiver, tmp_path_factory.mktemp("e2e"), seconds=18,
                                  name=f"e2e-{uid}", resolve_wait_s=20)


def test_every_service_ran_and_stopped_cleanly(report):
    assert report.services == {"vision": 0, "audio": 0, "alerting": 0}, report.service_errors
    assert not any(report.service_errors.values()), report.service_errors
    assert report.producers["camera"]["published"] >= 18 * 4 and report.producers["microphone"]["published"] >= 30
    seen = report.observed
    assert seen.counts["frame"] == report.producers["camera"]["published"]
    assert seen.counts["audio"] == report.producers["microphone"]["published"]
    # every source is seen alive: a score summary about once a second per processor
    assert seen.summaries[("vision", "cam-1")] >= 10 and seen.summaries[("audio", "mic-1")] >= 10
    assert not seen.invalid


def test_both_modalities_detect_the_synthetic_drone(report):
    seen = report.observed
    assert seen.modality_count("vision") >= 5 and seen.modality_count("audio") >= 3
    for d in seen.detections.values():
        assert d.input_event_id in seen.inputs  # each from an input of this run
        assert d.model.name and d.model.version and d.processed_at >= d.captured_at


def test_one_corroborated_alert_fires_is_delivered_everywhere_and_resolves(report):
    seen = report.observed
    fingerprints = {a.fingerprint for a in seen.alerts}
    assert len(fingerprints) == 1, [(a.event, a.source) for a in seen.alerts]  # camera + mic of one site: one alert
    events = [a.event for a in seen.alerts]
    assert events[0] == "firing" and events[-1] == "resolved"
    assert seen.alerts[-1].severity == "critical" and set(seen.alerts[-1].modalities) == {"vision", "audio"}
    hooks = report.webhook_payloads()
    assert [b["event"] for b in hooks].count("resolved") == 1 and hooks[0]["event"] == "firing"
    assert len(report.notifications_on("/slack")) == len(hooks)
    sms = report.notifications_on("/twilio")
    assert len(sms) == 2 and "CRITICAL" in sms[0].form()["Body"]  # firing + resolved, critical route only
    scheme, token = sms[0].headers["authorization"].split()  # Twilio's auth token came from the environment
    assert scheme == "Basic" and base64.b64decode(token).decode() == f"ACdemo:{report.webhook_secret}"
    assert len({b["idempotency_key"] for b in hooks}) == len(hooks)


def test_lineage_and_signatures_hold(report):
    assert report.lineage_problems() == []
    assert report.notifications_on("/webhook") and report.unsigned_webhooks() == []


def test_secrets_never_reach_a_log(report):
    """The webhook's HMAC key and Twilio's auth token reach alerting through its environment."""
    logs = sorted(report.log_dir.glob("*.log"))
    assert [p.name for p in logs] == ["alerting.log", "audio.log", "vision.log"]
    assert "alerting running" in (report.log_dir / "alerting.log").read_text()
    for log in logs:
        assert report.webhook_secret not in log.read_text()


def test_latency_is_measured(report):
    det, alert = report.detection_latencies_ms(), report.alert_latencies_ms()
    print(f"\ne2e: capture→detection p50 {percentile(det, 50):.0f} ms p99 {percentile(det, 99):.0f} ms "
          f"({len(det)}); capture→webhook p50 {percentile(alert, 50):.0f} ms ({len(alert)} alerts)")
    assert det and alert and min(det) > 0 and min(alert) > 0
