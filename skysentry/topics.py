"""Topic names and creation (DESIGN §2).

Names come from :class:`~skysentry.config.TopicSettings` so tests and tenants can share one
cluster; ``dlq(topic)`` names the dead-letter topic of any input topic.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    CoordinatorLoadInProgressError,
    GroupCoordinatorNotAvailableError,
    NodeNotReadyError,
    NotCoordinatorForGroupError,
    TopicAlreadyExistsError,
)

from skysentry.bus import client_options
from skysentry.config import KafkaSettings, TopicSettings

log = logging.getLogger(__name__)


def dlq(topic: str) -> str:
    return f"{topic}.dlq"


def topic_specs(topics: TopicSettings, kafka: KafkaSettings) -> list[NewTopic]:
    """Every topic SkySentry writes, with its partitions and configs."""
    big = {"max.message.bytes": str(kafka.max_message_bytes)}
    sensor = {**big, "retention.ms": str(topics.sensor_retention_ms)}
    n, rf = topics.partitions, topics.replication_factor
    specs = [
        NewTopic(topics.frames, n, rf, topic_configs=sensor),
        NewTopic(topics.audio, n, rf, topic_configs=sensor),
        NewTopic(topics.detections, n, rf, topic_configs=big),
        NewTopic(topics.alerts, n, rf, topic_configs=big),
        # Compacted: the latest announcement per model name is the current version.
        NewTopic(topics.models, 1, rf, topic_configs={**big, "cleanup.policy": "compact"}),
    ]
    specs += [NewTopic(dlq(t), n, rf, topic_configs=big)
              for t in (topics.frames, topics.audio, topics.detections, topics.models)]
    return specs


async def ensure_topics(kafka: KafkaSettings, topics: TopicSettings, timeout_s: float = 30.0,
                        groups: tuple[str, ...] = ()) -> list[str]:
    """Create the topics that do not exist yet and wait until every partition has a leader
    and each of ``groups`` has a group coordinator ready (so the first consumers and producers
    do not trip over an election or a broker still creating ``__consumer_offsets``); return
    the names created."""
    admin = AIOKafkaAdminClient(**client_options(kafka))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [s for s in topic_specs(topics, kafka) if s.name not in existing]
        if wanted:
            try:
                await admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass  # another process won the race: fine
            await _wait_for_leaders(admin, [s.name for s in wanted], timeout_s)
        if groups:
            await _wait_for_coordinators(admin, list(groups), timeout_s)
        return [s.name for s in wanted]
    finally:
        await admin.close()


# NodeNotReadyError: the coordinator's node was just (re)started and the client's connection to it
# is still being made (a cluster node back from a restart).
_COORDINATOR_PENDING = (GroupCoordinatorNotAvailableError, NotCoordinatorForGroupError, CoordinatorLoadInProgressError,
                        NodeNotReadyError)


async def _wait_for_coordinators(admin: AIOKafkaAdminClient, groups: list[str], timeout_s: float) -> None:
    """A fresh broker creates ``__consumer_offsets`` on the first group request and answers
    "coordinator not available" / "loading" until its partitions have leaders and are loaded:
    a normal start, not a fault, so it is logged at INFO and waited out here."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    told = False
    while True:
        try:
            for group in groups:  # finds the coordinator, then reads the group's offsets from it
                await admin.list_consumer_group_offsets(group)
            return
        except _COORDINATOR_PENDING:
            pass
        if not told:
            log.info("waiting for the broker's group coordinator (%s): a fresh broker is still creating and "
                     "loading __consumer_offsets; expected at first start, not an error", groups)
            told = True
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"no group coordinator for {groups} after {timeout_s}s; see the broker's log")
        await asyncio.sleep(0.2)


async def _wait_for_leaders(admin: AIOKafkaAdminClient, names: list[str], timeout_s: float) -> None:
    """New topics' partitions have no leader for a moment (a client would be told "not leader
    for partition"): a normal start, logged at INFO and waited out here."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    told = False
    while True:
        meta = await admin.describe_topics(names)
        if all(m["error_code"] == 0 and m["partitions"] and all(p["leader"] >= 0 for p in m["partitions"])
               for m in meta):
            return
        if not told:
            log.info("waiting for the new topics' partition leaders: the broker is electing them; expected right "
                     "after creating topics, not an error")
            told = True
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"topics {names} have partitions without a leader after {timeout_s}s")
        await asyncio.sleep(0.2)


async def describe_topics(kafka: KafkaSettings, names: list[str] | None = None) -> list[dict]:
    """Partitions and configs of the given (or all non-internal) topics."""
    admin = AIOKafkaAdminClient(**client_options(kafka))
    await admin.start()
    try:
        names = names or sorted(t for t in await admin.list_topics() if not t.startswith("__"))
        meta = await admin.describe_topics(names)
        return [{"topic": m["topic"], "partitions": len(m["partitions"]), "error_code": m["error_code"]} for m in meta]
    finally:
        await admin.close()
