"""Publishing: copy a model + card into the registry and announce it on ``models``.

The registry layout and the copy are :class:`detectors.registry.ModelRegistry`'s (one
definition for writer and readers). The announcement is a :class:`ModelAnnouncement`,
CloudEvents structured mode, keyed by model name on the compacted ``models`` topic, sent
with the kernel's idempotent producer. When no broker answers, the model is still in the
registry and the caller is told that nothing was announced.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from skysentry.config import Settings
from skysentry.messages import ModelAnnouncement, encode_structured

log = logging.getLogger(__name__)

DEFAULT_REGISTRY = "models/registry"
SOURCE = "skysentry/trainer"


def registry_root(registry: str | Path | None = None) -> str:
    return str(registry or os.environ.get("SKYSENTRY_REGISTRY") or DEFAULT_REGISTRY)


def publish_model(model_path: Path, registry: str | Path | None = None) -> ModelAnnouncement:
    from detectors.registry import ModelRegistry

    return ModelRegistry(registry_root(registry)).publish(Path(model_path))


async def announce(ann: ModelAnnouncement, settings: Settings | None = None, timeout_s: float = 15.0) -> bool:
    """Send ``ann`` to the models topic; False (logged) when the broker cannot be reached."""
    from skysentry.bus import make_producer

    settings = settings or Settings.load()
    value, headers = encode_structured(ann, source=SOURCE)
    producer = make_producer(settings.kafka, request_timeout_ms=int(timeout_s * 1000))
    try:
        await asyncio.wait_for(producer.start(), timeout_s)
    except Exception as exc:  # noqa: BLE001 - any connection failure means "not announced"
        log.warning("not announced: Kafka at %s unreachable (%s)", settings.kafka.bootstrap_servers, exc)
        try:
            await producer.stop()
        except Exception:  # noqa: BLE001
            pass
        return False
    try:
        await asyncio.wait_for(producer.send_and_wait(settings.topics.models, value=value, key=ann.name.encode(),
                                                      headers=headers), timeout_s)
        return True
    finally:
        await producer.stop()


def publish_and_announce(model_path: Path, registry: str | Path | None = None, settings: Settings | None = None,
                         kafka: bool = True) -> tuple[ModelAnnouncement, bool]:
    ann = publish_model(model_path, registry)
    sent = asyncio.run(announce(ann, settings)) if kafka else False
    return ann, sent
