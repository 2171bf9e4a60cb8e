"""The frame every task call runs in, alone or as an ensemble member: cleared Keras state, the
config's seed, and the precision policy and tf.distribute scope (train/devices.py)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from fastcourse.config import ExperimentConfig

Task = Callable[..., dict]


def run_task(cfg: ExperimentConfig, task: Task, run_dir: Path) -> dict:
    """One task call: cleared Keras state, seeded, inside the precision and distribution scope."""
    import keras

    from fastcourse.train.devices import training_scope
    from fastcourse.train.trainer import seed_everything

    keras.backend.clear_session()  # drop earlier models' graphs (ensemble members, reproduce steps)
    seed_everything(cfg.seed, cfg.train.deterministic)
    with training_scope(cfg.train.precision, cfg.train.distribute):
        return task(cfg, Path(run_dir), **cfg.task.args)
