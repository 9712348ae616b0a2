"""Follows the compacted ``models`` topic so every processor hears every announcement.

Not a faust agent on purpose: agents of one app share its consumer group, so with N
processors only one would own the single ``models`` partition and the others would never
reload. Each processor instead reads the topic with its own group-less consumer, from the
beginning: compaction keeps the latest announcement per model name, so at start-up
:meth:`ModelsWatcher.catch_up` yields what should serve now, and :meth:`follow` delivers what
comes after. Records that are not a valid announcement go to ``models.dlq`` with the reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaProducer

from skysentry.bus import make_consumer, send_to_dlq
from skysentry.config import KafkaSettings
from skysentry.messages import ContractError, ModelAnnouncement, decode_structured

log = logging.getLogger(__name__)

Apply = Callable[[ModelAnnouncement], Awaitable[None]]


class ModelsWatcher:
    def __init__(self, kafka: KafkaSettings, topic: str, producer: AIOKafkaProducer) -> None:
        self.topic = topic
        self.producer = producer
        # No group: every processor reads every partition, from the beginning (compacted).
        self.consumer = make_consumer(kafka, topic, group_id=None, auto_offset_reset="earliest",
                                      metadata_max_age_ms=5000)
        self.invalid = 0

    async def start(self, timeout_s: float = 20.0) -> None:
        await self.consumer.start()
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not self.consumer.assignment():
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"topic {self.topic!r} has no partitions; create it (`skysentry topics create`)")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        await self.consumer.stop()

    async def _parse(self, record) -> ModelAnnouncement | None:
        try:
            _, ann = decode_structured(record.value, ModelAnnouncement)
            return ann  # type: ignore[return-value]
        except ContractError as exc:
            self.invalid += 1
            try:
                await send_to_dlq(self.producer, record, f"invalid model announcement: {exc}")
            except Exception:
                log.exception("could not dead-letter an invalid announcement at %s@%s", record.partition, record.offset)
            return None

    async def catch_up(self) -> list[ModelAnnouncement]:
        """Every valid announcement already on the topic, oldest first."""
        tps = list(self.consumer.assignment())
        end = await self.consumer.end_offsets(tps)
        out: list[ModelAnnouncement] = []
        async def behind() -> bool:
            return any([await self.consumer.position(tp) < end[tp] for tp in tps])

        while await behind():
            batches = await self.consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    if (ann := await self._parse(record)) is not None:
                        out.append(ann)
        return out

    async def follow(self, apply: Apply) -> None:
        """Hand every new valid announcement to ``apply``, in order, until cancelled."""
        while True:
            batches = await self.consumer.getmany(timeout_ms=1000)
            for records in batches.values():
                for record in records:
                    ann = await self._parse(record)
                    if ann is not None:
                        try:
                            await apply(ann)
                        except Exception:  # never let one announcement stop the watcher
                            log.exception("applying announcement %s@%s failed", ann.name, ann.version)
