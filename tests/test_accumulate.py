"""Gradient accumulation (`train.accumulate: K`): K batches of B train as one batch of K x B.

Keras' optimizers take gradient_accumulation_steps (one update per K batches, with the mean of
their gradients); the schedule's table has one entry per optimizer step, so one-cycle's rate and
momentum follow the same curve as with the larger batch."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from fastcourse.config import TrainConfig
from fastcourse.data.sources import ArraySource
from fastcourse.train.optimizers import ScheduleAdapter
from fastcourse.train.trainer import fit


def _model(seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((6, 6, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(8, activation="relu")(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))


def _train(batch_size, accumulate, epochs=2, optimizer="sgd", schedule=None):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (128, 6, 6, 1)).astype(np.uint8)
    y = rng.integers(0, 3, 128)
    model = _model()
    train = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        optimizer=optimizer,
        accumulate=accumulate,
        schedule=schedule or {"name": "one_cycle", "max_lr": 0.05},
        bn_recalibrate=0,
        verbose=0,
        precision="float32",
    )
    fit(model, ArraySource(x, y, 3), train, seed=3)
    return model, [v.numpy() for v in model.trainable_variables]


@pytest.mark.integration  # trains six small models: seconds
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_accumulating_4_batches_of_16_is_a_batch_of_64(optimizer):
    """Weights after 2 epochs (8 optimizer steps) of one-cycle (rate and momentum cycled)."""
    big_model, big = _train(64, 1, optimizer=optimizer)
    acc_model, acc = _train(16, 4, optimizer=optimizer)
    _, small = _train(16, 1, optimizer=optimizer)
    assert int(acc_model.optimizer.iterations.numpy()) == int(big_model.optimizer.iterations.numpy()) == 4
    for a, b in zip(acc, big):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5)
    assert max(np.abs(s - b).max() for s, b in zip(small, big)) > 1e-3  # batches of 16 alone differ


def test_the_schedule_counts_optimizer_steps():
    """With K = 4 and 16 batches an epoch, optimizer step s reads the rate a 4-batch epoch gives
    at step s, whichever of its 4 micro-batches Keras asks at."""
    big = ScheduleAdapter("one_cycle", {"max_lr": 1.0}, 3, 4)
    acc = ScheduleAdapter("one_cycle", {"max_lr": 1.0}, 3, 16, accumulate=4)
    assert acc.table.shape == big.table.shape == (12,)
    for micro in range(48):
        assert float(acc(micro)) == pytest.approx(float(big(micro // 4)))
    mom_big = ScheduleAdapter("one_cycle", {"max_lr": 1.0}, 3, 4, quantity="momentum")
    mom_acc = ScheduleAdapter("one_cycle", {"max_lr": 1.0}, 3, 16, quantity="momentum", accumulate=4)
    for step in range(12):  # the momentum is read at optimizer.iterations, already in optimizer steps
        assert float(mom_acc(step)) == pytest.approx(float(mom_big(step)))
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(acc))
    np.testing.assert_array_equal(again.table, acc.table)
