"""Image-folder datasets by name, as configs write them in `data:` (image_folder, dogscats,
statefarm). Each opens the folder (fastcourse.data.folders), resizes to `image_size`, and, when
the folder has no valid/ split and `valid_fraction` is set, holds out one in memory (by driver
for Statefarm: `split_method: grouped`)."""

from __future__ import annotations

from typing import Optional

from fastcourse.config import bound_problems
from fastcourse.data.base import DATASETS
from fastcourse.data.folders import Check, FolderDataset, Layout, OnError, open_folder
from fastcourse.data.split import Method, split_indices
from fastcourse.errors import UsageError


def _finish(data: FolderDataset, image_size, valid_fraction, split_method, seed) -> FolderDataset:
    # a config was checked before (fastcourse.config.ARG_BOUNDS); a Python call gets the same rule
    problems = bound_problems({"image_size": image_size, "valid_fraction": valid_fraction}, "data", data.name)
    if problems:
        raise UsageError(problems[0])
    data.image_size = tuple(int(s) for s in image_size)
    if valid_fraction and not data.has("valid"):
        train = data.split("train")
        tr, va = split_indices(len(train), valid_fraction, split_method, seed, train.labels, train.groups)
        data = data.with_split("valid", train.take(va)).with_split("train", train.take(tr))
        data.held_out = f"{valid_fraction:g} of train held out, {split_method}, seed {seed}"
    return data


@DATASETS.register()
def image_folder(
    path: str,
    layout: Layout = "auto",
    sample: bool = False,
    image_size: list[int] = (224, 224),
    csv: Optional[str] = None,
    images: Optional[str] = None,
    valid_csv: Optional[str] = None,
    test_images: Optional[str] = None,
    filename_column: str = "filename",
    label_column: str = "label",
    on_error: OnError = "skip",
    check: Check = "fast",
    cache_dir: Optional[str] = None,
    valid_fraction: Optional[float] = None,
    split_method: Method = "stratified",
    split_seed: int = 0,
) -> FolderDataset:
    """Any image folder: class_folders / dogscats / statefarm / csv layout (auto-detected)."""
    data = open_folder(
        path,
        layout,
        sample,
        csv,
        images,
        valid_csv,
        test_images,
        filename_column,
        label_column,
        on_error,
        check,
        cache_dir=cache_dir,
    )
    return _finish(data, image_size, valid_fraction, split_method, split_seed)


@DATASETS.register()
def dogscats(
    path: str = "data/dogscats",
    sample: bool = False,
    image_size: list[int] = (224, 224),
    on_error: OnError = "skip",
    check: Check = "fast",
    cache_dir: Optional[str] = None,
    valid_fraction: Optional[float] = None,
    split_method: Method = "stratified",
    split_seed: int = 0,
) -> FolderDataset:
    """Kaggle dogs vs cats as lesson 3 laid it out: train/valid/{cats,dogs}, test/unknown."""
    data = open_folder(path, "dogscats", sample, on_error=on_error, check=check, name="dogscats", cache_dir=cache_dir)
    return _finish(data, image_size, valid_fraction, split_method, split_seed)


@DATASETS.register()
def statefarm(
    path: str = "data/statefarm",
    sample: bool = False,
    image_size: list[int] = (224, 224),
    on_error: OnError = "skip",
    check: Check = "fast",
    cache_dir: Optional[str] = None,
    valid_fraction: Optional[float] = None,
    split_method: Method = "grouped",
    split_seed: int = 0,
) -> FolderDataset:
    """Statefarm distracted drivers: train/c0..c9 + driver_imgs_list.csv (groups = drivers)."""
    data = open_folder(path, "statefarm", sample, on_error=on_error, check=check, name="statefarm", cache_dir=cache_dir)
    return _finish(data, image_size, valid_fraction, split_method, split_seed)
