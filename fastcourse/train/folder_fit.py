"""Training on image folders: the shared trainer's compile, schedules and timing, fed by tf.data
over files (fastcourse.data.folders) instead of arrays; plus fastai's `fine_tune`.

    result = fit_folder(model, data, train_cfg, seed, image_size=(224, 224), augment=aug)
    result = fine_tune(model, data, train_cfg, seed, (224, 224), freeze_epochs=1, epochs=2)
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Callable, Optional

import keras
import numpy as np

from fastcourse.data.folders import FolderDataset, image_dataset
from fastcourse.data.pipeline import steps_per_epoch
from fastcourse.train.finetune import (compile_discriminative, layer_groups, set_trainable, spread_multipliers,
                                       with_epochs)
from fastcourse.train.trainer import FitResult, Throughput


def fit_folder(
    model: keras.Model, data: FolderDataset, train, seed: int, image_size, augment: Optional[Callable] = None,
    split: str = "train", valid: Optional[str] = "valid", callbacks=None, initial_epoch: int = 0,
    compile: bool = True, lr_multipliers: Optional[dict] = None,
) -> FitResult:
    """Train for `train.epochs` epochs on a folder split; validate clean on `valid` when present."""
    files = data.split(split)
    steps = steps_per_epoch(len(files), train.batch_size)
    if compile:
        compile_discriminative(model, train, steps, lr_multipliers)
    ds = image_dataset(files.files, files.labels, data.num_classes, image_size, train.batch_size, shuffle=True,
                       seed=seed, augment=augment, repeat=True, start_step=initial_epoch * steps,
                       cache_dir=data.cache_dir)
    val_ds = None
    if valid and data.has(valid) and train.validate_each_epoch:
        val_ds = data.dataset(valid, image_size, train.batch_size)
    timer = Throughput()
    with _quiet():
        hist = model.fit(ds, epochs=initial_epoch + train.epochs, steps_per_epoch=steps, initial_epoch=initial_epoch,
                         validation_data=val_ds, callbacks=[timer, *(callbacks or [])], verbose=train.verbose)
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    return FitResult(history, timer.seconds, len(files), steps)


def fine_tune(
    model: keras.Model, data: FolderDataset, train, seed: int, image_size, freeze_epochs: int = 1,
    epochs: int = 1, lr: Optional[float] = None, lr_mult: float = 100.0, augment: Optional[Callable] = None,
    frozen_up_to: str = "head", valid: Optional[str] = "valid",
) -> FitResult:
    """fastai's fine_tune: train the head with the body frozen for `freeze_epochs` at `lr`, then
    unfreeze everything and train `epochs` at lr/2 spread over the groups from lr/2/lr_mult
    (block1) to lr/2 (head). `lr` defaults to the configured schedule's `lr`."""
    base = float(lr if lr is not None else train.schedule.args.get("lr", 1e-3))
    groups = layer_groups(model)
    parts = []
    if freeze_epochs:
        set_trainable(model, groups[groups.index(frozen_up_to):])
        parts.append(fit_folder(model, data, with_epochs(train, freeze_epochs, base), seed, image_size,
                                augment, valid=valid))
    if epochs:
        set_trainable(model, "all")
        parts.append(fit_folder(model, data, with_epochs(train, epochs, base / 2), seed + 1, image_size, augment,
                                valid=valid, initial_epoch=freeze_epochs,
                                lr_multipliers=spread_multipliers(groups, lr_mult)))
    return join_results(parts)


def join_results(parts: list[FitResult]) -> FitResult:
    history: dict[str, list[float]] = {}
    for part in parts:
        for key, values in part.history.items():
            history.setdefault(key, []).extend(values)
    return FitResult(history, [s for p in parts for s in p.epoch_seconds], parts[-1].images_per_epoch,
                     parts[-1].steps_per_epoch)


def predict_folder(model: keras.Model, data: FolderDataset, split: str, image_size, batch_size: int = 64,
                   augment: Optional[Callable] = None, seed: int = 0) -> np.ndarray:
    """Class probabilities for every file of `split`, in `split.files` order."""
    ds = data.dataset(split, image_size, batch_size, labels=False, augment=augment, seed=seed)
    with _quiet():
        return np.asarray(model.predict(ds, verbose=0), np.float32)


@contextlib.contextmanager
def _quiet():
    """Folder datasets have unknown length (undecodable files are dropped), so Keras warns that
    validation/prediction "ran out of data" at their natural end; that is expected here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        warnings.filterwarnings("ignore", message="`shuffle=True` was passed")
        yield


def evaluate_probs(probs: np.ndarray, labels: np.ndarray) -> dict:
    """Log loss and accuracy of class probabilities against integer labels (soft labels allowed)."""
    labels = np.asarray(labels)
    onehot = labels if labels.ndim == 2 else np.eye(probs.shape[1], dtype=np.float32)[labels]
    p = np.clip(probs, 1e-7, 1.0)
    loss = float(-(onehot * np.log(p)).sum(1).mean())
    accuracy = float((probs.argmax(1) == onehot.argmax(1)).mean())
    return {"loss": loss, "accuracy": accuracy, "probs": probs}
