"""fastcourse's BatchNorm (TensorFlow's fused kernel) computes what keras.layers.BatchNormalization
computes: outputs, gradients and moving statistics, in training and in inference, 2-D and 4-D."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from fastcourse.models.blocks import BatchNorm


def pair(shape, **kwargs):
    stock, fused = keras.layers.BatchNormalization(**kwargs), BatchNorm(**kwargs)
    stock.build(shape)
    fused.build(shape)
    rng = np.random.default_rng(0)
    weights = [w + rng.normal(0, 0.3, w.shape).astype("float32") for w in stock.get_weights()]
    weights[-1] = np.abs(weights[-1]) + 0.1  # a variance
    stock.set_weights(weights)
    fused.set_weights(weights)
    return stock, fused


@pytest.mark.parametrize("shape", [(16, 5, 5, 3), (32, 7)])
def test_training_step_matches_keras(shape):
    stock, fused = pair(shape, momentum=0.9)
    x = tf.constant(np.random.default_rng(1).normal(2.0, 3.0, shape).astype("float32"))
    grads = {}
    for name, layer in (("stock", stock), ("fused", fused)):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, training=True)
            loss = tf.reduce_sum(y * tf.sin(x))
        grads[name] = (y, *tape.gradient(loss, [x, layer.gamma.value, layer.beta.value]))
    for a, b in zip(grads["stock"], grads["fused"]):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-4, atol=1e-4)
    for a, b in zip(stock.get_weights(), fused.get_weights()):  # the moving statistics moved alike
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    assert not np.allclose(stock.moving_variance.numpy(), 1.0)


@pytest.mark.parametrize("shape", [(8, 4, 4, 6), (8, 6), (8, 3, 6)])
def test_inference_matches_keras(shape):
    stock, fused = pair(shape)
    x = np.random.default_rng(2).normal(0, 2, shape).astype("float32")
    np.testing.assert_allclose(fused(x, training=False), stock(x, training=False), rtol=1e-5, atol=1e-5)


def test_mixed_bfloat16_keeps_float32_statistics():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        layer = BatchNorm(momentum=0.0)
        x = tf.constant(np.random.default_rng(3).normal(5.0, 2.0, (64, 4, 4, 8)).astype("float32"))
        y = layer(x, training=True)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert y.dtype == tf.bfloat16 and layer.moving_mean.dtype == "float32"
    np.testing.assert_allclose(layer.moving_mean.numpy(), x.numpy().mean(axis=(0, 1, 2)), atol=0.05)
    np.testing.assert_allclose(layer.moving_variance.numpy(), x.numpy().var(axis=(0, 1, 2)), rtol=0.03)


def test_saved_config_is_keras_batchnorm_config(tmp_path):
    model = keras.Sequential([keras.Input((4,)), BatchNorm(momentum=0.8, epsilon=1e-3, name="bn")])
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    assert type(again.get_layer("bn")) is BatchNorm
    assert again.get_layer("bn").get_config() == keras.layers.BatchNormalization(
        momentum=0.8, epsilon=1e-3, name="bn"
    ).get_config() | {"dtype": again.get_layer("bn").get_config()["dtype"]}
