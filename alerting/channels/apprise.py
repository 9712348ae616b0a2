"""Apprise: the long tail of services (Teams, Telegram, Discord, e-mail, ntfy, …) by URL.

Each Apprise URL is its own delivery target (so a retry never repeats a service that already
succeeded); targets are named by their position in ``urls`` because the URLs carry tokens.
URLs are secrets: put them in the environment, e.g.
``SKYSENTRY_ALERTING__CHANNELS__<NAME>__URLS='["tgram://bot-token/chat-id"]'``.
"""

from __future__ import annotations

import logging
from typing import Literal

import apprise as apprise_lib
from pydantic import Field, SecretStr

from alerting.channels.base import ChannelSettings, DeliveryError
from alerting.channels.base import Channel
from alerting.notification import Notification

_TYPES = {"firing": apprise_lib.NotifyType.FAILURE, "repeat": apprise_lib.NotifyType.WARNING,
          "resolved": apprise_lib.NotifyType.SUCCESS}


class AppriseConfig(ChannelSettings):
    type: Literal["apprise"] = "apprise"
    urls: list[SecretStr] = Field(min_length=1)
    attach: bool = Field(True, description="attach the boxed frame (or the spectrogram) when the alert has "
                         "stored evidence; Apprise fetches it from the console's signed link")


class AppriseChannel(Channel):
    TYPE = "apprise"
    config: AppriseConfig

    def __init__(self, name: str, config: AppriseConfig):
        super().__init__(name, config)
        # Apprise logs request details at INFO/DEBUG; keep our logs free of its URLs.
        logging.getLogger("apprise").setLevel(logging.WARNING)
        self._clients: dict[int, apprise_lib.Apprise] = {}
        for i, url in enumerate(config.urls):
            client = apprise_lib.Apprise()
            if not client.add(url.get_secret_value()):
                raise ValueError(f"channel {name!r}: Apprise does not understand urls[{i}]; "
                                 "check its scheme against https://github.com/caronc/apprise/wiki")
            self._clients[i] = client

    def targets(self) -> list[str | None]:
        return [str(i) for i in range(len(self.config.urls))]

    async def send(self, n: Notification) -> None:
        index = int(n.target or 0)
        client = self._clients.get(index)
        if client is None:
            raise DeliveryError(f"{self.name}: no urls[{index}] in the current config", retryable=False)
        media = n.evidence.media if n.evidence else None
        attach = [u for u in (media.snapshot, media.spectrogram) if u] if media and self.config.attach else None
        result = await client.async_notify(body=n.text(), title=n.title(), notify_type=_TYPES[n.event],
                                           timeout=self.config.timeout, attach=attach or None)
        if not result:
            raise DeliveryError(f"{self.name}: Apprise could not deliver to urls[{index}] ({result.status})")
