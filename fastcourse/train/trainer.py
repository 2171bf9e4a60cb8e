"""THE trainer: every task and every model trains through `fit`, on any Source (arrays, image
folders, cached features alike).

Each call compiles a fresh optimizer whose per-step learning-rate table spans exactly that call
(`epochs`, any schedule stretched to it, times `scale`), so fine-tune phases and pseudo-label
rounds each get their own table. Every call gets the same machinery:

- checkpoints after each healthy epoch into `checkpoint_dir`, and resume from there (the data
  stream and the schedule continue at the step where the run stopped; see checkpoint.py);
- the NaN stop (guards.py): a non-finite loss ends the run with one line, no checkpoint;
- Keras progress bars; precision and tf.distribute come from the scope the caller opened
  (fastcourse.train.devices.training_scope: the run layer opens it around every task);
- `epochs` always means the epochs of this call; histories of several calls are joined;
- true batchnorm statistics: after training, BN moving statistics are recomputed over
  `train.bn_recalibrate` clean training batches (bn_stats.py), so a briefly trained model is
  evaluated, saved and used for prediction as it really is.

    result = fit(model, ArraySource(x, y, 10), cfg.train, seed=0, augment=aug,
                 validation=ArraySource(x_test, y_test, 10), checkpoint_dir=run_dir / "checkpoints")
"""
from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import keras
import numpy as np
import tensorflow as tf

from fastcourse.data.sources import Source, steps_per_epoch
from fastcourse.errors import RunError
from fastcourse.train import checkpoint
from fastcourse.train.callbacks import tensorboard_callbacks, tensorboard_dir_for
from fastcourse.train.checkpoint import CheckpointState
from fastcourse.train.guards import StopOnNonFinite
from fastcourse.train.multi_worker import fit_multi_worker, is_multi_worker
from fastcourse.train.optimizers import compile_model


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and TensorFlow; with `deterministic`, also make TF's ops repeatable."""
    keras.utils.set_random_seed(int(seed))
    if deterministic:
        tf.config.experimental.enable_op_determinism()


class Throughput(keras.callbacks.Callback):
    """Wall time of the training part of each epoch (validation excluded)."""

    def __init__(self):
        super().__init__()
        self.seconds: list[float] = []
        self._start = 0.0
        self._in_epoch = False

    def on_epoch_begin(self, epoch, logs=None):
        self._start, self._in_epoch = time.perf_counter(), True

    def on_test_begin(self, logs=None):
        self._close()

    def on_epoch_end(self, epoch, logs=None):
        self._close()

    def _close(self):
        if self._in_epoch:
            self.seconds.append(time.perf_counter() - self._start)
            self._in_epoch = False


@dataclass
class FitResult:
    history: dict[str, list[float]]
    epoch_seconds: list[float]
    images_per_epoch: int
    steps_per_epoch: int
    extra: dict = field(default_factory=dict)

    @property
    def train_seconds(self) -> float:
        return float(sum(self.epoch_seconds))

    @property
    def images_per_second(self) -> float:
        # the first epoch pays for tracing; report the median of later ones when there are any
        secs = self.epoch_seconds[1:] or self.epoch_seconds
        return float(self.images_per_epoch / np.median(secs)) if secs else 0.0

    @staticmethod
    def join(parts: list["FitResult"]) -> "FitResult":
        """One result for several calls (phases, rounds): histories end to end."""
        history: dict[str, list[float]] = {}
        for part in parts:
            for key, values in part.history.items():
                history.setdefault(key, []).extend(values)
        extra: dict = {}
        for part in parts:
            extra.update(part.extra)
        return FitResult(history, [s for p in parts for s in p.epoch_seconds], parts[-1].images_per_epoch,
                         parts[-1].steps_per_epoch, extra)


def fit(
    model: keras.Model, source: Source, train, seed: int, *,
    augment: Optional[Callable] = None,
    validation: Optional[Source] = None,
    checkpoint_dir: Optional[str | Path] = None,
    callbacks: Optional[list[keras.callbacks.Callback]] = None,
    epochs: Optional[int] = None,
    scale: float = 1.0,
    lr_multipliers: Optional[dict] = None,
    tensorboard_dir: Optional[str | Path] = None,
) -> FitResult:
    """Train `model` on `source` for `epochs` (default `train.epochs`) with the configured schedule.

    Validation, when given, is evaluated clean (never augmented) after each epoch. With
    `checkpoint_dir`, each healthy epoch is checkpointed there and a checkpoint found there is
    resumed. A NaN or infinite loss stops training with a RunError naming the epoch.
    """
    epochs = int(epochs or train.epochs)
    if tensorboard_dir is None and getattr(train, "tensorboard", False) and checkpoint_dir is not None:
        tensorboard_dir = tensorboard_dir_for(checkpoint_dir)  # RUN/tensorboard[/phase]
    if tensorboard_dir is not None:
        callbacks = [*(callbacks or []), *tensorboard_callbacks(tensorboard_dir, source, augment, seed)]
    steps = steps_per_epoch(len(source), train.batch_size)
    compile_model(model, train, steps, epochs, scale, lr_multipliers)
    resumed = checkpoint.restore(model, checkpoint_dir) if checkpoint_dir is not None else CheckpointState()
    initial_epoch = min(resumed.epoch, epochs)
    ds = source.batches(train.batch_size, shuffle=True, seed=seed, augment=augment, repeat=True,
                        start_step=initial_epoch * steps)
    strategy = tf.distribute.get_strategy()
    if is_multi_worker(strategy):  # Keras' fit cannot run there: see multi_worker.py
        history, seconds = fit_multi_worker(model, ds, epochs, steps, train.batch_size, strategy,
                                            initial_epoch, verbose=train.verbose)
        result = FitResult(history, seconds, len(source), steps)
    else:
        result = _keras_fit(model, ds, source, validation, train, epochs, steps, initial_epoch, resumed,
                            checkpoint_dir, callbacks)
    if train.bn_recalibrate:
        recalibrate(model, source, train, seed, result)
    return result


def _keras_fit(model, ds, source, validation, train, epochs, steps, initial_epoch, resumed, checkpoint_dir,
               callbacks) -> FitResult:
    val_ds = None
    if validation is not None and train.validate_each_epoch:
        val_ds = validation.batches(eval_batch_size(train))
    timer, guard = Throughput(), StopOnNonFinite()
    saver = checkpoint.EpochCheckpoint(checkpoint_dir, resumed, timer, guard) if checkpoint_dir is not None else None
    new_history: dict = {}
    if initial_epoch < epochs:  # a call whose epochs are all checkpointed trains no more
        with quiet():
            new_history = model.fit(
                ds, epochs=epochs, steps_per_epoch=steps, initial_epoch=initial_epoch, validation_data=val_ds,
                callbacks=[timer, guard, *(callbacks or []), *([saver] if saver else [])],
                verbose=train.verbose, shuffle=False,
            ).history
    guard.raise_if_diverged(train.schedule.name, train.schedule.args, saver.last_good() if saver else "")
    history = {k: [float(v) for v in [*resumed.history.get(k, []), *new_history.get(k, [])]]
               for k in dict.fromkeys([*resumed.history, *new_history])}
    return FitResult(history, resumed.epoch_seconds + timer.seconds, len(source), steps)


def recalibrate(model: keras.Model, source: Source, train, seed: int, result: FitResult | None = None) -> int:
    """Recompute batchnorm statistics over `train.bn_recalibrate` clean training batches."""
    from fastcourse.train.bn_stats import recalibrate_bn

    n = int(train.bn_recalibrate)
    batches = source.batches(train.batch_size, shuffle=True, seed=seed + 7919, repeat=True, labels=False)
    used = recalibrate_bn(model, batches, max_batches=min(n, steps_per_epoch(len(source), train.batch_size) * 4))
    if result is not None and used:
        result.extra["bn_recalibrated_batches"] = used
    return used


def eval_batch_size(train) -> int:
    return max(256, int(train.batch_size))


def predict(model: keras.Model, source: Source, batch_size: int = 256, augment: Optional[Callable] = None,
            seed: int = 0) -> np.ndarray:
    """Class probabilities for every example of `source`, in order (float32)."""
    with quiet():
        probs = np.asarray(model.predict(source.batches(batch_size, labels=False, augment=augment, seed=seed),
                                         verbose=0), np.float32)
    if len(probs) != len(source):
        raise RunError(f"{len(probs)} predictions for {len(source)} examples: a file changed or became "
                       "unreadable since the dataset was opened; open it again")
    return probs


def scores(probs: np.ndarray, labels: np.ndarray) -> dict:
    """Log loss and accuracy of class probabilities against integer (or soft) labels."""
    labels = np.asarray(labels)
    target = labels if labels.ndim == 2 else np.eye(probs.shape[1], dtype=np.float32)[labels.astype(np.int64)]
    p = np.clip(probs, 1e-7, 1.0)
    return {"loss": float(-(target * np.log(p)).sum(1).mean()),
            "accuracy": float((probs.argmax(1) == target.argmax(1)).mean()), "probs": probs}


def evaluate(model: keras.Model, source: Source, batch_size: int = 256) -> dict:
    """Loss, accuracy and class probabilities on clean examples."""
    if source.labels is None:
        raise RunError("cannot evaluate on unlabelled examples")
    return scores(predict(model, source, batch_size), source.labels)


@contextlib.contextmanager
def quiet():
    """Folder datasets have unknown length (undecodable files are dropped), so Keras warns that
    validation/prediction "ran out of data" at their natural end; that is expected here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        warnings.filterwarnings("ignore", message="`shuffle=True` was passed")
        yield
