"""SMS through Twilio's REST API: ``POST {base_url}/2010-04-01/Accounts/{sid}/Messages.json``
with form fields ``To``, ``From`` (or ``MessagingServiceSid``) and ``Body``, HTTP basic auth
(account SID, auth token). ``base_url`` is configurable for regional edges and for tests.

Each phone number is its own delivery target, so a retry after one number failed never texts
the others twice. The text is one SMS segment (160 characters). With ``mms: true`` the message
is an MMS carrying the alert's boxed frame (``MediaUrl``: the signed evidence link, which
Twilio fetches from the console's ``public_url``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator

from alerting.channels.base import ChannelSettings, HttpChannel
from alerting.notification import Notification


class TwilioConfig(ChannelSettings):
    type: Literal["twilio"] = "twilio"
    base_url: str = "https://api.twilio.com"
    account_sid: str
    auth_token: SecretStr
    from_number: str | None = Field(None, alias="from")
    messaging_service_sid: str | None = None
    to: list[str] = Field(min_length=1)
    max_chars: int = Field(160, ge=20, le=1600)
    mms: bool = Field(False, description="send MMS: the boxed frame (or the spectrogram) as MediaUrl when the "
                      "alert has stored evidence; a route asks for pictures by naming a channel with mms: true")

    model_config = {"populate_by_name": True, "serialize_by_alias": True}

    @model_validator(mode="after")
    def _sender(self) -> "TwilioConfig":
        if not (self.from_number or self.messaging_service_sid):
            raise ValueError("twilio channel needs `from` (a Twilio number) or `messaging_service_sid`")
        return self


class TwilioChannel(HttpChannel):
    TYPE = "twilio"
    config: TwilioConfig

    def targets(self) -> list[str | None]:
        return list(self.config.to)

    async def send(self, n: Notification) -> None:
        c = self.config
        form = {"To": n.target or c.to[0], "Body": n.short_text(c.max_chars)}
        media = n.evidence.media if n.evidence else None
        if c.mms and media is not None and (media.snapshot or media.spectrogram):
            form["MediaUrl"] = media.snapshot or media.spectrogram  # Twilio fetches it from the console
        if c.messaging_service_sid:
            form["MessagingServiceSid"] = c.messaging_service_sid
        else:
            form["From"] = c.from_number  # type: ignore[assignment]
        url = f"{c.base_url.rstrip('/')}/2010-04-01/Accounts/{c.account_sid}/Messages.json"
        # Twilio's API has no idempotency header of its own; the key still helps a proxy or a
        # test receiver see retries of one notification for what they are.
        await self.post(url, data=form, auth=(c.account_sid, c.auth_token.get_secret_value()),
                        headers={"Idempotency-Key": n.idempotency_key})
