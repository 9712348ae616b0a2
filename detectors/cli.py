"""``skysentry detect FILE [--model M] [--json]`` — one-off inference on an image, a video or a WAV.

Mounted by the composition root with ``app.add_typer(detectors.cli.app)`` — no name: Typer
then adds the sub-app's one command, ``detect``, at the top level (``skysentry detect FILE``).
Registering the function directly, ``app.command("detect")(detectors.cli.detect)``, is the same.

Output: an image gives one line, a video one line per frame, a WAV/FLAC one line per window
(1 s windows, 0.5 s hop). ``--json`` prints one JSON object per line instead of text.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Optional

import typer

IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
AUDIO_EXT = {".wav", ".flac", ".ogg"}
VIDEO_EXT = {".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts"}

app = typer.Typer(help="One-off inference on an image, a video or a WAV file.", pretty_exceptions_enable=False)


def kind_of(path: Path) -> str:
    ext = path.suffix.lower()
    if ext in IMAGE_EXT:
        return "image"
    if ext in AUDIO_EXT:
        return "audio"
    if ext in VIDEO_EXT:
        return "video"
    raise ValueError(f"cannot tell what {path.name} is from its extension; use an image "
                     f"({', '.join(sorted(IMAGE_EXT))}), a video ({', '.join(sorted(VIDEO_EXT))}) "
                     f"or audio ({', '.join(sorted(AUDIO_EXT))})")


def _batches(items: Iterator, size: int) -> Iterator[list]:
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def detect_image(detector, path: Path) -> Iterator[dict]:
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"{path} could not be read as an image")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    (res,) = detector.infer([detector.prepare_rgb(rgb)])
    yield _vision_row(detector, 0, None, res, rgb.shape[1], rgb.shape[0])


def detect_video(detector, path: Path, batch: int = 8) -> Iterator[dict]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ValueError(f"{path} could not be opened as a video")
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0

    def frames():
        i = 0
        while True:
            ok, bgr = cap.read()
            if not ok:
                return
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            yield i, rgb
            i += 1

    try:
        for chunk in _batches(frames(), batch):
            results = detector.infer([detector.prepare_rgb(rgb) for _, rgb in chunk])
            for (i, rgb), res in zip(chunk, results):
                yield _vision_row(detector, i, i / fps if fps > 0 else None, res, rgb.shape[1], rgb.shape[0])
    finally:
        cap.release()


def detect_audio(detector, path: Path, window_s: float = 1.0, hop_s: float = 0.5, batch: int = 16) -> Iterator[dict]:
    import numpy as np
    import soundfile as sf

    data, rate = sf.read(str(path), dtype="int16", always_2d=True)
    pcm = data.mean(axis=1).astype(np.int16) if data.shape[1] > 1 else data[:, 0]
    win, hop = max(1, round(window_s * rate)), max(1, round(hop_s * rate))
    starts = list(range(0, max(1, len(pcm) - win + 1), hop))

    for chunk in _batches(iter(starts), batch):
        scores = detector.infer([detector.fit(pcm[s:s + win], rate) for s in chunk])
        for s, score in zip(chunk, scores):
            yield {"index": s // hop, "t": round(s / rate, 3), "score": round(float(score), 4),
                   "detected": bool(score >= detector.report_threshold)}


def _vision_row(detector, index: int, t: float | None, res, width: int, height: int) -> dict:
    row = {"index": index, "score": round(res.score, 4), "detected": res.score >= detector.report_threshold}
    if t is not None:
        row["t"] = round(t, 3)
    if detector.has_boxes:
        row["boxes"] = [{"x1": round(b.x1, 4), "y1": round(b.y1, 4), "x2": round(b.x2, 4), "y2": round(b.y2, 4),
                         "score": round(b.score, 4), "label": b.label} for b in res.boxes]
    row["width"], row["height"] = width, height
    return row


def _text(row: dict, kind: str) -> str:
    where = f"frame {row['index']}" if kind == "video" else ("image" if kind == "image" else f"window {row['index']}")
    if "t" in row:
        where += f" t={row['t']:.2f}s"
    mark = "DRONE" if row["detected"] else "-"
    line = f"{where}: score={row['score']:.3f} {mark}"
    if row.get("boxes"):
        line += " boxes=" + " ".join(f"[{b['x1']:.2f},{b['y1']:.2f},{b['x2']:.2f},{b['y2']:.2f} {b['score']:.2f}]"
                                     for b in row["boxes"])
    return line


@app.command("detect")
def detect(
    file: Annotated[Path, typer.Argument(help="An image, a video, or a WAV/FLAC file.", exists=True, dir_okay=False)],
    model: Annotated[Optional[Path], typer.Option("--model", "-m", help="The .onnx to run (card beside it); default the project's models/vision.onnx or models/audio.onnx, wherever you run it.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
    threshold: Annotated[Optional[float], typer.Option(help="Report threshold (default: the model card's).")] = None,
    batch: Annotated[int, typer.Option(help="Frames / windows per inference batch.")] = 8,
    window: Annotated[float, typer.Option(help="Audio window, seconds.")] = 1.0,
    hop: Annotated[float, typer.Option(help="Audio hop, seconds.")] = 0.5,
    threads: Annotated[int, typer.Option(help="ONNX Runtime intra-op threads (0: all cores).")] = 0,
) -> None:
    """Run a detector over FILE and print a score (and boxes) per image, frame or audio window."""
    from detectors.audio import AudioDetectorConfig
    from detectors.base import ModelRefused
    from detectors.registry import load_detector
    from detectors.session import SessionSettings
    from detectors.vision import VisionDetectorConfig

    try:
        kind = kind_of(file)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    task = "audio" if kind == "audio" else "vision"
    session = SessionSettings(intra_op_threads=threads)
    cfg_cls = AudioDetectorConfig if task == "audio" else VisionDetectorConfig
    config = cfg_cls(**({"model": model} if model else {}), session=session, report_threshold=threshold)
    try:
        detector = load_detector(config)
    except ModelRefused as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if detector.card.task != task:
        typer.echo(f"error: {config.model} is a {detector.card.task} model, {file.name} needs a {task} one", err=True)
        raise typer.Exit(2)
    try:
        if kind == "image":
            rows = detect_image(detector, file)
        elif kind == "video":
            rows = detect_video(detector, file, batch)
        else:
            rows = detect_audio(detector, file, window, hop, batch)
        for row in rows:
            if as_json:
                sys.stdout.write(json.dumps({"file": str(file), "kind": kind, **row,
                                             "model": f"{detector.ref.name}@{detector.ref.version}"}) + "\n")
            else:
                sys.stdout.write(_text(row, kind) + "\n")
            sys.stdout.flush()
    except (ValueError, RuntimeError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None


if __name__ == "__main__":
    app()
