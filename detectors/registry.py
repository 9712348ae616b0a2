"""The model registry and hot reload: verify, load, warm up, swap between batches (DESIGN §5).

A registry is a directory (or any fsspec URL) of versions::

    <root>/<name>/<version>/<name>.onnx     the graph
    <root>/<name>/<version>/<name>.json     its model card (sha256 of the .onnx inside)

:meth:`ModelRegistry.publish` puts a model there and returns the :class:`ModelAnnouncement`
the trainer sends on the ``models`` topic. A processor hands each announcement to a
:class:`Reloader`, which fetches the file (remote URLs into a content-addressed cache),
checks the bytes against the announced sha256 *and* the card's, loads and warms it up in a
worker thread while the old model keeps serving, and only then swaps the
:class:`ModelSlot`. The processor reads ``slot.current`` once per batch, so a batch is
always served by one model from start to end and a swap lands between batches.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

from detectors.audio import AudioDetector, AudioDetectorConfig
from detectors.base import Detector, ModelRefused
from detectors.card import ModelCard, sha256_file
from detectors.vision import VisionDetector, VisionDetectorConfig
from skysentry.messages import ModelAnnouncement

log = logging.getLogger(__name__)

AnyDetectorConfig = VisionDetectorConfig | AudioDetectorConfig
_CLASSES: dict[str, type[Detector]] = {"vision": VisionDetector, "audio": AudioDetector}


def load_detector(config: AnyDetectorConfig, *, expect_sha256: str | None = None) -> Detector:
    """Verify and load the detector a config names (not warmed up)."""
    cls = _CLASSES[config.type]
    return cls.load(config, expect_sha256=expect_sha256)  # type: ignore[attr-defined]


def _is_local(uri: str) -> bool:
    scheme = urlparse(uri).scheme
    return scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt")


def _local_path(uri: str) -> Path:
    return Path(urlparse(uri).path if uri.startswith("file://") else uri)


class ModelRegistry:
    """A directory or fsspec URL of model versions, plus a local cache for remote ones."""

    def __init__(self, root: str | Path = "models/registry", cache_dir: Path | None = None) -> None:
        self.root = str(root)
        self.cache_dir = Path(cache_dir or Path(tempfile.gettempdir()) / "skysentry-model-cache")

    # -- writing -------------------------------------------------------------------------

    def publish(self, model_path: Path, card: ModelCard | None = None) -> ModelAnnouncement:
        """Copy a model and its card into ``<root>/<name>/<version>/``; return its announcement.

        Only local roots are written here; publishing to object storage is the trainer's
        ``fsspec`` upload of the same two files."""
        model_path = Path(model_path)
        card = card or ModelCard.load(model_path)
        if sha256_file(model_path) != card.sha256:
            raise ModelRefused(f"{model_path}: does not match its card's sha256; re-export the card")
        if not _is_local(self.root):
            raise NotImplementedError("publish() writes local registries; upload both files with fsspec")
        target = _local_path(self.root) / card.name / card.version
        target.mkdir(parents=True, exist_ok=True)
        onnx_path = target / f"{card.name}.onnx"
        for src, dst in ((model_path, onnx_path), (ModelCard.card_path(model_path), ModelCard.card_path(onnx_path))):
            tmp = dst.with_suffix(dst.suffix + ".part")
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)  # readers never see half a file
        return ModelAnnouncement(name=card.name, version=card.version, task=card.task,
                                 uri=str(onnx_path.resolve()), sha256=card.sha256,
                                 card_uri=str(ModelCard.card_path(onnx_path).resolve()))

    # -- reading -------------------------------------------------------------------------

    def versions(self, name: str) -> list[str]:
        """Versions of ``name`` in a local registry, oldest card first."""
        base = _local_path(self.root) / name
        if not base.is_dir():
            return []
        found = []
        for d in base.iterdir():
            card_path = d / f"{name}.json"
            if card_path.is_file():
                try:
                    found.append((ModelCard.model_validate_json(card_path.read_text()).created_at, d.name))
                except ValueError:
                    log.warning("ignoring %s: invalid model card", card_path)
        return [v for _, v in sorted(found)]

    def path_of(self, name: str, version: str) -> Path:
        return _local_path(self.root) / name / version / f"{name}.onnx"

    def resolve(self, uri: str, sha256: str, card_uri: str | None = None) -> Path:
        """A local path holding the model ``uri`` names, with its card beside it.

        Relative local paths are taken relative to the registry root when they do not exist
        as given. Remote files are downloaded to ``<cache>/<sha256>.onnx`` (and ``.json``)."""
        if _is_local(uri):
            path = _local_path(uri)
            if not path.is_absolute() and not path.exists() and _is_local(self.root):
                path = _local_path(self.root) / path
            if card_uri and _is_local(card_uri):
                card = _local_path(card_uri)
                if card != ModelCard.card_path(path):
                    return self._cache_copy(path, card, sha256)
            return path
        return self._fetch(uri, card_uri or _swap_suffix(uri), sha256)

    def _cache_copy(self, model: Path, card: Path, sha256: str) -> Path:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        dst = self.cache_dir / f"{sha256}.onnx"
        for src, d in ((model, dst), (card, ModelCard.card_path(dst))):
            tmp = d.with_suffix(d.suffix + ".part")
            shutil.copyfile(src, tmp)
            os.replace(tmp, d)
        return dst

    def _fetch(self, uri: str, card_uri: str, sha256: str) -> Path:
        try:
            import fsspec  # only remote registries need it
        except ImportError:  # pragma: no cover - depends on the install
            raise ModelRefused(f"{uri}: remote registries need fsspec (pip install fsspec)") from None
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        dst = self.cache_dir / f"{sha256}.onnx"
        if dst.is_file() and sha256_file(dst) == sha256 and ModelCard.card_path(dst).is_file():
            return dst
        for src, d in ((uri, dst), (card_uri, ModelCard.card_path(dst))):
            tmp = d.with_suffix(d.suffix + ".part")
            try:
                with fsspec.open(src, "rb") as fin, open(tmp, "wb") as fout:
                    shutil.copyfileobj(fin, fout, 1 << 20)
            except Exception as exc:
                raise ModelRefused(f"cannot fetch {src}: {exc}") from None
            os.replace(tmp, d)
        return dst


def _swap_suffix(uri: str) -> str:
    return uri[: -len(".onnx")] + ".json" if uri.endswith(".onnx") else uri + ".json"


def load_announced(ann: ModelAnnouncement, base: AnyDetectorConfig, registry: ModelRegistry,
                   max_batch: int) -> Detector:
    """Fetch, verify (announced sha256 = file = card), load and warm up (blocking: run it in a
    thread while the old model keeps serving)."""
    if ann.task != base.type:
        raise ModelRefused(f"announced task {ann.task!r}, this processor serves {base.type!r}")
    path = registry.resolve(ann.uri, ann.sha256, ann.card_uri)
    config = base.model_copy(update={"model": path})
    detector = load_detector(config, expect_sha256=ann.sha256)
    if (detector.card.name, detector.card.version) != (ann.name, ann.version):
        raise ModelRefused(f"card says {detector.card.name}@{detector.card.version}, "
                           f"the announcement {ann.name}@{ann.version}")
    detector.warm_up(max_batch)
    return detector


class ModelSlot:
    """The model a processor serves now. Read ``current`` once per batch; ``swap`` replaces it
    in one assignment, so a batch never mixes two models."""

    def __init__(self, detector: Detector) -> None:
        self._current = detector
        self.swaps = 0

    @property
    def current(self) -> Detector:
        return self._current

    def swap(self, new: Detector) -> Detector:
        old, self._current = self._current, new
        self.swaps += 1
        return old


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    result: Literal["loaded", "refused", "ignored"]
    reason: str
    detector: Detector | None = None


class Reloader:
    """Applies announcements to a :class:`ModelSlot` without ever leaving it empty or broken."""

    def __init__(self, slot: ModelSlot, base: AnyDetectorConfig, registry: ModelRegistry, max_batch: int,
                 accept_names: list[str] | None = None) -> None:
        self.slot = slot
        self.base = base
        self.registry = registry
        self.max_batch = max_batch
        self.accept_names = accept_names
        self._lock = asyncio.Lock()

    def _decide(self, ann: ModelAnnouncement) -> str | None:
        """Why this announcement is not for us, or None when it is."""
        if ann.task != self.base.type:
            return f"task {ann.task!r} is not {self.base.type!r}"
        if self.accept_names is not None and ann.name not in self.accept_names:
            return f"model name {ann.name!r} is not in {self.accept_names}"
        current = self.slot.current
        if ann.sha256 == current.sha256:
            return f"{ann.name}@{ann.version} is already serving"
        return None

    def load_blocking(self, ann: ModelAnnouncement) -> Detector:
        return load_announced(ann, self.base, self.registry, self.max_batch)

    async def apply(self, ann: ModelAnnouncement) -> ReloadOutcome:
        async with self._lock:
            why_not = self._decide(ann)
            if why_not:
                return ReloadOutcome("ignored", why_not)
            try:
                detector = await asyncio.to_thread(self.load_blocking, ann)
            except ModelRefused as exc:
                log.error("refused model %s@%s: %s; still serving %s", ann.name, ann.version, exc,
                          self.slot.current.describe())
                return ReloadOutcome("refused", str(exc))
            except Exception as exc:  # a graph ORT rejects at run time, a bad shape, ...
                log.exception("refused model %s@%s: it failed to load or warm up", ann.name, ann.version)
                return ReloadOutcome("refused", f"failed to load or warm up: {exc}")
            old = self.slot.swap(detector)
            log.info("now serving %s (was %s)", detector.describe(), old.describe())
            return ReloadOutcome("loaded", f"{ann.name}@{ann.version}", detector)
