"""run(config) -> run directory: config -> data -> builder -> trainer -> artifacts.

Every run gets a fresh directory of its own (`<out>/<name>-<timestamp>`), holding:
config.yaml (the resolved config), metrics.json, history.csv, model.keras (loads with
safe_mode=True), learning_curves.png and confusion_matrix.png. Every file is written
atomically. An unfinished run (no metrics.json) continues from its checkpoints/ (rundir.py).
"""
from __future__ import annotations

import datetime as _dt
import platform
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np

from fastcourse import io
from fastcourse.config import ExperimentConfig
from fastcourse.data import DATASETS, ArrayDataset
from fastcourse.errors import RunError


def load_data(cfg: ExperimentConfig) -> ArrayDataset:
    """The configured dataset, cut to train_limit / test_limit."""
    data = DATASETS.get(cfg.data.name)(**cfg.data.args)
    if cfg.data.train_limit or cfg.data.test_limit:
        data = data.limit(cfg.data.train_limit, cfg.data.test_limit)
    return data


def new_run_dir(out: str | Path, name: str) -> Path:
    """A directory no other run uses: created here, never reused."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise io.os_error(exc, f"cannot create output folder {out}") from None
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    for i in range(1000):
        candidate = out / (f"{name}-{stamp}" + (f"-{i + 1}" if i else ""))
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
        except OSError as exc:
            raise io.os_error(exc, f"cannot create a run directory in {out}") from None
    raise RunError(f"cannot find a free run directory name under {out}")


def versions() -> dict[str, str]:
    import keras
    import tensorflow as tf

    import fastcourse

    return {
        "python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
        "numpy": np.__version__, "fastcourse": fastcourse.__version__, "platform": sys.platform,
    }


def build_for(cfg: ExperimentConfig, data: ArrayDataset, seed: Optional[int] = None):
    """Model and augmentation as the config describes them, for this data."""
    from fastcourse import augment as aug
    from fastcourse.models import build_model

    mean, std = data.pixel_stats()
    model = build_model(cfg.model.name, data.input_shape, data.num_classes, mean=mean, std=std, **cfg.model.args)
    augmenter = aug.build(cfg.augment.name, cfg.augment.args)
    return model, augmenter


def run_experiment(cfg: ExperimentConfig, out: str | Path | None = None, run_dir: str | Path | None = None) -> Path:
    """Run one experiment (its `task`, default `train`); return its run directory.

    Given the `run_dir` of an unfinished run, continue it from its last checkpoint. The run
    directory is locked while the run lasts (see rundir.py).
    """
    from fastcourse import rundir
    from fastcourse.tasks import TASKS
    from fastcourse.train.devices import is_chief
    from fastcourse.train.trainer import seed_everything

    if cfg.train.distribute == "multi_worker" and not is_chief():
        # Every worker trains and saves (saving is collective); only the chief keeps its files.
        scratch = Path(tempfile.mkdtemp(prefix="fastcourse-worker-"))
        try:
            seed_everything(cfg.seed, cfg.train.deterministic)
            TASKS.get(cfg.task.name)(cfg, scratch, **cfg.task.args)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return scratch

    fresh = not run_dir or not Path(run_dir).exists()
    run_dir = Path(run_dir) if run_dir else new_run_dir(out or cfg.out, cfg.name)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise io.os_error(exc, f"cannot create run directory {run_dir}") from None
    with rundir.claim(run_dir, cfg, fresh=fresh):
        if cfg.ensemble is not None and cfg.ensemble.members > 1:
            from fastcourse.ensemble import run_ensemble

            return run_ensemble(cfg, out=out, run_dir=run_dir)
        seed_everything(cfg.seed, cfg.train.deterministic)
        TASKS.get(cfg.task.name)(cfg, run_dir, **cfg.task.args)
    return run_dir


def write_artifacts(run_dir: Path, cfg: ExperimentConfig, data: ArrayDataset, model, result, test: dict) -> dict:
    """model.keras, history.csv, metrics.json and the two plots, each written atomically."""
    import pandas as pd

    from fastcourse import report

    io.save_model(model, run_dir / "model.keras")
    history = pd.DataFrame(result.history)
    history.insert(0, "epoch", np.arange(1, len(history) + 1))
    io.write_text(run_dir / "history.csv", history.to_csv(index=False))
    y_pred = test["probs"].argmax(1)
    cm = report.confusion_matrix(data.y_test, y_pred, data.num_classes)
    metrics = {
        "name": cfg.name, "model": cfg.model.name, "dataset": data.name, "data_source": data.source,
        "augment": cfg.augment.name, "test_loss": test["loss"], "test_accuracy": test["accuracy"],
        "epochs": cfg.train.epochs, "train_images": int(len(data.x_train)), "test_images": int(len(data.x_test)),
        "train_seconds": result.train_seconds, "images_per_second": result.images_per_second,
        "epoch_seconds": result.epoch_seconds, "params": int(model.count_params()), "seed": cfg.seed,
        "classes": list(data.class_names),  # `fastcourse predict` labels its columns with these (as folder runs do)
        "versions": versions(), **result.extra,
    }
    io.write_json(run_dir / "metrics.json", metrics)
    report.plot_learning_curves(result.history, run_dir / "learning_curves.png", f"{cfg.name} ({data.name})")
    report.plot_confusion_matrix(cm, data.class_names, run_dir / "confusion_matrix.png",
                                 f"{cfg.name}: test accuracy {test['accuracy']:.4f}")
    return metrics
