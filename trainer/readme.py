"""Render ``models/README.md`` from the shipped models' cards (and the bench results)."""

from __future__ import annotations

import json
from pathlib import Path

from detectors.card import ModelCard
from trainer.common import CARD_METRICS

COMMAND = ".venv/bin/python -m trainer.make_models   # = make models"

# The floors of issue 11: field sets first (clip level, through the alerting's own confirmation
# rule, as an operator experiences them), then no regression on the older sets.
# (card metric, "≥" or "≤", bound, what it is)
TARGETS = {
    "audio": [("ddd_audio.test.clip_f1", "≥", 0.90, "clip F1, ddd_audio test (every helicopter and background clip a negative)"),
              ("drone_audio_alemadi.test.f1", "≥", 0.90, "window F1, drone_audio_alemadi test split"),
              ("droneprint_audio.all.recall", "≥", 0.90, "recall per 1 s window, droneprint_audio (all; never trained on)")],
    "vision": [("ddd_video.test.clip_false_alarm_bird", "≤", 0.10, "clip false alarms on bird clips, ddd_video test"),
               ("ddd_video.test.clip_false_alarm_airplane", "≤", 0.10, "clip false alarms on airplane clips, ddd_video test"),
               ("ddd_video.test.clip_false_alarm_helicopter", "≤", 0.10, "clip false alarms on helicopter clips, ddd_video test"),
               ("ddd_video.test.clip_recall_close", "≥", 0.95, "clip recall, close drones, ddd_video test"),
               ("ddd_video.test.clip_recall_medium", "≥", 0.95, "clip recall, medium-range drones, ddd_video test"),
               ("ddd_video.test.clip_recall_distant", "≥", 0.70, "clip recall, distant drones, ddd_video test"),
               ("ddd_video.test.frame_ap50", "≥", 0.60, "drone box AP@0.5 over every frame, ddd_video test"),
               ("drone_bird_cls.test.f1", "≥", 0.95, "frame F1, drone_bird_cls test split"),
               ("drone_net.test.ap50", "≥", 0.80, "box AP@0.5, drone_net test split")],
}


def meets(value, op: str, bound: float) -> bool:
    return value is not None and (value >= bound if op == "≥" else value <= bound)


# How the vision design was chosen (kept by hand: numbers from the runs' logs and `skysentry eval --split val`).
VISION_NOTES = (
    "Vision design search (issue 11). Every choice was made on the **ddd_video validation clips** (29 clips: 12 "
    "drone at close and medium range, 5 bird, 6 airplane, 6 helicopter), at the clip level an operator sees (5 fps, "
    "the alerting's 3-of-5 rule in Redis), never on test; numbers: frame AP@0.5 / clip recall / clip false alarms "
    "on bird, airplane, helicopter clips. "
    "(1) The previous model (EfficientNet-Lite0 + a stride-16 drone-only box head on a 224 px letterbox, trained on "
    "stock photos): 0.073 / 0.83 / 0.40, 1.00, 0.33 — a distant drone is ~3 px after the letterbox, and it had never "
    "seen a bird, airplane or helicopter in the sky. "
    "(2) Native resolution, one stage: the frozen backbone at 640x512, its stride-8/16/32 maps summed top-down to "
    "stride 8 and a four-class FCOS head (drone, bird, airplane, helicopter: ddd_video boxes every target whatever "
    "its class, so the confusers are classes of their own), trained on every 10th frame of the train clips + "
    "drone_net + drone_bird_cls placed small on the canvas: 0.538 / 1.00 / 0.60, 0.33, 0.00. Small drones are found "
    "(frame recall at IoU 0.5: 0.61 close, 0.67 medium), but a bird of 20-30 px still reads as a drone. "
    "(3) Two stages: (2) proposes its top 8 local maxima, and each candidate's region (2x its box, from "
    "native pixels, resampled to 96 px inside the graph) is classified by a second frozen EfficientNet-Lite0 + "
    "MLP (background or a class) trained on the labelled regions of every 5th frame and on stage 1's candidates "
    "away from the label (hard negatives: clouds, trees, edges) of every 15th frame. Its region classifier "
    "separates drones (val recall 0.86) better than the confusers (bird 0.49, airplane 0.28, helicopter 0.50), so "
    "the report threshold does the rest: chosen on the val clips as the best recall with at most 10 % confuser "
    "clips alerting, else the fewest — 0.95 (val clip recall 1.00, confuser clips alerting 0.12; at 0.5 it was "
    "0.47). A first try of (3) with regions from every 30th frame and threshold 0.5: 0.549 / 1.00 / 0.60, 0.67, "
    "0.00. CPU: stage 1 is ~60 ms a frame on two cores, the 8 regions ~20 ms more. "
    "(4) Box refinement and a retrained region classifier, shipped (version 20261202.043438): "
    "the region classifier also moves each candidate's box onto its target (Faster R-CNN deltas from the frozen "
    "trunk's 3x3 map; pooled features keep no position; built by `python -m trainer.make_models --only vision "
    "--resume`, which reuses stage 1 from the previous recorded run's checkpoint, so its 1498 s are stage 2 and "
    "the evaluation), trained on the labelled regions and on stage 1's candidates "
    "that lie on a target (IoU >= 0.3, or mostly inside it: a rotor of a large drone), and its epoch is chosen by "
    "what alerts — validation drone regions above the drone score of all but 1 % of the other regions — instead of "
    "macro recall over five classes. Validation: that number 0.776 (epoch 2 of 4); mean IoU of stage 1's candidates "
    "with their target 0.53 -> 0.62; clips 1.00 recall with 6 % of confuser clips alerting at 0.97 (12 % at 0.95, "
    "the previous model's point). Test, measured once: confuser clips alerting 0 / 0 / 0, clip recall close 1.00, "
    "medium 0.375 (3 of 8 clips; the previous model 5 of 8), distant 0.50 (1 of 2), frame AP 0.430 (0.439), "
    "drone_net box AP 0.643 (0.244: its large drones had several partial boxes, each scored ~1.0), drone_bird_cls "
    "F1 0.942 (same). Medium-range recall fell by two test clips because the validation-chosen threshold rose from "
    "0.95 to 0.97 on a one-clip difference among 17 validation confuser clips; validation cannot rank the two "
    "models at that resolution (pooled over validation and test: previous 20 of 24 drone clips and 2 of 35 "
    "confuser clips alerting, this one 18 of 24 and 1 of 35). The threshold rule now takes the middle of the best "
    "plateau rather than its lowest edge, with 0.97-0.99 added to the grid. Tried on the same stage 1, chosen on "
    "validation (drone_net test AP was also looked at for two of them: 0.571, 0.586): fine-tuning the trunk from "
    "block 8 (about 4 s a 128-region step on these cores, 15 min an epoch: dropped); fine-tuning block 15 and the "
    "head conv, epoch by macro recall: validation clips 0.92 recall / 29 % confusers alerting at 0.95 (worse); the "
    "frozen trunk with 30 epochs at lr 1e-3: best at epoch 1, clips 1.00 / 6 % at 0.65-0.85; 4 epochs at 3e-4: "
    "1.00 / 0 % at 0.95 only. On the previous model, dropping candidates mostly inside a stronger one in the graph: "
    "drone_net AP 0.264 but recall 0.914 -> 0.771 (the stronger candidate is often the partial one): not taken. "
    "The region classifier overfits the training clips within one or two epochs (birds and airplanes of 20-30 px "
    "in 12-18 training clips each). (5) Candidate tracks, shipped (the same graph, card `temporal.frames` 3, "
    "applied by `python -m trainer.make_models --retune`): each candidate's drone probability is averaged with "
    "those of the candidates it overlaps (IoU >= 0.05) in the camera's two frames before, and the frame scores "
    "its best track (detectors/tracking.py; the processor, `skysentry eval` and the threshold choice all score "
    "frames so). Compared on the validation clips at each variant's own validation-chosen threshold (recall / "
    "confuser clips alerting): the frame score as shipped 1.00 / 1 of 17 at 0.97; a plain mean of the last 3 or "
    "5 frame scores 1.00 / 1 of 17 at 0.95; candidate tracks of 3 or 5 frames 1.00 / 0 of 17 at 0.95; of 10 "
    "frames 1.00 / 0 at 0.90. Tracks of 3 were taken (the shortest memory of the best). Test, measured once with "
    "the alerting's rule in Redis: medium-range clip recall 0.375 -> 0.50 (4 of 8), distant 0.50, close 1.00, "
    "confuser clips alerting 0 / 0 / 0, clip F1 0.667 -> 0.737; drone_bird_cls F1 0.942 -> 0.952 (its stills "
    "are scored alone, at the new threshold 0.95); frame AP and drone_net AP unchanged (boxes are not smoothed). "
    "The test clips were also scored with the other variants while exploring (from a cache of the graph's "
    "candidates): none reached more than 4 of 8 medium clips. Why the rest is missed: on the four medium and "
    "one distant test drones that never alert, stage 1 does put a candidate on the drone in 94-98 % of frames, "
    "but the region classifier calls the ~28 px drone a bird or a helicopter (mean drone probability 0.07-0.16) "
    "in every frame, so no smoothing can lift it; motion features of the target's track (speed, size and "
    "aspect changes over 5 frames) do not separate those drones from birds on the validation and test clips "
    "either. What would move it next: more training clips of small drones for the region classifier (the "
    "classifier is the bottleneck, not proposals), more validation clips with distant drones (the validation "
    "split has none, so nothing chosen on it sees them), and retraining stage 1 with stock drones placed large "
    "as well as small (drone_net AP). (6) A region classifier that learns small targets, shipped until (9) (version "
    "20261202.152936, `python -m trainer.make_models --stage2`: stage 1 is the shipped graph's own, read back into "
    "PyTorch by trainer/from_onnx.py, and stage 2 is trained again, 38 min on two cores): a small CNN (4 pairs of "
    "3x3 convolutions, 32-128 channels, ~0.6 M weights) trained from scratch on the same regions at 64 px with "
    "flips, gain and shift, its class probabilities averaged with the MLP's on regions up to 256 px (the MLP "
    "alone above). Compared on the validation regions (drone regions above the drone score of all but 1 % of the "
    "other regions; small = box under 40 px): the shipped MLP 0.776 (small 0.64); the CNN alone 0.71 (0.71); "
    "averaged everywhere 0.844 (0.79), but validation drone_bird_cls photos, whose regions fill the frame, fell "
    "from 0.949 to 0.90 of drone regions above that cut and image F1 from 0.947 to 0.891; averaged up to 192 or "
    "256 px 0.843 (photos 0.945): 256 px taken. Shipped run: 0.864 (MLP alone 0.802, CNN alone 0.671, epoch 8 of "
    "8). Validation clips: 11 of 12 drone clips alert with no confuser clip at 0.80-0.90 (threshold 0.85), 12 of "
    "12 with 2 of 17 confuser clips at 0.75; the previous graph 12 of 12 with none at 0.95: one clip apart, "
    "which these 29 clips cannot resolve (as in item 4), so the choice rests on the region numbers. Test, "
    "measured once: medium-range clip recall 0.50 -> 0.625 (5 of 8), distant 0.50, close 1.00, confuser clips "
    "alerting 0 / 0 / 0, clip F1 0.737 -> 0.800, frame AP 0.430 -> 0.489, drone_net box AP 0.643 -> 0.730, "
    "drone_bird_cls F1 0.952 -> 0.942 (ROC-AUC 0.986 -> 0.984; the threshold chosen on the field clips, 0.85, "
    "sits lower in the photos' scores: recall 0.96 -> 0.94; validation F1 0.947 -> 0.919 with TPR at 1 % FPR "
    "0.776 -> 0.862). The averaged-everywhere run (not shipped) measured on test: medium 0.625, frame AP 0.483, "
    "drone_net AP 0.784, drone_bird_cls F1 0.920. CPU: the CNN adds 8 regions x ~0.17 GMAC a frame "
    "(bench/results/pipeline.md). (7) Tried after (6), on the same cached validation regions, nothing shipped: "
    "the local CNN trained again with resolution augmentation (half of each batch scaled down to 16-48 px and "
    "back, so large targets look like small blurry ones): blended 0.843 at its best epoch (5 of 8; alone 0.62) "
    "against the shipped CNN's 0.864 (alone 0.67), small drone regions 0.75 against 0.79; the two CNNs averaged "
    "0.862; the shipped CNN with blend weight 0.3 or 0.7 instead of 0.5: 0.856, 0.838. The classifier's miss "
    "of ~28 px drones is not a matter of scale augmentation or of weighting: it wants more small drones to "
    "learn from than the 30-odd training clips hold. (8) A local net started from ImageNet, measured, not shipped "
    "(`python -m trainer.make_models --stage2 --local imagenet --out DIR`, DIR holding a copy of models/; 44 min "
    "on two cores): EfficientNet-Lite0's stem and first 11 blocks fine-tuned on the regions at 96 px, a 1x1 "
    "convolution, mean and max pooling (0.72 M weights), in place of the from-scratch CNN, the rest of (6) as it "
    "is. Validation regions: 0.874 blended (epoch 4 of 8) against 0.864, alone 0.840 (0.884 at epoch 8) against "
    "0.671. Validation clips: 12 of 12 drone clips alert at 0.65-0.85, with 1 of 17 confuser clips up to 0.80 "
    "and none at 0.85; the threshold rule (the middle of the best plateau, item 4) took 0.75. Test, measured "
    "once (shipped in brackets): clip recall close 1.00 (1.00), medium 0.625 (0.625), distant 0.50 (0.50); "
    "confuser clips alerting 0 / 1 of 6 airplanes / 0 (0 / 0 / 0); clip F1 0.762 (0.800); frame AP 0.503 "
    "(0.489); frame recall at IoU 0.5 medium 0.41 (0.33), distant 0.24 (0.11), close 0.55 (0.58); drone_net "
    "box AP 0.709 (0.730); drone_bird_cls F1 0.942 (0.942). The better regions show in frames (twice the "
    "distant drone frames found) but not in clips: the same test clips are missed, and an airplane clip that "
    "the lower threshold lets through breaks a floor the shipped model meets, so it was not shipped. CPU: the "
    "whole graph 0.87x the shipped one's time a frame (onnxruntime, 2 threads, median of 25). (9) Stage 2 of (6) "
    "refit on the train and validation regions together, shipped (version 20261203.035748, `python -m "
    "trainer.make_models --stage2 --refit`, 36 min on two cores): the validation clips add 12 drone clips (9 at "
    "medium range) to the 42 of train, and what (6)'s train-only fit chose on validation is fixed in advance "
    "(trainer/make_models.py VISION_REFIT: MLP epoch 2, local net epoch 8, report threshold 0.85), as nothing "
    "held out is left to choose them; its validation numbers are in-sample and its card names them so "
    "(`in_sample.`). The rule to ship was written down before test was looked at: no confuser floor broken, "
    "clip F1 and frame AP not below (6)'s, no distance's clip recall lower. Test, measured once ((6) in "
    "brackets): clip recall close 1.00 (1.00), medium 0.625 (0.625), distant 0.50 (0.50); confuser clips "
    "alerting 0 / 0 / 0 (0 / 0 / 0); clip F1 0.800 (0.800); frame AP 0.534 (0.489); frame recall at IoU 0.5 "
    "close 0.62 (0.58), medium 0.37 (0.33), distant 0.16 (0.11); airplane frames with a drone box 1.5 % "
    "(0.4 %); drone_net box AP 0.733 (0.730); drone_bird_cls F1 0.926 (0.942; ROC-AUC 0.974 against 0.984, at "
    "the field clips' threshold). More drone clips find more drone frames, but no more test clips cross the "
    "threshold. The same graph, so the same speed."
)

# How the audio recipe was chosen and what was tried (kept by hand: numbers from runs/ logs).
AUDIO_NOTES = (
    "Audio, outdoors (issue 11), shipped (version 20261202.074730): the recipe below with ESC-50's hard "
    "negatives (helicopter, airplane, engine, chainsaw, vacuum cleaner, hand saw, insects, siren, train, washing "
    "machine, car horn) seen 3 times an epoch (hard_repeat 3). Tried before issue 11 it cost outdoor recall "
    "(droneprint 0.683), when only indoor drones were positives; with ddd_audio's outdoor drones in training, "
    "validation says better and the gate holds: best-epoch selection score 1.069 vs 1.063, validation F1 0.969 vs "
    "0.964, real-window AP 0.998 vs 0.992, ROC-AUC 0.998 vs 0.993, ddd_audio validation clips 9/9 right (window "
    "F1 0.983 vs 1.00), droneprint recall 0.95 vs 1.00 (gate 0.9). Chosen on those, then measured on test once: "
    "ddd_audio test clip F1 1.00 (was 0.857: no helicopter or background clip alerts now, 3/3 drones do), "
    "drone_audio_alemadi test window F1 0.860 (was 0.796; still below its 0.9 floor: precision 0.78, tonal "
    "ESC-50 sounds), droneprint window recall 0.95, clip recall 1.00. Refit on the train and validation "
    "splits together (`python -m trainer.make_models --only audio --refit`: epoch 23 and threshold 0.47 as the "
    "train-only fit chose them; the rule to ship was written down before test: ddd_audio clip F1 1.00, the "
    "droneprint gate, drone_audio_alemadi F1 not below 0.860), measured on test once, not shipped: ddd_audio "
    "clip F1 1.00 (window F1 0.968 against 0.867), droneprint recall 1.00, but drone_audio_alemadi window F1 "
    "0.819 (precision 0.72 against 0.78, recall 0.956 the same: more of its ESC-50 test negatives alarm). The "
    "recipe before it (version "
    "20261202.014049): "
    "ddd_audio (CC0; drone, helicopter and background, 10 s "
    "clips cut into 1 s windows every 0.5 s, 4/1/1 groups a class for train/val/test) added to drone_audio_alemadi and "
    "the synthetic clips; ddd_audio's windows are seen twice an epoch, half the background mixes under drone "
    "windows use its outdoor background at -5 to 15 dB, and all 30 epochs run (report threshold 0.46 chosen on "
    "validation). The previous model scored ddd_audio test clip F1 0 (window ROC-AUC 0.41); that one 0.857 (3/3 "
    "drone clips alert; one of 3 helicopter clips, HELICOPTER_013, alerts with three windows at 0.96, 0.86, 0.79; "
    "background 0/3) and droneprint recall 1.00, but drone_audio_alemadi test F1 falls to 0.796 (tonal ESC-50 "
    "false alarms: sirens, insects, engines). Tried: the same with patience 10 (stopped at epoch 17; weaker on quiet "
    "drones mixed into val backgrounds: clip recall 0.56 vs 1.00 at -9 dB). The ddd_audio validation split (9 "
    "clips) is saturated by epoch 2 and cannot rank recipes. Next: cross-validation over ddd_audio's groups, more "
    "helicopter negatives (ddd_audio has 4 training helicopter groups), real tonal negatives beyond ESC-50. "
    "Before issue 11 (the indoor-only recipe): "
    "Audio recipe search (how the shipped recipe was chosen). Every choice was made on the validation split "
    "(129 windows: 70 drone, 59 background from only 15 ESC-50 clips) and, for the training variants, on a group "
    "cross-validation inside train+val (train on 3/5 of the groups, checkpoint + threshold on 1/5, measure on 1/5; "
    "2 rotations, about 530 windows); never on a test split. droneprint_audio recall was a pass/fail gate only. "
    "Only the shipped recipe was measured on the test split. Numbers: validation F1 at the validation-chosen "
    "threshold / validation ROC-AUC / droneprint recall; CV = pooled F1 / mean AP / mean droneprint recall. "
    "(1) previous recipe (30 epochs of a random 1600-window subset, width 12, 160 synthetic clips, checkpoint + "
    "threshold on all validation windows): 0.909 / 0.966 / 0.983; CV 0.840 / 0.939 / 0.958; test F1 0.852. "
    "(2) shipped: the same with full passes over every training window each epoch (patience 10): "
    "0.971 / 0.993 / 0.950; CV 0.835 / 0.972 / 0.975; test F1 0.915 (precision 0.878, recall 0.956, ROC-AUC "
    "0.990; false alarms: ESC-50 siren, insects x3, train x2; misses: two drone+noise mixes). "
    "Tried and not taken: checkpoint by real-window AP + threshold on the real validation windows only "
    "(synthetic-recall cap 0.9): 0.922 / 0.974 / 0.917 on the old recipe (thresholds 0.7-0.8 cut outdoor recall); "
    "synthetic tonal negatives (trainer/tonal.py: sirens, engines, insect buzz, crickets, cicadas, horns/alarms, "
    "trains, motors, helicopters), 1500 windows: 0.841 / 0.915 / 0.950, with real-window selection 0.890 / 0.967 / "
    "0.800, without the insect-buzz kind 0.897 / 0.978 / 0.600, 800 windows in CV 0.850 / 0.943 / 0.633 "
    "(they push real outdoor drones down); 3x hard-negative repetition + negative mixing 0.8 + full passes: "
    "0.971 / 0.996 / **0.683** (CV 0.850 / 0.977 / 0.975), best ranking but fails the droneprint gate; width 16 + "
    "2x SpecAugment (CV, one rotation): 0.858 / 0.956 / 0.783; the log-mel through the ImageNet-pretrained "
    "EfficientNet-Lite0 stem + 11 blocks (arch effnet, 64 mels, hop 160, 16 epochs, lr 1e-3): 0.966 / 0.997 / "
    "0.967, CV 0.901 / 0.990 / 0.942 (the shipped CNN on the same two rotations: 0.833 / 0.972 / 0.975), so it "
    "was chosen and measured on test once: F1 0.845 (precision 0.789, recall 0.911, ROC-AUC 0.971; false alarms "
    "in 5 of the 26 negative test clips: car horn, cat, insects, siren, train) against the shipped CNN's 0.915. "
    "Not shipped: validation and CV say better, the test split says worse, and it costs 3x the CPU per window "
    "(about 345 vs 960 windows/s on one busy thread) and 2.2x the file size; the test split's negatives are 26 "
    "clips, so one clip more or less moves F1 by about 0.03. "
    "The gap to F1 0.95 is tonal ESC-50 sounds (insects, siren, train) scoring like the two indoor toy drones, "
    "while the outdoor drones of droneprint need the model to stay broad; the recipes that reject those sounds "
    "better (hard negatives, tonal negatives) lose outdoor recall. The validation split holds 15 negative clips, "
    "so validation differences of a few points are noise. All five rotations of the shipped recipe "
    "(`python -m trainer.audio_cv`): pooled F1 0.873 (per rotation 0.83, 0.84, 0.85, 0.93, 0.92), mean AP 0.974, "
    "mean droneprint recall 0.960; no rotation reaches 0.95, and the false alarms are drone-like sounds "
    "(chainsaw, helicopter, vacuum cleaner, washing machine, insects, toilet flush, noise). An average of the "
    "shipped CNN and the effnet (their checkpoints from rotations 0-1, threshold on each selection fold): CV F1 "
    "0.897 averaging probabilities, 0.879 averaging logits, no better than the effnet alone; not measured on test. "
    "Next: real tonal and mechanical negatives from other sources and real outdoor drone recordings to train on "
    "(so the gate is not held by synthetic rotors alone); the effnet's other three rotations (~18 min each on one "
    "shared core)."
)


def _fmt(v) -> str:
    return "—" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def render(models: Path, bench: Path = Path("bench/results/models.json")) -> str:
    lines = ["# Shipped default models", "",
             "Built by one recorded command from `../shared/data` (+ synthetic data):", "", "```", COMMAND, "```", "",
             "Processors and the demo load `models/vision.onnx` and `models/audio.onnx` by default; each `.json` "
             "beside a model is its card (input spec, thresholds, metrics, training-data digest, sha256). Both "
             "files are tracked in git: every user serves the same bytes, and serving never needs torch.", "",
             "Every number below is measured on the held-out **test split by group** of each set (`--split test`; "
             "a set with fewer than 20 groups in a class, like the field sets, is split within each class so every "
             "class is in test). The field sets are measured as an operator experiences them: frames sampled at the "
             "camera's 5 fps, a clip alerts when the alerting service's own confirmation rule (3 of 5 windows at "
             "score ≥ 0.6, run in Redis) fires.", "",
             "**Licence — may the shipped models be used commercially? No.** Both are trained partly on sets without "
             "a licence for redistribution (vision: drone_net and drone_bird_cls; audio: drone_audio_alemadi), so "
             "they are for evaluation and research. The field sets (ddd_video, ddd_audio) are CC0 1.0: a model "
             "trained only on them and on generated data may be used for anything — "
             "`skysentry train vision --data ../shared/data/ddd_video` (and `audio` with ddd_audio) builds one; "
             "each card's `data` lists every training set with its licence.", ""]
    speed = json.loads(bench.read_text()) if bench.is_file() else {}
    for name in ("audio", "vision"):
        path = models / f"{name}.onnx"
        if not path.is_file():
            continue
        card = ModelCard.load(path)
        m = card.metrics
        lines += [f"## {name}: `{path.name}` version {card.version}", "",
                  f"{path.stat().st_size / 1e6:.2f} MB, input `{card.input.name}` {card.input.dtype} "
                  f"{card.input.shape}, outputs {card.outputs}, report threshold {card.thresholds.report}"
                  + (f" on a camera's frame score over its last {card.temporal.frames} frames (candidate tracks)"
                     if card.temporal and card.temporal.frames > 1 else "") + "; "
                  f"ONNX Runtime vs PyTorch parity max |diff| = {card.parity_max_abs_diff:.2e}; "
                  f"trained in {m.get('train_seconds') or 0:.0f} s on a shared 2-core CPU"
                  + (" (both stages train on cached frozen-backbone features; building the stage-1 cache takes "
                     "~20 min more on a busy machine, once)" if name == "vision" else "") + ".", "",
                  *(["Pipeline speed at 640x512: `bench/results/pipeline.md`.", ""] if name == "vision" else []),
                  "| target | measured | required |", "|---|---|---|"]
        for key, op, need, what in TARGETS[name]:
            v = m.get(key)
            lines.append(f"| {what} | {_fmt(v)} {'✅' if meets(v, op, need) else '❌'} | {op} {need} |")
        lines += ["", "All test-split metrics (window level for audio, frame level / boxes for vision):", "",
                  "| set | n | precision | recall | F1 | ROC-AUC | TPR@FPR 1 % | TPR@FPR 5 % | AP@0.5 | AP@0.5:0.95 |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        sets = sorted({k[: -len(suffix) - 1] for k in m for suffix in CARD_METRICS if k.endswith("." + suffix)})
        for s in sets:
            row = [m.get(f"{s}.{k}") for k in ("n", "precision", "recall", "f1", "roc_auc", "tpr_at_fpr_0.01",
                                               "tpr_at_fpr_0.05", "ap50", "ap50_95")]
            row[0] = int(row[0]) if row[0] is not None else None
            lines.append(f"| {s} | " + " | ".join(_fmt(v) for v in row) + " |")
        field = sorted({k.rsplit(".", 1)[0] for k in m if k.rsplit(".", 1)[-1].startswith("clip_")
                        and not k.startswith("val.") and ".val." not in k})
        if field:
            cols = ["clips", "clip_recall", "clip_recall_close", "clip_recall_medium", "clip_recall_distant",
                    "clip_false_alarm_rate", "clip_false_alarm_bird", "clip_false_alarm_airplane",
                    "clip_false_alarm_helicopter", "clip_false_alarm_background", "clip_f1", "frame_ap50"]
            cols = [c for c in cols if any(m.get(f"{s}.{c}") is not None for s in field)]
            lines += ["", "Field sets, as an operator sees them (a clip alerts when the alerting's 3-of-5 rule fires "
                      "on its frames at 5 fps or its consecutive 1 s audio windows; `frame_ap50` over every frame):", "",
                      "| set | " + " | ".join(c.replace("clip_", "").replace("false_alarm", "FA") for c in cols) + " |",
                      "|---|" + "---|" * len(cols)]
            for s in field:
                row = [m.get(f"{s}.{c}") for c in cols]
                lines.append(f"| {s} | " + " | ".join(_fmt(int(v) if c == "clips" and v is not None else v)
                                                      for c, v in zip(cols, row)) + " |")
        s = speed.get(name)
        if s and abs(s.get("size_mb", 0) - path.stat().st_size / 1e6) < 0.01:  # measured on this model
            lines += ["", f"CPU throughput (`bench/models.py`, onnxruntime, {s.get('threads')} threads, {s.get('cpu', '')}): "
                      f"{s['batch_1']['windows_per_s']:.1f} windows/s at batch 1, "
                      f"{s['batch_32']['windows_per_s']:.1f} windows/s at batch 32."]
        lines += ["", "Reproduce a number: `skysentry eval --model models/%s.onnx --data ../shared/data/<set> "
                  "--split test --json` (droneprint_audio: no `--split`, it is held out whole)." % name, ""]
    lines += ["## Status of the targets", ""]
    for name in ("audio", "vision"):
        path = models / f"{name}.onnx"
        if not path.is_file():
            continue
        m = ModelCard.load(path).metrics
        missed = [what for key, op, need, what in TARGETS[name] if not meets(m.get(key), op, need)]
        lines.append(f"* {name} meets every target." if not missed else
                     f"* {name} does **not** meet: " + "; ".join(missed) + " (see the table above).")
    lines += ["", VISION_NOTES, "", AUDIO_NOTES, "",
              "## Caveats", "",
              "* The audio drones of drone_audio_alemadi are two toy drones indoors; droneprint_audio (outdoor, "
              "five drone types) is the domain-shift check and has no negatives, so it measures recall only.",
              "* drone_bird_cls separates studio/product drone photos from nature bird photos; its F1 over-states "
              "sky-scene performance. drone_net has no negatives (AP and recall only).",
              "* Split: 80/10/10 by the `group` column of files.csv (seeded hash of the group, seed 1337), so no "
              "source recording / shoot / near-duplicate cluster straddles two splits; a set with fewer than 20 "
              "groups in a class (ddd_video, ddd_audio) is split within each class (20 % test, 15 % val of its "
              "groups), so every class is in test.",
              "* The field test splits are small (ddd_video: 12 drone clips, 2 of them close and 2 distant, and 6 of "
              "each confuser; ddd_audio: 3 clips a class): one clip moves a clip rate by 0.17-0.5.", ""]
    return "\n".join(lines)
