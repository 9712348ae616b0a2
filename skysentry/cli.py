"""``skysentry`` — the one composition root: every service's commands meet here.

This is the only kernel module that imports services (DESIGN §1). Services keep their heavy
imports (faust, onnxruntime, torch) inside command functions so ``skysentry --help`` is fast
and a serving install never touches torch.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from pydantic import ValidationError
from rich.console import Console

from skysentry.config import ConfigError, Settings
from skysentry.logs import capture_native_stderr, setup_logging

app = typer.Typer(help="SkySentry: real-time drone detection over Apache Kafka — producers, processors, alerting, "
                       "trainer and the local stack, one command each.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
topics_app = typer.Typer(help="Create and inspect SkySentry's Kafka topics.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")


def _mount_services() -> None:
    """Each service owns its sub-commands; they are mounted here and nowhere else."""
    from alerting.cli import app as alert_app
    from console.cli import app as console_app
    from deploy.local.cli import app as stack_app
    from detectors.cli import app as detect_app
    from producers.synthetic_cli import app as synth_app
    from stream_processors.cli import app as process_app
    from trainer.cli import app as trainer_app

    app.add_typer(stack_app, name="stack", help="Start, stop and inspect the local Kafka + Redis.")
    app.add_typer(synth_app, name="synth", help="Write synthetic video/audio with ground truth.")
    app.add_typer(process_app, name="process", help="Run the vision or audio stream processor.")
    app.add_typer(alert_app, name="alert", help="Run alerting; manage silences; test channels.")
    app.add_typer(detect_app)  # no name: its one command, `detect`, sits at the top level
    app.add_typer(trainer_app)  # no name: `train`, `eval`, `retrain` sit at the top level
    app.add_typer(console_app)  # no name: `console` sits at the top level


# What each command's exit status means, shown at the end of its --help. Kept here, beside the
# mounting, so every command (the services' too) says it the same way; the test of the help
# fails on a command missing from this table.
KAFKA_DOWN = "2 Kafka not reachable"
SERVICE = "0 stopped by SIGTERM/SIGINT"
PROCESSOR = (f"{SERVICE}; 1 the processor crashed (uncommitted input is read again on restart); 2 invalid "
             "settings or a model refused; 75 outputs not delivered at shutdown (read again on restart)")
EXIT_STATUS: dict[str, str] = {
    "camera": f"0 the source ended (end of file, --max-frames) or SIGTERM/SIGINT; 2 source unavailable (a file; a live camera only with --once); {KAFKA_DOWN}",
    "mic": f"0 the source ended (end of file, --max-windows) or SIGTERM/SIGINT; 2 source unavailable (a file; a live device only with --once); {KAFKA_DOWN}",
    "topics create": f"0 every topic exists and has partition leaders; {KAFKA_DOWN}",
    "topics describe": f"0 shown; {KAFKA_DOWN}",
    "tail": f"0 --max reached, --timeout-s without a record, or Ctrl-C; {KAFKA_DOWN}",
    "schemas": "0 printed or written",
    "console": "0 stopped by SIGTERM/SIGINT, or hash-password printed; 2 bad configuration, bad credentials, or a "
               "non-loopback host without credentials; 1 the port could not be bound",
    "capacity": "0 printed; 2 no measured JPEG size in bench/results (run bench/scale.py)",
    "settings": "0 printed or written",
    "stack up": "0 Kafka and Redis answer; 1 a server did not start (the message says why)",
    "stack down": "0 stopped; 1 a server could not be stopped",
    "stack status": "0 Kafka and Redis both run; 1 one of them is stopped",
    "synth video": "0 written; 2 the output path cannot be written",
    "synth audio": "0 written; 2 the output path cannot be written",
    "process vision": PROCESSOR,
    "process audio": PROCESSOR,
    "alert run": f"{SERVICE}; 1 the service did not start; 2 config file missing or invalid",
    "alert status": "0 shown; 1 Redis not readable; 2 config file missing or invalid",
    "alert test-channel": "0 every target delivered; 1 a delivery failed; 2 no such channel, or config invalid",
    "alert silence add": "0 added; 2 invalid matchers, duration or config",
    "alert silence list": "0 shown; 2 config file missing or invalid",
    "alert silence expire": "0 expired; 1 no active silence with that id; 2 config file missing or invalid",
    "detect": "0 every result printed; 2 unknown file kind, model refused or wrong for the file, or undecodable input",
    "train": "0 trained and exported (the model card says how well)",
    "eval": "0 measured",
    "retrain": "0 the candidate was promoted; 3 refused: not better than the current model",
}
ANY_COMMAND = ("Any command exits 2 on a usage error (unknown option, bad value) and 1 on an unexpected error, "
               "with its traceback.")


def _document_exit_status(typer_app: typer.Typer, prefix: tuple[str, ...] = ()) -> None:
    """Append each command's line of EXIT_STATUS to its help (typer builds the click commands
    from these infos when the app runs, so setting the epilog here reaches every command)."""
    for info in typer_app.registered_commands:
        path = " ".join((*prefix, info.name or info.callback.__name__.replace("_", "-")))
        info.epilog = f"Exit status: {EXIT_STATUS[path]}. {ANY_COMMAND}"
    for group in typer_app.registered_groups:
        _document_exit_status(group.typer_instance, (*prefix, group.name) if group.name else prefix)


_mount_services()
console = Console(stderr=True, soft_wrap=True)

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML settings file (else $SKYSENTRY_CONFIG).")]
BootstrapOpt = Annotated[Optional[str], typer.Option("--bootstrap", help="Kafka bootstrap servers (else settings / $KAFKA_BOOTSTRAP_SERVERS).")]


def load_settings(config: Path | None, bootstrap: str | None = None, **sections) -> Settings:
    try:
        settings = Settings.load(config)
    except (FileNotFoundError, ConfigError, ValidationError) as exc:
        fail(f"invalid settings: {exc}")
    if bootstrap:
        settings.kafka.bootstrap_servers = bootstrap
    for name, values in sections.items():  # command-line options over the file and environment, validated
        section = getattr(settings, name)
        given = {key: value for key, value in values.items() if value is not None}
        try:
            setattr(settings, name, type(section).model_validate(section.model_dump() | given))
        except ValidationError as exc:
            fail(f"invalid option: {exc}")
    setup_logging(settings.log.level, settings.log.json_format)
    return settings


def fail(message: str, code: int = 2) -> None:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


# --------------------------------------------------------------------------------------------
# producers
# --------------------------------------------------------------------------------------------


@app.command()
def camera(
    source: Annotated[Optional[str], typer.Option(help="Device index, video file, rtsp:// or http(s):// URL, or 'synthetic'.")] = None,
    camera_id: Annotated[Optional[str], typer.Option("--id", help="Camera id: the Kafka key and ce_source.")] = None,
    site: Annotated[Optional[str], typer.Option(help="Site the camera belongs to.")] = None,
    fps: Annotated[Optional[float], typer.Option(help="Target frames per second; a faster source is thinned.")] = None,
    max_width: Annotated[Optional[int], typer.Option(help="Downscale wider frames to this width.")] = None,
    jpeg_quality: Annotated[Optional[int], typer.Option(help="JPEG quality 10–100.")] = None,
    loop: Annotated[bool, typer.Option("--loop", help="Replay a video file forever.")] = False,
    max_frames: Annotated[Optional[int], typer.Option(help="Stop after this many frames.")] = None,
    rtsp_transport: Annotated[Optional[str], typer.Option(help="RTP from an rtsp:// camera over 'tcp' (default) or 'udp'.")] = None,
    once: Annotated[bool, typer.Option("--once", help="A live source that is down (at start or later) ends the producer with exit code 2 instead of being reopened until it is back.")] = False,
    config: ConfigOpt = None, bootstrap: BootstrapOpt = None,
) -> None:
    """Stream a camera (or a video file, a URL, the synthetic scene) onto sensor.frames.

    A live camera (a device, rtsp://, http(s)://) is reopened whenever it is lost, also when it is
    down at start; each cause (refused, timed out, not found, unauthorised, unsupported transport)
    is logged once. Put credentials in the URL from the environment, e.g.
    SKYSENTRY_CAMERA__SOURCE="rtsp://user:$CAM_PASS@10.0.0.7:554/stream1"; they are logged as ***."""
    from producers.camera import CameraProducer, SourceUnavailable
    from skysentry.service import run_until_signalled

    s = load_settings(config, bootstrap, camera=dict(source=source, camera_id=camera_id, site=site, fps=fps,
                                                     max_width=max_width, jpeg_quality=jpeg_quality, loop=loop or None,
                                                     rtsp_transport=rtsp_transport, reconnect=False if once else None))
    producer = CameraProducer(s.camera, s.kafka, s.topics, max_frames=max_frames)
    capture_native_stderr()  # FFmpeg's own lines, should any escape its log level
    _serve_metrics(s)
    try:
        run_until_signalled(producer.run)
    except SourceUnavailable as exc:
        fail(str(exc))
    except _broker_errors() as exc:
        fail(f"Kafka at {s.kafka.bootstrap_servers} is not reachable ({exc}); start it with `skysentry stack up` "
             "or set KAFKA_BOOTSTRAP_SERVERS")


@app.command()
def mic(
    source: Annotated[Optional[str], typer.Option(help="'default', a device index or name ('device:NAME'), a WAV/FLAC file, or 'synthetic'.")] = None,
    mic_id: Annotated[Optional[str], typer.Option("--id", help="Microphone id: the Kafka key and ce_source.")] = None,
    site: Annotated[Optional[str], typer.Option(help="Site the microphone belongs to.")] = None,
    window_s: Annotated[Optional[float], typer.Option(help="Window length in seconds.")] = None,
    hop_s: Annotated[Optional[float], typer.Option(help="Seconds between window starts.")] = None,
    fast: Annotated[bool, typer.Option("--fast", help="Replay files as fast as possible instead of in real time.")] = False,
    loop: Annotated[bool, typer.Option("--loop", help="Replay a file forever.")] = False,
    max_windows: Annotated[Optional[int], typer.Option(help="Stop after this many windows.")] = None,
    once: Annotated[bool, typer.Option("--once", help="A live device that is missing at start or lost later ends the producer with exit code 2 instead of being reopened until it is back.")] = False,
    config: ConfigOpt = None, bootstrap: BootstrapOpt = None,
) -> None:
    """Stream a microphone (or a WAV/FLAC file, the synthetic source) onto sensor.audio.

    A live device is watched (callbacks that stop, PortAudio errors, its card gone) and reopened
    by name until it is back; the loss is logged once. `python -m sounddevice` lists the devices;
    name a USB microphone by part of its name (--source device:USB), not by its index."""
    from producers.microphone import AudioSourceError, MicrophoneProducer
    from skysentry.service import run_until_signalled

    s = load_settings(config, bootstrap, mic=dict(source=source, mic_id=mic_id, site=site, window_s=window_s,
                                                  hop_s=hop_s, realtime=False if fast else None, loop=loop or None,
                                                  reconnect=False if once else None))
    producer = MicrophoneProducer(s.mic, s.kafka, s.topics, max_windows=max_windows)
    capture_native_stderr()  # PortAudio's and ALSA's own lines ("Expression ... failed") into the log
    _serve_metrics(s)
    try:
        run_until_signalled(producer.run)
    except AudioSourceError as exc:
        fail(str(exc))
    except _broker_errors() as exc:
        fail(f"Kafka at {s.kafka.bootstrap_servers} is not reachable ({exc}); start it with `skysentry stack up` "
             "or set KAFKA_BOOTSTRAP_SERVERS")


def _broker_errors() -> tuple[type[BaseException], ...]:
    from aiokafka.errors import KafkaConnectionError, KafkaError

    return (KafkaConnectionError, KafkaError)


def _serve_metrics(s: Settings) -> None:
    from skysentry.metrics import serve_metrics

    serve_metrics(s.metrics)


# --------------------------------------------------------------------------------------------
# topics, tail, schemas
# --------------------------------------------------------------------------------------------


@topics_app.command("create")
def topics_create(partitions: Annotated[Optional[int], typer.Option(help="Partitions per topic.")] = None,
                  config: ConfigOpt = None, bootstrap: BootstrapOpt = None) -> None:
    """Create every SkySentry topic that does not exist yet (idempotent)."""
    from skysentry.topics import ensure_topics

    s = load_settings(config, bootstrap, topics=dict(partitions=partitions))
    try:
        created = asyncio.run(ensure_topics(s.kafka, s.topics))
    except _broker_errors() as exc:
        fail(f"Kafka at {s.kafka.bootstrap_servers} is not reachable: {exc}")
    console.print(f"created {len(created)} topic(s): {', '.join(created) or '(all existed)'}")


@topics_app.command("describe")
def topics_describe(names: Annotated[Optional[list[str]], typer.Argument(help="Topics (default: all).")] = None,
                    config: ConfigOpt = None, bootstrap: BootstrapOpt = None) -> None:
    """Show topics and their partition counts."""
    from rich.table import Table

    from skysentry.topics import describe_topics

    s = load_settings(config, bootstrap)
    try:
        rows = asyncio.run(describe_topics(s.kafka, names))
    except _broker_errors() as exc:
        fail(f"Kafka at {s.kafka.bootstrap_servers} is not reachable: {exc}")
    table = Table("topic", "partitions", "error")
    for r in rows:
        table.add_row(r["topic"], str(r["partitions"]), str(r["error_code"] or ""))
    Console().print(table)


@app.command()
def tail(
    topic: Annotated[str, typer.Argument(help="Topic to read, e.g. sensor.frames, detections, alerts.")],
    max_records: Annotated[Optional[int], typer.Option("--max", help="Stop after N records.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per record on stdout.")] = False,
    from_beginning: Annotated[bool, typer.Option("--from-beginning", help="Start at the oldest record, not the newest.")] = False,
    timeout_s: Annotated[Optional[float], typer.Option(help="Stop after this many seconds without a record.")] = None,
    config: ConfigOpt = None, bootstrap: BootstrapOpt = None,
) -> None:
    """Print records of a topic: headers plus the decoded payload (frames as size and dimensions)."""
    from skysentry.tail import tail_topic

    s = load_settings(config, bootstrap)
    out = Console(highlight=False)

    def show(row: dict) -> None:
        if as_json:
            sys.stdout.write(json.dumps(row, default=str) + "\n")
            sys.stdout.flush()
        else:
            out.print(f"[bold]{row['topic']}[/][{row['partition']}]@{row['offset']} key={row['key']} "
                      f"{row['summary']}")

    try:
        n = asyncio.run(tail_topic(s.kafka, topic, show, max_records=max_records,
                                   from_beginning=from_beginning, idle_timeout_s=timeout_s))
    except KeyboardInterrupt:
        return
    except _broker_errors() as exc:
        fail(f"Kafka at {s.kafka.bootstrap_servers} is not reachable: {exc}")
    console.print(f"{n} record(s)")


@app.command()
def schemas(write: Annotated[bool, typer.Option("--write", help="Regenerate docs/schemas/ from the models.")] = False) -> None:
    """Print (or regenerate) the JSON Schemas of the JSON messages."""
    from skysentry.schemas import render_schemas, write_schemas

    if write:
        for path in write_schemas():
            console.print(f"wrote {path}")
    else:
        for name in render_schemas():
            print(name)


HELM_VALUES = Path(__file__).resolve().parent.parent / "deploy" / "helm" / "skysentry" / "values.yaml"
HELM_BEGIN = "# >>> settings: generated by `skysentry settings --write-helm` from the settings models; do not edit"
HELM_END = "# <<< end of the generated settings"


def default_settings() -> dict:
    """Every service's settings at their defaults, as plain YAML-able data. Left out: secrets
    (SecretStr fields: the Redis URL, the SASL password, channel keys; they come from Secrets)
    and paths that default to where the package is installed (the shipped models: each image
    has its own)."""
    from pydantic import BaseModel, SecretStr

    from alerting.config import AlertingServiceSettings
    from stream_processors.settings import ProcessorSettings

    def plain(v):
        if isinstance(v, BaseModel):
            out = {}
            for name, f in type(v).model_fields.items():
                x = getattr(v, name)
                if "SecretStr" in str(f.annotation) or isinstance(x, SecretStr) or \
                        (isinstance(x, Path) and x.is_absolute()):
                    continue
                out[f.alias if f.alias and v.model_config.get("serialize_by_alias", True) else name] = plain(x)
            return out
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return str(v) if isinstance(v, Path) else v

    fields = {**ProcessorSettings.model_fields, "alerting": AlertingServiceSettings.model_fields["alerting"]}
    return {name: plain(f.get_default(call_default_factory=True)) for name, f in fields.items()}


def helm_settings_block() -> str:
    import yaml

    body = yaml.safe_dump({"settings": default_settings()}, sort_keys=False, default_flow_style=False, width=120)
    return f"{HELM_BEGIN}\n{body}{HELM_END}\n"


@app.command("settings")
def settings_cmd(write_helm: Annotated[bool, typer.Option("--write-helm", help="Rewrite the generated settings "
                                                          "block of deploy/helm/skysentry/values.yaml.")] = False) -> None:
    """Print every service's default settings as YAML, secrets left out (the Helm chart's ConfigMap
    is rendered from this block; tests/unit/deploy/test_helm_chart.py fails when they drift)."""
    block = helm_settings_block()
    if not write_helm:
        print(block, end="")
        return
    text = HELM_VALUES.read_text()
    start, end = text.find(HELM_BEGIN), text.find(HELM_END)
    if start < 0 or end < start:
        fail(f"{HELM_VALUES}: the markers of the generated block are missing ({HELM_BEGIN!r} ... {HELM_END!r})")
    HELM_VALUES.write_text(text[:start] + block + text[end + len(HELM_END) + 1:])
    console.print(f"wrote the settings block of {HELM_VALUES}")


@app.command()
def capacity(
    cameras: Annotated[int, typer.Option(min=0, help="Cameras.")] = 10,
    fps: Annotated[Optional[float], typer.Option(min=0.0, help="Frames per second per camera (default: the camera setting).")] = None,
    mics: Annotated[int, typer.Option(min=0, help="Microphones.")] = 0,
    replication_factor: Annotated[int, typer.Option(min=1, help="Replication factor of the sensor topics.")] = 3,
    jpeg_bytes: Annotated[Optional[float], typer.Option(min=1.0, help="Mean JPEG size of your cameras' frames (default: measured by bench/scale.py on the sample clips).")] = None,
    table: Annotated[bool, typer.Option("--table", help="Print the Markdown table of docs/capacity.md (10 to 10,000 cameras, one microphone each) instead.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object on stdout.")] = False,
) -> None:
    """Size a deployment from the measured benches (bench/results/*.json): bytes/s per camera and
    microphone, partitions, broker throughput, processor processes and cores, Redis operations per
    detection, and the first limit reached. docs/capacity.md explains the model."""
    from skysentry import capacity as cap
    from skysentry.config import CameraSettings

    m = cap.load_measurements()
    if jpeg_bytes is not None:
        from dataclasses import replace

        m = replace(m, jpeg_bytes=cap.Figure(jpeg_bytes, "--jpeg-bytes"))
    if m.jpeg_bytes.value is None:
        fail("no measured JPEG size in bench/results/scale.json: run bench/scale.py")
    if table:
        sys.stdout.write(cap.per_source_table(m, fps) + "\n" + cap.table(m, fps) + "\n" + cap.sources_table(m))
        return
    s = cap.size(cameras, fps if fps is not None else CameraSettings().fps, mics, m,
                 replication_factor=replication_factor)
    if as_json:
        doc = s.as_dict() | {"redis_commands_per_detection": cap.REDIS_COMMANDS_PER_DETECTION,
                             "measurements": [{"figure": f, "value": v, "source": src} for f, v, src in cap.sources(m)]}
        sys.stdout.write(json.dumps(doc) + "\n")
        return
    n = cap._n
    print(f"{cameras} camera(s) at {s.fps:g} fps, {mics} microphone(s)")
    print(f"  per camera      {s.camera_bytes_s / 1e3:,.1f} kB/s ({s.frame_record_bytes:,.0f} B per frame record)")
    print(f"  per microphone  {s.mic_bytes_s / 1e3:,.1f} kB/s ({s.audio_record_bytes:,} B per window record)")
    print(f"  into Kafka      {s.ingress_mb_s:,.2f} MB/s; written x{s.replication_factor}: {s.broker_write_mb_s:,.2f} MB/s"
              f" -> brokers {n(s.brokers)}")
    print(f"  vision          {s.frames_per_s:,.0f} frames/s -> {n(s.vision_processes)} process(es), "
              f"{n(s.vision_cores, 1)} core(s); GPUs: {s.gpus}")
    print(f"  audio           {s.audio_windows_per_s:,.0f} windows/s -> {n(s.audio_processes)} process(es), "
              f"{n(s.audio_cores, 1)} core(s)")
    print(f"  partitions      frames {s.partitions_frames}, audio {s.partitions_audio}")
    print(f"  Redis           worst case (every window a detection) {s.detections_worst_per_s:,.0f} detections/s, "
              f"{s.redis_commands_worst_per_s:,.0f} commands/s; per detection "
              + ", ".join(f"{k} {v}" for k, v in cap.REDIS_COMMANDS_PER_DETECTION.items()))
    if s.limits:
        for what, load, move in s.limits:
            print(f"  limit           {what}: {load:.1f}x one unit -> {move}")
    else:
        print("  limit           none beyond inference CPU: add processor processes (same group)")
    for figure, value, source in cap.sources(m):
        print(f"  measured        {figure}: {value} (from {source})")


def main() -> None:  # pragma: no cover - console entry point
    app()


_document_exit_status(app)

if __name__ == "__main__":  # pragma: no cover
    app()
