"""Datasets on disk: class-folder listings, ``files.csv`` metadata, group splits, digests.

No torch here: ``skysentry eval`` uses this module from a serving install.

A *class folder* is ``DIR/<class>/<file>``; ``drone/`` is the positive class and every other
subfolder is negative. The development sets in ``../shared/data`` add a ``files.csv`` whose
``group`` column names the source recording / shoot / near-duplicate cluster. Splits are by
group, never by file: :func:`split_of` hashes ``(seed, group)`` into [0, 1) and cuts at 0.8 /
0.9, so one group always lands in one split, in every dataset that has it (DroneNet and the
bird/drone set share a few photos under one group name), and adding files never reshuffles
the others.

A dataset with few groups per class (the field sets: ddd_video has 5-11 groups a class) would
come out of that cut with whole classes missing from test (seed 1337 puts no bird, airplane or
helicopter clip of ddd_video in test). :func:`group_splits` therefore splits such a dataset
*within each class*: the class's groups ordered by the same seeded hash, the first 20 % (at
least one) to test, the next 15 % (at least one) to val, the rest to train.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Literal

Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")
DEFAULT_SEED = 1337
POSITIVE = "drone"
AUDIO_EXT = {".wav", ".flac", ".ogg"}
IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
VIDEO_EXT = {".mp4", ".avi", ".mkv", ".mov"}
EXTENSIONS = {"audio": AUDIO_EXT, "image": IMAGE_EXT, "video": VIDEO_EXT}

# Shortcut guards for known datasets (shared/data/README.md), keyed by files.csv source_repo.
# DroneNet images carry a ~22 px "shutterstock.com" footer on every (positive) image.
KNOWN_QUIRKS: dict[str, dict] = {
    "chuanenlin/drone-net": {"crop_bottom": 22},
}


@dataclass(frozen=True)
class Item:
    """One file of a class folder."""

    path: Path  # absolute
    rel: str  # relative to the dataset root, posix
    label: str  # the class folder name
    group: str  # source group (files.csv), else the file stem
    md5: str | None = None
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def positive(self) -> bool:
        return self.label == POSITIVE


def split_of(group: str, seed: int = DEFAULT_SEED, fractions: tuple[float, float] = (0.8, 0.9)) -> Split:
    """The split a group belongs to: a seeded hash of the group name cut at 80/90 %."""
    u = _hash01(group, seed)
    return "train" if u < fractions[0] else "val" if u < fractions[1] else "test"


STRATIFY_BELOW = 20  # groups in some class: fewer → split within each class
STRATIFIED = (0.20, 0.15)  # test, val shares of each class's groups


def _hash01(group: str, seed: int) -> float:
    digest = hashlib.sha256(f"{seed}:{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def group_splits(items: Iterable[Item], seed: int = DEFAULT_SEED) -> dict[str, Split]:
    """The split of every group of one dataset: :func:`split_of`, or, when some class has
    fewer than ``STRATIFY_BELOW`` groups, a split within each class (module docstring)."""
    by_class: dict[str, set[str]] = {}
    for it in items:
        by_class.setdefault(it.label, set()).add(it.group)
    if not by_class or min(len(g) for g in by_class.values()) >= STRATIFY_BELOW:
        return {g: split_of(g, seed) for gs in by_class.values() for g in gs}
    out: dict[str, Split] = {}
    for groups in by_class.values():
        ranked = sorted(groups - out.keys(), key=lambda g: _hash01(g, seed))
        n_test = max(1, round(STRATIFIED[0] * len(ranked)))
        n_val = max(1, round(STRATIFIED[1] * len(ranked))) if len(ranked) > 2 else 0
        for i, g in enumerate(ranked):
            out[g] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    return out


def read_files_csv(root: Path) -> dict[str, dict]:
    """``files.csv`` rows keyed by relative path, or {} when the folder has none."""
    path = Path(root) / "files.csv"
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        return {row["file"]: row for row in csv.DictReader(f)}


def dataset_quirks(root: Path) -> dict:
    """Shortcut guards that apply to this dataset (e.g. ``crop_bottom`` px), from its files.csv."""
    rows = read_files_csv(root)
    repos = {r.get("source_repo", "") for r in rows.values()}
    out: dict = {}
    for repo in repos:
        out.update(KNOWN_QUIRKS.get(repo, {}))
    return out


def list_items(root: Path, kind: Literal["audio", "image", "video"], split: Split | None = None,
               seed: int = DEFAULT_SEED) -> list[Item]:
    """Every audio, image or video file under ``root/<class>/``, sorted, optionally one split only.

    Without a files.csv each file is its own group (a user folder has no better information;
    put one recording's chunks in a shared files.csv ``group`` to keep them together).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder {root} does not exist")
    exts = EXTENSIONS[kind]
    rows = read_files_csv(root)
    items: list[Item] = []
    for cls_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for f in sorted(cls_dir.rglob("*")):
            if f.suffix.lower() not in exts or not f.is_file():
                continue
            rel = f.relative_to(root).as_posix()
            row = rows.get(rel, {})
            group = row.get("group") or f"{cls_dir.name}/{f.stem}"
            items.append(Item(f, rel, cls_dir.name, group, row.get("md5") or None, row))
    if not items:
        raise FileNotFoundError(f"no {kind} files under {root}/<class>/ (expected e.g. {root}/drone/*)")
    if split is not None:
        splits = group_splits(items, seed)
        items = [it for it in items if splits[it.group] == split]
    return items


def split_items(items: Iterable[Item], seed: int = DEFAULT_SEED) -> dict[Split, list[Item]]:
    """Items of one dataset by split (:func:`group_splits`)."""
    items = list(items)
    splits = group_splits(items, seed)
    out: dict[Split, list[Item]] = {s: [] for s in SPLITS}
    for it in items:
        out[splits[it.group]].append(it)
    return out


def file_md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def data_digest(entries: Iterable[tuple[str, str]]) -> str:
    """sha256 over the sorted ``relative-path md5`` lines of the files a model saw."""
    h = hashlib.sha256()
    for rel, md5 in sorted(set(entries)):
        h.update(f"{rel} {md5}\n".encode())
    return "sha256:" + h.hexdigest()


def item_digest_entries(items: Iterable[Item]) -> list[tuple[str, str]]:
    """(``<dataset folder>/<rel>``, md5) for each item; md5 from files.csv or computed."""
    return [(f"{it.path.parents[len(Path(it.rel).parts) - 1].name}/{it.rel}", it.md5 or file_md5(it.path))
            for it in items]
