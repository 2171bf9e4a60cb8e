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
- true batchnorm statistics (bn_stats.py): before each epoch's validation, BN moving statistics
  are recomputed over a few clean training batches (`epoch_bn_batches`), and after the last
  epoch over `train.bn_recalibrate` of them, so every per-epoch validation figure (progress bar,
  history, checkpoints, TensorBoard) is the model as `evaluate` sees it at that epoch, and the
  last epoch's figure is the one the run reports.

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
from fastcourse.train.metrics import scores
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
        return FitResult(
            history,
            [s for p in parts for s in p.epoch_seconds],
            parts[-1].images_per_epoch,
            parts[-1].steps_per_epoch,
            extra,
        )


def fit(
    model: keras.Model,
    source: Source,
    train,
    seed: int,
    *,
    augment: Optional[Callable] = None,
    validation: Optional[Source] = None,
    checkpoint_dir: Optional[str | Path] = None,
    callbacks: Optional[list[keras.callbacks.Callback]] = None,
    epochs: Optional[int] = None,
    scale: float = 1.0,
    lr_multipliers: Optional[dict] = None,
    tensorboard_dir: Optional[str | Path] = None,
    metrics: Optional[list] = None,
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
    accumulate = int(getattr(train, "accumulate", 1) or 1)
    if accumulate > 1 and train.verbose:
        # Keras' progress bar counts batches; the optimizer steps once per `accumulate` of them
        print(
            f"fastcourse: accumulate {accumulate}: the progress bar counts batches of {train.batch_size}; "
            f"one optimizer step per {accumulate} batches (an effective batch of {accumulate * train.batch_size}, "
            f"{steps / accumulate:g} optimizer steps an epoch)",
            flush=True,
        )
    compile_model(model, train, steps, epochs, scale, lr_multipliers, metrics)
    resumed = checkpoint.restore(model, checkpoint_dir) if checkpoint_dir is not None else CheckpointState()
    initial_epoch = min(resumed.epoch, epochs)
    ds = source.batches(
        train.batch_size, shuffle=True, seed=seed, augment=augment, repeat=True, start_step=initial_epoch * steps
    )
    strategy = tf.distribute.get_strategy()
    if is_multi_worker(strategy) and getattr(train, "ema", None) is not None:
        raise RunError(
            "train.ema with distribute: multi_worker is not supported (that loop never swaps the average in)"
        )
    if is_multi_worker(strategy):  # Keras' fit cannot run there: see multi_worker.py
        history, seconds = fit_multi_worker(
            model, ds, epochs, steps, train.batch_size, strategy, initial_epoch, verbose=train.verbose
        )
        result = FitResult(history, seconds, len(source), steps)
    else:
        result = _keras_fit(
            model,
            ds,
            source,
            validation,
            train,
            epochs,
            steps,
            initial_epoch,
            resumed,
            checkpoint_dir,
            callbacks,
            seed,
            metrics,
        )
    if train.bn_recalibrate and not result.extra.get("bn_statistics_batches"):
        recalibrate(model, source, train, seed, result)
    return result


# Before each epoch's validation but the last, BN statistics are recomputed over one batch per
# 20 training steps (at least 2, at most 20); after the last epoch, over train.bn_recalibrate
# batches. A probe batch costs about a third of a training step on arrays and up to a whole one
# on an image folder (the decode), so this stays under 5% of an epoch (`fastcourse bench --cases
# bn_epoch`). Measured on the bundled sample (cnn_bn_dropout, 4 epochs): 1, 3, 5, 10 or 20 batches
# gave per-epoch val accuracies within 0.002 of those from 100; what matters is that the initial
# statistics are gone (docs/training-figures.md).
EPOCH_BN_STEPS_PER_BATCH, EPOCH_BN_MIN, EPOCH_BN_MAX = 20, 2, 20


def epoch_bn_batches(steps: int, bn_recalibrate: int) -> int:
    """Batches for the per-epoch recomputation of BN statistics, for an epoch of `steps` steps."""
    return min(int(bn_recalibrate), max(EPOCH_BN_MIN, min(EPOCH_BN_MAX, steps // EPOCH_BN_STEPS_PER_BATCH)))


class TrueValidation(keras.callbacks.Callback):
    """Validation after each epoch on the model as `evaluate` would see it at that moment.

    Keras' BN moving statistics lag far behind the weights in a short run (momentum 0.99), so
    the figures Keras' own validation reports are those of a stale model. Before validating, this
    recomputes the statistics from clean training batches (`epoch_batches`; `final_batches` after
    the last epoch of the call), then evaluates and writes `val_*` into the epoch's logs. It must
    come before every callback that reads them (checkpoint, TensorBoard, CSV): Keras' progress
    bar and History come after the user's callbacks, so they print and keep these figures.

    Training is unaffected: in training mode BN normalises with batch statistics, and the moving
    statistics only carry on from the recomputed values.

    `val_loss` and `val_accuracy` come from the model's predictions through
    fastcourse.train.metrics, exactly as the final evaluation's do (Keras' own loss reads the
    softmax's logits and clips nothing, so its figure for confident mistakes was larger). Further
    compiled metrics (the Learner's `metrics=`) are Keras' evaluation, run only when there are any.
    """

    def __init__(
        self,
        validation: Source,
        batch_size: int,
        calibrate,
        clean_batches,
        epoch_batches: int,
        final_batches: int,
        last_epoch: int,
        keras_metrics: bool = False,
    ):
        super().__init__()
        self.validation, self.batch_size, self.keras_metrics = validation, batch_size, keras_metrics
        self.calibrate, self.clean = calibrate, clean_batches
        self.epoch_batches, self.final_batches, self.last_epoch = epoch_batches, final_batches, last_epoch
        self.seconds: list[float] = []  # time spent recomputing statistics, per epoch
        self.final_used = 0

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        from fastcourse.train.ema import averaged_weights

        # with train.ema the figures are the averaged weights' (statistics recomputed for them);
        # training continues from its own weights after the block
        with averaged_weights(self.model):
            self._validate(epoch, logs)

    def _validate(self, epoch, logs):
        t0 = time.perf_counter()
        if self.calibrate:
            final = epoch == self.last_epoch
            # each epoch draws its own batches (seeded by the epoch), so a resumed run recomputes
            # exactly what an uninterrupted one did
            batches = self.clean(None if final else epoch)
            used = self.calibrate(batches, self.final_batches if final else self.epoch_batches)
            if final:
                self.final_used = used
        self.seconds.append(time.perf_counter() - t0)
        if self.validation is not None:
            if self.keras_metrics:
                with quiet():
                    results = self.model.evaluate(self.validation.batches(self.batch_size), verbose=0, return_dict=True)
                logs.update({f"val_{k}": float(v) for k, v in results.items()})
            labels = self.validation.labels
            assert labels is not None  # _keras_fit validates on labelled examples only
            figures = scores(predict(self.model, self.validation, self.batch_size), labels)
            logs.update({"val_loss": figures["loss"], "val_accuracy": figures["accuracy"]})


def _keras_fit(
    model,
    ds,
    source,
    validation,
    train,
    epochs,
    steps,
    initial_epoch,
    resumed,
    checkpoint_dir,
    callbacks,
    seed,
    metrics,
) -> FitResult:
    if validation is None or not train.validate_each_epoch or validation.labels is None:
        validation = None
    timer, guard = Throughput(), StopOnNonFinite()
    saver = checkpoint.EpochCheckpoint(checkpoint_dir, resumed, timer, guard) if checkpoint_dir is not None else None
    true_val = None
    if validation is not None:
        calibrate = None
        if train.bn_recalibrate:
            from fastcourse.train.bn_stats import BNCalibrator

            calibrate = BNCalibrator(model)
        true_val = TrueValidation(
            validation,
            eval_batch_size(train),
            calibrate,
            (lambda epoch: _clean_batches(source, train, seed, epoch)) if calibrate else None,
            epoch_bn_batches(steps, _bn_batches(source, train)),
            _bn_batches(source, train),
            epochs - 1,
            keras_metrics=bool(metrics),
        )
    new_history: dict = {}
    if initial_epoch < epochs:  # a call whose epochs are all checkpointed trains no more
        with quiet():
            new_history = model.fit(
                ds,
                epochs=epochs,
                steps_per_epoch=steps,
                initial_epoch=initial_epoch,
                callbacks=[
                    timer,
                    guard,
                    *([true_val] if true_val else []),
                    *(callbacks or []),
                    *([saver] if saver else []),
                ],
                verbose=train.verbose,
                shuffle=False,
            ).history
    if initial_epoch >= epochs:  # every epoch was checkpointed: the average, as Keras' fit leaves it
        from fastcourse.train.ema import finalize

        finalize(model)
    guard.raise_if_diverged(train.schedule.name, train.schedule.args, saver.last_good() if saver else "")
    history = {
        k: [float(v) for v in [*resumed.history.get(k, []), *new_history.get(k, [])]]
        for k in dict.fromkeys([*resumed.history, *new_history])
    }
    result = FitResult(history, resumed.epoch_seconds + timer.seconds, len(source), steps)
    if true_val is not None and true_val.calibrate:
        result.extra["bn_epoch_batches"] = true_val.epoch_batches
        result.extra["bn_epoch_seconds"] = [round(t, 4) for t in true_val.seconds]
        if true_val.final_used:  # the last epoch's figures are the final model's: no second pass
            result.extra["bn_statistics_batches"] = true_val.final_used
    return result


def _bn_batches(source: Source, train) -> int:
    return min(int(train.bn_recalibrate), steps_per_epoch(len(source), train.batch_size) * 4)


def _clean_batches(source: Source, train, seed: int, epoch: int | None = None):
    """Clean (unaugmented) shuffled training images, endless, for recomputing BN statistics.

    `epoch` None: the final statistics' stream; otherwise that epoch's own stream."""
    offset = 7919 if epoch is None else 7919 + 104729 * (epoch + 1)
    return iter(source.batches(train.batch_size, shuffle=True, seed=seed + offset, repeat=True, labels=False))


def recalibrate(model: keras.Model, source: Source, train, seed: int, result: FitResult | None = None) -> int:
    """Recompute batchnorm statistics over `train.bn_recalibrate` clean training batches."""
    from fastcourse.train.bn_stats import recalibrate_bn

    used = recalibrate_bn(model, _clean_batches(source, train, seed), max_batches=_bn_batches(source, train))
    if result is not None and used:
        result.extra["bn_statistics_batches"] = used
    return used


def eval_batch_size(train) -> int:
    return max(256, int(train.batch_size))


def predict(
    model: keras.Model, source: Source, batch_size: int = 256, augment: Optional[Callable] = None, seed: int = 0
) -> np.ndarray:
    """Class probabilities for every example of `source`, in order (float32)."""
    with quiet():
        probs = np.asarray(
            model.predict(source.batches(batch_size, labels=False, augment=augment, seed=seed), verbose=0), np.float32
        )
    if len(probs) != len(source):
        raise RunError(
            f"{len(probs)} predictions for {len(source)} examples: a file changed or became "
            "unreadable since the dataset was opened; open it again"
        )
    return probs


def evaluate(model: keras.Model, source: Source, batch_size: int = 256) -> dict:
    """Loss, accuracy and class probabilities on clean examples (fastcourse.train.metrics.scores:
    the same figures TrueValidation writes for each epoch)."""
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
