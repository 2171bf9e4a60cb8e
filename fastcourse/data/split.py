"""Validation and sample sets, reproducible from a seed (`fastcourse split`).

Three methods:
- random:     any images;
- stratified: each class keeps its share (scikit-learn's stratified split);
- grouped:    whole groups (Statefarm's drivers, the `subject` column) go to valid, so no group
              is ever in both train and valid.

`split_indices` does it in memory; `make_split` writes a new dataset folder (links or copies,
never touching the originals) or, only when asked (`mode="move"`), moves files in place as
the course did::

    make_split("data/statefarm", method="grouped", valid=0.15, sample_train=1500,
               sample_valid=1000, seed=0)        # -> data/statefarm_split/{train,valid,sample,test}
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Literal, Optional

import numpy as np

from fastcourse import io
from fastcourse.errors import DataError, UsageError

Method = Literal["random", "stratified", "grouped"]
Mode = Literal["symlink", "hardlink", "copy", "move"]


def _target(n: int, size: float | int, what: str) -> int:
    if size <= 0:
        raise UsageError(f"{what}={size}: must be > 0 (a fraction below 1 or a number of images)")
    k = int(round(size * n)) if size < 1 else int(size)
    if not 0 < k < n:
        raise UsageError(f"{what}={size}: gives {k} of {n} images; it must leave images on both sides")
    return k


def split_indices(
    n: int,
    valid: float | int = 0.1,
    method: Method = "random",
    seed: int = 0,
    labels: Optional[np.ndarray] = None,
    groups: Optional[list] = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(train_index, valid_index), sorted; `valid` is a fraction (< 1) or a number of images.

    grouped takes whole groups (see `grouped_choice`): it lands within one group's size of
    `valid`, and no group is on both sides.
    """
    from sklearn.model_selection import train_test_split

    k = _target(n, valid, "valid")
    index = np.arange(n)
    if method == "random":
        tr, va = train_test_split(index, test_size=k, random_state=seed, shuffle=True)
    elif method == "stratified":
        if labels is None:
            raise UsageError("a stratified split needs labels")
        try:
            tr, va = train_test_split(index, test_size=k, random_state=seed, stratify=np.asarray(labels))
        except ValueError as exc:
            raise UsageError(f"cannot stratify: {exc}") from None
    elif method == "grouped":
        if groups is None:
            raise UsageError("a grouped split needs groups (e.g. Statefarm's driver_imgs_list.csv subject column)")
        groups = np.asarray([str(g) for g in groups])
        names = np.unique(groups)
        if len(names) < 2:
            raise UsageError(f"a grouped split needs at least 2 groups; found {len(names)}")
        chosen = grouped_choice(groups, k, seed)
        mask = np.isin(groups, chosen)
        tr, va = index[~mask], index[mask]
    else:
        raise UsageError(f"method={method!r}: use random, stratified or grouped")
    return np.sort(tr), np.sort(va)


def grouped_choice(groups: np.ndarray, k: int, seed: int) -> list:
    """Whole groups holding about `k` images: groups are visited in a seeded random order and
    one is taken only when it brings the count closer to `k` (so 1,000 asked from groups of
    ~860 gives ~860 or ~1,720, whichever is closer). At least one group is taken and at least
    one left out. The count ends within max(group size) of `k`."""
    names, sizes = np.unique(groups, return_counts=True)
    size_of = dict(zip(names.tolist(), sizes.tolist()))
    order = np.random.default_rng(seed).permutation(names).tolist()
    chosen, count = [], 0
    for g in order:
        if len(chosen) == len(order) - 1:  # always leave at least one group for training
            break
        if abs(count + size_of[g] - k) < abs(count - k):
            chosen.append(g)
            count += size_of[g]
    if not chosen:  # every group is more than twice `k`: the one nearest to it
        chosen = [min(order, key=lambda g: abs(size_of[g] - k))]
    return chosen


def sample_indices(n: int, size: float | int, seed: int, labels: Optional[np.ndarray] = None) -> np.ndarray:
    """A seeded subset (stratified when labels are given and allow it), sorted."""
    from sklearn.model_selection import train_test_split

    if size >= n:
        return np.arange(n)
    k = _target(n, size, "sample")
    strat = labels if labels is not None and np.bincount(labels).min() >= 2 else None
    try:
        _, picked = train_test_split(np.arange(n), test_size=k, random_state=seed, stratify=strat)
    except ValueError:  # too few per class to stratify: fall back to random
        _, picked = train_test_split(np.arange(n), test_size=k, random_state=seed)
    return np.sort(picked)


# --- on disk ---------------------------------------------------------------------------------


def _place(src: str, dst: Path, mode: Mode) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if mode == "symlink":
        os.symlink(src, dst)
    elif mode == "hardlink":
        try:
            os.link(src, dst)
        except OSError:  # another file system: copy instead
            shutil.copy2(src, dst)
    elif mode == "copy":
        shutil.copy2(src, dst)
    else:
        shutil.move(src, dst)


def _rel(path: str, base: Path) -> Path:
    return Path(path).relative_to(base)


def make_split(
    root: str | os.PathLike,
    out: str | os.PathLike | None = None,
    method: Method = "random",
    valid: float | int = 0.1,
    sample_train: int = 0,
    sample_valid: int = 0,
    seed: int = 0,
    mode: Mode = "symlink",
    group_column: str = "subject",
    groups_csv: str | None = None,
    file_column: str = "img",
    layout: str = "auto",
) -> dict:
    """Write train/valid (and sample/) sets; returns a summary (also saved as split.json).

    A class_folders folder (root/<class>/, no train/) becomes `out`/train/<class>/ and
    `out`/valid/<class>/: the dogscats layout.

    With `mode` symlink, hardlink or copy, a new folder `out` (default `<root>_split`) gets the
    whole dataset with train minus valid in train/, valid/, the test set, and sample/{train,valid};
    the originals are untouched. Grouped splits read the group of each file from `groups_csv`
    (default: root/driver_imgs_list.csv), matching `file_column` to file names and taking
    `group_column`. `mode="move"` moves the valid images out of root/train/ into
    root/valid/ in place (the course's way) and copies the sample.
    """
    from fastcourse.data.folders import open_folder

    root = Path(root).resolve()
    data = open_folder(root, layout=layout, check="none")
    if data.layout == "csv":
        raise UsageError(
            f"{root}: split of a CSV layout: use split_indices in Python or write valid.csv; "
            "`fastcourse split` handles the class-folder layouts (class_folders, dogscats, statefarm)"
        )
    if data.has("valid"):
        raise UsageError(
            f"{root}: already has a valid/ split ({len(data.split('valid'))} images); "
            "split the folder that has train/ only"
        )
    train = data.split("train")
    groups = train.groups
    if method == "grouped" and (groups is None or groups_csv or group_column != "subject"):
        groups = _column_groups(
            Path(groups_csv) if groups_csv else root / "driver_imgs_list.csv", train.files, group_column, file_column
        )
        train = dataclasses.replace(train, groups=list(groups))
    tr, va = split_indices(len(train), valid, method, seed, train.labels, groups)
    summary = {
        "root": str(root),
        "method": method,
        "seed": seed,
        "valid": valid,
        "mode": mode,
        "train_images": int(len(tr)),
        "valid_images": int(len(va)),
    }
    if groups is not None:
        g = np.asarray(groups)
        summary["valid_groups"] = sorted(set(g[va].tolist()))
        summary["train_groups"] = sorted(set(g[tr].tolist()))

    if mode == "move":
        if data.layout == "class_folders":
            raise UsageError(
                f"{root}: mode=move would put valid/ beside the class folders at the root, which no layout "
                "reads; use symlink, hardlink or copy (a new folder with train/<class>/ and valid/<class>/)"
            )
        dest = root
        if out is not None and Path(out).resolve() != root:
            raise UsageError("mode=move works in place; drop --out or use symlink/hardlink/copy")
    else:
        dest = Path(out).resolve() if out else root.with_name(root.name + "_split")
        if dest == root:
            raise UsageError(f"--out {dest}: must differ from the dataset folder (only mode=move works in place)")
        if dest.exists() and any(dest.iterdir()):
            raise UsageError(f"{dest}: already exists and is not empty; choose another --out or remove it")
    base = root if data.layout == "class_folders" else root / "train"  # the class folders' parent
    va_split, tr_split = train.take(va, "valid"), train.take(tr, "train")
    sample_sets = {}
    if sample_train:
        sample_sets["train"] = tr_split.take(sample_indices(len(tr_split), sample_train, seed, tr_split.labels))
    if sample_valid:
        sample_sets["valid"] = va_split.take(sample_indices(len(va_split), sample_valid, seed + 1, va_split.labels))

    if mode == "move":
        for f in va_split.files:
            _place(f, root / "valid" / _rel(f, base), "move")
        moved = {f: str(root / "valid" / _rel(f, base)) for f in va_split.files}
        for key, s in sample_sets.items():
            for f in s.files:
                _place(moved.get(f, f), root / "sample" / key / _rel(f, base), "copy")
    else:
        for f in tr_split.files:
            _place(f, dest / "train" / _rel(f, base), mode)
        for f in va_split.files:
            _place(f, dest / "valid" / _rel(f, base), mode)
        for key, s in sample_sets.items():
            for f in s.files:
                _place(f, dest / "sample" / key / _rel(f, base), mode)
        if data.has("test"):
            for f in data.split("test").files:
                _place(f, dest / "test" / _rel(f, root / "test"), mode)
    for extra in ("driver_imgs_list.csv", "sample_submission.csv"):
        if (root / extra).is_file():
            if dest != root:
                shutil.copy2(root / extra, dest / extra)
            if sample_sets:
                (dest / "sample").mkdir(parents=True, exist_ok=True)
                shutil.copy2(root / extra, dest / "sample" / extra)
    summary.update({"out": str(dest), **{f"sample_{k}_images": len(v) for k, v in sample_sets.items()}})
    table = {"train": tr_split, "valid": va_split, **{f"sample/{k}": v for k, v in sample_sets.items()}}
    summary["splits"] = {key: _describe(s) for key, s in table.items()}
    io.write_json(dest / "split.json", summary)
    return summary


def _describe(split) -> dict:
    """images, classes and groups (None when ungrouped) of one split, for the summary table."""
    return {
        "images": len(split),
        "classes": 0 if split.labels is None else int(len(np.unique(split.labels))),
        "groups": None if split.groups is None else len(set(split.groups)),
    }


def _column_groups(table_path: Path, files: list[str], column: str, file_column: str) -> list[str]:
    from fastcourse.data.folder_files import read_csv as _read_csv

    table = _read_csv(table_path, [file_column, column])
    by_img = dict(zip(table[file_column].astype(str), table[column].astype(str)))
    missing = [f for f in files if Path(f).name not in by_img]
    if missing:
        raise DataError(f"{table_path}: no {column!r} for {missing[0]} ({len(missing)} files missing)")
    return [by_img[Path(f).name] for f in files]
