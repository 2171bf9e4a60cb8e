"""The learning-rate range test (Smith 2015; fastai's lr_find): raise the rate exponentially
over a few hundred steps, record the loss, and suggest a rate where it falls fastest.

`lr_find(model, source, ...)` tests any compiled-or-not Keras model on any Source (arrays,
folders, cached features) as it stands: its frozen layers stay frozen, its weights (and
batchnorm statistics) are put back afterwards. `lr_find_train(model, source, train, seed)` takes
the optimizer, weight decay and label smoothing from a `train` config section, as the trainer
uses them. Which model a config's task trains is chosen one layer up (fastcourse.tasks.lr_find).

    result = lr_find(model, ArraySource(x, y, 10), batch_size=64, steps=100)
    result.suggestion, result.plot("lr_find.png")
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import keras
import numpy as np

from fastcourse.data.sources import Source
from fastcourse.errors import UsageError


@dataclass
class LRFinderResult:
    lrs: np.ndarray
    losses: np.ndarray  # exponentially smoothed
    suggestion: float
    min_loss_lr: float

    def plot(self, path: str | Path, title: str = "learning-rate range test") -> Path:
        from fastcourse.io import save_figure

        return save_figure(self.figure(title), path)

    def figure(self, title: str = "learning-rate range test"):
        """The curve as a matplotlib Figure made without pyplot (the user's backend is left alone)."""
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6, 4))
        ax = fig.subplots()
        ax.plot(self.lrs, self.losses)
        ax.set_xscale("log")
        ax.set_xlabel("learning rate (log)")
        ax.set_ylabel("training loss (smoothed)")
        ax.axvline(self.suggestion, color="tab:red", ls="--", label=f"suggested {self.suggestion:.2e}")
        ax.legend()
        ax.set_title("\n".join(textwrap.wrap(title, 70)), fontsize=10)
        fig.tight_layout()
        return fig


class _RangeTest(keras.callbacks.Callback):
    def __init__(self, lrs: np.ndarray, beta: float, stop_factor: float):
        super().__init__()
        self.lrs, self.beta, self.stop_factor = lrs, beta, stop_factor
        self.seen_lrs: list[float] = []
        self.losses: list[float] = []
        self._avg, self._best, self._running_sum = 0.0, math.inf, 0.0

    def on_train_batch_begin(self, batch, logs=None):
        self.model.optimizer.learning_rate.assign(float(self.lrs[len(self.losses)]))

    def on_train_batch_end(self, batch, logs=None):
        loss = float(logs["loss"])
        # Keras reports the running mean over the epoch; recover this batch's loss from it
        n = len(self.losses) + 1
        batch_loss = loss * n - self._running_sum
        self._running_sum = loss * n
        self._avg = self.beta * self._avg + (1 - self.beta) * batch_loss
        smoothed = self._avg / (1 - self.beta**n)
        self.seen_lrs.append(float(self.lrs[n - 1]))
        self.losses.append(smoothed)
        self._best = min(self._best, smoothed)
        if not math.isfinite(smoothed) or smoothed > self.stop_factor * self._best or n >= len(self.lrs):
            self.model.stop_training = True


def _optimizer(name: str, lr: float, weight_decay: Optional[float], lr_multipliers: Optional[dict]):
    """The trainer's optimizer (fastcourse.train.optimizers.build_optimizer) at a plain, settable rate."""
    from fastcourse.train.optimizers import OPTIMIZERS, build_optimizer

    if name not in OPTIMIZERS:
        raise UsageError(f"optimizer={name!r}: use one of {', '.join(OPTIMIZERS)}")
    return build_optimizer(name, lr, weight_decay, lr_multipliers)


def check_range(min_lr: float, max_lr: float, steps: int) -> None:
    """One-line UsageError for a range the test cannot sweep."""
    if not (math.isfinite(min_lr) and math.isfinite(max_lr) and 0 < min_lr < max_lr):
        raise UsageError(f"--min-lr {min_lr:g} / --max-lr {max_lr:g}: give 0 < min-lr < max-lr, e.g. 1e-7 and 10")
    if steps < 5:
        raise UsageError(f"--steps {steps}: the range test needs at least 5 steps (200 by default)")


def lr_find(
    model: keras.Model,
    source: Source,
    batch_size: int = 64,
    seed: int = 0,
    augment: Optional[Callable] = None,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    steps: int = 200,
    optimizer: str = "adam",
    beta: float = 0.98,
    stop_factor: float = 4.0,
    *,
    weight_decay: Optional[float] = None,
    label_smoothing: float = 0.0,
    lr_multipliers: Optional[dict] = None,
) -> LRFinderResult:
    """Run the range test on any Source (arrays, folders, features) with `model` as it stands
    (frozen layers stay frozen); its weights are restored afterwards.

    The model must end in class probabilities for `source`'s labels: a conv base cut from a
    model is not trainable against them (choose the model with fastcourse.tasks.lr_find)."""
    check_range(min_lr, max_lr, steps)
    out_shape, want = tuple(model.output_shape), (None, source.num_classes)
    if len(out_shape) != 2 or out_shape[-1] != source.num_classes:
        raise UsageError(
            f"lr_find: {model.name} outputs {out_shape}, the labels are {want}: give the model that "
            "ends in class probabilities (a head, or a model with its top)"
        )
    if not model.trainable_weights:
        raise UsageError(f"lr_find: {model.name} has no trainable weights (every layer is frozen)")
    weights = model.get_weights()
    model.compile(
        optimizer=_optimizer(optimizer, min_lr, weight_decay, lr_multipliers),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
    )
    lrs = np.geomspace(min_lr, max_lr, steps)
    probe = _RangeTest(lrs, beta, stop_factor)
    ds = source.batches(batch_size, shuffle=True, seed=seed, augment=augment, repeat=True)
    try:
        model.fit(ds, epochs=1, steps_per_epoch=steps, callbacks=[probe], verbose=0, shuffle=False)
    finally:
        model.set_weights(weights)
    lr_arr, loss_arr = np.array(probe.seen_lrs), np.array(probe.losses)
    if not np.isfinite(loss_arr).any():
        raise UsageError(
            f"lr_find: the loss was not finite from the first step at {min_lr:g}; lower --min-lr or check the data"
        )
    return LRFinderResult(
        lr_arr,
        loss_arr,
        suggest(lr_arr, loss_arr),
        float(lr_arr[int(np.nanargmin(np.where(np.isfinite(loss_arr), loss_arr, np.nan)))]),
    )


def lr_find_train(
    model: keras.Model,
    source: Source,
    train,
    seed: int = 0,
    *,
    augment: Optional[Callable] = None,
    steps: int = 200,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    lr_multipliers: Optional[dict] = None,
) -> LRFinderResult:
    """`lr_find` with the batch size, optimizer, weight decay and label smoothing of a `train`
    config section (a TrainConfig), as the trainer would train `model`."""
    return lr_find(
        model,
        source,
        int(train.batch_size),
        seed,
        augment,
        min_lr,
        max_lr,
        steps,
        str(train.optimizer),
        weight_decay=float(train.weight_decay or 0.0) or None,
        label_smoothing=float(train.label_smoothing or 0.0),
        lr_multipliers=lr_multipliers,
    )


def suggest(lrs: np.ndarray, losses: np.ndarray) -> float:
    """The rate at the steepest descent of the smoothed loss, ignoring the noisy ends; always a
    rate the test swept."""
    losses = np.where(np.isfinite(losses), losses, np.nan)
    best = int(np.nanargmin(losses))
    if len(lrs) < 5:
        return float(max(lrs[best] / 10, lrs[0]))
    skip = max(1, len(lrs) // 10)
    lo, hi = skip, max(skip + 2, best + 1)
    lo, hi = min(lo, len(lrs) - 2), min(hi, len(lrs))
    window = losses[lo:hi]
    if np.isnan(window).any():  # only the finite stretch up to the minimum
        return float(max(lrs[best] / 10, lrs[0]))
    grads = np.gradient(window, np.log(lrs[lo:hi]))
    return float(lrs[lo + int(np.nanargmin(grads))])
