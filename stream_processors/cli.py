"""``skysentry process vision|audio`` — run a stream processor until SIGTERM/SIGINT.

Mounted by the composition root as ``app.add_typer(stream_processors.cli.app, name="process")``;
also runnable alone: ``python -m stream_processors vision --bootstrap 127.0.0.1:19092``.
Heavy imports (faust, onnxruntime) stay inside the command so ``--help`` is fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

app = typer.Typer(help="Run a stream processor: consume sensor windows, infer, emit detections (at-least-once).",
                  no_args_is_help=True, pretty_exceptions_enable=False)

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML settings file (else $SKYSENTRY_CONFIG).")]
BootstrapOpt = Annotated[Optional[str], typer.Option("--bootstrap", help="Kafka bootstrap servers (else settings / $KAFKA_BOOTSTRAP_SERVERS).")]
GroupOpt = Annotated[Optional[str], typer.Option("--group", help="Consumer group; processors sharing it split the partitions.")]
ModelOpt = Annotated[Optional[Path], typer.Option("--model", "-m", help="The .onnx to serve at start (its card beside it).")]
BatchOpt = Annotated[Optional[int], typer.Option("--batch", help="Max windows per inference batch.")]
WaitOpt = Annotated[Optional[float], typer.Option("--max-wait", help="Seconds to wait for a fuller batch.")]
ThreadsOpt = Annotated[Optional[int], typer.Option("--threads", help="ONNX Runtime intra-op threads (0: all cores).")]
ThresholdOpt = Annotated[Optional[float], typer.Option("--threshold", help="Report threshold (default: the model card's).")]
ProvidersOpt = Annotated[Optional[str], typer.Option("--providers", help="auto | cpu | cuda | tensorrt.")]
MetricsPortOpt = Annotated[Optional[int], typer.Option("--metrics-port", help="Port of /metrics (0: any free port).")]
CommitOpt = Annotated[Optional[float], typer.Option("--commit-interval", help="Seconds between offset commits.")]
InputTopicOpt = Annotated[Optional[str], typer.Option("--input-topic", help="Override the input topic name.")]
DetectionsTopicOpt = Annotated[Optional[str], typer.Option("--detections-topic", help="Override the detections topic.")]
ModelsTopicOpt = Annotated[Optional[str], typer.Option("--models-topic", help="Override the models topic.")]


def settings_from_cli(modality: str, config: Path | None, bootstrap: str | None, processor: dict, detector: dict,
                      session: dict, topics: dict, metrics_port: int | None):
    """Settings for one processor: the YAML / environment, then the flags given (None = not given)."""
    from stream_processors.settings import ProcessorSettings

    clean = lambda d: {k: v for k, v in d.items() if v is not None}  # noqa: E731
    overrides: dict = {}
    if bootstrap:
        overrides["kafka"] = {"bootstrap_servers": bootstrap}
    detector = clean(detector)
    if session := clean(session):
        detector["session"] = session
    proc = clean(processor)
    if detector:
        proc["detector"] = detector
    if proc:
        overrides[f"{modality}_processor"] = proc
    if topics := clean(topics):
        overrides["topics"] = topics
    if metrics_port is not None:
        overrides["metrics"] = {"port": metrics_port}
    return ProcessorSettings.load(config, **overrides)


def _run(modality: str, config: Path | None, bootstrap: str | None, processor: dict, detector: dict, session: dict,
         topics: dict, metrics_port: int | None) -> None:
    from detectors.base import ModelRefused
    from skysentry.logs import setup_logging
    from skysentry.metrics import serve_metrics
    from skysentry.service import run_until_signalled
    from stream_processors.runner import ProcessorService

    try:
        settings = settings_from_cli(modality, config, bootstrap, processor, detector, session, topics, metrics_port)
    except (ValueError, FileNotFoundError) as exc:
        typer.echo(f"error: invalid settings: {exc}", err=True)
        raise typer.Exit(2) from None
    setup_logging(settings.log.level, settings.log.json_format)
    serve_metrics(settings.metrics)
    service = ProcessorService(settings, modality)
    try:
        run_until_signalled(service.run)
    except ModelRefused as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def vision(
    config: ConfigOpt = None, bootstrap: BootstrapOpt = None, group: GroupOpt = None, model: ModelOpt = None,
    batch: BatchOpt = None, max_wait: WaitOpt = None,
    max_frame_age: Annotated[Optional[float], typer.Option("--max-frame-age", help="Skip frames older than this many seconds.")] = None,
    motion_gate: Annotated[Optional[bool], typer.Option("--motion-gate/--no-motion-gate", help="Skip frames without motion.")] = None,
    decode_threads: Annotated[Optional[int], typer.Option(help="JPEG decoding threads.")] = None,
    threads: ThreadsOpt = None, threshold: ThresholdOpt = None, providers: ProvidersOpt = None,
    commit_interval: CommitOpt = None, metrics_port: MetricsPortOpt = None,
    input_topic: InputTopicOpt = None, detections_topic: DetectionsTopicOpt = None, models_topic: ModelsTopicOpt = None,
) -> None:
    """Run the vision processor on the frames topic."""
    processor = {"group_id": group, "max_batch": batch, "max_wait_s": max_wait, "max_frame_age_s": max_frame_age,
                 "decode_threads": decode_threads, "commit_interval_s": commit_interval}
    if motion_gate is not None:
        processor["motion_gate"] = {"enabled": motion_gate}
    _run("vision", config, bootstrap, processor, {"model": model, "report_threshold": threshold},
         {"intra_op_threads": threads, "providers": providers},
         {"frames": input_topic, "detections": detections_topic, "models": models_topic}, metrics_port)


@app.command()
def audio(
    config: ConfigOpt = None, bootstrap: BootstrapOpt = None, group: GroupOpt = None, model: ModelOpt = None,
    batch: BatchOpt = None, max_wait: WaitOpt = None,
    max_window_age: Annotated[Optional[float], typer.Option("--max-window-age", help="Skip windows older than this many seconds.")] = None,
    level_gate: Annotated[Optional[bool], typer.Option("--level-gate/--no-level-gate", help="Skip near-silent windows.")] = None,
    threads: ThreadsOpt = None, threshold: ThresholdOpt = None, providers: ProvidersOpt = None,
    commit_interval: CommitOpt = None, metrics_port: MetricsPortOpt = None,
    input_topic: InputTopicOpt = None, detections_topic: DetectionsTopicOpt = None, models_topic: ModelsTopicOpt = None,
) -> None:
    """Run the audio processor on the audio topic."""
    processor = {"group_id": group, "max_batch": batch, "max_wait_s": max_wait, "max_window_age_s": max_window_age,
                 "commit_interval_s": commit_interval}
    if level_gate is not None:
        processor["level_gate"] = {"enabled": level_gate}
    _run("audio", config, bootstrap, processor, {"model": model, "report_threshold": threshold},
         {"intra_op_threads": threads, "providers": providers},
         {"audio": input_topic, "detections": detections_topic, "models": models_topic}, metrics_port)
