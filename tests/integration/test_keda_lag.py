"""The lag KEDA's Kafka trigger reads is the lag that grows while a processor is stopped
(issue 16 item 4), on the real local broker.

The consumer group and topic of each processor's ScaledObject are taken from the chart: the
"topic" and "group" arguments deploy/helm/skysentry/templates/scaledobject.yaml passes, which
name paths in values.yaml (`make check-deploy` checks, on the rendered chart, that they are
the group and topic the processors use). The lag is computed the way KEDA's kafka scaler
computes it (pkg/scalers/kafka_scaler.go, getLagForPartition): per partition, the log-end
offset minus the group's committed offset; with no committed offset and offsetResetPolicy
'earliest', log end minus log start. These default names are used by no other test.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from pathlib import Path

import pytest
import yaml
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from detectors.testing import toy_audio_model, toy_vision_model
from skysentry.bus import client_options, make_consumer, make_producer
from skysentry.config import KafkaSettings, TopicSettings
from skysentry.topics import ensure_topics
from stream_processors.runner import ProcessorService
from stream_processors.settings import ProcessorSettings
from stream_processors.testing import audio_record, frame_record

CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "skysentry"


def chart_trigger(modality: str) -> dict:
    """The ScaledObject's group, topic and offset policy for ``modality``, resolved from the
    chart's template and values (the template's "topic"/"group" arguments are .Values paths)."""
    template = (CHART / "templates" / "scaledobject.yaml").read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    call = re.search(r'include "skysentry.scaledObject" \(dict (.*?"modality" "%s".*?)\)' % modality, template)
    assert call, f"no ScaledObject for {modality} in the template"

    def value(arg: str):
        path = re.search(r'"%s" \.Values\.([\w.]+)' % arg, call.group(1))
        assert path, f"the {modality} ScaledObject's {arg} is not a .Values path"
        node = values
        for key in path.group(1).split("."):
            node = node[key]
        return node

    assert re.search(r"consumerGroup: \{\{ \.group \| quote \}\}", template)
    assert re.search(r"topic: \{\{ \.topic \| quote \}\}", template)
    return {"group": value("group"), "topic": value("topic"), "partitions": values["settings"]["topics"]["partitions"],
            "offsetResetPolicy": values["keda"]["offsetResetPolicy"], "topics": values["settings"]["topics"]}


async def keda_lag(kafka: KafkaSettings, group: str, topic: str, policy: str) -> int:
    """The total lag KEDA's kafka trigger reports for ``group`` on ``topic``."""
    admin = AIOKafkaAdminClient(**client_options(kafka))
    consumer = make_consumer(kafka, group_id=None)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or
                                                          (await _partitions(consumer, topic)))]
        ends, starts = await consumer.end_offsets(tps), await consumer.beginning_offsets(tps)
        total = 0
        for tp in tps:
            meta = committed.get(tp)
            if meta is None or meta.offset < 0:
                total += ends[tp] - starts[tp] if policy == "earliest" else 1
            else:
                total += ends[tp] - meta.offset
        return total
    finally:
        await consumer.stop()
        await admin.close()


async def _partitions(consumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()  # noqa: SLF001 - a group-less consumer learns topics lazily
    return consumer.partitions_for_topic(topic) or set()


async def until_lag(kafka, trigger, want, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        lag = await keda_lag(kafka, trigger["group"], trigger["topic"], trigger["offsetResetPolicy"])
        if lag == want:
            return lag
        if time.monotonic() > deadline:
            raise TimeoutError(f"lag of {trigger['group']} on {trigger['topic']} is {lag}, wanted {want}")
        await asyncio.sleep(0.3)


@contextlib.asynccontextmanager
async def processor(settings: ProcessorSettings, modality: str):
    service = ProcessorService(settings, modality)
    stop = asyncio.Event()
    task = asyncio.create_task(service.run(stop))
    started = asyncio.create_task(service.started.wait())
    done, _ = await asyncio.wait({task, started}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        started.cancel()
        task.result()
    assert started in done, "processor did not join its group"
    try:
        yield service
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)  # a graceful stop commits what it finished


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("keda-models")
    return {"vision": toy_vision_model(d / "vision.onnx"), "audio": toy_audio_model(d / "audio.onnx")}


@pytest.mark.parametrize("modality", ["vision", "audio"])
async def test_trigger_lag_grows_while_the_processor_is_stopped(stack, models, modality):
    trigger = chart_trigger(modality)
    kafka = KafkaSettings(bootstrap_servers=stack.bootstrap_servers)
    topics = TopicSettings(**trigger["topics"])
    assert trigger["topic"] == (topics.frames if modality == "vision" else topics.audio)
    section = {"group_id": trigger["group"], "detector": {"model": models[modality]}, "commit_interval_s": 0.3,
               "session_timeout_s": 6.0, "summary_interval_s": 0.5}
    settings = ProcessorSettings(kafka=kafka, topics=topics, metrics={"enabled": False},
                                 **{f"{modality}_processor": section})
    await ensure_topics(kafka, topics)
    make = frame_record if modality == "vision" else audio_record
    producer = make_producer(kafka)
    await producer.start()

    async def send(n: int, start: int) -> None:
        futures = []
        for i in range(start, start + n):
            key, value, headers, _ = make(source=f"{modality}-src-{i % 5}", seq=i)
            futures.append(await producer.send(trigger["topic"], value=value, key=key, headers=headers))
        await asyncio.gather(*futures)

    try:
        # the processor runs and keeps up: the trigger reads no lag once it has committed
        async with processor(settings, modality) as service:
            assert service.assigned
            await send(20, 0)
            await until_lag(kafka, trigger, 0)
        assert await keda_lag(kafka, trigger["group"], trigger["topic"], trigger["offsetResetPolicy"]) == 0

        # stopped: every record written is lag, exactly
        await send(15, 100)
        assert await until_lag(kafka, trigger, 15, timeout=10) == 15
        await send(25, 200)
        assert await until_lag(kafka, trigger, 40, timeout=10) == 40

        # a processor started again (what KEDA's scale-up does) reads it away
        async with processor(settings, modality):
            await until_lag(kafka, trigger, 0)
    finally:
        await producer.stop()
