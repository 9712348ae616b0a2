"""Structured logging: one JSON object per line (or rich console output for people).

Secrets never reach a log: settings hold them as ``SecretStr`` (printed as ``**********``),
and a filter masks passwords inside URLs (``redis://:pw@host`` → ``redis://:***@host``) in
case one slips into a message.

Expected, self-healing broker states that the Kafka client logs at ERROR (a leader election, a
coordinator still loading) are written at INFO with what they mean (:class:`TransientBrokerFilter`).
A recurring warning or error is written once, then at most once per interval with the count of
those left out (:class:`RepeatFilter`, on every service's handler): a broker outage must not
turn into hundreds of megabytes of the same line.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
import time
from datetime import datetime, timezone

_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@", re.I)


def redact(text: str) -> str:
    return _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for key, value in getattr(record, "fields", {}).items():
            out[key] = value
        if record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(out, default=str)


class _RedactFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "://" in record.msg:
            record.msg = redact(record.msg)
        return True


_DIGITS = re.compile(r"\d+(?:\.\d+)?")


class RepeatFilter(logging.Filter):
    """Rate-limits recurring warnings and errors: the first of a kind passes; more of it within
    ``interval_s`` are counted, not written; the first one after the interval passes with
    ``[N more like this since the last one written]`` (and a ``repeated`` field). A kind is the logger,
    the level and the message with its numbers blanked, plus the structured fields (so two
    alerts going stale are two kinds, a retry delay of 0.5 s or 0.7 s one). INFO and below
    always pass: they are events, not symptoms."""

    def __init__(self, interval_s: float = 30.0, clock=time.monotonic, max_kinds: int = 2000):
        super().__init__()
        self.interval_s = interval_s
        self._clock = clock
        self._max_kinds = max_kinds
        self._kinds: dict[tuple, list] = {}  # kind -> [when last written, left out since]
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        fields = getattr(record, "fields", None) or {}
        kind = (record.name, record.levelno, _DIGITS.sub("#", record.getMessage()),
                _DIGITS.sub("#", json.dumps(fields, sort_keys=True, default=str)))
        now = self._clock()
        with self._lock:
            seen = self._kinds.get(kind)
            if seen is not None and now - seen[0] < self.interval_s:
                seen[1] += 1
                return False
            left_out = seen[1] if seen else 0
            if len(self._kinds) >= self._max_kinds:  # forget kinds quiet for a whole interval
                self._kinds = {k: v for k, v in self._kinds.items() if now - v[0] < self.interval_s}
            self._kinds[kind] = [now, 0]
        if left_out:
            record.msg = f"{record.getMessage()} [{left_out} more like this since the last one written]"
            record.args = None
            record.fields = {**fields, "repeated": left_out}
        return True


_TRANSIENT = {  # Kafka error → what it means while a broker starts or moves leadership
    "NotLeaderForPartitionError": "a partition's leader is moving or being elected",
    "LeaderNotAvailableError": "a partition's leader is being elected",
    "GroupCoordinatorNotAvailableError": "the broker is still creating its consumer-offsets topic",
    "NotCoordinatorForGroupError": "the group's coordinator moved",
    "CoordinatorLoadInProgressError": "the group's coordinator is still loading offsets",
}


class TransientBrokerFilter(logging.Filter):
    """The Kafka client logs expected, self-healing broker states (a leader election, a
    coordinator still loading) at ERROR; this writes them at INFO with what they mean, so an
    ERROR line always needs a person. Records of other loggers, and other errors, are untouched;
    one that ends below the root logger's level is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not record.name.startswith(("aiokafka", "kafka")):
            return True
        message = record.getMessage()
        meaning = next((m for name, m in _TRANSIENT.items() if name in message), None)
        if meaning is None:
            return True
        record.levelno, record.levelname = logging.INFO, "INFO"
        record.msg, record.args = f"{message} (transient: {meaning}; the client retries)", None
        return logging.INFO >= logging.getLogger().getEffectiveLevel()


def setup_logging(level: str = "INFO", json_format: bool = True, *, repeat_interval_s: float = 30.0) -> None:
    """Configure the root logger once per process."""
    root = logging.getLogger()
    root.handlers.clear()
    if json_format:
        handler: logging.Handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
    else:
        from rich.logging import RichHandler

        handler = RichHandler(show_path=False, rich_tracebacks=False)
    handler.addFilter(_RedactFilter())
    handler.addFilter(TransientBrokerFilter())
    handler.addFilter(RepeatFilter(repeat_interval_s))
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "kafka", "faust", "mode"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def capture_native_stderr(logger_name: str = "native") -> None:
    """Route what C libraries write straight to file descriptor 2 (PortAudio's ``Expression
    ... failed``, ALSA's ``ALSA lib pcm.c: ...``, FFmpeg's ``[rtsp @ ...]``) into the log at
    DEBUG, one record per line, instead of raw text between the JSON lines; the cause is logged
    in words by the producer. Python's own stderr (the log handler, error messages) moves to a
    copy of the original descriptor. Call once, after :func:`setup_logging`, in a process that
    owns its stderr (a producer's CLI command)."""
    if getattr(capture_native_stderr, "installed", False):
        return
    capture_native_stderr.installed = True
    real = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    old, sys.stderr = sys.stderr, real
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream in (old, sys.__stderr__):
            handler.setStream(real)
    native = logging.getLogger(logger_name)

    def pump() -> None:  # never blocks on logging: a full pipe would stall the C library's writes
        with os.fdopen(read_fd, "rb") as lines:
            for line in lines:
                text = line.decode("utf-8", "replace").rstrip()
                if text:
                    native.debug("%s", text)

    threading.Thread(target=pump, name="native-stderr", daemon=True).start()


def kv(**fields) -> dict:
    """``log.info("sent", extra=kv(topic=t, n=3))`` adds fields to the JSON line."""
    return {"fields": fields}
