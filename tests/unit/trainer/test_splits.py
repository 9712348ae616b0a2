"""Group splits: deterministic, ~80/10/10, and no group ever straddles two splits."""

from __future__ import annotations

import csv
from collections import defaultdict

import pytest

from trainer.data import Item, group_splits, list_items, split_items, split_of

from .conftest import SHARED


def test_split_is_deterministic_and_seeded():
    groups = [f"g{i}" for i in range(2000)]
    a = [split_of(g, 1) for g in groups]
    assert a == [split_of(g, 1) for g in groups]
    assert a != [split_of(g, 2) for g in groups]
    share = {s: a.count(s) / len(a) for s in ("train", "val", "test")}
    assert share["train"] == pytest.approx(0.8, abs=0.03)
    assert share["val"] == pytest.approx(0.1, abs=0.02)
    assert share["test"] == pytest.approx(0.1, abs=0.02)


def test_folder_without_files_csv_uses_one_group_per_file(audio_folder):
    items = list_items(audio_folder, "audio")
    assert len(items) == 5 and len({it.group for it in items}) == 5
    assert {it.label for it in items} == {"drone", "background"}
    assert sum(len(v) for v in split_items(items).values()) == 5


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data not present")
@pytest.mark.parametrize("dataset,kind", [("drone_audio_alemadi", "audio"), ("drone_net", "image"),
                                          ("drone_bird_cls", "image"), ("ddd_video", "video"),
                                          ("ddd_audio", "audio")])
def test_no_group_straddles_two_splits(dataset, kind):
    items = list_items(SHARED / dataset, kind)
    splits_of_group = defaultdict(set)
    for split, its in split_items(items).items():
        for it in its:
            splits_of_group[it.group].add(split)
    assert all(len(s) == 1 for s in splits_of_group.values())
    # the group is the files.csv one, not the file name
    with open(SHARED / dataset / "files.csv") as f:
        rows = {r["file"]: r["group"] for r in csv.DictReader(f)}
    assert all(rows[it.rel] == it.group for it in items)
    assert {s for v in splits_of_group.values() for s in v} == {"train", "val", "test"}


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data not present")
def test_shared_groups_land_in_one_split_across_datasets():
    """DroneNet and the bird/drone set share photos under one group name: same split in both."""
    net = {it.group: split_of(it.group) for it in list_items(SHARED / "drone_net", "image")}
    cls = {it.group: split_of(it.group) for it in list_items(SHARED / "drone_bird_cls", "image")}
    for g in set(net) & set(cls):
        assert net[g] == cls[g]


def _items(groups_per_class: dict[str, int], files_per_group: int = 3) -> list[Item]:
    from pathlib import Path

    return [Item(Path(f"/x/{c}/{g}-{k}.wav"), f"{c}/{g}-{k}.wav", c, f"{c}-{g}")
            for c, n in groups_per_class.items() for g in range(n) for k in range(files_per_group)]


def test_few_groups_per_class_are_split_within_each_class():
    """ddd_video has 5-11 groups a class: a hash cut over all groups can leave a whole class out
    of test (seed 1337 did: no bird, airplane or helicopter clip). Within each class, every
    class gets test and val groups, and no group straddles two splits."""
    items = _items({"drone": 11, "bird": 5, "airplane": 6, "helicopter": 7})
    splits = group_splits(items)
    for cls in ("drone", "bird", "airplane", "helicopter"):
        mine = [splits[g] for g in {it.group for it in items if it.label == cls}]
        assert {"train", "val", "test"} <= set(mine), cls
        assert mine.count("test") == max(1, round(0.2 * len(mine)))
    parts = split_items(items)
    assert sum(map(len, parts.values())) == len(items)
    assert not ({it.group for it in parts["test"]} & {it.group for it in parts["train"]})
    assert group_splits(items, seed=2) != splits  # still seeded


def test_many_groups_per_class_keep_the_plain_hash_split():
    """drone_net, drone_bird_cls and drone_audio_alemadi keep the split their metrics were measured on."""
    items = _items({"drone": 30, "background": 25}, files_per_group=1)
    assert group_splits(items) == {it.group: split_of(it.group) for it in items}
