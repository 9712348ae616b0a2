"""Image pre- and post-processing around the vision graph: JPEG decode, letterbox, box mapping, NMS.

These functions are the single definition of "what the vision model sees": the trainer
imports :func:`letterbox` too, so training and serving cannot drift apart (DESIGN §5). All of
them are plain numpy/OpenCV and release the GIL in the heavy parts, so a processor runs them
in a thread pool, off the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

PAD_VALUE = 114  # letterbox border (mid-grey, the YOLO convention); the trainer pads the same way


class ImageDecodeError(ValueError):
    """A payload that is not a decodable image; the reason says why."""


@dataclass(frozen=True, slots=True)
class Letterbox:
    """How an original frame was placed in the model's input: ``input = original * scale + (dx, dy)``."""

    width: int  # original frame, pixels
    height: int
    scale: float
    dx: float  # left padding in input pixels
    dy: float  # top padding
    input_width: int
    input_height: int


def jpeg_reduction(width: int, height: int, input_width: int, input_height: int) -> int:
    """The largest libjpeg DCT downscale (1, 2, 4, 8) that still leaves at least the pixels the
    letterbox keeps: decoding a 1920x1080 frame for a 320x320 model at 1/4 is several times
    faster than decoding it whole and resizing."""
    scale = min(input_width / width, input_height / height)
    for r in (8, 4, 2):
        if scale * r <= 1.0:
            return r
    return 1


_REDUCED = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
            8: cv2.IMREAD_REDUCED_COLOR_8}


def decode_jpeg(data: bytes | memoryview, reduction: int = 1) -> np.ndarray:
    """JPEG bytes → RGB uint8 ``[h, w, 3]`` (at ``1/reduction`` size); raises ImageDecodeError."""
    buf = np.frombuffer(data, dtype=np.uint8)
    if buf.size == 0:
        raise ImageDecodeError("empty image payload")
    bgr = cv2.imdecode(buf, _REDUCED[reduction])
    if bgr is None or bgr.ndim != 3 or bgr.shape[2] != 3:
        raise ImageDecodeError(f"JPEG could not be decoded ({buf.size} bytes; truncated or corrupt)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def letterbox(rgb: np.ndarray, input_width: int, input_height: int, *, original: tuple[int, int] | None = None,
              pad_value: int = PAD_VALUE) -> tuple[np.ndarray, Letterbox]:
    """Resize keeping the aspect ratio and pad to ``input_height x input_width``.

    ``original`` = (width, height) of the frame before any decode-time reduction, so the
    returned :class:`Letterbox` maps boxes back to the frame the camera sent.
    """
    h, w = rgb.shape[:2]
    scale = min(input_width / w, input_height / h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    if (new_w, new_h) != (w, h):
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        rgb = cv2.resize(rgb, (new_w, new_h), interpolation=interp)
    dx, dy = (input_width - new_w) // 2, (input_height - new_h) // 2
    if (new_w, new_h) == (input_width, input_height):
        canvas = np.ascontiguousarray(rgb)
    else:
        canvas = np.full((input_height, input_width, 3), pad_value, dtype=np.uint8)
        canvas[dy:dy + new_h, dx:dx + new_w] = rgb
    ow, oh = original or (w, h)
    return canvas, Letterbox(width=ow, height=oh, scale=min(input_width / ow, input_height / oh), dx=dx, dy=dy,
                             input_width=input_width, input_height=input_height)


def unletterbox_boxes(boxes: np.ndarray, lb: Letterbox) -> np.ndarray:
    """Boxes normalised to the letterboxed input → normalised to the original frame, clipped."""
    if boxes.size == 0:
        return boxes.reshape(0, 4).astype(np.float32)
    b = boxes.astype(np.float64, copy=True)
    b[:, [0, 2]] = (b[:, [0, 2]] * lb.input_width - lb.dx) / (lb.scale * lb.width)
    b[:, [1, 3]] = (b[:, [1, 3]] * lb.input_height - lb.dy) / (lb.scale * lb.height)
    return np.clip(b, 0.0, 1.0).astype(np.float32)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_boxes: int = 100) -> np.ndarray:
    """Greedy non-maximum suppression; returns kept indices, best first.

    ``boxes`` is ``[k, 4]`` (x1, y1, x2, y2); boxes with no area are dropped.
    """
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    order = np.argsort(-scores, kind="stable")
    order = order[areas[order] > 0]
    keep: list[int] = []
    while order.size and len(keep) < max_boxes:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        xx1 = np.maximum(x1[i], x1[rest])
        yy1 = np.maximum(y1[i], y1[rest])
        xx2 = np.minimum(x2[i], x2[rest])
        yy2 = np.minimum(y2[i], y2[rest])
        inter = np.maximum(xx2 - xx1, 0) * np.maximum(yy2 - yy1, 0)
        iou = inter / (areas[i] + areas[rest] - inter + 1e-12)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)
