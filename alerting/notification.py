"""What a channel delivers: one lifecycle event of one alert, for one receiver.

The Kafka contract (:class:`skysentry.messages.Alert`) is what other systems read; a
:class:`Notification` wraps it with what only delivery needs — the idempotency key, the
receiver and route that chose it, all sources, and the evidence an operator wants to see —
so delivery details never leak into the contract.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel, ConfigDict

from skysentry.messages import Alert, Box, EvidenceMedia

Event = Literal["firing", "repeat", "resolved"]
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}


class Evidence(BaseModel):
    """The strongest detection behind an alert: enough to find the frame or audio window."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    detection_id: str | None = None
    input_event_id: str | None = None
    source: str | None = None
    modality: str | None = None
    score: float | None = None
    model: str | None = None  # "name version"
    box: list[float] | None = None  # x1, y1, x2, y2 (normalised) of the best box, vision only
    captured_at: datetime | None = None
    boxes: list[Box] | None = None  # every box of that detection (alerts opened before this was stored: None)
    media: EvidenceMedia | None = None  # signed links to the stored evidence (alerting/evidence.py)


class Notification(BaseModel):
    """One alert event for one channel (and one target of it, e.g. a phone number)."""

    # ignore: an outbox entry written by a newer replica (more fields) is still delivered
    model_config = ConfigDict(frozen=True, extra="ignore")

    idempotency_key: str
    channel: str
    target: str | None = None
    route: str
    event: Event
    alert: Alert
    sources: list[str]
    evidence: Evidence | None = None
    escalated: bool = False  # a repeat sent early because the severity went up
    decided_at: datetime

    # ---- text shared by every channel, so an SMS and a Slack message say the same thing

    @property
    def what(self) -> str:
        return f"{self.alert.label.capitalize()} ({self.alert.severity})"

    @property
    def where(self) -> str:
        return f"site {self.alert.site} · {', '.join(self.sources)}"

    @property
    def confidence(self) -> str:
        return f"{self.alert.max_score:.0%}"

    @property
    def modalities(self) -> str:
        return " + ".join(sorted(self.alert.modalities, reverse=True))

    def title(self) -> str:
        a = self.alert
        if self.event == "resolved":
            return f"Resolved: {a.label} at site {a.site}"
        prefix = "Escalated" if self.escalated else ("Still active" if self.event == "repeat" else "Alert")
        return f"{prefix}: {a.label} at site {a.site} ({a.severity})"

    def text(self) -> str:
        """A few plain lines for channels without rich formatting."""
        a = self.alert
        lines = [self.title(), a.summary,
                 f"Confidence {self.confidence} · {self.modalities} · first seen {iso(a.starts_at)}"]
        if self.event == "resolved" and a.ends_at is not None:
            lines.append(f"Last seen {iso(a.last_seen_at)}, resolved {iso(a.ends_at)}")
        return "\n".join(lines)

    def short_text(self, limit: int = 160) -> str:
        """One SMS segment: severity, what, where, confidence, time."""
        a = self.alert
        when = a.starts_at.astimezone(timezone.utc).strftime("%H:%M:%SZ")
        if self.event == "resolved":
            text = f"SkySentry RESOLVED: {a.label} at {a.site} ({'+'.join(self.sources)}), since {when}"
        else:
            tag = "ESCALATED" if self.escalated else a.severity.upper()
            text = (f"SkySentry {tag}: {a.label} at {a.site} ({'+'.join(self.sources)}) "
                    f"{self.confidence} since {when}")
        return text if len(text) <= limit else text[: limit - 1] + "…"


def iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
