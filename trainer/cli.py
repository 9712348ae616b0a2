"""Trainer commands, mounted at the top level of ``skysentry``:

    skysentry train audio|vision --data DIR [--data DIR ...] [--epochs N] [--out DIR] [--publish]
    skysentry eval --model M.onnx --data DIR [--split test] [--json] [--report DIR]
                   [--fps F] [--every N]          (video clips: field evaluation, frame + clip level)
    skysentry retrain --kind audio|vision --data DIR [--data DIR ...]

Importing this module does not import torch: ``eval`` runs from a serving install
(onnxruntime + numpy); ``train``/``retrain`` import torch when they run.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Train, evaluate and retrain SkySentry's models.", no_args_is_help=True)
out_console = Console()


class Kind(str, Enum):
    audio = "audio"
    vision = "vision"


class SplitName(str, Enum):
    train = "train"
    val = "val"
    test = "test"


DATA_HELP = "class folder (drone/ positive, other subfolders negative); repeat --data for several"


@app.command("train")
def train_cmd(
    kind: Kind = typer.Argument(..., help="audio or vision"),
    data: list[Path] = typer.Option(..., "--data", help=DATA_HELP, exists=True, file_okay=False),
    epochs: Optional[int] = typer.Option(None, help="maximum epochs (early stopping may end sooner)"),
    out: Path = typer.Option(Path("runs/out"), help="folder for <kind>.onnx and its card"),
    publish: bool = typer.Option(False, help="copy into the registry and announce on the models topic"),
    registry: Optional[str] = typer.Option(None, help="registry root (default $SKYSENTRY_REGISTRY or models/registry)"),
    eval_data: list[Path] = typer.Option([], "--eval-data", help="extra folders measured whole, never trained on"),
    run_dir: Optional[Path] = typer.Option(None, help="run folder (checkpoints, report); default runs/<kind>-<version>"),
    resume: bool = typer.Option(False, help="continue the run in --run-dir from its last checkpoint"),
    synthetic: Optional[int] = typer.Option(None, help="synthetic clips (audio) or scenes (vision); 0 = none"),
    seed: int = typer.Option(1337, help="split and training seed"),
) -> None:
    """Train a model on class folders, export ONNX, check parity, write card and report."""
    kw: dict = {"eval_data": eval_data, "run_dir": run_dir, "resume": resume, "seed": seed, "name": kind.value}
    if epochs:
        kw["epochs"] = epochs
    if kind is Kind.audio:
        from trainer.train_audio import train_audio as train

        if synthetic is not None:
            kw["synthetic_clips"] = synthetic
    else:
        from trainer.train_vision import train_vision as train

        if synthetic is not None:
            kw["synthetic_scenes"] = synthetic
    outcome = train(data, out, **kw)
    out_console.print(f"[green]wrote {outcome.model_path}[/] (+ card), report in {outcome.run_dir / 'report'}, "
                      f"{outcome.seconds:.0f} s")
    _print_metrics(outcome.metrics)
    if publish:
        from trainer.publish import publish_and_announce

        ann, sent = publish_and_announce(outcome.model_path, registry)
        out_console.print(f"published {ann.name} {ann.version} → {ann.uri}; "
                          + ("announced on the models topic" if sent else "[yellow]not announced (Kafka unreachable)[/]"))


@app.command("eval")
def eval_cmd(
    model: Path = typer.Option(..., "--model", help="an .onnx model with its card (.json) beside it", exists=True,
                               dir_okay=False),
    data: Path = typer.Option(..., "--data", help=DATA_HELP.split(";")[0], exists=True, file_okay=False),
    split: Optional[SplitName] = typer.Option(
        None, help="only this split of DIR's files.csv groups (the trainer's seeded group split); default all files"),
    seed: int = typer.Option(1337, help="split seed (must match training)"),
    as_json: bool = typer.Option(False, "--json", help="print one JSON object as the last line"),
    crop_bottom: Optional[int] = typer.Option(None, help="rows cropped off each image's bottom "
                                              "(default: the dataset's known guard, e.g. 22 for DroneNet)"),
    report: Optional[Path] = typer.Option(None, help="also write metrics.json and plots here (plots need "
                                          "matplotlib, the train extra)"),
    fps: Optional[float] = typer.Option(None, help="video: frames a camera sends per second, for clip level "
                                        "(default: the camera default of skysentry/config.py)"),
    every: int = typer.Option(1, min=1, help="video: frame metrics on every Nth frame only (a quick look); "
                              "clip level always sees every camera frame"),
) -> None:
    """Measure a model on a class folder: precision, recall, F1, ROC-AUC, TPR@FPR (and AP for boxes).

    On video clips (like ddd_video) and long audio clips (like ddd_audio) it also judges clips the
    way an operator meets them: does the alerting's own confirmation rule fire?"""
    from trainer.evaluate import evaluate
    from trainer.field_eval import DEFAULT_FPS

    result = evaluate(model, data, split=split.value if split else None, seed=seed, crop_bottom=crop_bottom,
                      fps=DEFAULT_FPS if fps is None else fps, every=every, keep_worst=report is not None)
    metrics = {"model": str(model), "data": str(data), "split": split.value if split else None, **result.metrics}
    if report:
        _write_report(report, data.name, metrics, result)
    if as_json:
        print(json.dumps(metrics, default=float))
    else:
        _print_metrics({k: v for k, v in metrics.items() if not isinstance(v, str)}, title=f"{model.name} on {data}")


@app.command("retrain")
def retrain_cmd(
    kind: Kind = typer.Option(..., "--kind", help="audio or vision"),
    data: list[Path] = typer.Option(..., "--data", help=DATA_HELP, exists=True, file_okay=False),
    current: Optional[Path] = typer.Option(None, help="model to beat (default: newest in the registry, "
                                           "else models/<kind>.onnx)"),
    registry: Optional[str] = typer.Option(None, help="registry root (default $SKYSENTRY_REGISTRY or models/registry)"),
    epochs: Optional[int] = typer.Option(None),
    min_gain: float = typer.Option(0.0, help="the candidate must beat the current score by more than this"),
    seed: int = typer.Option(1337),
    announce: bool = typer.Option(True, help="announce a promoted model on the models topic"),
) -> None:
    """Train a candidate, evaluate it against the current model on the same test split, publish only if better."""
    from trainer.retrain import retrain

    d = retrain(kind.value, data, current=current, registry=registry, epochs=epochs, seed=seed, min_gain=min_gain,
                announce=announce)
    colour = "green" if d.promoted else "yellow"
    out_console.print(f"[{colour}]{'promoted' if d.promoted else 'refused'}[/]: {d.reason}")
    print(json.dumps({"promoted": d.promoted, "candidate_score": d.candidate_score, "current_score": d.current_score,
                      "announced": d.announced, "uri": d.uri}))
    if not d.promoted:
        raise typer.Exit(code=3)


def _write_report(folder: Path, tag: str, metrics: dict, result) -> None:
    """metrics.json, the contact sheet (OpenCV) and the plots (matplotlib: without it, a serving
    install still evaluates and says what the plots need)."""
    from trainer.field_report import contact_sheet, field_plots
    from trainer.report import plot_classification, write_metrics

    write_metrics(folder, metrics)
    if result.clips:
        contact_sheet(folder / "contact_sheet.png", result.clips, metrics["box_threshold"])
    try:
        plot_classification(folder, tag, result.labels, result.scores, metrics["threshold"])
        field_plots(folder, metrics, result.clips)
    except ModuleNotFoundError as exc:
        if not (exc.name or "").startswith("matplotlib"):
            raise
        Console(stderr=True).print("[yellow]plots skipped: they need matplotlib, the `train` extra "
                                   "(pip install 'skysentry[train]'); metrics.json is written[/]")


def _print_metrics(metrics: dict, title: str = "metrics") -> None:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in metrics.items():
        table.add_row(k, "—" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v))
    out_console.print(table)
