"""Weight averaging (`train.ema`): Keras' optimizer EMA against an average computed by hand
(with steps_per_execution and bf16), swapped in for every evaluation, and resumed exactly."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from fastcourse.config import ConfigError, TrainConfig, load_config
from fastcourse.data.sources import ArraySource
from fastcourse.train.devices import training_scope
from fastcourse.train.ema import average_values, averaged_weights
from fastcourse.train.optimizers import build_optimizer
from fastcourse.train.trainer import evaluate, fit


def _keras_fit(spe, precision, record=False, m=0.9):
    with training_scope(precision, "none"):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((6, 6, 1))
        x = keras.layers.Dense(8, activation="relu")(keras.layers.Flatten()(inputs))
        model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", dtype="float32")(x))
        optimizer = build_optimizer("adam", 1e-2, ema_momentum=m)
        model.compile(optimizer, "categorical_crossentropy", steps_per_execution=spe)
        rng = np.random.default_rng(0)
        xs = rng.normal(size=(64, 6, 6, 1)).astype("float32")
        ys = np.eye(3, dtype="float32")[rng.integers(0, 3, 64)]
        snaps = []

        class Record(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                snaps.append([v.numpy().copy() for v in self.model.trainable_variables])

        model.fit(xs, ys, batch_size=8, epochs=1, verbose=0, shuffle=False, callbacks=[Record()] if record else [])
        return model, snaps


@pytest.mark.integration  # trains four small models: seconds
@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
def test_keras_ema_is_the_average_by_hand_with_steps_per_execution(precision):
    """timm's / Keras' EMA: the first step copies the weights, then a = m a + (1 - m) w after each
    step. Computed by hand from the weights after every step (steps_per_execution 1), it is what
    Keras leaves in the model with steps_per_execution 4, where a callback sees one batch in 4."""
    one, snaps = _keras_fit(1, precision, record=True)
    four, _ = _keras_fit(4, precision)
    avg = [w.copy() for w in snaps[0]]
    for weights in snaps[1:]:
        avg = [0.9 * a + 0.1 * w for a, w in zip(avg, weights)]
    for model in (one, four):
        for a, v in zip(avg, model.trainable_variables):
            assert v.dtype == "float32"
            np.testing.assert_allclose(v.numpy(), a, atol=1e-6)
    assert max(np.abs(a - w).max() for a, w in zip(avg, snaps[-1])) > 1e-3  # not the last weights


def _data():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 96)
    x = rng.integers(0, 60, (96, 8, 8, 1)).astype(np.uint8)
    for i, label in enumerate(y):
        x[i, 2 * label : 2 * label + 3] += 120
    return ArraySource(x[:64], y[:64], 3), ArraySource(x[64:], y[64:], 3)


def _bn_model():
    keras.utils.set_random_seed(1)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Flatten()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))


class StopAfter(keras.callbacks.Callback):
    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epochs:
            self.model.stop_training = True


def _train(tmp, callbacks=None):
    train_src, valid = _data()
    cfg = TrainConfig(
        epochs=3,
        batch_size=16,
        ema={"momentum": 0.8},
        schedule={"name": "constant", "lr": 1e-2},
        bn_recalibrate=8,
        verbose=0,
        precision="float32",
    )
    model = _bn_model()
    result = fit(model, train_src, cfg, seed=2, validation=valid, checkpoint_dir=tmp, callbacks=callbacks)
    return model, result, valid


@pytest.mark.integration  # three short trainings
def test_figures_are_the_averaged_weights_and_a_resumed_run_continues_the_average(tmp_path):
    model, result, valid = _train(tmp_path / "whole")
    # the model left after training is the average (Keras' finalize), and every figure is its
    np.testing.assert_allclose(
        np.concatenate([v.numpy().ravel() for v in model.trainable_variables]),
        np.concatenate([a.ravel() for a in average_values(model)]),
    )
    final = evaluate(model, valid)
    assert result.history["val_accuracy"][-1] == pytest.approx(final["accuracy"])
    assert result.history["val_loss"][-1] == pytest.approx(final["loss"], rel=1e-6)

    # stopped after epoch 1 (checkpointed), then resumed in a fresh model: the same average
    _train(tmp_path / "cut", callbacks=[StopAfter(1)])
    resumed, again, _ = _train(tmp_path / "cut")
    for a, b in zip(resumed.trainable_variables, model.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)
    for a, b in zip(average_values(resumed), average_values(model)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert again.history["val_accuracy"] == pytest.approx(result.history["val_accuracy"])


def test_averaged_weights_swaps_in_and_back():
    model = _bn_model()
    model.compile(build_optimizer("sgd", 0.1, ema_momentum=0.5), "categorical_crossentropy")
    model.optimizer.build(model.trainable_variables)
    raw = [v.numpy().copy() for v in model.trainable_variables]
    for avg in model.optimizer._model_variables_moving_average:
        avg.assign(np.full(avg.shape, 0.25, avg.dtype))
    with averaged_weights(model):
        assert all(np.all(v.numpy() == 0.25) for v in model.trainable_variables)
    assert all(np.array_equal(v.numpy(), r) for v, r in zip(model.trainable_variables, raw))


def test_ema_with_accumulation_is_refused_in_one_line():
    with pytest.raises(ConfigError) as info:
        load_config({"train": {"ema": {"momentum": 0.99}, "accumulate": 2}})
    assert "ema with accumulate=2" in str(info.value) and len(str(info.value).splitlines()) == 1
