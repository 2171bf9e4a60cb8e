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

import numpy as np

from fastcourse.registry import Registry

SCHEDULES: Registry = Registry("schedule", "fastcourse.train.schedules", "SCHEDULES")
# Arguments every schedule receives from the trainer rather than the config.
SCHEDULE_ARGS_SKIPPED = ("epoch", "total_epochs")


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


@SCHEDULES.register()
def one_cycle(
    epoch,
    total_epochs: int,
    max_lr: float = 1e-2,
    pct_start: float = 0.25,
    div: float = 25.0,
    final_div: float = 1e4,
):
    """fastai's one-cycle: cosine up from max_lr/div to max_lr, then cosine down to
    max_lr/(div*final_div)."""
    e = np.asarray(epoch, dtype=np.float64)
    t = np.clip(e / total_epochs, 0.0, 1.0)
    start, low = max_lr / div, max_lr / (div * final_div)
    up = np.clip(t / pct_start, 0.0, 1.0) if pct_start > 0 else np.ones_like(t)
    down = np.clip((t - pct_start) / (1 - pct_start), 0.0, 1.0)

    def cos_interp(a, b, frac):
        return b + (a - b) * 0.5 * (1 + np.cos(math.pi * frac))

    return np.where(t < pct_start, cos_interp(start, max_lr, up), cos_interp(max_lr, low, down))


def lr_table(name: str, params: dict, total_epochs: int, steps_per_epoch: int) -> np.ndarray:
    """The rate for every training step, from the pure function."""
    steps = np.arange(total_epochs * steps_per_epoch, dtype=np.float64)
    values = SCHEDULES.get(name)(steps / steps_per_epoch, total_epochs, **params)
    return np.asarray(values, dtype=np.float32).reshape(-1)
