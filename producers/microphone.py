"""Microphone producer: overlapping PCM windows onto ``sensor.audio``.

Sources: a live input device (sounddevice/PortAudio), a WAV/FLAC file replayed in real
time or as fast as possible, or the synthetic rotor-over-noise generator. Whatever the
source's rate and channels, windows go out as 16 kHz mono s16le (``window_s`` long, one
every ``hop_s``), keyed by microphone id, CloudEvents binary mode. Windows are kept while
the broker is away (see :mod:`producers.publisher`).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import time
import zlib
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from producers.publisher import BufferedPublisher
from skysentry.bus import make_producer
from skysentry.config import KafkaSettings, MicrophoneSettings, TopicSettings
from skysentry.messages import AudioEvent, encode_audio

log = logging.getLogger(__name__)


class AudioSourceError(RuntimeError):
    """The audio source cannot be used; the message says what to do."""


# --------------------------------------------------------------------------------------------
# Signal helpers
# --------------------------------------------------------------------------------------------


def to_mono_float(block: np.ndarray) -> np.ndarray:
    """int16/float any-channel block → float32 mono in [-1, 1]."""
    x = block.astype(np.float32)
    if block.dtype == np.int16:
        x /= 32768.0
    return x.mean(axis=1) if x.ndim == 2 else x


def resample(x: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Band-limited resampling by FFT (exact length ``len(x) * dst / src``).

    Windows are short (≈1 s), so a per-window FFT is cheap and has no streaming state."""
    if src_rate == dst_rate:
        return x
    n_out = int(round(len(x) * dst_rate / src_rate))
    spectrum = np.fft.rfft(x)
    keep = n_out // 2 + 1
    out_spec = np.zeros(keep, dtype=np.complex64)
    m = min(keep, len(spectrum))
    out_spec[:m] = spectrum[:m]
    return np.fft.irfft(out_spec, n_out).astype(np.float32) * (n_out / len(x))


def to_pcm16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32767.0), -32768, 32767).astype(np.int16)


class Windower:
    """Cuts a stream of mono float blocks at ``rate`` into windows of ``window_s`` every
    ``hop_s``, each resampled to ``out_rate`` and stamped with its first sample's time."""

    def __init__(self, rate: int, window_s: float, hop_s: float, out_rate: int, start: datetime) -> None:
        if hop_s <= 0 or window_s <= 0:
            raise ValueError("window_s and hop_s must be positive")
        self.rate, self.out_rate = rate, out_rate
        self.win = int(round(window_s * rate))
        self.hop = int(round(hop_s * rate))
        self.out_len = int(round(window_s * out_rate))
        self.start = start
        self._buf = np.zeros(0, dtype=np.float32)
        self._consumed = 0  # samples dropped from the front of _buf so far

    def push(self, block: np.ndarray) -> list[tuple[datetime, np.ndarray]]:
        self._buf = np.concatenate([self._buf, block])
        out = []
        while len(self._buf) >= self.win:
            window = resample(self._buf[: self.win], self.rate, self.out_rate)[: self.out_len]
            when = self.start + timedelta(seconds=self._consumed / self.rate)
            out.append((when, to_pcm16(window)))
            self._buf = self._buf[self.hop:]
            self._consumed += self.hop
        return out


# --------------------------------------------------------------------------------------------
# Sources: each yields (rate, block) with blocks of mono float32, paced as configured
# --------------------------------------------------------------------------------------------


def load_sounddevice():
    """Import sounddevice with an actionable error when PortAudio is missing."""
    try:
        import sounddevice as sd
    except OSError as exc:  # raised at import when libportaudio is not installed
        raise AudioSourceError(f"PortAudio is missing ({exc}); install it: sudo apt-get install libportaudio2") from None
    return sd


def find_input_device(sd, wanted: str) -> tuple[int | str | None, int]:
    """Resolve ``default``/index/name to a device with input channels; return (device, rate)."""
    try:
        devices = sd.query_devices()
    except Exception as exc:
        raise AudioSourceError(f"cannot list audio devices: {exc}") from None
    inputs = [(i, d) for i, d in enumerate(devices) if d.get("max_input_channels", 0) > 0]
    if not inputs:
        raise AudioSourceError("no audio input device found (is a microphone connected? `python -m sounddevice` "
                               "lists devices); use --source FILE.wav or --source synthetic instead")
    if wanted == "default":
        try:
            info = sd.query_devices(kind="input")
            return None, int(info["default_samplerate"])
        except Exception:
            i, d = inputs[0]
            return i, int(d["default_samplerate"])
    for i, d in inputs:
        if wanted == str(i) or wanted.lower() in d["name"].lower():
            return i, int(d["default_samplerate"])
    names = ", ".join(f"{i}: {d['name']}" for i, d in inputs)
    raise AudioSourceError(f"no input device matches {wanted!r}; inputs are: {names}")


async def device_blocks(sd, dev: int | str | None, rate: int, stop: asyncio.Event
                        ) -> AsyncIterator[tuple[int, np.ndarray]]:
    blocks: queue.Queue[np.ndarray] = queue.Queue(maxsize=1000)

    def callback(indata, frames, time_info, status):  # PortAudio thread
        if status:
            log.warning("audio input status: %s", status)
        try:
            blocks.put_nowait(indata.copy())
        except queue.Full:
            log.warning("audio block dropped: consumer is behind")

    with sd.InputStream(device=dev, samplerate=rate, channels=1, dtype="float32", callback=callback,
                        blocksize=int(rate * 0.1)):
        while not stop.is_set():
            try:
                block = await asyncio.to_thread(blocks.get, True, 0.5)
            except queue.Empty:
                continue
            yield rate, to_mono_float(block)


async def paced(blocks, rate: int, realtime: bool, stop: asyncio.Event) -> AsyncIterator[tuple[int, np.ndarray]]:
    """Release blocks no faster than the wall clock when ``realtime``."""
    t0, sent = time.monotonic(), 0
    for block in blocks:
        if stop.is_set():
            return
        if realtime:
            due = t0 + sent / rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
        else:
            await asyncio.sleep(0)
        sent += len(block)
        yield rate, block


def file_blocks(path: Path, loop: bool, block_s: float = 0.1):
    import soundfile as sf

    if not path.is_file():
        raise AudioSourceError(f"audio file {path} does not exist")
    try:
        info = sf.info(str(path))
    except Exception as exc:
        raise AudioSourceError(f"cannot read {path} as audio ({exc}); WAV and FLAC are supported") from None
    rate = info.samplerate

    def gen():
        while True:
            for block in sf.blocks(str(path), blocksize=int(rate * block_s), dtype="float32", always_2d=True):
                yield to_mono_float(block)
            if not loop:
                return

    return rate, gen()


def synthetic_blocks(mic_id: str, snr_db: float, loop: bool, chunk_s: float = 30.0, block_s: float = 0.1):
    from skysentry.synthetic import synthetic_audio

    rate, seed = 16_000, zlib.crc32(mic_id.encode()) % 1000

    def gen():
        n = 0
        while True:
            audio = synthetic_audio(chunk_s, sample_rate=rate, snr_db=snr_db, seed=seed + n)
            x = audio.pcm.astype(np.float32) / 32768.0
            step = int(rate * block_s)
            for i in range(0, len(x), step):
                yield x[i:i + step]
            n += 1
            if not loop and n >= 1:
                return

    return rate, gen()


# --------------------------------------------------------------------------------------------


class MicrophoneProducer:
    """One microphone → ``sensor.audio``. ``run(stop)`` until stopped or a file ends."""

    def __init__(self, mic: MicrophoneSettings, kafka: KafkaSettings, topics: TopicSettings,
                 *, max_windows: int | None = None) -> None:
        self.cfg = mic
        self.kafka = kafka
        self.topic = topics.audio
        self.max_windows = max_windows
        self.seq = 0
        self.publisher: BufferedPublisher | None = None

    def _blocks(self, stop: asyncio.Event) -> AsyncIterator[tuple[int, np.ndarray]]:
        src = self.cfg.source
        if src == "synthetic":
            rate, gen = synthetic_blocks(self.cfg.mic_id, self.cfg.snr_db, self.cfg.loop or self.max_windows is None)
            return paced(gen, rate, self.cfg.realtime, stop)
        if src == "default" or src.isdigit() or src.startswith("device:"):
            sd = load_sounddevice()
            dev, rate = find_input_device(sd, src.removeprefix("device:"))  # fail now, not mid-stream
            return device_blocks(sd, dev, rate, stop)
        rate, gen = file_blocks(Path(src), self.cfg.loop)
        return paced(gen, rate, self.cfg.realtime, stop)

    async def run(self, stop: asyncio.Event) -> None:
        blocks = self._blocks(stop)  # raises AudioSourceError early for a bad source
        self.publisher = BufferedPublisher(lambda: make_producer(self.kafka), self.topic, capacity=self.cfg.buffer_windows, retry_failed=True)
        await self.publisher.start()
        sender = asyncio.create_task(self.publisher.run())
        windower: Windower | None = None
        log.info("microphone %s → %s (%s)", self.cfg.mic_id, self.topic, self.cfg.source)
        try:
            async for rate, block in blocks:
                if windower is None:
                    windower = Windower(rate, self.cfg.window_s, self.cfg.hop_s, self.cfg.sample_rate,
                                        datetime.now(timezone.utc))
                for when, pcm in windower.push(block):
                    event = AudioEvent(source=self.cfg.mic_id, site=self.cfg.site, time=when, seq=self.seq,
                                       samplerate=self.cfg.sample_rate, samples=len(pcm))
                    self.publisher.offer(*encode_audio(event, pcm))
                    self.seq += 1
                    if self.max_windows is not None and self.seq >= self.max_windows:
                        return
                if stop.is_set():
                    return
        finally:
            self.publisher.close()
            try:
                await asyncio.wait_for(sender, timeout=max(5.0, self.kafka.request_timeout_ms / 1000))
            except asyncio.TimeoutError:
                self.publisher.close(give_up=True)
                await sender
            await self.publisher.stop()
            s = self.publisher.stats
            log.info("microphone %s stopped: %d windows offered, %d published, %d dropped",
                     self.cfg.mic_id, s.offered, s.published, s.dropped)
