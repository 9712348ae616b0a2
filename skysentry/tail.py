"""Read a topic and describe each record for people (``skysentry tail``).

Sensor records are summarised (a frame as its size and dimensions, an audio window as its
length and level), JSON records are decoded, anything else is shown as its size."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import numpy as np

from skysentry.bus import make_consumer
from skysentry.config import KafkaSettings
from skysentry.messages import ContractError, decode_audio, decode_frame, decode_structured, header


def describe(record) -> dict:
    """A JSON-able description of one consumer record."""
    headers = {k: (v.decode(errors="replace") if v is not None else None) for k, v in (record.headers or ())}
    row = {"topic": record.topic, "partition": record.partition, "offset": record.offset,
           "key": record.key.decode(errors="replace") if record.key else None,
           "timestamp_ms": record.timestamp, "headers": headers}
    ce_type = header(record.headers, "ce_type") or ""
    try:
        if ce_type.startswith("skysentry.frame."):
            event = decode_frame(record.value, record.headers)
            row["payload"] = {"bytes": len(record.value), "width": event.width, "height": event.height}
            row["summary"] = f"frame seq={event.seq} {event.width}x{event.height} {len(record.value) / 1024:.1f} KiB"
        elif ce_type.startswith("skysentry.audio."):
            event, pcm = decode_audio(record.value, record.headers)
            rms = float(np.sqrt(np.mean((pcm.astype(np.float32) / 32768) ** 2))) if len(pcm) else 0.0
            dbfs = 20 * np.log10(max(rms, 1e-9))
            row["payload"] = {"samples": event.samples, "samplerate": event.samplerate, "rms_dbfs": round(dbfs, 1)}
            row["summary"] = f"audio seq={event.seq} {event.samples / event.samplerate:.2f}s @{event.samplerate} Hz {dbfs:.1f} dBFS"
        else:
            envelope, message = decode_structured(record.value)
            row["payload"] = {"envelope_id": envelope.id, "type": envelope.type, "data": message.model_dump(mode="json")}
            row["summary"] = f"{envelope.type} {json.dumps(row['payload']['data'], default=str)[:200]}"
    except ContractError as exc:
        row["payload"] = {"bytes": len(record.value or b""), "error": str(exc)}
        row["summary"] = f"{len(record.value or b'')} bytes (not a SkySentry event: {exc})"
    return row


async def tail_topic(kafka: KafkaSettings, topic: str, on_record: Callable[[dict], None], *,
                     max_records: int | None = None, from_beginning: bool = False,
                     idle_timeout_s: float | None = None) -> int:
    """Call ``on_record`` for each record until ``max_records`` or ``idle_timeout_s`` of quiet.
    Reads without a consumer group, so it never moves anybody's offsets."""
    consumer = make_consumer(kafka, topic, group_id=None,
                             auto_offset_reset="earliest" if from_beginning else "latest")
    await consumer.start()
    n = 0
    try:
        while max_records is None or n < max_records:
            batch = await consumer.getmany(timeout_ms=500, max_records=max_records and (max_records - n))
            if not batch:
                if idle_timeout_s is not None:
                    idle_timeout_s -= 0.5
                    if idle_timeout_s <= 0:
                        break
                continue
            for records in batch.values():
                for record in records:
                    on_record(describe(record))
                    n += 1
    finally:
        await consumer.stop()
    return n
