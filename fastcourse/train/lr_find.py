"""The learning-rate range test (Smith 2015; fastai's lr_find): raise the rate exponentially
over a few hundred steps, record the smoothed loss, and suggest a rate by one of fastai's rules
(`SUGGESTIONS`: `valley`, the default, `slide`, `minimum`, `steep`). A curve that never really
falls gets no suggestion: `no_descent` says so in one line.

`lr_find(model, source, ...)` tests any compiled-or-not Keras model on any Source (arrays,
folders, cached features) as it stands: its frozen layers stay frozen, its weights (and
batchnorm statistics) are put back afterwards. `lr_find_train(model, source, train, seed)` takes
the optimizer, weight decay and label smoothing from a `train` config section, as the trainer
uses them. Which model a config's task trains is chosen one layer up (fastcourse.tasks.lr_find).

    result = lr_find(model, ArraySource(x, y, 10), batch_size=64, steps=100)
    result.suggestion, result.suggestions["steep"], result.plot("lr_find.png")
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field
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
    suggestion: Optional[float]  # by `method`; None when the curve has no real descent
    min_loss_lr: float
    method: str = "valley"
    suggestions: dict[str, Optional[float]] = field(default_factory=dict)  # every rule's, by name
    no_descent: Optional[str] = None  # the one line that says why there is no suggestion

    def message(self) -> str:
        """The one line a user reads: the suggestion, or why there is none."""
        if self.suggestion is None:
            return f"lr_find: {self.no_descent}"
        return f"lr_find: suggested {self.suggestion:.2e} ({self.method}; lowest loss at {self.min_loss_lr:.2e})"

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
        if self.suggestion is not None:
            ax.axvline(self.suggestion, color="tab:red", ls="--", label=f"{self.method} {self.suggestion:.2e}")
            ax.legend()
        else:
            title = f"{title} (no real descent: no suggestion)"
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
    suggest_by: str = "valley",
) -> LRFinderResult:
    """Run the range test on any Source (arrays, folders, features) with `model` as it stands
    (frozen layers stay frozen); its weights are restored afterwards. `suggest_by` names the
    rule of the suggestion (SUGGESTIONS); every rule's is in the result's `suggestions`.

    The model must end in class probabilities for `source`'s labels: a conv base cut from a
    model is not trainable against them (choose the model with fastcourse.tasks.lr_find)."""
    check_range(min_lr, max_lr, steps)
    check_method(suggest_by)
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
    return result_of(lr_arr, loss_arr, steps, suggest_by)


def result_of(lrs: np.ndarray, losses: np.ndarray, steps: int, method: str = "valley") -> LRFinderResult:
    """The result of a range test of `steps` planned steps that recorded `losses` at `lrs`."""
    finite = np.where(np.isfinite(losses), losses, np.nan)
    suggestions, no_descent = suggest_all(lrs, losses, steps)
    return LRFinderResult(
        lrs,
        losses,
        suggestions[method] if suggestions else None,
        float(lrs[int(np.nanargmin(finite))]),
        method,
        suggestions,
        no_descent,
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
    suggest_by: str = "valley",
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
        suggest_by=suggest_by,
    )


# --- suggestions: fastai's four rules -----------------------------------------------------
# Ported from fastai/callback/schedule.py (fastai v2, github.com/fastai/fastai at commit 0a049e8a;
# generated from nbs/14_callback.schedule.ipynb): `valley`, `slide`, `minimum`, `steep`, applied
# as fastai's Learner.lr_find applies them, to the recorded (smoothed) losses without the first
# tenth of the planned steps and the last 5 recorded, cut at the first non-finite loss. Each
# takes the rates and losses as numpy arrays and returns a rate.


def valley(lrs: np.ndarray, losses: np.ndarray) -> float:
    """fastai's default: the longest valley (the longest strictly falling subsequence of the
    loss), and a rate a third plus a sixth of the way into it."""
    n = len(losses)
    lds = [1] * n
    max_start, max_end = 0, 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and lds[i] < lds[j] + 1:
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]  # fastai's: one before the valley's first point
    sections = (max_end - max_start) / 3
    return float(lrs[max_start + int(sections) + int(sections / 2)])


def slide(
    lrs: np.ndarray, losses: np.ndarray, lr_diff: int = 15, thresh: float = 0.005, adjust_value: float = 1.0
) -> float:
    """fastai's interval slide rule: from the end, slide a window of `lr_diff` steps towards the
    low rates until the loss's gradient at its two ends differs by at most `thresh`."""
    grad = np.gradient(np.asarray(losses, dtype=np.float64))
    if len(grad) <= lr_diff:
        raise ValueError(f"slide needs more than {lr_diff} points, the curve has {len(grad)}")
    r_idx, l_idx = -1, -1 - lr_diff
    local_min_lr = lrs[l_idx]
    while l_idx >= -len(grad) and abs(grad[r_idx] - grad[l_idx]) > thresh:
        local_min_lr = lrs[l_idx]
        r_idx -= 1
        l_idx -= 1
    return float(local_min_lr) * adjust_value


def minimum(lrs: np.ndarray, losses: np.ndarray) -> float:
    """fastai's: a tenth of the rate at the lowest loss."""
    return float(lrs[int(np.argmin(losses))]) / 10


def steep(lrs: np.ndarray, losses: np.ndarray) -> float:
    """fastai's: the rate where the loss falls fastest per unit of log rate (the left end of the
    steepest segment)."""
    grads = np.diff(losses) / np.diff(np.log(lrs))
    return float(lrs[int(np.argmin(grads))])


SUGGESTIONS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "valley": valley,
    "slide": slide,
    "minimum": minimum,
    "steep": steep,
}
# fastcourse's, not fastai's: a curve whose lowest smoothed loss is less than this fraction below
# its start (after the trim) has no real descent, and a rule's pick on it is noise. Measured on the
# bundled sample (cnn): sweeps that stop below 1e-4 fall 0.3%; 30 steps to 1.0 on 256 images
# (cnn_bn) fall 6%, 60 steps and more well over 10%.
MIN_DESCENT = 0.05


def check_method(method: str) -> None:
    if method not in SUGGESTIONS:
        raise UsageError(f"suggestion {method!r}: use one of {', '.join(SUGGESTIONS)} (valley is fastai's default)")


def trimmed(lrs: np.ndarray, losses: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """fastai's lr_find: recorder.lrs[num_it//10:-5], cut at the first non-finite loss."""
    lrs, losses = np.asarray(lrs, np.float64)[steps // 10 : -5], np.asarray(losses, np.float64)[steps // 10 : -5]
    bad = np.flatnonzero(~np.isfinite(losses))
    if len(bad):
        lrs, losses = lrs[: bad[0]], losses[: bad[0]]
    return lrs, losses


def suggest_all(lrs: np.ndarray, losses: np.ndarray, steps: int) -> tuple[dict[str, Optional[float]], Optional[str]]:
    """Every rule's suggestion by name, or ({}, the one line saying why there is none)."""
    lr, loss = trimmed(lrs, losses, steps)
    if len(loss) < 3:
        return {}, (
            f"no suggestion: {len(loss)} usable points after dropping the first tenth and the last 5 "
            f"of {len(losses)}; run more --steps"
        )
    drop = (loss[0] - loss.min()) / abs(loss[0]) if loss[0] else 0.0
    if not drop >= MIN_DESCENT:
        return {}, (
            f"no real descent between {lr[0]:.1e} and {lr[-1]:.1e}: the smoothed loss fell at most "
            f"{max(drop, 0.0):.1%} below its start ({loss[0]:.4g} -> {loss.min():.4g}), so no rate is "
            "suggested; read the curve, or sweep more --steps or a wider range"
        )
    out: dict[str, Optional[float]] = {}
    for name, rule in SUGGESTIONS.items():
        try:
            out[name] = rule(lr, loss)
        except ValueError:  # slide on a curve shorter than its window
            out[name] = None
    return out, None


def suggest(
    lrs: np.ndarray, losses: np.ndarray, method: str = "valley", steps: Optional[int] = None
) -> Optional[float]:
    """The suggestion of rule `method` for a range test of `steps` planned steps (default: as many
    as recorded), or None when the curve has no real descent."""
    check_method(method)
    suggestions, _ = suggest_all(lrs, losses, len(lrs) if steps is None else steps)
    return suggestions.get(method)
