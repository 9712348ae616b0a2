"""``make demo``: the whole pipeline on the local stack, watched live.

1. start the local stack (real Kafka + Redis; or use KAFKA_BOOTSTRAP_SERVERS / REDIS_URL)
   and create the topics;
2. start the vision and audio processors (the shipped models in ``models/``) and the
   alerting service, each its own process, from one generated config;
3. stream the synthetic camera and microphone (drones cross at known times) into Kafka;
4. show what flows: frames, audio windows, detections, alerts, and the notifications that
   reach the loopback stand-ins for the webhook, Slack and SMS;
5. stop the producers, wait for the alerts to resolve, stop the services and print each
   alert's lineage and the measured latencies.

    python -m deploy.local.demo [--seconds 40]

Services' logs go to ``.skysentry/demo/``; the stack keeps running afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from alerting.testing import RecordingReceiver
from deploy.local import stack
from deploy.local.pipeline import Observed, RunReport, percentile, run_pipeline
from skysentry.config import Settings
from skysentry.logs import setup_logging
from skysentry.topics import ensure_topics

console = Console()
WORKDIR = Path(".skysentry/demo")


def render(seen: Observed, receiver: RecordingReceiver, elapsed: float, phase: str) -> Group:
    flow = Table(title=f"SkySentry demo — {elapsed:5.1f}s — {phase}", expand=True)
    flow.add_column("stage")
    flow.add_column("count", justify="right")
    flow.add_column("detail")
    flow.add_row("frames → sensor.frames", str(seen.counts["frame"]), "synthetic camera cam-1")
    flow.add_row("audio windows → sensor.audio", str(seen.counts["audio"]), "synthetic microphone mic-1")
    flow.add_row("detections (vision)", str(seen.modality_count("vision")),
                 f"{sum(n for (m, _), n in seen.summaries.items() if m == 'vision')} score summaries")
    flow.add_row("detections (audio)", str(seen.modality_count("audio")),
                 f"{sum(n for (m, _), n in seen.summaries.items() if m == 'audio')} score summaries")
    flow.add_row("alert events → alerts", str(len(seen.alerts)), "")
    for path, what in (("/webhook", "webhook"), ("/slack", "Slack"), ("/twilio", "SMS (Twilio)")):
        flow.add_row(f"notifications → {what}", str(len(receiver.requests(path))), "loopback stand-in")
    recent = Table("alert event", "severity", "source", "max score", "detections", title="latest alerts", expand=True)
    for a in seen.alerts[-6:]:
        recent.add_row(a.event, a.severity, f"{a.site}/{a.source}", f"{a.max_score:.2f}", str(len(a.detection_ids)))
    return Group(flow, recent)


def summarise(report: RunReport) -> None:
    seen = report.observed
    cam, mic = report.producers["camera"], report.producers["microphone"]
    console.print(f"\ncamera: {cam['published']} frames ({cam['dropped']} dropped); "
                  f"microphone: {mic['published']} windows ({mic['dropped']} dropped)")
    console.print(f"detections: {seen.modality_count('vision')} vision, {seen.modality_count('audio')} audio; "
                  f"alert events: {len(seen.alerts)}")
    for body in report.webhook_payloads():
        a = body["alert"]
        first = seen.detections.get(a["detection_ids"][0]) if a["detection_ids"] else None
        chain = (f"detection {first.id[:8]}… ← {first.modality} input {first.input_event_id[:8]}…" if first else "?")
        console.print(f"  webhook: [bold]{body['title']}[/]  ({len(a['detection_ids'])} detections; {chain})")
    problems = report.lineage_problems()
    console.print("lineage alert → detections → input events: " +
                  ("[green]complete[/]" if not problems else f"[red]{len(problems)} broken link(s)[/]: {problems[:3]}"))
    bad = report.unsigned_webhooks()
    console.print(f"webhook signatures (HMAC-SHA256): {len(report.notifications_on('/webhook')) - len(bad)} verified, "
                  f"{len(bad)} failed")
    det, alert = report.detection_latencies_ms(), report.alert_latencies_ms()
    if det:
        console.print(f"capture → detection on Kafka: p50 {percentile(det, 50):.0f} ms, p99 {percentile(det, 99):.0f} ms "
                      f"({len(det)} detections)")
    if alert:
        console.print(f"capture → webhook delivered (incl. k-of-n confirmation and group_wait): "
                      f"p50 {percentile(alert, 50):.0f} ms over {len(alert)} alert(s)")
    for name, code in report.services.items():
        if code not in (0, None):
            console.print(f"[yellow]{name} exited with status {code}; see {WORKDIR}/{name}.log[/]")
    console.print(f"Service logs: {WORKDIR}/. The stack keeps running: `skysentry tail alerts`, "
                  "`make stack-down` to stop it.")


async def demo(seconds: float) -> RunReport:
    with console.status("starting the local stack (Kafka + Redis)…"):
        info = await asyncio.to_thread(stack.up)
    console.print(f"Kafka [bold]{info.bootstrap_servers}[/]   Redis [bold]{info.redis_url}[/]")
    settings = Settings(kafka={"bootstrap_servers": info.bootstrap_servers}, redis={"url": info.redis_url})
    await ensure_topics(settings.kafka, settings.topics)
    with RecordingReceiver() as receiver, Live(console=console, refresh_per_second=4) as live:
        def tick(seen: Observed, elapsed: float, phase: str) -> None:
            live.update(render(seen, receiver, elapsed, phase))

        report = await run_pipeline(settings, receiver, WORKDIR, seconds=seconds, on_tick=tick)
    summarise(report)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=40.0, help="how long to stream (default 40)")
    args = parser.parse_args()
    setup_logging("WARNING", json_format=False)
    report = asyncio.run(demo(args.seconds))
    if not report.observed.alerts:
        raise SystemExit("no alert fired: see the service logs in .skysentry/demo/")


if __name__ == "__main__":
    main()
