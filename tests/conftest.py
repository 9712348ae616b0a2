"""Fixtures shared by every test folder.

``stack`` is the session's real Kafka broker and Redis (DESIGN §8), from deploy/local/stack.py:
started on free ports in this session's tmp dir the first time a test asks for it, or taken
from ``KAFKA_BOOTSTRAP_SERVERS`` / ``REDIS_URL`` when those are set. Under pytest-xdist the
workers share one stack (the lock in stack.py starts it once; the last worker out stops it).
Kafka's jars are downloaded once per machine, into ``$SKYSENTRY_KAFKA_LIBS`` or
``~/.cache/skysentry/kafka-libs-<version>`` (see deploy/local/stack.py), so a warm start of the
broker takes seconds. Tests that use ``stack`` are marked ``integration`` automatically.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from deploy.local import stack as local_stack


@pytest.fixture(scope="session")
def stack_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """State dir of the session's stack: pass it to ``stop_kafka`` / ``start_kafka`` in drills."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # common to all workers of this run
    path = base / "stack"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def stack(stack_dir: Path) -> Iterator[local_stack.StackInfo]:
    """The running stack; ``KAFKA_BOOTSTRAP_SERVERS`` and ``REDIS_URL`` name it for the session
    (subprocesses that tests start find it too)."""
    _stack_users(stack_dir, +1)
    try:
        info = local_stack.up(stack_dir, kafka_port=0, redis_port=0)
        with pytest.MonkeyPatch.context() as env:
            env.setenv("KAFKA_BOOTSTRAP_SERVERS", info.bootstrap_servers)
            env.setenv("REDIS_URL", info.redis_url)
            yield info
    finally:
        if _stack_users(stack_dir, -1) == 0:
            local_stack.down(stack_dir)  # stops only what it started, never external servers


@pytest.fixture
async def redis(stack: local_stack.StackInfo) -> AsyncIterator:
    """An asyncio client (decoded strings) of the session's Redis."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(stack.redis_url, decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def producer(stack: local_stack.StackInfo) -> AsyncIterator:
    """A started Kafka producer on the session's broker."""
    from skysentry.bus import make_producer
    from skysentry.config import Settings

    p = make_producer(Settings().kafka)
    await p.start()
    yield p
    await p.stop()


def _stack_users(stack_dir: Path, delta: int) -> int:
    """Count the pytest processes using the stack in ``stack_dir``; return the new count."""
    with (stack_dir / ".users.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        counter = stack_dir / ".users"
        users = (int(counter.read_text() or 0) if counter.exists() else 0) + delta
        counter.write_text(str(users))
        return users


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "stack" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.integration)
