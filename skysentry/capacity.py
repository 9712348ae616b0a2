"""Sizing model: what N cameras at F fps and M microphones cost in bytes, partitions, broker
throughput, processor processes, CPU cores and Redis operations (docs/capacity.md).

Arithmetic only, over figures that were measured: the per-record sizes come from the message
contracts themselves (``skysentry.messages``: the CloudEvents headers of a frame or audio
window, framed as a Kafka v2 record), the JPEG size and the per-process throughput and CPU from
``bench/scale.py`` (real frames at the camera's configured ``max_width`` / ``jpeg_quality``),
one broker's ingest from ``bench/producer.py``, alerting's rate from ``bench/alerting.py``, and
Redis commands per detection from INFO commandstats on a real Redis
(``tests/integration/test_capacity_redis.py`` fails when the scripts change them). A figure no
result file holds (GPU throughput, today) is reported as not measured, never guessed.

Kernel module: imports only ``skysentry.*``. :func:`load_measurements` reads the bench result
files; everything else is a pure function of its arguments.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from skysentry.config import CameraSettings, MicrophoneSettings, TopicSettings
from skysentry.messages import AudioEvent, FrameEvent, encode_audio, encode_frame

RESULTS = Path(__file__).resolve().parent.parent / "bench" / "results"
TABLE_SIZES = (10, 100, 1_000, 10_000)
NOT_MEASURED = "not measured"

# Redis commands one detection costs inside alerting's observe script (alerting/state.py), by
# outcome, counted with INFO commandstats on a real Redis; the test named above measures them
# again and fails on a difference. Each script call (up to 100 detections) adds EVALSHA + TIME,
# and one consumer batch (up to 500 detections) is one network round trip. "fired" adds one
# HMGET per alert already firing at the same site (the corroboration check).
REDIS_COMMANDS_PER_DETECTION = {"pending": 7, "refresh": 9, "fired": 19}
REDIS_COMMANDS_PER_SCRIPT_CALL = 2  # EVALSHA + TIME
DETECTIONS_PER_SCRIPT_CALL = 100


# -- record sizes (exact, from the contracts) ----------------------------------------------------


def varint_len(value: int) -> int:
    """Bytes of a zig-zag varint, as Kafka's record format v2 writes lengths and deltas."""
    z = (value << 1) ^ (value >> 63)
    n = 1
    while z >= 0x80:
        z >>= 7
        n += 1
    return n


def kafka_record_bytes(key: bytes, value_len: int, headers: list[tuple[str, bytes]]) -> int:
    """One record in a v2 record batch: attributes, timestamp and offset deltas (1 byte each:
    within a batch), key, value, headers, each length a varint, and the record's own length
    prefix. The batch header (61 bytes per batch) is shared by the batch and left out."""
    body = 1 + 1 + 1  # attributes, timestampDelta, offsetDelta
    body += varint_len(len(key)) + len(key) + varint_len(value_len) + value_len
    body += varint_len(len(headers))
    for name, val in headers:
        k = name.encode()
        body += varint_len(len(k)) + len(k) + varint_len(len(val)) + len(val)
    return varint_len(body) + body


# ids of the sizes below: realistic lengths (a 4-digit camera number, a 7-digit sequence: a week
# at 5 fps); the record size depends on them by a few bytes only
_TIME = datetime(2026, 1, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)


def frame_record_bytes(jpeg_bytes: float, width: int = 640, height: int = 512) -> float:
    """Bytes of one frame record on sensor.frames: the JPEG plus key, CloudEvents headers, framing."""
    event = FrameEvent(source="cam-0001", site="site-01", time=_TIME, seq=1_234_567, width=width, height=height)
    key, _, headers = encode_frame(event, b"")
    return kafka_record_bytes(key, int(round(jpeg_bytes)), headers) - int(round(jpeg_bytes)) + jpeg_bytes


def audio_record_bytes(mic: MicrophoneSettings | None = None) -> int:
    """Bytes of one audio window record on sensor.audio (exact: 16-bit PCM at the configured rate)."""
    mic = mic or MicrophoneSettings()
    samples = int(round(mic.window_s * mic.sample_rate))
    event = AudioEvent(source="mic-0001", site="site-01", time=_TIME, seq=1_234_567, samplerate=mic.sample_rate,
                       samples=samples)
    key, value, headers = encode_audio(event, np.zeros(samples, dtype=np.int16))
    return kafka_record_bytes(key, len(value), headers)


def audio_windows_per_s(mic: MicrophoneSettings | None = None) -> float:
    mic = mic or MicrophoneSettings()
    return 1.0 / mic.hop_s


# -- measured figures ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    value: float | None
    source: str

    @property
    def measured(self) -> bool:
        return self.value is not None


@dataclass(frozen=True)
class Measurements:
    """The measured inputs of the model, each with where it comes from."""

    jpeg_bytes: Figure  # mean JPEG of a real frame at the camera's defaults
    frame_size: tuple[int, int]  # the frames the JPEG size was measured on
    vision_process_wps: Figure  # windows/s of one vision processor process
    vision_cpu_ms: Figure  # CPU ms per frame in a processor process
    audio_process_wps: Figure
    audio_cpu_ms: Figure
    vision_scaling: Figure  # 2 processes ÷ 1 process, same machine
    audio_scaling: Figure
    broker_mb_s: Figure  # one producer into one broker, MB/s
    alerting_dps: Figure  # detections/s through confirmation (alerting + Redis)
    gpu_vision_wps: Figure = field(default=Figure(None, NOT_MEASURED))
    cpus: int | None = None  # cores of the machine the benches ran on


def load_measurements(results: Path = RESULTS) -> Measurements:
    """Read bench/results/*.json. A missing file or figure becomes 'not measured'."""

    def read(name: str) -> dict:
        path = results / name
        return json.loads(path.read_text()) if path.is_file() else {}

    scale, producer, alerting = read("scale.json"), read("producer.json"), read("alerting.json")
    at = scale.get("meta", {}).get("at", "?")

    def fig(section: str, *path: str, what: str) -> Figure:
        node = scale.get(section)
        for p in path:
            node = node.get(p) if isinstance(node, dict) else None
        return Figure(float(node), f"bench/results/scale.json {section}.{'.'.join(path)} ({what}, {at})") \
            if node is not None else Figure(None, NOT_MEASURED)

    v = scale.get("vision", {})
    size = (640, 512)
    if v.get("input"):  # "... (640x512) ..."
        import re

        m = re.search(r"\((\d+)x(\d+)\)", v["input"])
        if m:
            size = (int(m[1]), int(m[2]))
    gpu = Figure(None, NOT_MEASURED)
    for path in sorted(results.glob("*.json")):  # a result that measured a GPU names it
        doc = json.loads(path.read_text())
        wps = (doc.get("gpu") or {}).get("vision_windows_per_s") if isinstance(doc, dict) else None
        if wps:
            gpu = Figure(float(wps), f"bench/results/{path.name} gpu.vision_windows_per_s")
    return Measurements(
        jpeg_bytes=fig("vision", "payload_bytes_mean", what="real frames, camera defaults"),
        frame_size=size,
        vision_process_wps=fig("vision", "one_process_windows_per_s", "median", what="median of rounds"),
        vision_cpu_ms=fig("vision", "cpu_ms_per_window", "one_process", what="median of rounds"),
        audio_process_wps=fig("audio", "one_process_windows_per_s", "median", what="median of rounds"),
        audio_cpu_ms=fig("audio", "cpu_ms_per_window", "one_process", what="median of rounds"),
        vision_scaling=fig("vision", "scaling", "median", what="2 processes ÷ 1"),
        audio_scaling=fig("audio", "scaling", "median", what="2 processes ÷ 1"),
        broker_mb_s=Figure(float(producer["mb_per_s"]), f"bench/results/producer.json mb_per_s ({producer['at']})")
        if "mb_per_s" in producer else Figure(None, NOT_MEASURED),
        alerting_dps=Figure(float(alerting["detections_per_s"]),
                            f"bench/results/alerting.json detections_per_s ({alerting['at']})")
        if "detections_per_s" in alerting else Figure(None, NOT_MEASURED),
        gpu_vision_wps=gpu,
        cpus=scale.get("meta", {}).get("cpus"),
    )


# -- the model -------------------------------------------------------------------------------------


def processes_needed(load_wps: float, per_process_wps: float | None) -> int | None:
    """Processor processes for ``load_wps`` windows/s at ``per_process_wps`` each (at least 1
    when there is any load); None when the per-process figure is not measured."""
    if load_wps <= 0:
        return 0
    if not per_process_wps:
        return None
    return math.ceil(load_wps / per_process_wps - 1e-9)


def cores_needed(load_wps: float, cpu_ms_per_window: float | None) -> float | None:
    """CPU cores the inference processes use: windows/s × CPU seconds per window."""
    if cpu_ms_per_window is None:
        return None
    return load_wps * cpu_ms_per_window / 1000.0


def brokers_needed(ingress_mb_s: float, replication_factor: int, broker_mb_s: float | None) -> int | None:
    """Brokers to absorb ``ingress_mb_s`` written ``replication_factor`` times, at the measured
    ingest of one broker (never fewer than the replication factor needs)."""
    if not broker_mb_s:
        return None
    return max(replication_factor, math.ceil(ingress_mb_s * replication_factor / broker_mb_s - 1e-9))


@dataclass
class Sizing:
    cameras: int
    fps: float
    mics: int
    frame_record_bytes: float
    audio_record_bytes: int
    camera_bytes_s: float
    mic_bytes_s: float
    frames_per_s: float
    audio_windows_per_s: float
    ingress_mb_s: float
    replication_factor: int
    broker_write_mb_s: float  # ingress × replication factor
    brokers: int | None
    vision_processes: int | None
    audio_processes: int | None
    vision_cores: float | None
    audio_cores: float | None
    gpus: str
    partitions_frames: int
    partitions_audio: int
    detections_worst_per_s: float
    redis_commands_worst_per_s: float
    alerting_load: float | None  # worst-case detections/s ÷ measured alerting rate
    limits: list[tuple[str, float, str]]  # (what, demand ÷ one unit's capacity, how to move it), worst first

    @property
    def first_bottleneck(self) -> str:
        return self.limits[0][0] if self.limits else "none"

    def as_dict(self) -> dict:
        d = asdict(self)
        d["limits"] = [{"limit": w, "load": round(x, 2), "move": m} for w, x, m in self.limits]
        d["first_bottleneck"] = self.first_bottleneck
        return d


MOVES = {
    "partitions": "create the sensor topic with at least as many partitions as processes "
                  "(`skysentry topics create --partitions N`); processes beyond the partition count sit idle",
    "broker": "a Kafka cluster of the brokers column (locally `skysentry stack up --brokers 3`): partitions and "
              "their replicas spread the writes",
    "alerting": "one alerting + Redis per group of sites (its keys are per site and source), or a higher "
                "report threshold so fewer windows become detections",
}


def size(cameras: int, fps: float, mics: int, m: Measurements, *, topics: TopicSettings | None = None,
         mic: MicrophoneSettings | None = None, replication_factor: int | None = None) -> Sizing:
    """The sizing of one deployment. ``limits`` lists every single unit the load exceeds (load ≥ 1:
    one broker, the sensor topics' default partitions, one alerting + Redis), worst first."""
    topics = topics or TopicSettings()
    rf = replication_factor or topics.replication_factor
    if m.jpeg_bytes.value is None:
        raise ValueError("no measured JPEG size: run bench/scale.py (or pass one)")
    frame_b = frame_record_bytes(m.jpeg_bytes.value, *m.frame_size)
    audio_b = audio_record_bytes(mic)
    fps_total = cameras * fps
    awps = mics * audio_windows_per_s(mic)
    cam_bs, mic_bs = frame_b * fps, audio_b * audio_windows_per_s(mic)
    ingress = (cameras * cam_bs + mics * mic_bs) / 1e6
    vproc = processes_needed(fps_total, m.vision_process_wps.value)
    aproc = processes_needed(awps, m.audio_process_wps.value)
    gpus = NOT_MEASURED
    if m.gpu_vision_wps.value:
        gpus = str(math.ceil(fps_total / m.gpu_vision_wps.value))
    dets = fps_total + awps  # worst case: every window above the report threshold
    redis = dets * REDIS_COMMANDS_PER_DETECTION["refresh"] + \
        math.ceil(dets / DETECTIONS_PER_SCRIPT_CALL) * REDIS_COMMANDS_PER_SCRIPT_CALL
    limits: list[tuple[str, float, str]] = []
    most = max(vproc or 0, aproc or 0)
    if most:
        limits.append(("partitions", most / topics.partitions, MOVES["partitions"]))
    if m.broker_mb_s.value:
        limits.append(("broker", ingress * rf / m.broker_mb_s.value, MOVES["broker"]))
    alert_load = dets / m.alerting_dps.value if m.alerting_dps.value else None
    if alert_load is not None:
        limits.append(("alerting", alert_load, MOVES["alerting"]))
    limits = sorted((x for x in limits if x[1] >= 1.0), key=lambda x: -x[1])
    return Sizing(
        cameras=cameras, fps=fps, mics=mics, frame_record_bytes=round(frame_b, 1), audio_record_bytes=audio_b,
        camera_bytes_s=round(cam_bs, 1), mic_bytes_s=round(mic_bs, 1), frames_per_s=fps_total,
        audio_windows_per_s=awps, ingress_mb_s=round(ingress, 3), replication_factor=rf,
        broker_write_mb_s=round(ingress * rf, 3), brokers=brokers_needed(ingress, rf, m.broker_mb_s.value),
        vision_processes=vproc, audio_processes=aproc,
        vision_cores=None if (c := cores_needed(fps_total, m.vision_cpu_ms.value)) is None else round(c, 1),
        audio_cores=None if (c := cores_needed(awps, m.audio_cpu_ms.value)) is None else round(c, 1),
        gpus=gpus, partitions_frames=max(topics.partitions, vproc or 0),
        partitions_audio=max(topics.partitions, aproc or 0), detections_worst_per_s=dets,
        redis_commands_worst_per_s=redis, alerting_load=None if alert_load is None else round(alert_load, 3),
        limits=limits)


# -- output ----------------------------------------------------------------------------------------


def _n(x: float | int | None, digits: int = 0) -> str:
    if x is None:
        return NOT_MEASURED
    return f"{x:,.{digits}f}"


def table(m: Measurements, fps: float | None = None, mics_per_camera: float = 1.0,
          sizes: tuple[int, ...] = TABLE_SIZES) -> str:
    """The Markdown table of docs/capacity.md: one row per size, microphones = cameras × ratio,
    replication factor 3. "Limits reached" are the single units the load exceeds, the one growth
    meets first listed first; the last column names the limit first reached at that size (not at
    the size before) and how to move it."""
    fps = fps or CameraSettings().fps
    rows = ["| cameras | microphones | MB/s into Kafka (written ×3) | vision processes (cores) "
            "| audio processes (cores) | partitions frames / audio | brokers | worst-case detections/s "
            "(Redis commands/s) | limits reached (× one unit) | new at this size: how to move it |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---|---|"]
    seen: set[str] = set()
    for n in sizes:
        mics = int(round(n * mics_per_camera))
        s = size(n, fps, mics, m, replication_factor=3)
        reached = ", ".join(f"{w} {x:,.1f}×" for w, x, _ in s.limits) or "none"
        new = [(w, mv) for w, _, mv in s.limits if w not in seen]
        seen.update(w for w, _, _ in s.limits)
        move = "; ".join(f"**{w}**: {mv}" for w, mv in new) if new else \
            ("add processor processes (same group)" if not s.limits else "as above")
        rows.append(f"| {n:,} | {mics:,} | {s.ingress_mb_s:,.1f} ({s.broker_write_mb_s:,.1f}) "
                    f"| {_n(s.vision_processes)} ({_n(s.vision_cores, 1)}) | {_n(s.audio_processes)} "
                    f"({_n(s.audio_cores, 1)}) | {s.partitions_frames:,} / {s.partitions_audio:,} | {_n(s.brokers)} "
                    f"| {s.detections_worst_per_s:,.0f} ({s.redis_commands_worst_per_s:,.0f}) | {reached} | {move} |")
    return "\n".join(rows) + "\n"


def per_source_table(m: Measurements, fps: float | None = None) -> str:
    """What one camera and one microphone write to Kafka (Markdown)."""
    fps = fps or CameraSettings().fps
    s = size(1, fps, 1, m)
    w, h = m.frame_size
    return ("| source | record on the topic | records/s | bytes/s |\n|---|---:|---:|---:|\n"
            f"| camera ({w}x{h} JPEG, {fps:g} fps) | {s.frame_record_bytes:,.0f} B | {fps:g} | {s.camera_bytes_s:,.0f} |\n"
            f"| microphone (1 s of 16-bit PCM every {1 / audio_windows_per_s():g} s) | {s.audio_record_bytes:,} B "
            f"| {audio_windows_per_s():g} | {s.mic_bytes_s:,.0f} |\n")


def sources_table(m: Measurements) -> str:
    """The measured inputs as a Markdown table (printed under the sizing table)."""
    rows = ["| figure | value | from |", "|---|---:|---|"]
    rows += [f"| {f} | {v} | {src} |" for f, v, src in sources(m)]
    rows.append("| Redis commands per detection | " + ", ".join(f"{k} {v}" for k, v in REDIS_COMMANDS_PER_DETECTION.items())
                + f" (+{REDIS_COMMANDS_PER_SCRIPT_CALL} per {DETECTIONS_PER_SCRIPT_CALL}) | INFO commandstats on a real "
                "Redis, tests/integration/test_capacity_redis.py |")
    return "\n".join(rows) + "\n"


def sources(m: Measurements) -> list[tuple[str, str, str]]:
    """(figure, value, where it comes from) for every measured input, for the doc and --json."""
    def v(f: Figure, unit: str, digits: int = 1) -> str:
        return f"{f.value:,.{digits}f} {unit}" if f.value is not None else NOT_MEASURED

    return [
        ("JPEG per frame", v(m.jpeg_bytes, "B", 0), m.jpeg_bytes.source),
        ("vision: windows/s per process", v(m.vision_process_wps, "/s"), m.vision_process_wps.source),
        ("vision: CPU ms per frame", v(m.vision_cpu_ms, "ms"), m.vision_cpu_ms.source),
        ("vision: scaling 2 ÷ 1 process", v(m.vision_scaling, "", 2), m.vision_scaling.source),
        ("audio: windows/s per process", v(m.audio_process_wps, "/s"), m.audio_process_wps.source),
        ("audio: CPU ms per window", v(m.audio_cpu_ms, "ms", 2), m.audio_cpu_ms.source),
        ("audio: scaling 2 ÷ 1 process", v(m.audio_scaling, "", 2), m.audio_scaling.source),
        ("one broker's ingest", v(m.broker_mb_s, "MB/s"), m.broker_mb_s.source),
        ("alerting + Redis", v(m.alerting_dps, "detections/s", 0), m.alerting_dps.source),
        ("vision on a GPU", v(m.gpu_vision_wps, "/s"), m.gpu_vision_wps.source),
    ]
