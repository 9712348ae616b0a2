"""Redis commands per detection, counted with INFO commandstats on a real Redis (its own server,
so nothing else's commands are counted): the figures skysentry/capacity.py sizes Redis with.
Fails when alerting's observe script (alerting/state.py) changes what one detection costs."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import redis.asyncio as aioredis

from alerting.config import AlertingSettings
from alerting.state import AlertState
from deploy.local import stack as local_stack
from skysentry.capacity import (DETECTIONS_PER_SCRIPT_CALL, REDIS_COMMANDS_PER_DETECTION,
                                REDIS_COMMANDS_PER_SCRIPT_CALL)
from skysentry.messages import Detection, ModelRef

pytestmark = pytest.mark.integration


def detection(source: str, seq: int, at: datetime, site: str = "site-1") -> Detection:
    return Detection(site=site, source=source, modality="vision", score=0.9, model=ModelRef(name="m", version="1"),
                     input_event_id=str(uuid.uuid4()), input_seq=seq, captured_at=at, processed_at=at)


async def commands(r: aioredis.Redis) -> dict[str, int]:
    return {k.removeprefix("cmdstat_"): v["calls"] for k, v in (await r.info("commandstats")).items()}


async def cost(r: aioredis.Redis, state: AlertState, dets: list[Detection]) -> tuple[dict[str, int], list[str]]:
    """Commands run for ``dets`` (the INFO call that reads the stats excluded) and the outcomes."""
    before = await commands(r)
    outcomes = await state.observe_many(dets)
    after = await commands(r)
    used = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    used["info"] -= 1
    return {k: v for k, v in used.items() if v}, [o.outcome.decode() if isinstance(o.outcome, bytes) else o.outcome
                                                   for o in outcomes]


def test_redis_commands_per_detection_match_the_sizing_model(tmp_path):
    url = local_stack.start_redis(tmp_path / "redis", port=0)
    try:
        asyncio.run(_measure(url))
    finally:
        local_stack.down(tmp_path / "redis")


async def _measure(url: str) -> None:
    r = aioredis.from_url(url)
    try:
        state = AlertState(r, AlertingSettings(key_prefix="capacity"))
        k = state.settings.confirm.k
        t = datetime.now(timezone.utc)
        await state.observe_many([detection("warm-up", 0, t)])  # the script is loaded

        # a first hit of 100 sources: pending (below k of n); one script call for the chunk
        n = DETECTIONS_PER_SCRIPT_CALL
        used, outcomes = await cost(r, state, [detection(f"p{i}", 0, t) for i in range(n)])
        assert set(outcomes) == {"pending"}
        per_call = used.pop("evalsha") + used.pop("time")
        assert per_call == REDIS_COMMANDS_PER_SCRIPT_CALL
        assert sum(used.values()) == n * REDIS_COMMANDS_PER_DETECTION["pending"], used

        # the k-th hit of sources on k sites of their own (nothing else firing there): fired
        srcs = [f"f{i}" for i in range(10)]
        for j in range(k - 1):
            await state.observe_many([detection(s, j, t + timedelta(seconds=j), site=s) for s in srcs])
        used, outcomes = await cost(r, state, [detection(s, k - 1, t + timedelta(seconds=k - 1), site=s) for s in srcs])
        assert set(outcomes) == {"fired"}
        used.pop("evalsha"), used.pop("time")
        assert sum(used.values()) == len(srcs) * REDIS_COMMANDS_PER_DETECTION["fired"], used

        # one more hit of the firing sources: refresh of the open alert (the steady state of a drone in view)
        used, outcomes = await cost(r, state, [detection(s, k, t + timedelta(seconds=k), site=s) for s in srcs])
        assert set(outcomes) == {"refresh"}
        used.pop("evalsha"), used.pop("time")
        assert sum(used.values()) == len(srcs) * REDIS_COMMANDS_PER_DETECTION["refresh"], used
    finally:
        await r.aclose()
