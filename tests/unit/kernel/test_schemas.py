"""docs/schemas/ must match the pydantic models: a contract change is a visible diff."""

from skysentry.schemas import SCHEMA_DIR, render_schemas


def test_committed_schemas_match_the_models():
    rendered = render_schemas()
    on_disk = {p.name: p.read_text() for p in SCHEMA_DIR.glob("*.json")}
    assert set(on_disk) == set(rendered), "run `skysentry schemas --write` and commit docs/schemas/"
    for name, text in rendered.items():
        assert on_disk[name] == text, f"{name} drifted from its model: run `skysentry schemas --write`"


def test_detection_schema_names_its_required_lineage_fields():
    import json

    schema = json.loads(render_schemas()["skysentry.detection.v1.json"])
    for field in ("input_event_id", "captured_at", "processed_at", "model", "score", "source", "site"):
        assert field in schema["required"]
