"""Bad input gets a clear error, never a traceback (the issue's 'clear errors' list)."""

import subprocess
import sys

import pytest

from producers.camera import SourceSpec, SourceUnavailable, open_capture
from producers.microphone import AudioSourceError, MicrophoneProducer, find_input_device
from skysentry.config import KafkaSettings, MicrophoneSettings, TopicSettings


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "skysentry.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_missing_video_file_is_a_clear_error(tmp_path):
    with pytest.raises(SourceUnavailable, match="does not exist"):
        open_capture(SourceSpec.parse(str(tmp_path / "nope.mp4")))
    out = run_cli("camera", "--source", str(tmp_path / "nope.mp4"), "--bootstrap", "127.0.0.1:1")
    assert out.returncode == 2
    assert "does not exist" in out.stderr and "Traceback" not in out.stderr


def test_unreachable_url_is_a_clear_error():
    with pytest.raises(SourceUnavailable, match="cannot open camera source rtsp://127.0.0.1:1/cam"):
        open_capture(SourceSpec.parse("rtsp://127.0.0.1:1/cam"), open_timeout_s=2)


def test_url_credentials_never_reach_the_error():
    with pytest.raises(SourceUnavailable) as err:
        open_capture(SourceSpec.parse("rtsp://admin:s3cret@127.0.0.1:1/cam"), open_timeout_s=2)
    assert "s3cret" not in str(err.value)


def test_missing_audio_file_and_non_audio_file(tmp_path):
    settings = KafkaSettings(), TopicSettings()
    with pytest.raises(AudioSourceError, match="does not exist"):
        MicrophoneProducer(MicrophoneSettings(source=str(tmp_path / "x.wav")), *settings)._blocks(None)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"definitely not audio")
    with pytest.raises(AudioSourceError, match="cannot read"):
        MicrophoneProducer(MicrophoneSettings(source=str(junk)), *settings)._blocks(None)


class NoInputs:
    """A PortAudio host with only an output device (what a headless server reports)."""

    @staticmethod
    def query_devices(kind=None):
        return [{"name": "HDMI out", "max_input_channels": 0, "max_output_channels": 2, "default_samplerate": 48000}]


def test_no_audio_device_is_a_clear_error():
    with pytest.raises(AudioSourceError, match="no audio input device found"):
        find_input_device(NoInputs, "default")


def test_unknown_device_name_lists_the_inputs():
    class OneMic(NoInputs):
        @staticmethod
        def query_devices(kind=None):
            return [{"name": "USB mic", "max_input_channels": 1, "default_samplerate": 44100}]
    with pytest.raises(AudioSourceError, match="0: USB mic"):
        find_input_device(OneMic, "webcam")
    assert find_input_device(OneMic, "usb") == (0, 44100)


def test_no_broker_at_start_is_a_clear_error():
    out = run_cli("camera", "--source", "synthetic", "--max-frames", "1", "--bootstrap", "127.0.0.1:1")
    assert out.returncode == 2, out.stderr
    assert "not reachable" in out.stderr and "skysentry stack up" in out.stderr
    assert "Traceback" not in out.stderr


def test_tail_prints_headers_and_decoded_payload(stack, tmp_path):
    import json

    wav = tmp_path / "a.wav"
    from skysentry.synthetic import synthetic_audio
    synthetic_audio(2.0, seed=1).write(wav)
    topic = f"t.tail.{tmp_path.name[-8:]}"
    env_args = ("--bootstrap", stack.bootstrap_servers)
    import os
    env = os.environ | {"SKYSENTRY_TOPICS__AUDIO": topic}
    produced = subprocess.run([sys.executable, "-m", "skysentry.cli", "mic", "--source", str(wav), "--fast",
                               "--id", "mic-tail", *env_args], env=env, capture_output=True, text=True, timeout=60)
    assert produced.returncode == 0, produced.stderr
    out = subprocess.run([sys.executable, "-m", "skysentry.cli", "tail", topic, "--max", "3", "--json",
                          "--from-beginning", *env_args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert len(rows) == 3
    assert rows[0]["key"] == "mic-tail" and rows[0]["headers"]["ce_type"] == "skysentry.audio.v1"
    assert rows[0]["payload"]["samples"] == 16000 and rows[0]["payload"]["rms_dbfs"] < 0
