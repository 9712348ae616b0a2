"""Alert evidence (issue 15): where it is kept, how long, and the signed links to it.

    Dispatcher (firing, repeat) ─▶ EvidenceCollector (alerting/capture.py) reads the input
        back from sensor.frames / sensor.audio by its lineage and writes one evidence set:
            <alert_id>/<detection_id>/snapshot.jpg  frame.jpg  clip.gif      (vision)
            <alert_id>/<detection_id>/window.wav    spectrogram.png          (audio)
            <alert_id>/<detection_id>/meta.json     written last: the set is complete
    ─▶ notifications carry signed URLs ─▶ ``skysentry console`` serves them (console/app.py)

:class:`EvidenceStore` is one interface over a local directory (the default, under the state
dir ``.skysentry/``) or any fsspec URL (``s3://bucket/prefix``, ``memory://…``); retention
(:meth:`EvidenceStore.prune`) removes whole sets by age and then, oldest first, until the total
size fits, so a busy site cannot fill the disk.

A link is ``<public_url>/evidence/<key>?exp=<unix s>&sig=<hex>`` with
``sig = HMAC-SHA256(secret, "evidence\\n" + key + "\\n" + exp)``: it dies at ``exp``, and
without the secret none can be made or guessed. The secret comes from the environment
(``SKYSENTRY_EVIDENCE__SECRET``); without it evidence is still stored but notifications
carry no links and the console serves none.

This module is what the console shares with the alerting: it imports neither Kafka nor
OpenCV.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from alerting.durations import Duration

log = logging.getLogger(__name__)

# file name in a set → (content type, field of skysentry.messages.EvidenceMedia)
FILES: dict[str, tuple[str, str]] = {
    "snapshot.jpg": ("image/jpeg", "snapshot"),
    "frame.jpg": ("image/jpeg", "frame"),
    "clip.gif": ("image/gif", "clip"),
    "window.wav": ("audio/wav", "audio"),
    "spectrogram.png": ("image/png", "spectrogram"),
}
META = "meta.json"
_PART = r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
_KEY = re.compile(rf"^{_PART}/{_PART}/{_PART}$")


class EvidenceSettings(BaseModel):
    """The ``evidence:`` section, read by the alerting (writes) and the console (serves)."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="store evidence when an alert fires and on each repeat")
    url: str = Field(".skysentry/evidence", description="a directory (relative: to the working directory) or an "
                     "fsspec URL, e.g. s3://bucket/skysentry-evidence")
    storage_options: dict[str, Any] = Field(default_factory=dict, description="fsspec options of the URL's filesystem")
    public_url: str = Field("http://127.0.0.1:8090", description="the console as the receivers of notifications "
                            "reach it (Slack and Twilio fetch the picture from there)")
    secret: SecretStr | None = Field(None, description="HMAC key of the links; from the environment: "
                                     "SKYSENTRY_EVIDENCE__SECRET. None: no links are made or served")
    link_ttl: Duration = Field(86400.0, gt=0, description="a link stops working this long after its notification")
    max_age: Duration = Field(7 * 86400.0, gt=0, description="sets older than this are removed")
    max_bytes: int = Field(2 * 1024**3, ge=1, description="past this total, the oldest sets are removed")
    prune_interval: Duration = Field(300.0, gt=0, description="how often retention runs")
    clip_before: Duration = Field(2.0, description="seconds of frames before the evidence frame in the clip")
    clip_after: Duration = Field(2.0, description="seconds of frames after it (those already written)")
    clip_max_frames: int = Field(30, ge=0, description="at most this many frames in the clip (0: no clip)")
    clip_width: int = Field(480, ge=64, description="clip frames are scaled down to this width")
    capture_timeout: Duration = Field(5.0, gt=0, description="a notification waits at most this long for its "
                                      "evidence; then it goes without")


# ------------------------------------------------------------------------------------ links


def check_key(key: str) -> str:
    """``<alert>/<detection>/<file>`` of safe characters (no ``..``, no absolute path)."""
    if not _KEY.match(key):
        raise ValueError(f"not an evidence key: {key[:200]!r}")
    return key


def signature(secret: str | bytes, key: str, expires: int) -> str:
    k = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(k, f"evidence\n{key}\n{int(expires)}".encode(), hashlib.sha256).hexdigest()


def signed_url(public_url: str, secret: str | bytes, key: str, expires: int) -> str:
    check_key(key)
    return f"{public_url.rstrip('/')}/evidence/{key}?exp={int(expires)}&sig={signature(secret, key, expires)}"


def verify(secret: str | bytes, key: str, expires: str | None, sig: str | None, *, now: float | None = None) -> bool:
    """True for our signature of this key and expiry, not yet expired."""
    if not expires or not sig or not expires.isdigit():
        return False
    if int(expires) < (time.time() if now is None else now):
        return False
    return hmac.compare_digest(signature(secret, key, int(expires)), sig)


# ------------------------------------------------------------------------------------ store


@dataclass(frozen=True)
class EvidenceSet:
    prefix: str  # <alert_id>/<detection_id>
    stored_at: float  # newest file's time (unix s)
    size: int  # bytes, all files


@dataclass(frozen=True)
class Pruned:
    removed: int  # sets
    removed_bytes: int
    kept: int
    kept_bytes: int


class EvidenceStore:
    """Evidence sets in a directory or an fsspec filesystem. Blocking calls: run them in a
    thread from async code."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None):
        if "://" not in url:
            url = str(Path(url).expanduser().resolve())
        self.url = url
        self.fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
        self.root = root.rstrip("/")
        self.local = isinstance(self.fs, LocalFileSystem)

    @classmethod
    def of(cls, settings: EvidenceSettings) -> "EvidenceStore":
        return cls(settings.url, settings.storage_options)

    def path(self, key: str) -> str:
        return f"{self.root}/{check_key(key)}"

    def put(self, key: str, data: bytes) -> None:
        """Write one file; a reader never sees it half written (a local write goes to a
        temporary name and is renamed; object stores are atomic per object)."""
        path = self.path(key)
        parent = path.rsplit("/", 1)[0]
        self.fs.makedirs(parent, exist_ok=True)
        if self.local:
            tmp = f"{parent}/.{uuid.uuid4().hex}.part"
            self.fs.pipe_file(tmp, data)
            self.fs.mv(tmp, path)
        else:
            self.fs.pipe_file(path, data)

    def get(self, key: str) -> bytes | None:
        try:
            return self.fs.cat_file(self.path(key))
        except (FileNotFoundError, IsADirectoryError):
            return None

    def exists(self, key: str) -> bool:
        return self.fs.exists(self.path(key))

    def meta(self, prefix: str) -> dict | None:
        """The set's meta.json (None: no complete set under this prefix)."""
        raw = self.get(f"{prefix}/{META}")
        return json.loads(raw) if raw else None

    def sets(self) -> list[EvidenceSet]:
        """Every set (complete or not), oldest first."""
        if not self.fs.exists(self.root):
            return []
        found: dict[str, list[float | int]] = {}
        for path, info in self.fs.find(self.root, detail=True).items():
            parts = path[len(self.root):].lstrip("/").split("/")
            if not path.startswith(self.root + "/") or len(parts) != 3:
                continue
            entry = found.setdefault("/".join(parts[:2]), [0.0, 0])
            entry[0] = max(entry[0], _mtime(info))
            entry[1] += int(info.get("size") or 0)
        return sorted((EvidenceSet(p, float(t), int(s)) for p, (t, s) in found.items()), key=lambda e: e.stored_at)

    def prune(self, max_age_s: float, max_bytes: int, *, now: float | None = None) -> Pruned:
        """Remove sets older than ``max_age_s``, then the oldest until the rest fit in ``max_bytes``."""
        now = time.time() if now is None else now
        sets = self.sets()
        total = sum(s.size for s in sets)
        removed = removed_bytes = 0
        for s in sets:
            if s.stored_at >= now - max_age_s and total <= max_bytes:
                break  # oldest first: everything after is younger
            try:
                self.fs.rm(f"{self.root}/{s.prefix}", recursive=True)
            except FileNotFoundError:
                pass  # another replica got there first
            total -= s.size
            removed += 1
            removed_bytes += s.size
        if self.local and removed:  # empty alert directories
            for d in {s.prefix.split("/")[0] for s in sets[:removed]}:
                try:
                    Path(self.root, d).rmdir()
                except OSError:
                    pass
        return Pruned(removed, removed_bytes, len(sets) - removed, total)


def _mtime(info: dict) -> float:
    """Modification time from fsspec's info of any filesystem (local: mtime; memory: created;
    s3: LastModified; gcs: updated)."""
    for name in ("mtime", "LastModified", "last_modified", "updated", "created"):
        v = info.get(name)
        if v is None:
            continue
        if isinstance(v, (int, float)):
            return float(v)
        if isinstance(v, datetime):
            return v.timestamp()
        try:
            return datetime.fromisoformat(str(v).replace("Z", "+00:00")).timestamp()
        except ValueError:
            continue
    return 0.0
