"""Lesson 3's VGG16 workflow on image folders, as `fastcourse run` tasks.

- `finetune`: a builder (vgg16 with a new top) trained on the folder: only the groups named in
  `trainable` (default the new top, as the course's finetune()), or fastai's fine_tune when
  `freeze_epochs`/`unfreeze_epochs` are set (discriminative rates over the blocks).
- `features`: cut the conv part at `cut`, precompute (cached) conv features with `passes`
  augmented copies, train a `dense_head` on them (any dropout, the batchnorm head), optionally
  pseudo-label the test images, put the head back on the conv part (checked to give the same
  predictions), and optionally train that full model with augmentation and frozen convs.

Both write model.keras, metrics.json (test_* = the valid split), history.csv,
valid_predictions.csv, learning_curves.png and confusion_matrix.png into the run directory.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from fastcourse import io
from fastcourse.config import ExperimentConfig
from fastcourse.errors import DataError, UsageError
from fastcourse.tasks import TASKS


def _folder_data(cfg: ExperimentConfig, valid_fraction: Optional[float], split_method: str):
    from fastcourse.data.folders import FolderDataset
    from fastcourse.data.split import split_indices
    from fastcourse.experiment import load_data

    data = load_data(cfg)
    if not isinstance(data, FolderDataset):
        raise UsageError(f"data.name={cfg.data.name!r} is not an image-folder dataset; this task needs "
                         "image_folder, dogscats or statefarm")
    if not data.has("valid"):
        if not valid_fraction:
            raise DataError(f"{data.root}: no valid/ split; run `fastcourse split {data.root}` or set "
                            "task.valid_fraction")
        train = data.split("train")
        tr, va = split_indices(len(train), valid_fraction, split_method, cfg.seed, train.labels, train.groups)
        data = data.with_split("valid", train.take(va)).with_split("train", train.take(tr))
    return data


def _size(image_size) -> tuple[int, int]:
    size = tuple(int(s) for s in image_size)
    if len(size) != 2 or min(size) < 32:
        raise UsageError(f"task.image_size={list(image_size)}: give [height, width], each >= 32 (VGG pools 5 times)")
    return size


def _write(run_dir: Path, cfg, data, model, result, probs: np.ndarray, extra: dict) -> dict:
    import pandas as pd

    from fastcourse import report
    from fastcourse.experiment import versions
    from fastcourse.train.folder_fit import evaluate_probs

    valid = data.split("valid")
    ev = evaluate_probs(probs, valid.labels)
    io.save_model(model, run_dir / "model.keras")
    history = pd.DataFrame(result.history)
    history.insert(0, "epoch", np.arange(1, len(history) + 1))
    io.write_text(run_dir / "history.csv", history.to_csv(index=False))
    table = pd.DataFrame(probs, columns=data.class_names)
    table.insert(0, "label", [data.class_names[i] for i in valid.labels])
    table.insert(0, "file", valid.files)
    io.write_text(run_dir / "valid_predictions.csv", table.to_csv(index=False))
    cm = report.confusion_matrix(valid.labels, probs.argmax(1), data.num_classes)
    metrics = {
        "name": cfg.name, "task": cfg.task.name, "model": cfg.model.name, "dataset": data.name,
        "data_source": data.source, "classes": data.class_names, "augment": cfg.augment.name,
        "test_split": "valid", "test_loss": ev["loss"], "test_accuracy": ev["accuracy"],
        "train_images": len(data.split("train")), "test_images": len(valid), "skipped_files": len(data.skipped),
        "epochs": len(result.epoch_seconds), "train_seconds": result.train_seconds,
        "images_per_second": result.images_per_second, "epoch_seconds": result.epoch_seconds,
        "params": int(model.count_params()), "seed": cfg.seed, "versions": versions(), **extra,
    }
    io.write_json(run_dir / "metrics.json", metrics)
    if result.history:
        report.plot_learning_curves(result.history, run_dir / "learning_curves.png", f"{cfg.name} ({data.name})")
    report.plot_confusion_matrix(cm, data.class_names, run_dir / "confusion_matrix.png",
                                 f"{cfg.name}: valid accuracy {ev['accuracy']:.4f}")
    return metrics


@TASKS.register()
def finetune(
    cfg: ExperimentConfig, run_dir: Path, image_size: list[int] = (224, 224),
    trainable: Union[str, list[str]] = "head", freeze_epochs: int = 0, unfreeze_epochs: int = 0,
    lr_mult: float = 100.0, valid_fraction: Optional[float] = None, split_method: str = "stratified",
) -> dict:
    """Fine-tune a builder on an image folder (course finetune(); fastai fine_tune with *_epochs)."""
    from fastcourse import augment as aug
    from fastcourse.models import build_model
    from fastcourse.train.finetune import set_trainable
    from fastcourse.train.folder_fit import fine_tune, fit_folder, predict_folder

    size = _size(image_size)
    data = _folder_data(cfg, valid_fraction, split_method)
    model = build_model(cfg.model.name, (*size, 3), data.num_classes, **cfg.model.args)
    augmenter = aug.build(cfg.augment.name, cfg.augment.args)
    print(f"fastcourse: {cfg.name}: {cfg.model.name} on {data.describe()}, augment={cfg.augment.name} "
          f"-> {run_dir}", flush=True)
    if freeze_epochs or unfreeze_epochs:
        result = fine_tune(model, data, cfg.train, cfg.seed, size, freeze_epochs, unfreeze_epochs,
                           lr_mult=lr_mult, augment=augmenter)
        extra = {"freeze_epochs": freeze_epochs, "unfreeze_epochs": unfreeze_epochs, "lr_mult": lr_mult}
    else:
        groups = set_trainable(model, trainable)
        result = fit_folder(model, data, cfg.train, cfg.seed, size, augmenter)
        extra = {"trainable": groups}
    probs = predict_folder(model, data, "valid", size, cfg.train.batch_size)
    return _write(run_dir, cfg, data, model, result, probs, extra)


@TASKS.register()
def features(
    cfg: ExperimentConfig, run_dir: Path, image_size: list[int] = (224, 224), cut: str = "block5_conv3",
    cache_dir: str = "cache/features", passes: int = 0, head: dict[str, Any] = None,
    pseudo_ratio: float = 0.0, pseudo_split: str = "test", pseudo_epochs: int = 0,
    finetune_epochs: int = 0, finetune_lr: Optional[float] = None,
    valid_fraction: Optional[float] = None, split_method: str = "stratified",
) -> dict:
    """Precomputed conv features -> dense head (-> pseudo-labels) -> head back on the conv part."""
    from fastcourse import augment as aug
    from fastcourse.config import check_arguments
    from fastcourse.models import build_model
    from fastcourse.train.features import attach_head, cut_model, dense_head, precompute_features
    from fastcourse.train.finetune import set_trainable, with_epochs
    from fastcourse.train.folder_fit import fit_folder, join_results, predict_folder
    from fastcourse.train.pseudo import mix_pseudo_labels
    from fastcourse.train.trainer import fit

    size = _size(image_size)
    head_args = check_arguments(dense_head, dict(head or {}), "task.head", str(run_dir / "config.yaml"),
                                ("input_shape", "num_classes"))
    data = _folder_data(cfg, valid_fraction, split_method)
    augmenter = aug.build(cfg.augment.name, cfg.augment.args)
    backbone = build_model(cfg.model.name, (*size, 3), data.num_classes, **cfg.model.args)
    conv = cut_model(backbone, cut)
    print(f"fastcourse: {cfg.name}: features of {cfg.model.name} at {cut} on {data.describe()}, "
          f"{passes} augmented passes -> {run_dir}", flush=True)
    bs = cfg.train.batch_size
    train, valid = data.split("train"), data.split("valid")
    x_train = precompute_features(conv, train.files, size, bs, cache_dir, augmenter if passes else None,
                                  passes, cfg.seed, desc=f"{data.name}-train")
    y_train = np.tile(train.labels, 1 + passes)
    x_valid = precompute_features(conv, valid.files, size, bs, cache_dir, desc=f"{data.name}-valid")
    head_model = dense_head(tuple(conv.output_shape[1:]), data.num_classes, **head_args)
    result = fit(head_model, np.asarray(x_train), y_train, cfg.train, cfg.seed, validation=(np.asarray(x_valid), valid.labels))
    parts, extra = [result], {"cut": cut, "passes": passes, "head": head_args, "feature_shape": list(x_train.shape)}
    if pseudo_ratio > 0:
        if not data.has(pseudo_split):
            raise DataError(f"{data.root}: pseudo-labelling needs a {pseudo_split!r} split of unlabelled images")
        x_un = np.asarray(precompute_features(conv, data.split(pseudo_split).files, size, bs, cache_dir,
                                              desc=f"{data.name}-{pseudo_split}"))
        soft = head_model.predict(x_un, batch_size=256, verbose=0)
        x_mix, y_mix = mix_pseudo_labels(np.asarray(x_train), y_train, x_un, soft, pseudo_ratio, cfg.seed)
        parts.append(fit(head_model, x_mix, y_mix, with_epochs(cfg.train, pseudo_epochs or cfg.train.epochs),
                         cfg.seed + 1, validation=(np.asarray(x_valid), valid.labels), compile=False,
                         initial_epoch=0))
        extra.update(pseudo_ratio=pseudo_ratio, pseudo_images=int(len(x_mix) - len(x_train)))
    model = attach_head(conv, head_model, name=f"{cfg.model.name}_{cut}_head")
    head_probs = head_model.predict(np.asarray(x_valid), batch_size=256, verbose=0)
    probs = predict_folder(model, data, "valid", size, bs)
    extra["attach_max_abs_diff"] = float(np.abs(probs - head_probs).max())
    if finetune_epochs:
        set_trainable(model, "head")  # convs frozen, as the lesson's augmented full-model step
        parts.append(fit_folder(model, data, with_epochs(cfg.train, finetune_epochs, finetune_lr), cfg.seed + 2,
                                size, augmenter))
        probs = predict_folder(model, data, "valid", size, bs)
    return _write(run_dir, cfg, data, model, join_results(parts), probs, extra)
