"""Clip-level field evaluation against the session's real Redis (``stack``, via REDIS_URL):
the alerting's confirmation rule decides, and the evaluation leaves no keys behind."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from trainer import field_eval


def _eval_keys(url: str) -> list[str]:
    async def scan() -> list[str]:
        client = aioredis.from_url(url, decode_responses=True)
        try:
            return [k async for k in client.scan_iter(match="skysentry-eval:*")]
        finally:
            await client.aclose()

    return asyncio.run(scan())


def test_clip_confirmation_uses_redis_url_and_cleans_up(stack, monkeypatch):
    # REDIS_URL is the session's Redis: no redis-server may be started (it is hidden from PATH)
    monkeypatch.setattr(field_eval.shutil, "which", lambda name: None)
    windows = lambda seqs, score=0.9: [(s, s * 0.2, score) for s in seqs]  # noqa: E731
    got = field_eval.confirm_clips([windows([0, 1, 2]), windows([0, 5, 10]), windows([3, 4, 5, 6], 0.59)],
                                   modality="vision", report_threshold=0.5)
    assert got == [True, False, False]
    assert _eval_keys(stack.redis_url) == []
