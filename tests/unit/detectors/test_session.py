"""The ONNX Runtime wrapper: provider choice, batch buckets, padding, warm-up."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.session import (CPU, CUDA, TENSORRT, OnnxSession, SessionSettings, batch_buckets, pad_batch,
                               wanted_providers)


def test_batch_buckets_are_powers_of_two_then_max():
    assert batch_buckets(1) == [1]
    assert batch_buckets(8) == [1, 2, 4, 8]
    assert batch_buckets(12) == [1, 2, 4, 8, 12]
    with pytest.raises(ValueError):
        batch_buckets(0)


def test_auto_prefers_tensorrt_then_cuda_then_cpu():
    names = lambda ps: [p if isinstance(p, str) else p[0] for p in ps]  # noqa: E731
    assert names(wanted_providers(SessionSettings(), [CPU])) == [CPU]
    assert names(wanted_providers(SessionSettings(), [CUDA, CPU])) == [CUDA, CPU]
    assert names(wanted_providers(SessionSettings(), [TENSORRT, CUDA, CPU])) == [TENSORRT, CUDA, CPU]
    assert names(wanted_providers(SessionSettings(providers="cpu"), [TENSORRT, CUDA, CPU])) == [CPU]
    trt = wanted_providers(SessionSettings(device_id=1), [TENSORRT, CUDA, CPU])[0]
    assert trt[1]["device_id"] == 1 and trt[1]["trt_fp16_enable"] is True


def test_asking_for_a_gpu_on_a_cpu_build_says_what_to_install():
    with pytest.raises(ValueError, match="onnxruntime-gpu"):
        wanted_providers(SessionSettings(providers="cuda"), [CPU])
    with pytest.raises(ValueError, match="not in this onnxruntime build"):
        wanted_providers(SessionSettings(providers=[CUDA]), [CPU])


def test_cpu_session_runs_warms_every_bucket_and_does_not_pad(vision_model):
    s = OnnxSession(vision_model, SessionSettings(intra_op_threads=1))
    assert s.providers[0] == CPU and not s.on_gpu and not s.use_io_binding
    timings = s.warm_up(lambda b: {"image": np.zeros((b, 64, 64, 3), np.uint8)}, batch_buckets(6))
    assert sorted(timings) == [1, 2, 4, 6] and s.warmed_batches == [1, 2, 4, 6]
    assert s.padded_size(3) == 3  # CPU: dynamic batch, no padding
    out = s.run({"image": np.full((2, 64, 64, 3), 255, np.uint8)})
    assert out["score"].shape == (2,) and out["boxes"].shape == (2, 3, 4)


def test_padding_to_buckets_when_asked(vision_model):
    s = OnnxSession(vision_model, SessionSettings(pad_to_buckets=True))
    s.warm_up(lambda b: {"image": np.zeros((b, 64, 64, 3), np.uint8)}, [1, 2, 4, 8])
    assert [s.padded_size(n) for n in (1, 2, 3, 5, 8, 9)] == [1, 2, 4, 8, 8, 9]
    padded = pad_batch(np.ones((3, 2), np.int16), 4)
    assert padded.shape == (4, 2) and padded[3].sum() == 0 and padded[:3].sum() == 6
