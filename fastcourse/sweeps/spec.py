"""The sweep spec: a base config, a search space over its keys, the objective, sampler and pruner.

    # my_sweep.yaml
    name: lr-dropout               # names the sweep folder (out/name) and the Optuna study
    base: mnist_sample/cnn         # a shipped config's name, or a path (relative to this file or the cwd)
    set:                           # fixed for every trial (optional)
      train.epochs: 3
    space:                         # dotted config keys
      model.dropout: [0.0, 0.25, 0.5]              # a list: a categorical choice
      train.schedule.lr: {low: 1.0e-4, high: 1.0e-2, log: true}   # a float range
      train.batch_size: {low: 32, high: 256, step: 32}             # an int range (low and high whole numbers)
    objective: accuracy            # or loss: on the run's evaluation split (valid for folders, test for arrays)
    trials: 20                     # a grid runs every combination; other samplers need a number
    sampler: {name: tpe, seed: 0}  # grid | random | tpe
    pruner: {name: median}         # none | median | successive_halving, fed each epoch's figure
    quick:                         # what `--quick` changes (optional): overrides, fewer trials
      set: {data.train_limit: 500}

A spec is checked as a config is: one line per problem, naming the file and the key, with the
nearest allowed name. Then every trial's config is checked before any trial runs: the grid's
every combination; for random and TPE each value of each list and each end of each range.
"""

from __future__ import annotations

import copy
import itertools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, model_validator

from fastcourse.config import Float, Int, PositiveInt, RunName, Seed, _problems, load_config, short
from fastcourse.errors import ConfigError
from fastcourse.safe_yaml import load_yaml
from fastcourse.shipped import resolve_config, shipped_path

Scalar = Union[StrictBool, int, float, str, None]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RangeSpec(_Strict):
    """`{low, high}`: an int range when both are whole numbers written without a point, else a float
    range; `log: true` samples on a log scale (rates), `step` makes it discrete."""

    low: Union[Int, Float]
    high: Union[Int, Float]
    log: StrictBool = False
    step: Optional[Union[Int, Float]] = None

    @property
    def is_int(self) -> bool:
        return isinstance(self.low, int) and isinstance(self.high, int) and not isinstance(self.step, float)

    @model_validator(mode="after")
    def _sane(self):
        if not self.low < self.high:
            raise ValueError(f"low={self.low} must be below high={self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"log: true needs low > 0 (low={self.low})")
        if self.log and self.step is not None:
            raise ValueError("give log: true or a step, not both (Optuna samples one or the other)")
        if self.step is not None and self.step <= 0:
            raise ValueError(f"step={self.step} must be above 0")
        return self


class SamplerSpec(_Strict):
    name: Literal["grid", "random", "tpe"] = "tpe"
    seed: Seed = 0


class PrunerSpec(_Strict):
    """none, median (a trial whose epoch figure is worse than the median of earlier trials' at the
    same epoch stops) or successive_halving (Optuna's asynchronous successive halving)."""

    name: Literal["none", "median", "successive_halving"] = "none"
    n_startup_trials: Int = Field(2, ge=0, description="median: trials that finish before any is pruned")
    n_warmup_steps: Int = Field(1, ge=0, description="median: epochs a trial runs before it may be pruned")
    min_resource: PositiveInt = Field(1, description="successive_halving: epochs before the first rung")
    reduction_factor: Int = Field(3, ge=2, description="successive_halving: 1 in this many goes on at each rung")


class QuickSpec(_Strict):
    set: dict[str, Any] = Field(default_factory=dict)
    trials: Optional[PositiveInt] = None


class SweepSpec(_Strict):
    name: RunName
    base: str = Field(min_length=1)
    set: dict[str, Any] = Field(default_factory=dict)
    space: dict[str, Union[list[Scalar], RangeSpec]] = Field(min_length=1)
    objective: Literal["accuracy", "loss"] = "accuracy"
    trials: Optional[PositiveInt] = Field(None, le=100_000)
    sampler: SamplerSpec = Field(default_factory=SamplerSpec)
    pruner: PrunerSpec = Field(default_factory=PrunerSpec)
    quick: Optional[QuickSpec] = None
    out: str = Field("sweeps", min_length=1, description="the sweep's folder is out/name (out/name-quick)")

    @property
    def direction(self) -> str:
        return "maximize" if self.objective == "accuracy" else "minimize"


@dataclass
class Sweep:
    """A checked spec, ready to run: the spec, where it came from, the base config (a raw tree
    with `set` applied), the trials to run and the sweep folder."""

    spec: SweepSpec
    source: str
    base: dict
    base_path: Path
    quick: bool
    n_trials: int
    grid: list[dict[str, Any]] = field(default_factory=list)  # every combination, for the grid sampler

    @property
    def study_name(self) -> str:
        return self.spec.name + ("-quick" if self.quick else "")

    @property
    def folder(self) -> Path:
        return Path(self.spec.out) / self.study_name

    def trial_config(self, params: dict[str, Any], number: int) -> dict:
        """The raw config of trial `number`: the base, `set`, then the trial's parameters."""
        raw = copy.deepcopy(self.base)
        for key, value in params.items():
            set_dotted(raw, key, value)
        raw["name"] = f"{self.study_name}-{number:03d}"
        return raw


def load_spec(source: str | os.PathLike | dict, quick: bool = False) -> Sweep:
    """Read and check a sweep spec (a path, a shipped name such as `sweeps/overfitting`, or a dict);
    a ConfigError names every problem, one line each, trial configs included."""
    if isinstance(source, dict):
        raw, where, folder = copy.deepcopy(source), "<sweep>", Path.cwd()
    else:
        path = _spec_path(source)
        raw, where, folder = load_yaml(path), str(source), path.parent
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(*_problems(exc, where, SweepSpec)) from None
    problems = _spec_problems(spec, where, quick)
    if problems:
        raise ConfigError(*problems)
    base_path = _base_path(spec.base, folder, where)
    base = load_yaml(base_path)
    fixed = {**spec.set, **(spec.quick.set if quick and spec.quick else {})}
    for key, value in fixed.items():
        problems += _set_problem(base, key, value, f"{where}: {'quick.' if key in _quick_set(spec, quick) else ''}set")
    if problems:
        raise ConfigError(*problems)
    problems += check_trial(base, f"{where}: base {spec.base} with set")
    if problems:
        raise ConfigError(*problems)
    grid = [dict(zip(spec.space, combo)) for combo in itertools.product(*spec.space.values())] if _is_grid(spec) else []
    n_trials = _trial_count(spec, quick, len(grid))
    sweep = Sweep(spec, where, base, base_path, quick, n_trials, grid)
    # each value alone first (a misspelt key is then one line, not one per trial), then whole trials
    for key, dim in spec.space.items():
        for value in dim if isinstance(dim, list) else [dim.low, dim.high]:
            raw_trial = copy.deepcopy(base)
            problem = _set_problem(raw_trial, key, value, f"{where}: space")
            # the config's own line names the value; a misspelt key is then one line for all its values
            problems += problem or check_trial(raw_trial, f"{where}: space.{key}")
    if problems:
        raise ConfigError(*dict.fromkeys(problems))
    for i, params in enumerate(grid):
        problems += check_trial(sweep.trial_config(params, i), f"{where}: trial {_describe(params)}")
    if problems:
        raise ConfigError(*dict.fromkeys(problems))
    return sweep


def check_trial(raw: dict, where: str) -> list[str]:
    """One line per problem of a trial's config, as `fastcourse check` finds them."""
    try:
        load_config(raw, origin=where)
    except ConfigError as exc:
        return exc.problems
    return []


def set_dotted(raw: dict, key: str, value: Any) -> None:
    """raw["a"]["b"] = value for key "a.b" (sections made where missing)."""
    *parents, last = key.split(".")
    node = raw
    for part in parents:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{key}: {part} is a value, not a section (it is {short(child)})")
        node = child
    node[last] = value


def _set_problem(raw: dict, key: str, value: Any, where: str) -> list[str]:
    if not key or not all(key.split(".")):
        return [f"{where}.{key}: not a dotted config key; write e.g. model.dropout"]
    try:
        set_dotted(raw, key, value)
    except ConfigError as exc:
        return [f"{where}.{exc}"]
    return []


def _quick_set(spec: SweepSpec, quick: bool) -> set[str]:
    return set(spec.quick.set) if quick and spec.quick else set()


def _is_grid(spec: SweepSpec) -> bool:
    return spec.sampler.name == "grid"


def _trial_count(spec: SweepSpec, quick: bool, grid_size: int) -> int:
    wanted = spec.quick.trials if quick and spec.quick and spec.quick.trials else spec.trials
    if _is_grid(spec):
        return min(wanted or grid_size, grid_size)
    assert wanted is not None  # _spec_problems requires it
    return wanted


def _spec_problems(spec: SweepSpec, where: str, quick: bool) -> list[str]:
    problems = []
    for key, dim in spec.space.items():
        if isinstance(dim, list) and not dim:
            problems.append(f"{where}: space.{key}: an empty list; give at least one value")
        elif isinstance(dim, list) and len(set(map(repr, dim))) != len(dim):
            problems.append(f"{where}: space.{key} = {short(dim)}: a value is listed twice")
        elif not isinstance(dim, list) and _is_grid(spec):
            problems.append(
                f"{where}: space.{key}: a range cannot be a grid axis; list the values "
                f"(e.g. [{dim.low}, {dim.high}]) or use sampler: {{name: tpe}}"
            )
        if key in spec.set:
            problems.append(f"{where}: space.{key}: also fixed in set; keep it in one place")
    if not _is_grid(spec) and not spec.trials:
        problems.append(f"{where}: trials: required with sampler {spec.sampler.name} (a grid runs every combination)")
    if spec.pruner.name != "none":
        fixed = {**spec.set, **(spec.quick.set if quick and spec.quick else {})}
        if fixed.get("train.validate_each_epoch") is False:
            problems.append(
                f"{where}: pruner {spec.pruner.name}: needs the per-epoch figure; "
                "remove train.validate_each_epoch: false from set, or use pruner: {name: none}"
            )
    return problems


def _spec_path(source: str | os.PathLike) -> Path:
    path = Path(source)
    if path.is_file():
        return path
    # sweeps/overfitting: a spec shipped in the package (also when ./sweeps/overfitting/ is the
    # folder that sweep writes into, so that the same command continues it)
    found = shipped_path(str(source))
    return found if found is not None else resolve_config(source)  # its error names the nearest


def _base_path(base: str, folder: Path, where: str) -> Path:
    beside = folder / base
    if beside.is_file():
        return beside
    try:
        return resolve_config(base)
    except ConfigError as exc:
        raise ConfigError(f"{where}: base: {exc}") from None


def _describe(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={short(v)}" for k, v in params.items())


def describe_params(params: dict[str, Any]) -> str:
    """`model.dropout=0.25, augment.name='none'`: a trial's parameters on one line."""
    return _describe(params)
