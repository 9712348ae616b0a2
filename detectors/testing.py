"""Tiny ONNX graphs that honour the vision and audio graph contracts, for tests and benches.

They are built with the ``onnx.helper`` API (no torch) and are **never served by default**:
processors load ``models/vision.onnx`` / ``models/audio.onnx`` (the trainer's output). These
stand in for them where a test needs a model whose output it can predict:

* vision: ``score = sigmoid(gain * (mean_brightness / 255 - 0.5) + bias)`` — a white frame
  scores ≈1, a black one ≈0; the optional box head returns fixed boxes (two overlapping,
  one weak) so NMS and the letterbox mapping can be checked.
* audio: ``score = sigmoid(gain * (rms - 0.05) + bias)`` on the int16 window scaled to
  [-1, 1) — a loud tone scores ≈1, silence ≈0.

``bias`` makes distinguishable versions of "the same" model (e.g. ``bias=30``: always ≈1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from detectors.card import InputSpec, ModelCard, Thresholds, sha256_file

OPSET = 17

#: the fixed box head of the toy vision graph: normalised (x1, y1, x2, y2) in the letterboxed input
TOY_BOXES = np.array([[0.25, 0.25, 0.50, 0.50], [0.26, 0.26, 0.51, 0.51], [0.60, 0.60, 0.90, 0.90]],
                     dtype=np.float32)
TOY_BOX_SCORES = np.array([0.90, 0.80, 0.10], dtype=np.float32)
# the same boxes scored per class (drone, bird, airplane, helicopter): a bird, a drone, nothing
TOY_CLASSES = ("drone", "bird", "airplane", "helicopter")
TOY_CLASS_SCORES = np.array([[0.20, 0.90, 0.05, 0.0], [0.80, 0.10, 0.0, 0.0], [0.10, 0.05, 0.0, 0.0]],
                            dtype=np.float32)


def _const(name: str, array: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(array, name=name + "_value"))


def vision_graph(height: int = 64, width: int = 64, *, gain: float = 20.0, bias: float = 0.0,
                 boxes: bool = True, classes: bool = False) -> onnx.ModelProto:
    """``score`` rises with the image's brightness; constant boxes (TOY_BOXES) scored by
    TOY_BOX_SCORES, or per class by TOY_CLASS_SCORES when ``classes``."""
    nodes = [
        helper.make_node("Cast", ["image"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["x"], ["mean"], axes=[1, 2, 3], keepdims=0),
        _const("scale", np.array(gain / 255.0, dtype=np.float32)),
        _const("offset", np.array(-0.5 * gain + bias, dtype=np.float32)),
        helper.make_node("Mul", ["mean", "scale"], ["scaled"]),
        helper.make_node("Add", ["scaled", "offset"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["score"]),
    ]
    outputs = [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch"])]
    if boxes:
        k = len(TOY_BOXES)
        box_scores = TOY_CLASS_SCORES if classes else TOY_BOX_SCORES
        score_tail = [k, len(TOY_CLASSES)] if classes else [k]
        nodes += [
            helper.make_node("Shape", ["image"], ["in_shape"]),
            _const("zero", np.array([0], dtype=np.int64)),
            helper.make_node("Gather", ["in_shape", "zero"], ["batch_dim"], axis=0),
            _const("box_tail", np.array([k, 4], dtype=np.int64)),
            _const("score_tail", np.array(score_tail, dtype=np.int64)),
            helper.make_node("Concat", ["batch_dim", "box_tail"], ["box_shape"], axis=0),
            helper.make_node("Concat", ["batch_dim", "score_tail"], ["score_shape"], axis=0),
            _const("box_const", TOY_BOXES[None]),
            _const("box_score_const", box_scores[None]),
            helper.make_node("Expand", ["box_const", "box_shape"], ["boxes"]),
            helper.make_node("Expand", ["box_score_const", "score_shape"], ["box_scores"]),
        ]
        outputs += [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["batch", k, 4]),
                    helper.make_tensor_value_info("box_scores", TensorProto.FLOAT, ["batch", *score_tail])]
    graph = helper.make_graph(nodes, "toy_vision",
                              [helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", height, width, 3])],
                              outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="skysentry-tests")
    onnx.checker.check_model(model)
    return model


def audio_graph(samples: int = 16_000, *, gain: float = 100.0, bias: float = 0.0) -> onnx.ModelProto:
    nodes = [
        helper.make_node("Cast", ["pcm"], ["x"], to=TensorProto.FLOAT),
        _const("inv_full_scale", np.array(1.0 / 32768.0, dtype=np.float32)),
        helper.make_node("Mul", ["x", "inv_full_scale"], ["xs"]),
        helper.make_node("Mul", ["xs", "xs"], ["sq"]),
        helper.make_node("ReduceMean", ["sq"], ["ms"], axes=[1], keepdims=0),
        helper.make_node("Sqrt", ["ms"], ["rms"]),
        _const("gain", np.array(gain, dtype=np.float32)),
        _const("offset", np.array(-0.05 * gain + bias, dtype=np.float32)),
        helper.make_node("Mul", ["rms", "gain"], ["scaled"]),
        helper.make_node("Add", ["scaled", "offset"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["score"]),
    ]
    graph = helper.make_graph(nodes, "toy_audio",
                              [helper.make_tensor_value_info("pcm", TensorProto.INT16, ["batch", samples])],
                              [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="skysentry-tests")
    onnx.checker.check_model(model)
    return model


def write_model(model: onnx.ModelProto, path: Path, *, name: str, version: str, task: str,
                report: float = 0.5, **card_fields) -> Path:
    """Save ``model`` to ``path`` and its card beside it; return ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, path)
    inp = model.graph.input[0]
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    if task == "vision":
        spec = InputSpec(name=inp.name, dtype="uint8", shape=dims, layout="NHWC", color="RGB")
    else:
        spec = InputSpec(name=inp.name, dtype="int16", shape=dims, layout="NC", color=None, sample_rate=16_000,
                         resize=None)
    outputs = [o.name for o in model.graph.output]
    card = ModelCard(name=name, version=version, task=task, input=spec, outputs=outputs,
                     thresholds=Thresholds(report=report), sha256=sha256_file(path),
                     notes="toy graph built by detectors.testing; not a trained model", **card_fields)
    card.save(path)
    return path


def toy_vision_model(path: Path, *, name: str = "toy-vision", version: str = "1", size: int = 64,
                     bias: float = 0.0, boxes: bool = True, report: float = 0.5, classes: bool = False) -> Path:
    extra = {"labels": list(TOY_CLASSES)} if classes else {}
    return write_model(vision_graph(size, size, bias=bias, boxes=boxes, classes=classes), path, name=name,
                       version=version, task="vision", report=report, **extra)


def toy_audio_model(path: Path, *, name: str = "toy-audio", version: str = "1", samples: int = 16_000,
                    bias: float = 0.0, report: float = 0.5) -> Path:
    return write_model(audio_graph(samples, bias=bias), path, name=name, version=version, task="audio",
                       report=report)


# -- bench-grade stand-ins: the contract's shapes with a small CNN's compute ------------------


def _conv(name: str, x: str, cin: int, cout: int, k: int, stride: int, rng, dims: int = 2) -> list:
    w = (rng.standard_normal((cout, cin, *([k] * dims))) * (1.0 / np.sqrt(cin * k**dims))).astype(np.float32)
    b = np.zeros(cout, np.float32)
    return [_const(f"{name}_w", w), _const(f"{name}_b", b),
            helper.make_node("Conv", [x, f"{name}_w", f"{name}_b"], [f"{name}_c"], strides=[stride] * dims,
                             pads=[k // 2] * (2 * dims)),
            helper.make_node("Relu", [f"{name}_c"], [name])]


def cnn_vision_graph(size: int = 224, widths: tuple[int, ...] = (24, 48, 96, 128)) -> onnx.ModelProto:
    """A random-weight CNN (stride-2 3x3 convs) with the vision contract's input and ``score``
    output: a stand-in whose cost per frame resembles a small mobile CNN, for benches when
    the trained ``models/vision.onnx`` is not there. Its scores mean nothing."""
    rng = np.random.default_rng(7)
    nodes = [helper.make_node("Cast", ["image"], ["x8"], to=TensorProto.FLOAT),
             _const("inv255", np.array(1 / 255, np.float32)),
             helper.make_node("Mul", ["x8", "inv255"], ["xn"]),
             helper.make_node("Transpose", ["xn"], ["x0"], perm=[0, 3, 1, 2])]
    prev, cin = "x0", 3
    for i, cout in enumerate(widths):
        nodes += _conv(f"c{i}", prev, cin, cout, 3, 2, rng)
        prev, cin = f"c{i}", cout
    nodes += [helper.make_node("ReduceMean", [prev], ["pooled"], axes=[1, 2, 3], keepdims=0),
              helper.make_node("Sigmoid", ["pooled"], ["score"])]
    graph = helper.make_graph(nodes, "bench_cnn_vision",
                              [helper.make_tensor_value_info("image", TensorProto.UINT8, ["batch", size, size, 3])],
                              [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="skysentry-bench")
    onnx.checker.check_model(model)
    return model


def cnn_audio_graph(samples: int = 16_000, widths: tuple[int, ...] = (96, 96, 128)) -> onnx.ModelProto:
    """Audio stand-in: a strided 1-D conv "filterbank" on raw PCM (400-sample kernel, hop 160,
    like an STFT front-end), log-compressed, then a small conv stack → ``score``."""
    rng = np.random.default_rng(11)
    nodes = [helper.make_node("Cast", ["pcm"], ["x"], to=TensorProto.FLOAT),
             _const("inv_fs", np.array(1 / 32768, np.float32)),
             helper.make_node("Mul", ["x", "inv_fs"], ["xs"]),
             _const("chan_axis", np.array([1], np.int64)),
             helper.make_node("Unsqueeze", ["xs", "chan_axis"], ["x0"])]
    fb = (rng.standard_normal((widths[0], 1, 400)) / 20).astype(np.float32)
    nodes += [_const("fb_w", fb),
              helper.make_node("Conv", ["x0", "fb_w"], ["spec"], strides=[160], pads=[200, 200]),
              helper.make_node("Mul", ["spec", "spec"], ["power"]),
              _const("eps", np.array(1e-6, np.float32)),
              helper.make_node("Add", ["power", "eps"], ["power_eps"]),
              helper.make_node("Log", ["power_eps"], ["logmel"])]
    prev, cin = "logmel", widths[0]
    for i, cout in enumerate(widths[1:]):
        nodes += _conv(f"a{i}", prev, cin, cout, 3, 2, rng, dims=1)
        prev, cin = f"a{i}", cout
    nodes += [helper.make_node("ReduceMean", [prev], ["pooled"], axes=[1, 2], keepdims=0),
              helper.make_node("Sigmoid", ["pooled"], ["score"])]
    graph = helper.make_graph(nodes, "bench_cnn_audio",
                              [helper.make_tensor_value_info("pcm", TensorProto.INT16, ["batch", samples])],
                              [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="skysentry-bench")
    onnx.checker.check_model(model)
    return model
