"""``skysentry synth ...``: write synthetic video / audio with ground truth beside it.

Mounted by the composition root as a sub-app; also runnable on its own:
``python -m producers.synthetic_cli video out.mp4 --seconds 20``.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console

from skysentry.synthetic import SyntheticScene, synthetic_audio, write_scene_video

app = typer.Typer(
    name="synth",
    help="Write synthetic drone video or audio, with a ground-truth file beside it.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)


def _check_writable(path: Path, suffixes: tuple[str, ...]) -> None:
    """Fail early, with what to do next, rather than after rendering everything."""
    parent = path.parent if str(path.parent) else Path(".")
    if path.suffix.lower() not in suffixes:
        _fail(f"{path}: expected a file name ending in {' or '.join(suffixes)}")
    if path.is_dir():
        _fail(f"{path} is a directory; give a file name such as {path / ('synthetic' + suffixes[0])}")
    if not parent.is_dir():
        _fail(f"cannot write {path}: directory {parent} does not exist (create it with `mkdir -p {parent}`)")
    if not os.access(parent, os.W_OK):
        _fail(f"cannot write {path}: directory {parent} is not writable; choose another output path")


def _fail(message: str) -> None:
    err_console.print(f"[bold red]error:[/] {message}", soft_wrap=True)
    raise typer.Exit(code=2)


@app.command()
def video(
    out: Path = typer.Argument(..., help="Output .mp4; truth goes to OUT.truth.jsonl."),
    seconds: float = typer.Option(20.0, min=0.1, help="Length of the clip."),
    fps: float = typer.Option(10.0, min=0.1, help="Frames per second."),
    width: int = typer.Option(640, min=32, help="Frame width in pixels."),
    height: int = typer.Option(360, min=32, help="Frame height in pixels."),
    seed: int = typer.Option(0, help="Scene seed (same seed, same video)."),
    drone_every_s: float = typer.Option(8.0, min=0.1, help="One drone pass per this many seconds."),
    drone_duration_s: float = typer.Option(5.0, min=0.1, help="Seconds each drone stays in frame."),
    bird_probability: float = typer.Option(0.3, min=0.0, max=1.0, help="Chance of a bird per slot."),
) -> None:
    """Render a sky scene with drones (and birds) crossing at known times."""
    _check_writable(out, (".mp4",))
    scene = SyntheticScene(
        width=width, height=height, fps=fps, seed=seed, drone_every_s=drone_every_s,
        drone_duration_s=drone_duration_s, bird_probability=bird_probability,
    )
    try:
        write_scene_video(out, scene, seconds)
    except OSError as exc:
        _fail(str(exc))
    drones = scene.intervals("drone", seconds)
    birds = scene.intervals("bird", seconds)
    frames = max(int(round(seconds * fps)), 1)
    console.print(
        f"[green]wrote[/] {out}: {frames} frames {width}x{height} @ {fps:g} fps ({scene.palette}), "
        f"{len(drones)} drone pass(es) ({sum(b - a for a, b in drones):.1f} s), {len(birds)} bird(s); "
        f"truth {out}.truth.jsonl",
        soft_wrap=True,
    )


@app.command()
def audio(
    out: Path = typer.Argument(..., help="Output .wav; truth goes to OUT.truth.json."),
    seconds: float = typer.Option(30.0, min=0.1, help="Length of the recording."),
    snr_db: float = typer.Option(10.0, help="Drone-to-background power ratio over the drone intervals."),
    seed: int = typer.Option(0, help="Seed (same seed, same audio and intervals)."),
    sample_rate: int = typer.Option(16000, min=4000, help="Samples per second."),
    no_drone: bool = typer.Option(False, "--no-drone", help="Background only (negative example)."),
) -> None:
    """Render rotor noise over wind / traffic / birds at a known SNR."""
    _check_writable(out, (".wav",))
    clip = synthetic_audio(
        seconds, sample_rate=sample_rate, snr_db=snr_db, seed=seed, drone_intervals=[] if no_drone else None
    )
    try:
        clip.write(out)
    except (OSError, RuntimeError) as exc:  # soundfile raises RuntimeError (LibsndfileError) on open failure
        _fail(str(exc))
    spans = ", ".join(f"{a:.1f}-{b:.1f} s" for a, b in clip.intervals) or "none"
    console.print(
        f"[green]wrote[/] {out}: {clip.duration_s:.1f} s @ {sample_rate} Hz, SNR {snr_db:g} dB, "
        f"drone intervals: {spans}; truth {out}.truth.json",
        soft_wrap=True,
    )


if __name__ == "__main__":
    app()
