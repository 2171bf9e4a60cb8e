"""Stop a diverging run at once, and say which epoch and what to change.

keras.callbacks.TerminateOnNaN stops training but lets `fit` return as if all went well, and
the epoch's end still runs (a checkpoint would be written from NaN weights). `StopOnNonFinite`
records where the loss broke; the checkpoint callback skips that epoch, and the trainer turns
it into a one-line RunError with `raise_if_diverged`.
"""

from __future__ import annotations

import math
from typing import Optional

import keras

from fastcourse.errors import RunError


class Diverged(RunError):
    """The loss became NaN or infinite: rerunning the same config would diverge again."""


class StopOnNonFinite(keras.callbacks.TerminateOnNaN):
    """Stop at the first batch whose training loss is NaN or infinite; remember where."""

    def __init__(self):
        super().__init__()
        self.epoch: Optional[int] = None  # 1-based epoch where the loss broke, None while healthy
        self.batch: Optional[int] = None
        self.loss: Optional[float] = None
        self._current = 0

    @property
    def tripped(self) -> bool:
        return self.epoch is not None

    def on_epoch_begin(self, epoch, logs=None):
        self._current = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or self.tripped:
            return
        loss = float(loss)
        if not math.isfinite(loss):
            self.epoch, self.batch, self.loss = self._current + 1, batch + 1, loss
            self.model.stop_training = True

    def raise_if_diverged(self, schedule_name: str, schedule_args: dict, last_good: str = "") -> None:
        """RunError naming the epoch and suggesting a lower rate, if the loss broke."""
        if not self.tripped:
            return
        args = ", ".join(f"{k}={v}" for k, v in schedule_args.items())
        kept = f"; {last_good}" if last_good else ""
        raise Diverged(
            f"epoch {self.epoch}: the training loss became {self.loss} at batch {self.batch}, so training "
            f"stopped{kept}. Try a lower learning rate (train.schedule: {schedule_name}({args}))"
        )
