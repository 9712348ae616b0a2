"""The audio training recipe on arrays of windows (numpy + torch; no files, no ONNX, no cards):
augmentation, the training loop around :func:`trainer.loop.fit`, checkpoint selection and the
report threshold on the validation windows.

:func:`trainer.train_audio.train_audio` builds the arrays from class folders (group splits,
shortcut guards, synthetic audio) and exports the result; recipe experiments (e.g. group
cross-validation inside the training + validation splits) call :func:`fit_windows` directly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from trainer.data import DEFAULT_SEED


@dataclass
class Recipe:
    """Hyper-parameters of one audio training run."""

    arch: str = "cnn"  # "cnn": AudioNet from scratch; "effnet": ImageNet-pretrained trunk (AudioEffNet)
    blocks: int = 11  # effnet: how many MBConv blocks of the trunk
    hop: int = 256  # log-mel hop in samples
    epochs: int = 12
    patience: int = 4
    batch: int = 64
    width: int = 12
    n_mels: int = 48
    n_fft: int = 512
    dropout: float = 0.3
    spec_augment: float = 1.0  # SpecAugment mask-size scale (0: off)
    lr: float = 3e-3
    weight_decay: float = 1e-2
    epoch_windows: int | None = None  # a random subset per epoch (None: every window)
    neg_mix: float = 0.5  # chance that a negative window gets another negative mixed in
    pos_mix: float = 0.5  # chance that a drone window gets a negative mixed in (0-20 dB SNR)
    field_mix: float = 0.0  # share of those mixes drawn from the field pool (outdoor ambient), if given
    field_snr: tuple[float, float] = (-5.0, 15.0)  # drone-to-ambient SNR (dB) of a field-pool mix
    speed: tuple[float, float] = (0.6, 1.4)  # speed / pitch augmentation range
    pos_weight: float | None = None  # None: balance the classes (negatives / positives)
    select_on: str = "all"  # checkpoint: "all" | "real" | "real_ap" | "field" validation windows
    threshold_on: str | None = None  # report threshold: "all" | "real" (None: follows select_on)
    min_syn_recall: float = 0.9  # "real" thresholds: keep recall on synthetic outdoor drones ≥ this
    seed: int = DEFAULT_SEED

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class FitOutcome:
    model: object
    report_at: float
    threshold_cap: float
    threshold_on: str  # which validation windows chose report_at: "all" | "real" | "given" (a refit)
    best_epoch: int
    history: list[dict] = field(default_factory=list)


class Augmenter:
    """Waveform augmentation of int16 windows (numpy, per batch)."""

    def __init__(self, negatives: np.ndarray, seed: int = 0, neg_mix: float = 0.5, pos_mix: float = 0.5,
                 speed: tuple[float, float] = (0.6, 1.4), field: np.ndarray | None = None, field_mix: float = 0.0,
                 field_snr: tuple[float, float] = (-5.0, 15.0)):
        self.neg = negatives
        # outdoor ambient windows: a share ``field_mix`` of the drone-window mixes come from them
        # (at ``field_snr``), so indoor / close drones are heard as distant drones outdoors
        self.field = field if field is not None else np.zeros((0, negatives.shape[1]), np.int16)
        self.field_mix, self.field_snr = field_mix, field_snr
        self.rng = np.random.default_rng(seed)
        self.neg_mix, self.pos_mix = neg_mix, pos_mix
        self.speed = (float(np.log(speed[0])), float(np.log(speed[1])))

    def __call__(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        rng = self.rng
        out = x.astype(np.float32)
        n = out.shape[1]
        t = np.arange(n, dtype=np.float32)
        for i in range(len(out)):
            s = out[i]
            if rng.random() < 0.5:  # speed / pitch: other rotor speeds and sizes
                r = float(np.exp(rng.uniform(*self.speed)))
                pos = (t * r + rng.uniform(0, n)) % n
                s = np.interp(pos, t, s).astype(np.float32)
            if rng.random() < 0.5:  # time shift
                s = np.roll(s, int(rng.integers(0, n)))
            if rng.random() < (self.pos_mix if y[i] else self.neg_mix):  # background mixing
                from_field = bool(y[i]) and len(self.field) > 0 and rng.random() < self.field_mix
                pool = self.field if from_field else self.neg
                b = pool[int(rng.integers(0, len(pool)))].astype(np.float32) if len(pool) else np.zeros_like(s)
                snr = rng.uniform(*self.field_snr) if from_field else rng.uniform(0, 20) if y[i] else rng.uniform(-10, 10)
                ps, pb = float(np.sqrt(np.mean(s * s)) + 1e-3), float(np.sqrt(np.mean(b * b)) + 1e-3)
                s = s + b * (ps / pb) * 10 ** (-snr / 20)
            if rng.random() < 0.3:  # band filtering: microphone / distance colouring
                spec = np.fft.rfft(s)
                f = np.linspace(0, 1, spec.size, dtype=np.float32)
                if rng.random() < 0.5:
                    fc = rng.uniform(0.1, 0.6)
                    spec *= 1 / (1 + (f / fc) ** 4)
                else:
                    fc = rng.uniform(0.005, 0.05)
                    spec *= (f / fc) ** 2 / (1 + (f / fc) ** 2)
                s = np.fft.irfft(spec, n).astype(np.float32)
            peak = float(np.abs(s).max()) + 1e-3  # gain: -40 … -1 dBFS peak
            s = s * (32767 * 10 ** (rng.uniform(-40, -1) / 20) / peak)
            out[i] = s
        return np.clip(np.round(out), -32768, 32767).astype(np.int16)


def val_scores(y_va: np.ndarray, p: np.ndarray, is_real: np.ndarray, select_on: str,
               field: np.ndarray | None = None) -> dict:
    """Validation numbers of one epoch and the checkpoint score ``score`` (higher is better).
    ``field`` marks the windows of outdoor field clips (ddd_audio), reported as ``field_*``."""
    from trainer.metrics import average_precision_score, classification_metrics

    met = classification_metrics(y_va, p, 0.5)
    real = classification_metrics(y_va[is_real], p[is_real], 0.5) if is_real.any() else met
    syn = y_va & ~is_real
    out = {"val_f1": met["f1"] or 0.0, "val_auc": met["roc_auc"] or 0.0, "real_f1": real["f1"] or 0.0,
           "real_auc": real["roc_auc"] or 0.0}
    yr = y_va[is_real]
    if yr.any() and not yr.all():
        out["real_ap"] = average_precision_score(yr, p[is_real])
        out["real_best_f1"] = max(classification_metrics(yr, p[is_real], float(t))["f1"] or 0.0
                                  for t in np.arange(0.2, 0.805, 0.05))
    if syn.any():
        out["synthetic_recall"] = float((p[syn] >= 0.5).mean())
    if field is not None and field.any():
        yf = y_va[field]
        fm = classification_metrics(yf, p[field], 0.5)
        out["field_f1"], out["field_auc"] = fm["f1"] or 0.0, fm["roc_auc"] or 0.0
        if yf.any() and not yf.all():
            out["field_ap"] = average_precision_score(yf, p[field])
    if select_on == "real":  # the real recordings first; synthetic recall keeps the outdoor domain honest
        out["score"] = out["real_f1"] + 0.1 * out["real_auc"] + 0.2 * out.get("synthetic_recall", 0.0)
    elif select_on == "real_ap":  # ranking of the real windows (threshold-free) and their best F1
        out["score"] = out.get("real_ap", 0.0) + 0.5 * out.get("real_best_f1", 0.0) \
            + 0.1 * out.get("synthetic_recall", 0.0)
    elif select_on == "all":  # every validation window, real and synthetic alike
        out["score"] = out["val_f1"] + 0.1 * out["val_auc"]
    elif select_on == "field":  # every validation window, plus the ranking of the outdoor field windows
        out["score"] = out["val_f1"] + 0.1 * out["val_auc"] + 0.5 * out.get("field_ap", 0.0)
    else:
        raise ValueError(f"select_on must be all, real, real_ap or field, not {select_on!r}")
    return out


def report_threshold(y_va: np.ndarray, p_va: np.ndarray, is_real: np.ndarray, recipe: Recipe) -> tuple[float, float, str]:
    """The report threshold: best F1 on the validation windows (never a test split), in
    [0.2, cap]; with ``threshold_on="real"`` the real windows decide, and the cap is the highest
    threshold that keeps recall on the synthetic outdoor drones ≥ ``min_syn_recall`` (the real
    validation drones are two toy drones indoors). Returns (threshold, cap, which windows)."""
    from trainer.metrics import best_f1_threshold

    on = recipe.threshold_on or ("real" if recipe.select_on.startswith("real") else "all")
    sel = is_real if is_real.any() and on == "real" else np.ones(len(y_va), bool)
    syn = y_va & ~is_real
    hi = 0.8
    if syn.any() and on == "real":
        ok = [t for t in np.round(np.arange(0.2, 0.805, 0.01), 2) if (p_va[syn] >= t).mean() >= recipe.min_syn_recall]
        hi = max(ok) if ok else 0.2
    yr, pr = y_va[sel], p_va[sel]
    at = best_f1_threshold(yr, pr, hi=hi) if yr.any() and not yr.all() else min(0.5, hi)
    return at, hi, on


def build_model(r: Recipe):
    from trainer.audio_model import AudioEffNet, AudioNet

    if r.arch == "cnn":
        return AudioNet(width=r.width, n_mels=r.n_mels, hop=r.hop, dropout=r.dropout, spec_augment=r.spec_augment,
                        n_fft=r.n_fft)
    if r.arch == "effnet":
        return AudioEffNet(n_mels=r.n_mels, hop=r.hop, n_fft=r.n_fft, blocks=r.blocks, dropout=r.dropout,
                           spec_augment=r.spec_augment)
    raise ValueError(f"arch must be cnn or effnet, not {r.arch!r}")


def predict(model, x: np.ndarray, device: str = "cpu") -> np.ndarray:
    import torch

    with torch.no_grad():
        return np.concatenate([model(torch.from_numpy(x[i:i + 256]).to(device)).float().cpu().numpy()
                               for i in range(0, len(x), 256)]) if len(x) else np.zeros(0, np.float32)


def fit_windows(x_tr: np.ndarray, y_tr: np.ndarray, x_va: np.ndarray, y_va: np.ndarray, is_real: np.ndarray,
                recipe: Recipe, run_dir: Path, *, resume: bool = False, title: str = "audio",
                device: str = "cpu", field: np.ndarray | None = None, field_pool: np.ndarray | None = None,
                refit_report_at: float | None = None) -> FitOutcome:
    """Train an :class:`AudioNet` on int16 windows ``x_tr`` / labels ``y_tr``; keep the best
    epoch by the validation windows (``is_real`` marks the real ones, the rest are synthetic;
    ``field`` the outdoor field-clip ones) and choose the report threshold on them.
    ``field_pool``: outdoor ambient windows mixed under drone windows (``recipe.field_mix``).
    ``refit_report_at``: a refit (the validation windows are in the training set): keep the last
    epoch and report at this threshold, which a train-only fit chose."""
    import torch

    from trainer.loop import FitConfig, fit

    r = recipe
    torch.manual_seed(r.seed)
    model = build_model(r).to(device)
    aug = Augmenter(x_tr[~y_tr], r.seed, neg_mix=r.neg_mix, pos_mix=r.pos_mix, speed=r.speed,
                    field=field_pool, field_mix=r.field_mix, field_snr=tuple(r.field_snr))
    pos_weight = torch.tensor(float(r.pos_weight) if r.pos_weight else float((~y_tr).sum()) / float(y_tr.sum()),
                              device=device)
    per_epoch = min(len(y_tr), r.epoch_windows or len(y_tr))
    steps = max(1, per_epoch // r.batch)
    rng = np.random.default_rng(r.seed)

    def batches(epoch: int):
        order = rng.permutation(len(y_tr))
        for k in range(steps):
            idx = order[k * r.batch:(k + 1) * r.batch]
            xb = aug(x_tr[idx], y_tr[idx])
            yield torch.from_numpy(xb).to(device), torch.from_numpy(y_tr[idx].astype(np.float32)).to(device)

    def loss_fn(m, b):
        logits = m(b[0], logits=True)
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, b[1], pos_weight=pos_weight), {}

    def validate(m):
        return val_scores(y_va, predict(m, x_va, device), is_real, r.select_on, field)

    res = fit(model, model.parameters(), batches, steps, loss_fn, validate, "score", run_dir,
              FitConfig(epochs=r.epochs, lr=r.lr, weight_decay=r.weight_decay, patience=r.patience, seed=r.seed,
                        keep_last=refit_report_at is not None), resume=resume, title=title)
    if refit_report_at is not None:
        at, hi, on = refit_report_at, refit_report_at, "given"
    else:
        at, hi, on = report_threshold(y_va, predict(model, x_va, device), is_real, r)
    return FitOutcome(model, at, hi, on, res.best_epoch, res.history)
