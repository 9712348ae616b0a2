"""One ONNX Runtime session per loaded model: provider choice, threads, I/O binding, warm-up.

Why a wrapper and not ``onnxruntime.InferenceSession`` directly:

* **Providers** (DESIGN §5). ``providers="auto"`` asks for TensorRT, then CUDA, then CPU, in
  that order, among those the installed onnxruntime build offers. A GPU build on a machine
  without a usable GPU (or without TensorRT's libraries) silently falls back inside ORT, so
  the providers actually in use are read back from the session, logged, and exposed as
  :attr:`OnnxSession.providers` — never assumed.
* **Threads.** ORT's defaults take every core for one session; a processor shares its machine
  with the JPEG decoders and Kafka clients, so intra/inter-op threads are settings.
* **I/O binding on a GPU**: inputs are copied to the device once and outputs are allocated
  there, instead of ORT staging both through its own host buffers on every call.
* **Warm-up at every batch size it will serve**: TensorRT builds an engine per shape and CUDA
  autotunes kernels on first use, so the first real batch of each size would otherwise pay
  seconds of latency. :func:`batch_buckets` names the sizes; on a GPU batches are padded up to
  the next bucket so no unseen shape ever reaches the session.

Nothing here imports torch (DESIGN §1).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import onnxruntime as ort
from pydantic import BaseModel, Field

log = logging.getLogger(__name__)

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
GPU_PROVIDERS = (TENSORRT, CUDA)

_NP_DTYPES = {
    "tensor(uint8)": np.uint8,
    "tensor(int16)": np.int16,
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
}


class SessionSettings(BaseModel):
    """How a model is run. One instance per processor; the model itself comes from its card."""

    providers: Literal["auto", "cpu", "cuda", "tensorrt"] | list[str] = Field(
        "auto", description="'auto': TensorRT > CUDA > CPU as available; or an explicit ORT provider list")
    device_id: int = 0
    intra_op_threads: int = Field(0, ge=0, description="threads inside one operator; 0 = ORT default (all cores)")
    inter_op_threads: int = Field(1, ge=0, description="threads across independent operators; 0 = ORT default")
    io_binding: bool = Field(True, description="bind inputs/outputs on the device when a GPU provider is used")
    tensorrt_fp16: bool = True
    tensorrt_cache_dir: Path | None = Field(None, description="TensorRT engine cache; speeds up restarts")
    pad_to_buckets: bool | None = Field(
        None, description="pad each batch up to the next warm-up bucket; None = only on a GPU provider")


def batch_buckets(max_batch: int) -> list[int]:
    """The batch sizes a processor serves: powers of two below ``max_batch``, and ``max_batch``."""
    if max_batch < 1:
        raise ValueError(f"max_batch must be at least 1, got {max_batch}")
    sizes, b = [], 1
    while b < max_batch:
        sizes.append(b)
        b *= 2
    sizes.append(max_batch)
    return sizes


def wanted_providers(settings: SessionSettings, available: Sequence[str] | None = None) -> list:
    """The provider list to ask ORT for, most preferred first (always ending with CPU)."""
    available = list(ort.get_available_providers() if available is None else available)
    choice = settings.providers
    if isinstance(choice, list):
        missing = [p for p in choice if p not in available]
        if missing:
            raise ValueError(f"providers {missing} are not in this onnxruntime build (it has {available}); "
                             "install onnxruntime-gpu for CUDA/TensorRT, or use providers='auto'")
        names = list(choice)
    elif choice == "cpu":
        names = [CPU]
    elif choice == "cuda":
        names = [CUDA, CPU]
    elif choice == "tensorrt":
        names = [TENSORRT, CUDA, CPU]
    else:  # auto
        names = [p for p in (TENSORRT, CUDA) if p in available] + [CPU]
    if choice in ("cuda", "tensorrt") and CUDA not in available:
        raise ValueError(f"providers={choice!r} needs onnxruntime-gpu (this build has {available})")
    if CPU not in names:
        names.append(CPU)
    out: list = []
    for name in names:
        if name == TENSORRT:
            opts: dict = {"device_id": settings.device_id, "trt_fp16_enable": settings.tensorrt_fp16}
            if settings.tensorrt_cache_dir:
                settings.tensorrt_cache_dir.mkdir(parents=True, exist_ok=True)
                opts |= {"trt_engine_cache_enable": True, "trt_engine_cache_path": str(settings.tensorrt_cache_dir)}
            out.append((name, opts))
        elif name == CUDA:
            out.append((name, {"device_id": settings.device_id}))
        else:
            out.append(name)
    return out


class OnnxSession:
    """A loaded ONNX model ready to serve: ``run({input: array}) -> {output: array}``.

    ``run`` is thread-safe for ORT itself; the I/O-binding path keeps one binding per thread.
    It releases the GIL while the graph runs, so callers run it in an executor thread to keep
    the event loop free.
    """

    def __init__(self, model: Path | str | bytes, settings: SessionSettings | None = None) -> None:
        self.settings = settings or SessionSettings()
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.settings.intra_op_threads:
            opts.intra_op_num_threads = self.settings.intra_op_threads
        if self.settings.inter_op_threads:
            opts.inter_op_num_threads = self.settings.inter_op_threads
        opts.log_severity_level = 3  # errors only: provider fallbacks are reported by us, below
        wanted = wanted_providers(self.settings)
        source = model if isinstance(model, bytes) else str(model)
        self._session = ort.InferenceSession(source, sess_options=opts, providers=wanted)
        self.providers: list[str] = list(self._session.get_providers())
        asked = [p if isinstance(p, str) else p[0] for p in wanted]
        if asked[0] != self.providers[0]:
            log.warning("asked for %s, onnxruntime is using %s (GPU not usable here?)", asked, self.providers)
        self.on_gpu = self.providers[0] in GPU_PROVIDERS
        self.use_io_binding = self.on_gpu and self.settings.io_binding
        pad = self.settings.pad_to_buckets
        self.pad_to_buckets = self.on_gpu if pad is None else pad
        self.inputs = {i.name: i for i in self._session.get_inputs()}
        self.outputs = [o.name for o in self._session.get_outputs()]
        self.input_dtypes = {name: _NP_DTYPES.get(i.type) for name, i in self.inputs.items()}
        self.warmed_batches: list[int] = []
        self._local = threading.local()

    # ------------------------------------------------------------------------------------

    def input_shape(self, name: str) -> list[int | str | None]:
        return list(self.inputs[name].shape)

    def run(self, feeds: Mapping[str, np.ndarray], outputs: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        names = list(outputs or self.outputs)
        if self.use_io_binding:
            return self._run_bound(feeds, names)
        return dict(zip(names, self._session.run(names, dict(feeds))))

    def _run_bound(self, feeds: Mapping[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
        binding = getattr(self._local, "binding", None)
        if binding is None:
            binding = self._local.binding = self._session.io_binding()
        binding.clear_binding_inputs()
        binding.clear_binding_outputs()
        inputs = []  # the device copies must outlive the run
        for name, array in feeds.items():
            value = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array), "cuda", self.settings.device_id)
            binding.bind_ortvalue_input(name, value)
            inputs.append(value)
        for name in names:
            binding.bind_output(name, "cuda", self.settings.device_id)
        self._session.run_with_iobinding(binding)
        outputs = binding.copy_outputs_to_cpu()
        del inputs
        return dict(zip(names, outputs))

    def warm_up(self, make_feeds, batch_sizes: Sequence[int], repeats: int = 2) -> dict[int, float]:
        """Run every batch size ``repeats`` times; return the last run's seconds per size.

        ``make_feeds(batch)`` builds a representative input dict for one batch size.
        """
        timings: dict[int, float] = {}
        for batch in batch_sizes:
            feeds = make_feeds(batch)
            for _ in range(max(1, repeats)):
                t0 = time.perf_counter()
                self.run(feeds)
                timings[batch] = time.perf_counter() - t0
        self.warmed_batches = sorted(set(self.warmed_batches) | set(batch_sizes))
        log.info("warmed up on %s: %s", self.providers[0],
                 ", ".join(f"b{b}={t * 1e3:.1f}ms" for b, t in timings.items()))
        return timings

    def padded_size(self, n: int) -> int:
        """The batch size ``n`` inputs are run at: ``n`` itself unless padding to buckets."""
        if not self.pad_to_buckets or not self.warmed_batches:
            return n
        for b in self.warmed_batches:
            if b >= n:
                return b
        return n


def pad_batch(array: np.ndarray, size: int) -> np.ndarray:
    """``array`` with zero rows appended up to ``size`` along axis 0."""
    n = array.shape[0]
    if n >= size:
        return array
    pad = np.zeros((size - n, *array.shape[1:]), dtype=array.dtype)
    return np.concatenate([array, pad], axis=0)
