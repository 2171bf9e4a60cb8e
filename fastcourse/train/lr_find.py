"""The learning-rate range test (Smith 2015; fastai's lr_find): raise the rate exponentially
over a few hundred steps, record the loss, and suggest a rate where it falls fastest."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import keras
import numpy as np

from fastcourse.data.sources import Source


@dataclass
class LRFinderResult:
    lrs: np.ndarray
    losses: np.ndarray  # exponentially smoothed
    suggestion: float
    min_loss_lr: float

    def plot(self, path: str | Path) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from fastcourse.io import save_figure

        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(self.lrs, self.losses)
        ax.set_xscale("log")
        ax.set_xlabel("learning rate (log)")
        ax.set_ylabel("training loss (smoothed)")
        ax.axvline(self.suggestion, color="tab:red", ls="--", label=f"suggested {self.suggestion:.2e}")
        ax.legend()
        ax.set_title("learning-rate range test")
        return save_figure(fig, path)


class _RangeTest(keras.callbacks.Callback):
    def __init__(self, lrs: np.ndarray, beta: float, stop_factor: float):
        super().__init__()
        self.lrs, self.beta, self.stop_factor = lrs, beta, stop_factor
        self.seen_lrs: list[float] = []
        self.losses: list[float] = []
        self._avg, self._best = 0.0, math.inf

    def on_train_batch_begin(self, batch, logs=None):
        self.model.optimizer.learning_rate.assign(float(self.lrs[len(self.losses)]))

    def on_train_batch_end(self, batch, logs=None):
        loss = float(logs["loss"])
        # Keras reports the running mean over the epoch; recover this batch's loss from it
        n = len(self.losses) + 1
        batch_loss = loss * n - getattr(self, "_running_sum", 0.0)
        self._running_sum = loss * n
        self._avg = self.beta * self._avg + (1 - self.beta) * batch_loss
        smoothed = self._avg / (1 - self.beta ** n)
        self.seen_lrs.append(float(self.lrs[n - 1]))
        self.losses.append(smoothed)
        self._best = min(self._best, smoothed)
        if not math.isfinite(smoothed) or smoothed > self.stop_factor * self._best or n >= len(self.lrs):
            self.model.stop_training = True


def lr_find(
    model: keras.Model, source: Source, batch_size: int = 64, seed: int = 0,
    augment: Optional[Callable] = None, min_lr: float = 1e-7, max_lr: float = 10.0,
    steps: int = 200, optimizer: str = "adam", beta: float = 0.98, stop_factor: float = 4.0,
) -> LRFinderResult:
    """Run the range test on any Source (arrays, folders, features) on a copy of the model's
    weights (they are restored afterwards)."""
    weights = model.get_weights()
    opt = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD, "rmsprop": keras.optimizers.RMSprop,
           "adamw": keras.optimizers.AdamW}[optimizer](learning_rate=min_lr)
    model.compile(optimizer=opt, loss="categorical_crossentropy")
    lrs = np.geomspace(min_lr, max_lr, steps)
    probe = _RangeTest(lrs, beta, stop_factor)
    ds = source.batches(batch_size, shuffle=True, seed=seed, augment=augment, repeat=True)
    model.fit(ds, epochs=1, steps_per_epoch=steps, callbacks=[probe], verbose=0, shuffle=False)
    model.set_weights(weights)
    lr_arr, loss_arr = np.array(probe.seen_lrs), np.array(probe.losses)
    return LRFinderResult(lr_arr, loss_arr, suggest(lr_arr, loss_arr), float(lr_arr[np.nanargmin(loss_arr)]))


def suggest(lrs: np.ndarray, losses: np.ndarray) -> float:
    """The rate at the steepest descent of the smoothed loss, ignoring the noisy ends."""
    if len(lrs) < 5:
        return float(lrs[int(np.nanargmin(losses))] / 10)
    skip = max(1, len(lrs) // 10)
    lo, hi = skip, max(skip + 2, int(np.nanargmin(losses)) + 1)
    grads = np.gradient(losses[lo:hi], np.log(lrs[lo:hi]))
    return float(lrs[lo + int(np.nanargmin(grads))])
