"""The experiment config: one typed tree with defaults in code; YAML holds what differs. Every
rule a config must keep lives in this module, so `fastcourse check` accepts exactly what
`fastcourse run` accepts:

- the tree's shape, types and bounds (the pydantic models below: `train.batch_size`, `seed`...);
- ARG_BOUNDS, the bounds of the arguments of registered functions by argument NAME (`dropout`
  of any model, `zoom` of any augmentation, `pseudo_ratio` of a task);
- ArgsOf, a marker for an argument that is itself another function's arguments (`task.head`);
- rules across sections (ENSEMBLE_REFUSED: tasks that cannot be an ensemble);
- the schedule's values: it is evaluated once, so a negative or infinite rate fails at load.

It is longer than our ~400-line guide on purpose: splitting it would put rules in two places,
which is what this module exists to prevent.

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
import difflib
import inspect
import math
import os
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, Optional, Union

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    TypeAdapter,
    ValidationError,
    create_model,
    model_validator,
)

from fastcourse.errors import ConfigError
from fastcourse.registry import AUGMENTATIONS, DATASETS, MODELS, SCHEDULES, TASKS
from fastcourse.safe_yaml import load_yaml, loads_value
from fastcourse.shipped import resolve_config

# Builder arguments the experiment fills in from the data; a config never sets them.
DATA_SUPPLIED_ARGS = MODELS.supplied

# --- value types ---------------------------------------------------------------------------
# pydantic's lax mode reads true as 1 where a number is expected and "yes"/"on"/1 as true where a
# switch is; a hand-edited config means neither. Numbers refuse true/false, switches take only
# true/false (YAML 1.2, as fastcourse.safe_yaml reads it). Numbers written as strings ("1e-3",
# which YAML 1.1 reads as a string) are still converted.
SEED_MAX = 2**32 - 1  # numpy's and TensorFlow's seeds are unsigned 32-bit


def _not_a_switch(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"{str(value).lower()} is a switch, not a number; write a number")
    return value


Int = Annotated[int, BeforeValidator(_not_a_switch)]
Float = Annotated[float, BeforeValidator(_not_a_switch)]
Bool = StrictBool
PositiveInt = Annotated[Int, Field(gt=0)]
Seed = Annotated[Int, Field(ge=0, le=SEED_MAX)]
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$")


def _run_name(value: str) -> str:
    if not _RUN_NAME.match(value):
        raise ValueError(
            "must be a plain folder name of at most 100 letters, digits and . _ + - "
            "(no spaces or /), starting with a letter or digit: it names the run directory"
        )
    return value


RunName = Annotated[str, AfterValidator(_run_name)]


# --- the arguments of registered functions, bounded by name ---------------------------------


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
        left = "(" if self.lo_open or self.lo is None else "["
        right = ")" if self.hi_open or self.hi is None else "]"
        return f"in {left}{lo}, {hi}{right}" + (f" ({self.why})" if self.why else "")

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

# Argument name -> bounds, for every registered function (builder, augmentation, dataset,
# schedule, task) with an argument of that name: one line bounds them all, and a new builder
# gets the bounds without repeating them. A list (`filters: [32, 64]`) is bounded entry by entry.
ARG_BOUNDS: dict[str, Bounds] = {
    # models
    "dropout": Bounds(0, 1, hi_open=True, why="the fraction of units dropped"),
    "units": _LAYER_SIZE,
    "dense": _LAYER_SIZE,
    "hidden": _LAYER_SIZE,
    "filters": _LAYER_SIZE,
    "depth": Bounds(0, 100, why="hidden layers (0: a linear head)"),
    # augmentations (the course's ImageDataGenerator ranges)
    "rotation": Bounds(0, 180, why="degrees"),
    "shift": _FRACTION_OF_SIZE,
    "width_shift": _FRACTION_OF_SIZE,
    "height_shift": _FRACTION_OF_SIZE,
    "shear": Bounds(0, 1.5, why="radians, as Keras 1 had it; pi/2 is degenerate"),
    "zoom": Bounds(0, 1, hi_open=True, why="images are zoomed by a factor in [1 - zoom, 1 + zoom]"),
    "channel_shift": Bounds(0, 255, why="pixel values are 0-255"),
    "num_ops": Bounds(0, 11, why="RandAugment's operations per image (Keras has eleven)"),
    "magnitude": Bounds(0, 1, why="RandAugment's strength, Keras' factor"),
    # data
    "image_size": Bounds(8, 4096, length=2, why="[height, width] in pixels"),
    "valid_fraction": Bounds(0, 1, lo_open=True, hi_open=True, why="the fraction of train moved to valid"),
    "split_seed": Bounds(0, SEED_MAX, why="a seed"),
    # schedules
    "lr": _RATE,
    "max_lr": _RATE,
    "min_lr": Bounds(0, 10, why="a learning rate"),
    "warmup": Bounds(0, 100_000, why="epochs of warm-up"),
    "pct_start": Bounds(0, 1, hi_open=True, why="the fraction of the run spent warming up"),
    "div": Bounds(0, 1e6, lo_open=True, why="the starting rate is max_lr / div"),
    "div_final": Bounds(0, 1e12, lo_open=True, why="the final rate is max_lr / div_final (fastai's one-cycle)"),
    "moms": Bounds(0, 1, hi_open=True, length=3, why="[start, middle, end] momentum: Adam's beta_1, SGD's momentum"),
    "factor": Bounds(0, 1, lo_open=True, why="the rate is multiplied by it each step"),
    "every": Bounds(1, 100_000, why="epochs between steps"),
    # tasks
    "passes": Bounds(0, 1000, why="augmented passes over the training set"),
    # ratio r adds r / (1 - r) pseudo-labelled images per labelled one (train/pseudo.py): r < 1
    "pseudo_ratio": Bounds(0, 1, hi_open=True, why="the share of pseudo-labelled images in the training set"),
    "pseudo_rounds": Bounds(1, 100, why="rounds of pseudo-labelling, used when pseudo_ratio > 0"),
    "pseudo_epochs": _EPOCHS,
    "finetune_epochs": _EPOCHS,
    "freeze_epochs": _EPOCHS,
    "unfreeze_epochs": _EPOCHS,
    "finetune_scale": Bounds(0, 10, lo_open=True, why="a multiplier of the learning rate"),
    "lr_mult": Bounds(0, 1e6, lo_open=True, why="a multiplier of the learning rate"),
    "C": Bounds(0, None, lo_open=True, why="the inverse regularisation strength"),
    "max_iter": Bounds(1, 1e7, why="iterations"),
}


@dataclass(frozen=True)
class ArgsOf:
    """Marks an argument whose value is the keyword arguments of another function, checked as
    a section of its own: `head: Annotated[Optional[dict], ArgsOf(dense_head, ("input_shape",))]`
    makes `task.head: {dropout: 5}` fail at check, naming `task.head.dropout`."""

    fn: Any
    skipped: tuple[str, ...] = ()


# Tasks that cannot run as an ensemble (an `ensemble` section with members > 1), and why.
ENSEMBLE_REFUSED = {"sklearn_features": "a scikit-learn classifier has no Keras model to average"}


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
    def _ensemble_of_task(self):
        if self.ensemble is not None and self.ensemble.members > 1 and self.task.name in ENSEMBLE_REFUSED:
            raise ValueError(
                f"ensemble of task {self.task.name!r}: {ENSEMBLE_REFUSED[self.task.name]}; "
                "remove the ensemble section (or set ensemble.members: 1)"
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


# --- checking a function's keyword arguments (builders, augmentations, tasks) ------------

_ARG_MODELS: dict[Any, type[BaseModel]] = {}
_NESTED: dict[Any, dict[str, ArgsOf]] = {}


def signature_model(fn, skipped: tuple[str, ...] = ()) -> type[BaseModel]:
    """A pydantic model of `fn`'s keyword arguments, for validating a config section."""
    key = (fn, skipped)
    if key not in _ARG_MODELS:
        try:
            hints = typing.get_type_hints(fn)
        except (NameError, TypeError, AttributeError):  # an annotation that does not resolve: check names only
            hints = {}
        fields: dict[str, Any] = {}
        for p in inspect.signature(fn).parameters.values():
            if p.name in skipped or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            default = ... if p.default is inspect.Parameter.empty else p.default
            fields[p.name] = (harden(hints.get(p.name, Any)), default)
        _ARG_MODELS[key] = create_model(
            f"{fn.__name__}_args", __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True), **fields
        )
    return _ARG_MODELS[key]


def _field_type(model: type[BaseModel], name: str) -> TypeAdapter:
    field = model.model_fields[name]
    hint: Any = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
    return TypeAdapter(hint, config=ConfigDict(arbitrary_types_allowed=True))


def nested_sections(fn) -> dict[str, ArgsOf]:
    """`fn`'s arguments marked ArgsOf: name -> the function whose arguments they hold."""
    if fn not in _NESTED:
        try:
            hints = typing.get_type_hints(fn, include_extras=True)
        except (NameError, TypeError, AttributeError):
            hints = {}
        _NESTED[fn] = {
            name: meta
            for name, hint in hints.items()
            if typing.get_origin(hint) is Annotated
            for meta in hint.__metadata__
            if isinstance(meta, ArgsOf)
        }
    return _NESTED[fn]


def harden(hint: Any) -> Any:
    """`hint` with bool, int and float (also inside Optional, unions, lists, tuples and dicts)
    replaced by Bool, Int and Float: switches are only true/false, numbers are never true/false."""
    if hint is bool:
        return Bool
    if hint is int:
        return Int
    if hint is float:
        return Float
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if not args or origin is Literal or origin is Annotated:
        return hint
    hardened = tuple(harden(a) if a is not Ellipsis else a for a in args)
    if origin in (Union, types.UnionType):
        return Union[hardened]
    if origin in (list, tuple, dict, set, frozenset):
        return origin[hardened]
    return hint


def argument_problems(fn, args: dict, loc: str, where: str, skipped: tuple[str, ...] = ()) -> tuple[dict, list[str]]:
    """(`args` coerced to `fn`'s annotated types, one line per problem): keys set from the data,
    unknown keys, types (fn's signature), ARG_BOUNDS, and ArgsOf arguments as sections of their own."""
    problems = [f"{where}: {loc}.{k}: set from the data, not the config; remove it" for k in args if k in skipped]
    given = {k: v for k, v in args.items() if k not in skipped}
    model = signature_model(fn, skipped)
    try:
        validated = model.model_validate(given)
        coerced, bad = {k: getattr(validated, k) for k in given}, set()
    except ValidationError as exc:
        problems += _problems(exc, where, model, prefix=loc)
        bad = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
        # the keys that passed, converted one by one (for their bounds)
        coerced = {
            k: v if k in bad or k not in model.model_fields else _field_type(model, k).validate_python(v)
            for k, v in given.items()
        }
    ok = {k: v for k, v in coerced.items() if k not in bad}
    problems += bound_problems(ok, loc, where)
    for name, inner in nested_sections(fn).items():
        value = ok.get(name)
        if isinstance(value, dict):
            coerced[name], more = argument_problems(inner.fn, value, f"{loc}.{name}", where, inner.skipped)
            problems += more
    return coerced, problems


def check_arguments(fn, args: dict, loc: str, where: str, skipped: tuple[str, ...] = ()) -> dict:
    """Validate `args` against `fn`'s signature and ARG_BOUNDS; return them coerced to the
    annotated types, or raise a ConfigError naming every problem."""
    coerced, problems = argument_problems(fn, args, loc, where, skipped)
    if problems:
        raise ConfigError(*problems)
    return coerced


def bound_problems(args: dict[str, Any], loc: str, where: str) -> list[str]:
    """One line per argument (or list entry) outside its ARG_BOUNDS; values that are not
    numbers are left to the type check."""
    problems = []
    for key, value in args.items():
        bounds = ARG_BOUNDS.get(key)
        if bounds is None or value is None:
            continue
        if isinstance(value, (list, tuple)):
            if bounds.length is not None and len(value) != bounds.length:
                problems.append(f"{where}: {loc}.{key} = {short(value)}: give {bounds.length} numbers ({bounds.why})")
                continue
            entries = [(f"{loc}.{key}[{i}]", v) for i, v in enumerate(value)]
        else:
            entries = [(f"{loc}.{key}", value)]
        for dotted, v in entries:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            if not bounds.holds(float(v)):
                problems.append(f"{where}: {dotted} = {short(v)}: out of range; allowed: {bounds.allowed()}")
    return problems


# --- error messages ------------------------------------------------------------------------


def _problems(exc: ValidationError, where: str, root: type[BaseModel], prefix: str = "") -> list[str]:
    """One line per error pydantic found, naming the dotted key, the value and what is allowed."""
    return list(dict.fromkeys(_problem(err, where, root, prefix) for err in exc.errors()))


def _problem(err: Mapping[str, Any], where: str, root: type[BaseModel], prefix: str) -> str:
    loc = [str(p) for p in err["loc"]]
    dotted = ".".join(([prefix] if prefix else []) + loc) or "(top level)"
    value = err.get("input")
    if err["type"] == "extra_forbidden":
        allowed = _fields_at(root, err["loc"][:-1])
        near = difflib.get_close_matches(loc[-1], allowed, n=1, cutoff=0.6)
        hint = f"; did you mean {near[0]!r}?" if near else ""
        return f"{where}: {dotted}: unknown key{hint} (allowed: {', '.join(allowed)})"
    if err["type"] == "missing":
        return f"{where}: {dotted}: required key is missing"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if err["type"] in ("bool_type", "bool_parsing"):
        msg = "a switch takes true or false (yes/no/on/off/1/0 are not switches); write true or false"
    if isinstance(value, dict) and not loc:
        return f"{where}: {msg}"
    if isinstance(value, dict) and err["type"].startswith("value_error"):
        return f"{where}: {dotted}: {msg}"
    return f"{where}: {dotted} = {short(value)}: {msg}"


def _fields_at(model: Any, loc: tuple) -> list[str]:
    """Names of the fields of the sub-model that `loc` points into."""
    for part in loc:
        if not (inspect.isclass(model) and issubclass(model, BaseModel)) or part not in model.model_fields:
            return []
        model = _unwrap(model.model_fields[part].annotation)
    if inspect.isclass(model) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    for arg in typing.get_args(annotation) or ():
        if inspect.isclass(arg) and issubclass(arg, BaseModel):
            return arg
    return annotation


def short(value: Any) -> str:
    """A value as an error message shows it: its repr, cut to 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
