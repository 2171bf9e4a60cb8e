"""run_experiment(config) -> run directory: check the config, look its task up, run it.

    from fastcourse.tasks.runner import run_experiment
    run_dir = run_experiment(load_checked("configs/mnist/cnn.yaml"))
"""
from __future__ import annotations

from pathlib import Path

from fastcourse.config import ExperimentConfig
from fastcourse.errors import UsageError
from fastcourse.run.experiment import execute
from fastcourse.tasks import TASKS
from fastcourse.tasks.check import check_config

NO_ENSEMBLE = {"sklearn_features": "a scikit-learn classifier has no Keras model to average"}


def run_experiment(cfg: ExperimentConfig, out: str | Path | None = None, run_dir: str | Path | None = None) -> Path:
    """Run one experiment (its `task`, default `train`; an ensemble with an `ensemble` section).

    Given the `run_dir` of an unfinished run, continue it from its last checkpoint."""
    check_config(cfg, str(run_dir or cfg.name))
    if cfg.ensemble is not None and cfg.ensemble.members > 1 and cfg.task.name in NO_ENSEMBLE:
        raise UsageError(f"{cfg.name}: ensemble of task {cfg.task.name!r}: {NO_ENSEMBLE[cfg.task.name]}; "
                         "remove the ensemble section")
    return execute(cfg, TASKS.get(cfg.task.name), out=out, run_dir=run_dir)
