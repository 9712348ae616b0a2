"""Vision and audio processors on the real broker: lineage, dead letters, stale frames, summaries,
and offsets committed only for what was handled."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import REGISTRY

from skysentry.bus import client_options
from skysentry.messages import decode_frame
from stream_processors.testing import (OutputCollector, audio_record, create_topics, dlq_reason, frame_record,
                                       isolated_settings, jpeg, old, publish)

pytestmark = pytest.mark.integration


def metric(metric_name: str, /, **labels) -> float:
    return REGISTRY.get_sample_value(metric_name, labels) or 0.0


async def committed(settings, group: str) -> int:
    admin = AIOKafkaAdminClient(**client_options(settings.kafka))
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
        return sum(o.offset for o in offsets.values())
    finally:
        await admin.close()


async def test_frame_in_detection_out_with_lineage_dlq_and_stale(stack, toy_models, run_processor):
    s = isolated_settings(stack.bootstrap_servers, vision_model=toy_models["vision"],
                          vision_processor={"max_frame_age_s": 30.0, "max_batch": 4})
    await create_topics(s)
    positive = [frame_record(f"cam-{i % 2}", i, width=320, height=240, data=jpeg(320, 240)) for i in range(6)]
    negative = frame_record("cam-0", 100, data=jpeg(brightness=0))
    stale = [frame_record("cam-1", 200 + i, time=old(120)) for i in range(3)]
    good_headers = positive[0][2]
    malformed = [
        (b"cam-0", b"GIF89a not a jpeg", good_headers),                       # wrong payload
        (b"cam-0", positive[0][1], [("content-type", b"image/jpeg")]),       # headers missing
        (b"cam-0", b"\xff\xd8\xff\xe0" + bytes(64), frame_record()[2]),       # JPEG magic, corrupt body
    ]
    stale_before = metric("skysentry_processor_skipped_total", modality="vision")
    before = {o: metric("skysentry_processor_windows_total", modality="vision", outcome=o)
              for o in ("inferred", "stale", "dead_lettered")}
    lag_before = metric("skysentry_processor_capture_to_detection_seconds_count", modality="vision")
    batches_before = metric("skysentry_processor_batch_size_count", modality="vision")
    async with OutputCollector(s.kafka, s.topics, dlq_of=s.topics.frames) as out:
        async with run_processor(s, "vision") as svc:
            # malformed records first: the partition must keep flowing past them
            await publish(s.kafka, s.topics.frames, malformed)
            await publish(s.kafka, s.topics.frames,
                          [r[:3] for r in (*stale, negative, *positive)])
            wanted = {r[3].id for r in positive}
            await out.wait_for(lambda o: wanted <= set(o.input_ids()) and len(o.dead) >= 3, 30, "detections + DLQ")
            await out.wait_for(lambda o: sum(x.skipped for x in o.summaries) >= 3
                               and sum(x.windows for x in o.summaries if x.source == "cam-0") >= 4,
                               10, "skip and window counts in summaries")
        total = len(malformed) + len(stale) + 1 + len(positive)
        assert await committed(s, s.vision_processor.group_id) == total  # every record handled and committed

    # lineage: every detection points at its frame, with capture and processing times
    by_input = {d.input_event_id: d for d in out.out.detections}
    assert set(by_input) == wanted  # the dark frame scored low: no detection; stale ones skipped
    for key, value, headers, ev in positive:
        d = by_input[ev.id]
        assert (d.source, d.site, d.input_seq, d.captured_at) == (ev.source, ev.site, ev.seq, ev.time)
        assert d.model.name == "toy-vision" and d.model.version == "1" and d.processed_at > d.captured_at
        assert d.score > 0.99 and len(d.boxes) == 1 and 0 <= d.boxes[0].y1 < d.boxes[0].y2 <= 1
    # dead letters keep the original bytes and headers, plus the reason
    reasons = sorted(dlq_reason(r) for r in out.out.dead)
    assert len(reasons) == 3, reasons
    assert all(r.startswith("vision: ") for r in reasons), reasons  # a shared DLQ says which processor refused it
    assert any("not a JPEG" in r for r in reasons) and any("undecodable JPEG" in r for r in reasons)
    assert any("ce_type" in r or "missing headers" in r for r in reasons)
    gif = next(r for r in out.out.dead if r.value.startswith(b"GIF"))
    assert dict(gif.headers)["ce_id"] == decode_frame(positive[0][1], good_headers).id.encode()
    # skipped frames are counted (metrics and summaries); live sources have summaries
    assert metric("skysentry_processor_skipped_total", modality="vision") - stale_before == 3
    delta = {o: metric("skysentry_processor_windows_total", modality="vision", outcome=o) - v for o, v in before.items()}
    assert delta == {"inferred": 7, "stale": 3, "dead_lettered": 3}
    assert metric("skysentry_processor_capture_to_detection_seconds_count", modality="vision") - lag_before == 6
    assert metric("skysentry_processor_batch_size_count", modality="vision") > batches_before
    assert metric("skysentry_processor_model_info", modality="vision", name="toy-vision", version="1") == 1
    sources = {x.source for x in out.out.summaries}
    assert {"cam-0", "cam-1"} <= sources
    assert sum(x.windows for x in out.out.summaries if x.source == "cam-0") >= 4
    assert svc.batches >= 2


async def test_audio_window_in_detection_out(stack, toy_models, run_processor):
    s = isolated_settings(stack.bootstrap_servers, audio_model=toy_models["audio"])
    await create_topics(s)
    loud = [audio_record("mic-1", i) for i in range(4)]
    quiet = audio_record("mic-1", 10, pcm=np.zeros(16000, np.int16))
    key, value, headers, _ = audio_record("mic-2", 11)
    truncated = (key, value[:1000], headers)
    async with OutputCollector(s.kafka, s.topics, dlq_of=s.topics.audio) as out:
        async with run_processor(s, "audio"):
            await publish(s.kafka, s.topics.audio, [truncated] + [r[:3] for r in (*loud, quiet)])
            wanted = {r[3].id for r in loud}
            await out.wait_for(lambda o: wanted <= set(o.input_ids()) and o.dead, 30, "audio detections")
            await out.wait_for(lambda o: sum(x.windows for x in o.summaries if x.source == "mic-1") >= 5, 10,
                               "every mic-1 window in the summaries")
    assert set(out.out.input_ids()) == wanted
    d = out.out.detections[0]
    assert d.modality == "audio" and d.model.name == "toy-audio" and d.boxes == []
    (dead,) = out.out.dead
    assert "audio payload is 1000 bytes" in dlq_reason(dead) and dead.value == truncated[1]
    summary = [x for x in out.out.summaries if x.source == "mic-1"]
    assert sum(x.windows for x in summary) == 5 and max(x.max_score for x in summary) > 0.99


def test_process_command_without_a_model_says_run_make_models(stack, tmp_path):
    s = isolated_settings(stack.bootstrap_servers, vision_model=tmp_path / "absent.onnx")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKYSENTRY_")}
    env["SKYSENTRY_TOPICS__MODELS"] = s.topics.models
    proc = subprocess.run([sys.executable, "-m", "stream_processors", "vision", "--bootstrap", stack.bootstrap_servers,
                           "--model", str(tmp_path / "absent.onnx"), "--group", s.vision_processor.group_id,
                           "--input-topic", s.topics.frames, "--detections-topic", s.topics.detections,
                           "--metrics-port", "0"], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "run `make models`" in proc.stderr
