"""Redis state, scripts and stores on their own (real Redis): confirmation, dedup,
corroboration, compare-and-set, outbox leases, silences."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from alerting.config import AlertingSettings
from alerting.outbox import Outbox
from alerting.silences import SilenceStore
from alerting.state import AlertState, fingerprint

pytestmark = pytest.mark.integration


@pytest.fixture
def settings(uid) -> AlertingSettings:
    return AlertingSettings(key_prefix=f"test:{uid}", corroboration=2.0,
                            confirm={"k": 3, "n": 5, "threshold": 0.6, "horizon": 10})


async def test_k_of_n_confirmation_and_replay_dedup(redis, settings, kit):
    state = AlertState(redis, settings)
    sent = [kit.detection("north", "cam-1", seq=s) for s in (0, 2, 9)]
    outcomes = [(await state.observe(d)).outcome for d in sent]
    assert outcomes == ["pending", "pending", "pending"]  # seq 9 pushed 0 and 2 out of the last 5 windows
    assert (await state.observe(sent[2])).outcome == "replay"
    assert (await state.observe(kit.detection("north", "cam-1", seq=1))).outcome == "stale"  # out of the window
    outcomes = [(await state.observe(kit.detection("north", "cam-1", seq=s))).outcome for s in (10, 12)]
    assert outcomes == ["pending", "fired"]  # 9, 10, 12 within the last 5 windows
    assert (await state.observe(kit.detection("north", "cam-1", seq=13))).outcome == "refresh"
    straggler = kit.detection("north", "cam-1", seq=3, captured_at=datetime.now(timezone.utc) - timedelta(seconds=60))
    assert (await state.observe(straggler)).outcome == "stale"  # must not keep the alert alive
    fp = fingerprint("north", "cam-1", "drone")
    snap = await state.load(fp)
    assert snap.status == "firing" and snap.inc == 1 and len(snap.detection_ids) == 4
    assert await state.firing_count() == 1


async def test_without_seq_the_last_n_detections_within_the_horizon_count(redis, settings, kit):
    state = AlertState(redis, settings)
    old = datetime.now(timezone.utc) - timedelta(seconds=60)
    for i in range(2):
        assert (await state.observe(kit.detection("n", "mic-9", "audio", captured_at=old + timedelta(seconds=i)))
                ).outcome == "pending"
    # far newer than the horizon: the two old ones no longer count
    assert (await state.observe(kit.detection("n", "mic-9", "audio"))).outcome == "pending"
    results = await state.observe_many([kit.detection("n", "mic-9", "audio") for _ in range(3)])
    assert [r.outcome for r in results] == ["pending", "fired", "refresh"]


async def test_camera_and_microphone_of_one_site_make_one_critical_alert(redis, settings, kit):
    state = AlertState(redis, settings)
    cams = await state.observe_many([kit.detection("north", "cam-1", seq=i) for i in range(3)])
    mics = await state.observe_many([kit.detection("north", "mic-1", "audio", seq=i, score=0.97) for i in range(4)])
    assert cams[-1].outcome == "fired"
    assert [m.outcome for m in mics] == ["pending", "pending", "corroborated", "refresh"]
    assert mics[2].fingerprint == cams[-1].fingerprint
    snap = await state.load(cams[-1].fingerprint)
    assert snap.severity == "critical" and snap.sources == ["cam-1", "mic-1"]
    assert snap.modalities == ["vision", "audio"] and snap.max_score == pytest.approx(0.97)
    assert await state.firing_count() == 1
    # another site, or the same modality, is a separate alert
    other = await state.observe_many([kit.detection("south", "mic-2", "audio", seq=i) for i in range(3)])
    assert other[-1].outcome == "fired"


async def test_commit_is_compare_and_set(redis, settings, kit):
    state = AlertState(redis, settings)
    for i in range(3):
        obs = await state.observe(kit.detection("north", "cam-1", seq=i))
    snap = await state.load(obs.fingerprint)
    entry = [("hook", "id-1", "{}")]
    results = await asyncio.gather(*(state.commit(obs.fingerprint, snap.version, updates={"n:root:seq": 1},
                                                  outbox=entry, next_tick_ms=1) for _ in range(5)))
    assert sorted(results) == [False] * 4 + [True]
    before = await state.load(obs.fingerprint)
    await state.observe(kit.detection("north", "cam-1", seq=3))  # a detection lands meanwhile: version moves
    assert not await state.commit(obs.fingerprint, before.version, updates={}, outbox=[], next_tick_ms=1)
    assert await redis.zcard(f"{settings.key_prefix}:obq:hook") == 1


async def test_watermark_is_the_least_partition_mark_and_only_moves_forward(redis, settings):
    state = AlertState(redis, settings)
    assert await state.watermark_ms() is None  # no consumer has reported
    now = await state.now_ms()
    await state.advance_watermarks(3, {0: 1000, 1: 5000, 2: 0})
    assert abs(await state.watermark_ms() - (now - 5000)) < 1000  # partition 1 is the furthest behind
    await state.advance_watermarks(3, {1: 60_000})  # a replay after a rebalance: no step back
    assert abs(await state.watermark_ms() - (now - 5000)) < 1000
    await state.advance_watermarks(3, {1: 0})
    assert abs(await state.watermark_ms() - (now - 1000)) < 1000  # now partition 0 is
    await state.advance_watermarks(2, {0: 0, 1: 0})  # the topic has two partitions now: 2 is dropped
    assert sorted(await redis.hkeys(f"{settings.key_prefix}:wm")) == ["0", "1"]
    assert await state.watermark_ms() >= now


async def test_outbox_claims_are_exclusive_and_leases_expire(redis, settings):
    state = AlertState(redis, settings)
    await redis.hset(f"{settings.key_prefix}:alert:x", mapping={"version": "1", "fp": "x", "site": "s"})
    await state.commit("x", "1", updates={}, next_tick_ms=None,
                       outbox=[("hook", f"n{i}", f'{{"i": {i}}}') for i in range(20)])
    a, b = Outbox(redis, settings.key_prefix), Outbox(redis, settings.key_prefix)
    claims = await asyncio.gather(*(o.claim("hook", 3, 300) for o in (a, b) * 5))
    ids = [e.id for _, entries in claims for e in entries]
    assert sorted(ids) == sorted(f"n{i}" for i in range(20)) and len(set(ids)) == 20
    first = claims[0][1][0]
    assert (await a.claim("hook", 50, 300))[1] == []  # all leased
    await asyncio.sleep(0.4)
    _, again = await b.claim("hook", 50, 5000)
    assert len(again) == 20  # leases ran out: back in the queue
    assert not await a.retry_later(first, 0, count_attempt=True)  # the old claim is no longer ours
    mine = next(e for e in again if e.id == first.id)
    assert await b.retry_later(mine, 0, count_attempt=True, error="HTTP 500")
    await b.dead_letter(mine, 5, "HTTP 500 five times")
    await b.ack(again[1])
    assert (await a.depth()) == {"hook": 18}
    (dead,) = await a.dead_letters()
    assert dead["id"] == first.id and dead["attempts"] == 5 and dead["error"] == "HTTP 500 five times"


async def test_silences_add_list_match_expire_and_end_by_themselves(redis, settings):
    store = SilenceStore(redis, settings.key_prefix, cache_s=0)
    s1 = await store.add(["site=north", "modality=~vis.*"], duration_s=60, created_by="ops", comment="drill")
    s2 = await store.add(["source=mic-1"], duration_s=0.3)
    assert {s.id for s in await store.list()} == {s1.id, s2.id}
    assert (await store.silencing({"site": ("north",), "modality": ("vision", "audio")})).id == s1.id
    assert await store.silencing({"site": ("south",), "modality": ("vision",)}) is None
    await asyncio.sleep(0.5)
    assert [s.id for s in await store.list()] == [s1.id]  # s2 ended by itself
    assert await store.expire(s1.id) and not await store.expire(s1.id)
    assert await store.list() == []
    with pytest.raises(ValueError, match="name=value"):
        await store.add(["site north"], duration_s=10)


async def test_one_alerts_notifications_leave_the_outbox_in_the_order_written(redis, settings):
    """Firing, repeat, resolved of one alert to one channel: only the oldest pending is ever
    claimed, so a firing that failed and backs off cannot be overtaken by its own repeat (the
    `alerts` topic once carried a firing after ten of its repeats); another alert is not held."""
    state = AlertState(redis, settings)
    await redis.hset(f"{settings.key_prefix}:alert:x", mapping={"version": "1", "fp": "x", "site": "s"})
    group = "hook/x/"
    await state.commit("x", "1", updates={}, next_tick_ms=None, outbox=[("hook", "firing", "{}", group)])
    await state.commit("x", "2", updates={}, next_tick_ms=None,
                       outbox=[("hook", "repeat", "{}", group), ("hook", "other", "{}", "hook/y/")])
    await state.commit("x", "3", updates={}, next_tick_ms=None, outbox=[("hook", "resolved", "{}", group)])
    outbox = Outbox(redis, settings.key_prefix)
    _, entries = await outbox.claim("hook", 10, 30_000)
    assert sorted(e.id for e in entries) == ["firing", "other"]  # repeat and resolved wait behind firing
    firing = next(e for e in entries if e.id == "firing")
    assert await outbox.retry_later(firing, 5.0, count_attempt=True, error="500")  # it backs off 5 s
    assert [e.id for e in (await outbox.claim("hook", 10, 30_000))[1]] == []  # still nothing may overtake it
    await redis.zadd(outbox.queue("hook"), {"firing": 0})  # the back-off is over
    _, entries = await outbox.claim("hook", 1, 30_000)  # one at a time: the head, not what waits behind it
    assert [e.id for e in entries] == ["firing"]
    await outbox.ack(entries[0])
    _, entries = await outbox.claim("hook", 10, 30_000)  # acked: the next is due at once
    assert [e.id for e in entries] == ["repeat"]
    await outbox.dead_letter(entries[0], 3, "gone")  # a dead letter also lets the next through
    assert [e.id for e in (await outbox.claim("hook", 10, 30_000))[1]] == ["resolved"]
