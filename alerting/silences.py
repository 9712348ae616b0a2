"""Silences: label matchers with an end time, stored in Redis (shared by every replica).

Each silence is one key that expires by itself when the silence ends (``PXAT``), plus an
index by end time for listing. A silenced alert keeps its lifecycle (and its events on the
``alerts`` topic); only notifications are held back. When the silence ends while the alert
still fires, the next check sends what was held back, as Alertmanager does.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timezone

import redis.asyncio as aioredis
from pydantic import BaseModel, Field

from alerting.matchers import Labels, Matcher, MatcherError, parse_all


class Silence(BaseModel):
    id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12])
    matchers: list[str] = Field(min_length=1)
    starts_at: datetime
    ends_at: datetime
    created_by: str = "unknown"
    comment: str = ""

    def compiled(self) -> tuple[Matcher, ...]:
        return parse_all(self.matchers)

    def matches(self, labels: Labels) -> bool:
        return all(m.matches(labels) for m in self.compiled())


class SilenceStore:
    def __init__(self, redis: aioredis.Redis, prefix: str, *, cache_s: float = 0.2):
        self.redis = redis
        self.prefix = prefix
        self._cache_s = cache_s
        self._cached: tuple[float, list[Silence]] | None = None

    def _key(self, sid: str) -> str:
        return f"{self.prefix}:silence:{sid}"

    @property
    def _index(self) -> str:
        return f"{self.prefix}:silences"

    async def add(self, matchers: list[str], *, duration_s: float, created_by: str = "unknown",
                  comment: str = "") -> Silence:
        if duration_s <= 0:
            raise ValueError("a silence needs a positive duration (e.g. 30m, 2h)")
        try:
            parse_all(matchers)
        except MatcherError as exc:
            raise ValueError(str(exc)) from None
        if not matchers:
            raise ValueError("a silence needs at least one matcher, e.g. site=north")
        now = datetime.now(timezone.utc)
        silence = Silence(matchers=matchers, starts_at=now,
                          ends_at=datetime.fromtimestamp(now.timestamp() + duration_s, timezone.utc),
                          created_by=created_by, comment=comment)
        end_ms = int(silence.ends_at.timestamp() * 1000)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self._key(silence.id), silence.model_dump_json(), pxat=end_ms)
            pipe.zadd(self._index, {silence.id: end_ms})
            await pipe.execute()
        self._cached = None
        return silence

    async def list(self) -> list[Silence]:
        """Active silences, soonest to end first (ended ones are pruned from the index)."""
        now_ms = int(time.time() * 1000)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(self._index, "-inf", now_ms)
            pipe.zrange(self._index, 0, -1)
            _, ids = await pipe.execute()
        if not ids:
            return []
        docs = await self.redis.mget([self._key(i) for i in ids])
        return [Silence.model_validate(json.loads(d)) for d in docs if d]

    async def expire(self, silence_id: str) -> bool:
        """End a silence now; False when there is no active silence with that id."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._key(silence_id))
            pipe.zrem(self._index, silence_id)
            deleted, _ = await pipe.execute()
        self._cached = None
        return bool(deleted)

    async def active(self) -> list[Silence]:
        """Like :meth:`list`, cached for a moment: the tick loop asks for every alert."""
        now = time.monotonic()
        if self._cached is None or now - self._cached[0] > self._cache_s:
            self._cached = (now, await self.list())
        return self._cached[1]

    async def silencing(self, labels: Labels) -> Silence | None:
        for silence in await self.active():
            if silence.ends_at.timestamp() > time.time() and silence.matches(labels):
                return silence
        return None
