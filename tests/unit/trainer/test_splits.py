"""Group splits: deterministic, ~80/10/10, and no group ever straddles two splits."""

from __future__ import annotations

import csv
from collections import defaultdict

import pytest

from trainer.data import list_items, split_items, split_of

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
                                          ("drone_bird_cls", "image")])
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
