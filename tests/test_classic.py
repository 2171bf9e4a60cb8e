"""The classic builders (LeNet, AlexNet) and the Identify-the-digits ladder, and their configs."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from fastcourse.config import load_config
from fastcourse.models import MODELS, build_model

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ["digits_mlp", "digits_wide", "digits_deep", "digits_deep_dropout", "digits_deep_wide", "digits_cnn"]
# parameter counts worked out by hand from F*F*D*K + K and D*K + K
PARAMS = {
    "lenet": 156 + 2416 + 48120 + 10164 + 850,
    "digits_mlp": 784 * 50 + 50 + 50 * 10 + 10,
    "digits_wide": 784 * 500 + 500 + 500 * 10 + 10,
    "digits_deep": 784 * 50 + 50 + 4 * (50 * 50 + 50) + 510,
    "digits_deep_dropout": 784 * 50 + 50 + 4 * (50 * 50 + 50) + 510,
    "digits_deep_wide": 784 * 500 + 500 + 4 * (500 * 500 + 500) + 5010,
    "digits_cnn": (25 * 25 + 25) + (25 * 25 * 25 + 25) + (16 * 25 * 25 + 25) + (25 * 50 + 50) + 510,
}


@pytest.mark.parametrize("name", ["lenet", *DIGITS])
def test_small_builders_shape_params_and_probabilities(name, rng):
    model = build_model(name, (28, 28, 1), 10, mean=33.0, std=78.0)
    assert model.count_params() == PARAMS[name]
    x = rng.integers(0, 256, (4, 28, 28, 1)).astype("float32")
    p = np.asarray(model(x))
    assert p.shape == (4, 10) and np.all(np.isfinite(p))
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-5)


def test_alexnet_is_the_227_network_of_the_reference():
    model = build_model("alexnet", (227, 227, 3), 1000)
    sizes = [
        model.get_layer(n).output.shape[1]
        for n in ["conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5"]
    ]
    assert sizes == [55, 27, 27, 13, 13, 13, 13, 6]
    assert model.get_layer("pool5").output.shape[1:] == (6, 6, 256)
    assert [model.get_layer(n).units for n in ("fc6", "fc7", "predictions")] == [4096, 4096, 1000]
    assert model.count_params() == 62_378_344


def test_normalisation_is_inside_the_model(rng):
    """A model built with mean/std on raw pixels equals the same weights on pre-normalised input."""
    raw = build_model("digits_cnn", (28, 28, 1), 10, mean=33.3, std=78.6)
    plain = build_model("digits_cnn", (28, 28, 1), 10)
    plain.set_weights(raw.get_weights())
    x = rng.integers(0, 256, (3, 28, 28, 1)).astype("float32")
    np.testing.assert_allclose(np.asarray(raw(x)), np.asarray(plain((x - 33.3) / 78.6)), atol=1e-5)


@pytest.mark.parametrize("name", ["lenet", "digits_deep_dropout"])
def test_save_and_load_in_safe_mode(name, tmp_path, rng):
    model = build_model(name, (28, 28, 1), 10, mean=30.0, std=80.0)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    x = rng.integers(0, 256, (2, 28, 28, 1)).astype("float32")
    np.testing.assert_allclose(np.asarray(model(x)), np.asarray(loaded(x)), atol=1e-6)


def test_a_few_steps_lower_the_loss(tiny_config):
    from fastcourse.data import DATASETS
    from fastcourse.data.sources import ArraySource
    from fastcourse.train.trainer import fit

    cfg = load_config(tiny_config(model={"name": "digits_mlp", "hidden": [32]}, train__epochs=3))
    data = DATASETS.get("mnist_sample")().limit(512, 64)
    model = build_model("digits_mlp", data.input_shape, 10, *data.pixel_stats(), hidden=[32])
    history = fit(model, ArraySource(data.x_train, data.y_train, 10), cfg.train, cfg.seed).history["loss"]
    assert history[-1] < history[0] * 0.7


def test_bad_arguments_fail_clearly():
    with pytest.raises(ValueError, match="dropout"):
        build_model("digits_mlp", (28, 28, 1), 10, dropout=1.5)
    with pytest.raises(ValueError, match="hidden"):
        build_model("digits_mlp", (28, 28, 1), 10, hidden=[])
    with pytest.raises(ValueError, match="pooling"):
        build_model("lenet", (28, 28, 1), 10, pooling="median")


def test_lenet_options_change_the_network():
    relu_max = build_model("lenet", (28, 28, 1), 10, activation="relu", pooling="max")
    assert relu_max.get_layer("conv1").activation.__name__ == "relu"
    assert isinstance(relu_max.get_layer("pool1"), keras.layers.MaxPooling2D)
    assert isinstance(build_model("lenet", (28, 28, 1), 10).get_layer("pool1"), keras.layers.AveragePooling2D)


@pytest.mark.parametrize(
    "path",
    sorted((ROOT / "configs" / "digits").glob("*.yaml")) + sorted((ROOT / "configs" / "classic").glob("*.yaml")),
    ids=lambda p: p.name,
)
def test_configs_validate_and_say_how_to_run(path):
    cfg = load_config(path)
    assert cfg.model.name in MODELS
    header = path.read_text().split("\nname:")[0]
    assert f"fastcourse run configs/{path.parent.name}/{path.name}" in header
    assert "RESULT" not in header  # a measured figure was filled in
    assert cfg.data.name == "mnist_sample"
