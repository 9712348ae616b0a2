"""Fuzz every decoder a processor runs (frame, audio window, detection, model announcement) on
random bytes and headers: nothing may raise except ContractError, and in a pipeline every
record ends as exactly one outcome — garbage only ever as a dead letter with a reason."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors import AudioDetectorConfig, ModelSlot, VisionDetectorConfig, load_detector
from skysentry.messages import (ContractError, Detection, ModelAnnouncement, decode_audio, decode_frame,
                                decode_structured)
from stream_processors.audio import AudioPipeline, AudioProcessorConfig
from stream_processors.core import InputRecord
from stream_processors.models_watch import ModelsWatcher
from stream_processors.testing import audio_record, frame_record, jpeg
from stream_processors.vision import VisionPipeline, VisionProcessorConfig

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                          HealthCheck.too_slow])

VALID_FRAME = frame_record(width=160, height=120)
VALID_AUDIO = audio_record()

header_names = st.sampled_from(["ce_id", "ce_source", "ce_type", "ce_time", "ce_seq", "ce_width", "ce_height",
                                "ce_site", "ce_specversion", "content-type", "ce_samplerate", "ce_samples", "x"])
header_values = st.one_of(st.binary(max_size=40), st.text(max_size=30).map(str.encode),
                          st.integers(-5, 100_000).map(lambda i: str(i).encode()),
                          st.sampled_from([b"skysentry.frame.v1", b"skysentry.audio.v1", b"image/jpeg", b"audio/L16",
                                           b"2026-11-23T12:00:00Z", b"1.0", b"nan", b"\xff\xfe"]))
random_headers = st.lists(st.tuples(header_names, header_values), max_size=12)


@st.composite
def mutated_headers(draw, valid):
    """Valid headers with some values replaced, some dropped, some added."""
    headers = list(valid)
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(["replace", "drop", "add"]))
        if op == "add" or not headers:
            headers.append((draw(header_names), draw(header_values)))
        elif op == "drop":
            headers.pop(draw(st.integers(0, len(headers) - 1)))
        else:
            i = draw(st.integers(0, len(headers) - 1))
            headers[i] = (headers[i][0], draw(header_values))
    return headers


frame_values = st.one_of(st.none(), st.binary(max_size=300), st.binary(max_size=300).map(lambda b: b"\xff\xd8\xff" + b),
                         st.just(VALID_FRAME[1]), st.just(VALID_FRAME[1][: len(VALID_FRAME[1]) // 2]))
audio_values = st.one_of(st.none(), st.binary(max_size=300), st.just(VALID_AUDIO[1]), st.just(VALID_AUDIO[1][:-1]))


@FUZZ
@given(value=frame_values, headers=st.one_of(random_headers, mutated_headers(VALID_FRAME[2])))
def test_frame_decoder_only_raises_contract_errors(value, headers):
    try:
        decode_frame(value, headers)
    except ContractError:
        pass


@FUZZ
@given(value=audio_values, headers=st.one_of(random_headers, mutated_headers(VALID_AUDIO[2])))
def test_audio_decoder_only_raises_contract_errors(value, headers):
    try:
        decode_audio(value, headers)
    except ContractError:
        pass


json_values = st.recursive(st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=20),
                           lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=12), c, max_size=5),
                           max_leaves=12)


@st.composite
def structured_values(draw):
    kind = draw(st.sampled_from(["bytes", "json", "envelope"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    data = draw(st.dictionaries(st.sampled_from(["name", "version", "task", "uri", "sha256", "id", "site", "source",
                                                 "modality", "score", "model", "input_event_id", "captured_at",
                                                 "processed_at", "boxes", "extra"]), json_values, max_size=10))
    envelope = {"specversion": draw(st.sampled_from(["1.0", "0.3", 1])), "id": "x", "source": "s",
                "type": draw(st.sampled_from(["skysentry.detection.v1", "skysentry.model.v1", "other"])),
                "data": data}
    return json.dumps(envelope).encode()


@FUZZ
@given(value=st.one_of(st.none(), structured_values()))
def test_detection_and_announcement_decoders_only_raise_contract_errors(value):
    for expect in (Detection, ModelAnnouncement):
        try:
            decode_structured(value, expect)
        except ContractError:
            pass


# -- through the pipelines: no crash, exactly one outcome each, garbage → dead letters ------------


@pytest.fixture(scope="module")
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory):
    from detectors.testing import toy_audio_model, toy_vision_model

    d = tmp_path_factory.mktemp("fuzz-models")
    v = VisionProcessorConfig(detector=VisionDetectorConfig(model=toy_vision_model(d / "v.onnx")), max_frame_age_s=None)
    a = AudioProcessorConfig(detector=AudioDetectorConfig(model=toy_audio_model(d / "a.onnx")))
    return (VisionPipeline(v, ModelSlot(load_detector(v.detector))),
            AudioPipeline(a, ModelSlot(load_detector(a.detector))))


records = st.lists(st.tuples(st.one_of(frame_values, audio_values),
                             st.one_of(random_headers, mutated_headers(VALID_FRAME[2]),
                                       mutated_headers(VALID_AUDIO[2]))), min_size=1, max_size=6)


@FUZZ
@given(batch=records)
def test_pipelines_turn_garbage_into_dead_letters_and_keep_going(loop, pipelines, batch):
    for pipeline in pipelines:
        inputs = [InputRecord("in", 0, i, b"k", v, h) for i, (v, h) in enumerate(batch)]
        result = loop.run_until_complete(pipeline.process(inputs))
        assert result.total == len(inputs)
        assert all(isinstance(why, str) and why for _, why in result.dead)
        assert result.outcomes["dead_lettered"] == len(result.dead)
        # a record that is not a readable, valid input never yields a detection
        assert len(result.detections) <= result.outcomes["inferred"]


class _RecordingProducer:
    def __init__(self):
        self.sent = []

    async def send_and_wait(self, topic, value=None, key=None, headers=None):
        self.sent.append((topic, value, dict(headers)))


@FUZZ
@given(value=st.one_of(st.none(), structured_values()))
def test_invalid_announcements_go_to_the_models_dlq(loop, value):
    watcher = ModelsWatcher.__new__(ModelsWatcher)
    watcher.producer, watcher.invalid = _RecordingProducer(), 0
    record = InputRecord("models", 0, 3, b"k", value, [])
    ann = loop.run_until_complete(watcher._parse(record))
    if ann is None:
        (topic, sent_value, headers), = watcher.producer.sent
        assert topic == "models.dlq" and sent_value == value and headers["error"].startswith(b"invalid model")
    else:
        assert isinstance(ann, ModelAnnouncement) and watcher.producer.sent == []


def test_fuzz_inputs_include_the_valid_ones():
    """Sanity: the strategies' valid seeds do decode, so the fuzzers exercise the happy path too."""
    decode_frame(VALID_FRAME[1], VALID_FRAME[2])
    decode_audio(VALID_AUDIO[1], VALID_AUDIO[2])
    assert jpeg()[:3] == b"\xff\xd8\xff"
