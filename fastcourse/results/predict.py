"""Class probabilities from a finished run, for a folder of images or for the run's own
evaluation split, with optional test-time augmentation (TTA). Works on runs of every kind:
array datasets (MNIST-like) and image-folder configs (dogs vs cats, Statefarm).

A run directory holds model.keras (loaded in safe mode by fastcourse.run.artifacts.load_model),
config.yaml (the augmentation TTA reuses, the seed, the dataset) and metrics.json (`classes`,
`data_kind`, `test_split`). Images are decoded exactly as training decoded them: a
fastcourse.data.sources.FolderSource over the files, whose per-file decoder (TensorFlow, or
Pillow for EXIF rotation, CMYK, 16-bit, WebP...) the folder scan fastcourse.data.images.scan
chooses. Example::

    preds = predict_folder("runs/dogscats-20260101-120000", "data/dogscats/test", tta=4)
    preds.write_csv("runs/dogscats-20260101-120000/predictions_test.csv")
    evald = predict_eval("runs/mnist-cnn-20260101-120000")   # the run's test/valid split

TTA averages the probabilities of the clean images and of `tta` augmented copies of them,
each copy drawn from a stateless seed (the seed, the batch, the pass), so a rerun with the
same seed and --batch-size gives the same numbers.
"""
from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from fastcourse.data.images import IMAGE_EXTENSIONS, is_os_litter
from fastcourse.errors import DataError, UsageError


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
        p.relative_to(folder).as_posix() for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
        and not any(is_os_litter(part) for part in p.relative_to(folder).parts)
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
    metrics: dict = field(default_factory=dict)
    _inputs: object = field(default=None, repr=False)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(height, width, channels) the model takes."""
        shape = self.model.input_shape
        return int(shape[1]), int(shape[2]), int(shape[3])

    @property
    def data_kind(self) -> str:
        """"arrays" or "folder" (metrics.json's data_kind; "" when the run does not say)."""
        return str(self.metrics.get("data_kind") or "")

    def augmenter(self, name: str | None = None, args: dict | None = None) -> Optional[Callable]:
        """The run's augmentation pipeline (or the one named), as `augment(images, seed)`."""
        from fastcourse.data import augment

        if name is not None:
            return augment.build(name, args or {})
        return augment.build(self.augment_name, self.augment_args)

    def inputs(self):
        """The run's data as training saw it (fastcourse.run.inputs.Inputs), loaded once."""
        if self._inputs is None:
            from fastcourse.run.inputs import inputs_for
            from fastcourse.run.rundir import saved_config

            if not (self.path / "config.yaml").is_file():
                raise UsageError(f"{self.path}: no config.yaml, so the run's data is unknown; give a FOLDER of images")
            try:
                self._inputs = inputs_for(saved_config(self.path))
            except UsageError as exc:
                raise type(exc)(f"{self.path}: cannot open the run's data: {exc}") from None
            if list(self._inputs.class_names) != list(self.class_names):
                raise UsageError(f"{self.path}: the run's dataset has classes {self._inputs.class_names}, the model "
                                 f"{self.class_names}")
        return self._inputs


def load_run(run_dir: str | os.PathLike, class_names: Sequence[str] | None = None) -> Run:
    """Load RUN/model.keras in safe mode and what config.yaml and metrics.json say about the run.

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
    metrics = _read_json(run_dir / "metrics.json")
    names = list(class_names) if class_names else _class_names(run_dir, cfg, metrics)
    outputs = int(model.output_shape[-1])
    if len(names) != outputs:
        raise UsageError(f"{run_dir}: the model has {outputs} outputs but {len(names)} class names "
                         f"{names}; pass --classes with {outputs} names")
    augment = cfg.get("augment") or {"name": "none"}
    return Run(run_dir, model, names, int(cfg.get("seed", 0) or 0), augment.get("name", "none"),
               {k: v for k, v in augment.items() if k != "name"}, metrics)


def _read_config(run_dir: Path) -> dict:
    from fastcourse.safe_yaml import load_yaml

    path = run_dir / "config.yaml"
    if not path.is_file():
        return {}
    try:
        raw = load_yaml(path)
    except UsageError as exc:
        raise UsageError(f"{path}: cannot read the run's config: {str(exc).splitlines()[0]}") from None
    return raw if isinstance(raw, dict) else {}


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _class_names(run_dir: Path, cfg: dict, metrics: dict) -> list[str]:
    for names in (_read_json_any(run_dir / "classes.json"), metrics.get("classes"), metrics.get("class_names")):
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


def _read_json_any(path: Path):
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# --- images -----------------------------------------------------------------------------

def scanned(paths: Sequence[str], on_error: str = "raise", shown: Sequence[str] | None = None
            ) -> tuple[list[int], np.ndarray]:
    """Scan the files as a folder dataset scans them (fastcourse.data.images.scan): return the
    indices of the usable ones and, for those, whether Pillow decodes them (EXIF, CMYK, WebP...).

    A bad file stops with a DataError naming it, or with on_error="skip" is left out (named on
    stderr). `shown` are the names to print (default the paths)."""
    from fastcourse.data.images import scan

    if on_error not in ("raise", "skip"):
        raise UsageError(f"on_error={on_error!r}: use 'raise' or 'skip'")
    shown = list(shown) if shown is not None else list(paths)
    statuses = scan(list(paths), "fast")
    bad = [i for i, st in enumerate(statuses) if st.problem]
    if bad and on_error == "raise":
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise DataError(f"{paths[bad[0]]}: {statuses[bad[0]].problem[1]}{more}; remove or replace it, "
                        "or pass --on-error skip")
    for i in bad:
        print(f"fastcourse: skipping {paths[i]}: {statuses[i].problem[1]}", file=sys.stderr, flush=True)
    keep = [i for i, st in enumerate(statuses) if not st.problem]
    if not keep:
        raise DataError(f"none of the {len(paths)} images is readable (first: {paths[0]})")
    return keep, np.asarray([statuses[i].pillow for i in keep], bool)


def folder_source(run: Run, paths: Sequence[str], labels: Optional[np.ndarray] = None,
                  pillow: Optional[np.ndarray] = None):
    """A FolderSource over `paths` (absolute) at the model's image size: training's decoding."""
    from fastcourse.data.sources import FolderSource

    height, width, _ = run.image_shape
    return FolderSource(list(paths), labels, len(run.class_names), (height, width), None, pillow)


def model_batches(run: Run, source, batch_size: int):
    """The source's images in batches, with the channels the model takes (float32 0-255).

    Image files decode to RGB; a one-channel model (the MNIST ladder) gets them as gray
    (ITU-R 601 luma, as Pillow's convert("L")), which keeps a gray image's values."""
    import tensorflow as tf

    ds = source.batches(batch_size, labels=False)
    want, have = run.image_shape[2], int(source.input_shape[-1])
    if want == have:
        return ds
    if want == 1 and have == 3:
        weights = tf.constant([0.299, 0.587, 0.114], tf.float32)
        return ds.map(lambda x: tf.reduce_sum(x * weights, axis=-1, keepdims=True))
    raise UsageError(f"the model takes {want}-channel images; these have {have} channels")


def model_images(run: Run, paths: Sequence[str]) -> np.ndarray:
    """`paths` as the model sees them (decoded, resized, the model's channels)."""
    keep, pillow = scanned(paths)
    return np.concatenate([np.asarray(b) for b in
                           model_batches(run, folder_source(run, [paths[i] for i in keep], None, pillow), 32)])


def predict_images(
    model, batches, augmenter: Optional[Callable] = None, tta: int = 0, seed: int = 0,
    total: Optional[int] = None, progress: bool = True,
) -> np.ndarray:
    """Probabilities (N, classes) for a dataset of image batches; with `tta`, the mean over the
    clean batch and `tta` augmented copies of it (augmented in tf.data, seeded per batch/pass).

    The model runs in inference mode (batchnorm uses its moving statistics, which the trainer
    recalibrated before saving): these are the model's real outputs."""
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


def predict_source(run: Run, source, tta: int = 0, batch_size: int = 32, augment: str | None = None,
                   seed: int | None = None, progress: bool = True) -> np.ndarray:
    """Probabilities for every example of a Source (arrays or image files), in order.

    `seed` (default the run's) seeds the TTA copies; `augment` names another pipeline for TTA
    than the run's own. Raises DataError when a file does not decode (named when it can be)."""
    if batch_size < 1:
        raise UsageError(f"batch_size={batch_size}: must be at least 1")
    augmenter = run.augmenter(augment) if tta else None
    probs = predict_images(run.model, model_batches(run, source, batch_size), augmenter, tta,
                           run.seed if seed is None else int(seed),
                           total=math.ceil(len(source) / batch_size), progress=progress)
    if len(probs) != len(source):  # the pipeline drops a file that fails to decode: find it
        bad = _undecodable(run, source)
        raise DataError(f"{bad}: cannot decode this image; remove or replace it and predict again")
    return probs


def _undecodable(run: Run, source) -> str:
    files = getattr(source, "files", None)
    if not files:
        return "one of the images"
    from fastcourse.data.sources import FolderSource

    for i, f in enumerate(files):
        one = FolderSource([f], None, source.num_classes, source.image_size, None,
                           None if source.pillow is None else source.pillow[i:i + 1])
        if sum(int(b.shape[0]) for b in one.batches(1, labels=False)) == 0:
            return str(f)
    return f"one of {files[0]} ... {files[-1]}"


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
    run: Run | str | os.PathLike, folder: str | os.PathLike, tta: int = 0, batch_size: int = 32,
    augment: str | None = None, labelled: bool = False, class_names: Sequence[str] | None = None,
    on_error: str = "raise", progress: bool = True, seed: int | None = None,
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
    run: Run | str | os.PathLike, tta: int = 0, batch_size: int = 32, augment: str | None = None,
    class_names: Sequence[str] | None = None, progress: bool = True, seed: int | None = None,
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
            raise UsageError(f"{run.path}: the run's dataset {inputs.name} has no unlabelled test/ images; "
                             "give the FOLDER of test images")
        source = inputs.unlabelled
    probs = predict_source(run, source, tta, batch_size, augment, seed, progress)
    labels = None if source.labels is None else np.asarray(source.labels)
    if inputs.kind == "folder":
        root = Path(inputs.dataset.root).absolute()
        names = [_relative(f, root) for f in source.files]
        return Predictions(names, probs, list(run.class_names), labels, root,
                           split=inputs.eval_split if split == "eval" else "test")
    return Predictions([str(i) for i in range(len(source))], probs, list(run.class_names), labels,
                       images=getattr(source, "x", None), split=inputs.eval_split)


def saved_eval(run: Run) -> Optional[Predictions]:
    """The run's eval_probs.npy / eval_labels.npy as Predictions, when they still fit the data
    (same number of rows; for folders the same files as eval_predictions.csv); else None."""
    probs_path, labels_path = run.path / "eval_probs.npy", run.path / "eval_labels.npy"
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
        root = Path(inputs.dataset.root).absolute()
        return Predictions([_relative(f, root) for f in inputs.eval.files], probs.astype(np.float32),
                           list(run.class_names), labels, root, split=inputs.eval_split)
    return Predictions([str(i) for i in range(len(probs))], probs.astype(np.float32), list(run.class_names),
                       labels, images=getattr(inputs.eval, "x", None), split=inputs.eval_split)


def _relative(path: str, root: Path) -> str:
    try:
        return Path(path).absolute().relative_to(root).as_posix()
    except ValueError:
        return str(path)
