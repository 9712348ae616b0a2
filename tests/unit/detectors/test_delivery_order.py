"""The runner's at-least-once mechanics without a broker: an input is released (acked to
faust) only after Kafka acknowledged its outputs, batches are released in order even when a
later batch's outputs are acknowledged first, and a failed send is retried, not dropped.

Why order matters: faust-streaming 0.15.3's ``Consumer._new_offset`` commits past an offset
that is still in flight when only the offset right after it has been acked (committed 10,
acked [11, 12] → commits 13). In-order release per partition never produces that pattern.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from types import SimpleNamespace

from aiokafka.errors import KafkaTimeoutError
from intervaltree import IntervalTree

from skysentry.messages import Detection, ModelRef, utcnow
from stream_processors.core import BatchResult, Prepared
from stream_processors.runner import ProcessorService
from stream_processors.settings import ProcessorSettings

ACKED: list[int] = []


class FakeMessage:
    def __init__(self, offset: int) -> None:
        self.topic, self.partition, self.offset = "in", 0, offset
        self.key, self.value, self.headers, self.timestamp = b"k", b"v", [], None
        self.refcount = 1  # faust's reference for the stream

    def incref(self) -> None:
        self.refcount += 1


class FakeEvent:
    def __init__(self, offset: int) -> None:
        self.message = FakeMessage(offset)

    def ack(self) -> bool:
        self.message.refcount -= 1
        if self.message.refcount == 0:
            ACKED.append(self.message.offset)
            return True
        return False


class SlowProducer:
    """Acknowledges each detection after the delay its score encodes; fails the first send of
    a detection whose source is 'flaky'."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.failed_once = False

    async def send(self, topic, value=None, key=None, headers=None):
        fut = asyncio.get_running_loop().create_future()
        if key == b"flaky" and not self.failed_once:
            self.failed_once = True
            raise KafkaTimeoutError()
        delay = 0.2 if key == b"slow" else 0.01
        asyncio.get_running_loop().call_later(delay, fut.set_result, None)
        self.sent.append(key.decode())
        return fut


class FakePipeline:
    def __init__(self) -> None:
        self.summaries = SimpleNamespace(flush=lambda: [], restore=lambda s: None)

    async def prepare(self, records):
        return Prepared(BatchResult(), None, [(r, None, None) for r in records])

    def start_inference(self, prepared):
        pass

    async def finish(self, prepared):
        result = prepared.result
        for record, _, _ in prepared.items:
            source = {0: "slow", 2: "flaky"}.get(record.offset, "fast")
            result.detections.append(Detection(site="s", source=source, modality="vision", score=1.0,
                                               model=ModelRef(name="m", version="1"), input_event_id=str(record.offset),
                                               captured_at=utcnow(), processed_at=utcnow()))
            result.outcomes["inferred"] += 1
        return result


async def test_batches_are_released_in_order_after_their_outputs_are_acknowledged():
    ACKED.clear()
    svc = ProcessorService(ProcessorSettings(vision_processor={"send_retry_max_s": 0.05}), "vision")
    svc.pipeline, svc.producer = FakePipeline(), SlowProducer()
    first, second, third = [FakeEvent(0), FakeEvent(1)], [FakeEvent(2)], [FakeEvent(3)]
    await svc._handle(first)   # its detection for offset 0 is acknowledged slowly (0.2 s)
    await svc._handle(second)  # offset 2's first send fails and is retried
    await svc._handle(third)   # acknowledged quickly
    for events in (first, second, third):  # what take_events does when _handle returns
        for e in events:
            e.ack()
    assert ACKED == []  # nothing is committable before Kafka acknowledged the outputs
    await asyncio.sleep(0.05)
    assert ACKED == []  # batch 3 is acknowledged, but batch 1 is not: nobody is released
    await asyncio.wait_for(svc._last_batch, 5)
    assert ACKED == [0, 1, 2, 3] and svc.batches == 3
    assert svc.producer.sent.count("flaky") == 1 and svc.producer.failed_once


def test_faust_commits_past_an_unacked_offset_when_the_next_one_is_acked():
    """Documents the faust behaviour the in-order release guards against."""
    from faust.transport.consumer import Consumer
    from faust.types import TP

    tp = TP("t", 0)
    stub = SimpleNamespace(_acked=defaultdict(list), _gap=defaultdict(IntervalTree),
                           _committed_offset=defaultdict(lambda: None), _acked_index=defaultdict(set))
    stub._committed_offset[tp] = 10
    stub._acked[tp] = [11, 12]
    assert Consumer._new_offset(stub, tp) == 13  # offset 10 was never acked
