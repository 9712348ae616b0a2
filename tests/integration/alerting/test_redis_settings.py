"""The Redis that alerting's guarantees need (issue 12, item 2): one that never evicts keys
(alerting refuses to start on one that would, unless told to accept it) and one whose data
survives a restart (the local stack runs it with the append-only file). Each test has a
real redis-server of its own, started by the local stack's helper."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time

import pytest
import redis.asyncio as aioredis
import yaml

from alerting.config import AlertingSettings
from alerting.state import AlertState
from deploy.local import stack as local_stack
from skysentry.config import RedisSettings
from skysentry.service import ServiceProcess

pytestmark = pytest.mark.integration


async def _configure(url: str, **config: str) -> None:
    client = aioredis.from_url(url, decode_responses=True)
    try:
        for name, value in config.items():
            await client.config_set(name.replace("_", "-"), value)
    finally:
        await client.aclose()


def _cli_env(redis_url: str, tmp_path, uid, topics) -> tuple[dict[str, str], object]:
    config = tmp_path / "alerting.yaml"
    config.write_text(yaml.safe_dump({
        "topics": topics.model_dump(mode="json"), "metrics": {"enabled": False},
        "alerting": {"key_prefix": f"test:{uid}", "group_id": f"alerting-{uid}", "session_timeout_ms": 6000}}))
    return {**os.environ, "REDIS_URL": redis_url}, config


def test_alert_run_refuses_a_redis_that_evicts_keys(own_redis, tmp_path, uid, topics):
    asyncio.run(_configure(own_redis, maxmemory="100mb", maxmemory_policy="allkeys-lru"))
    env, config = _cli_env(own_redis, tmp_path, uid, topics)
    done = subprocess.run([sys.executable, "-m", "alerting", "run", "--config", str(config)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.splitlines() if "alerting did not start" in line]
    assert len(lines) == 1, done.stderr
    assert "maxmemory-policy allkeys-lru" in lines[0] and "noeviction" in lines[0]
    assert "--allow-evicting-redis" in lines[0]


async def test_allow_evicting_redis_starts_with_a_warning(stack, own_redis, tmp_path, uid, topics):
    await _configure(own_redis, maxmemory="100mb", maxmemory_policy="volatile-lru")
    env, config = _cli_env(own_redis, tmp_path, uid, topics)
    service = ServiceProcess("alerting", ["alerting", "run", "--allow-evicting-redis"], config, env=env).start()
    try:
        deadline = time.monotonic() + 60
        while not any("alerting running" in line for line in service.raw):
            assert service.proc.poll() is None, service.tail()
            assert time.monotonic() < deadline, service.tail()
            await asyncio.sleep(0.2)
        assert any("starting anyway" in line and "volatile-lru" in line for line in service.raw), service.tail()
    finally:
        assert service.stop() == 0, service.tail()


async def test_a_limit_with_noeviction_or_a_redis_that_refuses_config_starts(own_redis, make_settings, kit,
                                                                              caplog):
    await _configure(own_redis, maxmemory="100mb", maxmemory_policy="noeviction")
    settings = make_settings({})
    async with kit.running(settings.model_copy(update={"redis": RedisSettings(url=own_redis)})) as services:
        assert services[0].ready.is_set()

    # A managed Redis often refuses CONFIG: a user without it stands in for one.
    client = aioredis.from_url(own_redis, decode_responses=True)
    await client.execute_command("ACL", "SETUSER", "app", "on", ">app-pw", "~*", "&*", "+@all", "-config")
    await client.aclose()
    limited = own_redis.replace("redis://", "redis://app:app-pw@")
    with caplog.at_level(logging.WARNING, logger="alerting.service"):
        async with kit.running(settings.model_copy(update={"redis": RedisSettings(url=limited)})):
            pass
    warned = [r.getMessage() for r in caplog.records if "cannot check Redis's eviction policy" in r.getMessage()]
    assert len(warned) == 1 and "app-pw" not in warned[0]


async def test_a_redis_that_answers_before_its_disk_gets_a_warning(own_redis, make_settings, kit, caplog):
    settings = make_settings({}).model_copy(update={"redis": RedisSettings(url=own_redis)})
    for appendfsync, warnings in (("always", 0), ("everysec", 1)):
        await _configure(own_redis, appendfsync=appendfsync)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="alerting.service"):
            async with kit.running(settings) as services:
                assert services[0].ready.is_set()
        warned = [r.getMessage() for r in caplog.records if "appendfsync" in r.getMessage()]
        assert len(warned) == warnings, warned
        assert all("appendfsync everysec" in w and "appendfsync always" in w for w in warned)


async def test_alert_state_survives_a_kill_9_of_the_stacks_redis(own_redis, tmp_path, uid, kit):
    state_dir = tmp_path / "redis"  # where own_redis runs it, with the stack's own settings
    settings = AlertingSettings(key_prefix=f"test:{uid}", confirm={"k": 3, "n": 5, "threshold": 0.6})
    client = aioredis.from_url(own_redis, decode_responses=True)
    try:
        state = AlertState(client, settings)
        results = await state.observe_many([kit.detection("north", "cam-1", seq=i) for i in range(3)])
        fp = results[-1].fingerprint
        assert results[-1].outcome == "fired"
        before = await state.load(fp)
        assert await state.commit(fp, before.version, updates={"n:root:seq": 1}, outbox=[("hook", "n-1", "{}")],
                                  next_tick_ms=1)
        before = await state.load(fp)

        pid = local_stack.status(state_dir, use_env=False).redis.pid
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while local_stack.status(state_dir, use_env=False).redis.running:
            assert time.monotonic() < deadline, "redis-server outlived SIGKILL"
            await asyncio.sleep(0.1)
        assert local_stack.start_redis(state_dir) == own_redis  # same port, same data dir

        await client.aclose()  # its connections died with the server
        client = aioredis.from_url(own_redis, decode_responses=True)
        state = AlertState(client, settings)
        after = await state.load(fp)
        assert after is not None and after.raw == before.raw and after.detection_ids == before.detection_ids
        assert after.alert_id == before.alert_id and after.status == "firing"
        assert await client.zscore(f"test:{uid}:obq:hook", "n-1") is not None  # the queued notification too
        # and the confirmation window: the next detection refreshes this alert, it does not fire anew
        assert (await state.observe(kit.detection("north", "cam-1", seq=3))).outcome == "refresh"
    finally:
        await client.aclose()


def test_the_stacks_redis_runs_with_the_settings_alerting_needs(own_redis):
    async def config() -> dict:
        client = aioredis.from_url(own_redis, decode_responses=True)
        try:
            return await client.config_get("*")
        finally:
            await client.aclose()

    conf = asyncio.run(config())
    assert conf["appendonly"] == "yes" and conf["appendfsync"] == "always"
    assert conf["maxmemory-policy"] == "noeviction"
