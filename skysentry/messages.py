"""Message contracts (DESIGN §2–3): one pydantic model per message, CloudEvents 1.0 on Kafka.

Two encodings, both from the CloudEvents Kafka protocol binding:

* **binary mode** for sensor data (frames, audio windows): the value is the raw payload
  (JPEG bytes, PCM s16le) and the event attributes travel as ``ce_*`` headers plus
  ``content-type``. Decoding never copies the payload.
* **structured mode** for everything else (detections, alerts, model announcements): the
  value is one JSON object, ``{"specversion": "1.0", "id", "source", "type", "time",
  "datacontenttype": "application/json", "data": {...}}``, with the header
  ``content-type: application/cloudevents+json``.

Each type name carries a version (``skysentry.detection.v1``). Decoders raise
:class:`ContractError` with a reason for anything they cannot read; consumers turn that into
a dead-letter record (see :func:`skysentry.bus.send_to_dlq`) and carry on.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Annotated, ClassVar, Literal, TypeVar

import numpy as np
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

SPECVERSION = "1.0"
STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
Headers = list[tuple[str, bytes]]


class ContractError(ValueError):
    """An input that does not follow the contract; the message says what is wrong."""


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


# --------------------------------------------------------------------------------------------
# Sensor events: binary mode
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeaderSpec:
    """One Kafka header of a binary-mode record: what a foreign producer must (or may) send."""

    name: str
    required: bool
    description: str
    pattern: str | None = None  # of the UTF-8 value, for the generated JSON Schema


SENSOR_HEADERS: tuple[HeaderSpec, ...] = (
    HeaderSpec("ce_type", True, "the event type with its version, e.g. skysentry.frame.v1"),
    HeaderSpec("content-type", True, "media type of the value (case-insensitive, parameters allowed)"),
    HeaderSpec("ce_id", True, "unique id of this frame or window; detections name it as input_event_id"),
    HeaderSpec("ce_source", True, "camera or microphone id; must equal the record key"),
    HeaderSpec("ce_time", True, "capture time of the first pixel / sample, RFC 3339 with a zone (UTC: ...Z)"),
    HeaderSpec("ce_seq", True, "per-source sequence number, 0, 1, 2, ... (gaps show lost records)", r"^[0-9]+$"),
    HeaderSpec("ce_specversion", False, "CloudEvents version; only 1.0 (the default when absent)", r"^1\.0$"),
    HeaderSpec("ce_site", False, "site the sensor belongs to (default site-1); alerts corroborate per site"),
)


class SensorEvent(BaseModel):
    """Attributes common to frames and audio windows (the ``ce_*`` headers)."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(default_factory=new_id)
    source: str  # camera or microphone id; also the Kafka key
    site: str = "site-1"
    time: AwareDatetime  # capture time of the first pixel / sample
    seq: int = Field(ge=0)

    CE_TYPE: ClassVar[str]
    CONTENT_TYPE: ClassVar[str]
    EXTENSIONS: ClassVar[tuple[str, ...]]
    PAYLOAD: ClassVar[str]  # what the record value holds, for docs/schemas

    @classmethod
    def header_specs(cls) -> tuple[HeaderSpec, ...]:
        """Every header of this event type, the required ones first (docs/schemas render it)."""
        ext = tuple(HeaderSpec(f"ce_{name}", True, cls.model_fields[name].description or name, r"^[0-9]+$")
                    for name in cls.EXTENSIONS)
        return tuple(s for s in SENSOR_HEADERS if s.required) + ext + tuple(s for s in SENSOR_HEADERS if not s.required)

    @classmethod
    def required_headers(cls) -> tuple[str, ...]:
        return tuple(s.name for s in cls.header_specs() if s.required)

    def content_type(self) -> str:
        return self.CONTENT_TYPE

    def headers(self) -> Headers:
        h: Headers = [
            ("ce_specversion", SPECVERSION.encode()),
            ("ce_id", self.id.encode()),
            ("ce_source", self.source.encode()),
            ("ce_type", self.CE_TYPE.encode()),
            ("ce_time", _iso(self.time).encode()),
            ("content-type", self.content_type().encode()),
            ("ce_site", self.site.encode()),
            ("ce_seq", str(self.seq).encode()),
        ]
        h.extend((f"ce_{name}", str(getattr(self, name)).encode()) for name in self.EXTENSIONS)
        return h

    @classmethod
    def from_headers(cls, headers: Headers | None):
        """Parse the ``ce_*`` headers of one record; raise ContractError with the reason."""
        return cls.read_headers(headers)[0]

    @classmethod
    def read_headers(cls, headers: Headers | None):
        """(event, what :meth:`check_content_type` says of the payload) of one record's headers."""
        h = _header_dict(headers)
        ce_type = h.get("ce_type")
        if ce_type != cls.CE_TYPE:
            raise ContractError(f"ce_type is {ce_type!r}, expected {cls.CE_TYPE!r}")
        if h.get("ce_specversion", SPECVERSION) != SPECVERSION:
            raise ContractError(f"unsupported ce_specversion {h.get('ce_specversion')!r}")
        missing = [name for name in cls.required_headers() if name not in h]
        if missing:
            raise ContractError(f"missing headers: {', '.join(missing)}")
        fields = {"id": h["ce_id"], "source": h["ce_source"], "time": h["ce_time"],
                  "site": h.get("ce_site", "site-1"), "seq": h["ce_seq"]}
        fields.update({name: h[f"ce_{name}"] for name in cls.EXTENSIONS})
        try:
            event = cls.model_validate(fields)
        except ValidationError as exc:
            raise ContractError(f"bad {cls.CE_TYPE} headers: {_first_error(exc)}") from None
        return event, event.check_content_type(parse_media_type(h["content-type"]))

    def check_content_type(self, media: "MediaType") -> str | None:
        """Raise ContractError unless ``media`` describes this event's payload."""
        raise NotImplementedError


@dataclass(frozen=True)
class MediaType:
    """A parsed ``content-type`` (RFC 2045 / 6838): type and subtype lower-cased, parameter
    names lower-cased, values as sent (quotes removed)."""

    type: str
    subtype: str
    params: dict[str, str]

    @property
    def essence(self) -> str:
        return f"{self.type}/{self.subtype}"


_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MEDIA = re.compile(rf"^\s*({_TOKEN})/({_TOKEN})\s*((?:;.*)?)$")
_PARAM = re.compile(rf'^\s*({_TOKEN})\s*=\s*({_TOKEN}|"(?:[^"\\]|\\.)*")\s*$')


def parse_media_type(text: str) -> MediaType:
    """``IMAGE/JPEG`` → image/jpeg; ``audio/L16; rate=16000; channels=1`` → audio/l16 with
    two parameters. Raise ContractError for anything that is not a media type."""
    m = _MEDIA.match(text)
    if not m:
        raise ContractError(f"content-type {text!r:.80} is not a media type (type/subtype[;name=value])")
    params: dict[str, str] = {}
    for part in filter(str.strip, m.group(3).split(";")):
        pm = _PARAM.match(part)
        if not pm:
            raise ContractError(f"content-type {text!r:.80}: bad parameter {part.strip()!r:.40}")
        value = pm.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[pm.group(1).lower()] = value
    return MediaType(m.group(1).lower(), m.group(2).lower(), params)


class FrameEvent(SensorEvent):
    """One camera frame; the record value is the JPEG."""

    CE_TYPE: ClassVar[str] = "skysentry.frame.v1"
    CONTENT_TYPE: ClassVar[str] = "image/jpeg"
    EXTENSIONS: ClassVar[tuple[str, ...]] = ("width", "height")
    PAYLOAD: ClassVar[str] = ("one JPEG image (starts with the FF D8 FF start-of-image marker), as the camera "
                              "encoded it; content-type image/jpeg (any case, parameters ignored)")

    width: int = Field(gt=0, le=16384, description="frame width in pixels, as encoded in the JPEG")
    height: int = Field(gt=0, le=16384, description="frame height in pixels, as encoded in the JPEG")

    def check_content_type(self, media: MediaType) -> None:
        if media.essence != "image/jpeg":  # parameters are allowed and ignored
            raise ContractError(f"content-type is {media.essence!r}: frames must be JPEG (image/jpeg)")


# Audio windows are 16-bit signed PCM, mono. Two byte orders are read, each named exactly:
#   audio/L16;rate=R[;channels=1]  big-endian (network order), as RFC 2586 / RFC 3551 register it;
#   audio/x-raw;format=S16LE;rate=R;channels=1  little-endian, what SkySentry's producers send.
# A bare ``audio/L16`` (no rate: not valid under RFC 2586, whose rate parameter is required) is
# what SkySentry wrote before; it is read as little-endian and deprecated.
AUDIO_LE = "audio/x-raw"


class AudioEvent(SensorEvent):
    """One audio window; the record value is 16-bit signed PCM mono, byte order by content type."""

    CE_TYPE: ClassVar[str] = "skysentry.audio.v1"
    CONTENT_TYPE: ClassVar[str] = f"{AUDIO_LE};format=S16LE"
    EXTENSIONS: ClassVar[tuple[str, ...]] = ("samplerate", "samples")
    PAYLOAD: ClassVar[str] = ("ce_samples 16-bit signed PCM samples, mono, 2 x ce_samples bytes, no header. The "
                              "content-type names the byte order and is authoritative: "
                              "audio/x-raw;format=S16LE;rate=R;channels=1 little-endian (what SkySentry sends); "
                              "audio/L16;rate=R[;channels=1] big-endian, network order (RFC 2586 / RFC 3551); "
                              "a bare audio/L16 without rate is read as little-endian (SkySentry's old form, "
                              "deprecated). rate must equal ce_samplerate, channels must be 1; float samples "
                              "(format=F32LE, audio/*float*) and any other type are dead-lettered")

    samplerate: int = Field(gt=0, le=384_000, description="samples per second (Hz)")
    samples: int = Field(gt=0, description="samples in this window; the value holds 2 bytes per sample")
    def content_type(self) -> str:
        return f"{self.CONTENT_TYPE};rate={self.samplerate};channels=1"

    def check_content_type(self, media: MediaType) -> str:
        """The payload's byte order, ``<`` or ``>``; ContractError for anything but 16-bit PCM mono."""
        p = media.params
        fmt = p.get("format", "").upper()
        if "FLOAT" in media.subtype.upper() or fmt.startswith("F") or "float" in p.get("encoding", "").lower():
            raise ContractError(f"content-type {media.essence} {p}: float samples are not accepted; "
                                "send 16-bit signed PCM (audio/L16;rate=... or audio/x-raw;format=S16LE;rate=...)")
        if media.essence == "audio/l16":
            order = ">" if "rate" in p else "<"  # bare audio/L16: SkySentry's old little-endian form
        elif media.essence == AUDIO_LE and fmt in ("S16LE", "S16BE"):
            order = "<" if fmt == "S16LE" else ">"
        else:
            raise ContractError(f"content-type {media.essence}{';format=' + fmt if fmt else ''} is not accepted: "
                                "audio must be 16-bit signed PCM mono (audio/L16;rate=R big-endian, or "
                                "audio/x-raw;format=S16LE;rate=R;channels=1)")
        if "rate" in p and p["rate"] != str(self.samplerate):
            raise ContractError(f"content-type says rate={p['rate']}, ce_samplerate says {self.samplerate}")
        if p.get("channels", "1") != "1":
            raise ContractError(f"content-type says channels={p['channels']}: only mono (channels=1) is accepted")
        return order


JPEG_MAGIC = b"\xff\xd8\xff"


def encode_frame(event: FrameEvent, jpeg: bytes) -> tuple[bytes, bytes, Headers]:
    """(key, value, headers) of a frame record."""
    return event.source.encode(), jpeg, event.headers()


def decode_frame(value: bytes | None, headers: Headers | None) -> FrameEvent:
    """Validate a frame record's headers and that the value looks like a JPEG (not decoded)."""
    event = FrameEvent.from_headers(headers)
    if not value or not bytes(value[:3]) == JPEG_MAGIC:
        raise ContractError("value is not a JPEG (missing FF D8 FF start-of-image marker)")
    return event


def encode_audio(event: AudioEvent, pcm: np.ndarray) -> tuple[bytes, bytes, Headers]:
    """(key, value, headers) of an audio record; ``pcm`` is int16 mono, sent little-endian."""
    if pcm.dtype != np.int16 or pcm.ndim != 1:
        raise ContractError(f"audio must be int16 mono, got {pcm.dtype} with shape {pcm.shape}")
    if len(pcm) != event.samples:
        raise ContractError(f"header says {event.samples} samples, payload has {len(pcm)}")
    return event.source.encode(), pcm.astype("<i2", copy=False).tobytes(), event.headers()


def decode_audio(value: bytes | None, headers: Headers | None) -> tuple[AudioEvent, np.ndarray]:
    """Headers and samples: a read-only int16 view over ``value`` for little-endian windows,
    a native-order copy for big-endian (``audio/L16;rate=...``) ones."""
    event, order = AudioEvent.read_headers(headers)
    if value is None or len(value) != 2 * event.samples:
        got = 0 if value is None else len(value)
        raise ContractError(f"audio payload is {got} bytes, expected {2 * event.samples} ({event.samples} samples)")
    pcm = np.frombuffer(value, dtype=f"{order}i2")
    return event, pcm if order == "<" else pcm.astype("<i2")


# --------------------------------------------------------------------------------------------
# Structured events: detections, alerts, model announcements
# --------------------------------------------------------------------------------------------

Modality = Literal["vision", "audio"]
Score = Annotated[float, Field(ge=0.0, le=1.0)]


class Contract(BaseModel):
    """Base of every JSON message. Readers ignore fields they do not know (forward
    compatibility: a version may gain optional fields, e.g. ``alert_id`` on alerts, without a
    new type name, and a consumer on the older model still reads it); removing or changing a
    field needs a new type version. Drift between models and docs/schemas is caught by
    tests/unit/kernel/test_schemas.py instead."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    CE_TYPE: ClassVar[str]


class ModelRef(Contract):
    name: str
    version: str


# A string, not an enum: another vendor's model may add classes, and a consumer that does not
# know one must still read the message (alerting skips labels it does not alert on).
LABEL_DESCRIPTION = ("the class seen: drone, bird, airplane or helicopter for vision; drone for audio; "
                     "only drone raises alerts. A string, not an enum: other models may add classes")


class Box(Contract):
    """An axis-aligned box in normalised image coordinates (0–1, origin top-left)."""

    x1: Score
    y1: Score
    x2: Score
    y2: Score
    score: Score
    label: str = Field("drone", description=LABEL_DESCRIPTION)


class ProcessingTimes(Contract):
    """When the processor handled the window (its own wall clock, UTC): what a consumer needs to
    split capture → detection into stages. Optional on a detection; absent from older processors."""

    received_at: AwareDatetime | None = Field(
        None, description="the processor's consumer fetched the input record (before its batch was formed)")
    batch_started_at: AwareDatetime = Field(description="the input's micro-batch was closed and its processing began")
    inference_started_at: AwareDatetime = Field(
        description="the model began running the batch (after decoding and any earlier batches' runs)")
    inference_ended_at: AwareDatetime = Field(description="the model finished the batch")
    batch_size: int = Field(ge=1, description="windows in the model run")


class Detection(Contract):
    """One window (frame or audio window) in which the model saw something: labelled `drone`
    when its drone score reached the report threshold; otherwise a vision processor may report
    the strongest other class it saw (`bird`, `airplane`, `helicopter`) so consumers see
    what was in the sky. Only `drone` raises alerts."""

    CE_TYPE: ClassVar[str] = "skysentry.detection.v1"

    id: str = Field(default_factory=new_id)
    site: str
    source: str
    modality: Modality
    label: str = Field("drone", description=LABEL_DESCRIPTION)
    score: Score
    boxes: list[Box] = Field(default_factory=list)
    model: ModelRef
    input_event_id: str  # ce_id of the frame / audio window: lineage
    input_seq: int | None = None
    captured_at: AwareDatetime
    processed_at: AwareDatetime
    timing: ProcessingTimes | None = Field(
        None, description="the processor's per-stage times (receive, batch, inference), for latency breakdowns")


class ScoreSummary(Contract):
    """Per-source heartbeat, about once a second: the source is alive and what it scores."""

    CE_TYPE: ClassVar[str] = "skysentry.score_summary.v1"

    site: str
    source: str
    modality: Modality
    model: ModelRef
    window_start: AwareDatetime
    window_end: AwareDatetime
    windows: int = Field(ge=0)
    skipped: int = Field(ge=0, default=0)
    max_score: Score
    mean_score: Score


class Alert(Contract):
    """A lifecycle event of one alert (fingerprint = site, source, label).

    The CloudEvents `id` of each event is unique and stays the same when the event is
    resent: deduplicate by `ce_id`. An incursion's events share `alert_id`; a later
    incursion at the same fingerprint gets a new one. Neither is ever reused."""

    CE_TYPE: ClassVar[str] = "skysentry.alert.v1"

    fingerprint: str
    alert_id: str | None = Field(None, description="this incarnation of the alert (one incursion, firing to "
                                 "resolved): a UUIDv7 fixed when it fired, never reused, also not by a later "
                                 "alert with the same fingerprint")
    event: Literal["firing", "repeat", "resolved"]
    status: Literal["firing", "resolved"]
    severity: Literal["info", "warning", "critical"]
    site: str
    source: str
    label: str = Field("drone", description="the class that alerted: one of the alerting's `alert_labels` "
                       "(only drone by default)")
    modalities: list[Modality]
    max_score: Score
    starts_at: AwareDatetime
    last_seen_at: AwareDatetime
    ends_at: AwareDatetime | None = None
    detection_ids: list[str]  # lineage: the detections that confirmed or refreshed it
    summary: str


class ModelAnnouncement(Contract):
    """A new model version in the registry; processors verify, load, warm up and swap."""

    CE_TYPE: ClassVar[str] = "skysentry.model.v1"

    name: str
    version: str
    task: Modality
    uri: str  # path or fsspec URL of the .onnx file; the card sits beside it
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    card_uri: str | None = None


class EvidenceMedia(Contract):
    """Signed links to the stored evidence of an alert (version 1.1), served by ``skysentry
    console``. Each works until ``expires_at``; a changed character makes it refused. A link
    is absent when that file could not be made (the frame had left ``sensor.frames``, or too
    few frames for a clip)."""

    snapshot: str | None = Field(None, description="vision: the evidence frame as a JPEG with the boxes and labels "
                                 "drawn")
    frame: str | None = Field(None, description="vision: the original frame, the JPEG as the camera sent it")
    clip: str | None = Field(None, description="vision: an animated GIF of the frames around it")
    audio: str | None = Field(None, description="audio: the window as a 16-bit PCM WAV file")
    spectrogram: str | None = Field(None, description="audio: its log-mel spectrogram as a PNG")
    expires_at: AwareDatetime = Field(description="when the links stop working")


class WebhookEvidence(Contract):
    """The strongest detection behind an alert: enough to find the frame or audio window,
    and (version 1.1) its boxes and signed links to the stored evidence."""

    detection_id: str | None = None
    input_event_id: str | None = None
    source: str | None = None
    modality: str | None = None
    score: float | None = None
    model: str | None = Field(None, description="model name and version, space-separated")
    box: list[float] | None = Field(None, description="x1, y1, x2, y2 (normalised) of the best box, vision only")
    captured_at: AwareDatetime | None = None
    boxes: list[Box] | None = Field(None, description="version 1.1: every box of that detection, vision only")
    media: EvidenceMedia | None = Field(None, description="version 1.1: signed links to the stored evidence; "
                                        "absent when none was stored or links are off")


class WebhookBody(Contract):
    """The JSON body of a webhook notification (the webhook channel, alerting/channels/webhook.py),
    signed as docs/contracts.md says. Deduplicate by `idempotency_key` (also the
    Idempotency-Key header): it is the same on every retry and never reused. Version "1.1"
    adds `evidence.boxes` and `evidence.media` (links to the stored evidence); a reader of
    "1" that ignores fields it does not know reads it unchanged."""

    SCHEMA_NAME: ClassVar[str] = "skysentry.webhook.v1"

    version: Literal["1.1"] = Field(description='"1.1": the major version is the schema\'s name (v1); a minor '
                                    'version only adds optional fields')
    idempotency_key: str
    event: Literal["firing", "repeat", "resolved"]
    escalated: bool = Field(description="a repeat sent early because the severity went up")
    receiver: str = Field(description="the channel name in the alerting's configuration")
    route: str = Field(description="the routing-tree node that chose this receiver")
    title: str
    alert: Alert
    sources: list[str]
    evidence: WebhookEvidence | None
    decided_at: AwareDatetime


JSON_MESSAGES: tuple[type[Contract], ...] = (Detection, ScoreSummary, Alert, ModelAnnouncement)
SENSOR_EVENTS: tuple[type[SensorEvent], ...] = (FrameEvent, AudioEvent)
_BY_TYPE = {m.CE_TYPE: m for m in JSON_MESSAGES}
C = TypeVar("C", bound=Contract)


class Envelope(BaseModel):
    """The CloudEvents structured-mode envelope around every JSON message."""

    model_config = ConfigDict(extra="allow", frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(default_factory=new_id)
    source: str
    type: str
    time: AwareDatetime = Field(default_factory=utcnow)
    datacontenttype: Literal["application/json"] = "application/json"
    data: dict


def encode_structured(message: Contract, *, source: str, id: str | None = None,
                      time: datetime | None = None) -> tuple[bytes, Headers]:
    """(value, headers) of a structured-mode record. The envelope id defaults to the
    message's own ``id`` where it has one, so lineage survives re-encoding."""
    envelope = {
        "specversion": SPECVERSION,
        "id": id or getattr(message, "id", None) or new_id(),
        "source": source,
        "type": message.CE_TYPE,
        "time": _iso(time or utcnow()),
        "datacontenttype": "application/json",
        "data": message.model_dump(mode="json"),
    }
    return json.dumps(envelope, separators=(",", ":")).encode(), [("content-type", STRUCTURED_CONTENT_TYPE.encode())]


def decode_structured(value: bytes | None, expect: type[C] | tuple[type[Contract], ...] | None = None
                      ) -> tuple[Envelope, Contract]:
    """Parse a structured-mode record; ``expect`` limits which message types are accepted."""
    if not value:
        raise ContractError("empty value; expected a CloudEvents JSON object")
    try:
        raw = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ContractError(f"value is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ContractError(f"value is JSON {type(raw).__name__}, expected an object")
    try:
        envelope = Envelope.model_validate(raw)
    except ValidationError as exc:
        raise ContractError(f"not a CloudEvents 1.0 envelope: {_first_error(exc)}") from None
    model = _BY_TYPE.get(envelope.type)
    allowed = (expect,) if isinstance(expect, type) else expect
    if model is None or (allowed and model not in allowed):
        raise ContractError(f"cannot read event type {envelope.type!r}"
                            + (f"; expected {', '.join(m.CE_TYPE for m in allowed)}" if allowed else ""))
    try:
        return envelope, model.model_validate(envelope.data)
    except ValidationError as exc:
        raise ContractError(f"bad {envelope.type} data: {_first_error(exc)}") from None


def decode_event(value: bytes | None, headers: Headers | None,
                 expect: type[C] | tuple[type[Contract], ...] | None = None) -> tuple[Envelope, Contract]:
    """A JSON event in either mode of the CloudEvents Kafka binding, told apart by the
    ``content-type`` header: structured (``application/cloudevents+json``: the value is the
    envelope) or binary (``application/json`` with ``ce_*`` headers: the value is the data).
    Any other or no content type is refused."""
    ct = header(headers, "content-type")
    if ct is None:
        raise ContractError(f"no content-type header; expected {STRUCTURED_CONTENT_TYPE} (structured mode) "
                            "or application/json with ce_* headers (binary mode)")
    media = parse_media_type(ct)
    if media.essence == STRUCTURED_CONTENT_TYPE:
        return decode_structured(value, expect)
    if media.essence != "application/json":
        raise ContractError(f"content-type {media.essence!r} is not accepted: expected {STRUCTURED_CONTENT_TYPE} "
                            "(structured mode) or application/json with ce_* headers (binary mode)")
    h = _header_dict(headers)
    attrs = {k[3:]: v for k, v in h.items() if k.startswith("ce_")}
    missing = [f"ce_{a}" for a in ("specversion", "id", "source", "type") if a not in attrs]
    if missing:
        raise ContractError(f"binary-mode event without {', '.join(missing)}")
    try:
        data = json.loads(value or b"")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ContractError(f"value is not JSON: {exc}") from None
    envelope = json.dumps({**attrs, "datacontenttype": "application/json", "data": data}).encode()
    return decode_structured(envelope, expect)


# --------------------------------------------------------------------------------------------


def _iso(t: datetime) -> str:
    if t.tzinfo is None:
        raise ContractError("timestamps must be timezone-aware (UTC)")
    return t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _header_dict(headers: Headers | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in headers or ():
        try:
            key, raw = item
            out[str(key)] = bytes(raw).decode() if raw is not None else ""
        except (TypeError, ValueError, UnicodeDecodeError) as exc:
            raise ContractError(f"unreadable header {item!r:.80}: {exc}") from None
    return out


def header(headers: Headers | None, name: str) -> str | None:
    """One header's value as text, or None."""
    for key, raw in headers or ():
        if key == name and raw is not None:
            return bytes(raw).decode(errors="replace")
    return None


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "value"
    return f"{where}: {err.get('msg')}"
