"""JSON Schemas of every message, generated from the code into docs/schemas/: the ``data`` of
each structured event (from its pydantic model) and the Kafka headers of each binary-mode
sensor event (from its header list, the one ``from_headers`` enforces).

``skysentry schemas --write`` regenerates them; ``tests/unit/test_schemas.py`` fails when
the committed files drift from the models, so a contract change is always a visible diff.
"""

from __future__ import annotations

import json
from pathlib import Path

from skysentry.messages import JSON_MESSAGES, SENSOR_EVENTS, Envelope, SensorEvent, WebhookBody

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "docs" / "schemas"


def render_schemas() -> dict[str, str]:
    """File name → JSON text for every structured message and the envelope."""
    out: dict[str, str] = {}
    for model in (*JSON_MESSAGES, Envelope):
        name = getattr(model, "CE_TYPE", "skysentry.envelope")
        schema = model.model_json_schema(mode="serialization")
        schema["$id"] = f"https://skysentry.dev/schemas/{name}.json"
        if hasattr(model, "CE_TYPE"):
            schema["description"] = (schema.get("description", "") +
                                     f"\n\nThe `data` of a CloudEvent of type `{name}`.").strip()
        out[f"{name}.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    webhook = WebhookBody.model_json_schema(mode="serialization")
    webhook["$id"] = f"https://skysentry.dev/schemas/{WebhookBody.SCHEMA_NAME}.json"
    out[f"{WebhookBody.SCHEMA_NAME}.json"] = json.dumps(webhook, indent=2, sort_keys=True) + "\n"
    for event in SENSOR_EVENTS:
        out[f"{event.CE_TYPE}.json"] = json.dumps(header_schema(event), indent=2, sort_keys=True) + "\n"
    return out


def header_schema(event: type[SensorEvent]) -> dict:
    """The headers of a binary-mode record as a JSON object of strings (header name → UTF-8
    value), with the key and the value described beside them."""
    properties = {}
    for spec in event.header_specs():
        prop = {"type": "string", "description": spec.description}
        if spec.pattern:
            prop["pattern"] = spec.pattern
        properties[spec.name] = prop
    properties["ce_type"]["const"] = event.CE_TYPE
    properties["content-type"]["examples"] = [event(source="s", time="2026-01-01T00:00:00Z", seq=0,
                                                     **{n: 16000 for n in event.EXTENSIONS}).content_type()]
    return {
        "$id": f"https://skysentry.dev/schemas/{event.CE_TYPE}.json",
        "title": f"{event.CE_TYPE} record headers",
        "description": (f"The Kafka record headers of a `{event.CE_TYPE}` event (CloudEvents Kafka binding, "
                        "binary mode): header name -> UTF-8 value. Headers not listed are ignored. "
                        "See docs/contracts.md."),
        "type": "object",
        "properties": properties,
        "required": list(event.required_headers()),
        "additionalProperties": {"type": "string"},
        "x-kafka-key": "the source id (ce_source) as UTF-8 bytes; it chooses the partition (murmur2, "
                       "docs/contracts.md), so one source stays in order",
        "x-kafka-value": event.PAYLOAD,
    }


def write_schemas(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_schemas().items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written
