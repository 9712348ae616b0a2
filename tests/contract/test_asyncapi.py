"""docs/asyncapi.yaml is a valid AsyncAPI 3 document, parsed by the AsyncAPI Initiative's own
parser (the npm package @asyncapi/parser, run by Node: `make test` installs it into
tests/contract/node_modules), and it says what the code does: every topic the code creates
with its partitions and configuration, every message type the code emits, every header the
decoders require, the dead-letter headers, the webhook headers; the JSON Schemas it references
are the generated ones (which tests/unit/kernel/test_schemas.py ties to the models), and its
examples are accepted by SkySentry's own decoders. Drift in any of these fails here."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from alerting.channels.webhook import WebhookConfig
from skysentry.bus import dlq_headers
from skysentry.config import KafkaSettings, TopicSettings
from skysentry.messages import (JSON_MESSAGES, SENSOR_EVENTS, AudioEvent, FrameEvent, WebhookBody,
                                parse_media_type)
from skysentry.schemas import SCHEMA_DIR
from skysentry.topics import topic_specs

KIT = Path(__file__).resolve().parent
DOC = SCHEMA_DIR.parent / "asyncapi.yaml"


@pytest.fixture(scope="module")
def parsed() -> dict:
    node = shutil.which("node")
    assert node, "Node.js is needed to run the AsyncAPI parser (make system-deps names it)"
    assert (KIT / "node_modules" / "@asyncapi" / "parser").is_dir(), \
        "the AsyncAPI parser is not installed: run `make contract-deps` (npm ci in tests/contract)"
    run = subprocess.run([node, str(KIT / "parse_asyncapi.mjs"), str(DOC)], capture_output=True, text=True,
                         timeout=60, cwd=KIT)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


@pytest.fixture(scope="module")
def doc(parsed) -> dict:
    return parsed["document"]


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(DOC.read_text())


def messages(doc: dict) -> dict[str, dict]:
    return {m["name"]: m for m in doc["components"]["messages"].values()}


def strip_parser_ids(node):
    """The parser tags every schema with x-parser-* ids; without them it is the file's content."""
    if isinstance(node, dict):
        return {k: strip_parser_ids(v) for k, v in node.items() if not k.startswith("x-parser-")}
    if isinstance(node, list):
        return [strip_parser_ids(v) for v in node]
    return node


def generated(name: str) -> dict:
    """A docs/schemas file with its internal references (#/$defs/...) inlined, as the parser gives it."""
    schema = json.loads((SCHEMA_DIR / name).read_text())

    def inline(node):
        if isinstance(node, dict):
            if set(node) == {"$ref"} and node["$ref"].startswith("#/$defs/"):
                return inline(schema["$defs"][node["$ref"].rsplit("/", 1)[1]])
            return {k: inline(v) for k, v in node.items()}
        return [inline(v) for v in node] if isinstance(node, list) else node

    return inline(schema)


def test_the_asyncapi_parser_accepts_the_document_without_errors_or_warnings(parsed):
    problems = [d for d in parsed["diagnostics"] if d["severity"] <= 1]  # 0 error, 1 warning
    assert problems == [], json.dumps(problems, indent=1)
    assert parsed["document"]["asyncapi"].startswith("3.")


def test_every_topic_the_code_creates_is_a_channel_with_its_partitions_and_configuration(doc):
    topics, kafka = TopicSettings(), KafkaSettings()
    by_address = {c["address"]: c for c in doc["channels"].values() if c.get("address")}
    for spec in topic_specs(topics, kafka):
        assert spec.name in by_address, f"topic {spec.name} is not in docs/asyncapi.yaml"
        binding = by_address[spec.name]["bindings"]["kafka"]
        assert binding["topic"] == spec.name
        assert binding["partitions"] == spec.num_partitions, spec.name
        config = binding.get("topicConfiguration", {})
        for key, value in (spec.topic_configs or {}).items():
            documented = config.get(key)
            assert documented is not None, f"{spec.name}: {key}={value} is not documented"
            documented = documented[0] if isinstance(documented, list) else documented
            assert str(documented) == value, f"{spec.name}: {key} is {value}, the document says {documented}"
    kafka_channels = {a for a, c in by_address.items() if "kafka" in c.get("bindings", {})}
    assert kafka_channels == {s.name for s in topic_specs(topics, kafka)}, "a documented topic the code lacks"


def test_every_message_type_the_code_emits_is_documented_with_the_generated_schema(doc, raw):
    documented = messages(doc)
    for model in JSON_MESSAGES:
        assert model.CE_TYPE in documented, f"{model.CE_TYPE} is not a message in docs/asyncapi.yaml"
        payload = documented[model.CE_TYPE]["payload"]
        data = next(p["properties"]["data"] for p in payload["allOf"] if "const" in p["properties"]["type"])
        assert strip_parser_ids(data) == generated(f"{model.CE_TYPE}.json"), f"{model.CE_TYPE}: the document's data schema is not the generated one"
        assert documented[model.CE_TYPE]["contentType"] == "application/cloudevents+json"
    for event in SENSOR_EVENTS:
        assert event.CE_TYPE in documented, f"{event.CE_TYPE} is not a message in docs/asyncapi.yaml"
    webhook = documented[WebhookBody.SCHEMA_NAME]["payload"]
    assert strip_parser_ids(webhook) == generated(f"{WebhookBody.SCHEMA_NAME}.json")
    referenced = set(re.findall(r"schemas/([\w.]+\.json)", DOC.read_text()))
    assert referenced == {p.name for p in SCHEMA_DIR.glob("*.json")}, "every generated schema is referenced"


def test_every_header_the_decoders_require_is_documented(doc):
    documented = messages(doc)
    for event in SENSOR_EVENTS:
        headers = strip_parser_ids(documented[event.CE_TYPE]["headers"])
        assert headers == generated(f"{event.CE_TYPE}.json")
        assert set(headers["required"]) == set(event.required_headers()), event.CE_TYPE
        assert {s.name for s in event.header_specs()} <= set(headers["properties"])
        for name in event.required_headers():  # the prose a person reads names each one too
            assert f"`{name}`" in documented[event.CE_TYPE]["description"], f"{event.CE_TYPE}: {name} not described"


def test_dead_letter_and_webhook_headers_match_the_code(doc):
    class Record:
        topic, partition, offset, headers = "sensor.frames", 0, 7, [("ce_id", b"x"), ("error", b"old")]

    added = [k for k, _ in dlq_headers(Record(), "why")][1:]  # after the input's own headers
    dead = messages(doc)["dead letter"]["headers"]
    assert set(dead["required"]) == set(added)
    hook = messages(doc)[WebhookBody.SCHEMA_NAME]["headers"]["properties"]
    config = WebhookConfig(url="https://x.example/hook", secret="s")
    for name in ("Content-Type", "Idempotency-Key", "X-SkySentry-Event", config.timestamp_header,
                 config.signature_header):
        assert name in hook, name


def test_the_documented_sensor_examples_are_accepted_by_skysentry_decoders(doc):
    for event, name in ((FrameEvent, "skysentry.frame.v1"), (AudioEvent, "skysentry.audio.v1")):
        message = messages(doc)[name]
        schema = json.loads((SCHEMA_DIR / f"{name}.json").read_text())
        for example in message["examples"]:
            jsonschema.validate(example["headers"], schema)
            headers = [(k, str(v).encode()) for k, v in example["headers"].items()]
            event.read_headers(headers)  # raises ContractError if the code would refuse it
        event(source="s", time="2026-01-01T00:00:00Z", seq=0, **{n: 16000 for n in event.EXTENSIONS}
              ).check_content_type(parse_media_type(message["contentType"]))


def test_the_partitioner_is_stated_for_librdkafka_clients(doc):
    text = doc["info"]["description"]
    assert "murmur2" in text and "partitioner=murmur2_random" in text
    key = doc["components"]["schemas"]["sourceKey"]["description"]
    assert "murmur2_random" in key


def test_the_document_version_is_the_newest_in_the_contracts_changelog(doc):
    """A change of the contract bumps info.version and says what changed and how to migrate."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "contracts.md").read_text()
    section = page[page.index("## Versions of this document"):]
    section = section[:section.index("\n## ", 5)]
    versions = re.findall(r"^- \*\*(\d+\.\d+\.\d+)\*\*", section, flags=re.M)
    assert versions, "docs/contracts.md has no version list"
    assert doc["info"]["version"] == versions[0], (doc["info"]["version"], versions)
    assert versions == sorted(versions, key=lambda v: tuple(map(int, v.split("."))), reverse=True)
