"""The training loop both models share: AdamW + cosine schedule, early stopping on a
validation metric, best checkpoint kept, fixed seeds, resumable, live rich progress.

A run folder holds ``last.pt`` (everything needed to resume: model, optimiser, scheduler,
epoch, best metric, patience, RNG states) and ``best.pt`` (the best model's weights).
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_threads(n: int | None = None) -> None:
    """Few threads: the dev machines are small and shared."""
    torch.set_num_threads(n or min(2, torch.get_num_threads()))


@dataclass
class FitConfig:
    epochs: int = 10
    lr: float = 2e-3
    weight_decay: float = 1e-2
    patience: int = 3
    warmup_steps: int = 20
    grad_clip: float = 5.0
    seed: int = 0
    keep_last: bool = False  # keep the last epoch, not the best by validation (a refit on train+val)


@dataclass
class FitResult:
    best_epoch: int
    best_metric: float
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0


def fit(model: torch.nn.Module, params: Iterable[torch.nn.Parameter],
        batches: Callable[[int], Iterator[tuple]], steps_per_epoch: int,
        loss_fn: Callable[[torch.nn.Module, tuple], tuple[torch.Tensor, dict]],
        validate: Callable[[torch.nn.Module], dict], metric: str, run_dir: Path,
        config: FitConfig = FitConfig(), resume: bool = False, title: str = "train") -> FitResult:
    """Train ``model`` and keep the best weights (by ``validate(model)[metric]``, higher is better).

    ``batches(epoch)`` yields the training batches of one epoch; ``loss_fn(model, batch)``
    returns (loss, extra numbers to show). After training the model holds the best weights.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    params = [p for p in params if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    total = max(1, config.epochs * steps_per_epoch)

    def lr_at(step: int) -> float:  # linear warm-up, then cosine to 2 % of the peak
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        u = (step - config.warmup_steps) / max(1, total - config.warmup_steps)
        return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(u, 1.0)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    state = {"epoch": 0, "best_metric": -math.inf, "best_epoch": -1, "bad_epochs": 0, "history": []}
    last, best = run_dir / "last.pt", run_dir / "best.pt"
    if resume and last.is_file():
        ck = torch.load(last, map_location="cpu", weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        sched.load_state_dict(ck["sched"])
        state = ck["state"]
        torch.set_rng_state(ck["torch_rng"])
        np.random.set_state(ck["np_rng"])
        random.setstate(ck["py_rng"])
        console.print(f"[cyan]resumed {title} from {last} at epoch {state['epoch']}[/]")
    else:
        seed_everything(config.seed)

    t0 = time.monotonic()
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TimeRemainingColumn(), TextColumn("{task.fields[info]}"))
    with Progress(*columns, console=console, transient=False) as progress:
        for epoch in range(state["epoch"], config.epochs):
            model.train()
            task = progress.add_task(f"{title} {epoch + 1}/{config.epochs}", total=steps_per_epoch, info="")
            run_loss, n = 0.0, 0
            for batch in batches(epoch):
                loss, extra = loss_fn(model, batch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
                opt.step()
                sched.step()
                run_loss += float(loss.detach())
                n += 1
                shown = " ".join(f"{k}={v:.3f}" for k, v in extra.items())
                progress.update(task, advance=1,
                                info=f"loss={run_loss / n:.4f} {shown} lr={sched.get_last_lr()[0]:.2e}")
            model.eval()
            with torch.no_grad():
                val = validate(model)
            value = float(val[metric]) if val.get(metric) is not None else -math.inf
            record = {"epoch": epoch + 1, "train_loss": run_loss / max(n, 1), **val}
            state["history"].append(record)
            improved = config.keep_last or value > state["best_metric"] + 1e-6
            if improved:
                state.update(best_metric=value, best_epoch=epoch + 1, bad_epochs=0)
                torch.save(model.state_dict(), best)
            else:
                state["bad_epochs"] += 1
            progress.update(task, info=f"loss={run_loss / max(n, 1):.4f} val: "
                            + " ".join(f"{k}={v:.4f}" for k, v in val.items() if isinstance(v, float))
                            + (" [green]best[/]" if improved else ""))
            if not console.is_terminal:  # logs: one line per epoch (the bar shows it live on a terminal)
                console.print(f"{title} epoch {epoch + 1}: loss={run_loss / max(n, 1):.4f} "
                              + " ".join(f"{k}={v:.4f}" for k, v in val.items() if isinstance(v, float))
                              + (" best" if improved else ""))
            state["epoch"] = epoch + 1
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                        "state": state, "torch_rng": torch.get_rng_state(), "np_rng": np.random.get_state(),
                        "py_rng": random.getstate()}, last)
            if state["bad_epochs"] >= config.patience:
                console.print(f"[yellow]early stop: no {metric} gain for {config.patience} epochs[/]")
                break
    if best.is_file():
        model.load_state_dict(torch.load(best, map_location="cpu"))
    model.eval()
    (run_dir / "history.json").write_text(json.dumps(state["history"], indent=2))
    return FitResult(state["best_epoch"], state["best_metric"], state["history"], time.monotonic() - t0)
