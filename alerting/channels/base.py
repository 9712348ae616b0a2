"""What every channel shares: delivery policy settings, the send interface, and the errors
that tell the retry stage whether trying again can help."""

from __future__ import annotations

import abc
import logging
from typing import ClassVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from alerting.durations import Duration
from alerting.notification import Notification


class ChannelSettings(BaseModel):
    """Delivery policy common to every channel type (each type adds its own fields)."""

    model_config = ConfigDict(extra="forbid")

    timeout: Duration = Field(5.0, gt=0, description="per attempt, connect to last byte")
    max_attempts: int = Field(5, ge=1, description="attempts before the notification is dead-lettered")
    backoff_initial: Duration = Field(1.0, description="wait before the 2nd attempt; doubles each time")
    backoff_max: Duration = 60.0
    backoff_jitter: float = Field(0.2, ge=0.0, le=1.0, description="± this fraction of each wait, at random")
    breaker_failures: int = Field(5, ge=1, description="consecutive failures that open the circuit breaker")
    breaker_probe: Duration = Field(1.0, gt=0, description="an open breaker lets one probe send through after "
                                    "this; each failed probe doubles the wait, up to breaker_reset")
    breaker_reset: Duration = Field(10.0, gt=0, description="the longest an open breaker waits between probes")
    concurrency: int = Field(4, ge=1, le=64, description="sends in flight at once for this channel")


class DeliveryError(Exception):
    """A send that did not succeed. ``retryable=False`` dead-letters at once (a 4xx that will
    not change); ``retry_after`` (seconds) is the receiver's own hint, e.g. from a 429."""

    def __init__(self, message: str, *, retryable: bool = True, retry_after: float | None = None,
                 status: int | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status


class Channel(abc.ABC):
    """One configured channel. Subclasses implement :meth:`send`; the delivery stage owns
    timeouts, retries, the circuit breaker and the dead letter."""

    TYPE: ClassVar[str]

    def __init__(self, name: str, config: ChannelSettings):
        self.name = name
        self.config = config

    def targets(self) -> list[str | None]:
        """Independent destinations of one notification (e.g. phone numbers); each gets its
        own outbox entry so a retry never repeats a delivery that already succeeded."""
        return [None]

    @abc.abstractmethod
    async def send(self, notification: Notification) -> None:
        """Deliver once; return on confirmed success, raise :class:`DeliveryError` otherwise."""

    def secrets(self) -> list[str]:
        """Secret strings to scrub from any error text before it is logged or stored."""
        out = []
        for value in self.config.__dict__.values():
            items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else [value]
            for item in items:
                if isinstance(item, SecretStr) and item.get_secret_value():
                    out.append(item.get_secret_value())
        return out

    def scrub(self, text: str) -> str:
        for secret in self.secrets():
            text = text.replace(secret, "***")
        return text

    async def aclose(self) -> None:
        return None


class HttpChannel(Channel):
    """A channel that POSTs with httpx; maps HTTP answers onto :class:`DeliveryError`."""

    def __init__(self, name: str, config: ChannelSettings):
        super().__init__(name, config)
        # httpx logs every request line with its full URL at INFO; a Slack URL is a credential.
        for noisy in ("httpx", "httpcore"):
            logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger(noisy).level))
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(config.timeout),
                                        limits=httpx.Limits(max_connections=config.concurrency),
                                        follow_redirects=False)

    async def post(self, url: str, **kwargs) -> httpx.Response:
        """POST and classify the outcome. Error texts name the channel, never the URL (Slack's
        URL is itself the secret)."""
        try:
            response = await self.client.post(url, **kwargs)
        except httpx.TimeoutException:
            raise DeliveryError(f"{self.name}: timed out after {self.config.timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{self.name}: {type(exc).__name__}: {self.scrub(str(exc))[:200]}") from None
        if response.is_success:
            return response
        status = response.status_code
        retryable = status >= 500 or status in (408, 409, 425, 429)
        retry_after = _retry_after(response.headers.get("retry-after"))
        detail = self.scrub(response.text[:200].strip())
        raise DeliveryError(f"{self.name}: HTTP {status} {detail}".strip(), retryable=retryable,
                            retry_after=retry_after, status=status)

    async def aclose(self) -> None:
        await self.client.aclose()


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # an HTTP date: rare for webhooks; our own backoff applies
