"""The sizing model's arithmetic (skysentry/capacity.py) against hand-checked small cases, the
reading of bench result files, and docs/capacity.md's table against the command's output."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from skysentry import capacity as cap
from skysentry.capacity import Figure, Measurements
from skysentry.cli import app

ROOT = Path(__file__).resolve().parents[3]


def measured(**over) -> Measurements:
    """Round numbers, so every expected value below can be checked by hand."""
    base = dict(jpeg_bytes=Figure(17_000.0, "t"), frame_size=(640, 512), vision_process_wps=Figure(15.0, "t"),
                vision_cpu_ms=Figure(60.0, "t"), audio_process_wps=Figure(600.0, "t"), audio_cpu_ms=Figure(1.0, "t"),
                vision_scaling=Figure(1.8, "t"), audio_scaling=Figure(1.5, "t"), broker_mb_s=Figure(100.0, "t"),
                alerting_dps=Figure(1_000.0, "t"))
    return Measurements(**(base | over))


@pytest.mark.parametrize("value, size", [(0, 1), (63, 1), (-64, 1), (64, 2), (8191, 2), (8192, 3), (32_000, 3)])
def test_varint_lengths_are_kafkas_zigzag_varints(value, size):
    assert cap.varint_len(value) == size


def test_kafka_record_bytes_by_hand():
    # attributes + ts delta + offset delta (3) + key (1 + 1) + value (1 + 3) + header count (1) = 10, + length 1
    assert cap.kafka_record_bytes(b"k", 3, []) == 11
    # one header "h" = "vv": 1 + 1 + 1 + 2 = 5 more
    assert cap.kafka_record_bytes(b"k", 3, [("h", b"vv")]) == 16
    # a 32,000-byte value needs a 3-byte length, and so does the record
    assert cap.kafka_record_bytes(b"", 32_000, []) == 3 + 1 + 3 + 32_000 + 1 + 3


def test_audio_record_is_the_pcm_plus_its_headers():
    # the headers of an audio window, written out by hand (docs/contracts.md): name and value lengths
    headers = [("ce_specversion", 3), ("ce_id", 36), ("ce_source", 8), ("ce_type", 18), ("ce_time", 27),
               ("content-type", len("audio/x-raw;format=S16LE;rate=16000;channels=1")), ("ce_site", 7),
               ("ce_seq", 7), ("ce_samplerate", 5), ("ce_samples", 5)]
    body = 3 + (1 + 8) + (3 + 32_000) + 1 + sum(1 + len(n) + 1 + v for n, v in headers)
    assert cap.audio_record_bytes() == body + 3
    assert cap.audio_windows_per_s() == 2.0  # 0.5 s hop
    # 64 kB/s of PCM per microphone, plus headers
    assert 64_000 < cap.audio_record_bytes() * cap.audio_windows_per_s() < 65_000


def test_frame_record_adds_the_same_overhead_whatever_the_jpeg():
    small, large = cap.frame_record_bytes(1_000), cap.frame_record_bytes(101_000)
    assert large - small == pytest.approx(100_000 + 2)  # the value's length varint grows from 2 to 3 bytes
    assert 200 < small - 1_000 < 320


def test_processes_cores_brokers_by_hand():
    assert cap.processes_needed(50, 15) == 4
    assert cap.processes_needed(45, 15) == 3  # exactly full
    assert cap.processes_needed(0, 15) == 0
    assert cap.processes_needed(10, None) is None
    assert cap.cores_needed(50, 60) == pytest.approx(3.0)
    assert cap.cores_needed(50, None) is None
    assert cap.brokers_needed(10, 3, 100) == 3  # the replication factor needs three
    assert cap.brokers_needed(100, 3, 100) == 3
    assert cap.brokers_needed(101, 3, 100) == 4
    assert cap.brokers_needed(10, 3, None) is None


def test_ten_cameras_and_microphones_fit_in_one_unit_of_everything():
    s = cap.size(10, 5.0, 10, measured())
    assert s.frames_per_s == 50 and s.audio_windows_per_s == 20
    assert s.vision_processes == 4 and s.vision_cores == 3.0
    assert s.audio_processes == 1 and s.audio_cores == 0.0  # 20 × 1 ms
    assert s.partitions_frames == 6 and s.partitions_audio == 6
    assert s.detections_worst_per_s == 70
    assert s.redis_commands_worst_per_s == 70 * 9 + 1 * 2
    frame_b = cap.frame_record_bytes(17_000)
    assert s.ingress_mb_s == pytest.approx(round((10 * 5 * frame_b + 10 * 2 * cap.audio_record_bytes()) / 1e6, 3))
    assert s.limits == [] and s.first_bottleneck == "none"
    assert s.gpus == cap.NOT_MEASURED


def test_a_thousand_cameras_exceed_partitions_first_then_alerting_then_the_broker():
    s = cap.size(1_000, 5.0, 0, measured(), replication_factor=3)
    assert s.vision_processes == 334  # 5,000 frames/s ÷ 15
    assert [w for w, _, _ in s.limits] == ["partitions", "alerting", "broker"]
    loads = {w: x for w, x, _ in s.limits}
    assert loads["partitions"] == pytest.approx(334 / 6)
    assert loads["alerting"] == pytest.approx(5.0)
    ingress = 5_000 * cap.frame_record_bytes(17_000) / 1e6
    assert loads["broker"] == pytest.approx(ingress * 3 / 100)
    assert s.brokers == math.ceil(ingress * 3 / 100)
    assert s.first_bottleneck == "partitions"


def test_unmeasured_figures_are_reported_not_guessed():
    s = cap.size(10, 5.0, 4, measured(audio_process_wps=Figure(None, cap.NOT_MEASURED),
                                      audio_cpu_ms=Figure(None, cap.NOT_MEASURED)))
    assert s.audio_processes is None and s.audio_cores is None
    assert s.gpus == cap.NOT_MEASURED
    s = cap.size(100, 5.0, 0, measured(gpu_vision_wps=Figure(200.0, "a GPU result")))
    assert s.gpus == "3"  # 500 frames/s ÷ 200
    with pytest.raises(ValueError):
        cap.size(1, 5.0, 0, measured(jpeg_bytes=Figure(None, cap.NOT_MEASURED)))


def test_measurements_come_from_the_result_files(tmp_path):
    (tmp_path / "scale.json").write_text(json.dumps({
        "vision": {"payload_bytes_mean": 12_345.0, "input": "frames (800x600)",
                   "one_process_windows_per_s": {"median": 11.0}, "cpu_ms_per_window": {"one_process": 70.0},
                   "scaling": {"median": 1.7}},
        "meta": {"at": "then", "cpus": 2}}))
    (tmp_path / "producer.json").write_text(json.dumps({"mb_per_s": 150.0, "at": "then"}))
    m = cap.load_measurements(tmp_path)
    assert m.jpeg_bytes.value == 12_345.0 and "scale.json" in m.jpeg_bytes.source
    assert m.frame_size == (800, 600)
    assert m.vision_process_wps.value == 11.0 and m.vision_cpu_ms.value == 70.0
    assert m.broker_mb_s.value == 150.0
    assert not m.audio_process_wps.measured and not m.alerting_dps.measured and not m.gpu_vision_wps.measured
    assert m.cpus == 2


def test_the_shipped_results_hold_every_cpu_figure():
    m = cap.load_measurements()
    for f in (m.jpeg_bytes, m.vision_process_wps, m.vision_cpu_ms, m.broker_mb_s, m.alerting_dps):
        assert f.measured and f.source.startswith("bench/results/"), f


def test_the_docs_table_is_the_commands_output():
    doc = (ROOT / "docs" / "capacity.md").read_text()
    block = re.search(r"<!-- capacity table: .*? -->\n(.*?)<!-- end of the capacity table -->", doc, re.S)
    assert block, "docs/capacity.md lost the markers of its generated table"
    out = CliRunner().invoke(app, ["capacity", "--table"])
    assert out.exit_code == 0, out.output
    assert block[1] == out.stdout, "docs/capacity.md's table drifted: regenerate it with `skysentry capacity --table`"


def test_the_command_sizes_ten_cameras():
    out = CliRunner().invoke(app, ["capacity", "--cameras", "10", "--fps", "5", "--mics", "10", "--json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.stdout)
    assert doc["cameras"] == 10 and doc["frames_per_s"] == 50 and doc["audio_windows_per_s"] == 20
    assert doc["redis_commands_per_detection"] == cap.REDIS_COMMANDS_PER_DETECTION
    assert any(f["figure"] == "vision on a GPU" and f["value"] == cap.NOT_MEASURED for f in doc["measurements"])
