"""Hypothesis drives every decoder of what crosses SkySentry's boundary: frame, audio window,
detection / score summary (both CloudEvents modes), alert, model announcement, and the YAML
config. Inputs are garbage and, more usefully, valid records with fields dropped or replaced
by anything. Each decoder must either return a value that keeps its promises or refuse with
its clear error type: ContractError for records (what the consumers dead-letter, with the
message as the `error` header), ValidationError or ConfigError for the config (what the CLIs
print). Any other exception is a crash and fails.

`make test` runs a few hundred examples of each; `make fuzz` sets SKYSENTRY_FUZZ_EXAMPLES so
that together they run at least 10^5 (tests/fuzz/conftest.py counts and checks).
"""

from __future__ import annotations

import json
import os
import string
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from skysentry.config import ConfigError, Settings
from skysentry.messages import (JPEG_MAGIC, Alert, ContractError, Detection, ModelAnnouncement, ModelRef,
                                ScoreSummary, decode_audio, decode_event, decode_frame, decode_structured,
                                encode_structured)

EXAMPLES = int(os.environ.get("SKYSENTRY_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])
COUNTS: dict[str, int] = {}  # decoder -> inputs tried (tests/fuzz/conftest.py reports and checks them)
ACCEPTED: dict[str, int] = {}  # decoder -> inputs it read: the fuzzer reaches past the first check


def tried(decoder: str) -> None:
    COUNTS[decoder] = COUNTS.get(decoder, 0) + 1


def accepted(decoder: str) -> None:
    ACCEPTED[decoder] = ACCEPTED.get(decoder, 0) + 1


def refused_clearly(exc: BaseException) -> None:
    """A refusal is a one-line reason a person can act on (it becomes the dead letter's header)."""
    text = str(exc)
    assert text.strip(), f"{type(exc).__name__} without a reason"
    assert len(text) < 2000, text[:200]


# ------------------------------------------------------------------------------ value pools

NOW = datetime.now(timezone.utc)
json_scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True)
                | st.text(max_size=30))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)
texts = st.text(max_size=40) | st.sampled_from(["", " ", "0", "-1", "1e9", "16000", "1.0", "NaN", "１２",
                                                "2026-05-01T12:00:00Z", "2026-05-01T12:00:00", "9" * 40])
header_values = (st.none() | st.binary(max_size=40) | texts.map(lambda t: t.encode("utf-8", "surrogatepass")))


def mutated(valid: dict, values=json_values) -> st.SearchStrategy[dict]:
    """``valid`` with some keys dropped, some replaced by anything, some added."""
    keys = sorted(valid)
    return st.builds(
        lambda drop, replace, extra: {**{k: v for k, v in valid.items() if k not in drop}, **replace, **extra},
        st.sets(st.sampled_from(keys), max_size=3),
        st.dictionaries(st.sampled_from(keys), values, max_size=3),
        st.dictionaries(st.text(max_size=8), values, max_size=2))


def headers_from(valid: dict[str, str], extra_names: list[str]) -> st.SearchStrategy[list[tuple[str, bytes | None]]]:
    """Valid headers with some dropped, replaced (text, bytes, None), duplicated or added."""
    names = sorted(valid) + extra_names
    unchanged = st.just([(k, v.encode()) for k, v in valid.items()])
    return unchanged | st.builds(
        lambda drop, replace, dup: ([(k, v.encode()) for k, v in valid.items() if k not in drop]
                                    + list(replace.items()) + dup),
        st.sets(st.sampled_from(sorted(valid)), max_size=3),
        st.dictionaries(st.sampled_from(names) | st.text(max_size=12), header_values, max_size=3),
        st.lists(st.tuples(st.sampled_from(names), header_values), max_size=2))


# ------------------------------------------------------------------------------ frames


FRAME = {"ce_specversion": "1.0", "ce_type": "skysentry.frame.v1", "content-type": "image/jpeg",
         "ce_id": str(uuid.uuid4()), "ce_source": "cam-1", "ce_time": "2026-05-01T12:00:00.040Z", "ce_seq": "3",
         "ce_width": "640", "ce_height": "480", "ce_site": "north"}
jpeg_like = st.binary(max_size=64).map(lambda b: JPEG_MAGIC + b)
frame_values = st.one_of(jpeg_like, jpeg_like, st.none(), st.binary(max_size=64),
                         st.sampled_from([b"", JPEG_MAGIC, b"\x89PNG\r\n\x1a\n", b"\xff\xd8"]))


@FUZZ
@given(headers=headers_from(FRAME, ["ce_samples", "ce_samplerate"]) | st.lists(st.tuples(st.text(max_size=12), header_values), max_size=6),
       value=frame_values,
       content_type=st.one_of(st.none(), st.none(), st.sampled_from(["IMAGE/JPEG", "image/jpeg; q=1", "image/png", "image/jpeg;",
                                                 "image/", "jpeg", "image/jpeg; x=\"a;b\"", "image/jpeg ;a=b"])))
def test_frame_decoder(headers, value, content_type):
    tried("frame")
    if content_type is not None:
        headers = [(k, v) for k, v in headers if k != "content-type"] + [("content-type", content_type.encode())]
    try:
        event = decode_frame(value, headers)
    except ContractError as exc:
        refused_clearly(exc)
        return
    accepted("frame")
    assert bytes(value[:3]) == JPEG_MAGIC
    assert event.CE_TYPE == "skysentry.frame.v1" and 0 < event.width <= 16384 and 0 < event.height <= 16384
    assert event.time.tzinfo is not None and event.seq >= 0


# ------------------------------------------------------------------------------ audio windows


AUDIO = {"ce_specversion": "1.0", "ce_type": "skysentry.audio.v1",
         "content-type": "audio/x-raw;format=S16LE;rate=16000;channels=1", "ce_id": str(uuid.uuid4()),
         "ce_source": "mic-1", "ce_time": "2026-05-01T12:00:00Z", "ce_seq": "7", "ce_samplerate": "16000",
         "ce_samples": "8"}
audio_types = st.sampled_from([
    "audio/x-raw;format=S16LE;rate=16000;channels=1", "audio/x-raw;format=S16BE;rate=16000", "AUDIO/L16;RATE=16000",
    "audio/L16;rate=16000;channels=1", "audio/L16", "audio/L16;rate=8000", "audio/L16;rate=16000;channels=2",
    "audio/x-raw;format=F32LE;rate=16000", "audio/x-float", "audio/L16;encoding=float", "audio/wav", "audio/L24",
    "audio/x-raw", "audio/L16;rate=\"16000\"", "audio/L16;rate", "audio/L16;;", "audio/x-raw;format=s16le"])


@FUZZ
@given(headers=headers_from(AUDIO, ["ce_width", "ce_height"]),
       content_type=st.one_of(st.none(), st.none(), audio_types, texts),
       samples=st.none() | st.integers(-3, 40), extra_bytes=st.just(0) | st.integers(-3, 3),
       payload=st.none() | st.binary(max_size=90))
def test_audio_decoder(headers, content_type, samples, extra_bytes, payload):
    tried("audio")
    if content_type is not None:
        headers = [(k, v) for k, v in headers if k != "content-type"] + [("content-type", content_type.encode())]
    if samples is not None:  # a payload near the right length, where the interesting mistakes are
        headers = [(k, v) for k, v in headers if k != "ce_samples"] + [("ce_samples", str(samples).encode())]
        payload = bytes(max(0, 2 * samples + extra_bytes))
    try:
        event, pcm = decode_audio(payload, headers)
    except ContractError as exc:
        refused_clearly(exc)
        return
    accepted("audio")
    assert pcm.dtype == np.dtype("<i2") and pcm.ndim == 1 and len(pcm) == event.samples
    assert len(payload) == 2 * event.samples and event.samplerate > 0


# ------------------------------------------------------------------------------ JSON events


def envelope(message, **overrides) -> dict:
    value, _ = encode_structured(message, source="fuzz")
    return {**json.loads(value), **overrides}


MODEL = ModelRef(name="m", version="1")
DETECTION = Detection(site="north", source="cam-1", modality="vision", score=0.9, model=MODEL, input_event_id="x",
                      captured_at=NOW, processed_at=NOW, boxes=[{"x1": 0, "y1": 0, "x2": 1, "y2": 1, "score": 0.9}])
SUMMARY = ScoreSummary(site="north", source="mic-1", modality="audio", model=MODEL, window_start=NOW,
                       window_end=NOW + timedelta(seconds=1), windows=3, max_score=0.4, mean_score=0.2)
ALERT = Alert(fingerprint="0123456789abcdef", alert_id=str(uuid.uuid4()), event="resolved", status="resolved",
              severity="critical", site="north", source="cam-1", modalities=["vision", "audio"], max_score=0.9,
              starts_at=NOW, last_seen_at=NOW, ends_at=NOW, detection_ids=["a"], summary="s")
ANNOUNCEMENT = ModelAnnouncement(name="vision-drone", version="3", task="vision", uri="models/v.onnx", sha256="a" * 64)


def structured_values(message) -> st.SearchStrategy[bytes]:
    """The record value: a valid envelope with its envelope and data fields mutated, other JSON, or bytes."""
    valid = envelope(message)
    data_mutations = mutated(valid["data"]).map(lambda d: {**valid, "data": d})
    envelope_mutations = mutated(valid, json_values | st.sampled_from(
        [t for t in ("skysentry.detection.v1", "skysentry.score_summary.v1", "skysentry.alert.v1",
                     "skysentry.model.v1", "skysentry.detection.v2")]))
    as_json = (data_mutations | envelope_mutations | json_values).map(
        lambda v: json.dumps(v, allow_nan=True).encode())
    return as_json | st.binary(max_size=80) | st.sampled_from([b"", b"{", b"null", b"[]", b"\xff{}"])


def check_structured(decoder: str, decode, expect) -> None:
    tried(decoder)
    try:
        env, message = decode()
    except ContractError as exc:
        refused_clearly(exc)
        return
    accepted(decoder)
    allowed = expect if isinstance(expect, tuple) else (expect,)
    assert type(message) in allowed and env.type == type(message).CE_TYPE


structured_headers = st.sampled_from([
    [("content-type", b"application/cloudevents+json")], [("content-type", b"APPLICATION/CloudEvents+JSON; charset=utf-8")],
    [], [("content-type", b"text/plain")], [("content-type", b"\xff")], [("content-type", None)],
    [("content-type", b"application/json")]])


@FUZZ
@given(value=structured_values(DETECTION) | structured_values(SUMMARY), headers=structured_headers)
def test_detection_decoder_structured_mode(value, headers):
    check_structured("detection", lambda: decode_event(value, headers, (Detection, ScoreSummary)),
                     (Detection, ScoreSummary))


binary_detection_headers = headers_from(
    {"content-type": "application/json", "ce_specversion": "1.0", "ce_id": "d-1", "ce_source": "vendor/p",
     "ce_type": "skysentry.detection.v1", "ce_time": "2026-05-01T12:00:00Z"}, ["ce_datacontenttype", "ce_data"])


@FUZZ
@given(data=mutated(DETECTION.model_dump(mode="json")) | json_values, headers=binary_detection_headers)
def test_detection_decoder_binary_mode(data, headers):
    value = json.dumps(data, allow_nan=True).encode()
    check_structured("detection", lambda: decode_event(value, headers, (Detection, ScoreSummary)),
                     (Detection, ScoreSummary))


@FUZZ
@given(value=structured_values(ALERT))
def test_alert_decoder(value):
    check_structured("alert", lambda: decode_structured(value, Alert), Alert)


@FUZZ
@given(value=structured_values(ANNOUNCEMENT))
def test_model_announcement_decoder(value):
    check_structured("model announcement", lambda: decode_structured(value, ModelAnnouncement), ModelAnnouncement)


# ------------------------------------------------------------------------------ config

config_keys = st.sampled_from(["kafka", "redis", "topics", "metrics", "log", "camera", "mic", "alerting",
                               "vision_processor", "audio_processor", "bootstrap_servers", "partitions", "port"])
config_docs = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(config_keys | st.text(max_size=8), inner, max_size=4), max_leaves=10)
config_texts = (config_docs.map(lambda d: yaml.safe_dump(d, allow_unicode=True).encode())
                | st.text(alphabet=string.printable, max_size=60).map(str.encode)
                | st.binary(max_size=40)
                | st.sampled_from([b"", b"a: [", b"- 1", b"x", b"\xff\xfe", b"!!python/object:os.system x",
                                   b"kafka: 3", b"&a [*a]", b"a: &a [*a, *a]", b"\x00"]))


@pytest.fixture(scope="module")
def config_path(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz-config") / "config.yaml"


@FUZZ
@given(text=config_texts)
def test_config_loader(config_path, text):
    tried("config")
    from alerting.config import AlertingServiceSettings
    from stream_processors.settings import ProcessorSettings

    config_path.write_bytes(text)
    for cls in (Settings, AlertingServiceSettings, ProcessorSettings):
        try:
            cls.load(config_path)
        except (ValidationError, ConfigError) as exc:
            refused_clearly(exc)
        else:
            accepted("config")
