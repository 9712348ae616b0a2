"""Structured logging: one JSON object per line (or rich console output for people).

Secrets never reach a log: settings hold them as ``SecretStr`` (printed as ``**********``),
and a filter masks passwords inside URLs (``redis://:pw@host`` → ``redis://:***@host``) in
case one slips into a message.
"""

from __future__ import annotations

import json
import logging
import re
import sys
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


def setup_logging(level: str = "INFO", json_format: bool = True) -> None:
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
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("aiokafka", "kafka", "faust", "mode"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def kv(**fields) -> dict:
    """``log.info("sent", extra=kv(topic=t, n=3))`` adds fields to the JSON line."""
    return {"fields": fields}
