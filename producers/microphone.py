"""Microphone producer: overlapping PCM windows onto ``sensor.audio``.

Sources: a live input device (sounddevice/PortAudio), a WAV/FLAC file replayed in real
time or as fast as possible, or the synthetic rotor-over-noise generator. Whatever the
source's rate and channels, windows go out as 16 kHz mono s16le (``window_s`` long, one
every ``hop_s``), keyed by microphone id, CloudEvents binary mode. Windows are kept while
the broker is away (see :mod:`producers.publisher`).

A live device is watched (:class:`LiveInput`): when its stream ends (the device unplugged,
the audio server gone), its callbacks stop (``stall_s``) or PortAudio fails, the source is
marked down or stale (one log line, :mod:`producers.health`), and the device is reopened with
capped back-off, PortAudio re-initialised each time so a restarted server or a re-plugged
microphone is found. Windows resume stamped from the wall clock: a gap is never audio.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import re
import threading
import time
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
from prometheus_client import Counter
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential, wait_random

from producers.health import SourceHealth, SourceState
from producers.publisher import BufferedPublisher
from skysentry.bus import make_producer
from skysentry.config import KafkaSettings, MicrophoneSettings, TopicSettings
from skysentry.logs import kv
from skysentry.messages import AudioEvent, encode_audio

log = logging.getLogger(__name__)

RECONNECTS = Counter("skysentry_microphone_reconnects_total",
                     "Times a lost live input device was reopened and delivered audio again", ["mic"])


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


def reinitialize_portaudio(sd) -> None:
    """Terminate and re-initialise PortAudio so that it lists the devices there are *now*.

    PortAudio reads the device list once, at initialisation: a PulseAudio server that
    restarted, or a USB microphone plugged back in, is invisible to it until then. Only call
    this with no stream of this process open (termination closes them)."""
    if getattr(sd, "_initialized", 1) > 0:
        try:
            sd._terminate()
        except Exception as exc:  # not initialised after all: initialising is what we want anyway
            log.debug("PortAudio terminate: %s", exc)
    try:
        sd._initialize()
    except Exception as exc:
        raise AudioSourceError(f"cannot initialise PortAudio: {exc}") from None


@dataclass(frozen=True, slots=True)
class Resume:
    """Yielded by a live source in place of a block: the blocks that follow are a new stretch
    of audio whose first sample was taken at ``when`` (wall clock), not continuous with what
    came before (the device was lost and reopened). The producer starts a new Windower there,
    so the gap is never stamped as if it had been audio."""

    when: datetime


class _Lost(Exception):
    """The live stream failed or could not be (re)opened; ``state`` and ``cause`` say how."""

    def __init__(self, state: SourceState, cause: str) -> None:
        super().__init__(cause)
        self.state, self.cause = state, cause


_HW_CARD = re.compile(r"\(hw:(\d+),\d+\)")
_WARN_FLAGS = ("input_overflow", "input_underflow")


class LiveInput:
    """A live input device that is watched and reopened (``blocks()`` yields until ``stop``).

    A failure is any of: the stream is no longer active (PortAudio stopped it: the device or
    the audio server went away, or the callback failed), no block for ``stall_s`` (callbacks
    stopped: stale), the stream's ALSA card gone from the card list (unplugged), PortAudio
    raising. Each failure is one line from :class:`producers.health.SourceHealth`; the stream is
    closed, PortAudio re-initialised (to see the device list as it is now) and the device
    (resolved again by what the operator asked for: a reopened device may get another index)
    reopened with capped exponential back-off and jitter, forever unless ``reconnect`` is off.
    """

    def __init__(self, sd, wanted: str, cfg: MicrophoneSettings, health: SourceHealth, stop: asyncio.Event) -> None:
        self.sd, self.wanted, self.cfg, self.health, self.stop = sd, wanted, cfg, health, stop
        health.watch()  # /readyz: ready only while the device delivers
        self.stream = None
        self.rate = 0
        self.reopens = 0
        self._card: str | None = None
        self._q: queue.Queue | None = None
        self._flags: set[str] = set()  # status flags the callback saw, reported once per stream
        self._flags_lock = threading.Lock()

    # -- PortAudio side (blocking: run in a thread) --------------------------------------
    def _open(self) -> None:
        reinitialize_portaudio(self.sd)
        try:
            dev, rate = find_input_device(self.sd, self.wanted)
        except AudioSourceError as exc:
            raise _Lost(SourceState.DOWN, str(exc)) from None
        q: queue.Queue = queue.Queue(maxsize=1000)
        with self._flags_lock:
            self._flags = set()

        def callback(indata, frames, time_info, status):  # PortAudio thread: no logging here
            if status:
                with self._flags_lock:
                    self._flags.update(f for f in _WARN_FLAGS if getattr(status, f, False))
            try:
                q.put_nowait((time.time(), indata.copy()))
            except queue.Full:
                with self._flags_lock:
                    self._flags.add("dropped: consumer is behind")

        try:
            stream = self.sd.InputStream(device=dev, samplerate=rate, channels=1, dtype="float32",
                                         callback=callback, blocksize=int(rate * 0.1))
            stream.start()
        except Exception as exc:
            raise _Lost(SourceState.DOWN, f"cannot open input device {self.wanted!r}: {exc}") from None
        name = self.sd.query_devices(stream.device)["name"] if isinstance(stream.device, int) else str(stream.device)
        card = _HW_CARD.search(name)
        self.stream, self.rate, self._q = stream, rate, q
        self._card = card.group(1) if card else None
        if self.stop.is_set():  # given up on while this thread was blocked: nobody reads it
            self._close()

    def _close(self) -> None:
        stream, self.stream = self.stream, None
        if stream is not None:
            try:
                stream.close(ignore_errors=True)
            except Exception as exc:  # a dead stream may refuse even that; it is dropped anyway
                log.debug("closing the audio stream: %s", exc)

    def _health_check(self, last_block: float, first: bool) -> None:
        """Raise _Lost when the open stream has failed."""
        try:
            active = self.stream.active
        except Exception as exc:
            raise _Lost(SourceState.DOWN, f"the audio stream failed: {exc}") from None
        if not active:
            raise _Lost(SourceState.DOWN, f"the input stream of {self.wanted!r} stopped (PortAudio ended it: the "
                                          "device or the audio server went away)")
        if self._card is not None and not Path(f"/proc/asound/card{self._card}").exists():
            raise _Lost(SourceState.DOWN, f"the device was removed (ALSA card {self._card} is gone)")
        limit = self.cfg.start_timeout_s if first else self.cfg.stall_s
        if time.monotonic() - last_block > limit:
            what = "no audio since the stream was opened" if first else "no audio"
            raise _Lost(SourceState.STALE, f"{what} for {limit:g} s: the input callbacks stopped")

    # -- asyncio side --------------------------------------------------------------------
    async def _call(self, fn, *, timeout_s: float | None = None):
        """``fn()`` in a daemon thread: opening or closing a stream on a frozen audio server can
        block for long, and neither stopping the producer nor the interpreter's exit may wait
        for it (the default executor's threads are joined at exit). Waits until ``stop`` (None
        then) or ``timeout_s`` (closing at the end, when ``stop`` is already set)."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future = loop.create_future()

        def settle(result, error) -> None:
            if not done.done():
                done.set_exception(error) if error is not None else done.set_result(result)

        def work() -> None:
            try:
                result, error = fn(), None
            except BaseException as exc:  # handed to the awaiting task
                result, error = None, exc
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
                loop.call_soon_threadsafe(settle, result, error)

        threading.Thread(target=work, name=f"portaudio-{self.health.source_id}", daemon=True).start()
        if timeout_s is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                return await asyncio.wait_for(asyncio.shield(done), timeout_s)
            log.warning("PortAudio did not answer within %g s; left behind", timeout_s,
                        extra=kv(source=self.health.source_id))
            return None
        stopped = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait({done, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        return done.result() if done.done() else None

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)

    async def _reopen(self) -> bool:
        """Open (again) until it works; False when stopped first."""
        jitter = min(self.cfg.reconnect_initial_s, self.cfg.reconnect_max_s / 4)
        retrying = AsyncRetrying(
            wait=wait_exponential(multiplier=self.cfg.reconnect_initial_s,
                                  max=max(self.cfg.reconnect_max_s - jitter, self.cfg.reconnect_initial_s))
            + wait_random(0, jitter),
            retry=retry_if_exception_type(_Lost), sleep=self._sleep, reraise=True)
        async for attempt in retrying:
            with attempt:
                if self.stop.is_set():
                    return False
                try:
                    await self._call(self._open)
                    if self.stream is None:  # stopped while opening
                        return False
                except _Lost as lost:
                    if not self.cfg.reconnect:
                        raise AudioSourceError(f"microphone {self.health.source_id}: {lost.cause}") from None
                    if self.health.state != SourceState.DOWN:  # one line says why, not one per try
                        self.health.set(lost.state, lost.cause)
                    log.debug("reopening %r failed (attempt %d): %s", self.wanted, attempt.retry_state.attempt_number,
                              lost.cause, extra=kv(source=self.health.source_id))
                    raise
        return True

    async def blocks(self) -> AsyncIterator[tuple[int, np.ndarray | Resume]]:
        poll = max(0.05, min(0.25, self.cfg.stall_s / 4))
        try:
            while not self.stop.is_set():
                if not await self._reopen():
                    return
                first, last_block, told = True, time.monotonic(), set()
                try:
                    while not self.stop.is_set():
                        try:
                            stamp, block = await asyncio.to_thread(self._q.get, True, poll)
                        except queue.Empty:
                            await asyncio.to_thread(self._health_check, last_block, first)
                            continue
                        if first:
                            yield self.rate, Resume(datetime.fromtimestamp(stamp - len(block) / self.rate, timezone.utc))
                            first = False
                        last_block = time.monotonic()
                        if self.health.set(SourceState.LIVE) and self.reopens:
                            RECONNECTS.labels(self.health.source_id).inc()
                        with self._flags_lock:
                            new = self._flags - told
                        if new:  # once per kind and stream, not once per block
                            log.warning("audio input %r: %s", self.wanted, ", ".join(sorted(new)),
                                        extra=kv(source=self.health.source_id))
                            told |= new
                        yield self.rate, to_mono_float(block)
                except _Lost as lost:
                    self.health.set(lost.state, lost.cause)
                    await self._call(self._close)
                    if not self.cfg.reconnect:
                        raise AudioSourceError(f"microphone {self.health.source_id}: {lost.cause}") from None
                    self.reopens += 1
        finally:
            await self._call(self._close, timeout_s=5.0)


def device_blocks(sd, wanted: str, cfg: MicrophoneSettings, health: SourceHealth, stop: asyncio.Event
                  ) -> AsyncIterator[tuple[int, np.ndarray | Resume]]:
    """Blocks of the live input ``wanted`` (``default``, an index or a name), watched and
    reopened as :class:`LiveInput` says; a :class:`Resume` precedes each stretch of audio."""
    return LiveInput(sd, wanted, cfg, health, stop).blocks()


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
        # live devices only: live, stale (open but silent) or down (being reopened)
        self.health = SourceHealth("microphone", mic.mic_id)

    def _blocks(self, stop: asyncio.Event) -> AsyncIterator[tuple[int, np.ndarray]]:
        src = self.cfg.source
        if src == "synthetic":
            rate, gen = synthetic_blocks(self.cfg.mic_id, self.cfg.snr_db, self.cfg.loop or self.max_windows is None)
            return paced(gen, rate, self.cfg.realtime, stop)
        if src == "default" or src.isdigit() or src.startswith("device:"):
            sd = load_sounddevice()
            wanted = src.removeprefix("device:")
            if not self.cfg.reconnect:  # one-shot: fail now, not mid-stream (else: down, and reopened)
                reinitialize_portaudio(sd)  # the devices there are now, not when sounddevice was imported
                find_input_device(sd, wanted)
            return device_blocks(sd, wanted, self.cfg, self.health, stop)
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
                if isinstance(block, Resume):  # a live device (re)opened: windows restart there
                    windower = Windower(rate, self.cfg.window_s, self.cfg.hop_s, self.cfg.sample_rate, block.when)
                    continue
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
            with contextlib.suppress(Exception):
                await blocks.aclose()  # closes a live stream now, not when garbage-collected
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
