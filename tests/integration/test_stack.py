"""The local stack (deploy/local/stack.py): a real broker and a real Redis, and their lifecycle.

Round trips run against the session's stack. The destructive checks (SIGKILL of the broker,
``down``) run on a stack of their own, on other free ports, so they never disturb it.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from typer.testing import CliRunner

from deploy.local import stack as local_stack
from deploy.local.cli import app as stack_cli

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


async def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
                                max_request_size=16 * MiB)
    await producer.start()
    try:
        for i, value in enumerate(values):
            await producer.send_and_wait(topic, value, key=f"cam-{i % 2}".encode())
    finally:
        await producer.stop()


async def _consume(bootstrap: str, topic: str, n: int, timeout_s: float = 30.0) -> list[bytes]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=f"test-{uuid.uuid4().hex[:8]}",
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                fetch_max_bytes=32 * MiB, max_partition_fetch_bytes=16 * MiB)
    await consumer.start()
    got: list[bytes] = []
    try:
        deadline = time.monotonic() + timeout_s
        while len(got) < n and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            got += [record.value for records in batches.values() for record in records]
    finally:
        await consumer.stop()
    return got


def _topic(name: str) -> str:
    return f"test.stack.{name}.{uuid.uuid4().hex[:8]}"


async def test_kafka_round_trip_with_a_4k_frame_sized_message(stack: local_stack.StackInfo) -> None:
    topic = _topic("roundtrip")
    frame = os.urandom(6 * MiB)  # bigger than Kafka's 1 MiB default: the broker takes 16 MiB
    await _produce(stack.bootstrap_servers, topic, [b"hello", frame])
    got = await _consume(stack.bootstrap_servers, topic, 2)
    assert sorted(got, key=len) == [b"hello", frame]


async def test_redis_ping_set_get(stack: local_stack.StackInfo) -> None:
    client = aioredis.from_url(stack.redis_url)
    try:
        assert await client.ping()
        key = f"test:stack:{uuid.uuid4().hex}"
        await client.set(key, b"drone", ex=60)
        assert await client.get(key) == b"drone"
    finally:
        await client.aclose()


def test_session_env_names_the_stack(stack: local_stack.StackInfo) -> None:
    assert os.environ["KAFKA_BOOTSTRAP_SERVERS"] == stack.bootstrap_servers
    assert os.environ["REDIS_URL"] == stack.redis_url


def test_second_up_is_a_no_op(stack: local_stack.StackInfo, stack_dir: Path) -> None:
    before = local_stack.status(stack_dir)
    assert before.running
    started = time.monotonic()
    again = local_stack.up(stack_dir)
    assert time.monotonic() - started < 5
    assert again == stack
    after = local_stack.status(stack_dir)
    assert (after.kafka.pid, after.redis.pid) == (before.kafka.pid, before.redis.pid)
    if not stack.kafka_external:
        assert after.kafka.pid is not None
    if not stack.redis_external:
        assert after.redis.pid is not None


def test_kafka_classpath_has_the_pinned_jars() -> None:
    classpath = local_stack.kafka_classpath()
    libs = Path(classpath.removesuffix("/*"))
    assert (libs / f"kafka_2.13-{local_stack.KAFKA_VERSION}.jar").is_file()
    assert (libs / f"kafka-tools-{local_stack.KAFKA_VERSION}.jar").is_file()  # ProducerPerformance


# --------------------------------------------------------------------------- a stack of its own


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, local_stack.StackInfo]]:
    state = tmp_path_factory.mktemp("own-stack")
    try:
        yield state, local_stack.up(state, kafka_port=0, redis_port=0, use_env=False)
    finally:
        local_stack.down(state)


async def test_broker_killed_then_up_restarts_it_with_its_data(own_stack: tuple[Path, local_stack.StackInfo]) -> None:
    state, info = own_stack
    assert not info.external
    topic = _topic("survivor")
    values = [f"window-{i}".encode() for i in range(20)]
    await _produce(info.bootstrap_servers, topic, values)

    killed = local_stack.status(state, use_env=False).kafka.pid
    assert killed is not None
    os.kill(killed, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while local_stack.status(state, use_env=False).kafka.running and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert not local_stack.status(state, use_env=False).kafka.running

    again = await asyncio.to_thread(local_stack.up, state, use_env=False)
    assert again == info  # same ports
    st = local_stack.status(state, use_env=False)
    assert st.running and st.kafka.pid not in (None, killed)
    assert sorted(await _consume(info.bootstrap_servers, topic, len(values))) == sorted(values)


def test_down_stops_everything_and_status_says_so(own_stack: tuple[Path, local_stack.StackInfo]) -> None:
    state, _ = own_stack
    pids = [s.pid for s in local_stack.status(state, use_env=False).services]
    assert all(pids)

    local_stack.down(state)
    local_stack.down(state)  # idempotent

    st = local_stack.status(state, use_env=False)
    assert not st.running
    assert [(s.running, s.pid) for s in st.services] == [(False, None), (False, None)]
    for pid in pids:
        assert not Path(f"/proc/{pid}/cmdline").exists() or not Path(f"/proc/{pid}/cmdline").read_bytes()

    env = {"KAFKA_BOOTSTRAP_SERVERS": None, "REDIS_URL": None}
    result = CliRunner().invoke(stack_cli, ["status", "--state-dir", str(state)], env=env)
    assert result.exit_code == 1, result.output
    assert "stopped" in result.output
