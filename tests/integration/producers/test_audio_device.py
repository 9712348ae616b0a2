"""A live microphone whose audio server dies and comes back (issue 17 item 4).

Real servers only: a user-mode PulseAudio from deploy/local/pulse.py (null sink, its monitor
the default source, a drone recording played into it with paplay in a loop), PortAudio
reaching it through ALSA's pulse plugin, and the session's Kafka broker.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from deploy.local import pulse
from producers.health import SourceHealth, SourceState
from producers.microphone import AudioSourceError, MicrophoneProducer, device_blocks, load_sounddevice
from skysentry.config import KafkaSettings, MicrophoneSettings, TopicSettings
from skysentry.messages import decode_audio

from .conftest import consume_all

REPO = Path(__file__).resolve().parents[3]
# A real drone recording (CC0, ddd_audio), loud enough to hear on the monitor; the synthetic
# rotor sound where the shared data is not there.
RECORDING = REPO.parent / "shared" / "data" / "ddd_audio" / "drone" / "DRONE_014.wav"

pytestmark = pytest.mark.skipif(not (shutil.which("pulseaudio") and shutil.which("paplay")),
                                reason="needs pulseaudio and paplay (apt-get install pulseaudio pulseaudio-utils "
                                "libasound2-plugins)")


@pytest.fixture
def wav(tmp_path: Path) -> Path:
    if RECORDING.is_file():
        return RECORDING
    from skysentry.synthetic import synthetic_audio

    audio = synthetic_audio(10.0, sample_rate=16_000, snr_db=10.0, seed=1)
    path = tmp_path / "rotor.wav"
    sf.write(path, audio.pcm, 16_000, subtype="PCM_16")
    return path


@pytest.fixture
def pulse_server(wav: Path, monkeypatch: pytest.MonkeyPatch):
    """A PulseAudio server playing ``wav`` on its default source; this process's PortAudio is
    pointed at it through PULSE_SERVER (the socket path must be short: a temp dir in /tmp)."""
    base = Path(tempfile.mkdtemp(prefix="sky-pa-", dir="/tmp"))
    server = pulse.start(base)
    monkeypatch.setenv("PULSE_SERVER", server.address)
    pulse.play_loop(server, wav)
    try:
        yield server
    finally:
        pulse.stop(server)
        shutil.rmtree(base, ignore_errors=True)


def _source_warnings(caplog: pytest.LogCaptureFixture, mic_id: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and r.name == "producers.health" and mic_id in r.getMessage()]


async def _until(predicate, timeout_s: float, step_s: float = 0.05) -> float:
    """Seconds until ``predicate()`` held; fails after ``timeout_s``."""
    t0 = time.monotonic()
    while not predicate():
        assert time.monotonic() - t0 < timeout_s, f"not within {timeout_s} s"
        await asyncio.sleep(step_s)
    return time.monotonic() - t0



def _ready_line(producer) -> str:
    """The producer's line in /readyz (skysentry.metrics.HEALTH) for its device."""
    from skysentry.metrics import HEALTH

    return next(line for line in HEALTH.readiness()[1] if producer.health.condition in line)

async def test_microphone_survives_the_audio_server_dying_and_coming_back(pulse_server, kafka, topics, caplog):
    caplog.set_level(logging.INFO)
    cfg = MicrophoneSettings(source="default", mic_id="mic-pulse", window_s=1.0, hop_s=0.5, stall_s=1.0,
                             reconnect_initial_s=0.2, reconnect_max_s=1.0)
    producer = MicrophoneProducer(cfg, kafka, topics)
    stop = asyncio.Event()
    task = asyncio.create_task(producer.run(stop))
    try:
        await _until(lambda: producer.seq >= 3, 15)
        assert producer.health.state == SourceState.LIVE
        assert _source_warnings(caplog, "mic-pulse") == []

        t_kill = time.time()
        pulse.kill(pulse_server)
        await _until(lambda: producer.health.state != SourceState.LIVE, 5)
        down_at = producer.seq
        await asyncio.sleep(3.0)  # reopen tries fail meanwhile (back-off up to 1 s)
        assert not task.done(), "the microphone producer died with the audio server"
        assert producer.health.state == SourceState.DOWN
        assert _ready_line(producer).startswith("fail "), "/readyz must fail while the device is lost"
        assert producer.seq == down_at, "windows were produced while the audio server was dead"
        warnings = _source_warnings(caplog, "mic-pulse")
        assert len(warnings) == 1, warnings  # one line for the loss, none per retry
        assert "down" in warnings[0] and "stream of 'default' stopped" in warnings[0]

        t_restart = time.time()
        await asyncio.to_thread(pulse.restart, pulse_server)  # the paplay loop reconnects by itself
        resumed_s = await _until(lambda: producer.seq > down_at, 10)
        assert producer.health.state == SourceState.LIVE
        assert _ready_line(producer).startswith("ok ")
        print(f"first window {resumed_s:.2f} s after the audio server restarted")
        assert resumed_s < 6.0
        await _until(lambda: producer.seq >= down_at + 3, 5)
        assert len(_source_warnings(caplog, "mic-pulse")) == 1
        assert any("live again" in r.getMessage() for r in caplog.records if r.name == "producers.health")
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)

    published = producer.publisher.stats.published
    assert published == producer.seq
    records = await consume_all(kafka, topics.audio, published, timeout_s=20)
    assert len(records) == published
    windows = [decode_audio(r.value, r.headers) for r in records]
    assert [e.seq for e, _ in windows] == list(range(published))
    before = [e for e, _ in windows if e.seq < down_at]
    after = [e for e, _ in windows if e.seq >= down_at]
    # Nothing was stamped inside the dead time: windows before end by the kill, the ones after
    # start after the restart (a Windower carried across the gap would stamp them seconds early).
    for e in before:
        assert e.time.timestamp() + cfg.window_s <= t_kill + 0.5, (e.seq, e.time, t_kill)
    for e in after:
        assert e.time.timestamp() >= t_restart, (e.seq, e.time, t_restart)
    # ...and evenly spaced by the hop within each stretch
    for stretch in (before, after):
        gaps = np.diff([e.time.timestamp() for e in stretch])
        assert np.allclose(gaps, cfg.hop_s, atol=1e-3), gaps
    # the monitor carried the recording, not silence
    loudness = [float(np.sqrt(np.mean((pcm.astype(np.float32) / 32768) ** 2))) for _, pcm in windows]
    assert np.median(loudness) > 1e-3, loudness


async def test_one_shot_microphone_fails_when_the_device_is_gone(pulse_server):
    """``reconnect=False``: the loss of the device ends the source with AudioSourceError (the
    CLI's exit 2), and an absent device is refused at start."""
    cfg = MicrophoneSettings(source="default", mic_id="mic-once", reconnect=False)
    stop = asyncio.Event()
    blocks = device_blocks(load_sounddevice(), "default", cfg, SourceHealth("microphone", "mic-once"), stop)
    got = 0
    with pytest.raises(AudioSourceError, match="mic-once: the input stream of 'default' stopped"):
        async for _rate, _block in blocks:
            got += 1
            if got == 3:
                pulse.kill(pulse_server)
            assert got < 200, "the stream went on after its server was killed"
    # no server at start: refused at once, before any Kafka connection
    with pytest.raises(AudioSourceError, match="no audio input device"):
        MicrophoneProducer(cfg, KafkaSettings(), TopicSettings())._blocks(stop)
