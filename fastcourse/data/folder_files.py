"""Which files an image folder holds, and their labels: the four layouts.

- class_folders: root/<class>/*.jpg and nothing else: every sub-folder is a class (Keras'
  ``image_dataset_from_directory``, torchvision's ``ImageFolder``, fastai's ``from_folder``
  with ``valid_pct``). One split, train; a valid split is held out in memory
  (``data.valid_fraction``, the Learner's ``valid_pct``) or written by `fastcourse split`.
- dogscats:  root/{train,valid}/<class>/*.jpg, root/test/unknown/*.jpg (or images directly in
  test/), optional root/sample/ with the same layout (``sample=True`` opens it).
- statefarm: root/train/c0..c9/*.jpg plus root/driver_imgs_list.csv (subject, classname, img):
  each file's driver becomes its group; root/valid/ when `fastcourse split` made one; root/test/.
- csv:       one folder of images plus a CSV of ``filename,label`` rows ("Identify the digits"):
  ``csv="train.csv", images="Images/train"``; optional ``valid_csv`` and ``test_images``.
  A file the CSV lists that is not there is skipped and named by the folder's scan, wherever
  it sits in the CSV (fastcourse.data.folders).

`detect_layout` tells them apart (LAYOUTS says how, one line each); a folder that holds
train/ and also class folders of images beside it is refused, naming both readings.

Class folders: train/ needs at least 2 non-empty class folders; valid/ may lack a class (a
warning says its accuracy leaves it out) but may not add one; hidden folders and __MACOSX/
are ignored. `open_layout` returns the class names and the splits as FolderSplits; opening
them (the scan, the checks) is fastcourse.data.folders.open_folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Sequence

import numpy as np

from fastcourse.data import images as _images
from fastcourse.data.images import IMAGE_EXTENSIONS
from fastcourse.errors import DataError, UsageError

Layout = Literal["auto", "class_folders", "dogscats", "statefarm", "csv"]

# layout -> how `detect_layout` recognises it, in the order it tries them (docs/configs.md's table)
LAYOUTS = {
    "statefarm": "driver_imgs_list.csv at the root, beside train/<class>/",
    "dogscats": "a train/ folder holding class folders (valid/, test/, sample/ optional)",
    "csv": "no train/, a .csv file at the root (filename,label rows)",
    "class_folders": "no train/ and no .csv: folders of images at the root, one per class",
}
# names of root folders that are a split of the dogscats/statefarm layouts, never a class
# (fast.ai's dogscats archive names its test set test1/)
SPLIT_FOLDERS = ("train", "valid", "test", "test1", "sample")


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
            name or self.name,
            [self.files[i] for i in index],
            None if self.labels is None else self.labels[index],
            None if self.groups is None else [self.groups[i] for i in index],
            None if self.pillow is None else self.pillow[index],
        )


def open_layout(
    root: Path,
    layout: Layout = "auto",
    csv: str | None = None,
    images: str | None = None,
    valid_csv: str | None = None,
    test_images: str | None = None,
    filename_column: str = "filename",
    label_column: str = "label",
) -> tuple[str, list[str], dict[str, "FolderSplit"]]:
    """(layout, class names, splits) of the folder `root` (layout="auto" detects it)."""
    if layout == "auto":
        layout = detect_layout(root)
    if layout == "class_folders":
        classes, splits = _open_root_classes(root)
    elif layout == "dogscats":
        classes, splits = _open_class_folders(root)
    elif layout == "statefarm":
        classes, splits = _open_statefarm(root)
    elif layout == "csv":
        classes, splits = _open_csv(root, csv, images, valid_csv, test_images, filename_column, label_column)
    else:
        raise UsageError(f"layout={layout!r}: use auto, {', '.join(LAYOUTS)}")
    return layout, classes, splits


def detect_layout(root: Path) -> str:
    """Which of LAYOUTS `root` is in (a DataError when none, or when two readings fit)."""
    at_root = root_class_folders(root)
    if at_root and (root / "train").is_dir():
        shown = ", ".join(f"{name}/" for name in at_root[:3]) + (", ..." if len(at_root) > 3 else "")
        raise DataError(
            f"{root}: holds both train/ (the dogscats layout: train/<class>/) and class folders of images "
            f"at the root ({shown}: the class_folders layout); move them under train/ or out of {root}, "
            "or set data.layout"
        )
    if (root / "driver_imgs_list.csv").is_file():
        return "statefarm"
    if (root / "train").is_dir() and any(p.is_dir() for p in (root / "train").iterdir()):
        return "dogscats"
    if any(root.glob("*.csv")):
        return "csv"
    if at_root:
        return "class_folders"
    raise DataError(
        f"{root}: not a known image-folder layout: expected <class>/ folders of images, train/<class>/ "
        "folders, train/ plus driver_imgs_list.csv, or a CSV of filename,label rows; set data.layout"
    )


def root_class_folders(root: Path) -> list[str]:
    """The folders directly under `root` that hold images directly and are not a split's name
    (SPLIT_FOLDERS): the classes of the class_folders layout."""
    if not root.is_dir():
        return []
    return [name for name in class_folders(root) if name not in SPLIT_FOLDERS and _list_folder(root / name)[0]]


def images_directly_in(folder: Path) -> list[str]:
    """Absolute paths of the image files directly in `folder` (not in its subfolders), sorted by
    name; hidden files and OS litter are ignored. (fastcourse.results.predict.list_images is
    the recursive listing of a folder to predict, relative to it.)"""
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
        raise DataError(
            f"{folder}: class folder(s) {extra} are not in train/ ({classes}); every split needs the same class folders"
        )
    if empty and name == "train":
        raise DataError(
            f"{folder / empty[0]}: no images in this class folder ({len(empty)} empty: {empty}); "
            "add images or remove the folder"
        )
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


def _open_root_classes(root: Path) -> tuple[list[str], dict[str, FolderSplit]]:
    # every sub-folder is a class, as in keras.utils.image_dataset_from_directory (an empty one too:
    # _labelled_split names it)
    classes = class_folders(root)
    if (root / "train").is_dir():
        raise DataError(f"{root}: has a train/ folder; the class_folders layout has one folder per class only")
    if len(classes) < 2:
        raise DataError(f"{root}: found {len(classes)} class folder(s); need at least 2 (<class>/*.jpg)")
    train = _labelled_split("train", root, classes)
    if not len(train):
        raise DataError(f"{root}: no images ({', '.join(IMAGE_EXTENSIONS)}) in the class folders")
    return classes, {"train": train}


def _open_statefarm(root: Path) -> tuple[list[str], dict[str, FolderSplit]]:
    classes, splits = _open_class_folders(root)
    # a sample/ folder made by `fastcourse split` carries its own copy; else use the parent's
    table_path = root / "driver_imgs_list.csv"
    if not table_path.is_file() and (root.parent / "driver_imgs_list.csv").is_file():
        table_path = root.parent / "driver_imgs_list.csv"
    table = read_csv(table_path, ["subject", "img"])
    driver = dict(zip(table["img"].astype(str), table["subject"].astype(str)))
    for key in ("train", "valid"):
        if key in splits:
            split = splits[key]
            missing = [f for f in split.files if Path(f).name not in driver]
            if missing:
                raise DataError(
                    f"{table_path}: no subject for {missing[0]} ({len(missing)} files missing); "
                    "the CSV must list every training image"
                )
            split.groups = [driver[Path(f).name] for f in split.files]
    return classes, splits


def read_csv(path: Path, columns: list[str]):
    """A CSV file as a DataFrame that has `columns`; a one-line DataError otherwise."""
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
    table = read_csv(root / csv, [filename_column, label_column])
    image_dir = root / images if images else _find_image_dir(root, root / csv, [str(f) for f in table[filename_column]])
    classes = sorted({str(v) for v in table[label_column]}, key=_natural)
    index = {c: i for i, c in enumerate(classes)}

    def rows(tab, name):
        files = [_image_path(image_dir, str(f)) for f in tab[filename_column]]
        return FolderSplit(name, files, np.asarray([index[str(v)] for v in tab[label_column]], np.int64))

    splits = {"train": rows(table, "train")}
    if valid_csv:
        vt = read_csv(root / valid_csv, [filename_column, label_column])
        unknown = sorted({str(v) for v in vt[label_column]} - set(classes))
        if unknown:
            raise DataError(f"{root / valid_csv}: labels {unknown[:5]} are not in {csv}")
        splits["valid"] = rows(vt, "valid")
    if test_images:
        splits["test"] = _unlabelled_split("test", root / test_images)
    return classes, splits


def _find_image_dir(root: Path, csv: Path, names: list[str], probe: int = 200) -> Path:
    """The folder holding the CSV's files: the root or the subfolder where most of them are.

    Up to `probe` names spread over the whole CSV are looked for, so no single file decides:
    files missing from the chosen folder are then skipped and named like any unreadable image
    (the folder's scan), wherever they sit in the CSV."""
    if not names:
        raise DataError(f"{csv}: no rows; list the images as filename,label rows")
    picked = [names[i] for i in np.unique(np.linspace(0, len(names) - 1, min(probe, len(names))).astype(int))]
    best, found = root, 0
    for folder in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
        hits = sum(Path(_image_path(folder, name)).is_file() for name in picked)
        if hits > found:
            best, found = folder, hits
    if not found:
        raise DataError(
            f"{csv}: none of its files ({', '.join(repr(n) for n in picked[:3])}, ...) is in {root} "
            "or one of its subfolders; set data.images to the folder that holds them"
        )
    return best


def _image_path(image_dir: Path, name: str) -> str:
    path = image_dir / name
    if not path.suffix:  # "Identify the digits" lists 0.png; some CSVs drop the extension
        for ext in IMAGE_EXTENSIONS:
            if path.with_suffix(ext).exists():
                return str(path.with_suffix(ext).absolute())
    return str(path.absolute())


def _natural(text: str):
    return (0, int(text), "") if text.lstrip("-").isdigit() else (1, 0, text)


# --- limits -----------------------------------------------------------------------------


def stratified_subset(
    n: int,
    k: int,
    seed: int | Sequence[int],
    labels: Optional[np.ndarray] = None,
    class_names: Optional[Sequence[str]] = None,
    what: str = "limit",
) -> np.ndarray:
    """`k` of `n` indices, sorted, drawn from `seed` (an int or a sequence of ints).

    With `labels`, each class present keeps its share of `k` (largest remainders; at least one
    image each), so a limit never changes which classes the task has. A `k` smaller than the
    number of classes present is a DataError naming the classes that would be left out
    (`what` says which limit, for the message)."""
    rng = np.random.default_rng(seed)
    if k >= n:
        return np.arange(n)
    if k < 1:
        raise UsageError(f"{what}: keep at least one image")
    if labels is None:
        return np.sort(rng.choice(n, size=k, replace=False))
    labels = np.asarray(labels)
    if labels.ndim != 1:  # soft labels: by their most likely class
        labels = labels.argmax(1)
    labels = labels.astype(np.int64)
    counts = np.bincount(labels, minlength=len(class_names) if class_names is not None else 0)
    present = np.flatnonzero(counts)
    names = list(class_names) if class_names is not None else [str(c) for c in range(len(counts))]
    if k < len(present):
        # the biggest classes get the places; the rest would be left without images
        kept = {int(c) for c in sorted(present, key=lambda c: (-counts[c], c))[:k]}
        left = [names[c] for c in present if c not in kept]
        raise DataError(
            f"{what}: {len(present)} classes but room for {k} image{'s' if k > 1 else ''}, so class(es) "
            f"{', '.join(repr(c) for c in left[:5])}{' ...' if len(left) > 5 else ''} would have no "
            f"images; raise the limit to at least {len(present)} or remove it"
        )
    exact = k * counts / counts.sum()
    quota = np.where(counts > 0, np.maximum(1, np.floor(exact)), 0).astype(np.int64)
    quota = np.minimum(quota, counts)
    while quota.sum() > k:  # the at-least-one places came from the classes most over their share
        over = np.where(quota > 1, quota - exact, -np.inf)
        quota[int(np.argmax(over))] -= 1
    while quota.sum() < k:  # largest remainders first (ties: the lower class index)
        room = np.where(quota < counts, exact - quota, -np.inf)
        quota[int(np.argmax(room))] += 1
    picked = [rng.choice(np.flatnonzero(labels == c), size=int(quota[c]), replace=False) for c in present]
    return np.sort(np.concatenate(picked))
