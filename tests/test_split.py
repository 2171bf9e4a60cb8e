"""`fastcourse split` and split_indices: reproducible, stratified, grouped without leaks and
within one group's size of the size asked for; the command's table and --json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastcourse.cli import main
from fastcourse.data.folders import open_folder
from fastcourse.data.split import grouped_choice, make_split, split_indices
from fastcourse.data.synthetic import make_image_folder
from fastcourse.errors import UsageError

FASTCOURSE = str(Path(sys.executable).with_name("fastcourse"))


@pytest.fixture(scope="module")
def statefarm(tmp_path_factory):
    return make_image_folder(
        tmp_path_factory.mktemp("sf") / "sf", "statefarm", classes=3, per_class=12, drivers=6, size=24, test=2
    )


def test_split_methods_are_reproducible_and_stratified():
    labels = np.repeat([0, 1, 2], [30, 20, 10])
    a = split_indices(60, 0.2, "stratified", 3, labels)
    b = split_indices(60, 0.2, "stratified", 3, labels)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert np.bincount(labels[a[1]]).tolist() == [6, 4, 2]
    c = split_indices(60, 12, "random", 4)
    assert len(c[1]) == 12 and not set(c[0]) & set(c[1]) and len(c[0]) + len(c[1]) == 60
    with pytest.raises(UsageError):
        split_indices(60, 0.0, "random")


def _statefarm_groups(seed: int) -> list[str]:
    """26 drivers of unequal sizes (346 to 1,237 images, as Statefarm's are), shuffled."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(346, 1238, 26)
    groups = np.repeat([f"p{i:03d}" for i in range(26)], sizes)
    return rng.permutation(groups).tolist()


@pytest.mark.parametrize("target", [400, 1000, 2500, 0.15, 0.3])
def test_grouped_split_lands_within_one_group_of_the_target_and_leaks_no_group(target):
    for seed in range(6):
        groups = _statefarm_groups(seed)
        n = len(groups)
        k = int(round(target * n)) if target < 1 else target
        biggest = max(np.unique(groups, return_counts=True)[1])
        tr, va = split_indices(n, target, "grouped", seed, groups=groups)
        assert abs(len(va) - k) <= biggest, (seed, len(va), k, biggest)
        assert not {groups[i] for i in tr} & {groups[i] for i in va}
        assert len(tr) + len(va) == n and len(tr) > 0 and len(va) > 0
        again = split_indices(n, target, "grouped", seed, groups=groups)
        assert np.array_equal(again[1], va)  # same seed, same split


def test_grouped_choice_takes_a_group_only_when_it_brings_the_count_closer():
    # the lesson's case: 1,000 images asked from groups of ~860 gives one group, never 1,720
    # (or anything in between, as "add groups until the count passes 1,000" would give)
    sizes = [860, 870, 850, 865, 855]
    groups = np.repeat(["a", "b", "c", "d", "e"], sizes)
    for seed in range(10):
        count = int(np.isin(groups, grouped_choice(groups, 1000, seed)).sum())
        assert count in sizes
        count = int(np.isin(groups, grouped_choice(groups, 1400, seed)).sum())
        assert 1700 <= count <= 1740  # 1,400 is nearer two groups than one
    assert grouped_choice(np.repeat(["a", "b"], [5000, 10]), 3, 0) == ["b"]  # the nearest when none helps
    assert len(grouped_choice(np.repeat(["a", "b"], [5, 5]), 10, 0)) == 1  # one group always stays in train


def test_grouped_split_of_groups_of_equal_size():
    groups = [f"p{i % 7}" for i in range(70)]
    for seed in range(5):
        tr, va = split_indices(70, 0.3, "grouped", seed, groups=groups)
        assert not {groups[i] for i in tr} & {groups[i] for i in va}
        assert len(va) in (20, 30)  # 21 asked: 2 or 3 groups of 10, whichever is closer


def test_split_command_makes_grouped_valid_and_sample_without_touching_originals(statefarm, tmp_path, capsys):
    root = statefarm
    before = sorted(p for p in root.rglob("*") if p.is_file())
    out = tmp_path / "sf_split"
    code = main(
        [
            "split",
            str(root),
            "--out",
            str(out),
            "--method",
            "grouped",
            "--valid",
            "0.3",
            "--sample-train",
            "8",
            "--sample-valid",
            "4",
            "--seed",
            "1",
        ]
    )
    assert code == 0
    table = capsys.readouterr().out
    header = table.splitlines()[0].split()
    assert header == ["split", "images", "classes", "groups"]
    rows = {line.split()[0]: line.split()[1:] for line in table.splitlines()[2:6]}
    assert sorted(rows) == ["sample/train", "sample/valid", "train", "valid"]
    assert sorted(p for p in root.rglob("*") if p.is_file()) == before  # nothing moved or deleted
    data = open_folder(out)
    train_g, valid_g = set(data.split("train").groups), set(data.split("valid").groups)
    assert valid_g and not train_g & valid_g
    assert len(data.split("train")) + len(data.split("valid")) == 36
    assert rows["train"] == [str(len(data.split("train"))), "3", str(len(train_g))]
    assert rows["valid"][0] == str(len(data.split("valid"))) and rows["valid"][2] == str(len(valid_g))
    sample = open_folder(out, sample=True)
    assert (len(sample.split("train")), len(sample.split("valid"))) == (8, 4)
    assert not set(sample.split("train").groups) & set(sample.split("valid").groups)
    # same seed, same split; --json prints the summary for scripts
    out2 = tmp_path / "again"
    assert (
        main(["split", str(root), "--out", str(out2), "--method", "grouped", "--valid", "0.3", "--seed", "1", "--json"])
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["splits"]["valid"]["groups"] == len(valid_g) and summary["out"] == str(out2.resolve())
    names = lambda p: sorted(os.path.basename(f) for f in open_folder(p).split("valid").files)  # noqa: E731
    assert names(out) == names(out2)
    # refuses to write into a non-empty folder
    assert main(["split", str(root), "--out", str(out)]) == 2


@pytest.mark.integration
def test_split_out_naming_a_file_is_a_one_line_error(statefarm, tmp_path):
    target = tmp_path / "a_file"
    target.write_text("x")
    done = subprocess.run(
        [FASTCOURSE, "split", str(statefarm), "--out", str(target)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert done.stderr.strip().startswith("fastcourse: error: --out") and "\n" not in done.stderr.strip()
    assert "Traceback" not in done.stderr


def test_split_moves_in_place_only_when_asked(tmp_path):
    root = make_image_folder(tmp_path / "dc", "dogscats", classes=2, per_class=10, size=32, test=0)
    summary = make_split(root, method="stratified", valid=4, sample_train=4, seed=0, mode="move")
    data = open_folder(root)
    assert (len(data.split("train")), len(data.split("valid"))) == (16, 4)
    assert np.bincount(data.split("valid").labels).tolist() == [2, 2]
    assert summary["out"] == str(root.resolve()) and len(open_folder(root, sample=True).split("train")) == 4
    assert summary["splits"]["valid"] == {"images": 4, "classes": 2, "groups": None}
    with pytest.raises(UsageError, match="already has a valid"):
        make_split(root, mode="move")
