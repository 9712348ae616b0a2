"""JSON Schemas of the JSON messages, generated from the pydantic models into docs/schemas/.

``skysentry schemas --write`` regenerates them; ``tests/unit/test_schemas.py`` fails when
the committed files drift from the models, so a contract change is always a visible diff.
"""

from __future__ import annotations

import json
from pathlib import Path

from skysentry.messages import JSON_MESSAGES, Envelope

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
    return out


def write_schemas(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_schemas().items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written
