"""Ids of alert incarnations and of everything sent about them.

An alert *incarnation* (one incursion: fired, maybe repeated, resolved) gets a UUIDv7 when it
fires. It is stored with the alert and never reused: not when the resolved alert expires from
Redis, not when Redis loses its data, not by another deployment. Every idempotency key and
every CloudEvents ``id`` on ``alerts`` derives from it, so a receiver that drops repeated keys
(as it should) never drops a later incursion, while a retry of one notification keeps its key.

Python 3.11 has no ``uuid.uuid7`` (3.14 does), so :func:`uuid7` builds one as RFC 9562 lays it
out: 48 bits of Unix time in ms, version 7, 74 random bits (from ``os.urandom``), variant 10.
Ids made in the same millisecond differ by their random bits; sorted, they follow time.
"""

from __future__ import annotations

import os
import time
import uuid

# uuid5 namespace of notification keys (unchanged, so the derivation stays recognisable)
_KEYS = uuid.UUID("5a1e7c3e-2f0b-4d61-9d3c-6b8e2f1a7c55")


def uuid7(ms: int | None = None) -> str:
    """A fresh UUIDv7 (time-ordered, 74 random bits) as a string; ``ms`` overrides the clock."""
    ms = time.time_ns() // 1_000_000 if ms is None else ms
    rand = int.from_bytes(os.urandom(10), "big")  # 80 bits, 74 used
    value = ((ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7 << 76 | (rand >> 62 & 0xFFF) << 64
             | 0b10 << 62 | rand & 0x3FFF_FFFF_FFFF_FFFF)
    return str(uuid.UUID(int=value))


def idempotency_key(prefix: str, alert_id: str, route: str, event: str, seq: int, channel: str,
                    target: str | None) -> str:
    """The key of one notification (and the ``ce_id`` of one event on ``alerts``): the same
    inputs always give the same key, so a re-made decision or a resend carries it again;
    another incarnation (``alert_id``) or another deployment (``prefix``, the Redis key
    prefix) never does. A UUID, fit for an ``Idempotency-Key`` header."""
    return str(uuid.uuid5(_KEYS, f"{prefix}/{alert_id}/{route}/{event}/{seq}/{channel}/{target or ''}"))
