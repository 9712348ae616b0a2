"""CPU throughput of the shipped ONNX models (windows/s at batch 1 and 32), onnxruntime only.

    .venv/bin/python bench/models.py [--models models] [--seconds 3] [--threads 2] [--only audio|vision]

A bench, not a test: it prints and writes ``bench/results/models.json`` (with ``--only``, that
model's entry is replaced and the others are kept). Inputs are real-shaped
random windows (uint8 frames / int16 PCM); throughput does not depend on their content.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort


def make_input(inp, batch: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    dims = [batch] + [d if isinstance(d, int) else 1 for d in inp.shape[1:]]
    if inp.type == "tensor(uint8)":
        return rng.integers(0, 256, dims, dtype=np.uint8)
    if inp.type == "tensor(int16)":
        return rng.integers(-3000, 3000, dims, dtype=np.int16)
    return rng.standard_normal(dims).astype(np.float32)


def measure(path: Path, batch: int, seconds: float, threads: int) -> dict:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0]
    x = make_input(inp, batch)
    for _ in range(3):
        sess.run(None, {inp.name: x})
    n, lat = 0, []
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 3:
        t = time.perf_counter()
        sess.run(None, {inp.name: x})
        lat.append(time.perf_counter() - t)
        n += 1
    total = time.perf_counter() - t0
    return {"batch": batch, "runs": n, "windows_per_s": n * batch / total,
            "latency_ms_p50": 1000 * float(np.median(lat)), "latency_ms_p95": 1000 * float(np.percentile(lat, 95))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="models")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="bench/results/models.json")
    ap.add_argument("--only", choices=["audio", "vision"], help="measure one model; keep the other's entry")
    args = ap.parse_args()
    out = Path(args.out)
    results = json.loads(out.read_text()) if args.only and out.is_file() else {}
    for name in (args.only,) if args.only else ("audio", "vision"):
        path = Path(args.models) / f"{name}.onnx"
        if not path.is_file():
            print(f"skip {name}: {path} not found (run `make models`)")
            continue
        r = {"model": str(path), "size_mb": path.stat().st_size / 1e6, "threads": args.threads,
             "cpu": platform.processor() or platform.machine(), "onnxruntime": ort.__version__}
        for b in (1, 32):
            r[f"batch_{b}"] = measure(path, b, args.seconds, args.threads)
            print(f"{name:6s} batch {b:2d}: {r[f'batch_{b}']['windows_per_s']:9.1f} windows/s "
                  f"(p50 {r[f'batch_{b}']['latency_ms_p50']:.1f} ms per batch)")
        results[name] = r
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
