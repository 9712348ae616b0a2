"""Synthetic sources: determinism, truth that matches the pixels / samples, files on disk."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from skysentry.synthetic import (
    FrameTruth,
    SyntheticAudio,
    SyntheticScene,
    synthetic_audio,
    write_scene_video,
)
from producers.synthetic_cli import app

W, H = 320, 180


@pytest.fixture(scope="module")
def scene() -> SyntheticScene:
    return SyntheticScene(width=W, height=H, seed=7, bird_probability=1.0)


def _in_any(t: float, spans: list[tuple[float, float]]) -> bool:
    return any(a <= t <= b for a, b in spans)


# ---- video ------------------------------------------------------------------------------------


def test_same_seed_same_frames_different_seed_different() -> None:
    a, b, c = (SyntheticScene(width=W, height=H, seed=s) for s in (3, 3, 4))
    for t in (0.0, 2.5, 4.0):
        fa, ta = a.frame_at(t)
        fb, tb = b.frame_at(t)
        assert np.array_equal(fa, fb) and ta == tb
    assert a.intervals(duration_s=40) == b.intervals(duration_s=40)
    assert not np.array_equal(a.frame_at(2.5)[0], c.frame_at(2.5)[0])
    assert a.intervals(duration_s=40) != c.intervals(duration_s=40)


def test_frame_shape_dtype_and_clouds_drift(scene: SyntheticScene) -> None:
    f0, _ = scene.frame_at(0.0)
    assert f0.shape == (H, W, 3) and f0.dtype == np.uint8
    far = scene.background_at(30.0)
    sky = slice(0, int(scene.horizon_y.min()) - 2)
    ground = slice(int(scene.horizon_y.max()) + 2, H)
    # The sky changes over time (drifting clouds, light); the ground only by light and noise.
    assert np.abs(f0[sky].astype(int) - far[sky]).mean() > np.abs(f0[ground].astype(int) - far[ground]).mean()


def test_frames_iterates_at_scene_fps(scene: SyntheticScene) -> None:
    got = list(scene.frames(5, start_s=1.0))
    assert [i for i, *_ in got] == [0, 1, 2, 3, 4]
    assert [t for _, t, *_ in got] == pytest.approx([1.0, 1.1, 1.2, 1.3, 1.4])
    assert np.array_equal(got[2][2], scene.frame_at(1.2)[0])


def test_drone_present_exactly_inside_intervals(scene: SyntheticScene) -> None:
    drones, birds = scene.intervals("drone", 40.0), scene.intervals("bird", 40.0)
    assert len(drones) >= 4 and birds  # bird_probability=1: at least one bird
    for a, b in drones:
        assert b - a == pytest.approx(scene.drone_duration_s)
    for k in range(400):
        t = k / scene.fps
        truth = scene.truth_at(t)
        assert truth.drone_present == _in_any(t, drones), t
        assert any(o.label == "bird" for o in truth.objects) == _in_any(t, birds), t


def test_objects_visible_iff_truth_says_so(scene: SyntheticScene) -> None:
    """The truth is about pixels: anything listed changes the frame, nothing else does."""
    for k in range(0, 200, 3):
        t = k / scene.fps
        frame, truth = scene.frame_at(t)
        changed = np.any(frame != scene.background_at(t), axis=2)
        assert changed.any() == bool(truth.objects), t


def _px(box: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = box
    return round(x1 * W), round(y1 * H), round(x2 * W), round(y2 * H)


@pytest.mark.parametrize("seed", [1, 2, 5])
def test_truth_boxes_tightly_cover_the_silhouette(seed: int) -> None:
    sc = SyntheticScene(width=W, height=H, seed=seed, bird_probability=1.0)
    checked = 0
    for a, b in sc.intervals("drone", 30.0) + sc.intervals("bird", 30.0):
        for t in np.linspace(a, b, 7)[1:-1]:
            frame, truth = sc.frame_at(float(t))
            hidden, same = sc.frame_at(float(t), render_objects=False)
            assert same == truth
            diff = np.abs(frame.astype(int) - hidden).sum(axis=2)
            allowed = np.zeros((H, W), bool)
            for o in truth.objects:
                x1, y1, x2, y2 = _px(o.box)
                assert 0 <= x1 < x2 <= W and 0 <= y1 < y2 <= H
                allowed[max(y1 - 2, 0) : y2 + 2, max(x1 - 2, 0) : x2 + 2] = True
                inside = diff[y1:y2, x1:x2]
                assert (inside > 20).mean() > 0.15, "box has little of the silhouette in it"
            assert not (diff[~allowed] > 0).any(), "silhouette pixels outside every box"
            for o in truth.objects:  # tight: the silhouette reaches every edge of its box
                x1, y1, x2, y2 = _px(o.box)
                box = diff[y1:y2, x1:x2] > 0.1 * diff[y1:y2, x1:x2].max()
                edges = (box[0], box[-1], box[:, 0], box[:, -1])
                assert all(e.any() for e in edges), "box is looser than the silhouette"
                checked += 1
    assert checked >= 15


def test_drones_in_the_sky_with_sizes_in_range() -> None:
    lo, hi = 12, 48
    sc = SyntheticScene(width=640, height=360, seed=11, drone_size_px=(lo, hi), bird_probability=0.0)
    widths = []
    for a, b in sc.intervals("drone", 80.0):
        truth = sc.truth_at((a + b) / 2)  # mid-pass: the drone is fully in frame
        (obj,) = truth.objects
        x1, y1, x2, y2 = obj.box
        widths.append((x2 - x1) * 640)
        assert y2 * 360 <= sc.horizon_y.min() + 1, "drone below the horizon"
    assert min(widths) >= 0.5 * lo and max(widths) <= hi + 4
    assert max(widths) - min(widths) > 5, "sizes should vary between passes"


def test_track_ids_stable_within_a_pass_and_distinct_between(scene: SyntheticScene) -> None:
    ids = []
    for a, b in scene.intervals("drone", 30.0):
        per_pass = {o.track_id for t in np.linspace(a, b, 6) for o in scene.truth_at(float(t)).objects if o.label == "drone"}
        assert len(per_pass) == 1
        ids.append(per_pass.pop())
    assert len(set(ids)) == len(ids)


def test_write_scene_video_round_trip(tmp_path) -> None:
    sc = SyntheticScene(width=96, height=64, fps=10.0, seed=1, drone_every_s=2.0, drone_duration_s=1.0)
    out = write_scene_video(tmp_path / "clip.mp4", sc, 2.0)
    cap = cv2.VideoCapture(str(out))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    assert len(frames) == 20 and frames[0].shape == (64, 96, 3)
    lines = (tmp_path / "clip.mp4.truth.jsonl").read_text().splitlines()
    assert len(lines) == 20
    rows = [json.loads(line) for line in lines]
    assert [r["frame"] for r in rows] == list(range(20))
    truths = [FrameTruth.model_validate(r) for r in rows]
    assert truths[13] == sc.truth_at(1.3)
    assert any(t.drone_present for t in truths)
    with pytest.raises(OSError, match="does not exist"):
        write_scene_video(tmp_path / "missing" / "clip.mp4", sc, 1.0)


# ---- audio ------------------------------------------------------------------------------------


def _mask(clip: SyntheticAudio) -> np.ndarray:
    m = np.zeros(len(clip.pcm), bool)
    for a, b in clip.intervals:
        m[round(a * clip.sample_rate) : round(b * clip.sample_rate)] = True
    return m


def test_audio_length_dtype_and_determinism() -> None:
    a = synthetic_audio(6.0, seed=2)
    assert a.pcm.dtype == np.int16 and a.pcm.shape == (96000,) and a.sample_rate == 16000
    assert a.intervals and all(0.0 <= s < e <= 6.0 for s, e in a.intervals)
    assert np.array_equal(a.pcm, synthetic_audio(6.0, seed=2).pcm)
    assert not np.array_equal(a.pcm, synthetic_audio(6.0, seed=3).pcm)
    assert np.abs(a.pcm).max() > 20000  # uses the range, does not clip
    assert synthetic_audio(1.5, sample_rate=8000, seed=2).pcm.shape == (12000,)


@pytest.mark.parametrize("snr_db", [-5.0, 10.0, 20.0])
def test_measured_snr_matches_request(snr_db: float) -> None:
    clip = synthetic_audio(8.0, snr_db=snr_db, seed=4, drone_intervals=[(1.0, 3.5), (5.0, 7.0)])
    m = _mask(clip)
    background = clip.background.astype(np.float64)
    drone = clip.pcm - background  # what the file holds minus the background stem
    measured = 10 * np.log10(np.mean(drone[m] ** 2) / np.mean(background[m] ** 2))
    assert measured == pytest.approx(snr_db, abs=1.0)
    assert np.all(np.abs(drone[~m]) <= 0.51)  # outside the intervals: no drone, only rounding


def _band_power(x: np.ndarray, sr: int, f0: float) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)))) ** 2 / len(x)
    f = np.fft.rfftfreq(len(x), 1 / sr)
    return float(spec[(f > 0.9 * f0) & (f < 1.1 * f0)].sum())


def test_energy_at_blade_pass_frequency_inside_intervals() -> None:
    clip = synthetic_audio(12.0, snr_db=5.0, seed=9, drone_intervals=[(4.0, 8.0)])
    (f0,) = clip.drone_f0_hz
    assert 80.0 <= f0 <= 300.0
    x, sr = clip.pcm.astype(np.float64), clip.sample_rate
    inside = _band_power(x[5 * sr : 7 * sr], sr, f0)
    outside = max(_band_power(x[1 * sr : 3 * sr], sr, f0), _band_power(x[9 * sr : 11 * sr], sr, f0))
    assert inside > 5 * outside


def test_empty_intervals_means_no_drone() -> None:
    clip = synthetic_audio(5.0, seed=1, drone_intervals=[])
    assert clip.intervals == [] and clip.drone_f0_hz == []
    assert not np.any(clip.drone)
    assert not any(clip.window_labels())
    # Same seed with a drone: the background underneath is the same recording.
    with_drone = synthetic_audio(5.0, seed=1, drone_intervals=[(1.0, 4.0)])
    assert np.corrcoef(clip.background, with_drone.background)[0, 1] > 0.999


def test_random_intervals_are_seeded_and_disjoint() -> None:
    a = synthetic_audio(40.0, seed=5, sample_rate=8000).intervals
    assert a == synthetic_audio(40.0, seed=5, sample_rate=8000).intervals
    assert len(a) >= 2
    assert all(e1 <= s2 for (_, e1), (s2, _) in zip(a, a[1:]))


def test_window_labels_on_hand_made_interval() -> None:
    clip = SyntheticAudio(pcm=np.zeros(5 * 16000, np.int16), sample_rate=16000, intervals=[(1.0, 2.25)])
    # windows [0,1) [0.5,1.5) [1,2) [1.5,2.5) [2,3) ... [4,5): overlaps 0, .5, 1, .75, .25, 0 ...
    assert clip.window_labels() == [False, True, True, True, False, False, False, False, False]
    assert clip.window_labels(min_overlap=0.8) == [False, False, True] + [False] * 6
    assert len(clip.window_labels(window_s=2.0, hop_s=1.0)) == 4


def test_wav_and_truth_round_trip(tmp_path) -> None:
    clip = synthetic_audio(3.0, snr_db=7.5, seed=6, drone_intervals=[(0.5, 2.0)])
    path = clip.write(tmp_path / "a.wav")
    pcm, sr = sf.read(str(path), dtype="int16")
    assert sr == 16000 and np.array_equal(pcm, clip.pcm)
    assert sf.info(str(path)).subtype == "PCM_16"
    truth = json.loads((tmp_path / "a.wav.truth.json").read_text())
    assert truth["sample_rate"] == 16000 and truth["intervals"] == [[0.5, 2.0]]
    assert truth["snr_db"] == 7.5 and truth["seed"] == 6
    back = SyntheticAudio.read(path)
    assert back.intervals == clip.intervals and np.array_equal(back.pcm, clip.pcm)


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown background"):
        synthetic_audio(1.0, backgrounds=("rain",))
    with pytest.raises(ValueError):
        SyntheticScene(bird_probability=2.0)


# ---- CLI --------------------------------------------------------------------------------------


def test_cli_writes_media_and_truth(tmp_path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["video", str(tmp_path / "v.mp4"), "--seconds", "1", "--width", "64", "--height", "48"])
    assert res.exit_code == 0, res.output
    assert "wrote" in res.output and (tmp_path / "v.mp4.truth.jsonl").exists()
    res = runner.invoke(app, ["audio", str(tmp_path / "a.wav"), "--seconds", "2", "--seed", "3"])
    assert res.exit_code == 0, res.output
    assert sf.info(str(tmp_path / "a.wav")).frames == 32000 and (tmp_path / "a.wav.truth.json").exists()


def test_cli_unwritable_path_is_a_clear_error(tmp_path) -> None:
    res = CliRunner().invoke(app, ["audio", str(tmp_path / "no" / "such" / "a.wav"), "--seconds", "1"])
    assert res.exit_code == 2
    assert "does not exist" in res.output
    assert not (tmp_path / "no").exists()
