"""Image-folder datasets (lesson 3): dogs vs cats, Statefarm, a folder plus a CSV of labels.

The stable API (other modules build on it)::

    from fastcourse.data.folders import open_folder, image_dataset

    data = open_folder("data/dogscats")            # layout="auto" | "class_folders" | "dogscats" | "statefarm" | "csv"
    data.class_names                               # ["cats", "dogs"]: sorted folder names = label ids
    train = data.split("train")                    # FolderSplit: .files (absolute paths, sorted),
    train.files, train.labels                      #   .labels (int64 array, or None when unlabelled)
    data.split("test").labels is None              #   .groups (Statefarm's driver per file, or None)
    ds = image_dataset(train.files, train.labels, data.num_classes, (224, 224), batch_size=64)
    # -> tf.data.Dataset of (float32 0-255 RGB images (B, H, W, 3), one-hot float32 labels (B, C));
    #    unlabelled splits (labels None) yield images only, in `split.files` order.
    small = data.limit(256, 128, seed=0)           # per class, in proportion: every class kept

The layouts (which files, which labels) are fastcourse.data.folder_files; decoding them into
tf.data batches is fastcourse.data.pipeline. This module opens a folder and checks its files.

Opening a folder scans every file once (``check="fast"``: the header is read and a JPEG/PNG
must end with its end marker, which catches truncated files; ``"full"`` decodes everything;
``"none"`` opens nothing and so applies no EXIF rotation, but still finds missing files). The
scan prints one line per split with counts by kind, names the first bad files, and keeps all
of them in ``FolderDataset.report[split]`` (a fastcourse.data.images.ScanReport); bad or missing
files are dropped (``on_error="skip"``) or stop with a DataError (``"raise"``) before any epoch
starts; a split with no usable file left is an error either way.
See fastcourse/data/images.py for which files are legal and how each is converted.

Decoding: plain RGB/gray/palette JPEG and PNG go through TensorFlow's decoder in a parallel
tf.data map; the files the scan marked (EXIF rotation, CMYK, alpha, 16-bit gray, WebP, TIFF,
BMP, GIF) go through Pillow in the same map (tf.numpy_function). Either way the result is RGB,
resized (bilinear) to the model's size. An element that still fails (a file changed since the
scan) is named on stderr and dropped, so an epoch never crashes halfway.
"""

from __future__ import annotations

import os
import sys
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Optional

import numpy as np

from fastcourse.data import images as _images
from fastcourse.data.folder_files import (
    FolderSplit,
    Layout,
    class_folders,
    detect_layout,
    images_directly_in,
    open_layout,
    read_csv,
    stratified_subset,
)
from fastcourse.data.images import IMAGE_EXTENSIONS, Check, ScanReport
from fastcourse.data.pipeline import decode_image, image_dataset
from fastcourse.data.remote import get_command
from fastcourse.errors import DataError, UsageError

OnError = Literal["skip", "raise"]


@dataclass
class FolderDataset:
    """Class names plus named splits of image files; `dataset()` streams them through tf.data."""

    name: str
    root: Path
    layout: str
    class_names: list[str]
    splits: dict[str, FolderSplit]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason) dropped at open
    source: str = ""
    cache_dir: Optional[str] = None  # decoded, resized images cached here (see image_dataset)
    report: dict[str, ScanReport] = field(default_factory=dict)  # the scan, per split
    image_size: tuple[int, int] = (224, 224)  # what every image is resized to
    held_out: str = ""  # how valid was held out of train in memory (data.valid_fraction); "" if not

    def pixel_stats(self, n: int = 256) -> tuple[float, float]:
        """ONE global mean and std of the pixels of the first `n` training images (resized), for
        the builders that normalise their input as the course's MNIST models did."""
        train = self.split("train")
        pixels = np.concatenate(
            [
                np.asarray(b, np.float64).ravel()
                for b in image_dataset(
                    train.files[:n],
                    None,
                    None,
                    self.image_size,
                    64,
                    pillow=None if train.pillow is None else train.pillow[:n],
                )
            ]
        )
        return float(pixels.mean()), float(pixels.std() or 1.0)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split(self, name: str) -> FolderSplit:
        if name not in self.splits:
            hint = " (make one with `fastcourse split`)" if name == "valid" else ""
            raise DataError(f"{self.root}: no {name!r} split{hint}; found: {', '.join(self.splits) or 'none'}")
        return self.splits[name]

    def has(self, name: str) -> bool:
        return name in self.splits and len(self.splits[name]) > 0

    def limit(self, train: int | None = None, test: int | None = None, seed: int = 0) -> "FolderDataset":
        """At most `train` training images and `test` images of every other split (quick runs).

        Labelled splits keep each class's share (every class keeps at least one image); an
        unlabelled test/ keeps a random subset. The draw is seeded by `seed` (the config's), per
        split, and files keep their order. A limit too small to keep every class of a split is
        a DataError naming the classes it would leave out (folder_files.stratified_subset)."""
        cut = {}
        for key, split in self.splits.items():
            n = train if key == "train" else test
            if not n or n >= len(split):
                cut[key] = split
                continue
            what = f"data.{'train' if key == 'train' else 'test'}_limit={n} on the {key} split of {self.root}"
            cut[key] = split.take(
                stratified_subset(len(split), n, (int(seed), _stream(key)), split.labels, self.class_names, what)
            )
        return replace(self, splits=cut)

    def with_split(self, name: str, split: FolderSplit) -> "FolderDataset":
        return replace(self, splits={**self.splits, name: replace(split, name=name)})

    def describe(self) -> str:
        parts = ", ".join(f"{k} {len(v)}" for k, v in self.splits.items())
        return f"{self.name} ({self.layout}, {self.num_classes} classes: {parts})"


# --- opening ------------------------------------------------------------------------------


def open_folder(
    path: str | os.PathLike,
    layout: Layout = "auto",
    sample: bool = False,
    csv: str | None = None,
    images: str | None = None,
    valid_csv: str | None = None,
    test_images: str | None = None,
    filename_column: str = "filename",
    label_column: str = "label",
    on_error: OnError = "skip",
    check: Check = "fast",
    name: str | None = None,
    cache_dir: str | None = None,
) -> FolderDataset:
    """Open an image folder in one of the four layouts (auto-detected by default; see
    fastcourse.data.folder_files). With `cache_dir`, decoded and resized images are cached there
    (see fastcourse.data.pipeline.image_dataset)."""
    root = Path(path).expanduser()
    get = get_command(name, path) if not root.is_dir() else None
    if get:  # a dataset `fastcourse data get` fetches: name the command (docs/configs.md: mirrors, by hand)
        raise DataError(
            f"{root}: no such folder; get it with `{get}` (docs/configs.md), or point data.path at your copy"
        )
    if sample:
        root = root / "sample"
    if not root.is_dir():
        raise DataError(f"{root}: no such folder; point data.path at the dataset's root folder")
    if on_error not in ("skip", "raise"):
        raise UsageError(f"on_error={on_error!r}: use 'skip' or 'raise'")
    layout, classes, splits = open_layout(
        root, layout, csv, images, valid_csv, test_images, filename_column, label_column
    )
    data = FolderDataset(name or root.name, root, layout, classes, splits, source=str(root), cache_dir=cache_dir)
    return _checked(data, on_error, check)


def _stream(key: str) -> int:
    """A fixed number per split name, so each split draws its own numbers from the one seed."""
    return zlib.crc32(key.encode())


# --- checking files ------------------------------------------------------------------------


def check_image(path: str, check: Check = "fast") -> Optional[str]:
    """None when `path` is a readable image, else the reason it is not."""
    problem = _images.inspect(path, check).problem
    return None if problem is None else problem[1]


def _checked(data: FolderDataset, on_error: OnError, check: Check) -> FolderDataset:
    """Scan every split once: report, drop or raise on bad files, mark the files Pillow decodes."""
    bad: list[tuple[str, str]] = []
    splits, reports = {}, {}
    for key, split in data.splits.items():
        statuses = _images.scan(split.files, check)
        # the folder the split was read from (class_folders and csv: the root itself)
        where = data.root / key if data.layout in ("dogscats", "statefarm") else data.root
        report = ScanReport(_shown(where), ignored=split.ignored)
        for st in statuses:
            if st.problem:
                report.problems.append((st.path, *st.problem))
            else:
                report.ok += 1
                report.notes.update(st.notes)
        problems = [(p, reason) for p, _, reason in report.problems]
        if split.files and len(problems) == len(split.files):
            raise DataError(
                f"{data.root}: none of the {len(split.files)} {key} images is readable "
                f"(first: {problems[0][0]}: {problems[0][1]})"
            )
        if problems and on_error == "raise":
            path, reason = problems[0]
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise DataError(f"{path}: {reason}{more}; remove or replace it, or set data.on_error=skip")
        keep = [i for i, st in enumerate(statuses) if st.problem is None]
        split = replace(split, pillow=np.asarray([st.pillow for st in statuses], bool)).take(keep)
        bad += problems
        if split.labels is not None:
            _check_classes(data, key, split, report)
        splits[key], reports[key] = split, report
        if report.problems or report.ignored or report.notes or report.warnings:
            for line in report.lines():
                print(f"fastcourse: {line}", file=sys.stderr, flush=True)
    return replace(data, splits=splits, skipped=bad, report=reports)


def _check_classes(data: FolderDataset, key: str, split: FolderSplit, report: ScanReport) -> None:
    """train/ needs readable images of every class; valid/ may lack some (said in the report)."""
    counts = np.bincount(split.labels, minlength=data.num_classes)
    missing = [c for c, n in zip(data.class_names, counts) if n == 0]
    if not missing:
        return
    if key == "train":
        raise DataError(f"{data.root}: no readable train images of class(es) {missing}; add images or remove the class")
    report.warnings.append(f"{key} has no images of class(es) {missing}: its accuracy leaves them out")


def _shown(path: Path) -> str:
    """`path` relative to the working directory when under it (shorter lines), else absolute."""
    try:
        return str(path.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


__all__ = [
    "FolderDataset",
    "FolderSplit",
    "open_folder",
    "image_dataset",
    "decode_image",
    "check_image",
    "detect_layout",
    "images_directly_in",
    "class_folders",
    "read_csv",
    "IMAGE_EXTENSIONS",
    "ScanReport",
    "Check",
    "Layout",
    "OnError",
]
