"""Fine-tuning a builder (VGG16 with a new top) on any dataset its input fits.

- the course's finetune(): only the groups in `trainable` (default the new top) train;
- fastai's fine_tune, when `freeze_epochs`/`unfreeze_epochs` are set: the body frozen for
  `freeze_epochs`, then everything for `unfreeze_epochs` at half the rates, spread over the
  blocks from 1/lr_mult (block1) to 1 (head). Each phase is a trainer call of its own: its own
  learning-rate table (the configured schedule stretched to the phase), its own checkpoints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

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
    cfg: ExperimentConfig,
    run_dir: Path,
    trainable: Union[str, list[str]] = "head",
    freeze_epochs: int = 0,
    unfreeze_epochs: int = 0,
    lr_mult: float = 100.0,
    frozen_up_to: str = "head",
) -> dict:
    """Fine-tune a builder (course finetune(); fastai fine_tune with freeze_epochs/unfreeze_epochs)."""
    inputs = inputs_for(cfg)
    model = build_for(cfg, inputs)
    augmenter = augment.build(cfg.augment.name, cfg.augment.args)
    print(
        f"fastcourse: {cfg.name}: fine-tune {cfg.model.name} on {inputs.describe()}, "
        f"augment={cfg.augment.name} -> {run_dir}",
        flush=True,
    )
    if note := inputs.progress_note(cfg.train):
        print(note, flush=True)
    common = dict(augment=augmenter, validation=inputs.eval)
    if freeze_epochs or unfreeze_epochs:
        parts = []
        _, multipliers = first_phase(
            model, cfg.model.name, trainable, freeze_epochs, unfreeze_epochs, lr_mult, frozen_up_to
        )
        if freeze_epochs:
            parts.append(
                fit(
                    model,
                    inputs.train,
                    cfg.train,
                    cfg.seed,
                    epochs=freeze_epochs,
                    checkpoint_dir=checkpoint_dir(run_dir, "frozen"),
                    **common,
                )
            )
            multipliers = unfrozen_phase(model, lr_mult) if unfreeze_epochs else None
        if unfreeze_epochs:
            parts.append(
                fit(
                    model,
                    inputs.train,
                    cfg.train,
                    cfg.seed + 1,
                    epochs=unfreeze_epochs,
                    scale=0.5,
                    lr_multipliers=multipliers,
                    checkpoint_dir=checkpoint_dir(run_dir, "unfrozen"),
                    **common,
                )
            )
        result = FitResult.join(parts)
        extra = {"freeze_epochs": freeze_epochs, "unfreeze_epochs": unfreeze_epochs, "lr_mult": lr_mult}
    else:
        groups, _ = first_phase(model, cfg.model.name, trainable, freeze_epochs, unfreeze_epochs, lr_mult, frozen_up_to)
        result = fit(model, inputs.train, cfg.train, cfg.seed, checkpoint_dir=checkpoint_dir(run_dir), **common)
        extra = {"trainable": groups}
    return write_run(run_dir, cfg, inputs, model, result, evaluate(model, inputs.eval), extra)


def first_phase(
    model,
    model_name: str,
    trainable: Union[str, list[str]] = "head",
    freeze_epochs: int = 0,
    unfreeze_epochs: int = 0,
    lr_mult: float = 100.0,
    frozen_up_to: str = "head",
) -> tuple[list[str], Optional[dict]]:
    """Freeze `model` as the task's first training call has it; return the trainable groups and
    that call's learning-rate multipliers (None: one rate). `fastcourse lr-find` tests this too.

    freeze_epochs: the groups from `frozen_up_to` on; only unfreeze_epochs: everything, with the
    spread rates; neither: the course's `trainable` groups."""
    if freeze_epochs or unfreeze_epochs:
        groups = layer_groups(model)
        if frozen_up_to not in groups:
            raise UsageError(f"task.frozen_up_to={frozen_up_to!r}: {model_name} has the groups {groups}")
        if freeze_epochs:
            return set_trainable(model, groups[groups.index(frozen_up_to) :]), None
        return groups, unfrozen_phase(model, lr_mult)
    return set_trainable(model, trainable), None


def unfrozen_phase(model, lr_mult: float) -> dict[str, float]:
    """Unfreeze everything; the rate multipliers spread from block1 (1/lr_mult) to the head (1)."""
    set_trainable(model, "all")
    return spread_multipliers(layer_groups(model), lr_mult)
