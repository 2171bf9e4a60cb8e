"""The whole check of a config before anything runs: its shape (fastcourse.config), then every
named section against its registered function's signature, then the schedule's values.

    cfg = load_checked("configs/mnist/cnn.yaml", ["train.batch_size=128"])
"""
from __future__ import annotations

import os

from fastcourse.config import DATA_SUPPLIED_ARGS, ExperimentConfig, check_arguments, load_config
from fastcourse.data import AUGMENTATIONS, DATASETS
from fastcourse.errors import ConfigError
from fastcourse.models import MODELS
from fastcourse.tasks import TASK_ARGS_SKIPPED, TASKS
from fastcourse.train.schedules import SCHEDULE_ARGS_SKIPPED, SCHEDULES


def load_checked(source: str | os.PathLike | dict, overrides: list[str] | None = None) -> ExperimentConfig:
    """load_config + check_config: the config as `fastcourse run` accepts it."""
    where = str(source) if not isinstance(source, dict) else "<config>"
    return check_config(load_config(source, overrides), where)


def check_config(cfg: ExperimentConfig, where: str = "<config>") -> ExperimentConfig:
    """Check every named section's name and arguments; keep the coerced values in `cfg`."""
    checks = [
        ("task", cfg.task, TASKS, TASK_ARGS_SKIPPED),
        ("data", cfg.data, DATASETS, ()),
        ("model", cfg.model, MODELS, DATA_SUPPLIED_ARGS),
        ("augment", cfg.augment, AUGMENTATIONS, ()),
        ("train.schedule", cfg.train.schedule, SCHEDULES, SCHEDULE_ARGS_SKIPPED),
    ]
    for loc, section, registry, skipped in checks:
        if section.name not in registry:
            raise ConfigError(f"{where}: {loc}.name = {section.name!r}: {registry.unknown_message(section.name)}")
        validated = check_arguments(registry.get(section.name), section.args, loc, where, skipped)
        for key, value in validated.items():  # keep the coerced values (e.g. "1e-3" -> 0.001)
            setattr(section, key, value)
    _check_schedule_values(cfg, where)
    return cfg


def _check_schedule_values(cfg: ExperimentConfig, where: str) -> None:
    """Evaluate the schedule once, so bad values (a negative rate) fail before training."""
    import numpy as np

    sched = cfg.train.schedule
    try:
        values = SCHEDULES.get(sched.name)(np.array([0.0, cfg.train.epochs / 2]), cfg.train.epochs, **sched.args)
    except (ValueError, TypeError, ZeroDivisionError) as exc:
        raise ConfigError(f"{where}: train.schedule ({sched.name}): {exc}") from None
    if not np.all(np.isfinite(values)) or np.any(np.asarray(values) < 0):
        raise ConfigError(f"{where}: train.schedule ({sched.name}) = {sched.args}: gives a rate that is "
                          "negative or not finite; use positive rates")
