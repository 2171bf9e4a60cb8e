"""The experiment config: one typed tree with defaults in code; YAML holds what differs.

Sections that name a function (`task`, `data`, `model`, `augment`, `train.schedule`) take that
function's keyword arguments beside `name`. This module checks the tree's shape and values; it
names things and imports no builder. `fastcourse.tasks.check.check_config` then checks each
named section against its registered function's signature, so a builder's arguments ARE its
config section. Every problem is reported as one line naming the file, the dotted key, the value
and what is allowed, before anything trains::

    configs/mnist/cnn.yaml: train.bach_size: unknown key; did you mean 'batch_size'? ...
"""
from __future__ import annotations

import copy
import difflib
import inspect
import os
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, ValidationError, create_model,
                      model_validator)

from fastcourse.errors import ConfigError
from fastcourse.safe_yaml import SafeConfigLoader, load_yaml
from fastcourse.shipped import resolve_config

# Builder arguments the experiment fills in from the data; a config never sets them.
DATA_SUPPLIED_ARGS = ("input_shape", "num_classes", "mean", "std")

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
        raise ValueError("must be a plain folder name of at most 100 letters, digits and . _ + - "
                         "(no spaces or /), starting with a letter or digit: it names the run directory")
    return value


RunName = Annotated[str, AfterValidator(_run_name)]


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
    train_limit: Optional[PositiveInt] = Field(None, description="use the first N training images")
    test_limit: Optional[PositiveInt] = Field(None, description="use the first N test images")


class ModelConfig(Named):
    name: str = "cnn"


class AugmentConfig(Named):
    name: str = "none"


class ScheduleConfig(Named):
    name: str = "constant"


class TaskConfig(Named):
    name: str = "train"


class TrainConfig(Strict):
    epochs: Optional[PositiveInt] = Field(None, le=100_000, description="total epochs; derived from `phases`")
    batch_size: PositiveInt = Field(64, le=65_536)
    optimizer: Literal["adam", "adamw", "sgd", "rmsprop"] = "adam"
    weight_decay: Float = Field(0.0, ge=0.0, lt=1.0)
    label_smoothing: Float = Field(0.0, ge=0.0, lt=1.0)
    schedule: ScheduleConfig = Field(default_factory=lambda: ScheduleConfig(name="constant", lr=1e-3))
    steps_per_execution: PositiveInt = Field(1, le=100_000)
    jit_compile: Bool = False
    precision: Literal["auto", "float32", "mixed_float16", "mixed_bfloat16"] = Field(
        "auto", description="auto (the default): mixed_float16 on a GPU, mixed_bfloat16 on a CPU with AMX or "
        "AVX-512 BF16, else float32; a forced mixed_float16 without a GPU trains in float32 "
        "(fastcourse.train.precision.resolve_precision; docs/training-figures.md)")
    distribute: Literal["none", "mirrored", "multi_worker"] = "none"
    validate_each_epoch: Bool = True
    bn_recalibrate: Int = Field(100, ge=0, le=100000, description="batches over which batchnorm statistics "
                                "are recomputed after training (precise BN); 0 turns it off")
    deterministic: Bool = True
    verbose: Literal[0, 1, 2] = 1
    tensorboard: Bool = Field(False, description="write TensorBoard logs (scalars, the learning rate per step, "
                              "augmented samples) into RUN/tensorboard/")

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
                    f"epochs={self.epochs} but the phases add up to {total}; drop train.epochs "
                    "or make them agree"
                )
        elif self.epochs is None:
            self.epochs = 1
        return self


class EnsembleConfig(Strict):
    members: PositiveInt = Field(1, le=1000)
    seeds: Optional[list[Seed]] = Field(None, description="one seed per member; default seed + i")
    parallel: Bool = Field(False, description="train members at once, one per GPU, where several are visible")

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

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# --- loading -------------------------------------------------------------------------------

def load_config(
    source: str | os.PathLike | dict, overrides: list[str] | None = None
) -> ExperimentConfig:
    """Read a YAML file (or a dict), apply `key.path=value` overrides, validate everything.

    Raises ConfigError with one line naming the file, the key, the value and the fix.
    """
    where = str(source) if not isinstance(source, dict) else "<config>"
    if isinstance(source, dict):
        raw = copy.deepcopy(source)
    else:
        raw = read_yaml(resolve_config(source))  # a path, or a shipped config's name (mnist/cnn)
    for item in overrides or []:
        apply_override(raw, item, where)
    return validate_config(raw, where)


def validate_config(raw: dict, where: str = "<config>") -> ExperimentConfig:
    try:
        cfg = ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, where, ExperimentConfig, raw)) from None
    return cfg


def read_yaml(path: Path) -> dict:
    """A config file through the strict loader: duplicate keys, empty files, YAML 1.1 booleans,
    size and alias bombs are refused with one line (fastcourse/safe_yaml.py)."""
    return load_yaml(path)


def parse_scalar(text: str) -> Any:
    """YAML-typed value for an override; also accepts 1e-3 (YAML 1.1 reads that as a string)."""
    # the config loader's rules: `yes`/`on` stay strings, so `--set train.epochs=yes` is refused
    value = yaml.load(text, Loader=SafeConfigLoader) if text.strip() else ""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def apply_override(raw: dict, item: str, where: str) -> None:
    if "=" not in item:
        raise ConfigError(f"{where}: override {item!r} must look like key.path=value")
    key, text = item.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"{where}: override {item!r} has an empty key part")
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{where}: override {key}: {part!r} is a value, not a section")
        node = child
    node[parts[-1]] = parse_scalar(text)


# --- checking a function's keyword arguments (builders, augmentations, tasks) ------------

_ARG_MODELS: dict[Any, type[BaseModel]] = {}


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


def check_arguments(fn, args: dict, loc: str, where: str, skipped: tuple[str, ...] = ()) -> dict:
    """Validate `args` against `fn`'s signature; return them coerced to the annotated types."""
    model = signature_model(fn, skipped)
    bad = [k for k in args if k in skipped]
    if bad:
        raise ConfigError(f"{where}: {loc}.{bad[0]}: set from the data, not the config; remove it")
    try:
        validated = model.model_validate(args)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, where, model, args, prefix=loc)) from None
    return {k: getattr(validated, k) for k in args}


# --- error messages ------------------------------------------------------------------------

def _format_error(exc: ValidationError, where: str, root: type[BaseModel], raw: Any, prefix: str = "") -> str:
    err = exc.errors()[0]
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
        msg = msg[len("Value error, "):]
    if err["type"] in ("bool_type", "bool_parsing"):
        msg = "a switch takes true or false (yes/no/on/off/1/0 are not switches); write true or false"
    shown = _short(value)
    if isinstance(value, dict) and not loc:
        return f"{where}: {msg}"
    if isinstance(value, dict) and err["type"].startswith("value_error"):
        return f"{where}: {dotted}: {msg}"
    return f"{where}: {dotted} = {shown}: {msg}"


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


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
