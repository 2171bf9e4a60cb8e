"""The default task: train a registered builder from scratch on any dataset (arrays or an image
folder: a CNN on Statefarm, or on your own photos) with the one trainer."""

from __future__ import annotations

from pathlib import Path

from fastcourse.config import ExperimentConfig
from fastcourse.data import augment
from fastcourse.run.artifacts import write_run
from fastcourse.run.inputs import build_for, inputs_for
from fastcourse.run.rundir import checkpoint_dir
from fastcourse.tasks import TASKS
from fastcourse.train.trainer import evaluate, fit


@TASKS.register()
def train(cfg: ExperimentConfig, run_dir: Path) -> dict:
    """Train the configured model from scratch; evaluate on clean test (arrays) or valid (folders) images."""
    inputs = inputs_for(cfg)
    model = build_for(cfg, inputs)
    augmenter = augment.build(cfg.augment.name, cfg.augment.args)
    print(
        f"fastcourse: {cfg.name}: {cfg.model.name} on {inputs.describe()}, augment={cfg.augment.name}, "
        f"{cfg.train.epochs} epochs -> {run_dir}",
        flush=True,
    )
    if note := inputs.progress_note(cfg.train):
        print(note, flush=True)
    result = fit(
        model,
        inputs.train,
        cfg.train,
        cfg.seed,
        augment=augmenter,
        validation=inputs.eval,
        checkpoint_dir=checkpoint_dir(run_dir),
    )
    return write_run(run_dir, cfg, inputs, model, result, evaluate(model, inputs.eval))
