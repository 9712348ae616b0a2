"""docs/contracts.md and the code cannot drift apart: every header the decoders require is
marked required in the page's table (and the optional ones optional), the generated header
schemas say the same, and every event type the code reads or writes is on the page."""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from skysentry.messages import (JSON_MESSAGES, SENSOR_EVENTS, AudioEvent, ContractError, FrameEvent, decode_audio,
                                decode_frame, encode_audio, encode_frame)
from skysentry.schemas import SCHEMA_DIR

DOC = Path(__file__).resolve().parents[3] / "docs" / "contracts.md"
SECTION = {FrameEvent: "## Frames", AudioEvent: "## Audio windows"}
T0 = datetime(2026, 5, 1, 12, tzinfo=timezone.utc)


def doc_headers(event: type) -> dict[str, bool]:
    """header → required, from the table in the event's section of docs/contracts.md."""
    text = DOC.read_text()
    section = text.split(SECTION[event], 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([^`]+)` \| (yes|no) \|", section, flags=re.M)
    return {name: required == "yes" for name, required in rows}


def record(event: type):
    if event is FrameEvent:
        return encode_frame(FrameEvent(source="cam", time=T0, seq=0, width=4, height=4), b"\xff\xd8\xff\xe0")
    return encode_audio(AudioEvent(source="mic", time=T0, seq=0, samplerate=16000, samples=4), np.zeros(4, np.int16))


def decode(event: type, value: bytes, headers) -> None:
    (decode_frame if event is FrameEvent else decode_audio)(value, headers)


@pytest.mark.parametrize("event", SENSOR_EVENTS, ids=lambda e: e.CE_TYPE)
def test_the_page_lists_exactly_the_headers_the_decoder_requires(event):
    specs = {s.name: s.required for s in event.header_specs()}
    assert doc_headers(event) == specs, "docs/contracts.md's header table differs from the code's"
    schema = json.loads((SCHEMA_DIR / f"{event.CE_TYPE}.json").read_text())
    assert schema["required"] == list(event.required_headers()) and set(schema["properties"]) == set(specs)


@pytest.mark.parametrize("event", SENSOR_EVENTS, ids=lambda e: e.CE_TYPE)
def test_the_header_list_is_what_the_decoder_enforces(event):
    """Behaviour, not just the list: without a required header a record is refused, naming
    it; without an optional one it is read. A header the encoder sends is in the list."""
    _, value, headers = record(event)
    decode(event, value, headers)
    sent = {k for k, _ in headers}
    assert sent == {s.name for s in event.header_specs()}
    for spec in event.header_specs():
        without = [(k, v) for k, v in headers if k != spec.name]
        if spec.required:
            with pytest.raises(ContractError, match=spec.name):
                decode(event, value, without)
        else:
            decode(event, value, without)


def test_the_page_names_every_event_type_and_its_schema():
    text = DOC.read_text()
    for model in (*JSON_MESSAGES, *SENSOR_EVENTS):
        assert f"`{model.CE_TYPE}`" in text
        assert f"(schemas/{model.CE_TYPE}.json)" in text


def test_the_webhook_body_is_what_its_schema_says():
    """The body the webhook channel sends validates against docs/schemas/skysentry.webhook.v1.json,
    and the schema's model names every field the channel writes (no undocumented field)."""
    import jsonschema

    from alerting.channels.webhook import body_of
    from alerting.notification import Evidence, Notification
    from skysentry.messages import Alert, WebhookBody, WebhookEvidence

    alert = Alert(fingerprint="f", event="firing", status="firing", severity="critical", site="north", source="cam-1",
                  modalities=["vision"], max_score=0.9, starts_at=T0, last_seen_at=T0, detection_ids=["d1"],
                  summary="drone", alert_id="0190")
    for evidence in (None, Evidence(detection_id="d1", input_event_id="frame-9", source="cam-1", modality="vision",
                                    score=0.9, model="vision 3", box=[0.1, 0.2, 0.3, 0.4], captured_at=T0)):
        n = Notification(idempotency_key="k", channel="ops", route="root", event="firing", alert=alert,
                         sources=["cam-1"], evidence=evidence, decided_at=T0)
        body = json.loads(body_of(n))
        schema = json.loads((SCHEMA_DIR / "skysentry.webhook.v1.json").read_text())
        jsonschema.Draft202012Validator(schema).validate(body)
        assert set(body) == set(WebhookBody.model_fields)
        if evidence is not None:
            assert set(body["evidence"]) == set(WebhookEvidence.model_fields)
        assert WebhookBody.model_validate(body).alert == alert


def test_the_pages_signature_example_verifies():
    import hashlib
    import hmac

    from alerting.channels.webhook import sign, verify_signature

    example = DOC.read_text().split("secret     ", 1)[1].split("```", 1)[0]
    fields = dict(line.split(None, 1) for line in ("secret " + example).strip().splitlines())
    secret, timestamp, body, signature = (fields[k] for k in ("secret", "timestamp", "body", "signature"))
    assert sign(secret, timestamp, body.encode()) == signature
    assert signature == "sha256=" + hmac.new(secret.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()
    assert verify_signature(secret, timestamp, body.encode(), signature, now=int(timestamp) + 60)
    assert not verify_signature(secret, timestamp, body.encode() + b" ", signature, now=int(timestamp) + 60)
