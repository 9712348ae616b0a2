"""``skysentry alert …``: run the alerting service, manage silences, try a channel, see state.

A typer sub-app; ``skysentry/cli.py`` mounts it as ``alert``. Also runs on its own:
``python -m alerting run --config deploy/alerting.example.yaml``.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Optional

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from alerting.config import AlertingServiceSettings
from alerting.durations import parse_duration
from skysentry.config import ConfigError

app = typer.Typer(name="alert", help="Alerting: confirm and deduplicate detections, route and deliver alerts.",
                  no_args_is_help=True, add_completion=False)
silence_app = typer.Typer(help="Silences: mute notifications for alerts matching labels, until they expire.",
                          no_args_is_help=True)
app.add_typer(silence_app, name="silence")

console = Console()
err = Console(stderr=True)

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML config with an `alerting:` section "
                                                   "[default: $SKYSENTRY_CONFIG].")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def load_settings(config: Path | None) -> AlertingServiceSettings:
    try:
        return AlertingServiceSettings.load(config)
    except (FileNotFoundError, ConfigError) as exc:
        err.print(f"[bold red]config:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    except ValidationError as exc:
        err.print("[bold red]invalid alerting config:[/]", highlight=False)
        for e in exc.errors():
            where = ".".join(str(p) for p in e["loc"])
            hint = ""
            if e["type"] == "union_tag_not_found" and "channels" in e["loc"]:
                hint = (" (no `type`: define the channel in the YAML config; SKYSENTRY_ALERTING__CHANNELS__* "
                        "variables only fill in fields, such as secrets, of channels defined there)")
            err.print(f"  {where}: {e['msg']}{hint}", highlight=False)
        raise typer.Exit(2) from None


def _redis(settings: AlertingServiceSettings):
    from alerting.service import redis_client

    return redis_client(settings)


# ------------------------------------------------------------------------------------ run


@app.command()
def run(config: ConfigOpt = None,
        allow_evicting_redis: Annotated[bool, typer.Option(
            "--allow-evicting-redis", help="Start even if Redis may evict keys when full (losing alert state); "
            "by default alerting refuses such a Redis.")] = False) -> None:
    """Run the alerting service until SIGTERM/SIGINT (replicas: start more, same config)."""
    from alerting.service import AlertingService, ServiceStartError
    from skysentry.logs import setup_logging
    from skysentry.metrics import serve_metrics
    from skysentry.service import run_until_signalled

    settings = load_settings(config)
    if allow_evicting_redis:
        settings.alerting.allow_evicting_redis = True
    setup_logging(settings.log.level, settings.log.json_format)
    serve_metrics(settings.metrics)
    try:
        run_until_signalled(AlertingService(settings).run)
    except ServiceStartError as exc:
        err.print(f"[bold red]alerting did not start:[/] {exc}", highlight=False, soft_wrap=True)  # one line
        raise typer.Exit(1) from None


# ------------------------------------------------------------------------------------ silences


@silence_app.command("add")
def silence_add(
    matchers: Annotated[list[str], typer.Argument(help="Label matchers, e.g. site=north source=~cam-.* "
                                                  "(labels: site, source, label, severity, modality).")],
    duration: Annotated[str, typer.Option("--duration", "-d", help="How long, e.g. 30m, 2h, 1d.")] = "1h",
    comment: Annotated[str, typer.Option("--comment", "-m", help="Why (shown in `silence list`).")] = "",
    author: Annotated[Optional[str], typer.Option("--author", help="Who [default: $USER].")] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Mute notifications for alerts matching ALL the matchers."""
    from alerting.silences import SilenceStore

    settings = load_settings(config)
    try:
        seconds = parse_duration(duration)
    except ValueError as exc:
        err.print(f"[bold red]--duration:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None

    async def go():
        redis = _redis(settings)
        try:
            return await SilenceStore(redis, settings.alerting.key_prefix).add(
                matchers, duration_s=seconds, created_by=author or _user(), comment=comment)
        finally:
            await redis.aclose()

    try:
        silence = asyncio.run(go())
    except ValueError as exc:
        err.print(f"[bold red]silence not added:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    if as_json:
        console.print_json(silence.model_dump_json())
    else:
        console.print(f"silence [bold]{silence.id}[/] until {silence.ends_at.isoformat(timespec='seconds')} "
                      f"for {' '.join(silence.matchers)}", highlight=False)


@silence_app.command("list")
def silence_list(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Active silences, soonest to end first."""
    from alerting.silences import SilenceStore

    settings = load_settings(config)

    async def go():
        redis = _redis(settings)
        try:
            return await SilenceStore(redis, settings.alerting.key_prefix).list()
        finally:
            await redis.aclose()

    silences = asyncio.run(go())
    if as_json:
        console.print_json(json.dumps([s.model_dump(mode="json") for s in silences]))
        return
    table = Table("id", "matchers", "ends", "by", "comment", title=f"{len(silences)} active silence(s)")
    for s in silences:
        table.add_row(s.id, " ".join(s.matchers), s.ends_at.isoformat(timespec="seconds"), s.created_by, s.comment)
    console.print(table)


@silence_app.command("expire")
def silence_expire(silence_id: Annotated[str, typer.Argument(help="The id `silence list` shows.")],
                   config: ConfigOpt = None) -> None:
    """End a silence now."""
    from alerting.silences import SilenceStore

    settings = load_settings(config)

    async def go():
        redis = _redis(settings)
        try:
            return await SilenceStore(redis, settings.alerting.key_prefix).expire(silence_id)
        finally:
            await redis.aclose()

    if not asyncio.run(go()):
        err.print(f"no active silence {silence_id!r}; `skysentry alert silence list` shows the ids", highlight=False)
        raise typer.Exit(1)
    console.print(f"silence {silence_id} expired", highlight=False)


# ------------------------------------------------------------------------------------ test-channel


@app.command("test-channel")
def test_channel(name: Annotated[str, typer.Argument(help="A channel name from alerting.channels.")],
                 config: ConfigOpt = None) -> None:
    """Send one clearly marked test notification through a channel, directly (no outbox, no
    retries), and say what happened."""
    from alerting.channels import DeliveryError, build_channel
    from alerting.notification import Notification
    from skysentry.messages import Alert

    settings = load_settings(config)
    cfg = settings.alerting.channels.get(name)
    if cfg is None:
        err.print(f"no channel {name!r}; configured: {', '.join(settings.alerting.channels) or 'none'}",
                  highlight=False)
        raise typer.Exit(2)
    channel = build_channel(name, cfg)
    now = datetime.now(timezone.utc)
    alert = Alert(fingerprint="0000000000000000", event="firing", status="firing", severity="info", site="test",
                  source="skysentry-cli", label="drone", modalities=["vision"], max_score=1.0, starts_at=now,
                  last_seen_at=now, detection_ids=[], summary="SkySentry test notification: ignore me.")

    async def go() -> tuple[list[tuple[str | None, str | None]], float]:
        results = []
        started = time.monotonic()
        try:
            for target in channel.targets():
                n = Notification(idempotency_key=str(uuid.uuid4()), channel=name, target=target, route="test",
                                 event="firing", alert=alert, sources=["skysentry-cli"], decided_at=now)
                try:
                    await asyncio.wait_for(channel.send(n), timeout=cfg.timeout + 1)
                    results.append((target, None))
                except DeliveryError as exc:
                    results.append((target, channel.scrub(str(exc))))
                except asyncio.TimeoutError:
                    results.append((target, f"no answer within {cfg.timeout:g} s"))
        finally:
            await channel.aclose()
        return results, time.monotonic() - started

    results, took = asyncio.run(go())
    failed = [r for r in results if r[1]]
    for target, error in results:
        where = f"{name}" + (f" [{target}]" if target is not None else "")
        if error:
            err.print(f"[bold red]FAILED[/] {where}: {error}", highlight=False)
        else:
            console.print(f"[bold green]OK[/] {where}", highlight=False)
    console.print(f"{len(results) - len(failed)}/{len(results)} delivered in {took * 1000:.0f} ms", highlight=False)
    if failed:
        raise typer.Exit(1)


# ------------------------------------------------------------------------------------ status


@app.command()
def status(config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Firing alerts (stale: a source's processor stopped reporting, so it can neither resolve nor
    repeat), how far detections have been read, outbox depth per channel, dead letters and
    silences (from Redis)."""
    from alerting.outbox import Outbox
    from alerting.silences import SilenceStore
    from alerting.state import AlertState

    settings = load_settings(config)
    a = settings.alerting

    async def go() -> dict:
        redis = _redis(settings)
        try:
            state = AlertState(redis, a)
            outbox = Outbox(redis, a.key_prefix)
            firing = await state.firing()
            watermark, now = await state.watermark_ms(), await state.now_ms()
            return {
                "key_prefix": a.key_prefix,
                "detections_read_up_to": _iso_ms(watermark),
                "read_lag_s": round((now - watermark) / 1000, 1) if watermark is not None else None,
                "firing": [{"fingerprint": s.fp, "alert_id": s.alert_id,
                            "state": "stale" if s.ms("stale_ms") else "firing",
                            "stale_since": _iso_ms(s.ms("stale_ms")),
                            "site": s.site, "sources": s.sources, "label": s.label,
                            "severity": s.severity, "modalities": s.modalities, "max_score": s.max_score,
                            "since": _iso_ms(s.ms("starts_ms")), "last_seen": _iso_ms(s.ms("last_seen_ms"))}
                           for s in firing],
                "outbox": await outbox.depth(),
                "dead_letters": await outbox.dead_count(),
                "recent_dead_letters": [{k: d.get(k) for k in ("id", "channel", "attempts", "error")}
                                        | {"at": _iso_ms(d.get("dead_ms"))} for d in await outbox.dead_letters(5)],
                "silences": [s.model_dump(mode="json") for s in await SilenceStore(redis, a.key_prefix).list()],
                "channels": {name: c.type for name, c in a.channels.items()},
            }
        finally:
            await redis.aclose()

    try:
        doc = asyncio.run(go())
    except Exception as exc:  # Redis away: say where we looked (URL without its password)
        from skysentry.logs import redact

        err.print(f"[bold red]cannot read alerting state:[/] {type(exc).__name__}: {exc} "
                  f"(Redis {redact(settings.redis.url.get_secret_value())}; is it running? "
                  "`skysentry stack up` starts a local one)", highlight=False)
        raise typer.Exit(1) from None
    if as_json:
        console.print_json(json.dumps(doc))
        return
    table = Table("fingerprint", "state", "site", "sources", "severity", "modalities", "score", "since", "last seen",
                  title=f"{len(doc['firing'])} alert(s) firing · prefix {doc['key_prefix']}")
    for f in doc["firing"]:
        table.add_row(f["fingerprint"], f["state"], f["site"], ", ".join(f["sources"]), f["severity"],
                      "+".join(f["modalities"]), f"{f['max_score']:.2f}", f["since"] or "", f["last_seen"] or "")
    console.print(table)
    for f in doc["firing"]:
        if f["state"] == "stale":
            console.print(f"{f['fingerprint']} stale since {f['stale_since']}: the processor of "
                          f"{', '.join(f['sources'])} stopped reporting; no resolve, no repeat until it reports again",
                          highlight=False)
    if doc["read_lag_s"] is None:
        console.print("detections read: no consumer has reported yet", highlight=False)
    else:  # a resolve waits until what was written before its time has been read
        console.print(f"detections read up to {doc['detections_read_up_to']} ({doc['read_lag_s']:g} s ago)",
                      highlight=False)
    queue = ", ".join(f"{k}: {v}" for k, v in doc["outbox"].items()) or "empty"
    console.print(f"outbox: {queue}", highlight=False)
    console.print(f"dead letters: {doc['dead_letters']}", highlight=False)
    for d in doc["recent_dead_letters"]:
        console.print(f"  {d['at']} {d['channel']} after {d['attempts']} attempt(s): {d['error']}", highlight=False)
    console.print(f"silences: {len(doc['silences'])} active", highlight=False)
    console.print(f"channels: {', '.join(f'{k} ({v})' for k, v in doc['channels'].items()) or 'none'}",
                  highlight=False)


def _iso_ms(ms) -> str | None:
    if ms in (None, ""):
        return None
    return datetime.fromtimestamp(int(ms) / 1000, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"
