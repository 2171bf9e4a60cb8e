"""Every registered builder: output shape, no NaN, a save/load round trip in safe mode."""

import keras
import numpy as np
import pytest

from fastcourse.models import MODELS, build_model

# Small inputs keep big builders cheap; a builder not listed gets MNIST's shape.
EXAMPLE_ARGS = {
    "vgg16": {"input_shape": (48, 48, 3), "include_top": False, "weights": None},
    "vgg16_bn": {"input_shape": (48, 48, 3), "include_top": False, "weights": None},
    "alexnet": {"input_shape": (227, 227, 3)},
    # keras.applications backbones at their minimum size (tests/test_backbones.py tests them further)
    "resnet50": {"input_shape": (32, 32, 3), "weights": None},
    "efficientnet_b0": {"input_shape": (32, 32, 3), "weights": None},
    "mobilenet_v2": {"input_shape": (32, 32, 3), "weights": None},
}


# Builders that take seconds each (full-size AlexNet, keras.applications backbones) run in `make test`.
HEAVY = {"alexnet", "resnet50", "efficientnet_b0", "mobilenet_v2"}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.integration) if n in HEAVY else n for n in MODELS.names()]
)
def test_builder_shape_nan_and_round_trip(name, tmp_path):
    args = dict(EXAMPLE_ARGS.get(name, {}))
    shape = args.pop("input_shape", (28, 28, 1))
    model = build_model(name, shape, num_classes=7, mean=33.0, std=78.0, **args)
    x = np.random.default_rng(0).uniform(0, 255, (2, *shape)).astype("float32")
    y = np.asarray(model(x, training=False))
    assert y.shape[0] == 2 and np.all(np.isfinite(y))
    if y.ndim == 2 and model.layers[-1].name == "predictions":
        assert y.shape == (2, 7)
        np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)
    path = tmp_path / f"{name}.keras"
    model.save(path)
    again = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(np.asarray(again(x, training=False)), y, rtol=1e-5, atol=1e-6)


def test_ladder_architectures_follow_the_course():
    cnn = build_model("cnn", (28, 28, 1), 10)
    convs = [layer for layer in cnn.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [32, 32, 64, 64]
    assert all(c.padding == "valid" and c.kernel_size == (3, 3) for c in convs)
    assert cnn.get_layer("fc1").units == 512

    bn = build_model("cnn_bn_dropout", (28, 28, 1), 10)
    order = [layer.name for layer in bn.layers if not isinstance(layer, keras.layers.InputLayer)]
    assert order == [
        "normalize",
        "block1_conv1",
        "block1_bn1",
        "block1_conv2",
        "block1_pool",
        "block1_bn2",
        "block2_conv1",
        "block2_bn1",
        "block2_conv2",
        "block2_pool",
        "flatten",
        "flatten_bn",
        "fc1",
        "fc1_bn",
        "fc1_dropout",
        "predictions",
    ]
    assert bn.get_layer("fc1_dropout").rate == 0.5
    assert "hidden" in [layer.name for layer in build_model("hidden", (28, 28, 1), 10).layers]
    assert build_model("hidden", (28, 28, 1), 10).get_layer("hidden").activation.__name__ == "relu"


def test_normalisation_is_a_real_layer_with_the_training_stats():
    model = build_model("linear", (28, 28, 1), 10, mean=33.3, std=78.6)
    norm = model.get_layer("normalize")
    assert isinstance(norm, keras.layers.Normalization)
    out = np.asarray(norm(np.full((1, 28, 28, 1), 112.0, "float32")))
    np.testing.assert_allclose(out, (112.0 - 33.3) / 78.6, rtol=1e-5)
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in model.layers)


def test_same_ladder_runs_on_other_shapes():
    model = build_model("cnn_bn", (32, 32, 3), 4)
    assert model.output_shape == (None, 4)
