"""run_experiment(config) -> run directory: check the config, look its task up, run it.

from fastcourse import load_config, run_experiment
run_dir = run_experiment(load_config("configs/mnist/cnn.yaml"))
"""

from __future__ import annotations

from pathlib import Path

from fastcourse.config import ExperimentConfig, check_config
from fastcourse.run.experiment import execute
from fastcourse.tasks import TASKS


def run_experiment(cfg: ExperimentConfig, out: str | Path | None = None, run_dir: str | Path | None = None) -> Path:
    """Run one experiment (its `task`, default `train`; an ensemble with an `ensemble` section).

    Given the `run_dir` of an unfinished run, continue it from its last checkpoint."""
    check_config(cfg, str(run_dir or cfg.name))  # the check `fastcourse check` makes, for configs built in Python
    return execute(cfg, TASKS.get(cfg.task.name), out=out, run_dir=run_dir)
