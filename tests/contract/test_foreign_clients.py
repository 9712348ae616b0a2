"""Conformance kit: clients SkySentry did not write, used as docs/asyncapi.yaml says, against
the real broker, the real processors and the real alerting (Redis included).

- kcat (librdkafka) writes camera frames and audio windows exactly as the document's examples:
  one record per file, key = source id, `-H` headers, `partitioner=murmur2_random`; each lands
  on the partition the Java rule gives, and the processors read every one (nothing
  dead-lettered), little-endian and big-endian audio alike;
- the CloudEvents SDK's Kafka binding (cloudevents.core.bindings.kafka) reads those frames and
  windows in binary mode, reads every detection, score summary and alert in structured mode,
  and writes detections in binary mode (sent by kcat) that the alerting reads and fires on;
- kcat reads `detections` and `alerts`; Kafka's own Java console consumer
  (org.apache.kafka.tools.consumer.ConsoleConsumer, the jars the local broker runs on) reads
  `alerts`;
- check-jsonschema validates every captured record (sensor headers, detection, score summary,
  alert data, the envelopes, the webhook body) against docs/schemas.

A camera vendor runs the same kit against its own producer: see docs/contracts.md
("Conformance kit"), `make contract`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import shutil
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pytest
from cloudevents.core.bindings.kafka import KafkaMessage, from_binary_event, from_structured_event, to_binary_event
from cloudevents.core.v1.event import CloudEvent

from alerting.config import AlertingServiceSettings
from alerting.service import AlertingService
from alerting.testing import RecordingReceiver
from deploy.local import stack as local_stack
from detectors.testing import toy_audio_model, toy_vision_model
from skysentry.bus import partition_for
from skysentry.schemas import SCHEMA_DIR
from stream_processors.runner import ProcessorService
from skysentry.topics import ensure_topics
from stream_processors.testing import isolated_settings, jpeg, tone

pytestmark = pytest.mark.integration

KCAT = shutil.which("kcat")
CHECK_JSONSCHEMA = Path(sys.executable).with_name("check-jsonschema")
CONSOLE_CONSUMER = "org.apache.kafka.tools.consumer.ConsoleConsumer"


@pytest.fixture(scope="module")
def foreign_clients():
    assert KCAT, "kcat is not installed: `make system-deps` (Debian package kcat)"
    assert CHECK_JSONSCHEMA.exists(), "check-jsonschema is not installed: `make setup-full` (dev extra)"
    assert shutil.which("java"), "Java 17+ is needed for Kafka's console consumer"


# -------------------------------------------------------------------------------- the clients


def kcat_produce(bootstrap: str, topic: str, key: str, value: bytes, headers: dict[str, str], tmp: Path) -> None:
    """One record, as the AsyncAPI document's kcat example writes it (a file is one message)."""
    path = tmp / f"value-{uuid.uuid4().hex}"
    path.write_bytes(value)
    cmd = [KCAT, "-P", "-b", bootstrap, "-t", topic, "-k", key, "-X", "partitioner=murmur2_random"]
    for name, text in headers.items():
        cmd += ["-H", f"{name}={text}"]
    subprocess.run([*cmd, str(path)], check=True, capture_output=True, timeout=30)


def kcat_consume(bootstrap: str, topic: str) -> list[dict]:
    """Every record on ``topic`` now, as kcat's JSON envelope (key, partition, headers, payload)."""
    out = subprocess.run([KCAT, "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-J"],
                         check=True, capture_output=True, timeout=30).stdout
    records = []
    for line in out.decode(errors="replace").splitlines():
        r = json.loads(line)
        flat = r.get("headers") or []
        r["headers"] = dict(zip(flat[::2], flat[1::2]))
        records.append(r)
    return records


async def kcat_until(bootstrap: str, topic: str, enough, timeout: float = 60.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        records = await asyncio.to_thread(kcat_consume, bootstrap, topic)
        if enough(records):
            return records
        assert time.monotonic() < deadline, f"kcat: only {len(records)} records on {topic} after {timeout:g} s"
        await asyncio.sleep(0.5)


def java_console_consumer(bootstrap: str, topic: str, count: int) -> list[tuple[str, str, str]]:
    """(headers, key, value) of the first ``count`` records, read by Kafka's own console consumer."""
    cmd = ["java", *local_stack.TOOL_JVM_OPTS, f"-Dlog4j.configuration={local_stack.LOG4J_PROPERTIES.as_uri()}",
           "-cp", local_stack.kafka_classpath(), CONSOLE_CONSUMER, "--bootstrap-server", bootstrap,
           "--topic", topic, "--from-beginning", "--max-messages", str(count), "--timeout-ms", "30000",
           "--property", "print.headers=true", "--property", "print.key=true"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split("\t") for line in done.stdout.splitlines()]  # headers, key, value; log4j lines have no tab
    rows = [tuple(r) for r in rows if len(r) == 3]
    assert len(rows) == count, done.stdout[-3000:]
    return rows


def check_jsonschema(schema: str, instances: list, tmp: Path) -> None:
    """Validate ``instances`` with the check-jsonschema CLI against docs/schemas/<schema>.json."""
    assert instances, f"nothing to validate against {schema}"
    files = []
    for i, instance in enumerate(instances):
        files.append(tmp / f"{schema}-{i}.json")
        files[-1].write_text(json.dumps(instance))
    done = subprocess.run([str(CHECK_JSONSCHEMA), "--schemafile", str(SCHEMA_DIR / f"{schema}.json"),
                           *map(str, files)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


def message_of(record: dict) -> KafkaMessage:
    """A kcat JSON record as the CloudEvents SDK's Kafka message."""
    return KafkaMessage(headers={k: v.encode() for k, v in record["headers"].items()},
                        key=record["key"], value=(record["payload"] or "").encode())


# ------------------------------------------------------------------- SkySentry's own services


@contextlib.asynccontextmanager
async def services(*runners):
    """Run each (service, ready event) until the block ends; raise what stopped one early."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(service.run(stop)) for service, _ in runners]
    try:
        for (_, ready), task in zip(runners, tasks):
            waiter = asyncio.ensure_future(ready.wait())
            await asyncio.wait({waiter, task}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if task.done():
                task.result()
            assert ready.is_set(), "a service did not start within 60 s"
        yield
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)


# ------------------------------------------------------------------------------------ the kit


def frame_headers(camera: str, seq: int, width: int, height: int) -> dict[str, str]:
    now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    return {"ce_specversion": "1.0", "ce_type": "skysentry.frame.v1", "content-type": "image/jpeg",
            "ce_id": str(uuid.uuid4()), "ce_source": camera, "ce_time": now, "ce_seq": str(seq),
            "ce_width": str(width), "ce_height": str(height), "ce_site": "north"}


def audio_headers(mic: str, seq: int, content_type: str, samples: int) -> dict[str, str]:
    now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    return {"ce_specversion": "1.0", "ce_type": "skysentry.audio.v1", "content-type": content_type,
            "ce_id": str(uuid.uuid4()), "ce_source": mic, "ce_time": now, "ce_seq": str(seq),
            "ce_samplerate": "16000", "ce_samples": str(samples), "ce_site": "north"}


async def test_foreign_clients_write_and_read_every_topic_as_the_document_says(
        stack, foreign_clients, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("contract")
    bootstrap = stack.bootstrap_servers
    uid = uuid.uuid4().hex[:8]
    camera, mic, vendor = f"cam-{uid}", f"mic-{uid}", f"cam-vendor-{uid}"
    models = tmp / "models"
    models.mkdir()
    s = isolated_settings(bootstrap, vision_model=toy_vision_model(models / "v.onnx"),
                          audio_model=toy_audio_model(models / "a.onnx"), prefix="contract",
                          vision_processor={"max_frame_age_s": 120.0})
    topics = s.topics
    await ensure_topics(s.kafka, topics, groups=(s.vision_processor.group_id, s.audio_processor.group_id,
                                                 f"alerting-{uid}"))
    receiver = RecordingReceiver().start()
    alerting = AlertingServiceSettings(topics=topics, metrics={"enabled": False}, alerting={
        "key_prefix": f"contract:{uid}", "group_id": f"alerting-{uid}", "corroboration": 1.0,
        "confirm": {"k": 3, "n": 5, "threshold": 0.6, "horizon": 30}, "tick_poll": 0.05,
        "session_timeout_ms": 6000, "shutdown_grace": 2.0, "outbox": {"lease": 8, "poll": 0.05},
        "channels": {"hook": {"type": "webhook", "url": receiver.url("/hook"), "secret": "whsec-kit"}},
        "route": {"group_wait": 0.2, "repeat_interval": 3600, "receivers": ["hook"]}})

    try:
        vision, audio = ProcessorService(s, "vision"), ProcessorService(s, "audio")
        alert_service = AlertingService(alerting, instance="kit")
        async with services((vision, vision.started), (audio, audio.started), (alert_service, alert_service.ready)):
            # --- kcat writes frames and audio windows exactly as the document says
            frames = []
            for seq in range(6):
                headers = frame_headers(camera, seq, 320, 240)
                await asyncio.to_thread(kcat_produce, bootstrap, topics.frames, camera, jpeg(320, 240, 255),
                                        headers, tmp)
                frames.append(headers)
            pcm = tone()
            windows = []
            for seq, (ctype, order) in enumerate([("audio/x-raw;format=S16LE;rate=16000;channels=1", "<i2"),
                                                  ("audio/L16;rate=16000;channels=1", ">i2")] * 2):
                headers = audio_headers(mic, seq, ctype, len(pcm))
                await asyncio.to_thread(kcat_produce, bootstrap, topics.audio, mic, pcm.astype(order).tobytes(),
                                        headers, tmp)
                windows.append(headers)

            # --- a foreign processor writes detections in CloudEvents binary mode (SDK), sent by kcat
            vendor_ids = []
            for seq in range(6):
                now = datetime.now(timezone.utc)
                data = {"id": str(uuid.uuid4()), "site": "south", "source": vendor, "modality": "vision",
                        "label": "drone", "score": 0.95, "boxes": [], "model": {"name": "vendor-net", "version": "7"},
                        "input_event_id": str(uuid.uuid4()), "input_seq": seq,
                        "captured_at": now.isoformat(), "processed_at": now.isoformat()}
                event = CloudEvent({"specversion": "1.0", "id": data["id"], "source": "vendor/processor",
                                    "type": "skysentry.detection.v1", "datacontenttype": "application/json",
                                    "time": now, "partitionkey": vendor}, data)
                m = to_binary_event(event)
                await asyncio.to_thread(kcat_produce, bootstrap, topics.detections, m.key,
                                        m.value, {k: v.decode() for k, v in m.headers.items()}, tmp)
                vendor_ids.append(data["id"])

            # --- kcat reads detections; the alerting fires for the camera and for the vendor
            def detections_enough(records):
                seen = Counter()
                for r in records:
                    if r["headers"].get("content-type") == "application/cloudevents+json":
                        e = json.loads(r["payload"])
                        seen[(e["type"], e["data"]["modality"])] += 1
                return (seen[("skysentry.detection.v1", "vision")] >= 6 and seen[("skysentry.detection.v1", "audio")] >= 4
                        and seen[("skysentry.score_summary.v1", "vision")] and seen[("skysentry.score_summary.v1", "audio")])

            detections = await kcat_until(bootstrap, topics.detections, detections_enough)
            alerts = await kcat_until(bootstrap, topics.alerts,
                                      lambda rs: {json.loads(r["payload"])["data"]["source"] for r in rs}
                                      >= {camera, vendor})
            hooks = await receiver.await_for(2, "/hook", timeout=30)
    finally:
        receiver.stop()
    alerts = kcat_consume(bootstrap, topics.alerts)  # all of them, now that the alerting stopped
    dead = {t: kcat_consume(bootstrap, f"{t}.dlq") for t in (topics.frames, topics.audio, topics.detections)}

    # nothing any foreign client wrote was refused
    assert dead == {t: [] for t in dead}, {t: [r["headers"].get("error") for r in rs] for t, rs in dead.items()}

    # kcat with murmur2_random put every source where SkySentry's producers (the Java rule) would
    for topic, key in ((topics.frames, camera), (topics.audio, mic), (topics.detections, vendor)):
        parts = {r["partition"] for r in kcat_consume(bootstrap, topic) if r["key"] == key}
        assert parts == {partition_for(key.encode(), topics.partitions)}, (topic, parts)

    # the CloudEvents SDK reads the sensor records in binary mode, as written
    sensor = [r for t in (topics.frames, topics.audio) for r in kcat_consume(bootstrap, t)]
    for r in sensor:
        event = from_binary_event(KafkaMessage(headers={k: v.encode() for k, v in r["headers"].items()},
                                               key=r["key"], value=b""))
        assert event.get_type() in ("skysentry.frame.v1", "skysentry.audio.v1")
        assert event.get_source() == r["key"]
    assert {r["headers"]["ce_id"] for r in sensor} == {h["ce_id"] for h in frames + windows}

    # ... and every detection, score summary and alert in structured mode; ours are all structured
    ours = [r for r in detections if r["key"] != vendor]
    assert all(r["headers"]["content-type"] == "application/cloudevents+json" for r in ours + alerts)
    by_type: dict[str, list[dict]] = {}
    for r in ours + alerts:
        event = from_structured_event(message_of(r))
        assert event.get_specversion() == "1.0" and event.get_attributes()["datacontenttype"] == "application/json"
        assert r["key"] == (event.get_data()["fingerprint"] if event.get_type() == "skysentry.alert.v1"
                            else event.get_data()["source"])
        by_type.setdefault(event.get_type(), []).append(event.get_data())
    assert set(by_type) == {"skysentry.detection.v1", "skysentry.score_summary.v1", "skysentry.alert.v1"}
    inputs = {d["input_event_id"] for d in by_type["skysentry.detection.v1"]}
    assert inputs == {h["ce_id"] for h in frames + windows}  # every frame and window, both byte orders
    audio_scores = {round(d["score"], 4) for d in by_type["skysentry.detection.v1"] if d["modality"] == "audio"}
    assert len(audio_scores) == 1, audio_scores  # big- and little-endian windows read as the same tone
    fired = {a["source"]: a for a in by_type["skysentry.alert.v1"] if a["event"] == "firing"}
    assert {camera, vendor} <= set(fired)
    assert set(fired[vendor]["detection_ids"]) <= set(vendor_ids)

    # Kafka's own Java console consumer reads the alerts: same keys, headers and JSON values
    java = await asyncio.to_thread(java_console_consumer, bootstrap, topics.alerts, len(alerts))
    assert sorted((k, json.loads(v)["id"]) for _, k, v in java) == sorted(
        (r["key"], json.loads(r["payload"])["id"]) for r in alerts)
    assert all("content-type:application/cloudevents+json" in h for h, _, _ in java)

    # check-jsonschema validates everything captured against docs/schemas
    check_jsonschema("skysentry.frame.v1", frames, tmp)
    check_jsonschema("skysentry.audio.v1", windows, tmp)
    check_jsonschema("skysentry.envelope", [json.loads(r["payload"]) for r in ours + alerts], tmp)
    for name, items in by_type.items():
        check_jsonschema(name, items, tmp)
    check_jsonschema("skysentry.webhook.v1", [h.json() for h in hooks], tmp)
    for h in hooks:  # and the signature verifies as the document says
        expected = hmac.new(b"whsec-kit", h.headers["x-skysentry-timestamp"].encode() + b"." + h.body,
                            hashlib.sha256).hexdigest()
        assert hmac.compare_digest("sha256=" + expected, h.headers["x-skysentry-signature"])
