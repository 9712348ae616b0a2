"""Train the audio model: data (group splits, shortcut guards, synthetic rotor audio, synthetic
tonal negatives), augmentation, training, ONNX export + parity, evaluation on the test splits,
card, report. The recipe on arrays (augmentation, loop, checkpoint, threshold) is
:mod:`trainer.audio_recipe`.

Shortcut guards (shared/data/README.md):

* splits by ``group`` (the 5 s source clip; a ``mixed_K`` pair is one group), never by chunk,
  through :func:`trainer.data.group_splits` per dataset (a field set with few groups per class,
  such as ddd_audio, is split within each class, so its test clips are never trained on);
* long recordings (ddd_audio's 10 s field clips) are cut into 1 s training windows every
  ``train_hop`` samples (0.5 s); validation windows follow one another (hop 1 s) as in serving,
  so the alerting's confirmation rule (3 of the last 5 windows) can be checked on validation
  clips;
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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainer.audio_io import WINDOW, read_audio, windows
from trainer.audio_recipe import Recipe, fit_windows
from trainer.common import (FREE_LICENCES, TrainOutcome, cache_dir, measure_held_out, new_version, provenance,
                            synthetic_provenance)
from trainer.data import DEFAULT_SEED, Item, data_digest, group_splits, item_digest_entries, list_items, split_of
from trainer.field_eval import alert_threshold, clip_metrics as field_clip_metrics, confirmed

DROWNED_FRAC = 0.1
# Hard negatives named by the dataset README (engine-like, buzzing, rotor-like sounds) plus other
# tonal sounds; their training windows are repeated ``hard_repeat`` times.
HARD_NEGATIVES = {"helicopter", "airplane", "engine", "chainsaw", "vacuum_cleaner", "hand_saw", "insects",
                  "siren", "train", "washing_machine", "car_horn"}


TRAIN_HOP = WINDOW // 2  # long recordings: a 1 s training window every 0.5 s
NON_COMMERCIAL = {"drone_audio_alemadi"}  # no licence: a model trained on them is for research only


def load_windows(items: list[Item], tag: str, hop: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """int16 windows of every item (cached) and the item index of each window. Files shorter
    than 2 s are one window; longer ones a window every ``hop`` samples (default: 1 s)."""
    key = data_digest(item_digest_entries(items)).split(":")[1][:16]
    path = cache_dir() / f"audio-{tag}-{key}{f'-hop{hop}' if hop and hop != WINDOW else ''}.npz"
    if path.is_file():
        z = np.load(path)
        return z["x"], z["owner"]
    xs, owner = [], []
    for i, it in enumerate(items):
        w = windows(read_audio(it.path), WINDOW, hop)
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


@dataclass
class FolderWindows:
    """The training and validation windows of one class folder (its test split left out)."""

    items: list[Item]
    splits: dict[str, str]  # group → split (:func:`trainer.data.group_splits`)
    x_train: np.ndarray  # int16 [n, WINDOW], repeats included
    y_train: np.ndarray
    train_owner: np.ndarray  # item index of each training window
    x_val: np.ndarray  # consecutive 1 s windows of the val split
    y_val: np.ndarray
    val_owner: np.ndarray
    ambient: np.ndarray  # training windows of the field_classes (to mix under drones)
    repeat: int = 1
    drowned: int = 0  # drone files left out of training (drowned by mixed-in noise)


def folder_windows(root: Path, seed: int = DEFAULT_SEED, *, train_hop: int = TRAIN_HOP, repeat: int = 1,
                   hard_repeat: int = 1, field_classes: list[str] = (), refit: bool = False) -> FolderWindows:
    """One folder's windows by split. Training: the train split's windows (``refit``: and the
    val split's), every ``train_hop`` samples in files of 2 s or more (1 s clips are one window),
    drowned drone files left out, the whole repeated ``repeat`` times and its hard negatives
    ``hard_repeat`` times. Validation: the val split's consecutive 1 s windows, as ``skysentry
    eval`` and the processor cut them. No window of a test group is in either."""
    items = list_items(root, "audio")
    splits = group_splits(items, seed)  # per dataset: a small field set is split within each class
    split_i = np.array([splits[it.group] for it in items])
    label_i = np.array([it.positive for it in items])
    drowned_i = np.array([_drowned(it) for it in items])
    hard_i = np.array([(it.meta or {}).get("esc50_category") in HARD_NEGATIVES and not it.positive for it in items])
    class_i = np.array([it.label for it in items])
    x, owner = load_windows(items, root.name, train_hop)
    fit_i = np.isin(split_i, ["train", "val"] if refit else ["train"])
    m = fit_i[owner] & ~drowned_i[owner]
    picks = [np.nonzero(m)[0]] * max(1, repeat)  # oversampling a small set
    picks += [np.nonzero(m & hard_i[owner])[0]] * max(0, hard_repeat - 1)  # hard negatives seen more often
    idx = np.concatenate(picks)
    ambient = x[fit_i[owner] & np.isin(class_i[owner], list(field_classes))]
    xv, ov = load_windows(items, root.name)  # validation: consecutive 1 s windows, as served
    mv = split_i[ov] == "val"
    return FolderWindows(items, splits, x[idx], label_i[owner][idx], owner[idx], xv[mv], label_i[ov][mv], ov[mv],
                         ambient, max(1, repeat), int(sum(drowned_i & fit_i)))


def clip_metrics(labels: list[str], scores: np.ndarray, owner: np.ndarray, threshold: float) -> dict:
    """Clip-level numbers through :func:`trainer.field_eval.confirmed`, named as
    :func:`trainer.field_eval.clip_metrics`
    names them (``clip_f1``, ``clip_recall``, ``clip_false_alarm_<class>``, ...): ``labels`` is
    each clip's class (``drone`` positive), ``owner`` the clip of each consecutive 1 s window, a
    window is a hit at ``threshold`` (:func:`trainer.field_eval.alert_threshold`)."""
    alerted = [confirmed(scores[owner == i] >= threshold) for i in range(len(labels))]
    return {"clip_threshold": float(threshold), **field_clip_metrics(labels, alerted)}


def train_audio(data: list[Path], out: Path = Path("models"), *, epochs: int = 12, eval_data: list[Path] = (),
                synthetic_clips: int = 80, run_dir: Path | None = None, name: str = "audio",
                seed: int = DEFAULT_SEED, resume: bool = False, batch: int = 64, width: int | None = None,
                lr: float = 3e-3, patience: int = 4, max_train: int | None = None,
                epoch_windows: int | None = None, hard_repeat: int = 1, select_on: str = "all",
                threshold_on: str | None = None, tonal_negatives: int = 0, tonal_kinds: tuple[str, ...] | None = None,
                measure_test: bool = True, train_hop: int = TRAIN_HOP, repeat: dict[str, int] | None = None,
                field_pool: tuple[str, ...] = (), refit: dict | None = None, **recipe) -> TrainOutcome:
    """Train on the train splits of the class folders ``data`` (+ synthetic audio), select on
    their val splits, export ``out/<name>.onnx`` + card, measure on their test splits (and on
    ``eval_data``, whole). ``repeat`` maps a folder name to how often its training windows are
    seen per epoch (oversampling a small field set); ``field_pool`` names ``folder/class``
    training windows (outdoor ambient, e.g. ``ddd_audio/background``) of which a share
    ``field_mix`` of the drone-window mixes is drawn. Further
    :class:`~trainer.audio_recipe.Recipe` fields (``n_mels``, ``spec_augment``, ``neg_mix``,
    ``pos_weight``, ``speed``, ``field_mix``, ``field_snr``, ...) pass through ``recipe``.
    ``refit`` (``epochs``, ``report``: what a train-only fit chose on val): train on the train and
    val splits for that many epochs, keep the last, and report at that threshold."""
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
    if refit:
        epochs = patience = refit["epochs"]
    rec = Recipe(epochs=epochs, patience=patience, batch=batch, lr=lr, epoch_windows=epoch_windows,
                 select_on=select_on, threshold_on=threshold_on, seed=seed,
                 **({"width": width} if width else {}), **recipe)

    # ---- data -------------------------------------------------------------------------------
    xs = {s: [] for s in ("train", "val")}
    ys = {s: [] for s in ("train", "val")}
    pool: list[np.ndarray] = []  # field_pool windows
    val_clips: dict[str, tuple[list[str], np.ndarray, int]] = {}  # long-clip sets: classes, owner, offset
    n_val = 0
    used: list[Item] = []
    prov = []
    for root in data:
        fw = folder_windows(root, seed, train_hop=train_hop, repeat=(repeat or {}).get(root.name, 1),
                            hard_repeat=hard_repeat, field_classes=[e.partition("/")[2] for e in field_pool
                                                                   if e.partition("/")[0] == root.name],
                            refit=bool(refit))
        xs["train"].append(fw.x_train)
        ys["train"].append(fw.y_train)
        xs["val"].append(fw.x_val)
        ys["val"].append(fw.y_val)
        if len(fw.ambient):
            pool.append(fw.ambient)
        val_items = sorted(set(fw.val_owner.tolist()))
        if len(fw.val_owner) > len(val_items):  # clips of several windows: clip numbers too
            remap = {i: k for k, i in enumerate(val_items)}
            val_clips[root.name] = ([fw.items[i].label for i in val_items],
                                    np.array([remap[int(o)] for o in fw.val_owner]), n_val)
        n_val += len(fw.y_val)
        used += [it for it in fw.items if fw.splits[it.group] in ("train", "val")]
        n_groups = {s: sum(v == s for v in fw.splits.values()) for s in ("train", "val", "test")}
        console.print(f"{root.name}: {len(fw.items)} files; groups train {n_groups['train']} val {n_groups['val']} "
                      f"test {n_groups['test']}; {len(fw.y_train)} training windows (x{fw.repeat} repeated), "
                      f"{len(fw.y_val)} validation windows; {fw.drowned} drowned drone files left out of train")
        prov.append(provenance(root, fw.items, f"trained on its {'train and val splits' if refit else 'train split'} "
                                                f"(group split, seed {seed}), validated on val, measured on test"))
    if synthetic_clips:
        syn = synthetic_windows(synthetic_clips)
        for s in ("train", "val"):
            xs[s].append(syn[s][0])
            ys[s].append(syn[s][1])
        if refit:
            xs["train"].append(syn["val"][0])
            ys["train"].append(syn["val"][1])
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
    is_real = np.arange(len(y_va)) < n_val  # real folders first, synthetic after
    field = np.zeros(len(y_va), bool)  # validation windows of the long-clip (field) sets
    for _, owner_v, off in val_clips.values():
        field[off:off + len(owner_v)] = True
    if max_train:
        pick = np.random.default_rng(seed).permutation(len(y_tr))[:max_train]
        x_tr, y_tr = x_tr[pick], y_tr[pick]
    if not len(y_va):  # tiny folders: no group fell into val
        console.print("[yellow]no validation windows in the val split; validating on part of train[/]")
        x_va, y_va = x_tr[: max(2, len(y_tr) // 10)], y_tr[: max(2, len(y_tr) // 10)]
        is_real, field, val_clips = np.ones(len(y_va), bool), np.zeros(len(y_va), bool), {}
    if not y_tr.any() or y_tr.all():
        raise ValueError("training data needs drone/ and at least one negative class folder")
    ambient = np.concatenate(pool) if pool else None
    console.print(f"train {len(y_tr)} windows ({int(y_tr.sum())} drone), val {len(y_va)} ({int(y_va.sum())} drone, "
                  f"{int(field.sum())} from field clips)"
                  + (f"; {len(ambient)} windows of {', '.join(field_pool)} to mix under drones" if pool else ""))

    # ---- training, checkpoint and report threshold on the validation windows ------------------
    fitted = fit_windows(x_tr, y_tr, x_va, y_va, is_real, rec, run_dir, resume=resume, title=name,
                         field=field, field_pool=ambient, refit_report_at=refit["report"] if refit else None)
    model, report_at = fitted.model, fitted.report_at
    console.print(f"report threshold {report_at:.2f} " + ("(given: a refit)" if refit else
                  f"(best F1 on the {fitted.threshold_on} validation windows, at most {fitted.threshold_cap:.2f})"))
    validation: dict = {}
    if val_clips:  # the confirmation rule on the validation clips (chooses nothing; for the record)
        from trainer.audio_recipe import predict

        p_va = predict(model, x_va)
        for tag, (classes, owner_v, off) in val_clips.items():
            cm = clip_metrics(classes, p_va[off:off + len(owner_v)], owner_v, alert_threshold(report_at))
            validation[tag] = cm
            console.print(f"[bold]{tag}.val clips[/]: " + " ".join(f"{k}={v:.3f}" for k, v in cm.items()
                                                                   if v is not None))

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
    seen = "in_sample." if refit else ""  # a refit trained on the val clips
    for tag, cm in validation.items():  # validation clips (local rule): clip F1, recall, false alarms
        metrics.update({f"{seen}{tag}.val.{k}": v for k, v in cm.items() if k in ("clip_f1", "clip_recall")
                        or k.startswith("clip_false_alarm_")})
    report = {"model": str(onnx_path), "version": version, "recipe": rec.as_dict(), "history": fitted.history,
              "train": {"train_hop": train_hop, "repeat": repeat or {}, "field_pool": list(field_pool)},
              "validation_clips": validation, "sets": {}}
    held_out = [(r, "test") for r in data] if measure_test else []  # off for recipe search (val only)
    for _, tag, r in measure_held_out(onnx_path, held_out + [(Path(r), None) for r in eval_data], seed=seed,
                                         report_dir=run_dir / "report", threshold=provisional.thresholds.report,
                                         metrics=metrics, report=report, console=console):
        clip = {k: v for k, v in r.metrics.items() if k.startswith("clip_") and isinstance(v, float)}
        if clip:  # long clips: evaluate ran the alerting's confirmation rule (trainer.field_eval)
            console.print(f"[bold]{tag} clips[/]: " + " ".join(f"{k}={v:.3f}" for k, v in clip.items()))
    metrics["train_seconds"] = round(time.monotonic() - t_start, 1)
    report["parity_max_abs_diff"] = diff
    write_metrics(run_dir / "report", report)
    names = {Path(r).name for r in data}
    licence = ("Trained on drone_audio_alemadi, which has no licence (all rights reserved; its ESC-50 negatives "
               "are CC BY-NC 3.0): this model may not be used commercially; research and evaluation use only. "
               if names & NON_COMMERCIAL else "")
    card = write_card(onnx_path, name=name, version=version, task="audio", input_spec=spec, outputs=["score"],
                      metrics=metrics, digest=digest, data=prov, parity_diff=diff,
                      thresholds=Thresholds(report=report_at),
                      notes="1 s windows of 16 kHz mono int16 PCM; log-mel front-end inside the graph. " + licence
                            + ("Data carries no licence for redistribution: evaluation use; retrain on your own "
                               "data for production. " if names - set(FREE_LICENCES) else "")
                            + "Clip metrics (clip_*): the alerting's confirmation rule (3 of the last 5 consecutive "
                            "1 s windows at score >= max(0.6, report threshold)) on each clip; on test through "
                            "skysentry eval (trainer.field_eval), on val (…val.clip_*) a local copy of the rule. "
                            "Report: " + str(run_dir / "report"))
    return TrainOutcome(onnx_path, card, run_dir, metrics, time.monotonic() - t_start)
