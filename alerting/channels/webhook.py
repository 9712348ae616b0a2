"""Generic webhook: the notification as JSON, signed with HMAC-SHA256.

Request::

    POST <url>
    Content-Type: application/json
    Idempotency-Key: <uuid>            same key on every retry of one notification
    X-SkySentry-Event: firing|repeat|resolved
    X-SkySentry-Timestamp: <unix seconds>
    X-SkySentry-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>

A receiver verifies with :func:`verify_signature` (or the same three lines in any language):
recompute the HMAC over the timestamp header, a dot and the raw body; compare in constant
time; reject timestamps older than a few minutes (replay protection); and drop a repeated
``Idempotency-Key``. ``evidence.media`` (version 1.1) holds signed links to the stored
snapshot, frame and clip (vision) or WAV and spectrogram (audio), served by ``skysentry
console`` (alerting/evidence.py). A key is never reused for another notification — not by a later alert
at the same camera, not after the alerting's Redis lost its data, not by another deployment
(alerting/ids.py) — so dropping repeats never drops a real incursion. ``alert.alert_id``
groups one incursion's firing, repeats and resolved.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Literal

from pydantic import AnyHttpUrl, Field, SecretStr

from alerting.channels.base import ChannelSettings, HttpChannel
from alerting.notification import Notification

SIGNATURE_PREFIX = "sha256="


class WebhookConfig(ChannelSettings):
    type: Literal["webhook"] = "webhook"
    url: AnyHttpUrl
    secret: SecretStr | None = Field(None, description="HMAC key; set it from the environment, "
                                     "e.g. SKYSENTRY_ALERTING__CHANNELS__<NAME>__SECRET")
    signature_header: str = "X-SkySentry-Signature"
    timestamp_header: str = "X-SkySentry-Timestamp"
    headers: dict[str, SecretStr] = Field(default_factory=dict, description="extra headers, e.g. Authorization")


def sign(secret: str | bytes, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` over ``timestamp + "." + body``."""
    key = secret.encode() if isinstance(secret, str) else secret
    digest = hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def verify_signature(secret: str | bytes, timestamp: str | None, body: bytes, signature: str | None,
                     *, tolerance_s: float = 300.0, now: float | None = None) -> bool:
    """True when ``signature`` is ours for this timestamp and body, and the timestamp is
    within ``tolerance_s`` of now."""
    if not timestamp or not signature:
        return False
    try:
        age = abs((now if now is not None else time.time()) - int(timestamp))
    except ValueError:
        return False
    return age <= tolerance_s and hmac.compare_digest(sign(secret, timestamp, body), signature)


def body_of(n: Notification) -> bytes:
    doc = {
        "version": "1.1",
        "idempotency_key": n.idempotency_key,
        "event": n.event,
        "escalated": n.escalated,
        "receiver": n.channel,
        "route": n.route,
        "title": n.title(),
        "alert": n.alert.model_dump(mode="json"),
        "sources": n.sources,
        "evidence": n.evidence.model_dump(mode="json") if n.evidence else None,
        "decided_at": n.decided_at.isoformat(),
    }
    return json.dumps(doc, separators=(",", ":")).encode()


class WebhookChannel(HttpChannel):
    TYPE = "webhook"
    config: WebhookConfig

    async def send(self, n: Notification) -> None:
        body = body_of(n)
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": n.idempotency_key,
            "X-SkySentry-Event": n.event,
            self.config.timestamp_header: timestamp,
            "User-Agent": "skysentry-alerting/1",
        }
        headers.update({k: v.get_secret_value() for k, v in self.config.headers.items()})
        if self.config.secret is not None:
            headers[self.config.signature_header] = sign(self.config.secret.get_secret_value(), timestamp, body)
        await self.post(str(self.config.url), content=body, headers=headers)
