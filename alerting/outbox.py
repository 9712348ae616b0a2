"""The notification outbox in Redis: written in the same atomic step as the decision, removed
only after the channel confirmed delivery (DESIGN §4).

One entry per (notification, channel, target), id = the idempotency key::

    P:ob:<id>        HASH  channel, payload (Notification JSON), attempts, created_ms, last_error
    P:obq:<channel>  ZSET  id → when it may be (re)tried; a claimed id sits at its lease end
    P:obch           SET   channels that ever had entries (for status)
    P:dead           LIST  dead letters (JSON), newest first
    P:obg:<group>    ZSET  entries of one order group by when they were written (P:obn counts):
                     one alert's notifications to one channel and target; only the oldest
                     is ever claimed, so a receiver (and the ``alerts`` topic) gets firing
                     before its repeats before resolved, whatever retries came between

Claiming moves an entry's score to ``now + lease``: no other replica sees it as due until the
lease runs out, so one sender at a time; a sender that dies mid-way leaves it to come back by
itself. The lease end doubles as the claim token: a late sender whose lease has already
passed to another replica cannot reschedule the entry. Retries are rescheduled here too, so
a crash between attempts loses nothing and a restarted service simply drains the queue.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import redis.asyncio as aioredis

from alerting.state import _TIME

CLAIM = _TIME + r"""
local P, q = ARGV[1], KEYS[1]
local ids = redis.call('ZRANGEBYSCORE', q, '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
local out = {tostring(now)}
local lease_end = now + tonumber(ARGV[3])
for _, id in ipairs(ids) do
  local h = redis.call('HMGET', P .. ':ob:' .. id, 'payload', 'attempts', 'created_ms', 'group')
  local head = id
  if h[1] and h[4] then  -- an earlier entry of its group still pending: wait behind it
    local g = P .. ':obg:' .. h[4]
    head = redis.call('ZRANGE', g, 0, 0)[1]
    while head and head ~= id and redis.call('EXISTS', P .. ':ob:' .. head) == 0 do
      redis.call('ZREM', g, head)
      head = redis.call('ZRANGE', g, 0, 0)[1]
    end
    head = head or id
  end
  if head ~= id then
    redis.call('ZADD', q, tonumber(redis.call('ZSCORE', q, head) or now) + 1, id)  -- just behind it
  elseif h[1] then
    redis.call('ZADD', q, lease_end, id)
    out[#out + 1] = id
    out[#out + 1] = tostring(lease_end)
    out[#out + 1] = h[1]
    out[#out + 1] = h[2] or '0'
    out[#out + 1] = h[3] or '0'
  else
    redis.call('ZREM', q, id)
  end
end
return out
"""

# Reschedule after a failed attempt (or while the breaker is open), if we still hold the claim.
RETRY = _TIME + r"""
local P, q, id = ARGV[1], KEYS[1], ARGV[2]
local score = redis.call('ZSCORE', q, id)
if not score or tonumber(score) ~= tonumber(ARGV[3]) then return 0 end
local ok = P .. ':ob:' .. id
if ARGV[5] == '1' then redis.call('HINCRBY', ok, 'attempts', 1) end
if ARGV[6] ~= '' then redis.call('HSET', ok, 'last_error', ARGV[6]) end
redis.call('ZADD', q, now + tonumber(ARGV[4]), id)
return 1
"""

# An entry leaves its order group: the next of the group is due at once (it waited behind).
_NEXT_IN_GROUP = r"""
local function leave_group(P, q, id, group, now)
  if not group then return end
  local g = P .. ':obg:' .. group
  redis.call('ZREM', g, id)
  local nxt = redis.call('ZRANGE', g, 0, 0)[1]
  if nxt then
    local s = redis.call('ZSCORE', q, nxt)
    if s and tonumber(s) > now then redis.call('ZADD', q, now, nxt) end
  end
end
"""

ACK = _TIME + _NEXT_IN_GROUP + r"""
local P, q, id = ARGV[1], KEYS[1], ARGV[2]
redis.call('ZREM', q, id)
leave_group(P, q, id, redis.call('HGET', P .. ':ob:' .. id, 'group'), now)
return redis.call('DEL', P .. ':ob:' .. id)
"""

DEAD = _TIME + _NEXT_IN_GROUP + r"""
local P, q, id = ARGV[1], KEYS[1], ARGV[2]
local ok = P .. ':ob:' .. id
local h = redis.call('HMGET', ok, 'channel', 'payload', 'attempts', 'created_ms', 'group')
if not h[2] then redis.call('ZREM', q, id) return 0 end
leave_group(P, q, id, h[5], now)
local doc = cjson.encode({id = id, channel = h[1], payload = h[2], attempts = tonumber(ARGV[3]),
                          created_ms = tonumber(h[4]), dead_ms = now, error = ARGV[4]})
redis.call('LPUSH', P .. ':dead', doc)
redis.call('LTRIM', P .. ':dead', 0, tonumber(ARGV[5]) - 1)
redis.call('ZREM', q, id)
redis.call('DEL', ok)
return 1
"""


@dataclass(frozen=True)
class OutboxEntry:
    id: str
    channel: str
    token: int  # the lease end this claim set; proves we still hold it
    payload: str
    attempts: int  # failed attempts so far
    created_ms: int


class Outbox:
    def __init__(self, redis: aioredis.Redis, prefix: str, *, dead_letter_max: int = 10_000):
        self.redis = redis
        self.prefix = prefix
        self.dead_letter_max = dead_letter_max
        self._claim = redis.register_script(CLAIM)
        self._retry = redis.register_script(RETRY)
        self._ack = redis.register_script(ACK)
        self._dead = redis.register_script(DEAD)

    def queue(self, channel: str) -> str:
        return f"{self.prefix}:obq:{channel}"

    async def claim(self, channel: str, limit: int, lease_ms: int) -> tuple[int, list[OutboxEntry]]:
        """(Redis now in ms, entries now leased to the caller)."""
        out = await self._claim(keys=[self.queue(channel)], args=[self.prefix, limit, lease_ms])
        now, rest = int(out[0]), out[1:]
        entries = [OutboxEntry(rest[i], channel, int(rest[i + 1]), rest[i + 2], int(rest[i + 3]), int(rest[i + 4]))
                   for i in range(0, len(rest), 5)]
        return now, entries

    async def ack(self, entry: OutboxEntry) -> None:
        await self._ack(keys=[self.queue(entry.channel)], args=[self.prefix, entry.id])

    async def retry_later(self, entry: OutboxEntry, delay_s: float, *, count_attempt: bool,
                          error: str = "") -> bool:
        return bool(await self._retry(keys=[self.queue(entry.channel)],
                                      args=[self.prefix, entry.id, entry.token, max(0, int(delay_s * 1000)),
                                            "1" if count_attempt else "0", error[:500]]))

    async def release(self, entry: OutboxEntry) -> bool:
        """Give a claimed entry back at once (shutdown), without counting an attempt."""
        return await self.retry_later(entry, 0.0, count_attempt=False)

    async def dead_letter(self, entry: OutboxEntry, attempts: int, error: str) -> None:
        await self._dead(keys=[self.queue(entry.channel)],
                         args=[self.prefix, entry.id, attempts, error[:1000], self.dead_letter_max])

    async def depth(self) -> dict[str, int]:
        channels = sorted(await self.redis.smembers(f"{self.prefix}:obch"))
        if not channels:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for ch in channels:
                pipe.zcard(self.queue(ch))
            counts = await pipe.execute()
        return dict(zip(channels, (int(c) for c in counts)))

    async def dead_letters(self, limit: int = 20) -> list[dict]:
        return [json.loads(d) for d in await self.redis.lrange(f"{self.prefix}:dead", 0, limit - 1)]

    async def dead_count(self) -> int:
        return int(await self.redis.llen(f"{self.prefix}:dead"))
