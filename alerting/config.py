"""Alerting settings: the ``alerting:`` section of the SkySentry config (YAML or environment).

:class:`AlertingServiceSettings` is the kernel's :class:`~skysentry.config.Settings` plus this
section, so the same precedence applies (defaults < YAML < ``SKYSENTRY_*`` env < arguments)
and secrets come from the environment, e.g.
``SKYSENTRY_ALERTING__CHANNELS__OPS_WEBHOOK__SECRET=…`` for the channel ``ops_webhook``
(channel names are lower case; use ``_`` rather than ``-`` so the variable name is valid).

See ``deploy/alerting.example.yaml`` for a complete routing config.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from alerting.channels import ChannelConfig
from alerting.durations import Duration
from alerting.evidence import EvidenceSettings
from alerting.matchers import Matcher, MatcherError, from_maps
from skysentry.config import Settings

Severity = Literal["info", "warning", "critical"]
_CHANNEL_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


class _Strict(BaseModel):
    # serialize_by_alias: the kernel's settings merge dumped defaults with the YAML, and the
    # dump must use the YAML's spelling (`continue`, not `continue_`).
    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)


class ConfirmSettings(_Strict):
    """An alert fires for a source when ``k`` of its last ``n`` windows scored at least
    ``threshold`` (windows are numbered by the detection's ``input_seq``; without one, the
    last ``n`` detections count). Only windows captured within ``horizon`` of the source's
    newest one count, so three hits spread over an hour never confirm."""

    threshold: float = Field(0.6, ge=0.0, le=1.0)
    k: int = Field(3, ge=1)
    n: int = Field(5, ge=1, le=100)
    horizon: Duration = 10.0

    @model_validator(mode="after")
    def _k_le_n(self) -> "ConfirmSettings":
        if self.k > self.n:
            raise ValueError(f"confirm.k ({self.k}) cannot exceed confirm.n ({self.n})")
        return self


class SeverityPolicy(_Strict):
    """Severity by what confirmed the alert."""

    vision: Severity = "warning"
    audio: Severity = "warning"
    corroborated: Severity = "critical"  # camera and microphone of one site agree


class RouteConfig(_Strict):
    """A node of the routing tree (Alertmanager's semantics).

    An alert enters at the root and descends into the first child whose matchers all match;
    with ``continue: true`` the next siblings are tried as well. A node none of whose
    children match takes the alert itself. Timing not set on a node comes from its parent.
    """

    name: str | None = None  # a stable id for notification state; defaults to the tree path
    receivers: list[str] = Field(default_factory=list)
    receiver: str | None = None  # shorthand for one receiver
    match: dict[str, str | list[str]] = Field(default_factory=dict)
    match_re: dict[str, str] = Field(default_factory=dict)
    matchers: list[str] = Field(default_factory=list)
    continue_: bool = Field(False, alias="continue")
    group_wait: Duration | None = None
    repeat_interval: Duration | None = None
    send_resolved: bool | None = None
    routes: list["RouteConfig"] = Field(default_factory=list)

    def all_receivers(self) -> list[str]:
        return [*([self.receiver] if self.receiver else []), *self.receivers]

    def compiled_matchers(self) -> tuple[Matcher, ...]:
        return from_maps(self.match, self.match_re, self.matchers)

    @model_validator(mode="after")
    def _parse(self) -> "RouteConfig":
        try:
            self.compiled_matchers()
        except MatcherError as exc:
            raise ValueError(str(exc)) from None
        return self


def default_root_route() -> RouteConfig:
    return RouteConfig(group_wait=2.0, repeat_interval=3600.0, send_resolved=True)


class InhibitRule(_Strict):
    """While an alert matching ``source_*`` fires, alerts matching ``target_*`` with the same
    values of the ``equal`` labels are not notified (their lifecycle events still go to
    Kafka). An alert never inhibits itself."""

    source_match: dict[str, str | list[str]] = Field(default_factory=dict)
    source_match_re: dict[str, str] = Field(default_factory=dict)
    source_matchers: list[str] = Field(default_factory=list)
    target_match: dict[str, str | list[str]] = Field(default_factory=dict)
    target_match_re: dict[str, str] = Field(default_factory=dict)
    target_matchers: list[str] = Field(default_factory=list)
    equal: list[str] = Field(default_factory=lambda: ["site", "label"])

    def source(self) -> tuple[Matcher, ...]:
        return from_maps(self.source_match, self.source_match_re, self.source_matchers)

    def target(self) -> tuple[Matcher, ...]:
        return from_maps(self.target_match, self.target_match_re, self.target_matchers)

    @model_validator(mode="after")
    def _parse(self) -> "InhibitRule":
        try:
            self.source(), self.target()
        except MatcherError as exc:
            raise ValueError(str(exc)) from None
        return self


def camera_mutes_audio() -> InhibitRule:
    """The default rule: a camera-confirmed alert mutes the audio-only alert of its site."""
    return InhibitRule(source_matchers=["modality=vision"],
                       target_matchers=["modality=audio", "modality!=vision"], equal=["site", "label"])


class OutboxSettings(_Strict):
    lease: Duration = Field(30.0, gt=0, description="a claimed notification returns to the queue after this "
                            "if its sender dies; must exceed the slowest channel's timeout")
    poll: Duration = Field(0.1, gt=0, description="how often idle workers look for work other replicas wrote")
    dead_letter_max: int = Field(10_000, ge=1, description="dead letters kept in Redis (newest)")


class AlertingSettings(_Strict):
    """Everything the alerting service reads."""

    group_id: str = "skysentry-alerting"
    key_prefix: str = Field("skysentry:alerting", min_length=1,
                            description="Redis key prefix: one per deployment (or test)")
    source_name: str = "skysentry/alerting"  # CloudEvents `source` of the events on `alerts`
    confirm: ConfirmSettings = ConfirmSettings()
    alert_labels: list[str] = Field(default_factory=lambda: ["drone"], min_length=1,
                                    description="detection labels that can raise an alert; a detection of "
                                    "another class seen (bird, airplane, helicopter) is counted and skipped")
    corroboration: Duration = Field(5.0, description="camera and microphone hits of one site this close "
                                    "in capture time make one corroborated alert")
    resolve_after: Duration = 60.0
    stale_after: Duration = Field(5.0, ge=0, description="a source whose processor sends score summaries (about "
                                  "one a second) and has sent nothing about it for this long is stale: its "
                                  "alerts neither resolve nor repeat until data flows again, and a resolve "
                                  "needs resolve_after of unbroken reports. 0: off (resolve by detections alone)")
    behind_after: Duration = Field(5.0, ge=0, description="'still active' repeats are held while the "
                                   "detections stream is behind: the watermark (everything written before it "
                                   "has been read) is older than this (consumer lag, broker down). 0: off")
    max_clock_skew: Duration = Field(5.0, ge=0, description="a detection or score summary dated (capture time, "
                                     "window end) further than this in the future is dead-lettered: its clock is wrong")
    max_detection_age: Duration = Field(300.0, description="older detections (capture time) are dead-lettered "
                                        "with the reason and counted, so a replayed backlog never pages anyone")
    severity: SeverityPolicy = SeverityPolicy()
    route: RouteConfig = Field(default_factory=default_root_route)
    inhibit_rules: list[InhibitRule] = Field(default_factory=lambda: [camera_mutes_audio()])
    channels: dict[str, ChannelConfig] = Field(default_factory=dict)
    outbox: OutboxSettings = OutboxSettings()
    mute_recheck: Duration = Field(5.0, gt=0, description="how often a silenced or inhibited alert is "
                                   "checked again (a silence that ends lets it through)")
    tick_poll: Duration = Field(0.1, gt=0, description="how often timers (group_wait, repeat, resolve) are "
                                "checked for work other replicas scheduled")
    tick_lease: Duration = Field(10.0, gt=0)
    alert_retention: Duration = Field(3600.0, description="resolved alerts stay readable in Redis this long")
    lineage_max: int = Field(50, ge=1, description="detection ids kept per alert (newest)")
    batch_max: int = Field(500, ge=1, description="records per poll of `detections`")
    session_timeout_ms: int = Field(10_000, ge=6_000)
    instance_id: str | None = Field(None, min_length=1, description="a name of this replica that survives its "
                                    "restarts (a StatefulSet pod name, replica-1, ...), unique in the group: static "
                                    "group membership (Kafka group.instance.id), so a restarted replica takes its "
                                    "partitions back at once instead of after session_timeout_ms. A replica that "
                                    "stops for good keeps them until the session times out. None: dynamic")
    shutdown_grace: Duration = Field(10.0, description="in-flight sends get this long on SIGTERM")
    allow_evicting_redis: bool = Field(False, description="start even though Redis may evict keys when full "
                                       "(maxmemory with a policy other than noeviction), losing alert state "
                                       "and queued notifications")

    @field_validator("channels")
    @classmethod
    def _names(cls, channels: dict) -> dict:
        for name in channels:
            if not _CHANNEL_NAME.match(name):
                raise ValueError(f"channel name {name!r}: use lower-case letters, digits, '_' or '-' "
                                 "(and start with a letter or digit)")
        return channels

    @model_validator(mode="after")
    def _check(self) -> "AlertingSettings":
        root = self.route
        if root.group_wait is None or root.repeat_interval is None:
            raise ValueError("the root route needs group_wait and repeat_interval (children inherit them)")
        missing = sorted({r for node in _walk(root) for r in node.all_receivers()} - set(self.channels))
        if missing:
            raise ValueError(f"routes name receivers that are not channels: {', '.join(missing)}; "
                             f"define them under alerting.channels (have: {', '.join(self.channels) or 'none'})")
        slowest = max((c.timeout for c in self.channels.values()), default=0.0)
        if self.outbox.lease <= slowest:
            raise ValueError(f"outbox.lease ({self.outbox.lease:g} s) must exceed the slowest channel timeout "
                             f"({slowest:g} s), or two replicas could send one notification")
        return self


def _walk(node: RouteConfig):
    yield node
    for child in node.routes:
        yield from _walk(child)


class AlertingServiceSettings(Settings):
    """The kernel's settings plus the ``alerting`` and ``evidence`` sections (``evidence`` is
    shared with the console, which serves what the alerting stores)."""

    alerting: AlertingSettings = AlertingSettings()
    evidence: EvidenceSettings = EvidenceSettings()
