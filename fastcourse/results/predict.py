"""Class probabilities from a finished run, for a folder of images or for the run's own
evaluation split, with optional test-time augmentation (TTA). Works on runs of every kind:
array datasets (MNIST-like) and image-folder configs (dogs vs cats, Statefarm).

The run is loaded by fastcourse.results.saved_run.load_run (model in safe mode, classes, seed,
augmentation, data); images are decoded and predicted by fastcourse.results.inference, exactly
as training decoded them. Example::

    preds = predict_folder("runs/dogscats-20260101-120000", "data/dogscats/test", tta=4)
    preds.write_csv("runs/dogscats-20260101-120000/predictions_test.csv")
    evald = predict_eval("runs/mnist-cnn-20260101-120000")   # the run's test/valid split
    evald.split                                                # "test" (arrays) or "valid" (folders)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from fastcourse.data.images import IMAGE_EXTENSIONS, is_os_litter
from fastcourse.errors import DataError, UsageError
from fastcourse.results.inference import (
    TTA_FLIP,
    Tta,
    check_tta,
    folder_source,
    model_batches,
    model_images,
    predict_images,
    predict_source,
    scanned,
)
from fastcourse.results.saved_run import Run, load_run
from fastcourse.run import records

# --- files ------------------------------------------------------------------------------


def list_images(folder: str | os.PathLike) -> list[str]:
    """Image paths under `folder` (recursively), relative to it, in sorted file order; hidden
    files and folders and OS litter (.DS_Store, __MACOSX/...) are left out.

    Raises DataError for a missing folder or one without images.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder of images")
    files = sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS
        and p.is_file()
        and not any(is_os_litter(part) for part in p.relative_to(folder).parts)
    )
    if not files:
        raise DataError(
            f"{folder}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)} files, also in subfolders)"
        )
    return files


def labelled_images(folder: str | os.PathLike, class_names: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """Images of a folder with one subfolder per class (train/ or valid/), and their labels.

    Raises DataError when a subfolder is not one of `class_names`.
    """
    files = list_images(folder)
    return files, labels_of(files, class_names, folder)


def labels_of(files: Sequence[str], class_names: Sequence[str], folder: str | os.PathLike) -> np.ndarray:
    """Each file's label: the class named by its first folder (``dogs/dog.1.jpg`` -> dogs)."""
    index = {name: i for i, name in enumerate(class_names)}
    labels = []
    for f in files:
        top = f.split("/", 1)[0]
        if "/" not in f or top not in index:
            raise DataError(
                f"{Path(folder) / f}: a labelled folder holds one subfolder per class "
                f"({', '.join(class_names)}); {top!r} is not one of them"
            )
        labels.append(index[top])
    return np.asarray(labels, np.int64)


# --- results ----------------------------------------------------------------------------


@dataclass
class Predictions:
    """Per-image class probabilities, rows in `filenames` order.

    `folder` is where the files are (filenames are relative to it); for an array dataset
    filenames are row numbers and `images` holds the images."""

    filenames: list[str]
    probs: np.ndarray
    class_names: list[str]
    labels: Optional[np.ndarray] = None  # true classes, for a labelled folder or split
    folder: Optional[Path] = None
    images: Optional[np.ndarray] = field(default=None, repr=False)
    split: str = ""

    def frame(self):
        import pandas as pd

        frame = pd.DataFrame(self.probs, columns=self.class_names)
        frame.insert(0, "filename", self.filenames)
        return frame

    def write_csv(self, path: str | os.PathLike) -> Path:
        """filename plus one probability column per class, written atomically."""
        from fastcourse.io import atomic_path

        with atomic_path(path) as tmp:
            self.frame().to_csv(tmp, index=False, float_format="%.7g")
        return Path(path)

    def display_image(self, i: int) -> np.ndarray:
        """Row `i`'s image as RGB uint8 for a figure (upright, as the model saw it)."""
        if self.images is not None:
            image = np.asarray(self.images[i])
            if image.ndim == 3 and image.shape[-1] == 1:
                image = image[..., 0]
            return np.clip(image, 0, 255).astype(np.uint8)
        if self.folder is None:
            raise UsageError("these predictions hold no images and no folder to read them from")
        from fastcourse.results.views import load_display_image

        return load_display_image(self.folder / self.filenames[i])


def read_predictions(path: str | os.PathLike) -> Predictions:
    """A CSV written by `fastcourse predict` (filename, then one column per class)."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such predictions CSV")
    try:
        frame = pd.read_csv(path)
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: cannot read predictions: {str(exc).splitlines()[0]}") from None
    if frame.columns[0] != "filename" or len(frame.columns) < 2:
        raise DataError(f"{path}: a predictions CSV starts with a filename column, then one column per class")
    probs = frame.iloc[:, 1:].to_numpy(np.float32)
    if not np.isfinite(probs).all():
        raise DataError(f"{path}: some probabilities are missing or not numbers")
    return Predictions(frame["filename"].astype(str).tolist(), probs, [str(c) for c in frame.columns[1:]])


def predict_folder(
    run: Run | str | os.PathLike,
    folder: str | os.PathLike,
    tta: Tta = 0,
    batch_size: int = 32,
    augment: str | None = None,
    labelled: bool = False,
    class_names: Sequence[str] | None = None,
    on_error: str = "raise",
    progress: bool = True,
    seed: int | None = None,
) -> Predictions:
    """Predict every image of `folder` (recursively, sorted) with the run's model.

    With `labelled`, the folder has one subfolder per class and the result carries the labels.
    `augment` names another pipeline for TTA than the run's own; `seed` (default the run's)
    seeds its copies. An unreadable image stops with a DataError naming it, or
    (on_error="skip") is left out of the result.
    """
    if not isinstance(run, Run):
        run = load_run(run, class_names)
    folder = Path(folder)
    if labelled:
        files, labels = labelled_images(folder, run.class_names)
    else:
        files, labels = list_images(folder), None
    keep, pillow = scanned([str(folder / f) for f in files], on_error)
    files = [files[i] for i in keep]
    labels = None if labels is None else labels[keep]
    source = folder_source(run, [str((folder / f).absolute()) for f in files], labels, pillow)
    probs = predict_source(run, source, tta, batch_size, augment, seed, progress)
    return Predictions(files, probs, list(run.class_names), labels, folder, split=folder.name)


def predict_eval(
    run: Run | str | os.PathLike,
    tta: Tta = 0,
    batch_size: int = 32,
    augment: str | None = None,
    class_names: Sequence[str] | None = None,
    progress: bool = True,
    seed: int | None = None,
    split: str = "eval",
) -> Predictions:
    """Predict the run's own evaluation split (`test` for arrays, `valid` for folders), or with
    split="test" a folder dataset's unlabelled test/ images, from the dataset its config.yaml
    names, decoded as in training. For a folder dataset the file names are relative to the
    dataset's folder; for arrays they are row numbers."""
    if not isinstance(run, Run):
        run = load_run(run, class_names)
    inputs = run.inputs()
    if split not in ("eval", "test"):
        raise UsageError(f"split={split!r}: use 'eval' or 'test'")
    source = inputs.eval
    if split == "test":
        if inputs.unlabelled is None:
            raise UsageError(
                f"{run.path}: the run's dataset {inputs.name} has no unlabelled test/ images; "
                "give the FOLDER of test images"
            )
        source = inputs.unlabelled
    probs = predict_source(run, source, tta, batch_size, augment, seed, progress)
    labels = None if source.labels is None else np.asarray(source.labels)
    return split_predictions(
        inputs, source, probs, run.class_names, labels, inputs.eval_split if split == "eval" else "test"
    )


def saved_eval(run: Run) -> Optional[Predictions]:
    """The run's eval_probs.npy / eval_labels.npy as Predictions, when they still fit the data
    (same number of rows; for folders the same files as eval_predictions.csv); else None."""
    probs_path, labels_path = run.path / records.PROBS, run.path / records.LABELS
    if not (probs_path.is_file() and labels_path.is_file()):
        return None
    inputs = run.inputs()
    probs, labels = np.load(probs_path), np.load(labels_path)
    if len(probs) != len(inputs.eval) or len(labels) != len(probs) or probs.shape[1] != len(run.class_names):
        return None
    if inputs.kind == "folder":
        import pandas as pd

        table = run.path / "eval_predictions.csv"
        if not table.is_file() or pd.read_csv(table)["file"].astype(str).tolist() != list(inputs.eval.files):
            return None
    return split_predictions(inputs, inputs.eval, probs.astype(np.float32), run.class_names, labels, inputs.eval_split)


def split_predictions(
    inputs, source, probs: np.ndarray, class_names: Sequence[str], labels: Optional[np.ndarray], split: str
) -> Predictions:
    """`probs` for the rows of `source`, a split of `inputs` (fastcourse.run.inputs.Inputs), as
    Predictions: for a folder, its files relative to the dataset's folder (a Source given without
    one: to the working directory, or absolute); for arrays, row numbers with the images."""
    if inputs.kind == "folder":
        root = Path(getattr(inputs.dataset, "root", None) or ".").absolute()
        names = [_relative(f, root) for f in source.files]
        return Predictions(names, probs, list(class_names), labels, root, split=split)
    return Predictions(
        [str(i) for i in range(len(probs))],
        probs,
        list(class_names),
        labels,
        images=getattr(source, "x", None),
        split=split,
    )


def _relative(path: str, root: Path) -> str:
    try:
        return Path(path).absolute().relative_to(root).as_posix()
    except ValueError:
        return str(path)


__all__ = [
    "TTA_FLIP",
    "Predictions",
    "Run",
    "Tta",
    "check_tta",
    "folder_source",
    "labelled_images",
    "labels_of",
    "list_images",
    "load_run",
    "model_batches",
    "model_images",
    "predict_eval",
    "predict_folder",
    "predict_images",
    "predict_source",
    "read_predictions",
    "saved_eval",
    "scanned",
    "split_predictions",
]
