"""Learning-rate schedules as pure functions of training progress (nanoGPT's get_lr style).

Every schedule is `fn(epoch, total_epochs, **params) -> lr`, where `epoch` is a float
(fractional epochs, so per-step values come out smooth) or a numpy array of them.
Any schedule stretches to any length: `total_epochs` is the length of the training it drives
(a fine-tune phase, a pseudo-label round), and `phases` scales its phase lengths to it.
`fastcourse.train.optimizers.ScheduleAdapter` turns one into a Keras `LearningRateSchedule`
evaluated per step inside the training graph, so the rate really changes (the course's Keras 1
`model.optimizer.lr = x` did not) and nothing runs in Python per batch.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from fastcourse.registry import SCHEDULES

# Arguments every schedule receives from the trainer rather than the config.
SCHEDULE_ARGS_SKIPPED = SCHEDULES.supplied


@SCHEDULES.register()
def constant(epoch, total_epochs: int, lr: float = 1e-3):
    """One rate throughout."""
    return np.full_like(np.asarray(epoch, dtype=np.float64), lr)


@SCHEDULES.register()
def phases(epoch, total_epochs: int, phases: list[tuple[int, float]] = ((1, 1e-3),)):
    """The course's fit_model: [(epochs, lr), ...], one constant rate per phase.

    Stretched to `total_epochs` when that differs from the phases' sum (a shorter fine-tune
    phase gets the same rates in the same proportions)."""
    if not phases:
        raise ValueError("phases must list at least one [epochs, lr] pair")
    for n, lr in phases:
        if int(n) <= 0 or float(lr) <= 0:
            raise ValueError(f"phase [{n}, {lr}]: epochs and lr must be > 0")
    ends = np.cumsum([int(n) for n, _ in phases]).astype(np.float64)
    if total_epochs and total_epochs != ends[-1]:
        ends = ends * (float(total_epochs) / ends[-1])
    rates = np.array([float(lr) for _, lr in phases])
    idx = np.searchsorted(ends, np.asarray(epoch, dtype=np.float64), side="right")
    return rates[np.minimum(idx, len(rates) - 1)]


@SCHEDULES.register()
def step(epoch, total_epochs: int, lr: float = 1e-3, factor: float = 0.1, every: int = 10):
    """Multiply the rate by `factor` every `every` epochs."""
    return lr * factor ** np.floor(np.asarray(epoch, dtype=np.float64) / every)


@SCHEDULES.register()
def cosine(epoch, total_epochs: int, lr: float = 1e-3, min_lr: float = 0.0, warmup: float = 0.0):
    """Linear warm-up for `warmup` epochs, then cosine decay from lr to min_lr."""
    e = np.asarray(epoch, dtype=np.float64)
    span = max(total_epochs - warmup, 1e-12)
    t = np.clip((e - warmup) / span, 0.0, 1.0)
    decayed = min_lr + 0.5 * (lr - min_lr) * (1 + np.cos(math.pi * t))
    if warmup > 0:
        return np.where(e < warmup, lr * e / warmup, decayed)
    return decayed


# fastai's one-cycle, from fastai/callback/schedule.py (fastai v2, github.com/fastai/fastai at commit
# 0a049e8a; generated from nbs/14_callback.schedule.ipynb):
#   fit_one_cycle(n_epoch, lr_max, div=25., div_final=1e5, pct_start=0.25, moms=None), moms from
#   Learner's default (0.95, 0.85, 0.95);
#   scheds = {'lr': combined_cos(pct_start, lr_max/div, lr_max, lr_max/div_final),
#             'mom': combined_cos(pct_start, *moms)}
#   combined_cos = combine_scheds([pct, 1-pct], [SchedCos(start, middle), SchedCos(middle, end)])
#   sched_cos(start, end, pos) = start + (1 + cos(pi * (1 - pos))) * (end - start) / 2
# and ParamScheduler evaluates them at pct_train = step / total steps, before each batch.
# (PyTorch's OneCycleLR ends at max_lr / (div * final_div) instead: not this.)
ONE_CYCLE_MOMS = (0.95, 0.85, 0.95)


def sched_cos(start, end, pos):
    """fastai's SchedCos: cosine from `start` (pos 0) to `end` (pos 1)."""
    return start + (1 + np.cos(math.pi * (1 - pos))) * (end - start) / 2


def combined_cos(pos, pct: float, start: float, middle: float, end: float):
    """fastai's combined_cos at training fraction `pos`: cosine start -> middle over the first
    `pct` of training, then middle -> end."""
    pos = np.clip(np.asarray(pos, dtype=np.float64), 0.0, 1.0)
    first = sched_cos(start, middle, pos / pct) if pct > 0 else np.full_like(pos, middle)
    second = sched_cos(middle, end, (pos - pct) / (1 - pct))
    return np.where(pos < pct, first, second)


@SCHEDULES.register()
def one_cycle(
    epoch,
    total_epochs: int,
    max_lr: float = 1e-2,
    pct_start: float = 0.25,
    div: float = 25.0,
    div_final: float = 1e5,
    moms: Optional[tuple[float, float, float]] = ONE_CYCLE_MOMS,
):
    """fastai's fit_one_cycle rate: cosine up from max_lr/div to max_lr over the first
    `pct_start` of training, then cosine down to max_lr/div_final.

    `moms` (high, low, high) cycles the momentum against the rate (Adam's and AdamW's beta_1,
    SGD's momentum; `one_cycle_momentum`); `moms: null` leaves the optimizer's own."""
    return combined_cos(
        np.asarray(epoch, dtype=np.float64) / total_epochs, pct_start, max_lr / div, max_lr, max_lr / div_final
    )


def one_cycle_momentum(
    epoch, total_epochs: int, pct_start: float = 0.25, moms: Optional[tuple[float, float, float]] = ONE_CYCLE_MOMS, **_
):
    """fastai's fit_one_cycle momentum: combined_cos(pct_start, *moms), or None without `moms`."""
    if moms is None:
        return None
    return combined_cos(np.asarray(epoch, dtype=np.float64) / total_epochs, pct_start, *(float(m) for m in moms))


# Schedules that also drive the momentum: name -> fn(epoch, total_epochs, **params) -> momentum or None.
MOMENTUM_SCHEDULES = {"one_cycle": one_cycle_momentum}


def lr_table(name: str, params: dict, total_epochs: int, steps_per_epoch: int) -> np.ndarray:
    """The rate for every training step, from the pure function."""
    steps = np.arange(total_epochs * steps_per_epoch, dtype=np.float64)
    values = SCHEDULES.get(name)(steps / steps_per_epoch, total_epochs, **params)
    return np.asarray(values, dtype=np.float32).reshape(-1)


def momentum_table(name: str, params: dict, total_epochs: int, steps_per_epoch: int) -> Optional[np.ndarray]:
    """The momentum for every training step, or None when schedule `name` leaves it alone."""
    fn = MOMENTUM_SCHEDULES.get(name)
    if fn is None:
        return None
    steps = np.arange(total_epochs * steps_per_epoch, dtype=np.float64)
    values = fn(steps / steps_per_epoch, total_epochs, **params)
    return None if values is None else np.asarray(values, dtype=np.float32).reshape(-1)
