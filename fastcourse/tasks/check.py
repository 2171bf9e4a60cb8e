"""The whole check of a config before anything runs: its shape (fastcourse.config), then every
named section against its registered function's signature and the value bounds below, then the
schedule's values.

    cfg = load_checked("configs/mnist/cnn.yaml", ["train.batch_size=128"])

ARG_BOUNDS bounds an argument by its NAME, in whichever builder, augmentation, dataset, schedule
or task it appears (`dropout` of any model, `zoom` of any augmentation): one line here bounds
every function with that argument, and a new builder gets the bounds without repeating them.
A list value (`filters: [32, 64]`, `image_size: [224, 224]`) is bounded entry by entry. The
bounds are checked on the raw values before the function's module is imported (no TensorFlow
for a `dropout: 1.5`), and again on the values as the signature converted them.
"""
from __future__ import annotations

import ast
import importlib.util
import math
import os
from dataclasses import dataclass
from typing import Any, Optional

from fastcourse.config import DATA_SUPPLIED_ARGS, SEED_MAX, ExperimentConfig, check_arguments, load_config
from fastcourse.data import AUGMENTATIONS, DATASETS
from fastcourse.errors import ConfigError
from fastcourse.models import MODELS
from fastcourse.tasks import TASK_ARGS_SKIPPED, TASKS
from fastcourse.train.schedules import SCHEDULE_ARGS_SKIPPED, SCHEDULES


@dataclass(frozen=True)
class Bounds:
    """lo <= value <= hi (strict where lo_open / hi_open); `why` says what the argument means."""

    lo: Optional[float] = None
    hi: Optional[float] = None
    lo_open: bool = False
    hi_open: bool = False
    why: str = ""
    length: Optional[int] = None  # a list must have exactly this many entries

    def allowed(self) -> str:
        lo = "-inf" if self.lo is None else _num(self.lo)
        hi = "inf" if self.hi is None else _num(self.hi)
        span = f"{'(' if self.lo_open or self.lo is None else '['}{lo}, {hi}{')' if self.hi_open or self.hi is None else ']'}"
        return f"in {span}" + (f" ({self.why})" if self.why else "")

    def holds(self, x: float) -> bool:
        if not math.isfinite(x):
            return False
        if self.lo is not None and (x <= self.lo if self.lo_open else x < self.lo):
            return False
        return not (self.hi is not None and (x >= self.hi if self.hi_open else x > self.hi))


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(x)


_FRACTION_OF_SIZE = Bounds(0, 1, why="a fraction of the image size")
_EPOCHS = Bounds(0, 100_000, why="a number of epochs")
_RATE = Bounds(0, 10, lo_open=True, why="a learning rate")
_LAYER_SIZE = Bounds(1, 65_536, why="a layer width")

# argument name -> bounds, for any registered function that has an argument of that name
ARG_BOUNDS: dict[str, Bounds] = {
    # models
    "dropout": Bounds(0, 1, hi_open=True, why="the fraction of units dropped"),
    "units": _LAYER_SIZE, "dense": _LAYER_SIZE, "hidden": _LAYER_SIZE, "filters": _LAYER_SIZE,
    "depth": Bounds(1, 100, why="a number of layers"),
    # augmentations (the course's ImageDataGenerator ranges)
    "rotation": Bounds(0, 180, why="degrees"),
    "shift": _FRACTION_OF_SIZE, "width_shift": _FRACTION_OF_SIZE, "height_shift": _FRACTION_OF_SIZE,
    "shear": Bounds(0, 1.5, why="radians, as Keras 1 had it; pi/2 is degenerate"),
    "zoom": Bounds(0, 1, hi_open=True, why="images are zoomed by a factor in [1 - zoom, 1 + zoom]"),
    "channel_shift": Bounds(0, 255, why="pixel values are 0-255"),
    # data
    "image_size": Bounds(8, 4096, length=2, why="[height, width] in pixels"),
    "valid_fraction": Bounds(0, 1, lo_open=True, hi_open=True, why="the fraction of train moved to valid"),
    "split_seed": Bounds(0, SEED_MAX, why="a seed"),
    # schedules
    "lr": _RATE, "max_lr": _RATE,
    "min_lr": Bounds(0, 10, why="a learning rate"),
    "warmup": Bounds(0, 100_000, why="epochs of warm-up"),
    "pct_start": Bounds(0, 1, hi_open=True, why="the fraction of the run spent warming up"),
    "div": Bounds(0, 1e6, lo_open=True, why="the starting rate is max_lr / div"),
    "final_div": Bounds(0, 1e9, lo_open=True, why="the final rate is max_lr / final_div"),
    "factor": Bounds(0, 1, lo_open=True, why="the rate is multiplied by it each step"),
    "every": Bounds(1, 100_000, why="epochs between steps"),
    # tasks
    "passes": Bounds(0, 1000, why="augmented passes over the training set"),
    "pseudo_ratio": Bounds(0, 1, why="pseudo-labelled images per training image"),
    "pseudo_rounds": Bounds(0, 100, why="rounds of pseudo-labelling"),
    "pseudo_epochs": _EPOCHS, "finetune_epochs": _EPOCHS, "freeze_epochs": _EPOCHS, "unfreeze_epochs": _EPOCHS,
    "finetune_scale": Bounds(0, 10, lo_open=True, why="a multiplier of the learning rate"),
    "lr_mult": Bounds(0, 1e6, lo_open=True, why="a multiplier of the learning rate"),
    "C": Bounds(0, None, lo_open=True, why="the inverse regularisation strength"),
    "max_iter": Bounds(1, 1e7, why="iterations"),
}


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
    # bounds first, on the raw values: no builder module (TensorFlow) is imported to refuse them
    for loc, section, registry, skipped in checks:
        bad = [k for k in section.args if k in skipped]
        if bad:
            raise ConfigError(f"{where}: {loc}.{bad[0]}: set from the data, not the config; remove it")
        names = _parameter_names(registry, section.name)
        check_bounds({k: v for k, v in section.args.items() if names is None or k in names}, loc, where,
                     raw=True)
    for loc, section, registry, skipped in checks:
        validated = check_arguments(registry.get(section.name), section.args, loc, where, skipped)
        check_bounds(validated, loc, where)
        for key, value in validated.items():  # keep the coerced values (e.g. "1e-3" -> 0.001)
            setattr(section, key, value)
    _check_schedule_values(cfg, where)
    return cfg


def check_bounds(args: dict[str, Any], loc: str, where: str, raw: bool = False) -> None:
    """A one-line ConfigError for the first argument outside its ARG_BOUNDS. With `raw`, values
    that are not yet numbers (strings the signature will convert) are left for the second pass."""
    for key, value in args.items():
        bounds = ARG_BOUNDS.get(key)
        if bounds is None or value is None:
            continue
        if isinstance(value, (list, tuple)):
            if bounds.length is not None and len(value) != bounds.length:
                raise ConfigError(f"{where}: {loc}.{key} = {_short(value)}: give {bounds.length} numbers "
                                  f"({bounds.why})")
            entries = [(f"{loc}.{key}[{i}]", v) for i, v in enumerate(value)]
        else:
            entries = [(f"{loc}.{key}", value)]
        for dotted, v in entries:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                if raw:
                    continue
                break  # not a number: the signature check has already judged its type
            if not bounds.holds(float(v)):
                raise ConfigError(f"{where}: {dotted} = {_short(v)}: out of range; allowed: {bounds.allowed()}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_PARAMS: dict[tuple[str, str], Optional[frozenset]] = {}


def _parameter_names(registry, name: str) -> Optional[frozenset]:
    """The argument names of a registered function, read from its module's source (no import);
    None when they cannot be read that way (then the raw pass checks every key it bounds)."""
    entry = registry.entries().get(name)
    if entry is None:
        return None
    key = (entry.module, entry.function)
    if key not in _PARAMS:
        _PARAMS[key] = None
        spec = importlib.util.find_spec(entry.module)
        if spec is not None and spec.origin and spec.origin.endswith(".py"):
            with open(spec.origin, encoding="utf-8") as f:
                tree = ast.parse(f.read(), filename=spec.origin)
            for node in tree.body:
                if isinstance(node, ast.FunctionDef) and node.name == entry.function:
                    a = node.args
                    _PARAMS[key] = frozenset(p.arg for p in [*a.posonlyargs, *a.args, *a.kwonlyargs])
    return _PARAMS[key]


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
