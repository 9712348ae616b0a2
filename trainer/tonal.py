"""Synthetic *tonal* negatives: 1 s windows of sounds that are harmonic or buzzing like a
rotor but are not drones: sirens, engines, insects (buzz, crickets, cicadas), horns and
alarms, trains, household motors, helicopters (blade slap far below a small drone's
blade-pass frequency).

The false alarms of the audio model are such sounds (ESC-50 insects, siren, train, engine,
washing machine, helicopter), and the development set holds only a handful of each in its
training split. These generators widen that set. Each window is a random draw of one
source kind (numpy only, seeded, deterministic), over a little noise; level and colouring are
left to the trainer's augmentation.

What separates them from the synthetic rotor of :mod:`skysentry.synthetic`: no
four-rotor beating at an 80–300 Hz blade-pass fundamental with a broadband buzz riding on
it; instead sweeps (sirens), firing pulses at 15–90 Hz (engines), wingbeat AM or chirp
gating (insects), steady single-source partials (horns, alarms), rumble + clacks (trains),
slow blade slap (helicopters).
"""

from __future__ import annotations

import numpy as np

from skysentry.synthetic import fft_filter, slow_noise, unit_rms

SR = 16_000
N = 16_000
KINDS = ("siren", "engine", "insect_buzz", "cricket", "cicada", "tone", "train", "motor", "helicopter")


def _harmonics(f_inst: np.ndarray, amps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sum of harmonics of an instantaneous-frequency track (below 0.45·SR)."""
    phase = 2 * np.pi * np.cumsum(f_inst) / SR
    out = np.zeros(len(f_inst))
    top = float(f_inst.max())
    for h, a in enumerate(amps, start=1):
        if h * top >= 0.45 * SR:
            break
        out += a * np.sin(h * phase + rng.uniform(0, 2 * np.pi))
    return out


def siren(rng: np.random.Generator) -> np.ndarray:
    t = np.arange(N) / SR
    lo, hi = sorted(rng.uniform(450, 1900, 2))
    hi = max(hi, lo * 1.3)
    mode = rng.integers(0, 3)
    if mode == 0:  # wail: slow sweep, 2-8 s period
        u = 0.5 + 0.5 * np.sin(2 * np.pi * t / rng.uniform(2, 8) + rng.uniform(0, 2 * np.pi))
    elif mode == 1:  # yelp: fast sweep
        u = (t * rng.uniform(2, 7) + rng.uniform(0, 1)) % 1.0
    else:  # hi-lo
        u = (np.floor(t / rng.uniform(0.25, 0.7) + rng.integers(0, 2)) % 2).astype(float)
        u = np.convolve(u, np.ones(160) / 160, mode="same")
    f = lo + (hi - lo) * u
    f *= 1 + rng.uniform(-0.03, 0.03) * t  # doppler drift
    amps = np.arange(1, 8) ** -rng.uniform(0.8, 2.0)
    return _harmonics(f, amps, rng)


def engine(rng: np.random.Generator) -> np.ndarray:
    """Combustion engine: firing frequency 15-90 Hz, many harmonics, impulsive, rumbling."""
    f0 = rng.uniform(15, 90)
    f = f0 * (1 + rng.uniform(0.0, 0.08) * slow_noise(N, SR, rng.uniform(0.5, 2), rng))
    n_h = int(rng.integers(10, 60))
    amps = np.arange(1, n_h + 1) ** -rng.uniform(0.5, 1.5) * rng.uniform(0.3, 1.0, n_h)
    tonal = _harmonics(f, amps, rng)
    phase = np.cumsum(f) / SR
    pulses = (np.diff(np.floor(phase), prepend=0) > 0).astype(float)
    burst = fft_filter(np.convolve(pulses, np.exp(-np.arange(200) / rng.uniform(10, 60)), mode="same")
                       * rng.standard_normal(N), SR, lo=80, hi=rng.uniform(800, 4000))
    rumble = fft_filter(rng.standard_normal(N), SR, hi=rng.uniform(150, 500))
    return unit_rms(tonal) + rng.uniform(0.2, 1.0) * unit_rms(burst) + rng.uniform(0.1, 0.6) * unit_rms(rumble)


def insect_buzz(rng: np.random.Generator) -> np.ndarray:
    """Flies, bees, mosquitoes: a wingbeat fundamental (120-700 Hz) with rich harmonics, one
    source, irregular loudness as the insect moves."""
    f0 = rng.uniform(120, 700)
    f = f0 * (1 + rng.uniform(0.01, 0.08) * slow_noise(N, SR, rng.uniform(1, 6), rng))
    n_h = int(rng.integers(4, 25))
    amps = np.arange(1, n_h + 1) ** -rng.uniform(0.3, 1.3) * rng.uniform(0.4, 1.0, n_h)
    env = np.exp(rng.uniform(0.3, 1.5) * slow_noise(N, SR, rng.uniform(1, 5), rng))
    return _harmonics(f, amps, rng) * env


def cricket(rng: np.random.Generator) -> np.ndarray:
    """Crickets: a 2.5-8 kHz carrier, pulses at 15-70 Hz grouped into chirps (or a trill)."""
    t = np.arange(N) / SR
    fc = rng.uniform(2500, 8000 if rng.random() < 0.5 else 5000)
    pulse_rate = rng.uniform(15, 70)
    gate = (np.sin(2 * np.pi * pulse_rate * t + rng.uniform(0, 6.3)) > rng.uniform(-0.2, 0.5)).astype(float)
    if rng.random() < 0.6:  # chirps of several pulses
        chirp_rate = rng.uniform(1, 5)
        gate *= ((t * chirp_rate + rng.uniform(0, 1)) % 1.0) < rng.uniform(0.2, 0.6)
    gate = np.convolve(gate, np.hanning(48) / 24, mode="same")
    carrier = np.sin(2 * np.pi * fc * t) + rng.uniform(0, 0.3) * np.sin(4 * np.pi * fc * t)
    out = carrier * gate
    if rng.random() < 0.5:  # a chorus: a second, slightly detuned cricket
        fc2 = fc * rng.uniform(0.9, 1.1)
        g2 = (np.sin(2 * np.pi * pulse_rate * rng.uniform(0.8, 1.2) * t) > 0).astype(float)
        out = out + rng.uniform(0.2, 0.8) * np.sin(2 * np.pi * fc2 * t) * g2
    return out


def cicada(rng: np.random.Generator) -> np.ndarray:
    """Cicadas / buzzing insects in the distance: band noise at 3-9 kHz, AM at 50-400 Hz."""
    t = np.arange(N) / SR
    fc = rng.uniform(3000, 7500)
    band = fft_filter(rng.standard_normal(N), SR, lo=fc * 0.8, hi=fc * 1.25, order=4)
    am = 1 + rng.uniform(0.3, 1.0) * np.sin(2 * np.pi * rng.uniform(50, 400) * t)
    return band * am * np.exp(0.5 * slow_noise(N, SR, rng.uniform(0.5, 3), rng))


def tone(rng: np.random.Generator) -> np.ndarray:
    """Steady single-source harmonic sounds: horns, alarms, beeps, whistles, bells, hums
    (with vibrato or a decay envelope; no rotor beating)."""
    t = np.arange(N) / SR
    f0 = float(np.exp(rng.uniform(np.log(60), np.log(2500))))
    vib = 1 + rng.uniform(0, 0.01) * np.sin(2 * np.pi * rng.uniform(3, 7) * t)
    n_h = int(rng.integers(1, 12))
    amps = np.arange(1, n_h + 1) ** -rng.uniform(0.3, 2.0) * rng.uniform(0.3, 1.0, n_h)
    out = _harmonics(f0 * vib, amps, rng)
    mode = rng.integers(0, 4)
    if mode == 1:  # beeping alarm
        period = rng.uniform(0.1, 0.6)
        out *= ((t / period) % 1.0) < rng.uniform(0.3, 0.7)
    elif mode == 2:  # struck: bell / chime decay, inharmonic partials
        out = sum(rng.uniform(0.2, 1) * np.sin(2 * np.pi * f0 * r * t) for r in (1, 2.0, 2.76, 5.4, 8.9))
        start = rng.uniform(0, 0.6)
        out = out * np.where(t >= start, np.exp(-(t - start) / rng.uniform(0.2, 1.5)), 0)
    elif mode == 3:  # a chord (horn)
        for r in rng.choice([1.25, 1.26, 1.33, 1.5, 1.6], size=int(rng.integers(1, 3)), replace=False):
            out = out + _harmonics(f0 * r * vib, amps, rng)
    return out


def train(rng: np.random.Generator) -> np.ndarray:
    """Trains: rumble, wheel clacks, squeal or a horn chord."""
    out = unit_rms(fft_filter(rng.standard_normal(N), SR, lo=20, hi=rng.uniform(200, 800)))
    clicks = np.zeros(N)
    period = rng.uniform(0.15, 0.8)
    for c in np.arange(rng.uniform(0, period), 1.0, period):
        for d in (0.0, rng.uniform(0.05, 0.12)):
            i = int((c + d) * SR)
            if i < N:
                clicks[i] = rng.uniform(0.5, 1)
    clack = fft_filter(np.convolve(clicks, np.exp(-np.arange(800) / 200) * rng.standard_normal(800), mode="same"),
                       SR, lo=100, hi=3000)
    out = out + rng.uniform(0.2, 1.2) * unit_rms(clack + 1e-9 * rng.standard_normal(N))
    extra = rng.integers(0, 3)
    if extra == 1:  # horn chord
        f0 = rng.uniform(250, 700)
        horn = sum(_harmonics(np.full(N, f0 * r), np.arange(1, 6) ** -1.0, rng) for r in (1, 1.26, 1.5))
        out = out + rng.uniform(0.5, 2) * unit_rms(horn)
    elif extra == 2:  # wheel squeal
        f = rng.uniform(1500, 6000) * (1 + 0.02 * slow_noise(N, SR, 2, rng))
        out = out + rng.uniform(0.2, 1.5) * unit_rms(_harmonics(f, np.array([1.0, 0.3]), rng)) * (
            0.5 + 0.5 * np.abs(slow_noise(N, SR, 3, rng)))
    return out


def motor(rng: np.random.Generator) -> np.ndarray:
    """Household motors (vacuum cleaner, washing machine, hair dryer, drill): broadband
    airflow noise + a motor hum and its whine, mostly steady."""
    noise = fft_filter(rng.standard_normal(N), SR, lo=rng.uniform(50, 400), hi=rng.uniform(1500, 7000))
    f0 = rng.uniform(40, 400) * (1 + rng.uniform(0, 0.02) * slow_noise(N, SR, 1, rng))
    amps = np.arange(1, 9) ** -rng.uniform(0.5, 2.0)
    hum = _harmonics(f0, amps, rng)
    out = unit_rms(noise) + rng.uniform(0.1, 1.0) * unit_rms(hum)
    if rng.random() < 0.5:  # high whine of the motor / turbine
        out = out + rng.uniform(0.1, 0.6) * unit_rms(
            np.sin(2 * np.pi * np.cumsum(np.full(N, rng.uniform(1000, 6000))) / SR))
    if rng.random() < 0.4:  # tumbling / sloshing: slow AM
        out = out * (1 + rng.uniform(0.3, 0.9) * slow_noise(N, SR, rng.uniform(1, 4), rng))
    return out


def helicopter(rng: np.random.Generator) -> np.ndarray:
    """Helicopters: main-rotor blade slap at 8-30 Hz (impulsive), tail rotor, turbine whine."""
    t = np.arange(N) / SR
    rate = rng.uniform(8, 30)
    phase = (t * rate + rng.uniform(0, 1)) % 1.0
    decay = np.exp(-phase / rng.uniform(0.03, 0.15))
    slap = decay * fft_filter(rng.standard_normal(N), SR, lo=40, hi=rng.uniform(600, 2000))
    out = unit_rms(slap) + rng.uniform(0.2, 0.8) * unit_rms(fft_filter(rng.standard_normal(N), SR, hi=300))
    if rng.random() < 0.6:
        out = out + rng.uniform(0.05, 0.4) * unit_rms(_harmonics(np.full(N, rate * rng.uniform(4, 7)),
                                                                  np.arange(1, 10) ** -1.0, rng))
    if rng.random() < 0.6:
        out = out + rng.uniform(0.05, 0.3) * np.sin(2 * np.pi * rng.uniform(2000, 6000) * t)
    return out


GENERATORS = {"siren": siren, "engine": engine, "insect_buzz": insect_buzz, "cricket": cricket, "cicada": cicada,
              "tone": tone, "train": train, "motor": motor, "helicopter": helicopter}


def tonal_negative(rng: np.random.Generator, kind: str | None = None) -> tuple[np.ndarray, str]:
    """One 1 s window (int16, peak at -20…-1 dBFS) of a random tonal non-drone source over a
    little noise, and its kind."""
    kind = kind or KINDS[int(rng.integers(0, len(KINDS)))]
    x = unit_rms(GENERATORS[kind](rng))
    floor = fft_filter(rng.standard_normal(N), SR, hi=rng.uniform(500, 8000), order=1)
    x = x + 10 ** (-rng.uniform(10, 40) / 20) * unit_rms(floor)
    x = x * (32767 * 10 ** (rng.uniform(-20, -1) / 20) / (np.abs(x).max() + 1e-9))
    return np.clip(np.round(x), -32768, 32767).astype(np.int16), kind


def tonal_negatives(n: int, seed: int = 20_000, kinds: tuple[str, ...] = KINDS) -> np.ndarray:
    """``int16 [n, 16000]``: ``n`` windows, the kinds in turn."""
    rng = np.random.default_rng(seed)
    return np.stack([tonal_negative(rng, kinds[i % len(kinds)])[0] for i in range(n)]) if n else np.zeros((0, N), np.int16)
