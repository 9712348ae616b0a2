"""Letterbox geometry, box mapping, NMS and JPEG decoding."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from detectors.imaging import (PAD_VALUE, ImageDecodeError, decode_jpeg, jpeg_reduction, letterbox, nms,
                               unletterbox_boxes)


def test_letterbox_keeps_aspect_and_centres():
    rgb = np.full((480, 640, 3), 200, np.uint8)
    canvas, lb = letterbox(rgb, 320, 320)
    assert canvas.shape == (320, 320, 3)
    assert (lb.scale, lb.dx, lb.dy) == (0.5, 0, 40)
    assert (canvas[:40] == PAD_VALUE).all() and (canvas[280:] == PAD_VALUE).all()
    assert (canvas[40:280] == 200).all()


def test_boxes_map_back_to_the_original_frame():
    rgb = np.zeros((480, 640, 3), np.uint8)
    _, lb = letterbox(rgb, 320, 320)
    # the whole image region inside the letterbox is x 0..1, y 40/320..280/320
    boxes = np.array([[0.0, 40 / 320, 1.0, 280 / 320], [0.5, 0.5, 0.75, 0.625]], np.float32)
    mapped = unletterbox_boxes(boxes, lb)
    np.testing.assert_allclose(mapped[0], [0, 0, 1, 1], atol=1e-6)
    np.testing.assert_allclose(mapped[1], [0.5, (160 - 40) / 240, 0.75, (200 - 40) / 240], atol=1e-6)
    # outside the picture (in the padding) is clipped
    assert unletterbox_boxes(np.array([[0, 0, 0.1, 0.05]], np.float32), lb)[0, 3] == 0.0


def test_nms_keeps_best_of_overlapping_and_drops_empty():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [5, 5, 5, 9]], np.float32)
    scores = np.array([0.8, 0.9, 0.5, 0.99], np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert nms(boxes, scores, 0.5, max_boxes=1).tolist() == [1]
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5).size == 0


def test_jpeg_reduction_never_drops_below_the_input_size():
    assert jpeg_reduction(1920, 1080, 320, 320) == 4  # 480x270 still ≥ 320x180 letterboxed
    assert jpeg_reduction(640, 480, 320, 320) == 2
    assert jpeg_reduction(320, 240, 320, 320) == 1
    assert jpeg_reduction(100, 100, 320, 320) == 1


def test_decode_jpeg_rgb_and_reduced():
    bgr = np.zeros((64, 96, 3), np.uint8)
    bgr[..., 2] = 255  # red in BGR
    ok, buf = cv2.imencode(".jpg", bgr)
    rgb = decode_jpeg(buf.tobytes())
    assert rgb.shape == (64, 96, 3) and rgb[..., 0].mean() > 240 and rgb[..., 2].mean() < 15
    assert decode_jpeg(buf.tobytes(), 2).shape == (32, 48, 3)


@pytest.mark.parametrize("data", [b"", b"\xff\xd8\xff" + b"\x00" * 50, b"not a jpeg at all"])
def test_decode_jpeg_rejects_garbage_with_a_reason(data):
    with pytest.raises(ImageDecodeError):
        decode_jpeg(data)
