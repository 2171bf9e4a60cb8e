"""The worked examples: hand-set neurons, convolution and pooling by hand, softmax, SGD, feature maps."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from scipy.signal import correlate2d

from fastcourse.lessons import concepts as c
from fastcourse.models import build_model


@pytest.mark.parametrize("gate", ["and", "or", "not"])
def test_single_neuron_gates_follow_their_truth_tables(gate):
    table = c.truth_table(c.logic_gate(gate))
    assert (table["output"] == table["expected"]).all()
    w, b = c.logic_gate(gate).get_layer("neuron").get_weights()
    np.testing.assert_array_equal(w[:, 0], c.GATES[gate][0])  # the reference's weights, not fitted ones
    assert b[0] == c.GATES[gate][1]


def test_xnor_is_two_layers_of_the_reference_weights():
    model = c.xnor()
    table = c.truth_table(model)
    assert table["output"].tolist() == [1, 0, 0, 1] == table["expected"].tolist()
    w, b = model.get_layer("hidden").get_weights()
    np.testing.assert_array_equal(b, [0.5, -1.5])
    # the hidden units are "neither" and "both"
    hidden = keras.Model(model.inputs, model.layers[2].output)
    a = hidden.predict(np.array([[0, 0], [0, 1], [1, 1]], np.float32), verbose=0)
    np.testing.assert_array_equal(a, [[1, 0], [0, 0], [0, 1]])


def test_sigmoid_with_large_weights_is_the_differentiable_version():
    table = c.truth_table(c.xnor(sharpness=20))
    assert np.all(np.abs(table["output"] - table["expected"]) < 0.01)
    assert 0 < table["output"].min() < 0.01  # smooth, not a step


def test_step_is_zero_below_zero_and_one_from_zero():
    np.testing.assert_array_equal(np.asarray(c.Step()(np.array([-2.0, -1e-6, 0.0, 3.0], np.float32))), [0, 0, 1, 1])


def test_gate_models_save_and_load_in_safe_mode(tmp_path):
    model = c.xnor()
    model.save(tmp_path / "xnor.keras")
    loaded = keras.saving.load_model(tmp_path / "xnor.keras", safe_mode=True)
    assert c.truth_table(loaded)["output"].tolist() == [1, 0, 0, 1]


def test_unknown_gate():
    with pytest.raises(ValueError, match="nand"):
        c.logic_gate("nand")


def test_convolution_by_hand_equals_conv2d_and_scipy():
    digit, label = c.sample_digit(0)
    assert digit.shape == (28, 28) and 0 <= label <= 9 and digit.max() <= 1.0
    for kernel in c.edge_filters().values():
        hand = c.convolve(digit, kernel)
        assert hand.shape == (26, 26)
        np.testing.assert_allclose(hand, c.conv2d_keras(digit, kernel), atol=1e-5)
        np.testing.assert_allclose(hand, correlate2d(digit, kernel, mode="valid"), atol=1e-5)


def test_top_edge_filter_finds_top_edges():
    square = np.zeros((10, 10), np.float32)
    square[4:8, 2:8] = 1.0  # a white block whose top edge is between rows 3 and 4
    out = c.convolve(square, c.TOP_EDGE)
    row, _ = np.unravel_index(out.argmax(), out.shape)
    assert row == 3 and out.max() == 3.0
    assert out.min() == -3.0  # the bottom edge answers with the opposite sign
    filters = c.edge_filters()
    np.testing.assert_array_equal(filters["bottom"], c.TOP_EDGE[::-1, ::-1])


def test_max_pooling_by_hand_equals_keras_and_halves_the_size():
    digit, _ = c.sample_digit(1)
    pooled = c.max_pool(digit)
    assert pooled.shape == (14, 14)
    np.testing.assert_array_equal(pooled, c.max_pool_keras(digit))
    np.testing.assert_array_equal(c.max_pool(np.arange(16.0).reshape(4, 4)), [[5, 7], [13, 15]])


def test_softmax():
    x = np.array([1.0, 2.0, 3.0])
    p = c.softmax(x)
    np.testing.assert_allclose(p, np.exp(x) / np.exp(x).sum())
    np.testing.assert_allclose(p, np.asarray(keras.activations.softmax(x[None].astype("float32")))[0], rtol=1e-6)
    big = c.softmax([1000.0, 1001.0])  # no overflow
    np.testing.assert_allclose(big, [1 / (1 + np.e), np.e / (1 + np.e)])


def test_sgd_fits_the_line():
    fit = c.sgd_line(a=3, b=8, steps=1000)
    last = fit.history.iloc[-1]
    assert last.a == pytest.approx(3, abs=0.05) and last.b == pytest.approx(8, abs=0.05)
    assert fit.history.loss.iloc[0] > 100 * last.loss
    assert np.all(np.diff(fit.history.loss.to_numpy()) <= 1e-12)  # a small rate: loss never rises
    assert (fit.history.iloc[0].a, fit.history.iloc[0].b) == (-1.0, 1.0)


def test_feature_maps_of_any_conv_layer(rng):
    model = build_model("lenet", (28, 28, 1), 10)
    image = rng.integers(0, 256, (28, 28, 1)).astype("float32")
    assert c.conv_layers(model) == ["conv1", "conv2"]
    assert c.feature_maps(model, "conv2", image).shape == (10, 10, 16)
    first = c.feature_maps(model, None, image[..., 0])
    assert first.shape == (28, 28, 6)
    with pytest.raises(ValueError, match="conv1, conv2"):
        c.feature_maps(model, "fc3", image)


def test_every_plot_is_written(tmp_path):
    digit, _ = c.sample_digit(0)
    model = build_model("digits_cnn", (28, 28, 1), 10)
    paths = [
        c.plot_gates(tmp_path / "gates.png"),
        c.plot_gates(tmp_path / "gates_sigmoid.png", sharpness=10),
        c.plot_convolution(digit, tmp_path / "conv.png"),
        c.plot_pooling(digit, tmp_path / "pool.png"),
        c.plot_softmax([1.0, 2.0, 0.5], tmp_path / "softmax.png", labels=["a", "b", "c"]),
        c.plot_sgd_line(c.sgd_line(steps=50), tmp_path / "sgd.png"),
        c.plot_feature_maps(model, "conv2", digit * 255, tmp_path / "maps.png", max_maps=8),
    ]
    for p in paths:
        assert p.stat().st_size > 5000 and p.read_bytes()[:4] == b"\x89PNG"
