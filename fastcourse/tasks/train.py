"""The default task: train a registered builder on an array dataset with the shared trainer."""
from __future__ import annotations

from pathlib import Path

from fastcourse.config import ExperimentConfig
from fastcourse.tasks import TASKS


@TASKS.register()
def train(cfg: ExperimentConfig, run_dir: Path) -> dict:
    """Train the configured model on an array dataset; evaluate on the clean test set."""
    from fastcourse.experiment import build_for, load_data, write_artifacts
    from fastcourse.rundir import checkpoint_dir
    from fastcourse.train.devices import float32_outputs, training_scope
    from fastcourse.train.trainer import evaluate, fit

    data = load_data(cfg)
    with training_scope(cfg.train.precision, cfg.train.distribute) as strategy:
        model, augmenter = build_for(cfg, data)
        model = float32_outputs(model)
        print(f"fastcourse: {cfg.name}: {cfg.model.name} on {data.name} "
              f"({len(data.x_train)} train / {len(data.x_test)} test), augment={cfg.augment.name}, "
              f"{cfg.train.epochs} epochs, {strategy.num_replicas_in_sync} replica(s) -> {run_dir}", flush=True)
        result = fit(model, data.x_train, data.y_train, cfg.train, cfg.seed, augmenter,
                     validation=(data.x_test, data.y_test), checkpoint_dir=checkpoint_dir(run_dir))
        test = evaluate(model, data.x_test, data.y_test)
    result.extra["replicas"] = int(strategy.num_replicas_in_sync)
    return write_artifacts(run_dir, cfg, data, model, result, test)
