"""The shared trainer: every builder trains through `fit`.

It compiles with a per-step learning-rate schedule (phases, constant, step, cosine,
one-cycle: see schedules.py), feeds a tf.data pipeline with batch augmentation, and records
the per-epoch history and the training throughput (images/s, validation excluded).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import keras
import numpy as np
import tensorflow as tf

from fastcourse.config import TrainConfig
from fastcourse.data.pipeline import eval_dataset, steps_per_epoch, train_dataset
from fastcourse.schedules import ScheduleAdapter
from fastcourse.train.multi_worker import fit_multi_worker, is_multi_worker
from fastcourse.train import checkpoint
from fastcourse.train.checkpoint import CheckpointState
from fastcourse.train.guards import StopOnNonFinite


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and TensorFlow; with `deterministic`, also make TF's ops repeatable."""
    keras.utils.set_random_seed(int(seed))
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def make_optimizer(train: TrainConfig, steps: int) -> keras.optimizers.Optimizer:
    """The configured optimizer driven by the configured schedule, evaluated per step."""
    lr = ScheduleAdapter(train.schedule.name, train.schedule.args, train.epochs, steps)
    if train.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate=lr)
    if train.optimizer == "adamw":
        return keras.optimizers.AdamW(learning_rate=lr, weight_decay=train.weight_decay or 1e-4)
    if train.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate=lr, momentum=0.9)
    return keras.optimizers.RMSprop(learning_rate=lr)


def compile_model(model: keras.Model, train: TrainConfig, steps: int) -> keras.Model:
    model.compile(
        optimizer=make_optimizer(train, steps),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=train.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        steps_per_execution=train.steps_per_execution,
        jit_compile=train.jit_compile,
    )
    return model


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


def fit(
    model: keras.Model,
    x_train: np.ndarray, y_train: np.ndarray,
    train: TrainConfig, seed: int,
    augment: Optional[Callable] = None,
    validation: Optional[tuple[np.ndarray, np.ndarray]] = None,
    callbacks: Optional[list[keras.callbacks.Callback]] = None,
    initial_epoch: int = 0,
    compile: bool = True,
    checkpoint_dir: Optional[str | Path] = None,
) -> FitResult:
    """Train `model` for `train.epochs` epochs on arrays, with the configured schedule.

    Validation data, when given, is evaluated clean (never augmented) after each epoch.
    `initial_epoch` continues an interrupted run: the data stream and the schedule pick up
    exactly where they stopped. With `checkpoint_dir`, each healthy epoch is checkpointed
    there and a checkpoint found there is resumed (see checkpoint.py). A NaN or infinite loss
    stops training with a RunError naming the epoch.
    """
    num_classes = int(model.output_shape[-1])
    steps = steps_per_epoch(len(x_train), train.batch_size)
    if compile:
        compile_model(model, train, steps)
    resumed = CheckpointState()
    if checkpoint_dir is not None:
        resumed = checkpoint.restore(model, checkpoint_dir)
        initial_epoch = resumed.epoch
    ds = train_dataset(
        x_train, y_train, num_classes, train.batch_size, seed, augment, start_step=initial_epoch * steps
    )
    strategy = tf.distribute.get_strategy()
    if is_multi_worker(strategy):  # Keras' fit cannot run there: see multi_worker.py
        history, seconds = fit_multi_worker(model, ds, train.epochs, steps, train.batch_size, strategy,
                                            initial_epoch, verbose=train.verbose)
        return FitResult(history, seconds, len(x_train), steps)
    val_ds = None
    if validation is not None and train.validate_each_epoch:
        val_ds = eval_dataset(validation[0], validation[1], num_classes)
    timer, guard = Throughput(), StopOnNonFinite()
    saver = checkpoint.EpochCheckpoint(checkpoint_dir, resumed, timer, guard) if checkpoint_dir is not None else None
    new_history: dict = {}
    if initial_epoch < train.epochs:  # a run whose epochs are all checkpointed trains no more
        new_history = model.fit(
            ds, epochs=train.epochs, steps_per_epoch=steps, initial_epoch=initial_epoch,
            validation_data=val_ds, callbacks=[timer, guard, *(callbacks or []), *([saver] if saver else [])],
            verbose=train.verbose, shuffle=False,
        ).history
    guard.raise_if_diverged(train.schedule.name, train.schedule.args, saver.last_good() if saver else "")
    history = {k: [float(v) for v in [*resumed.history.get(k, []), *new_history.get(k, [])]]
               for k in dict.fromkeys([*resumed.history, *new_history])}
    return FitResult(history, resumed.epoch_seconds + timer.seconds, len(x_train), steps)


def evaluate(model: keras.Model, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> dict:
    """Loss, accuracy and class probabilities on clean images."""
    num_classes = int(model.output_shape[-1])
    probs = predict(model, x, batch_size)
    onehot = np.eye(num_classes, dtype=np.float32)[np.asarray(y, np.int64)]
    loss = float(keras.losses.categorical_crossentropy(onehot, probs).numpy().mean())
    accuracy = float((probs.argmax(1) == np.asarray(y)).mean())
    return {"loss": loss, "accuracy": accuracy, "probs": probs}


def predict(model: keras.Model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    ds = eval_dataset(x, None, int(model.output_shape[-1]), batch_size)
    return np.asarray(model.predict(ds, verbose=0), dtype=np.float32)
