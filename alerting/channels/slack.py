"""Slack incoming webhook: a Block Kit message an operator reads at a glance.

Header (what happened), a field grid (what, where, confidence, first seen), and a context
line with the evidence (model, detection id, best box, links to the stored evidence) and the
idempotency key; with stored evidence, an image block shows the boxed frame (or the
spectrogram), fetched by Slack from the console's signed link. The webhook
URL is the credential, so it is a secret: set it from the environment
(``SKYSENTRY_ALERTING__CHANNELS__<NAME>__URL``).
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import SecretStr

from alerting.channels.base import ChannelSettings, HttpChannel
from alerting.notification import Notification, iso

_EMOJI = {"firing": ":rotating_light:", "repeat": ":warning:", "resolved": ":white_check_mark:"}


class SlackConfig(ChannelSettings):
    type: Literal["slack"] = "slack"
    url: SecretStr
    username: str | None = None  # honoured by legacy webhooks only
    icon_emoji: str | None = None


def _date(t) -> str:
    """Slack renders ``<!date^…>`` in the reader's time zone; the fallback is UTC ISO."""
    return f"<!date^{int(t.timestamp())}^{{date_short_pretty}} {{time_secs}}|{iso(t)}>"


def message_of(n: Notification) -> dict:
    a = n.alert
    emoji = ":arrow_double_up:" if n.escalated else _EMOJI[n.event]
    fields = [
        {"type": "mrkdwn", "text": f"*What*\n{n.what}"},
        {"type": "mrkdwn", "text": f"*Where*\n{n.where}"},
        {"type": "mrkdwn", "text": f"*Confidence*\n{n.confidence} ({n.modalities})"},
        {"type": "mrkdwn", "text": f"*First seen*\n{_date(a.starts_at)}"},
    ]
    if n.event == "resolved" and a.ends_at is not None:
        fields.append({"type": "mrkdwn", "text": f"*Resolved*\n{_date(a.ends_at)}"})
    else:
        fields.append({"type": "mrkdwn", "text": f"*Last seen*\n{_date(a.last_seen_at)}"})
    evidence = []
    if n.evidence:
        e = n.evidence
        if e.model:
            evidence.append(f"model {e.model}")
        if e.detection_id:
            evidence.append(f"detection `{e.detection_id}`")
        if e.input_event_id:
            evidence.append(f"{'frame' if e.modality == 'vision' else 'window'} `{e.input_event_id}`")
        if e.box:
            evidence.append("box " + ", ".join(f"{v:.2f}" for v in e.box))
    media = n.evidence.media if n.evidence else None
    if media is not None:
        evidence += [f"<{url}|{name}>" for name in ("snapshot", "frame", "clip", "audio", "spectrogram")
                     if (url := getattr(media, name))]
    evidence.append(f"{len(a.detection_ids)} detection(s)")
    evidence.append(f"key `{n.idempotency_key}`")
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": f"{emoji} {n.title()}"[:150], "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": a.summary[:3000]}},
        {"type": "section", "fields": fields},
    ]
    picture = media and (media.snapshot or media.spectrogram)
    if picture:  # Slack fetches it from the console: public_url must be reachable from Slack
        what = "boxed frame" if media.snapshot else "log-mel spectrogram"
        blocks.append({"type": "image", "image_url": picture,
                       "alt_text": f"{what} of {n.evidence.source} at {iso(n.evidence.captured_at)}"[:2000]
                       if n.evidence.captured_at else what})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn",
                                                     "text": ("Evidence: " + " · ".join(evidence))[:3000]}]})
    return {"text": f"{n.title()} — {a.summary}", "blocks": blocks}


class SlackChannel(HttpChannel):
    TYPE = "slack"
    config: SlackConfig

    async def send(self, n: Notification) -> None:
        doc = message_of(n)
        if self.config.username:
            doc["username"] = self.config.username
        if self.config.icon_emoji:
            doc["icon_emoji"] = self.config.icon_emoji
        await self.post(self.config.url.get_secret_value(), content=json.dumps(doc).encode(),
                        headers={"Content-Type": "application/json", "Idempotency-Key": n.idempotency_key})
