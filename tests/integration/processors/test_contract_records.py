"""A consumer of another system reads `detections` as docs/contracts.md says: dispatch on the
CloudEvents `type`, validate `data` against the schema that type names. On a real run (both
processors on the real broker, fed as a foreign sensor would be, with both accepted PCM byte
orders) every record validates, and both types occur, so validating everything against the
detection schema alone would fail."""

from __future__ import annotations

import json
import time
from collections import Counter

import jsonschema
import numpy as np
import pytest

from skysentry.bus import make_consumer
from skysentry.schemas import SCHEMA_DIR
from stream_processors.testing import audio_record, create_topics, frame_record, isolated_settings, jpeg, publish

pytestmark = pytest.mark.integration


def validator(name: str) -> jsonschema.Validator:
    schema = json.loads((SCHEMA_DIR / f"{name}.json").read_text())
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


async def read_all(kafka, topic: str, enough, timeout: float = 40.0) -> list:
    consumer = make_consumer(kafka, topic, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    records, deadline = [], time.monotonic() + timeout
    try:
        while not enough(records):
            assert time.monotonic() < deadline, f"only {len(records)} records on {topic}"
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


async def test_every_detections_record_validates_against_the_schema_its_type_names(stack, toy_models, run_processor):
    s = isolated_settings(stack.bootstrap_servers, vision_model=toy_models["vision"], audio_model=toy_models["audio"],
                          vision_processor={"max_frame_age_s": 60.0})
    await create_topics(s)
    frames = [frame_record("cam-c", i, width=320, height=240, data=jpeg(320, 240, brightness=255 * (i % 2)))
              for i in range(6)]
    windows = []
    for i in range(6):
        key, value, headers, _ = audio_record("mic-c", i)
        if i % 2:  # the RFC 2586 form a foreign microphone may send: big-endian audio/L16
            value = np.frombuffer(value, "<i2").astype(">i2").tobytes()
            headers = [(k, b"audio/L16;rate=16000;channels=1" if k == "content-type" else v) for k, v in headers]
        windows.append((key, value, headers))
    header_checks = {"skysentry.frame.v1": validator("skysentry.frame.v1"),
                     "skysentry.audio.v1": validator("skysentry.audio.v1")}
    for _, _, headers in [f[:3] for f in frames] + windows:
        h = {k: v.decode() for k, v in headers}
        header_checks[h["ce_type"]].validate(h)  # what we send is what the header schemas say

    async with run_processor(s, "vision"), run_processor(s, "audio"):
        await publish(s.kafka, s.topics.frames, [f[:3] for f in frames])
        await publish(s.kafka, s.topics.audio, windows)

        def enough(records):
            types = Counter((json.loads(r.value)["type"], json.loads(r.value)["data"]["modality"]) for r in records)
            return (types[("skysentry.detection.v1", "audio")] == len(windows)
                    and all(types[(t, m)] for t in ("skysentry.detection.v1", "skysentry.score_summary.v1")
                            for m in ("vision", "audio")))
        records = await read_all(s.kafka, s.topics.detections, enough)

    envelope = validator("skysentry.envelope")
    by_type = {t: validator(t) for t in ("skysentry.detection.v1", "skysentry.score_summary.v1")}
    seen = Counter()
    for r in records:
        assert dict(r.headers)["content-type"] == b"application/cloudevents+json"
        event = json.loads(r.value)
        envelope.validate(event)
        by_type[event["type"]].validate(event["data"])  # dispatch on type, as the page says
        assert r.key.decode() == event["data"]["source"]
        seen[event["type"]] += 1
    # a consumer that validated everything as a detection would have failed on the summaries
    with pytest.raises(jsonschema.ValidationError):
        for r in records:
            by_type["skysentry.detection.v1"].validate(json.loads(r.value)["data"])
    audio_detections = [json.loads(r.value)["data"] for r in records
                        if json.loads(r.value)["type"] == "skysentry.detection.v1"
                        and json.loads(r.value)["data"]["modality"] == "audio"]
    # both byte orders were read as the same tone: every window detected, all scored alike
    assert len(audio_detections) == len(windows)
    assert len({round(d["score"], 4) for d in audio_detections}) == 1, audio_detections
    assert seen["skysentry.detection.v1"] and seen["skysentry.score_summary.v1"]
