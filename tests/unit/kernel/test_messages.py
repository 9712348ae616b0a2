"""Contracts: binary-mode sensor events and structured JSON events round-trip, and
decoders reject what they cannot read with a reason (never another exception)."""

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from skysentry.messages import (AudioEvent, ContractError, Detection, FrameEvent, ModelAnnouncement,
                                ModelRef, decode_audio, decode_event, decode_frame, decode_structured, encode_audio,
                                encode_frame, encode_structured)

T0 = datetime(2026, 11, 23, 12, 0, 0, 123000, tzinfo=timezone.utc)
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 100


def test_frame_round_trip_keeps_every_header():
    event = FrameEvent(source="cam-7", site="north", time=T0, seq=42, width=640, height=360)
    key, value, headers = encode_frame(event, JPEG)
    names = [k for k, _ in headers]
    for required in ("ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "content-type",
                     "ce_seq", "ce_width", "ce_height", "ce_site"):
        assert required in names
    assert key == b"cam-7" and value is JPEG
    assert decode_frame(value, headers) == event


def test_audio_round_trip_is_exact():
    pcm = (np.sin(np.arange(16000) / 10) * 10000).astype(np.int16)
    event = AudioEvent(source="mic-1", time=T0, seq=3, samplerate=16000, samples=16000)
    key, value, headers = encode_audio(event, pcm)
    decoded, samples = decode_audio(value, headers)
    assert decoded == event
    np.testing.assert_array_equal(samples, pcm)
    assert dict(headers)["content-type"] == b"audio/x-raw;format=S16LE;rate=16000;channels=1"
    assert value == pcm.astype("<i2").tobytes()  # little-endian on the wire, as the type says


def with_content_type(headers, content_type: str):
    return [(k, content_type.encode() if k == "content-type" else v) for k, v in headers]


@pytest.mark.parametrize("content_type", ["image/jpeg", "IMAGE/JPEG", "Image/Jpeg; quality=90", " image/jpeg ;q=1"])
def test_frame_content_type_is_a_media_type(content_type):
    event = FrameEvent(source="cam", time=T0, seq=1, width=10, height=10)
    _, value, headers = encode_frame(event, JPEG)
    assert decode_frame(value, with_content_type(headers, content_type)) == event


@pytest.mark.parametrize("content_type, reason", [
    ("image/png", "frames must be JPEG"), ("jpeg", "not a media type"), ("image/jpeg; q", "bad parameter")])
def test_frame_content_type_refusals_say_why(content_type, reason):
    _, value, headers = encode_frame(FrameEvent(source="cam", time=T0, seq=1, width=10, height=10), JPEG)
    with pytest.raises(ContractError, match=reason):
        decode_frame(value, with_content_type(headers, content_type))


RAMP = np.array([1, -2, 300, -32768, 32767, 258], np.int16)  # byte order shows in every value


@pytest.mark.parametrize("content_type, order", [
    ("audio/x-raw;format=S16LE;rate=16000;channels=1", "<"),   # what SkySentry sends
    ("AUDIO/X-RAW; FORMAT=s16le; Rate=16000", "<"),
    ("audio/x-raw;format=S16BE;rate=16000;channels=1", ">"),
    ("audio/L16;rate=16000;channels=1", ">"),                   # RFC 2586 / 3551: network order
    ("audio/l16; rate=\"16000\"", ">"),
    ("audio/L16", "<"),                                         # SkySentry's old form (no rate): deprecated
])
def test_audio_byte_order_follows_the_content_type(content_type, order):
    a = AudioEvent(source="mic", time=T0, seq=0, samplerate=16000, samples=len(RAMP))
    _, _, headers = encode_audio(a, RAMP)
    event, pcm = decode_audio(RAMP.astype(f"{order}i2").tobytes(), with_content_type(headers, content_type))
    assert event == a
    np.testing.assert_array_equal(pcm, RAMP)
    assert pcm.dtype == np.dtype("<i2")


@pytest.mark.parametrize("content_type, reason", [
    ("audio/L16;rate=8000;channels=1", "rate=8000, ce_samplerate says 16000"),
    ("audio/x-raw;format=S16LE;rate=16000;channels=2", "only mono"),
    ("audio/x-raw;format=F32LE;rate=16000;channels=1", "float samples are not accepted"),
    ("audio/x-float32", "float samples are not accepted"),
    ("audio/L16;rate=16000;encoding=float", "float samples are not accepted"),
    ("audio/x-raw;format=S24LE;rate=16000", "is not accepted"),
    ("audio/wav", "is not accepted"),
    ("application/octet-stream", "is not accepted"),
])
def test_audio_content_types_that_contradict_the_window_are_refused(content_type, reason):
    a = AudioEvent(source="mic", time=T0, seq=0, samplerate=16000, samples=8)
    _, _, headers = encode_audio(a, np.zeros(8, np.int16))
    # 4 float32 samples are 16 bytes, what 8 int16 samples take: only the declared type tells
    float_payload = np.linspace(-1, 1, 4, dtype="<f4").tobytes()
    with pytest.raises(ContractError, match=reason):
        decode_audio(float_payload, with_content_type(headers, content_type))


@pytest.mark.parametrize("mutate, reason", [
    (lambda h: [x for x in h if x[0] != "ce_seq"], "missing headers: ce_seq"),
    (lambda h: [(k, b"skysentry.audio.v1" if k == "ce_type" else v) for k, v in h], "ce_type"),
    (lambda h: [(k, b"-5" if k == "ce_seq" else v) for k, v in h], "seq"),
    (lambda h: [(k, b"yesterday" if k == "ce_time" else v) for k, v in h], "time"),
    (lambda h: [(k, b"\xff\xfe" if k == "ce_id" else v) for k, v in h], "unreadable header"),
])
def test_frame_decoder_names_the_problem(mutate, reason):
    event = FrameEvent(source="cam", time=T0, seq=1, width=10, height=10)
    _, value, headers = encode_frame(event, JPEG)
    with pytest.raises(ContractError, match=reason):
        decode_frame(value, mutate(headers))


def test_frame_decoder_rejects_non_jpeg_and_short_audio():
    event = FrameEvent(source="cam", time=T0, seq=1, width=10, height=10)
    _, _, headers = encode_frame(event, JPEG)
    with pytest.raises(ContractError, match="not a JPEG"):
        decode_frame(b"GIF89a...", headers)
    a = AudioEvent(source="mic", time=T0, seq=0, samplerate=16000, samples=16000)
    _, value, headers = encode_audio(a, np.zeros(16000, np.int16))
    with pytest.raises(ContractError, match="expected 32000"):
        decode_audio(value[:1000], headers)


def detection(**kw) -> Detection:
    base = dict(site="s", source="cam-1", modality="vision", score=0.9, model=ModelRef(name="v", version="1"),
                input_event_id="abc", captured_at=T0, processed_at=T0 + timedelta(milliseconds=40))
    return Detection(**(base | kw))


def test_structured_round_trip_and_lineage():
    d = detection()
    value, headers = encode_structured(d, source="skysentry/processor/vision")
    envelope, decoded = decode_structured(value, Detection)
    assert decoded == d
    assert envelope.id == d.id  # envelope id = detection id, so lineage survives
    assert envelope.type == "skysentry.detection.v1"
    assert headers == [("content-type", b"application/cloudevents+json")]


@pytest.mark.parametrize("value, reason", [
    (b"", "empty"), (b"{not json", "not JSON"), (b"[1,2]", "expected an object"),
    (b'{"specversion":"0.3","id":"1","source":"x","type":"t","data":{}}', "CloudEvents"),
    (b'{"specversion":"1.0","id":"1","source":"x","type":"skysentry.detection.v9","data":{}}', "cannot read"),
    (b'{"specversion":"1.0","id":"1","source":"x","type":"skysentry.detection.v1","data":{"score":2}}', "bad skysentry.detection.v1"),
])
def test_structured_decoder_names_the_problem(value, reason):
    with pytest.raises(ContractError, match=reason):
        decode_structured(value, Detection)


def test_structured_decoder_limits_accepted_types():
    ann = ModelAnnouncement(name="audio", version="2", task="audio", uri="/m.onnx", sha256="0" * 64)
    value, _ = encode_structured(ann, source="trainer")
    with pytest.raises(ContractError, match="expected skysentry.detection.v1"):
        decode_structured(value, Detection)
    assert decode_structured(value, (Detection, ModelAnnouncement))[1] == ann


def test_readers_ignore_fields_they_do_not_know():
    """Forward compatibility: a consumer on an older model reads a message that gained an
    optional field (as alerts gained alert_id); drift between models and docs/schemas is
    caught by test_schemas instead."""
    d = detection()
    value, _ = encode_structured(d, source="p")
    newer = json.loads(value)
    newer["data"]["track_id"] = "t-9"
    newer["data"]["boxes"] = [{"x1": 0, "y1": 0, "x2": 1, "y2": 1, "score": 0.9, "area_px": 12}]
    _, read = decode_structured(json.dumps(newer).encode(), Detection)
    assert read.id == d.id and read.boxes[0].score == 0.9


def test_decode_event_reads_both_cloudevents_modes_and_refuses_other_content_types():
    d = detection()
    value, headers = encode_structured(d, source="p")
    assert decode_event(value, headers, Detection)[1] == d
    assert decode_event(value, [("content-type", b"Application/CloudEvents+JSON; charset=utf-8")], Detection)[1] == d
    binary = [("ce_specversion", b"1.0"), ("ce_id", d.id.encode()), ("ce_source", b"p"),
              ("ce_type", b"skysentry.detection.v1"), ("ce_time", b"2026-11-23T12:00:00Z"),
              ("ce_partitionkey", b"cam-1"), ("content-type", b"application/json")]
    envelope, read = decode_event(json.dumps(d.model_dump(mode="json")).encode(), binary, Detection)
    assert read == d and envelope.id == d.id and envelope.source == "p"
    for bad, reason in [([], "no content-type header"), ([("content-type", b"text/plain")], "is not accepted"),
                        ([("content-type", b"application/json")], "without ce_specversion, ce_id, ce_source, ce_type")]:
        with pytest.raises(ContractError, match=reason):
            decode_event(value, bad, Detection)
