"""Train the audio model: data (group splits, shortcut guards, synthetic rotor audio, synthetic
tonal negatives), augmentation, training, ONNX export + parity, evaluation on the test splits,
card, report. The recipe on arrays (augmentation, loop, checkpoint, threshold) is
:mod:`trainer.audio_recipe`.

Shortcut guards (shared/data/README.md):

* splits by ``group`` (the 5 s source clip; a ``mixed_K`` pair is one group), never by chunk;
* drone clips in which the mixed-in ESC-50 noise drowns the drone
  (``est_drone_energy_frac < 0.1``) are not trained on: their label is right but the drone is
  inaudible, so they would teach "ESC-50 noise = drone" (they stay in the test split);
* indoor toy drones only: synthetic outdoor rotor audio (wind / traffic / birds at −5…15 dB
  SNR) is mixed in, and every window is augmented (gain, shift, speed 0.6–1.4× so other rotor
  speeds are seen, background mixing at random SNR, band filtering);
* few tonal negatives (insects, sirens, engines, trains) in the training split: synthetic
  tonal non-drone sounds (:mod:`trainer.tonal`) can be added (``tonal_negatives``);
* the log-mel is centred per window, so loudness is not a cue.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from trainer.audio_io import WINDOW, read_audio, windows
from trainer.audio_recipe import Recipe, fit_windows
from trainer.common import (TrainOutcome, cache_dir, measure_held_out, new_version, provenance,
                            synthetic_provenance)
from trainer.data import DEFAULT_SEED, Item, data_digest, item_digest_entries, list_items, split_of

DROWNED_FRAC = 0.1
# Hard negatives named by the dataset README (engine-like, buzzing, rotor-like sounds) plus other
# tonal sounds; their training windows are repeated ``hard_repeat`` times.
HARD_NEGATIVES = {"helicopter", "airplane", "engine", "chainsaw", "vacuum_cleaner", "hand_saw", "insects",
                  "siren", "train", "washing_machine", "car_horn"}


def load_windows(items: list[Item], tag: str) -> tuple[np.ndarray, np.ndarray]:
    """int16 windows of every item (cached) and the item index of each window."""
    key = data_digest(item_digest_entries(items)).split(":")[1][:16]
    path = cache_dir() / f"audio-{tag}-{key}.npz"
    if path.is_file():
        z = np.load(path)
        return z["x"], z["owner"]
    xs, owner = [], []
    for i, it in enumerate(items):
        w = windows(read_audio(it.path), WINDOW)
        xs.append(w)
        owner += [i] * len(w)
    x = np.concatenate(xs) if xs else np.zeros((0, WINDOW), np.int16)
    np.savez(path, x=x, owner=np.asarray(owner))
    return x, np.asarray(owner)


def synthetic_windows(n_clips: int, seed0: int = 10_000, seconds: float = 8.0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Synthetic rotor-over-outdoor-noise windows (hop 0.5 s) per split, cached; a clip's seed
    decides its split. One clip in four is background only."""
    path = cache_dir() / f"audio-synthetic-{n_clips}-{seed0}-{seconds}.npz"
    if path.is_file():
        z = np.load(path)
        return {s: (z[f"x_{s}"], z[f"y_{s}"]) for s in ("train", "val", "test")}
    from trainer.synthetic import synthetic_module

    syn = synthetic_module()
    out: dict[str, tuple[list, list]] = {s: ([], []) for s in ("train", "val", "test")}
    rng = np.random.default_rng(seed0)
    for k in range(n_clips):
        seed = seed0 + k
        intervals = [] if k % 4 == 3 else None
        a = syn.synthetic_audio(seconds, snr_db=float(rng.uniform(-5, 15)), seed=seed, drone_intervals=intervals)
        labels = a.window_labels(1.0, 0.5)
        w = windows(a.pcm, WINDOW, WINDOW // 2)[: len(labels)]
        xs, ys = out[split_of(f"synthetic-audio-{seed}")]
        xs.append(w)
        ys.append(np.asarray(labels, bool))
    arrays = {s: (np.concatenate(v[0]) if v[0] else np.zeros((0, WINDOW), np.int16),
                  np.concatenate(v[1]) if v[1] else np.zeros(0, bool)) for s, v in out.items()}
    np.savez(path, **{f"x_{s}": a[0] for s, a in arrays.items()}, **{f"y_{s}": a[1] for s, a in arrays.items()})
    return arrays


def _drowned(it: Item) -> bool:
    frac = it.meta.get("est_drone_energy_frac") if it.meta else None
    try:
        return it.positive and frac not in (None, "") and float(frac) < DROWNED_FRAC
    except ValueError:
        return False


def train_audio(data: list[Path], out: Path = Path("models"), *, epochs: int = 12, eval_data: list[Path] = (),
                synthetic_clips: int = 80, run_dir: Path | None = None, name: str = "audio",
                seed: int = DEFAULT_SEED, resume: bool = False, batch: int = 64, width: int | None = None,
                lr: float = 3e-3, patience: int = 4, max_train: int | None = None,
                epoch_windows: int | None = None, hard_repeat: int = 1, select_on: str = "all",
                threshold_on: str | None = None, tonal_negatives: int = 0, tonal_kinds: tuple[str, ...] | None = None,
                measure_test: bool = True, **recipe) -> TrainOutcome:
    """Train on the train splits of the class folders ``data`` (+ synthetic audio), select on
    their val splits, export ``out/<name>.onnx`` + card, measure on their test splits (and on
    ``eval_data``, whole). Further :class:`~trainer.audio_recipe.Recipe` fields (``n_mels``,
    ``spec_augment``, ``neg_mix``, ``pos_weight``, ``speed``, ...) pass through ``recipe``."""
    import torch

    from detectors.card import InputSpec, Thresholds
    from trainer.export import export_onnx, parity, write_card
    from trainer.loop import console, set_threads
    from trainer.report import write_metrics

    t_start = time.monotonic()
    set_threads()
    version = new_version()
    run_dir = Path(run_dir or Path("runs") / f"{name}-{version}")
    data = [Path(d) for d in data]
    rec = Recipe(epochs=epochs, patience=patience, batch=batch, lr=lr, epoch_windows=epoch_windows,
                 select_on=select_on, threshold_on=threshold_on, seed=seed,
                 **({"width": width} if width else {}), **recipe)

    # ---- data -------------------------------------------------------------------------------
    xs = {s: [] for s in ("train", "val")}
    ys = {s: [] for s in ("train", "val")}
    used: list[Item] = []
    prov = []
    for root in data:
        items = list_items(root, "audio")
        x, owner = load_windows(items, root.name)
        split = np.array([split_of(it.group, seed) for it in items])[owner]
        label = np.array([it.positive for it in items])[owner]
        drowned = np.array([_drowned(it) for it in items])[owner]
        hard = np.array([(it.meta or {}).get("esc50_category") in HARD_NEGATIVES and not it.positive
                         for it in items])[owner]
        for s in ("train", "val"):
            m = (split == s) & ~(drowned & (s == "train"))
            xs[s].append(x[m])
            ys[s].append(label[m])
            if s == "train" and hard_repeat > 1:  # hard negatives seen more often
                mh = m & hard
                for _ in range(hard_repeat - 1):
                    xs[s].append(x[mh])
                    ys[s].append(label[mh])
        used += [it for it in items if split_of(it.group, seed) in ("train", "val")]
        n_drowned = sum(_drowned(it) and split_of(it.group, seed) == "train" for it in items)
        console.print(f"{root.name}: {len(items)} files, {len(x)} windows; "
                      f"train {int((split == 'train').sum())} val {int((split == 'val').sum())} "
                      f"test {int((split == 'test').sum())}; {n_drowned} drowned drone files left out of train")
        prov.append(provenance(root, items, "trained on its train split (group split, seed "
                                            f"{seed}), validated on val, measured on test"))
    if synthetic_clips:
        syn = synthetic_windows(synthetic_clips)
        for s in ("train", "val"):
            xs[s].append(syn[s][0])
            ys[s].append(syn[s][1])
        prov.append(synthetic_provenance(synthetic_clips, f"{synthetic_clips} clips of 8 s rotor audio over wind/"
                                         "traffic/bird noise at -5..15 dB SNR, 1 s windows at 0.5 s hop"))
    if tonal_negatives:  # synthetic tonal non-drone sounds, training split only
        from trainer.tonal import KINDS, tonal_negatives as render_tonal

        kinds = tuple(tonal_kinds or KINDS)
        xs["train"].append(render_tonal(tonal_negatives, seed=20_000, kinds=kinds))
        ys["train"].append(np.zeros(tonal_negatives, bool))
        prov.append(synthetic_provenance(tonal_negatives, f"{tonal_negatives} 1 s windows of synthetic tonal "
                                         f"non-drone sounds ({', '.join(kinds)}), training only"))
    for root in eval_data:
        prov.append(provenance(Path(root), list_items(Path(root), "audio"), "evaluation only (never trained on)"))
    x_tr, y_tr = np.concatenate(xs["train"]), np.concatenate(ys["train"])
    x_va, y_va = np.concatenate(xs["val"]), np.concatenate(ys["val"])
    n_real_val = sum(len(v) for v in ys["val"][: len(data)])  # real folders first, synthetic after
    is_real = np.arange(len(y_va)) < n_real_val
    if max_train:
        pick = np.random.default_rng(seed).permutation(len(y_tr))[:max_train]
        x_tr, y_tr = x_tr[pick], y_tr[pick]
    if not len(y_va):  # tiny folders: no group fell into val
        console.print("[yellow]no validation windows in the val split; validating on part of train[/]")
        x_va, y_va = x_tr[: max(2, len(y_tr) // 10)], y_tr[: max(2, len(y_tr) // 10)]
        is_real = np.ones(len(y_va), bool)
    if not y_tr.any() or y_tr.all():
        raise ValueError("training data needs drone/ and at least one negative class folder")
    console.print(f"train {len(y_tr)} windows ({int(y_tr.sum())} drone), val {len(y_va)} ({int(y_va.sum())} drone)")

    # ---- training, checkpoint and report threshold on the validation windows ------------------
    fitted = fit_windows(x_tr, y_tr, x_va, y_va, is_real, rec, run_dir, resume=resume, title=name)
    model, report_at = fitted.model, fitted.report_at
    console.print(f"report threshold {report_at:.2f} (best F1 on the {fitted.threshold_on} validation windows, at most "
                  f"{fitted.threshold_cap:.2f})")

    # ---- export + parity --------------------------------------------------------------------
    out = Path(out)
    onnx_path = export_onnx(model, torch.zeros(2, WINDOW, dtype=torch.int16), out / f"{name}.onnx", "pcm", ["score"])
    pool_x, pool_y = np.concatenate([x_va, x_tr]), np.concatenate([y_va, y_tr])  # real windows, val first
    real = pool_x[np.r_[np.nonzero(pool_y)[0][:24], np.nonzero(~pool_y)[0][:24]]]
    diff = parity(model, onnx_path, real, "pcm")
    spec = InputSpec(name="pcm", dtype="int16", shape=["batch", WINDOW], layout="NC", color=None,
                     sample_rate=16_000, resize=None)
    digest = data_digest(item_digest_entries(used))
    provisional = write_card(onnx_path, name=name, version=version, task="audio", input_spec=spec, outputs=["score"],
                             metrics={}, digest=digest, data=prov, parity_diff=diff, thresholds=Thresholds(report=report_at))

    # ---- evaluation on held-out data (the same code as `skysentry eval`) ----------------------
    metrics: dict = {"train_seconds": None, "best_epoch": float(fitted.best_epoch)}
    report = {"model": str(onnx_path), "version": version, "recipe": rec.as_dict(), "history": fitted.history,
              "sets": {}}
    held_out = [(r, "test") for r in data] if measure_test else []  # off for recipe search (val only)
    for _ in measure_held_out(onnx_path, held_out + [(Path(r), None) for r in eval_data], seed=seed,
                              report_dir=run_dir / "report", threshold=provisional.thresholds.report,
                              metrics=metrics, report=report, console=console):
        pass
    metrics["train_seconds"] = round(time.monotonic() - t_start, 1)
    report["parity_max_abs_diff"] = diff
    write_metrics(run_dir / "report", report)
    card = write_card(onnx_path, name=name, version=version, task="audio", input_spec=spec, outputs=["score"],
                      metrics=metrics, digest=digest, data=prov, parity_diff=diff,
                      thresholds=Thresholds(report=report_at),
                      notes="1 s windows of 16 kHz mono int16 PCM; log-mel front-end inside the graph. "
                            "Data carries no licence for redistribution: evaluation use; retrain on your own "
                            "data for production. Report: " + str(run_dir / "report"))
    return TrainOutcome(onnx_path, card, run_dir, metrics, time.monotonic() - t_start)
