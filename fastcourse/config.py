"""The experiment config: one typed tree with defaults in code; YAML holds what differs. Every
rule a config must keep lives here, so `fastcourse check` accepts exactly what `fastcourse run` accepts:

- the tree's shape, types and bounds (the pydantic models below: `train.batch_size`, `seed`...);
- ARG_BOUNDS, the bounds of the arguments of registered functions by argument NAME (`dropout`
  of any model, `zoom` of any augmentation, `pseudo_ratio` of a task), and ArgsOf, a marker for an
  argument that is itself another function's arguments (`task.head`): both are defined in the
  argument table, `fastcourse.arguments`, and applied here to every named section;
- rules across sections (ENSEMBLE_REFUSED, MIX_REFUSED: what a task cannot do);
- the schedule's values: it is evaluated once, so a negative or infinite rate fails at load.

Sections that name a function (`task`, `data`, `model`, `augment`, `train.schedule`) take that
function's keyword arguments beside `name`; the name is looked up in its registry
(fastcourse.registry) and the arguments checked against the function's signature, so a
builder's signature IS its config section. Every problem is one line naming the file (or the
`--set` override), the dotted key, the value and what is allowed, and all of a config's
problems are reported at once::

    configs/mnist/cnn.yaml: train.bach_size: unknown key; did you mean 'batch_size'? ...
    --set train.bach_size: unknown key; did you mean 'batch_size'? ...

`load_config(path, overrides)` (public as `fastcourse.load_config`) is the one way to read a
config: the whole check that `fastcourse run` and `fastcourse check` make.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any, Literal, Mapping, Optional

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from fastcourse.arguments import (  # noqa: F401  (re-exported: the config's public names)
    ARG_BOUNDS,
    SEED_MAX,
    ArgsOf,
    Bool,
    Bounds,
    Float,
    Int,
    PositiveInt,
    RunName,
    Seed,
    _problems,
    argument_problems,
    bound_problems,
    check_arguments,
    harden,
    nested_sections,
    short,
    signature_model,
)
from fastcourse.errors import ConfigError
from fastcourse.registry import AUGMENTATIONS, DATASETS, MODELS, SCHEDULES, TASKS
from fastcourse.safe_yaml import load_yaml, loads_value
from fastcourse.shipped import resolve_config

# Builder arguments the experiment fills in from the data; a config never sets them.
DATA_SUPPLIED_ARGS = MODELS.supplied


# Tasks that cannot run as an ensemble (an `ensemble` section with members > 1), and why.
ENSEMBLE_REFUSED = {"sklearn_features": "a scikit-learn classifier has no Keras model to average"}
# Tasks that train on conv features cached on disk: no batch of images to mix (augment.mix).
MIX_REFUSED = ("features", "sklearn_features")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Named(BaseModel):
    """A section that names a registered function; other keys are that function's arguments."""

    model_config = ConfigDict(extra="allow")
    name: str

    @property
    def args(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class DataConfig(Named):
    name: str = "mnist_sample"
    train_limit: Optional[PositiveInt] = Field(
        None,
        description="at most N training images: an image folder keeps each class's share, drawn from "
        "`seed`; arrays keep the first N (docs/records.md)",
    )
    test_limit: Optional[PositiveInt] = Field(
        None, description="at most N evaluation (valid or test) images, chosen as train_limit's"
    )


class ModelConfig(Named):
    name: str = "cnn"


class MixConfig(Strict):
    """`augment.mix`: MixUp or CutMix of training batches, images and labels (fastcourse.data.mix)."""

    name: Literal["mixup", "cutmix"]
    alpha: Optional[Float] = Field(
        None, gt=0.0, le=100.0, description="lambda ~ Beta(alpha, alpha); default fastai's: mixup 0.4, cutmix 1.0"
    )


class AugmentConfig(Named):
    name: str = "none"
    mix: Optional[MixConfig] = None

    @property
    def args(self) -> dict[str, Any]:
        """The pipeline's arguments, and `mix` where set (fastcourse.data.augment.build takes both)."""
        extra = dict(self.model_extra or {})
        return {**extra, "mix": self.mix.model_dump()} if self.mix is not None else extra


class EmaConfig(Strict):
    """`train.ema`: evaluate, checkpoint and export an exponential moving average of the weights."""

    momentum: Float = Field(
        0.999, gt=0.0, lt=1.0, description="average = momentum x average + (1 - momentum) x weights, each step"
    )


class ScheduleConfig(Named):
    name: str = "constant"


class TaskConfig(Named):
    name: str = "train"


class TrainConfig(Strict):
    epochs: Optional[PositiveInt] = Field(None, le=100_000, description="total epochs; derived from `phases`")
    batch_size: PositiveInt = Field(64, le=65_536)
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = "adam"
    weight_decay: Float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="decoupled weight decay for any optimizer (each step: w -= lr x weight_decay x w); "
        "0 = none, except adamw, which then uses 1e-4",
    )
    label_smoothing: Float = Field(0.0, ge=0.0, lt=1.0)
    accumulate: Optional[PositiveInt] = Field(
        None,
        le=1024,
        description="gradient accumulation: one optimizer step per K batches (the mean of their gradients), "
        "as a batch K times larger; the schedule counts optimizer steps; none (the default) is 1",
    )
    ema: Optional[EmaConfig] = Field(
        None, description="{momentum: m}: figures, checkpoint and export use the moving average of the weights"
    )
    schedule: ScheduleConfig = Field(default_factory=lambda: ScheduleConfig(name="constant", lr=1e-3))
    steps_per_execution: PositiveInt = Field(1, le=100_000)
    jit_compile: Bool = False
    precision: Literal["auto", "float32", "mixed_float16", "mixed_bfloat16"] = Field(
        "auto",
        description="auto (the default): mixed_float16 on a GPU, mixed_bfloat16 on a CPU with AMX or "
        "AVX-512 BF16, else float32; a forced mixed_float16 without a GPU trains in float32 "
        "(fastcourse.train.precision.resolve_precision; docs/training-figures.md)",
    )
    distribute: Literal["none", "mirrored", "multi_worker"] = "none"
    validate_each_epoch: Bool = True
    bn_recalibrate: Int = Field(
        100,
        ge=0,
        le=100000,
        description="batches over which batchnorm statistics "
        "are recomputed after training (precise BN); each epoch's validation recomputes them first "
        "from a few batches, so per-epoch figures are the true model's; 0 turns both off",
    )
    deterministic: Bool = True
    verbose: Literal[0, 1, 2] = 1
    tensorboard: Bool = Field(
        False,
        description="write TensorBoard logs (scalars, the learning rate per step, "
        "augmented samples) into RUN/tensorboard/",
    )

    @model_validator(mode="after")
    def _epochs_from_phases(self):
        if self.schedule.name == "phases":
            phases = self.schedule.args.get("phases") or []
            try:
                total = sum(int(p[0]) for p in phases)
            except (TypeError, ValueError, IndexError):
                return self  # the schedule's own check reports the bad phases
            if self.epochs is None:
                self.epochs = total
            elif self.epochs != total:
                raise ValueError(
                    f"epochs={self.epochs} but the phases add up to {total}; drop train.epochs or make them agree"
                )
        elif self.epochs is None:
            self.epochs = 1
        if self.ema is not None and (self.accumulate or 1) > 1:
            raise ValueError(
                f"ema with accumulate={self.accumulate}: Keras' average moves at every batch, not every "
                "optimizer step (fastcourse.train.ema); use one of them"
            )
        return self


class EnsembleConfig(Strict):
    members: PositiveInt = Field(1, le=1000)
    seeds: Optional[list[Seed]] = Field(None, description="one seed per member; default seed + i")
    parallel: Bool = Field(False, description="train members at once, one per GPU, where several are visible")
    # only where a mirror image keeps the label (clothes, photos), never digits: a flipped 2 is no 2
    tta: Optional[Literal["flip"]] = Field(
        None, description="flip: also report the ensemble on the mean of each image and its mirror image"
    )

    @model_validator(mode="after")
    def _seed_count(self):
        if self.seeds is not None and len(self.seeds) != self.members:
            raise ValueError(f"{len(self.seeds)} seeds for {self.members} members; give one per member")
        return self


class ExperimentConfig(Strict):
    name: RunName = "experiment"
    seed: Seed = 0
    task: TaskConfig = Field(default_factory=TaskConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    ensemble: Optional[EnsembleConfig] = None
    out: str = Field("runs", min_length=1, description="folder under which each run gets its own directory")

    @model_validator(mode="after")
    def _rules_across_sections(self):
        if self.ensemble is not None and self.ensemble.members > 1 and self.task.name in ENSEMBLE_REFUSED:
            raise ValueError(
                f"ensemble of task {self.task.name!r}: {ENSEMBLE_REFUSED[self.task.name]}; "
                "remove the ensemble section (or set ensemble.members: 1)"
            )
        if self.augment.mix is not None and self.task.name in MIX_REFUSED:
            raise ValueError(
                f"augment.mix with task {self.task.name!r}: it trains on conv features cached on disk, not on "
                "batches of images; remove augment.mix, or train the whole model (task: train)"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# --- loading -------------------------------------------------------------------------------


def load_config(
    source: str | os.PathLike | dict,
    overrides: list[str] | None = None,
    *,
    origin: str | None = None,
    record: bool = False,
) -> ExperimentConfig:
    """A config file (or a shipped config's name, `mnist/cnn`, or a dict) with `key.path=value`
    overrides, checked as `fastcourse run` checks it: the tree, each named section's name in its
    registry and its arguments against the function's signature and ARG_BOUNDS, the schedule's
    values. `origin` names where a dict came from, for the messages. `record=True` reads a run's
    own config.yaml: the tree alone, since a Learner's record names its task `learner` and may
    name a model built in Python, which no registry holds.

        cfg = load_config("configs/mnist/cnn.yaml", ["train.batch_size=128"])

    Raises ConfigError naming every problem, one line each: the file, or `--set` for a key an
    override set, the dotted key, the value, the fix."""
    raw, where, problems = _read_raw(source, overrides, origin)
    set_keys = [item.split("=", 1)[0].strip() for item in overrides or [] if "=" in item]
    cfg, tree_problems = _validate_tree(raw, where)
    if record and cfg is not None and not problems:
        return cfg
    if cfg is not None:
        try:
            check_config(cfg, where)
        except ConfigError as exc:
            problems += exc.problems
        if problems:
            raise ConfigError(*_name_overrides(problems, where, set_keys))
        return cfg
    # the tree is invalid; the sections that can be read are still checked, so that one call
    # names every problem
    sections = {loc: _raw_section(raw, loc) for loc in SECTIONS}
    section_problems, coerced = _check_sections(sections, where)
    train = _raw_train(raw)
    schedule = sections["train.schedule"]
    if train is not None and schedule is not None and "train.schedule" in coerced:
        section_problems += _schedule_problems(schedule, train.epochs, where)
    raise ConfigError(*_name_overrides([*problems, *tree_problems, *section_problems], where, set_keys))


def check_config(cfg: "ExperimentConfig", where: str = "<config>") -> "ExperimentConfig":
    """The part of `load_config` after the tree, for a config built in Python: every named
    section's name and arguments, and the schedule's values; keeps the coerced values in `cfg`
    (e.g. "1e-3" -> 0.001). A ConfigError names every problem."""
    sections = {loc: _section_of(cfg, loc) for loc in SECTIONS}
    problems, coerced = _check_sections(sections, where)
    if "train.schedule" in coerced:
        problems += _schedule_problems(cfg.train.schedule, cfg.train.epochs, where)
    if problems:
        raise ConfigError(*problems)
    return cfg


def _name_overrides(problems: list[str], where: str, set_keys: list[str]) -> list[str]:
    """A problem with a key a `--set` override set names the override, not the file it was
    applied to: `--set train.bach_size: unknown key ...`."""
    named = []
    for line in problems:
        rest = line[len(where) + 2 :] if line.startswith(f"{where}: ") else None
        if rest is not None and rest.startswith("--set "):
            line = rest  # an override that could not be applied already says so
        elif rest is not None:
            dotted = re.split(r"[ :=]", rest, maxsplit=1)[0]
            if any(dotted == key or dotted.startswith((f"{key}.", f"{key}[")) for key in set_keys):
                line = f"--set {rest}"
        named.append(line)
    return named


def _read_raw(
    source: str | os.PathLike | dict, overrides: list[str] | None = None, origin: str | None = None
) -> tuple[dict, str, list[str]]:
    """(the raw tree with the overrides applied, where it came from, the overrides' problems).

    A file that cannot be read or parsed raises at once (nothing else can be checked); each
    override that cannot be applied is one problem, and the others still apply."""
    where = origin or (str(source) if not isinstance(source, dict) else "<config>")
    if isinstance(source, dict):
        raw = copy.deepcopy(source)
    else:
        raw = read_yaml(resolve_config(source))  # a path, or a shipped config's name (mnist/cnn)
    problems = []
    for item in overrides or []:
        try:
            apply_override(raw, item, where)
        except ConfigError as exc:
            problems += exc.problems
    return raw, where, problems


def _validate_tree(raw: dict, where: str = "<config>") -> tuple[Optional["ExperimentConfig"], list[str]]:
    """(the config, []) or (None, one line per problem of the tree)."""
    try:
        return ExperimentConfig.model_validate(raw), []
    except ValidationError as exc:
        return None, _problems(exc, where, ExperimentConfig)


# --- the named sections: each name in its registry, its arguments against the function ------

# dotted key of each named section -> its registry (whose `supplied` arguments the run fills in)
SECTIONS = {
    "task": TASKS,
    "data": DATASETS,
    "model": MODELS,
    "augment": AUGMENTATIONS,
    "train.schedule": SCHEDULES,
}


def _check_sections(sections: Mapping[str, Optional["Named"]], where: str) -> tuple[list[str], dict[str, dict]]:
    """(one line per problem, the coerced arguments of each section that had none); those
    sections keep their coerced values."""
    problems: list[str] = []
    coerced: dict[str, dict] = {}
    for loc, section in sections.items():
        if section is None:  # not a section: the tree's check has said why
            continue
        registry = SECTIONS[loc]
        if section.name not in registry:
            problems.append(f"{where}: {loc}.name = {section.name!r}: {registry.unknown_message(section.name)}")
            continue
        # the function's arguments: the section's keys beyond its declared fields (augment.mix is one)
        args = dict(section.model_extra or {})
        values, found = argument_problems(registry.get(section.name), args, loc, where, registry.supplied)
        problems += found
        if not found:
            coerced[loc] = values
            for key, value in values.items():  # keep the coerced values (e.g. "1e-3" -> 0.001)
                setattr(section, key, value)
    return problems, coerced


def _section_of(cfg: BaseModel, loc: str) -> "Named":
    node: Any = cfg
    for part in loc.split("."):
        node = getattr(node, part)
    return node


def _raw_section(raw: Any, loc: str) -> Optional["Named"]:
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


def _raw_train(raw: Any) -> Optional["TrainConfig"]:
    try:
        return TrainConfig.model_validate(raw.get("train") or {}) if isinstance(raw, dict) else None
    except ValidationError:
        return None


def _schedule_problems(sched: "Named", epochs: Optional[int], where: str) -> list[str]:
    """Evaluate the schedule once, so bad values (a negative rate) fail at load, not in training."""
    import numpy as np

    if epochs is None:  # a valid TrainConfig always has it (derived from `phases`)
        return []

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


def read_yaml(path: Path) -> dict:
    """A config file through the strict loader: duplicate keys, empty files, YAML 1.1 booleans,
    size and alias bombs are refused with one line (fastcourse/safe_yaml.py)."""
    return load_yaml(path)


def parse_scalar(text: str, source: str = "--set") -> Any:
    """YAML-typed value for an override; also accepts 1e-3 (YAML 1.1 reads that as a string).
    Text that is not one YAML value (an unclosed list, a tag) is a one-line ConfigError naming
    `source`."""
    # the config loader's rules: `yes`/`on` stay strings, so `--set train.epochs=yes` is refused
    value = loads_value(text, source) if text.strip() else ""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def apply_override(raw: dict, item: str, where: str) -> None:
    """Apply one `key.path=value` to the raw tree; a one-line ConfigError naming the key."""
    if "=" not in item:
        raise ConfigError(
            f"{where}: --set {item!r}: an override must look like key.path=value, e.g. --set train.epochs=3"
        )
    key, text = item.split("=", 1)
    key = key.strip()
    parts = key.split(".")
    if not all(parts):
        raise ConfigError(f"{where}: --set {item!r}: the key {key!r} has an empty part; write key.path=value")
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(
                f"{where}: --set {key}: {'.'.join(parts[: i + 1])} is a value, not a section (it is {short(child)})"
            )
        node = child
    node[parts[-1]] = parse_scalar(text, f"{where}: --set {key}")
