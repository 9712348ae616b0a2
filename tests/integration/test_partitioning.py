"""The key → partition rule docs/contracts.md states: Kafka's Java client rule, murmur2 of the
key bytes, sign bit cleared, modulo the partition count. murmur2 is implemented here from
Kafka's reference (org.apache.kafka.common.utils.Utils.murmur2), checked against the vectors
of Kafka's own UtilsTest, and the broker is asked where SkySentry's producer put each key."""

from __future__ import annotations

import pytest

from skysentry.bus import make_producer, partition_for
from skysentry.config import KafkaSettings
from skysentry.topics import ensure_topics
from stream_processors.testing import unique_topics

pytestmark = pytest.mark.integration

# Kafka's clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java, testMurmur2
KAFKA_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}
KEYS = [b"cam-0", b"cam-1", b"cam-north-7", b"mic-1", b"mic-roof", "kamera-süd".encode(), b"x" * 41]


def murmur2(data: bytes) -> int:
    """Kafka's Utils.murmur2 (a signed 32-bit int), line by line."""
    mask, m, r = 0xFFFFFFFF, 0x5BD1E995, 24
    h = (0x9747B28C ^ len(data)) & mask
    n4 = len(data) // 4
    for i in range(n4):
        k = int.from_bytes(data[4 * i:4 * i + 4], "little")
        k = (k * m) & mask
        k ^= k >> r
        k = (k * m) & mask
        h = ((h * m) & mask) ^ k
    tail = data[4 * n4:]
    if len(tail) >= 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if len(tail) >= 1:
        h ^= tail[0]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def java_partition(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions  # Utils.toPositive(Utils.murmur2(key)) % n


def test_the_reference_murmur2_matches_kafkas_vectors():
    assert {k: murmur2(k) for k in KAFKA_VECTORS} == KAFKA_VECTORS


@pytest.mark.parametrize("partitions", [1, 3, 6, 7, 12])
def test_partition_for_is_the_java_clients_rule(partitions):
    for key in [*KEYS, *KAFKA_VECTORS]:
        assert partition_for(key, partitions) == java_partition(key, partitions), key


async def test_skysentrys_producer_puts_each_key_where_the_rule_says(stack):
    topics = unique_topics("part", partitions=6)
    kafka = KafkaSettings(bootstrap_servers=stack.bootstrap_servers)
    await ensure_topics(kafka, topics)
    producer = make_producer(kafka)
    await producer.start()
    try:
        placed = {key: (await producer.send_and_wait(topics.frames, b"v", key=key)).partition for key in KEYS}
    finally:
        await producer.stop()
    assert placed == {key: java_partition(key, 6) for key in KEYS}
    assert len(set(placed.values())) > 1  # the keys spread: the check is not vacuous
