"""Delivery drills with real processor processes: kill -9 mid-stream and restart; two processors
in one group split the partitions and a rebalance loses nothing.

Evidence, not hope: every fresh test frame is positive (white), so every one of them must
come back as a Detection whose ``input_event_id`` is its ``ce_id``; every stale frame must be
counted in the processors' ScoreSummary ``skipped`` totals. A missing id fails the test;
duplicates are allowed (at-least-once) and reported.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from stream_processors.testing import (OutputCollector, create_topics, frame_record, isolated_settings, old,
                                       publish)

pytestmark = pytest.mark.integration

MAX_AGE_S = 600.0  # fresh frames (captured during the test) are never stale; "old" ones always are


def _frames(n_fresh: int, stale_every: int = 0, sources: int = 6):
    """Fresh positive frames with distinct ids, and every ``stale_every``-th one an old frame."""
    fresh, stale, records = [], [], []
    for i in range(n_fresh):
        r = frame_record(f"cam-{i % sources}", i, width=64, height=48, data=None)
        fresh.append(r[3].id)
        records.append(r[:3])
        if stale_every and i % stale_every == 0:
            s = frame_record(f"cam-{i % sources}", 10_000 + i, width=64, height=48, time=old(3600))
            stale.append(s[3].id)
            records.append(s[:3])
    return fresh, stale, records


def _report(out, fresh: list[str]) -> tuple[set[str], int]:
    seen = Counter(out.input_ids())
    missing = set(fresh) - set(seen)
    duplicates = sum(n - 1 for n in seen.values() if n > 1)
    return missing, duplicates


async def test_kill_9_mid_stream_then_restart_accounts_for_every_frame(stack, toy_models, processes, capsys):
    s = isolated_settings(stack.bootstrap_servers, vision_model=toy_models["vision"], partitions=3,
                          vision_processor={"max_frame_age_s": MAX_AGE_S, "max_batch": 4, "commit_interval_s": 0.3})
    await create_topics(s)
    fresh, stale, records = _frames(360, stale_every=12)
    async with OutputCollector(s.kafka, s.topics) as out:
        first = processes(s)
        await first.wait_assigned(lambda parts: len(parts) == 3)
        publisher = asyncio.create_task(publish(s.kafka, s.topics.frames, records, rate_hz=120))
        await out.wait_for(lambda o: len(o.detections) >= 80, 30, "the first processor to get going")
        first.kill()  # SIGKILL: no shutdown, no final commit, batches in flight lost in memory
        detected_at_kill = len(set(out.out.input_ids()))
        assert detected_at_kill < len(fresh), "the kill must land mid-stream"

        second = processes(s)
        await second.wait_assigned(lambda parts: len(parts) == 3)
        await publisher
        await out.wait_for(lambda o: set(fresh) <= set(o.input_ids())
                           and sum(x.skipped for x in o.summaries) >= len(stale), 60, "every frame accounted for")
        assert second.stop() == 0  # graceful: drains, commits, exits 0

    missing, duplicates = _report(out.out, fresh)
    skipped = sum(x.skipped for x in out.out.summaries)
    with capsys.disabled():
        print(f"\nkill -9 drill: {len(fresh)} fresh frames, {len(stale)} stale; detected before kill "
              f"{detected_at_kill}; duplicates after restart {duplicates}; stale counted {skipped}")
    assert not missing
    assert skipped >= len(stale)
    stale_ids = set(stale)
    assert not stale_ids & set(out.out.input_ids())  # stale frames are skipped, never inferred


async def test_two_processors_split_partitions_and_rebalances_lose_nothing(stack, toy_models, processes, capsys):
    s = isolated_settings(stack.bootstrap_servers, vision_model=toy_models["vision"], partitions=4,
                          vision_processor={"max_frame_age_s": MAX_AGE_S, "max_batch": 4, "commit_interval_s": 0.3})
    await create_topics(s)
    fresh, _, records = _frames(480, sources=8)
    async with OutputCollector(s.kafka, s.topics) as out:
        a = processes(s)
        await a.wait_assigned(lambda parts: len(parts) == 4)
        publisher = asyncio.create_task(publish(s.kafka, s.topics.frames, records, rate_hz=60))
        await out.wait_for(lambda o: len(o.detections) >= 40, 30, "the first processor to get going")

        b = processes(s)  # joins mid-stream: rebalance
        b_parts = await b.wait_assigned(lambda parts: 0 < len(parts) < 4)
        a_parts = await a.wait_assigned(lambda parts: 0 < len(parts) < 4)
        assert sorted(a_parts + b_parts) == [0, 1, 2, 3], (a_parts, b_parts)  # split, no overlap
        await out.wait_for(lambda o: len(o.detections) >= 200, 30, "both processors to work")

        assert b.stop() == 0  # leaves mid-stream: rebalance back to one
        await a.wait_assigned(lambda parts: len(parts) == 4)
        await publisher
        await out.wait_for(lambda o: set(fresh) <= set(o.input_ids()), 60, "every frame detected")
        assert a.stop() == 0

    missing, duplicates = _report(out.out, fresh)
    with capsys.disabled():
        print(f"\nscale-out drill: A had {a_parts}, B had {b_parts}; {len(fresh)} frames, "
              f"duplicates {duplicates}")
    assert not missing
