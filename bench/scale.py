#!/usr/bin/env python3
"""Benchmark: does throughput scale with processor processes? 1 and then 2 ``skysentry process
<modality>`` processes in one consumer group over the same backlog, against a raw
single-process decode + infer loop measured in the same run.

1. **backlog** — real inputs, the same records for every configuration: vision = the frames of
   ``samples/*.mp4`` decoded and encoded exactly as ``skysentry camera`` does
   (``producers.camera.encode_jpeg`` at the default ``max_width`` and ``jpeg_quality``), audio =
   1 s windows at a 0.5 s hop cut by the microphone producer's own ``Windower`` from the drone
   recordings of ``../shared/data/ddd_audio`` (else the synthetic source). Records are spread
   evenly over 6 partitions (12 sources, 2 per partition), so two processes get equal shares.
   The broker is the project's stack (``deploy/local/stack.py``), started in a temporary state
   dir and stopped at the end, unless ``--bootstrap`` names one.
2. **groups** — 1 process in one consumer group and 2 processes in another, each group on a
   6-partition input topic of its own, all started once and kept running (no start-up and no
   rebalance inside a measurement); every process writes detections under a CloudEvents source
   of its own, so each one's count is its own.
3. **rounds** — raw, then the 1-process group, then the 2-process group. For a group: its
   processes are paused (SIGSTOP), the backlog of N windows is loaded onto its topic, they are
   let go (SIGCONT), and the clock runs until all N detections are read back (report threshold
   0: every window yields one). A process's throughput = its detections ÷ the time to its last
   one (``processed_at``); the group's = N ÷ the time to the last of all. CPU seconds of every
   process over the drain give CPU ms per window and the cores it actually got.
4. **result** — median over rounds and the spread (min–max) per configuration;
   ``scaling = 2-process windows/s ÷ 1-process windows/s`` per round, ``ratio_1p = 1-process ÷
   raw``, and ``cpu_scaling_efficiency`` = windows per CPU-second of the two processes ÷ of the
   one (robust to a busy machine). Each process runs ONNX Runtime with ``--threads`` intra-op
   threads (default 1) and one JPEG decode thread, so two processes fit two cores; the raw loop
   (``bench/pipeline.py``'s) uses the same. The load average and CPU steal are recorded: the
   machines these benches run on are shared.

A bench, not a test (it never passes or fails on a number)::

    bench/scale.py [--quick] [--only vision|audio] [--rounds N] [--json]

Results go to ``bench/results/scale[-quick].json`` and a Markdown table beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _pipeline_bench():
    """bench/pipeline.py as a module (bench/ is no package, and its alerting.py would shadow ours)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_pipeline", ROOT / "bench" / "pipeline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_pb = _pipeline_bench()
RawLoop, cpu_seconds, pick_model = _pb.RawLoop, _pb.cpu_seconds, _pb.pick_model  # the same raw loop and model pick

from deploy.local import stack  # noqa: E402
from producers.camera import encode_jpeg  # noqa: E402
from producers.microphone import Windower, file_blocks, synthetic_blocks  # noqa: E402
from skysentry.bus import make_producer  # noqa: E402
from skysentry.config import CameraSettings, MicrophoneSettings  # noqa: E402
from skysentry.messages import AudioEvent, FrameEvent, encode_audio, encode_frame  # noqa: E402
from stream_processors.testing import DetectionReader, ProcessorProcess, create_topics, isolated_settings  # noqa: E402

PARTITIONS = 6
SOURCES = 12  # two per partition
SAMPLES = ROOT / "samples"
DRONE_WAV = ROOT.parent / "shared" / "data" / "ddd_audio" / "drone"


# -- inputs ---------------------------------------------------------------------------------


def real_frames() -> tuple[list[tuple[bytes, int, int]], str]:
    """Every frame of samples/*.mp4 as ``skysentry camera`` publishes it (default settings)."""
    cam = CameraSettings()
    out: list[tuple[bytes, int, int]] = []
    clips = sorted(SAMPLES.glob("*.mp4"))
    for clip in clips:
        cap = cv2.VideoCapture(str(clip))
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            out.append(encode_jpeg(frame, cam.max_width, cam.jpeg_quality))
        cap.release()
    if not out:
        raise SystemExit("no frames: samples/*.mp4 missing or undecodable")
    w, h = out[0][1], out[0][2]
    return out, (f"{len(out)} frames of {', '.join('samples/' + c.name for c in clips)} ({w}x{h}), "
                 f"encoded by producers.camera.encode_jpeg at max_width={cam.max_width} quality={cam.jpeg_quality}")


def real_windows(limit: int = 400) -> tuple[list[np.ndarray], str]:
    """Windows as ``skysentry mic`` cuts them (its Windower, default window/hop/rate)."""
    mic = MicrophoneSettings()
    wavs = sorted(DRONE_WAV.glob("*.wav")) if DRONE_WAV.is_dir() else []
    windows: list[np.ndarray] = []
    used: list[str] = []
    for wav in wavs:
        rate, blocks = file_blocks(wav, loop=False)
        win = Windower(rate, mic.window_s, mic.hop_s, mic.sample_rate, datetime.now(timezone.utc))
        for block in blocks:
            windows.extend(pcm for _, pcm in win.push(block))
        used.append(wav.name)
        if len(windows) >= limit:
            break
    if windows:
        return windows[:limit], (f"{min(len(windows), limit)} windows of {len(used)} drone recordings of "
                                 f"ddd_audio ({used[0]}…), cut by producers.microphone.Windower "
                                 f"({mic.window_s} s / {mic.hop_s} s hop, {mic.sample_rate} Hz)")
    rate, blocks = synthetic_blocks("mic-0", mic.snr_db, loop=True)
    win = Windower(rate, mic.window_s, mic.hop_s, mic.sample_rate, datetime.now(timezone.utc))
    for block in blocks:
        windows.extend(pcm for _, pcm in win.push(block))
        if len(windows) >= limit:
            break
    return windows[:limit], "synthetic source (ddd_audio not found), cut by producers.microphone.Windower"


class Backlog:
    """Records (key, value, headers, partition) built from the real inputs, fresh id each."""

    def __init__(self, modality: str) -> None:
        self.modality = modality
        if modality == "vision":
            self.items, self.describe = real_frames()
            self.payload_bytes = float(np.mean([len(j) for j, _, _ in self.items]))
        else:
            self.items, self.describe = real_windows()
            self.payload_bytes = float(len(self.items[0]) * 2)

    def records(self, n: int):
        prefix = "cam" if self.modality == "vision" else "mic"
        for i in range(n):
            k = i % SOURCES
            source = f"{prefix}-{k}"
            now = datetime.now(timezone.utc)
            if self.modality == "vision":
                jpeg, w, h = self.items[i % len(self.items)]
                key, value, headers = encode_frame(FrameEvent(source=source, time=now, seq=i, width=w, height=h), jpeg)
            else:
                pcm = self.items[i % len(self.items)]
                key, value, headers = encode_audio(AudioEvent(source=source, time=now, seq=i, samplerate=16000,
                                                              samples=len(pcm)), pcm)
            yield key, value, headers, k % PARTITIONS

    def raw_records(self, n: int) -> list:
        return [(k, v, h) for k, v, h, _ in self.records(n)]


async def load(kafka, topic: str, records) -> int:
    producer = make_producer(kafka)
    await producer.start()
    n = 0
    try:
        futures = []
        for key, value, headers, partition in records:
            futures.append(await producer.send(topic, value=value, key=key, headers=headers, partition=partition))
            n += 1
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return n


# -- counting detections per process ---------------------------------------------------------


class Counter(DetectionReader):
    """Keeps the processed_at of every detection, per CloudEvents source (the processor that made it)."""

    def __init__(self, kafka, topic: str) -> None:
        super().__init__(kafka, topic)
        self.by_source: dict[str, list[float]] = {}  # ce source → processed_at of each detection

    def seen(self, event: dict, read_at: datetime) -> None:
        at = datetime.fromisoformat(event["data"]["processed_at"].replace("Z", "+00:00"))
        self.by_source.setdefault(event["source"], []).append(at.timestamp())

    def total(self, source: str) -> int:
        return len(self.by_source.get(source, ()))

    def times(self, source: str) -> list[float]:
        return self.by_source.get(source, [])


# -- one configuration ------------------------------------------------------------------------


class Group:
    """``n`` processors in one consumer group on an input topic of their own, started once and
    kept running for every round (no start-up, no rebalance inside a measurement)."""

    def __init__(self, base, modality: str, n: int, workdir: Path) -> None:
        self.modality, self.n = modality, n
        suffix = f"{n}p"
        topics = base.topics.model_copy(update={"frames": f"{base.topics.frames}.{suffix}",
                                                "audio": f"{base.topics.audio}.{suffix}"})
        self.settings = base.model_copy(update={"topics": topics})
        self.topic = self.settings.input_topic(modality)
        self.sources = [f"bench/scale/{suffix}/p{i}" for i in range(n)]
        self.procs: list[Processor] = []
        for i in range(n):
            section = getattr(base, f"{modality}_processor").model_copy(
                update={"group_id": f"{getattr(base, f'{modality}_processor').group_id}-{suffix}",
                        "source": self.sources[i]})
            settings = self.settings.model_copy(update={f"{modality}_processor": section})
            self.procs.append(ProcessorProcess(settings, modality, workdir, f"{modality}-{suffix}-p{i}", deployed=True))

    async def start(self) -> None:
        await create_topics(self.settings)
        for p in self.procs:
            p.start()

    async def stable(self, timeout: float = 120.0) -> None:
        """Until the partitions are split evenly, without overlap, among the processes."""
        share = PARTITIONS // self.n
        deadline = time.monotonic() + timeout
        while True:
            latest = [p.assignments()[-1] if p.assignments() else [] for p in self.procs]
            if sorted(x for parts in latest for x in parts) == list(range(PARTITIONS)) and \
                    all(len(parts) == share for parts in latest):
                return
            self.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.n} processes: no even split within {timeout:.0f}s; saw {latest}")
            await asyncio.sleep(0.1)

    def check(self) -> None:
        for p in self.procs:
            if p.proc.poll() is not None:
                raise RuntimeError(f"{p.name} exited {p.proc.returncode}:\n{p.tail(30)}")

    def stop(self) -> None:
        for p in self.procs:
            p.stop()

    async def drain(self, data: "Backlog", n: int, counter: "Counter", timeout: float = 300.0) -> dict:
        """Stop the processes (SIGSTOP), load ``n`` records onto their topic, let them go
        (SIGCONT) and time them until the n detections are read back."""
        before = [counter.total(s) for s in self.sources]
        for p in self.procs:
            p.proc.send_signal(signal.SIGSTOP)
        try:
            await load(self.settings.kafka, self.topic, data.records(n))
        finally:
            for p in self.procs:
                p.proc.send_signal(signal.SIGCONT)
        t0 = time.time()
        cpu0 = [cpu_seconds(p.proc.pid) for p in self.procs]
        deadline = time.monotonic() + timeout
        while sum(counter.total(s) for s in self.sources) - sum(before) < n:
            self.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.n} processes: {sum(counter.total(s) for s in self.sources) - sum(before)}"
                                   f"/{n} detections after {timeout:.0f}s")
            await asyncio.sleep(0.02)
        cpu1 = [cpu_seconds(p.proc.pid) for p in self.procs]
        per = []
        for i, (p, src) in enumerate(zip(self.procs, self.sources)):
            times = counter.times(src)[before[i]:]
            k = len(times)
            span = max(times) - t0 if times else float("nan")
            per.append({"windows": k, "windows_per_s": round(k / span, 2) if k else 0.0, "seconds": round(span, 2),
                        "cpu_ms_per_window": round((cpu1[i] - cpu0[i]) / k * 1000, 2) if k else None,
                        # CPU seconds per second this process got: below its threads, the CPUs were busy
                        "cpu_cores_used": round((cpu1[i] - cpu0[i]) / span, 2) if k else None,
                        "partitions": p.assignments()[-1], "assignments": len(p.assignments())})
        span = max(r["seconds"] for r in per)
        return {"processes": per, "windows_per_s": round(n / span, 2), "seconds": round(span, 2), "windows": n}


def steal_and_total() -> tuple[int, int]:
    """(steal, total) jiffies of all CPUs since boot (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return fields[7], sum(fields)


async def run_modality(modality: str, model: Path, bootstrap: str, args, workdir: Path) -> dict:
    batch = 8 if modality == "vision" else 16
    section = {"max_batch": batch, "max_wait_s": 0.02, "summary_interval_s": 1.0, "commit_interval_s": 1.0,
               "session_timeout_s": 30.0,
               "detector": {"report_threshold": 0.0, "session": {"intra_op_threads": args.threads}}}
    if modality == "vision":
        section |= {"max_frame_age_s": None, "decode_threads": 1}
    base = isolated_settings(bootstrap, prefix="scale", partitions=PARTITIONS, **{f"{modality}_processor": section},
                             **({"vision_model": model} if modality == "vision" else {"audio_model": model}))
    await create_topics(base)  # the detections topic both groups write
    data = Backlog(modality)
    n = args.windows or (args.vision_windows if modality == "vision" else args.audio_windows)
    raw_loop = RawLoop(modality, model, batch, args.threads, 1)
    raw_records = data.raw_records(min(n, 200 if modality == "vision" else 1600))
    groups = [Group(base, modality, 1, workdir), Group(base, modality, 2, workdir)]
    rounds = []
    async with Counter(base.kafka, base.topics.detections) as counter:
        try:
            for g in groups:
                await g.start()
            for g in groups:
                await g.stable()
                await g.drain(data, 4 * batch * g.n, counter)  # warm the path end to end
            for r in range(args.rounds):
                load_avg = os.getloadavg()[0]
                s0 = steal_and_total()
                c0 = time.process_time()
                raw = raw_loop.windows_per_s(raw_records)
                raw_cpu = (time.process_time() - c0) / len(raw_records) * 1000
                one = await groups[0].drain(data, n, counter)
                two = await groups[1].drain(data, n, counter)
                s1 = steal_and_total()
                one_cpu = one["processes"][0]["cpu_ms_per_window"]
                two_cpu = [p["cpu_ms_per_window"] for p in two["processes"] if p["cpu_ms_per_window"]]
                rounds.append({"raw_windows_per_s": round(raw, 2), "raw_cpu_ms_per_window": round(raw_cpu, 2),
                               "one": one, "two": two,
                               "scaling": round(two["windows_per_s"] / one["windows_per_s"], 3),
                               # windows per CPU-second, 2 processes ÷ 1: what a second process costs in CPU,
                               # whatever share of a busy machine the processes got (1.0: no overhead)
                               "cpu_scaling_efficiency": round(one_cpu * len(two_cpu) / sum(two_cpu), 3)
                               if two_cpu and one_cpu else None,
                               "ratio_1p": round(one["windows_per_s"] / raw, 3),
                               "load_avg_1m_at_start": round(load_avg, 2),
                               "steal_pct": round(100 * (s1[0] - s0[0]) / max(1, s1[1] - s0[1]), 2)})
                print(f"  round {r + 1}: raw {raw:7.1f} w/s | 1 process {one['windows_per_s']:7.1f} w/s | 2 processes "
                      f"{two['windows_per_s']:7.1f} w/s ({' + '.join(str(p['windows_per_s']) for p in two['processes'])})"
                      f" | scaling {rounds[-1]['scaling']:.2f} | load {load_avg:.2f}", flush=True)
        finally:
            for g in groups:
                g.stop()
    raw_loop.close()

    def summary(values: list[float]) -> dict:
        return {"median": round(statistics.median(values), 2), "min": round(min(values), 2),
                "max": round(max(values), 2),
                "spread_pct": round(100 * (max(values) - min(values)) / statistics.median(values), 1)}

    one_rates = [r["one"]["windows_per_s"] for r in rounds]
    two_rates = [r["two"]["windows_per_s"] for r in rounds]
    two_per = [p["windows_per_s"] for r in rounds for p in r["two"]["processes"]]
    cpu_one = [r["one"]["processes"][0]["cpu_ms_per_window"] for r in rounds if r["one"]["processes"][0]["cpu_ms_per_window"]]
    cpu_two = [p["cpu_ms_per_window"] for r in rounds for p in r["two"]["processes"] if p["cpu_ms_per_window"]]
    return {
        "model": f"models/{modality}.onnx" if model == ROOT / "models" / f"{modality}.onnx" else str(model),
        "input": data.describe, "payload_bytes_mean": round(data.payload_bytes, 1),
        "windows_per_round": n, "partitions": PARTITIONS, "batch": batch,
        "intra_op_threads": args.threads, "decode_threads": 1 if modality == "vision" else None,
        "raw_windows_per_s": summary([r["raw_windows_per_s"] for r in rounds]),
        "one_process_windows_per_s": summary(one_rates),
        "two_processes_windows_per_s": summary(two_rates),
        "two_processes_per_process_windows_per_s": summary(two_per),
        "scaling": summary([r["scaling"] for r in rounds]),
        "ratio_1p": summary([r["ratio_1p"] for r in rounds]),
        "cpu_scaling_efficiency": summary([r["cpu_scaling_efficiency"] for r in rounds if r["cpu_scaling_efficiency"]]),
        "cpu_cores_used": {"one_process": summary([r["one"]["processes"][0]["cpu_cores_used"] for r in rounds]),
                           "two_processes_each": summary([p["cpu_cores_used"] for r in rounds
                                                          for p in r["two"]["processes"]])},
        "cpu_ms_per_window": {"one_process": round(statistics.median(cpu_one), 2) if cpu_one else None,
                              "two_processes": round(statistics.median(cpu_two), 2) if cpu_two else None,
                              "raw": round(statistics.median(r["raw_cpu_ms_per_window"] for r in rounds), 2)},
        "rounds": rounds,
    }


# -- output -----------------------------------------------------------------------------------


def markdown(result: dict) -> str:
    meta = result["meta"]
    rows = ["| modality | raw w/s | 1 process w/s | 2 processes w/s (each) | scaling 2p ÷ 1p | 1p ÷ raw "
            "| CPU ms/window 1p · 2p · raw | CPU efficiency 2p | cores used 1p · 2p each | rounds |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    notes = []
    for m in ("vision", "audio"):
        if m not in result:
            continue
        r = result[m]

        def f(s: dict) -> str:
            return f"{s['median']} ({s['min']}–{s['max']})"

        c = r["cpu_ms_per_window"]
        rows.append(f"| {m} | {f(r['raw_windows_per_s'])} | {f(r['one_process_windows_per_s'])} "
                    f"| {f(r['two_processes_windows_per_s'])} ({r['two_processes_per_process_windows_per_s']['median']}) "
                    f"| **{f(r['scaling'])}** | {f(r['ratio_1p'])} | {c['one_process']} · {c['two_processes']} · {c['raw']} "
                    f"| {f(r['cpu_scaling_efficiency'])} | {r['cpu_cores_used']['one_process']['median']} · "
                    f"{r['cpu_cores_used']['two_processes_each']['median']} | {len(r['rounds'])} |")
        notes.append(f"* {m}: {r['input']}; mean payload {r['payload_bytes_mean']:.0f} B; {r['windows_per_round']} "
                     f"windows per drain on {r['partitions']} partitions; batch {r['batch']}, {r['intra_op_threads']} "
                     f"intra-op thread(s) per process; model {r['model']}")
        for i, rd in enumerate(r["rounds"], 1):
            notes.append(f"  * round {i}: raw {rd['raw_windows_per_s']}, 1p {rd['one']['windows_per_s']}, 2p "
                         f"{rd['two']['windows_per_s']} ({' + '.join(str(p['windows_per_s']) for p in rd['two']['processes'])})"
                         f", scaling {rd['scaling']}, CPU efficiency {rd['cpu_scaling_efficiency']}, cores used 1p "
                         f"{rd['one']['processes'][0]['cpu_cores_used']} / 2p "
                         f"{' + '.join(str(p['cpu_cores_used']) for p in rd['two']['processes'])}, "
                         f"load average {rd['load_avg_1m_at_start']} at start, "
                         f"steal {rd['steal_pct']} %")
    return ("# Scaling bench (bench/scale.py)\n\n"
            f"{meta['at']} · {meta['cpus']} CPUs ({meta['cpu_model']}) · {meta['mode']} · Kafka {meta['kafka']} "
            f"(one local broker, on the same CPUs) · {meta['seconds']} s\n\n"
            "1 and then 2 `skysentry process <modality>` processes in one consumer group, each draining the same backlog\n"
            "of real windows loaded onto a 6-partition topic while they were paused; raw = decode + infer in one process\n"
            "with the same model, batch and threads (bench/pipeline.py's loop). Median over rounds,\n"
            "(min–max) beside it. Scaling is per round (2-process ÷ 1-process of that round); 2.0 would be linear.\n"
            "CPU efficiency = windows per CPU-second of 2 processes ÷ of 1 (1.0: a second process adds no CPU cost per\n"
            "window); cores used = CPU seconds per second each process got while measured. On a machine busier than its\n"
            "cores, the scheduler shares CPU per runnable thread, so two processes take a larger share from the other\n"
            "tenants than one: the wall-clock scaling then says more about the neighbours than about SkySentry, and the\n"
            "CPU figures are the ones to size with.\n"
            f"{meta['noise']}\n\n" + "\n".join(rows) + "\n\n" + "\n".join(notes) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 rounds, half the windows")
    parser.add_argument("--json", action="store_true", help="end with one JSON line")
    parser.add_argument("--only", choices=["vision", "audio"])
    parser.add_argument("--rounds", type=int, help="rounds of raw / 1 process / 2 processes (default 3, quick 2)")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads per process and raw")
    parser.add_argument("--windows", type=int, help="windows per drain (default 400 vision, 6000 audio; quick: half)")
    parser.add_argument("--vision-windows", type=int, default=400, help=argparse.SUPPRESS)
    parser.add_argument("--audio-windows", type=int, default=6000, help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help="use this broker (else a local stack started and stopped by the bench)")
    args = parser.parse_args()
    if args.rounds is None:
        args.rounds = 2 if args.quick else 3
    if args.quick:
        args.vision_windows, args.audio_windows = args.vision_windows // 2, args.audio_windows // 2

    import logging

    logging.basicConfig(level=logging.WARNING)
    for noisy in ("aiokafka", "kafka"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    t_start = time.perf_counter()
    load0 = os.getloadavg()
    result: dict = {}
    with tempfile.TemporaryDirectory(prefix="skysentry-scale-") as tmp:
        state = Path(tmp) / "stack"
        bootstrap = args.bootstrap or stack.up(state, kafka_port=0, redis_port=0, use_env=False).bootstrap_servers
        try:
            for modality in ([args.only] if args.only else ["vision", "audio"]):
                model, _ = pick_model(modality, None, Path(tmp))
                print(f"{modality}:", flush=True)
                result[modality] = asyncio.run(run_modality(modality, model, bootstrap, args, Path(tmp)))
                r = result[modality]
                print(f"{modality:6s}: 1 process {r['one_process_windows_per_s']['median']} w/s, 2 processes "
                      f"{r['two_processes_windows_per_s']['median']} w/s, scaling {r['scaling']['median']} "
                      f"({r['scaling']['min']}–{r['scaling']['max']}), raw {r['raw_windows_per_s']['median']} w/s",
                      flush=True)
        finally:
            if not args.bootstrap:
                stack.down(state)
    load1 = os.getloadavg()
    cpu_model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), platform.machine())
    scalings = [rd["scaling"] for m in ("vision", "audio") if m in result for rd in result[m]["rounds"]]
    noise = (f"Noise: 1-minute load average {load0[0]:.2f} before the run and {load1[0]:.2f} after (other sessions "
             f"share these {os.cpu_count()} CPUs); per-round scaling ranged {min(scalings):.2f}–{max(scalings):.2f}. "
             "The broker, the bench's own reader and the processes all share these CPUs with each other.")
    result["meta"] = {"at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpus": os.cpu_count(),
                      "cpu_model": cpu_model, "python": platform.python_version(),
                      "mode": "quick" if args.quick else "full", "kafka": stack.KAFKA_VERSION,
                      "load_avg_before": [round(x, 2) for x in load0], "load_avg_after": [round(x, 2) for x in load1],
                      "noise": noise, "seconds": round(time.perf_counter() - t_start, 1),
                      "rounds": args.rounds, "threads": args.threads}
    out = ROOT / "bench" / "results" / ("scale-quick" if args.quick else "scale")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(result))
    print(f"written to {out.with_suffix('.json').relative_to(ROOT)} and .md ({result['meta']['seconds']} s)")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
