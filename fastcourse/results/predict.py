"""Class probabilities for every image of a folder, from a finished run, with optional
test-time augmentation (TTA).

A run directory holds model.keras (loaded with safe_mode=True) and config.yaml (the
augmentation TTA reuses, the seed, the dataset whose class names label the columns). The
model's input gives the image size; images are decoded and resized in tf.data. Example::

    preds = predict_folder("runs/dogscats-20260101-120000", "data/dogscats/test", tta=4)
    preds.write_csv("runs/dogscats-20260101-120000/predictions.csv")

TTA averages the probabilities of the clean images and of `tta` augmented copies of them,
each copy drawn from a stateless seed (the run's seed, the batch, the pass), so a rerun with
the same --batch-size gives the same numbers.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from fastcourse.data.folders import IMAGE_EXTENSIONS  # what the folder datasets read
from fastcourse.errors import DataError, UsageError


# --- files ------------------------------------------------------------------------------

def list_images(folder: str | os.PathLike) -> list[str]:
    """Image paths under `folder` (recursively), relative to it, in sorted file order.

    Raises DataError for a missing folder or one without images.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder of images")
    files = sorted(
        p.relative_to(folder).as_posix() for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    if not files:
        raise DataError(f"{folder}: no images found (looked for {', '.join(IMAGE_EXTENSIONS)} files, "
                        "also in subfolders)")
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
            raise DataError(f"{Path(folder) / f}: a labelled folder holds one subfolder per class "
                            f"({', '.join(class_names)}); {top!r} is not one of them")
        labels.append(index[top])
    return np.asarray(labels, np.int64)


# --- the run ----------------------------------------------------------------------------

@dataclass
class Run:
    """What prediction needs from a run directory."""

    path: Path
    model: object
    class_names: list[str]
    seed: int = 0
    augment_name: str = "none"
    augment_args: dict = field(default_factory=dict)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(height, width, channels) the model takes."""
        shape = self.model.input_shape
        return int(shape[1]), int(shape[2]), int(shape[3])

    def augmenter(self, name: str | None = None, args: dict | None = None) -> Optional[Callable]:
        """The run's augmentation pipeline (or the one named), as `augment(images, seed)`."""
        from fastcourse.data import augment

        if name is not None:
            return augment.build(name, args or {})
        return augment.build(self.augment_name, self.augment_args)


def load_run(run_dir: str | os.PathLike, class_names: Sequence[str] | None = None) -> Run:
    """Load RUN/model.keras in safe mode and what config.yaml says about the run.

    Class names come from `class_names`, else RUN/classes.json or metrics.json's `classes`,
    else the run's dataset; they must match the model's outputs.
    """
    from fastcourse.run.artifacts import load_model

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: no such run directory")
    model_path = run_dir / "model.keras"
    if not model_path.is_file():
        if (run_dir / "config.yaml").is_file() and not (run_dir / "metrics.json").is_file():
            raise UsageError(f"{run_dir}: no model.keras: the run is unfinished; continue it with "
                             f"`fastcourse run {run_dir}`")
        raise UsageError(f"{run_dir}: no model.keras in this run; train one with `fastcourse run CONFIG` "
                         "and pass the run directory it prints")
    # safe mode, one-line errors for a corrupt or foreign file; compile=False: prediction needs
    # no optimizer (and the learning-rate schedule need not deserialize)
    model = load_model(model_path, compile=False)
    if len(model.input_shape) != 4:
        raise UsageError(f"{model_path}: the model takes inputs of shape {model.input_shape}, not images")
    cfg = _read_config(run_dir)
    names = list(class_names) if class_names else _class_names(run_dir, cfg)
    outputs = int(model.output_shape[-1])
    if len(names) != outputs:
        raise UsageError(f"{run_dir}: the model has {outputs} outputs but {len(names)} class names "
                         f"{names}; pass --classes with {outputs} names")
    augment = cfg.get("augment") or {"name": "none"}
    return Run(run_dir, model, names, int(cfg.get("seed", 0) or 0), augment.get("name", "none"),
               {k: v for k, v in augment.items() if k != "name"})


def _read_config(run_dir: Path) -> dict:
    import yaml

    path = run_dir / "config.yaml"
    if not path.is_file():
        return {}
    try:
        raw = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, OSError) as exc:
        raise UsageError(f"{path}: cannot read the run's config: {str(exc).splitlines()[0]}") from None
    return raw if isinstance(raw, dict) else {}


def _class_names(run_dir: Path, cfg: dict) -> list[str]:
    for name, key in (("classes.json", None), ("metrics.json", "classes"), ("metrics.json", "class_names")):
        path = run_dir / name
        if path.is_file():
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            names = data.get(key) if key and isinstance(data, dict) else data
            if isinstance(names, list) and names:
                return [str(n) for n in names]
    data = cfg.get("data") or {}
    if data.get("name"):
        from fastcourse.data import DATASETS

        args = {k: v for k, v in data.items() if k not in ("name", "train_limit", "test_limit")}
        try:
            return list(DATASETS.get(data["name"])(**args).class_names)
        except Exception as exc:  # the data may be gone or elsewhere: say so, offer --classes
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UsageError(f"{run_dir}: cannot tell the class names (no classes.json; loading dataset "
                             f"{data['name']!r} failed: {reason}); pass --classes a,b,...") from None
    raise UsageError(f"{run_dir}: cannot tell the class names (no classes.json, no data section in "
                     "config.yaml); pass --classes a,b,...")


# --- images -----------------------------------------------------------------------------

def image_dataset(folder: str | os.PathLike, files: Sequence[str], image_shape: tuple[int, int, int],
                  batch_size: int = 32):
    """Batches of float32 0-255 images (B, H, W, C), decoded and resized in tf.data, in order.

    RGB models get exactly the decoding their training folders had (fastcourse.data.folders:
    any mode to RGB, bilinear resize); one-channel models get the image as grayscale.
    """
    import tensorflow as tf

    from fastcourse.data.folders import decode_image

    height, width, channels = image_shape
    if channels not in (1, 3):
        raise UsageError(f"the model takes {channels}-channel images; predict reads 1 (gray) or 3 (RGB)")
    paths = [str(Path(folder) / f) for f in files]

    def load(path):
        if channels == 3:
            return decode_image(path, (height, width))
        image = tf.io.decode_image(tf.io.read_file(path), channels=1, expand_animations=False)
        image.set_shape([None, None, 1])
        image = tf.image.resize(tf.cast(image, tf.float32), (height, width), method="bilinear")
        return tf.clip_by_value(image, 0.0, 255.0)

    ds = tf.data.Dataset.from_tensor_slices(paths).map(load, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def readable(folder: str | os.PathLike, files: Sequence[str], labels: Optional[np.ndarray] = None,
             on_error: str = "raise") -> tuple[list[str], Optional[np.ndarray]]:
    """Check every file before predicting (truncated or foreign files): raise a DataError naming
    the first bad one, or with on_error="skip" leave them out (printing each)."""
    import sys

    from fastcourse.data.folders import check_images

    if on_error not in ("raise", "skip"):
        raise UsageError(f"on_error={on_error!r}: use 'raise' or 'skip'")
    bad = check_images([str(Path(folder) / f) for f in files])
    if not bad:
        return list(files), labels
    if on_error == "raise":
        path, reason = bad[0]
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise DataError(f"{path}: {reason}{more}; remove or replace it, or pass --on-error skip")
    dropped = {p for p, _ in bad}
    for path, reason in bad:
        print(f"fastcourse: skipping {path}: {reason}", file=sys.stderr, flush=True)
    keep = [i for i, f in enumerate(files) if str(Path(folder) / f) not in dropped]
    if not keep:
        raise DataError(f"{folder}: none of the {len(files)} images is readable")
    return [files[i] for i in keep], (None if labels is None else labels[keep])


def _unreadable(folder: Path, files: Sequence[str], image_shape) -> str:
    """The first of `files` that does not decode (to name it in the error)."""
    import tensorflow as tf

    for f in files:
        try:
            for _ in image_dataset(folder, [f], image_shape, 1):
                pass
        except tf.errors.OpError:
            return str(folder / f)
    return f"one of {folder / files[0]} ... {folder / files[-1]}"


# --- prediction -------------------------------------------------------------------------

def predict_images(
    model, batches, augmenter: Optional[Callable] = None, tta: int = 0, seed: int = 0,
    total: Optional[int] = None, progress: bool = True,
) -> np.ndarray:
    """Probabilities (N, classes) for a dataset of image batches; with `tta`, the mean over the
    clean batch and `tta` augmented copies of it (augmented in tf.data, seeded per batch/pass)."""
    import tensorflow as tf
    from tqdm.auto import tqdm

    if tta < 0:
        raise UsageError(f"--tta {tta}: give 0 (no augmentation) or a positive number of passes")
    if tta and augmenter is None:
        raise UsageError("test-time augmentation needs an augmentation, but the run has `augment: none`; "
                         "pass --augment NAME (e.g. dogscats)")
    if tta:
        seed_t = tf.constant(int(seed), tf.int64)

        def copies(step, images):
            passes = [images] + [augmenter(images, tf.stack([seed_t, step * tta + k])) for k in range(tta)]
            return tf.stack(passes)  # (tta+1, B, H, W, C), augmented in parallel with the model's work

        batches = batches.enumerate().map(copies, num_parallel_calls=tf.data.AUTOTUNE)
    out = []
    for images in tqdm(batches, total=total, desc="predict", unit="batch", disable=not progress, leave=False):
        if tta:  # one model call per pass: the model's batch stays `batch_size` (VGG memory)
            probs = np.mean([np.asarray(model.predict_on_batch(p), np.float64) for p in images], axis=0)
        else:
            probs = np.asarray(model.predict_on_batch(images), np.float64)
        out.append(probs)
    classes = int(model.output_shape[-1])
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, classes), np.float32)


@dataclass
class Predictions:
    """Per-image class probabilities, rows in `filenames` order."""

    filenames: list[str]
    probs: np.ndarray
    class_names: list[str]
    labels: Optional[np.ndarray] = None  # true classes, for a labelled folder

    def frame(self):
        import pandas as pd

        frame = pd.DataFrame(self.probs, columns=self.class_names)
        frame.insert(0, "filename", self.filenames)
        return frame

    def write_csv(self, path: str | os.PathLike) -> Path:
        """filename plus one probability column per class, written atomically."""
        from fastcourse.io import atomic_path

        with atomic_path(path) as tmp:
            self.frame().to_csv(tmp, index=False, float_format="%.6g")
        return Path(path)


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
    run: Run | str | os.PathLike, folder: str | os.PathLike, tta: int = 0, batch_size: int = 32,
    augment: str | None = None, labelled: bool = False, class_names: Sequence[str] | None = None,
    on_error: str = "raise", progress: bool = True,
) -> Predictions:
    """Predict every image of `folder` with the run's model (see the module docstring).

    With `labelled`, the folder has one subfolder per class and the result carries the labels.
    `augment` names another pipeline for TTA than the run's own. An unreadable image stops
    with a DataError naming it, or (on_error="skip") is left out of the result.
    """
    import tensorflow as tf

    if not isinstance(run, Run):
        run = load_run(run, class_names)
    folder = Path(folder)
    if labelled:
        files, labels = labelled_images(folder, run.class_names)
    else:
        files, labels = list_images(folder), None
    files, labels = readable(folder, files, labels, on_error)
    augmenter = run.augmenter(augment) if tta else None
    batches = image_dataset(folder, files, run.image_shape, batch_size)
    try:
        probs = predict_images(run.model, batches, augmenter, tta, run.seed,
                               total=math.ceil(len(files) / batch_size), progress=progress)
    except tf.errors.OpError:
        bad = _unreadable(folder, files, run.image_shape)
        raise DataError(f"{bad}: cannot decode this image; remove or replace it and predict again") from None
    return Predictions(files, probs, list(run.class_names), labels)
