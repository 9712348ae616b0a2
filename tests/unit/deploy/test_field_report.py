"""The demo's field-clips report on its own (no broker): per real clip, frames, detections by
label and whether a drone alert fired, from what the watcher saw; and the sample clips it
streams are present, tracked by git, unchanged, with their labels."""

from __future__ import annotations

import csv
import hashlib
import io
import subprocess
import uuid
from collections import Counter
from datetime import datetime, timezone

from rich.console import Console

from deploy.local.demo import field_table
from deploy.local.pipeline import ROOT, SAMPLES, FieldClip, Observed, RunReport, sample_clips
from skysentry.messages import Alert, Detection, ModelRef

NOW = datetime.now(timezone.utc)


def det(source: str, label: str, score: float = 0.9) -> Detection:
    return Detection(site="field", source=source, modality="vision", label=label, score=score,
                     model=ModelRef(name="vision", version="4"), input_event_id=str(uuid.uuid4()),
                     captured_at=NOW, processed_at=NOW)


def alert(source: str, event: str, label: str = "drone") -> Alert:
    return Alert(fingerprint=f"fp-{source}", event=event, status="resolved" if event == "resolved" else "firing",
                 severity="warning", site="field", source=source, label=label, modalities=["vision"],
                 max_score=0.9, starts_at=NOW, last_seen_at=NOW, detection_ids=["d"], summary="s")


def make_report() -> RunReport:
    clips = (FieldClip("field-drone", SAMPLES / "V_DRONE_067.mp4", "drone", "medium"),
             FieldClip("field-bird", SAMPLES / "V_BIRD_032.mp4", "bird", "medium"))
    seen = Observed()
    for d in [det("field-drone", "drone", 0.7), det("field-drone", "drone", 0.95), det("field-drone", "bird"),
              det("field-bird", "bird"), det("field-bird", "bird"), det("field-bird", "airplane"),
              det("cam-1", "drone")]:
        seen.detections[d.id] = d
    seen.alerts = [alert("field-drone", "firing"), alert("cam-1", "firing"), alert("field-drone", "resolved")]
    seen.inputs_by_source.update({"field-drone": 70, "field-bird": 69, "cam-1": 200})
    seen.summaries.update({("vision", "field-drone"): 14, ("vision", "field-bird"): 14})
    return RunReport(observed=seen, notifications=[], webhook_secret="x", log_dir=ROOT, services={},
                     service_errors={}, field_clips=clips,
                     producers={"field-drone": {"published": 70, "dropped": 0},
                                "field-bird": {"published": 69, "dropped": 0}})


def test_each_clip_is_reported_on_its_own():
    drone, bird = make_report().field_report()
    assert (drone.frames_sent, drone.frames_seen, drone.summaries) == (70, 70, 14)
    assert drone.drone_detections == 2 and drone.other_labels == {"bird": 1} and drone.max_drone_score == 0.95
    assert drone.alerted and drone.alert_labels == ("drone",) and drone.as_expected
    assert bird.drone_detections == 0 and bird.other_labels == {"airplane": 1, "bird": 2}
    assert not bird.alerted and bird.max_drone_score is None and bird.as_expected  # another camera's alert is not its


def test_a_bird_clip_with_a_drone_alert_is_reported_as_not_expected():
    report = make_report()
    report.observed.alerts.append(alert("field-bird", "firing"))
    bird = report.field_report()[1]
    assert bird.alerted and not bird.as_expected


def test_the_field_clips_block_shows_one_row_per_clip():
    console = Console(record=True, width=200, file=io.StringIO())
    console.print(field_table(make_report().field_report()))
    text = console.export_text()
    drone = next(line for line in text.splitlines() if "field-drone" in line).split()
    bird = next(line for line in text.splitlines() if "field-bird" in line).split()
    assert drone == ["field-drone", "V_DRONE_067", "70", "2", "(0.95)", "bird", "1", "yes", "✓"]
    assert bird == ["field-bird", "V_BIRD_032", "69", "0", "airplane", "1,", "bird", "2", "no", "✓"]


def test_a_wrong_clip_is_marked_in_the_block():
    report = make_report()
    report.observed.alerts.append(alert("field-bird", "firing"))
    console = Console(record=True, width=200, file=io.StringIO())
    console.print(field_table(report.field_report()))
    bird = next(line for line in console.export_text().splitlines() if "field-bird" in line).split()
    assert bird[-2:] == ["yes", "✗"]


def test_the_samples_are_unchanged_copies_with_their_labels_and_tracked_by_git():
    clips = sample_clips()
    assert [c.camera_id for c in clips] == ["field-drone", "field-bird"]
    with open(SAMPLES / "files.csv", newline="") as f:
        rows = {r["file"]: r for r in csv.DictReader(f)}
    with open(SAMPLES / "labels.csv", newline="") as f:
        labels = Counter(r["file"] for r in csv.DictReader(f))
    for rel, row in rows.items():
        path = SAMPLES / rel.split("/")[-1]
        assert hashlib.md5(path.read_bytes()).hexdigest() == row["md5"] and path.stat().st_size == int(row["bytes"])
        assert labels[rel] == int(row["frames_with_box"])  # the dataset's rows of this clip, all of them
    assert sum(p.stat().st_size for p in SAMPLES.glob("*.mp4")) < 2_000_000
    ignored = subprocess.run(["git", "check-ignore", *(str(p) for p in SAMPLES.iterdir())], cwd=ROOT,
                             capture_output=True, text=True)
    assert ignored.returncode == 1 and not ignored.stdout, f"samples/ must not be git-ignored: {ignored.stdout}"


def test_the_closing_counts_are_explained_in_words():
    import json

    from alerting.testing import Received
    from deploy.local.demo import counts_explained

    report = make_report()
    report.notifications = [Received("POST", "/webhook", {}, json.dumps({"event": e}).encode(), 0.0, 200)
                            for e in ("firing", "firing", "resolved")] + [Received("POST", "/twilio", {}, b"", 0.0, 200)]
    out = io.StringIO()
    Console(file=out, width=200).print(counts_explained(report, 28, 0))
    text = " ".join(out.getvalue().split())
    assert "28 + 0 score summaries" in text and "heartbeats" in text
    assert "3 alert events" in text and "2 firing, 1 resolved" in text
    assert "3 webhook, 0 Slack" in text and "1 SMS" in text and "only critical alerts" in text
    assert "firing webhooks only" in text
