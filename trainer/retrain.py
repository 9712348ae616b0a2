"""``skysentry retrain``: train a candidate, measure it against the current model on the same
test split, and publish + announce it only if it is better.

"Better" is one number per model, computed the same way for both (``skysentry eval`` code,
same data folders, same seeded group split): the mean over the data folders of F1 (recall
where a folder has no negatives), plus, for vision folders with boxes, the mean AP@0.5. The
candidate must beat the current model by more than ``min_gain``; ties keep the current one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from detectors.card import ModelCard
from trainer.data import DEFAULT_SEED
from trainer.evaluate import evaluate


@dataclass
class Decision:
    promoted: bool
    candidate_score: float
    current_score: float | None
    reason: str
    candidate: dict = field(default_factory=dict)
    current: dict = field(default_factory=dict)
    announced: bool = False
    uri: str | None = None


def model_score(model: Path, data: list[Path], split: str | None = "test", seed: int = DEFAULT_SEED
                ) -> tuple[float, dict]:
    parts, per_set = [], {}
    for root in data:
        m = evaluate(model, Path(root), split=split, seed=seed).metrics
        per_set[Path(root).name] = m
        cls = m["f1"] if m.get("f1") is not None else m.get("recall")
        if cls is not None:
            parts.append(cls)
        if m.get("ap50") is not None:
            parts.append(m["ap50"])
    if not parts:
        raise ValueError("no metric could be computed on the given data")
    return sum(parts) / len(parts), per_set


def current_model(name: str, registry: str | None, fallback: Path | None) -> Path | None:
    from detectors.registry import ModelRegistry
    from trainer.publish import registry_root

    reg = ModelRegistry(registry_root(registry))
    try:
        versions = reg.versions(name)
    except Exception:  # noqa: BLE001 - remote or unreadable registry: fall back
        versions = []
    if versions:
        return reg.path_of(name, versions[-1])
    return fallback if fallback and Path(fallback).is_file() else None


def promote_if_better(candidate: Path, current: Path | None, data: list[Path], *, registry: str | None = None,
                      split: str | None = "test", seed: int = DEFAULT_SEED, min_gain: float = 0.0,
                      announce: bool = True) -> Decision:
    """Evaluate both models on the same split; publish (and announce) the candidate if better."""
    cand_score, cand = model_score(candidate, data, split, seed)
    if current is not None:
        cur_card, cand_card = ModelCard.load(current), ModelCard.load(candidate)
        if cur_card.task != cand_card.task:
            raise ValueError(f"current model {current} is a {cur_card.task} model, the candidate {cand_card.task}")
        cur_score, cur = model_score(current, data, split, seed)
    else:
        cur_score, cur = None, {}
    if cur_score is not None and not cand_score > cur_score + min_gain:
        return Decision(False, cand_score, cur_score, f"candidate {cand_score:.4f} is not better than current "
                        f"{cur_score:.4f} (+{min_gain}); kept {current}", cand, cur)
    from trainer.publish import publish_and_announce

    ann, sent = publish_and_announce(candidate, registry, kafka=announce)
    why = "no current model" if cur_score is None else f"candidate {cand_score:.4f} > current {cur_score:.4f}"
    return Decision(True, cand_score, cur_score, f"{why}; published {ann.version}", cand, cur, sent, ann.uri)


def retrain(kind: str, data: list[Path], *, current: Path | None = None, registry: str | None = None,
            epochs: int | None = None, run_dir: Path | None = None, seed: int = DEFAULT_SEED, min_gain: float = 0.0,
            announce: bool = True, **train_kw) -> Decision:
    from trainer.common import new_version

    run_dir = Path(run_dir or Path("runs") / f"retrain-{kind}-{new_version()}")
    kw = dict(train_kw)
    if epochs:
        kw["epochs"] = epochs
    if kind == "audio":
        from trainer.train_audio import train_audio as train
    else:
        from trainer.train_vision import train_vision as train
    outcome = train([Path(d) for d in data], run_dir / "model", run_dir=run_dir, seed=seed, name=kind, **kw)
    cur = current or current_model(kind, registry, Path("models") / f"{kind}.onnx")
    return promote_if_better(outcome.model_path, cur, [Path(d) for d in data], registry=registry, seed=seed,
                             min_gain=min_gain, announce=announce)
