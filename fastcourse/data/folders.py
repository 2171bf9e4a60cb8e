"""Image-folder datasets (lesson 3): dogs vs cats, Statefarm, a folder plus a CSV of labels.

The stable API (other modules build on it)::

    from fastcourse.data.folders import open_folder, image_dataset

    data = open_folder("data/dogscats")            # layout="auto" | "dogscats" | "statefarm" | "csv"
    data.class_names                               # ["cats", "dogs"]: sorted folder names = label ids
    train = data.split("train")                    # FolderSplit: .files (absolute paths, sorted),
    train.files, train.labels                      #   .labels (int64 array, or None when unlabelled)
    data.split("test").labels is None              #   .groups (Statefarm's driver per file, or None)
    ds = data.dataset("train", image_size=(224, 224), batch_size=64, shuffle=True, seed=0)
    # -> tf.data.Dataset of (float32 0-255 RGB images (B, H, W, 3), one-hot float32 labels (B, C));
    #    unlabelled splits (or labels=False) yield images only, in `split.files` order.

Layouts
- dogscats:  root/{train,valid}/<class>/*.jpg, root/test/unknown/*.jpg (or images directly in
  test/), optional root/sample/ with the same layout (``sample=True`` opens it).
- statefarm: root/train/c0..c9/*.jpg plus root/driver_imgs_list.csv (subject, classname, img):
  each file's driver becomes its group; root/valid/ when `fastcourse split` made one; root/test/.
- csv:       one folder of images plus a CSV of ``filename,label`` rows ("Identify the digits"):
  ``csv="train.csv", images="Images/train"``; optional ``valid_csv`` and ``test_images``.

Opening a folder scans every file once (``check="fast"``: the header is read and a JPEG/PNG
must end with its end marker, which catches truncated files; ``"full"`` decodes everything;
``"none"`` opens nothing and so applies no EXIF rotation). The scan prints one line per split
with counts by kind, names the first bad files, and keeps all of them in
``FolderDataset.report[split]`` (a fastcourse.data.images.ScanReport); bad files are dropped
(``on_error="skip"``) or stop with a DataError (``"raise"``) before any epoch starts.
See fastcourse/data/images.py for which files are legal and how each is converted.

Decoding: plain RGB/gray/palette JPEG and PNG go through TensorFlow's decoder in a parallel
tf.data map; the files the scan marked (EXIF rotation, CMYK, alpha, 16-bit gray, WebP, TIFF,
BMP, GIF) go through Pillow in the same map (tf.numpy_function). Either way the result is RGB,
resized (bilinear) to the model's size. An element that still fails (a file changed since the
scan) is named on stderr and dropped, so an epoch never crashes halfway.

Class folders: train/ needs at least 2 non-empty class folders; valid/ may lack a class (a
warning says its accuracy leaves it out) but may not add one; hidden folders and __MACOSX/
are ignored.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Literal, Optional, Sequence

import numpy as np

from fastcourse.data import images as _images
from fastcourse.data.images import IMAGE_EXTENSIONS, ScanReport
from fastcourse.errors import DataError, UsageError

Layout = Literal["auto", "dogscats", "statefarm", "csv"]
OnError = Literal["skip", "raise"]
Check = Literal["fast", "full", "none"]


@dataclass
class FolderSplit:
    """One split: absolute file paths, integer labels (None when unlabelled), optional groups."""

    name: str
    files: list[str]
    labels: Optional[np.ndarray] = None
    groups: Optional[list[str]] = None
    pillow: Optional[np.ndarray] = None  # bool per file: decode with Pillow (set by the scan)
    ignored: list[tuple[str, str]] = field(default_factory=list)  # (path, kind) not listed as images

    def __len__(self) -> int:
        return len(self.files)

    @property
    def labelled(self) -> bool:
        return self.labels is not None

    def take(self, index: Sequence[int] | np.ndarray, name: str | None = None) -> "FolderSplit":
        """The files at `index` (in that order)."""
        index = np.asarray(index, dtype=np.int64)
        return FolderSplit(
            name or self.name, [self.files[i] for i in index],
            None if self.labels is None else self.labels[index],
            None if self.groups is None else [self.groups[i] for i in index],
            None if self.pillow is None else self.pillow[index],
        )


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

    def pixel_stats(self, n: int = 256) -> tuple[float, float]:
        """ONE global mean and std of the pixels of the first `n` training images (resized), for
        the builders that normalise their input as the course's MNIST models did."""
        train = self.split("train")
        pixels = np.concatenate([np.asarray(b, np.float64).ravel() for b in image_dataset(
            train.files[:n], None, None, self.image_size, 64,
            pillow=None if train.pillow is None else train.pillow[:n])])
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

    def limit(self, train: int | None = None, test: int | None = None) -> "FolderDataset":
        """The first `train` training files and `test` valid/test files (quick runs, tests)."""
        cut = {}
        for key, split in self.splits.items():
            n = train if key == "train" else test
            cut[key] = split.take(range(min(n, len(split))) if n else range(len(split)))
        return replace(self, splits=cut)

    def with_split(self, name: str, split: FolderSplit) -> "FolderDataset":
        return replace(self, splits={**self.splits, name: replace(split, name=name)})

    def dataset(self, split: str, image_size=(224, 224), batch_size: int = 64, shuffle: bool = False,
                seed: int = 0, augment: Optional[Callable] = None, repeat: bool = False,
                labels: bool = True, start_step: int = 0):
        """tf.data over one split; see `image_dataset`."""
        s = self.split(split)
        return image_dataset(
            s.files, s.labels if labels else None, self.num_classes, image_size, batch_size,
            shuffle=shuffle, seed=seed, augment=augment, repeat=repeat, start_step=start_step,
            cache_dir=self.cache_dir, pillow=s.pillow,
        )

    def describe(self) -> str:
        parts = ", ".join(f"{k} {len(v)}" for k, v in self.splits.items())
        return f"{self.name} ({self.layout}, {self.num_classes} classes: {parts})"


# --- opening ------------------------------------------------------------------------------

def open_folder(
    path: str | os.PathLike, layout: Layout = "auto", sample: bool = False,
    csv: str | None = None, images: str | None = None, valid_csv: str | None = None,
    test_images: str | None = None, filename_column: str = "filename", label_column: str = "label",
    on_error: OnError = "skip", check: Check = "fast", name: str | None = None,
    cache_dir: str | None = None,
) -> FolderDataset:
    """Open an image folder in one of the three layouts (auto-detected by default).
    With `cache_dir`, decoded and resized images are cached there (see image_dataset)."""
    root = Path(path).expanduser()
    if sample:
        root = root / "sample"
    if not root.is_dir():
        raise DataError(f"{root}: no such folder; point data.path at the dataset's root folder")
    if on_error not in ("skip", "raise"):
        raise UsageError(f"on_error={on_error!r}: use 'skip' or 'raise'")
    if layout == "auto":
        layout = detect_layout(root)
    if layout == "dogscats":
        classes, splits = _open_class_folders(root)
    elif layout == "statefarm":
        classes, splits = _open_statefarm(root)
    elif layout == "csv":
        classes, splits = _open_csv(root, csv, images, valid_csv, test_images, filename_column, label_column)
    else:
        raise UsageError(f"layout={layout!r}: use auto, dogscats, statefarm or csv")
    data = FolderDataset(name or root.name, root, layout, classes, splits, source=str(root), cache_dir=cache_dir)
    return _checked(data, on_error, check)


def detect_layout(root: Path) -> str:
    if (root / "driver_imgs_list.csv").is_file():
        return "statefarm"
    if (root / "train").is_dir() and any(p.is_dir() for p in (root / "train").iterdir()):
        return "dogscats"
    if any(root.glob("*.csv")):
        return "csv"
    raise DataError(f"{root}: not a known image-folder layout: expected train/<class>/ folders, "
                    "train/ plus driver_imgs_list.csv, or a CSV of filename,label rows; set data.layout")


def list_images(folder: Path) -> list[str]:
    """Image files directly in `folder`, sorted by name (hidden files and OS litter ignored)."""
    return _list_folder(folder)[0]


def _list_folder(folder: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """(image paths, [(other path, ignored kind)]) directly in `folder`, sorted by name."""
    if not folder.is_dir():
        return [], []
    found, ignored = [], []
    for p in sorted(folder.iterdir()):
        if p.is_dir():
            continue
        path = str(p.absolute())
        if _images.is_os_litter(p.name):
            ignored.append((path, _images.IGNORED_OS))
        elif _images.is_image_name(p.name):
            found.append(path)
        else:
            ignored.append((path, _images.IGNORED_OTHER))
    return found, ignored


def class_folders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not _images.is_os_litter(p.name))


def _labelled_split(name: str, folder: Path, classes: list[str]) -> FolderSplit:
    files, labels, ignored, empty = [], [], [], []
    for idx, cls in enumerate(classes):
        found, other = _list_folder(folder / cls)
        files += found
        labels += [idx] * len(found)
        ignored += other
        if not found:
            empty.append(cls)
    extra = sorted(set(class_folders(folder)) - set(classes))
    if extra:
        raise DataError(f"{folder}: class folder(s) {extra} are not in train/ ({classes}); "
                        "every split needs the same class folders")
    if empty and name == "train":
        raise DataError(f"{folder / empty[0]}: no images in this class folder ({len(empty)} empty: {empty}); "
                        "add images or remove the folder")
    return FolderSplit(name, files, np.asarray(labels, np.int64), ignored=ignored)


def _unlabelled_split(name: str, folder: Path) -> FolderSplit:
    # the course's test/unknown/ (one dummy class folder) or images directly in test/
    files, ignored = _list_folder(folder)
    for sub in class_folders(folder) if folder.is_dir() else []:
        found, other = _list_folder(folder / sub)
        files += found
        ignored += other
    return FolderSplit(name, sorted(files), None, ignored=ignored)


def _open_class_folders(root: Path) -> tuple[list[str], dict[str, FolderSplit]]:
    train = root / "train"
    if not train.is_dir():
        raise DataError(f"{root}: no train/ folder (expected train/<class>/ images)")
    classes = class_folders(train)
    if len(classes) < 2:
        raise DataError(f"{train}: found {len(classes)} class folder(s); need at least 2 (train/<class>/*.jpg)")
    splits = {"train": _labelled_split("train", train, classes)}
    if (root / "valid").is_dir():
        splits["valid"] = _labelled_split("valid", root / "valid", classes)
    if (root / "test").is_dir():
        splits["test"] = _unlabelled_split("test", root / "test")
    if not len(splits["train"]):
        raise DataError(f"{train}: no images ({', '.join(IMAGE_EXTENSIONS)}) in the class folders")
    return classes, splits


def _open_statefarm(root: Path) -> tuple[list[str], dict[str, FolderSplit]]:
    classes, splits = _open_class_folders(root)
    # a sample/ folder made by `fastcourse split` carries its own copy; else use the parent's
    table_path = root / "driver_imgs_list.csv"
    if not table_path.is_file() and (root.parent / "driver_imgs_list.csv").is_file():
        table_path = root.parent / "driver_imgs_list.csv"
    table = _read_csv(table_path, ["subject", "img"])
    driver = dict(zip(table["img"].astype(str), table["subject"].astype(str)))
    for key in ("train", "valid"):
        if key in splits:
            split = splits[key]
            missing = [f for f in split.files if Path(f).name not in driver]
            if missing:
                raise DataError(f"{table_path}: no subject for {missing[0]} ({len(missing)} files missing); "
                                "the CSV must list every training image")
            split.groups = [driver[Path(f).name] for f in split.files]
    return classes, splits


def _read_csv(path: Path, columns: list[str]):
    import pandas as pd

    if not path.is_file():
        raise DataError(f"{path}: no such CSV file")
    try:
        table = pd.read_csv(path)
    except Exception as exc:  # pandas raises many types for a malformed file
        raise DataError(f"{path}: cannot read CSV: {exc}") from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; it has {list(table.columns)}")
    return table


def _open_csv(root, csv, images, valid_csv, test_images, filename_column, label_column):
    if csv is None:
        found = sorted(root.glob("*.csv"))
        if len(found) != 1:
            raise DataError(f"{root}: found {len(found)} CSV files; say which holds the labels with data.csv")
        csv = found[0].name
    table = _read_csv(root / csv, [filename_column, label_column])
    image_dir = root / images if images else _find_image_dir(root, str(table[filename_column].iloc[0]))
    classes = sorted({str(v) for v in table[label_column]}, key=_natural)
    index = {c: i for i, c in enumerate(classes)}

    def rows(tab, name):
        files = [_image_path(image_dir, str(f)) for f in tab[filename_column]]
        return FolderSplit(name, files, np.asarray([index[str(v)] for v in tab[label_column]], np.int64))

    splits = {"train": rows(table, "train")}
    if valid_csv:
        vt = _read_csv(root / valid_csv, [filename_column, label_column])
        unknown = sorted({str(v) for v in vt[label_column]} - set(classes))
        if unknown:
            raise DataError(f"{root / valid_csv}: labels {unknown[:5]} are not in {csv}")
        splits["valid"] = rows(vt, "valid")
    if test_images:
        splits["test"] = _unlabelled_split("test", root / test_images)
    return classes, splits


def _find_image_dir(root: Path, first: str) -> Path:
    """The folder holding the CSV's files: the root or one of its subfolders."""
    for folder in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
        if Path(_image_path(folder, first)).is_file():
            return folder
    raise DataError(f"{root}: cannot find {first!r} (the CSV's first file) in the folder or its subfolders; "
                    "set data.images to the folder of images")


def _image_path(image_dir: Path, name: str) -> str:
    path = image_dir / name
    if not path.suffix:  # "Identify the digits" lists 0.png; some CSVs drop the extension
        for ext in IMAGE_EXTENSIONS:
            if path.with_suffix(ext).exists():
                return str(path.with_suffix(ext).absolute())
    return str(path.absolute())


def _natural(text: str):
    return (0, int(text), "") if text.lstrip("-").isdigit() else (1, 0, text)


# --- checking files ------------------------------------------------------------------------

def check_image(path: str, check: Check = "fast") -> Optional[str]:
    """None when `path` is a readable image, else the reason it is not."""
    problem = _images.inspect(path, check).problem
    return None if problem is None else problem[1]


def check_images(files: Sequence[str], check: Check = "fast", workers: int = 8) -> list[tuple[str, str]]:
    """(path, reason) for each bad file; checked in a thread pool (Pillow releases the GIL)."""
    return [(st.path, st.problem[1]) for st in _images.scan(files, check, workers) if st.problem]


def _checked(data: FolderDataset, on_error: OnError, check: Check) -> FolderDataset:
    """Scan every split once: report, drop or raise on bad files, mark the files Pillow decodes."""
    bad: list[tuple[str, str]] = []
    splits, reports = {}, {}
    for key, split in data.splits.items():
        statuses = _images.scan(split.files, check)
        report = ScanReport(_shown(data.root / key if data.layout != "csv" else data.root), ignored=split.ignored)
        for st in statuses:
            if st.problem:
                report.problems.append((st.path, *st.problem))
            else:
                report.ok += 1
                report.notes.update(st.notes)
        problems = [(p, reason) for p, _, reason in report.problems]
        if split.files and len(problems) == len(split.files):
            raise DataError(f"{data.root}: none of the {len(split.files)} {key} images is readable "
                            f"(first: {problems[0][0]}: {problems[0][1]})")
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
        raise DataError(f"{data.root}: no readable train images of class(es) {missing}; "
                        "add images or remove the class")
    report.warnings.append(f"{key} has no images of class(es) {missing}: its accuracy leaves them out")


def _shown(path: Path) -> str:
    """`path` relative to the working directory when under it (shorter lines), else absolute."""
    try:
        return str(path.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# --- tf.data -------------------------------------------------------------------------------

def decode_image(path, image_size, pillow=False):
    """Read one file -> float32 (H, W, 3) RGB in 0-255, resized (bilinear) to `image_size`.

    `pillow` (a bool or a bool tensor, from the scan) sends the file through Pillow: EXIF
    rotation, CMYK, alpha on white, 16-bit gray, WebP/TIFF/BMP/GIF (see data/images.py)."""
    import tensorflow as tf

    def fast():
        # channels=3 turns grayscale and palette into RGB
        raw = tf.io.read_file(path)
        image = tf.io.decode_image(raw, channels=3, expand_animations=False, dtype=tf.uint8)
        return tf.ensure_shape(image, [None, None, 3])

    def slow():
        image = tf.numpy_function(_pillow_decode, [path], tf.uint8, stateful=False)
        return tf.ensure_shape(image, [None, None, 3])

    if isinstance(pillow, (bool, np.bool_)):
        image = slow() if pillow else fast()
    else:
        image = tf.cond(pillow, slow, fast)
    image = tf.image.resize(tf.cast(image, tf.float32), image_size, method="bilinear")
    return tf.clip_by_value(image, 0.0, 255.0)


def _pillow_decode(path: bytes) -> np.ndarray:
    name = path.decode("utf-8")
    try:
        return _images.pillow_rgb(name)
    except (OSError, SyntaxError, ValueError) as exc:  # changed since the scan: named, then dropped
        print(f"fastcourse: skipping {name}: unreadable image: {exc}", file=sys.stderr, flush=True)
        raise


def image_dataset(
    files: Sequence[str], labels: Optional[np.ndarray] = None, num_classes: Optional[int] = None,
    image_size=(224, 224), batch_size: int = 64, shuffle: bool = False, seed: int = 0,
    augment: Optional[Callable] = None, repeat: bool = False, start_step: int = 0,
    cache_dir: Optional[str] = None, shuffle_buffer: int = 2048, pillow: Optional[Sequence[bool] | np.ndarray] = None,
):
    """Batches of (images, one-hot labels), or images alone when `labels` is None.

    With `cache_dir`, images are decoded and resized once: the first pass writes them (as
    uint8) to a tf.data file cache named after the file list, their sizes and mtimes, and the
    image size; later epochs and runs read that instead of decoding JPEGs again. Shuffling
    then happens after the cache, within a buffer of `shuffle_buffer` images.

    Files are decoded in a parallel map, in order (deterministic) unless `shuffle`, which
    reshuffles each epoch from `seed`. `augment(images, seed)` (fastcourse.data.augment) runs on
    whole batches with a stateless seed made of `seed` and the batch index, as the array
    pipeline does. Soft labels (N, C) pass through. Elements that fail to decode are dropped.

    `pillow` marks the files to decode with Pillow (FolderSplit.pillow, from the folder's
    scan); without it, every file's header is read here to decide (a quick threaded pass).
    """
    import tensorflow as tf

    from fastcourse.data.base import onehot as _labels

    autotune = tf.data.AUTOTUNE
    size = tuple(int(s) for s in image_size)
    if pillow is None:
        pillow = [st.pillow or st.problem is not None for st in _images.scan(files, "fast")]
    if len(pillow) != len(files):
        raise UsageError(f"image_dataset: {len(pillow)} pillow flags for {len(files)} files")
    items = (list(files), np.asarray(pillow, bool).reshape(len(files)))
    if labels is None:
        ds = tf.data.Dataset.from_tensor_slices(items)
    else:
        if num_classes is None:
            raise UsageError("image_dataset: num_classes is needed with labels")
        ds = tf.data.Dataset.from_tensor_slices((items, _labels(labels, num_classes)))
    if cache_dir:
        ds = _cached_decode(ds, files, size, cache_dir, labels is not None)
        if shuffle:
            ds = ds.shuffle(min(len(files), shuffle_buffer), seed=seed, reshuffle_each_iteration=True)
    else:
        if shuffle:
            ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
        if labels is None:
            ds = ds.map(lambda f, p: decode_image(f, size, p), num_parallel_calls=autotune, deterministic=True)
        else:
            ds = ds.map(lambda x, y: (decode_image(x[0], size, x[1]), y), num_parallel_calls=autotune,
                        deterministic=True)
        ds = ds.ignore_errors(log_warning=True)  # a file that changed since the check: drop, not crash
    ds = ds.batch(batch_size)
    if repeat:
        ds = ds.repeat()
    if start_step:
        ds = ds.skip(start_step)
    if augment is not None:
        seed_t = tf.constant(seed, tf.int64)
        ds = ds.enumerate(start=start_step)
        if labels is None:
            ds = ds.map(lambda i, x: augment(x, tf.stack([seed_t, i])), num_parallel_calls=autotune)
        else:
            ds = ds.map(lambda i, b: (augment(b[0], tf.stack([seed_t, i])), b[1]), num_parallel_calls=autotune)
    return ds.prefetch(autotune)


def _cached_decode(ds, files: Sequence[str], size: tuple[int, int], cache_dir: str, labelled: bool):
    """Decode -> uint8 -> tf.data file cache -> float32; the cache name changes with the input."""
    import hashlib

    import tensorflow as tf

    digest = hashlib.sha1(repr(size).encode())
    for f in files:
        try:
            st = os.stat(f)
            digest.update(f"{f}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        except OSError:  # gone since the folder was opened: a change (decoding will drop it)
            digest.update(f"{f}|missing\n".encode())
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    path = str(Path(cache_dir) / f"decoded-{size[0]}x{size[1]}-{digest.hexdigest()[:16]}")

    def to_uint8(path, pillow):
        return tf.cast(tf.round(decode_image(path, size, pillow)), tf.uint8)

    autotune = tf.data.AUTOTUNE
    if labelled:
        ds = ds.map(lambda x, y: (to_uint8(*x), y), num_parallel_calls=autotune, deterministic=True)
    else:
        ds = ds.map(to_uint8, num_parallel_calls=autotune, deterministic=True)
    ds = ds.ignore_errors(log_warning=True).cache(path)
    if labelled:
        return ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=autotune)
    return ds.map(lambda x: tf.cast(x, tf.float32), num_parallel_calls=autotune)


__all__ = ["FolderDataset", "FolderSplit", "open_folder", "image_dataset", "decode_image",
           "check_image", "check_images", "detect_layout", "list_images", "IMAGE_EXTENSIONS", "ScanReport"]
