"""``make demo``: the main job on the local stack, in one process a newcomer can read.

1. start the local stack (real Kafka + Redis; or use KAFKA_BOOTSTRAP_SERVERS / REDIS_URL),
2. create the topics,
3. stream the synthetic camera and microphone (drones cross at known times) into Kafka,
4. watch every topic and print what flows, then a summary.

    python -m deploy.local.demo [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter

from rich.console import Console
from rich.live import Live
from rich.table import Table

from deploy.local import stack
from producers.camera import CameraProducer
from producers.microphone import MicrophoneProducer
from skysentry.config import Settings
from skysentry.logs import setup_logging
from skysentry.tail import tail_topic
from skysentry.topics import ensure_topics

console = Console()


def render(counts: Counter, last: dict[str, str], elapsed: float, seconds: float) -> Table:
    table = Table(title=f"SkySentry demo — {elapsed:4.1f}s / {seconds:.0f}s", expand=True)
    table.add_column("topic")
    table.add_column("records", justify="right")
    table.add_column("latest")
    for topic in sorted(last):
        table.add_row(topic, str(counts[topic]), last[topic])
    return table


async def demo(seconds: float) -> Counter:
    with console.status("starting the local stack (Kafka + Redis)…"):
        info = await asyncio.to_thread(stack.up)
    console.print(f"Kafka  [bold]{info.bootstrap_servers}[/]   Redis  [bold]{stack.status().redis.address or info.redis_url}[/]")
    settings = Settings(kafka={"bootstrap_servers": info.bootstrap_servers}, redis={"url": info.redis_url})
    created = await ensure_topics(settings.kafka, settings.topics)
    console.print(f"topics ready ({len(created)} created)")

    stop = asyncio.Event()
    counts: Counter = Counter()
    last: dict[str, str] = {}

    def seen(row: dict) -> None:
        counts[row["topic"]] += 1
        last[row["topic"]] = f"key={row['key']} {row['summary']}"[:110]

    watched = [settings.topics.frames, settings.topics.audio]
    watchers = [asyncio.create_task(tail_topic(settings.kafka, t, seen, idle_timeout_s=seconds + 15))
                for t in watched]
    await asyncio.sleep(1.5)  # let the watchers join at the end of each topic
    camera = CameraProducer(settings.camera, settings.kafka, settings.topics)
    mic = MicrophoneProducer(settings.mic, settings.kafka, settings.topics)
    producers = [asyncio.create_task(camera.run(stop)), asyncio.create_task(mic.run(stop))]

    t0 = time.monotonic()
    with Live(render(counts, last, 0, seconds), console=console, refresh_per_second=4) as live:
        while (elapsed := time.monotonic() - t0) < seconds:
            live.update(render(counts, last, elapsed, seconds))
            await asyncio.sleep(0.25)
        stop.set()
        await asyncio.gather(*producers)
        await asyncio.sleep(1.0)
        live.update(render(counts, last, time.monotonic() - t0, seconds))
    for w in watchers:
        w.cancel()
    await asyncio.gather(*watchers, return_exceptions=True)

    cam, aud = camera.publisher.stats, mic.publisher.stats
    console.print(f"camera: {cam.published} frames published ({cam.dropped} dropped); "
                  f"microphone: {aud.published} windows published ({aud.dropped} dropped)")
    console.print("The stack keeps running: `skysentry tail detections`, `make stack-down` to stop it.")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to stream (default 20)")
    args = parser.parse_args()
    setup_logging("WARNING", json_format=False)
    counts = asyncio.run(demo(args.seconds))
    if not counts:
        raise SystemExit("nothing reached Kafka: see the log above")


if __name__ == "__main__":
    main()
