"""Notification channels: one file per type, its config model beside its class (DESIGN §9).

A channel entry in the config names its type::

    channels:
      ops_webhook: {type: webhook, url: https://ops.example/hooks/skysentry}
      oncall_sms:  {type: twilio, account_sid: AC…, from: "+15550100", to: ["+15550111"]}

and :data:`ChannelConfig` (a union discriminated by ``type``) validates it against the right
model. Adding a type: write ``channels/<type>.py`` with ``<Type>Config`` (``type:
Literal["<type>"]``) and a :class:`~alerting.channels.base.Channel` subclass, then list both
here.
"""

from __future__ import annotations

from typing import Annotated, Union

from pydantic import Field

from alerting.channels.apprise import AppriseChannel, AppriseConfig
from alerting.channels.base import Channel, ChannelSettings, DeliveryError
from alerting.channels.slack import SlackChannel, SlackConfig
from alerting.channels.twilio import TwilioChannel, TwilioConfig
from alerting.channels.webhook import WebhookChannel, WebhookConfig

ChannelConfig = Annotated[Union[WebhookConfig, SlackConfig, TwilioConfig, AppriseConfig],
                          Field(discriminator="type")]

CHANNEL_TYPES: dict[str, type[Channel]] = {
    cls.TYPE: cls for cls in (WebhookChannel, SlackChannel, TwilioChannel, AppriseChannel)
}


def build_channel(name: str, config: ChannelSettings) -> Channel:
    """The channel object for one config entry."""
    return CHANNEL_TYPES[config.type](name, config)  # type: ignore[attr-defined]


__all__ = ["Channel", "ChannelConfig", "ChannelSettings", "DeliveryError", "CHANNEL_TYPES", "build_channel"]
