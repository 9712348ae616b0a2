"""A tiny training run per modality on small synthetic class folders: it exports an ONNX model
that passes the parity check and that the serving detectors load and run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from .conftest import synthetic_audio_folder

pytestmark = pytest.mark.train


def _image_folder(root: Path, n: int = 14) -> Path:
    import cv2

    from trainer.synthetic import synthetic_module

    syn = synthetic_module()
    (root / "drone").mkdir(parents=True)
    (root / "sky").mkdir(parents=True)
    scene = syn.SyntheticScene(width=128, height=96, fps=10, seed=3, drone_every_s=2.0, drone_duration_s=2.0,
                               drone_size_px=(20, 30), bird_probability=0.0)
    t, k = 0.05, 0
    while k < n:
        frame, truth = scene.frame_at(t)
        t += 0.37
        boxes = [o.box for o in truth.objects if o.label == "drone"]
        if not boxes:
            continue
        cv2.imwrite(str(root / "drone" / f"f{k}.png"), frame)
        (root / "drone" / f"f{k}.txt").write_text("".join(
            f"0 {(b[0] + b[2]) / 2} {(b[1] + b[3]) / 2} {b[2] - b[0]} {b[3] - b[1]}\n" for b in boxes))
        cv2.imwrite(str(root / "sky" / f"s{k}.png"), scene.background_at(t))
        k += 1
    return root


@pytest.mark.parametrize("arch", [dict(arch="cnn", width=4), dict(arch="effnet", blocks=3, n_mels=32, hop=320)],
                         ids=["cnn", "effnet"])
def test_tiny_audio_run_exports_a_servable_model(tmp_path, monkeypatch, arch):
    from detectors.audio import AudioDetector, AudioDetectorConfig
    from trainer.train_audio import train_audio

    monkeypatch.setenv("SKYSENTRY_CACHE", str(tmp_path / "cache"))
    data = synthetic_audio_folder(tmp_path / "audio", clips=4)
    out = train_audio([data], tmp_path / "out", epochs=1, synthetic_clips=0, batch=8, run_dir=tmp_path / "run",
                      **arch)
    assert out.card.parity_max_abs_diff is not None and out.card.parity_max_abs_diff < 1e-3
    assert (tmp_path / "run" / "report" / "metrics.json").is_file()
    det = AudioDetector.load(AudioDetectorConfig(model=out.model_path))
    scores = det.infer([det.fit(np.zeros(16000, np.int16), 16000), det.fit(np.ones(8000, np.int16), 8000)])
    assert scores.shape == (2,) and np.all((scores >= 0) & (scores <= 1))


def test_a_tiny_audio_refit_trains_on_val_too_keeps_its_last_epoch_and_reports_at_the_given_threshold(tmp_path,
                                                                                                      monkeypatch):
    from trainer.train_audio import folder_windows, train_audio

    monkeypatch.setenv("SKYSENTRY_CACHE", str(tmp_path / "cache"))
    data = synthetic_audio_folder(tmp_path / "audio", clips=12)
    only_train, both = folder_windows(data), folder_windows(data, refit=True)
    assert len(both.y_val) and len(both.y_train) > len(only_train.y_train)  # the val groups' windows join training
    assert np.array_equal(both.x_val, only_train.x_val)
    out = train_audio([data], tmp_path / "out", synthetic_clips=0, batch=8, run_dir=tmp_path / "run", arch="cnn",
                      width=4, refit=dict(epochs=2, report=0.33))
    assert out.card.thresholds.report == 0.33 and out.metrics["best_epoch"] == 2
    assert "train and val splits" in out.card.data[0].note
    assert not any(".val." in k for k in out.metrics if not k.startswith("in_sample."))


def _field_video_folder(root: Path, clips_per_class: int = 3, frames: int = 12) -> Path:
    """ddd_video's layout in miniature: CLASS/*.mp4 (128x96) with a dark target moving across
    the sky, files.csv (group per clip) and labels.csv (one box per frame, 1-based)."""
    import csv

    import cv2

    rows, labels = [], []
    for cls, size in (("drone", 10), ("bird", 14)):
        (root / cls).mkdir(parents=True)
        for c in range(clips_per_class):
            rel = f"{cls}/V_{cls.upper()}_{c:03d}.mp4"
            out = cv2.VideoWriter(str(root / rel), cv2.VideoWriter_fourcc(*"mp4v"), 30, (128, 96))
            for f in range(1, frames + 1):
                img = np.full((96, 128, 3), (200, 170, 140), np.uint8)
                x, y = 10 + 7 * f, 20 + 3 * c
                if cls == "drone":
                    cv2.rectangle(img, (x, y), (x + size, y + size // 2), (30, 30, 30), -1)
                else:
                    cv2.line(img, (x, y), (x + size, y + 4), (60, 50, 40), 2)
                out.write(img)
                labels.append([rel, f, cls, x, y, size, size // 2 + 4])
            out.release()
            rows.append([rel, cls, f"{cls}-{c:02d}", "medium", frames, 30.0, 128, 96])
    with open(root / "files.csv", "w", newline="") as f:
        csv.writer(f).writerows([["file", "class", "group", "distance_bin", "frames", "fps", "width", "height"], *rows])
    with open(root / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([["file", "frame", "class", "x", "y", "w", "h"], *labels])
    return root


def test_tiny_vision_run_on_field_video_and_images_exports_a_servable_four_class_model(tmp_path, monkeypatch):
    from detectors.vision import VisionDetector, VisionDetectorConfig
    from trainer.train_vision import train_vision

    monkeypatch.setenv("SKYSENTRY_CACHE", str(tmp_path / "cache"))
    images = _image_folder(tmp_path / "img")
    video = _field_video_folder(tmp_path / "video")
    out = train_vision([video, images], tmp_path / "out", epochs=1, width=128, height=96, batch=8, frame_step=3,
                       val_frame_step=4, run_dir=tmp_path / "run", temporal_frames=3)
    card = out.card
    assert card.temporal is not None and card.temporal.frames == 3
    assert card.parity_max_abs_diff is not None and card.parity_max_abs_diff < 1e-3
    assert card.outputs == ["score", "boxes", "box_scores"] and card.labels == ["drone", "bird", "airplane",
                                                                                 "helicopter"]
    assert card.input.shape == ["batch", 96, 128, 3]
    assert {d.name for d in card.data} == {"video", "img"}
    det = VisionDetector.load(VisionDetectorConfig(model=out.model_path, box_threshold=0.0))
    (res,) = det.infer([det.prepare_rgb(np.full((96, 128, 3), 180, np.uint8))])
    assert 0 <= res.score <= 1 and {b.label for b in res.boxes} <= set(card.labels)
    assert det.tracks is not None and 0 <= det.frame_score("cam", 0.0, res) <= 1

    # --retune: the same graph with another smoothing; training-time numbers kept, held-out ones measured again
    from trainer.train_vision import retune

    again = retune(out.model_path, [video, images], [], temporal_frames=1, run_dir=tmp_path / "retune").card
    assert again.temporal.frames == 1 and (again.version, again.sha256) == (card.version, card.sha256)
    assert again.metrics["train_seconds"] == card.metrics["train_seconds"]
    measured = {k for k in card.metrics if k.startswith("video.test.clip_")}
    assert measured and measured == {k for k in again.metrics if k.startswith("video.test.clip_")}

    # --stage2 --refit: stage 1 read back from the graph, stage 2 (MLP and another local net) trained again on
    # train+val with given epochs, shipped at the given threshold (none chosen on val): a new version
    import torch

    from trainer.from_onnx import load_served
    from trainer.train_vision import retrain_second_stage
    from trainer.vision_model import LocalNet, TunedLocalNet

    before = load_served(out.model_path, height=96, width=128)
    assert isinstance(before.classifier.local, LocalNet)  # the recipe's local net
    new = retrain_second_stage(out.model_path, [video, images], [], out=tmp_path / "out2", run_dir=tmp_path / "s2",
                               temporal_frames=3, label_step=3, proposal_step=4,
                               local="imagenet", refit=dict(mlp_epochs=2, local_epochs=1, report=0.7)).card
    assert new.thresholds.report == 0.7 and "val.clip_recall" not in new.metrics and new.metrics["crop_best_epoch"] == 2
    assert new.version != card.version and new.parity_max_abs_diff < 1e-3 and new.temporal.frames == 3
    assert {d.name for d in new.data} == {"video", "img"} and new.training_data_digest == card.training_data_digest
    assert "in_sample.crop_val_drone_tpr_at_fpr_0.01_local" in new.metrics and "video.test.clip_f1" in new.metrics
    assert not any(k.startswith("crop_val_") for k in new.metrics)  # val was trained on: no number claims to be held out
    assert all(d.note.endswith("refit on its train and val splits together.") for d in new.data)
    after = load_served(tmp_path / "out2" / "vision.onnx", height=96, width=128)
    for a, b in zip(before.proposer.state_dict().values(), after.proposer.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5)  # stage 1 kept as it was
    assert isinstance(after.classifier.local, TunedLocalNet)  # the local net asked for


def test_audio_effnet_starts_from_the_imagenet_stem_summed_to_one_channel():
    import torch

    from trainer.audio_model import AudioEffNet
    from trainer.vision_model import EfficientNetLite0

    rgb = EfficientNetLite0().load_pretrained().stem[1].weight
    mono = AudioEffNet(blocks=2).stem[1].weight
    assert mono.shape == (32, 1, 3, 3)
    assert torch.allclose(mono, rgb.sum(dim=1, keepdim=True))
    assert not torch.allclose(mono, AudioEffNet(blocks=2, pretrained=False).stem[1].weight)
