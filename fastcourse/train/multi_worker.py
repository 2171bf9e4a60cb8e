"""Training under MultiWorkerMirroredStrategy, where Keras 3's own `fit` cannot run.

Keras 3.15's TensorFlow trainer reduces each step's logged values with
`strategy.reduce("MEAN", scalar, axis=0)`, which fails across workers
(keras-team/keras#20585, tensorflow/tensorflow#72388). This loop does the same work through
tf.distribute alone: a distributed dataset, `strategy.run` of a gradient step whose loss is
averaged over the GLOBAL batch, and `strategy.reduce` of the epoch's sums. The optimizer, its
schedule, the loss and the data pipeline are the ones `fit` uses.

Checkpoints are those of single-device runs (checkpoint.py): after each epoch whose loss and
weights are finite, `epoch-NNNN.keras` is written and `state.json` (the history and epoch times
so far) committed. Keras' saver creates variables of its own (a reference Optimizer), and under
this strategy creating a variable is a collective, so every worker saves, as TensorFlow's
multi-worker guide has it: the chief into its run directory, the others into their scratch
folders, which nobody reads (fastcourse.run.experiment deletes them). On resume every worker
calls `checkpoint.restore`, which restores the chief's checkpoint and broadcasts it, and the
loop continues at `initial_epoch` with the history joined to the checkpointed one. A
non-finite loss stops every worker (the loss is all-reduced, so all see it) with the trainer's
one-line error, and that epoch is never saved.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Optional

import keras
import numpy as np
import tensorflow as tf

from fastcourse.train import checkpoint
from fastcourse.train.checkpoint import CheckpointState


def fit_multi_worker(
    model: keras.Model,
    dataset: tf.data.Dataset,
    epochs: int,
    steps_per_epoch: int,
    global_batch_size: int,
    strategy: tf.distribute.Strategy,
    initial_epoch: int = 0,
    verbose: int = 1,
    checkpoint_dir: Optional[str | Path] = None,
    resumed: Optional[CheckpointState] = None,
) -> tuple[dict[str, list[float]], list[float]]:
    """Train `model` (compiled, built inside `strategy.scope()`); return history and epoch times,
    those of the checkpointed epochs first.

    With `checkpoint_dir` (the chief's is its run's; the others' are never read), each healthy
    epoch is checkpointed. Without it, the folder of the model's last
    `checkpoint.restore` under this strategy is used, if there was one."""
    bound = checkpoint.take_binding(model)  # taken in any case: a later call must not find it
    if checkpoint_dir is None and bound is not None:
        checkpoint_dir, resumed = bound[0], resumed or bound[1]
    resumed = resumed or CheckpointState()
    saver = _WorkerCheckpoint(model, checkpoint_dir, resumed) if checkpoint_dir is not None else None
    loss_fn = keras.losses.CategoricalCrossentropy(reduction=None)
    optimizer = model.optimizer
    dist_ds = strategy.experimental_distribute_dataset(dataset)
    iterator = iter(dist_ds)

    def replica_step(images, labels):
        with tf.GradientTape() as tape:
            probs = model(images, training=True)
            per_example = loss_fn(labels, probs)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch_size)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        correct = tf.cast(tf.equal(tf.argmax(probs, -1), tf.argmax(labels, -1)), tf.float32)
        return tf.reduce_sum(per_example), tf.reduce_sum(correct), tf.cast(tf.shape(images)[0], tf.float32)

    @tf.function
    def train_step(it):
        images, labels = next(it)
        sums = strategy.run(replica_step, args=(images, labels))
        return [strategy.reduce(tf.distribute.ReduceOp.SUM, s, axis=None) for s in sums]

    history: dict[str, list[float]] = {k: list(v) for k, v in resumed.history.items()}
    for key in ("loss", "accuracy"):
        history.setdefault(key, [])
    seconds: list[float] = list(resumed.epoch_seconds)
    for epoch in range(initial_epoch, epochs):
        start = time.perf_counter()
        progress = keras.utils.Progbar(steps_per_epoch, verbose=verbose, stateful_metrics=["loss", "accuracy"])
        total = np.zeros(3)
        for step in range(steps_per_epoch):
            total += np.array([float(v) for v in train_step(iterator)])
            progress.update(step + 1, [("loss", total[0] / total[2]), ("accuracy", total[1] / total[2])])
            if not math.isfinite(total[0]):  # every worker sees the same all-reduced sum: all stop here
                _diverged(epoch, step, total[0], saver)
        seconds.append(time.perf_counter() - start)
        history["loss"].append(float(total[0] / total[2]))
        history["accuracy"].append(float(total[1] / total[2]))
        if saver is not None:
            saver.epoch_end(epoch, history, seconds)
    return history, seconds


class _WorkerCheckpoint:
    """The per-epoch checkpoint in checkpoint.py's format: the chief's is the run's; every worker
    writes one into its own folder, because saving is collective here."""

    def __init__(self, model: keras.Model, folder: str | Path, resumed: CheckpointState):
        self.model, self.folder = model, Path(folder)
        self.state = CheckpointState(**asdict(resumed))

    def epoch_end(self, epoch: int, history: dict[str, list[float]], seconds: list[float]) -> None:
        weights_ok = all(bool(np.isfinite(keras.ops.convert_to_numpy(v)).all()) for v in self.model.trainable_variables)
        if not weights_ok:
            return
        self.state.epoch = epoch + 1
        self.state.history = {k: list(v) for k, v in history.items()}
        self.state.epoch_seconds = list(seconds)
        checkpoint.save(self.model, self.folder, self.state)

    def last_good(self) -> str:
        if not self.state.epoch:
            return "no epoch completed, so there is no checkpoint"
        return f"the checkpoint of epoch {self.state.epoch} is kept in {self.folder}"


def _diverged(epoch: int, step: int, loss: float, saver: Optional[_WorkerCheckpoint]) -> None:
    from fastcourse.train.guards import Diverged

    kept = f"; {saver.last_good()}" if saver is not None else ""
    raise Diverged(
        f"epoch {epoch + 1}: the training loss became {loss} at batch {step + 1}, so training "
        f"stopped on every worker{kept}. Try a lower learning rate (train.schedule)"
    )


def is_multi_worker(strategy: Optional[tf.distribute.Strategy]) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
