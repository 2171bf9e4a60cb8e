"""Training under MultiWorkerMirroredStrategy, where Keras 3's own `fit` cannot run.

Keras 3.15's TensorFlow trainer reduces each step's logged values with
`strategy.reduce("MEAN", scalar, axis=0)`, which fails across workers
(keras-team/keras#20585, tensorflow/tensorflow#72388). This loop does the same work through
tf.distribute alone: a distributed dataset, `strategy.run` of a gradient step whose loss is
averaged over the GLOBAL batch, and `strategy.reduce` of the epoch's sums. The optimizer, its
schedule, the loss and the data pipeline are the ones `fit` uses.
"""
from __future__ import annotations

import time
from typing import Optional

import keras
import numpy as np
import tensorflow as tf


def fit_multi_worker(
    model: keras.Model, dataset: tf.data.Dataset, epochs: int, steps_per_epoch: int,
    global_batch_size: int, strategy: tf.distribute.Strategy, initial_epoch: int = 0,
    verbose: int = 1,
) -> tuple[dict[str, list[float]], list[float]]:
    """Train `model` (compiled, built inside `strategy.scope()`); return history and epoch times."""
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

    history: dict[str, list[float]] = {"loss": [], "accuracy": []}
    seconds: list[float] = []
    for epoch in range(initial_epoch, epochs):
        start = time.perf_counter()
        progress = keras.utils.Progbar(steps_per_epoch, verbose=verbose, stateful_metrics=["loss", "accuracy"])
        total = np.zeros(3)
        for step in range(steps_per_epoch):
            total += np.array([float(v) for v in train_step(iterator)])
            progress.update(step + 1, [("loss", total[0] / total[2]), ("accuracy", total[1] / total[2])])
        seconds.append(time.perf_counter() - start)
        history["loss"].append(float(total[0] / total[2]))
        history["accuracy"].append(float(total[1] / total[2]))
    return history, seconds


def is_multi_worker(strategy: Optional[tf.distribute.Strategy]) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
