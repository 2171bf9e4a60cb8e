"""recalibrate_bn: precise batchnorm statistics after training."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from fastcourse.errors import UsageError
from fastcourse.train.bn_stats import recalibrate_bn


def _snapshot(model):
    return {id(v): np.array(v.numpy()) for v in model.weights}


def _moving(model):
    return {id(v) for layer in _bns(model) for v in (layer.moving_mean, layer.moving_variance)}


def _bns(layer):
    found = [layer] if isinstance(layer, keras.layers.BatchNormalization) else []
    for sub in getattr(layer, "layers", []):
        found += _bns(sub)
    return found


@pytest.mark.integration
def test_cnn_bn_dropout_one_epoch_recovers_inference_accuracy():
    from fastcourse.data.arrays import mnist_sample
    from fastcourse.models import build_model

    keras.utils.set_random_seed(1)
    data = mnist_sample()
    mean, std = data.pixel_stats()
    model = build_model("cnn_bn_dropout", (28, 28, 1), 10, mean=mean, std=std)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = data.x_train.astype("float32"), data.y_train
    model.fit(x, y, batch_size=64, epochs=1, verbose=0)
    xt, yt = data.x_test.astype("float32"), data.y_test

    def accuracy():
        return float((model.predict(xt, batch_size=256, verbose=0).argmax(1) == yt).mean())

    before_acc, before = accuracy(), _snapshot(model)
    # Seen: ~0.10-0.15 before (moving_variance still near its initial 1 after 63 steps of
    # momentum 0.99, while the first conv's outputs vary ~0.005), ~0.95-0.96 after.
    assert before_acc < 0.5
    batches = np.array_split(x[np.random.default_rng(0).permutation(len(x))], len(x) // 64)
    assert recalibrate_bn(model, batches, max_batches=100) == len(batches)  # 62 < 100: all of them
    assert accuracy() >= 0.9
    after, moving = _snapshot(model), _moving(model)
    assert len(moving) == 10  # 5 BN layers
    for key, value in before.items():
        if key not in moving:
            np.testing.assert_array_equal(value, after[key])


def test_cumulative_average_of_batch_moments():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4, 3)), keras.layers.Dense(5), keras.layers.BatchNormalization()])
    rng = np.random.default_rng(0)
    batches = [rng.normal(i, 1 + i, size=(8, 4, 3)).astype("float32") for i in range(3)]
    assert recalibrate_bn(model, iter(batches)) == 3
    feats = [model.layers[0](b).numpy() for b in batches]
    bn = model.layers[1]
    np.testing.assert_allclose(bn.moving_mean.numpy(), np.mean([f.mean((0, 1)) for f in feats], 0), atol=1e-5)
    # biased (divide-by-n) variance, as Keras' BN stores it
    np.testing.assert_allclose(bn.moving_variance.numpy(), np.mean([f.var((0, 1)) for f in feats], 0), atol=1e-5)


def test_nested_models_and_dropout_stays_off():
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    head = keras.Sequential([keras.Input((6,)), keras.layers.Dense(6), keras.layers.BatchNormalization()], name="head")
    inner_in = keras.Input((6,))
    inner = keras.Model(inner_in, head(keras.layers.Dropout(0.9)(inner_in)), name="inner")
    outer_in = keras.Input((6,))
    model = keras.Model(outer_in, keras.layers.BatchNormalization(name="top")(inner(outer_in)))
    x = np.random.default_rng(1).normal(3.0, 2.0, size=(64, 6)).astype("float32")
    ds = tf.data.Dataset.from_tensor_slices((x, np.zeros(64))).batch(16)  # yields (x, y)
    frozen = _snapshot(model)
    assert recalibrate_bn(model, ds, max_batches=3) == 3
    inner_bn = head.layers[1]
    feats = head.layers[0](x[:48]).numpy()  # dropout off: the Dense sees x itself
    np.testing.assert_allclose(inner_bn.moving_mean.numpy(), feats.mean(0), atol=1e-4)
    assert not np.allclose(model.get_layer("top").moving_variance.numpy(), 1.0)
    for v in head.layers[0].weights:
        np.testing.assert_array_equal(v.numpy(), frozen[id(v)])


def test_model_without_bn_is_untouched():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), keras.layers.Dropout(0.5)])
    before = _snapshot(model)
    assert recalibrate_bn(model, [np.ones((4, 3), "float32")]) == 0
    for v in model.weights:
        np.testing.assert_array_equal(v.numpy(), before[id(v)])


def test_usage_errors():
    model = keras.Sequential([keras.Input((3,)), keras.layers.BatchNormalization()])
    with pytest.raises(UsageError):
        recalibrate_bn(model, np.ones((4, 3), "float32"))  # one array, not batches
    with pytest.raises(UsageError):
        recalibrate_bn(model, [])
