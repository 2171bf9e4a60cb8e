"""The whole check of a config, the one `fastcourse run` and `fastcourse check` make: its tree
(fastcourse.config), each named section's name in its registry and its arguments against the
function's signature and config.ARG_BOUNDS, then the schedule's values. Every problem is one
line, and all of a config's problems are reported at once (one ConfigError).

    cfg = load_config("configs/mnist/cnn.yaml", ["train.batch_size=128"])   # fastcourse.load_config

The rules themselves live in fastcourse.config, where the values are defined; this module only
looks the named functions up in their registries (layers that config.py may not import).
"""

from __future__ import annotations

import os
from typing import Any, Optional

from pydantic import BaseModel, ValidationError

from fastcourse.config import (
    DATA_SUPPLIED_ARGS,
    ExperimentConfig,
    Named,
    TrainConfig,
    argument_problems,
    read_raw,
    short,
    validate_tree,
)
from fastcourse.data import AUGMENTATIONS, DATASETS
from fastcourse.errors import ConfigError
from fastcourse.models import MODELS
from fastcourse.tasks import TASK_ARGS_SKIPPED, TASKS
from fastcourse.train.schedules import SCHEDULE_ARGS_SKIPPED, SCHEDULES

# dotted key of each named section -> (its registry, the arguments the run fills in)
SECTIONS = {
    "task": (TASKS, TASK_ARGS_SKIPPED),
    "data": (DATASETS, ()),
    "model": (MODELS, DATA_SUPPLIED_ARGS),
    "augment": (AUGMENTATIONS, ()),
    "train.schedule": (SCHEDULES, SCHEDULE_ARGS_SKIPPED),
}


def load_config(source: str | os.PathLike | dict, overrides: list[str] | None = None) -> ExperimentConfig:
    """A config file (or dict, or a shipped config's name) with `key.path=value` overrides,
    checked as `fastcourse run` checks it. Public as `fastcourse.load_config`.

    Raises ConfigError naming every problem, one line each (file, dotted key, value, fix)."""
    raw, where, problems = read_raw(source, overrides)
    cfg, tree_problems = validate_tree(raw, where)
    if cfg is not None:
        try:
            check_config(cfg, where)
        except ConfigError as exc:
            problems += exc.problems
        if problems:
            raise ConfigError(*problems)
        return cfg
    # the tree is invalid; the sections that can be read are still checked, so that one call
    # names every problem
    sections = {loc: _raw_section(raw, loc) for loc in SECTIONS}
    section_problems, coerced = _check_sections(sections, where)
    train = _raw_train(raw)
    if train is not None and "train.schedule" in coerced:
        section_problems += _schedule_problems(sections["train.schedule"], train.epochs, where)
    raise ConfigError(*problems, *tree_problems, *section_problems)


load_checked = load_config  # the name this function had before; the same check


def check_config(cfg: ExperimentConfig, where: str = "<config>") -> ExperimentConfig:
    """Check every named section's name and arguments, and the schedule's values; keep the
    coerced values in `cfg` (e.g. "1e-3" -> 0.001). A ConfigError names every problem."""
    sections = {loc: _section_of(cfg, loc) for loc in SECTIONS}
    problems, coerced = _check_sections(sections, where)
    if "train.schedule" in coerced:
        problems += _schedule_problems(cfg.train.schedule, cfg.train.epochs, where)
    if problems:
        raise ConfigError(*problems)
    return cfg


def _check_sections(sections: dict[str, Optional[Named]], where: str) -> tuple[list[str], dict[str, dict]]:
    """(one line per problem, the coerced arguments of each section that had none); those
    sections keep their coerced values."""
    problems: list[str] = []
    coerced: dict[str, dict] = {}
    for loc, section in sections.items():
        if section is None:  # not a section: the tree's check has said why
            continue
        registry, skipped = SECTIONS[loc]
        if section.name not in registry:
            problems.append(f"{where}: {loc}.name = {section.name!r}: {registry.unknown_message(section.name)}")
            continue
        values, found = argument_problems(registry.get(section.name), section.args, loc, where, skipped)
        problems += found
        if not found:
            coerced[loc] = values
            for key, value in values.items():  # keep the coerced values (e.g. "1e-3" -> 0.001)
                setattr(section, key, value)
    return problems, coerced


def _section_of(cfg: BaseModel, loc: str) -> Named:
    for part in loc.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _raw_section(raw: Any, loc: str) -> Optional[Named]:
    """The section at `loc` of a raw tree (its default where absent), or None where it is not
    a readable section."""
    model: Any = ExperimentConfig
    node: Any = raw
    for part in loc.split("."):
        field = model.model_fields[part]
        model = field.annotation
        if not isinstance(node, dict):
            return None
        if node.get(part) is None:
            node = field.get_default(call_default_factory=True)
            node = node.model_dump() if isinstance(node, BaseModel) else node
        else:
            node = node[part]
    try:
        return model.model_validate(node)
    except ValidationError:  # a bad declared field (data.train_limit: 0): still check the function's arguments
        if not isinstance(node, dict) or not isinstance(node.get("name"), str):
            return None
        return Named.model_validate({k: v for k, v in node.items() if k == "name" or k not in model.model_fields})


def _raw_train(raw: Any) -> Optional[TrainConfig]:
    try:
        return TrainConfig.model_validate(raw.get("train") or {}) if isinstance(raw, dict) else None
    except ValidationError:
        return None


def _schedule_problems(sched: Named, epochs: int, where: str) -> list[str]:
    """Evaluate the schedule once, so bad values (a negative rate) fail before training."""
    import numpy as np

    try:
        values = SCHEDULES.get(sched.name)(np.array([0.0, epochs / 2]), epochs, **sched.args)
    except (ValueError, TypeError, ZeroDivisionError) as exc:
        return [f"{where}: train.schedule ({sched.name}): {exc}"]
    if not np.all(np.isfinite(values)) or np.any(np.asarray(values) < 0):
        return [
            f"{where}: train.schedule ({sched.name}) = {short(sched.args)}: gives a rate that is negative or "
            "not finite; use positive rates"
        ]
    return []
