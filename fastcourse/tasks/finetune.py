"""Fine-tuning a builder (VGG16 with a new top) on any dataset its input fits.

- the course's finetune(): only the groups in `trainable` (default the new top) train;
- fastai's fine_tune, when `freeze_epochs`/`unfreeze_epochs` are set: the body frozen for
  `freeze_epochs`, then everything for `unfreeze_epochs` at half the rates, spread over the
  blocks from 1/lr_mult (block1) to 1 (head). Each phase is a trainer call of its own: its own
  learning-rate table (the configured schedule stretched to the phase), its own checkpoints.
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

from fastcourse.config import ExperimentConfig
from fastcourse.data import augment
from fastcourse.errors import UsageError
from fastcourse.models.surgery import layer_groups, set_trainable
from fastcourse.run.artifacts import write_run
from fastcourse.run.inputs import build_for, inputs_for
from fastcourse.run.rundir import checkpoint_dir
from fastcourse.tasks import TASKS
from fastcourse.train.optimizers import spread_multipliers
from fastcourse.train.trainer import FitResult, evaluate, fit


@TASKS.register()
def finetune(
    cfg: ExperimentConfig, run_dir: Path, trainable: Union[str, list[str]] = "head", freeze_epochs: int = 0,
    unfreeze_epochs: int = 0, lr_mult: float = 100.0, frozen_up_to: str = "head",
) -> dict:
    """Fine-tune a builder (course finetune(); fastai fine_tune with freeze_epochs/unfreeze_epochs)."""
    if min(freeze_epochs, unfreeze_epochs) < 0 or lr_mult <= 0:
        raise UsageError("task: freeze_epochs and unfreeze_epochs must be >= 0 and lr_mult > 0")
    inputs = inputs_for(cfg)
    model = build_for(cfg, inputs)
    augmenter = augment.build(cfg.augment.name, cfg.augment.args)
    print(f"fastcourse: {cfg.name}: fine-tune {cfg.model.name} on {inputs.describe()}, "
          f"augment={cfg.augment.name} -> {run_dir}", flush=True)
    common = dict(augment=augmenter, validation=inputs.eval)
    if freeze_epochs or unfreeze_epochs:
        groups = layer_groups(model)
        if frozen_up_to not in groups:
            raise UsageError(f"task.frozen_up_to={frozen_up_to!r}: {cfg.model.name} has the groups {groups}")
        parts = []
        if freeze_epochs:
            set_trainable(model, groups[groups.index(frozen_up_to):])
            parts.append(fit(model, inputs.train, cfg.train, cfg.seed, epochs=freeze_epochs,
                             checkpoint_dir=checkpoint_dir(run_dir, "frozen"), **common))
        if unfreeze_epochs:
            set_trainable(model, "all")
            parts.append(fit(model, inputs.train, cfg.train, cfg.seed + 1, epochs=unfreeze_epochs, scale=0.5,
                             lr_multipliers=spread_multipliers(groups, lr_mult),
                             checkpoint_dir=checkpoint_dir(run_dir, "unfrozen"), **common))
        result = FitResult.join(parts)
        extra = {"freeze_epochs": freeze_epochs, "unfreeze_epochs": unfreeze_epochs, "lr_mult": lr_mult}
    else:
        groups = set_trainable(model, trainable)
        result = fit(model, inputs.train, cfg.train, cfg.seed, checkpoint_dir=checkpoint_dir(run_dir), **common)
        extra = {"trainable": groups}
    return write_run(run_dir, cfg, inputs, model, result, evaluate(model, inputs.eval), extra)
