"""Kafka I/O shared by every service: producers, consumers and dead-letter records.

Delivery rules live here (DESIGN §4) so no service can get them wrong on its own:
producers are idempotent with ``acks=all``; consumers never auto-commit — a service commits
an offset only after what it produced from that input is acknowledged.
"""

from __future__ import annotations

import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner, murmur2
from aiokafka.structs import ConsumerRecord

from skysentry.config import KafkaSettings

log = logging.getLogger(__name__)

ERROR_HEADER = "error"


def client_options(kafka: KafkaSettings) -> dict[str, Any]:
    """Connection options shared by producers, consumers and admin clients."""
    opts: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "client_id": kafka.client_id,
        "request_timeout_ms": kafka.request_timeout_ms,
        "security_protocol": kafka.security_protocol,
    }
    if kafka.sasl_mechanism:
        opts.update(
            sasl_mechanism=kafka.sasl_mechanism,
            sasl_plain_username=kafka.sasl_username,
            sasl_plain_password=kafka.sasl_password.get_secret_value() if kafka.sasl_password else None,
        )
    return opts


def partition_for(key: bytes, partitions: int) -> int:
    """The partition every SkySentry producer writes a keyed record to: Kafka's Java client
    rule, murmur2 of the key bytes with the sign bit cleared, modulo the partition count
    (docs/contracts.md says how other clients match it, e.g. librdkafka's murmur2_random)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def make_producer(kafka: KafkaSettings, *, compression: str | None = None, linger_ms: int = 5,
                  **overrides: Any) -> AIOKafkaProducer:
    """An idempotent, ``acks=all`` producer (not started).

    ``compression`` defaults to none: JPEG and PCM do not compress, and JSON messages are
    small. Pass ``"lz4"`` for chatty JSON streams.
    """
    opts = client_options(kafka) | {
        "acks": "all",
        "enable_idempotence": True,
        "compression_type": compression,
        "linger_ms": linger_ms,
        "max_request_size": kafka.max_message_bytes,
        "max_batch_size": 1024 * 1024,
        "partitioner": DefaultPartitioner(),  # partition_for: explicit, as the contract states it
    }
    opts.update(overrides)
    return AIOKafkaProducer(**opts)


def make_consumer(kafka: KafkaSettings, *topics: str, group_id: str | None, **overrides: Any) -> AIOKafkaConsumer:
    """A consumer with manual commits, reading from the earliest offset of a new group."""
    opts = client_options(kafka) | {
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_partition_fetch_bytes": kafka.max_message_bytes,
        "fetch_max_bytes": 4 * kafka.max_message_bytes,
    }
    opts.update(overrides)
    return AIOKafkaConsumer(*topics, **opts)


def dlq_headers(record: ConsumerRecord, error: str) -> list[tuple[str, bytes]]:
    """The original headers plus the reason and where the record came from."""
    headers = [(k, v) for k, v in (record.headers or ()) if k != ERROR_HEADER]
    headers += [
        (ERROR_HEADER, error.encode()[:1000]),
        ("dlq_topic", record.topic.encode()),
        ("dlq_partition", str(record.partition).encode()),
        ("dlq_offset", str(record.offset).encode()),
    ]
    return headers


async def send_to_dlq(producer: AIOKafkaProducer, record: ConsumerRecord, error: str) -> None:
    """Write the original bytes and headers of ``record`` to ``<topic>.dlq`` with the reason,
    and wait for the broker's acknowledgement (the caller commits the input after this)."""
    from skysentry.topics import dlq  # local: topics imports this module

    log.warning("dead-lettered %s[%s]@%s: %s", record.topic, record.partition, record.offset, error)
    await producer.send_and_wait(dlq(record.topic), value=record.value, key=record.key,
                                 headers=dlq_headers(record, error))
