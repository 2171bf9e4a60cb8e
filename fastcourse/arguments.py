"""The argument table: the value types a config's numbers and switches take, the bounds of the
arguments of registered functions by argument NAME (ARG_BOUNDS: `dropout` of any model, `zoom` of
any augmentation), and the check of a function's keyword arguments against its signature. It is
the lower half of `fastcourse.config`, which applies it to every named section, so `fastcourse
check` and `fastcourse run` still read every rule through one loader, `load_config`.
"""

from __future__ import annotations

import difflib
import inspect
import math
import re
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Mapping, Optional, Union

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
)

from fastcourse.errors import ConfigError

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
