"""Acknowledgements: an operator has seen an alert and is on it (the console's "ack" button).

An acknowledgement belongs to one incarnation of an alert (its ``alert_id``) and is kept in that
alert's own hash (``P:alert:<fp>`` fields ``ack_by``, ``ack_ms``, ``ack_comment``), so it ends
with the incarnation: a new incursion at the same fingerprint starts unacknowledged (the observe
script replaces the hash when it fires a new incarnation), and it expires with the resolved alert.
Written by a script that checks the incarnation first, so an ack clicked on an alert that just
resolved and fired again never lands on the new one.

What it changes (:func:`alerting.lifecycle.evaluate`): the "still active" repeats of an
acknowledged alert are held back, for every route; an escalation (the severity rose) and the
resolve still notify, and the ``alerts`` topic carries every lifecycle event as before. An ack
lost with Redis's data (a rebuilt alert) is simply gone: the repeats come back.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import redis.asyncio as aioredis

from alerting.state import AlertSnapshot

ACK = r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local h = redis.call('HMGET', KEYS[1], 'alert_id', 'status', 'ack_ms')
if not h[1] or h[1] ~= ARGV[1] then return {'not_found', ''} end
if h[2] ~= 'firing' then return {'not_firing', ''} end
if h[3] then return {'already', h[3]} end
redis.call('HSET', KEYS[1], 'ack_by', ARGV[2], 'ack_ms', now, 'ack_comment', ARGV[3])
return {'acknowledged', tostring(now)}
"""

MAX_BY, MAX_COMMENT = 128, 1000


class AckOutcome(str, Enum):
    ACKNOWLEDGED = "acknowledged"  # written now
    ALREADY = "already"  # acknowledged before (by whoever; the first ack stays)
    NOT_FOUND = "not_found"  # no such incarnation (expired, or the fingerprint fired anew)
    NOT_FIRING = "not_firing"  # resolved: nothing left to hold back


@dataclass(frozen=True)
class Ack:
    by: str
    at_ms: int
    comment: str = ""


def ack_of(snap: AlertSnapshot) -> Ack | None:
    """The acknowledgement of this incarnation, if any."""
    at = snap.ms("ack_ms")
    if at is None:
        return None
    return Ack(snap.raw.get("ack_by", ""), at, snap.raw.get("ack_comment", ""))


class AckStore:
    """Writes acknowledgements where the alerting reads them (the alert hash, same prefix)."""

    def __init__(self, redis: aioredis.Redis, prefix: str):
        self.redis = redis
        self.prefix = prefix
        self._ack = redis.register_script(ACK)

    async def acknowledge(self, fingerprint: str, alert_id: str, *, by: str,
                          comment: str = "") -> tuple[AckOutcome, int | None]:
        """Acknowledge incarnation ``alert_id`` of the alert at ``fingerprint``; (outcome, when
        it was acknowledged in ms, None unless acknowledged now or before)."""
        if not by.strip():
            raise ValueError("an acknowledgement needs who made it")
        outcome, at = await self._ack(keys=[f"{self.prefix}:alert:{fingerprint}"],
                                      args=[alert_id, by[:MAX_BY], comment[:MAX_COMMENT]])
        outcome, at = (x.decode() if isinstance(x, bytes) else x for x in (outcome, at))
        return AckOutcome(outcome), int(at) if at else None
