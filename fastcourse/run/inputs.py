"""A config's data as every task sees it, whatever its kind (arrays or image folders).

inputs = inputs_for(cfg)
inputs.train, inputs.eval          # Sources: what the trainer fits on and what is reported
inputs.eval_split                  # "test" for array datasets, "valid" for folders
inputs.unlabelled                  # a folder's test/ images (pseudo-labels), else None
inputs.input_shape, inputs.mean, inputs.std, inputs.class_names
"""

from __future__ import annotations

import contextlib
import inspect
import typing
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Iterator, Optional

from fastcourse.config import ExperimentConfig
from fastcourse.data import DATASETS, ArrayDataset
from fastcourse.data.folders import FolderDataset
from fastcourse.data.sources import ArraySource, FolderSource, Source
from fastcourse.errors import UsageError


@dataclass
class Inputs:
    name: str
    kind: str  # "arrays" | "folder"
    class_names: list[str]
    train: Source
    eval: Source
    eval_split: str
    input_shape: tuple[int, ...]
    mean: float
    std: float
    source: str = ""
    unlabelled: Optional[Source] = None
    eval_files: Optional[list[str]] = None
    dataset: object = field(default=None, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def describe(self) -> str:
        if self.train is None:  # a learner loaded for prediction (load_learner): the classes, no data
            return f"{self.name} ({self.kind}: no data, {self.num_classes} classes)"
        return (
            f"{self.name} ({self.kind}: {len(self.train)} train / {len(self.eval)} {self.eval_split}, "
            f"{self.num_classes} classes)"
        )

    def progress_note(self, train) -> Optional[str]:
        """The line that names the split behind the progress bar's `val_*` figures (Keras names
        them "val" whatever they are), when they are not a valid split; None when they are, or
        when no per-epoch figures are shown."""
        if self.eval_split == "valid" or not train.validate_each_epoch or not train.verbose:
            return None
        return (
            f"fastcourse: the progress bar's val_loss / val_accuracy are the {len(self.eval)} {self.eval_split} "
            f"images ({self.name} has no valid split)"
        )


_LIMIT_SEED: ContextVar[Optional[int]] = ContextVar("fastcourse_limit_seed", default=None)


@contextlib.contextmanager
def limits_seeded(seed: int) -> Iterator[None]:
    """Inside, data limits are drawn from `seed`, not from each config's own: the members of an
    ensemble (each with its own seed) then train and are evaluated on the same images."""
    token = _LIMIT_SEED.set(int(seed))
    try:
        yield
    finally:
        _LIMIT_SEED.reset(token)


def load_dataset(cfg: ExperimentConfig):
    """The configured dataset object (ArrayDataset or FolderDataset), cut to the limits: an image
    folder's per class, drawn from the config's seed (FolderDataset.limit; an ensemble's members
    draw from the ensemble's, see `limits_seeded`)."""
    data = DATASETS.get(cfg.data.name)(**cfg.data.args)
    if isinstance(data, FolderDataset) and (cfg.data.train_limit or cfg.data.test_limit):
        seed = _LIMIT_SEED.get()
        data = data.limit(cfg.data.train_limit, cfg.data.test_limit, seed=cfg.seed if seed is None else seed)
    elif cfg.data.train_limit or cfg.data.test_limit:
        data = data.limit(cfg.data.train_limit, cfg.data.test_limit)
    return data


def inputs_for(cfg: Optional[ExperimentConfig], data=None) -> Inputs:
    """Sources for `cfg` (the dataset is loaded unless given; `cfg` may be None when `data` is)."""
    data = data if data is not None else load_dataset(cfg)
    if isinstance(data, ArrayDataset):
        mean, std = data.pixel_stats()
        return Inputs(
            data.name,
            "arrays",
            list(data.class_names),
            ArraySource(data.x_train, data.y_train, data.num_classes),
            ArraySource(data.x_test, data.y_test, data.num_classes),
            "test",
            data.input_shape,
            mean,
            std,
            data.source,
            dataset=data,
        )
    if isinstance(data, FolderDataset):
        size = data.image_size
        _require_valid(data)
        train, valid = data.split("train"), data.split("valid")
        mean, std = data.pixel_stats()
        unlabelled = None
        if data.has("test"):
            test = data.split("test")
            unlabelled = FolderSource(test.files, None, data.num_classes, size, data.cache_dir, test.pillow)
        return Inputs(
            data.name,
            "folder",
            list(data.class_names),
            FolderSource(train.files, train.labels, data.num_classes, size, data.cache_dir, train.pillow),
            FolderSource(valid.files, valid.labels, data.num_classes, size, data.cache_dir, valid.pillow),
            "valid",
            (*size, 3),
            mean,
            std,
            data.source,
            unlabelled,
            list(valid.files),
            dataset=data,
        )
    raise UsageError(f"data.name={cfg.data.name!r} gave a {type(data).__name__}, not a dataset fastcourse can train on")


def _require_valid(data: FolderDataset) -> None:
    if not data.has("valid"):
        raise UsageError(
            f"{data.root}: no valid/ split to evaluate on; run `fastcourse split {data.root}` "
            "or set data.valid_fraction"
        )


def folder_summary(cfg: ExperimentConfig) -> Optional[str]:
    """One line for `fastcourse check`: the image folder a config names, its layout (detected or
    set) and the images each split gets, opened as `run` opens it (the scan, the limits, a
    held-out `data.valid_fraction`); None when the dataset is not an image folder (arrays are not
    loaded). Raises what `run` raises for the data (a missing folder, no valid split)."""
    fn = DATASETS.get(cfg.data.name)
    try:
        if typing.get_type_hints(fn).get("return") is not FolderDataset:
            return None
    except (NameError, TypeError):  # a dataset whose annotations do not resolve: not one of ours
        return None
    data = load_dataset(cfg)
    _require_valid(data)
    how = "set"
    if "layout" in inspect.signature(fn).parameters and cfg.data.args.get("layout", "auto") == "auto":
        how = "detected"
    counts = ", ".join(f"{key} {len(split)}" for key, split in data.splits.items())
    held = f" (valid: {data.held_out})" if data.held_out else ""
    return f"data: {data.root}: layout {data.layout} ({how}), {data.num_classes} classes; images {counts}{held}"


def build_for(cfg: ExperimentConfig, inputs: Inputs, float32_output: bool = True):
    """The config's model for these inputs: the data supplies the input shape, the classes and
    the training pixels' mean/std; under a mixed policy the output stays float32."""
    from fastcourse.models import build_model
    from fastcourse.train.devices import float32_outputs

    model = build_model(
        cfg.model.name, inputs.input_shape, inputs.num_classes, mean=inputs.mean, std=inputs.std, **cfg.model.args
    )
    return float32_outputs(model) if float32_output else model
