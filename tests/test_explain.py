"""Layer arithmetic: formulas vs Keras, and the reference's AlexNet / VGG16 numbers."""

from __future__ import annotations

import keras
import pytest
from keras import layers

from fastcourse.cli import main
from fastcourse.lessons.explain import explain, parse_shape, summary
from fastcourse.models import MODELS


def test_alexnet_matches_the_reference():
    t = explain("alexnet").set_index("layer")
    sizes = [
        int(t.loc[n, "output_shape"].split("x")[0])
        for n in ["conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5"]
    ]
    assert sizes == [55, 27, 27, 13, 13, 13, 13, 6]
    assert t.loc["pool5", "output_shape"] == "6x6x256"
    assert t.loc["conv1", "shape_formula"] == "(227 - 11 + 2*0)/4 + 1 = 55"
    assert t.loc["conv2", "shape_formula"] == "(27 - 5 + 2*2)/1 + 1 = 27"
    assert t.loc["conv1", "params_formula"] == "11*11*3*96 + 96 = 34,944"
    assert t.loc["fc6", "params"] == 9216 * 4096 + 4096
    assert t["matches_keras"].all()
    assert t["params"].sum() == 62_378_344


@pytest.mark.integration
def test_vgg16_totals_match_the_reference():
    """The registered vgg16 (ConvBlocks, course layout): 138,357,544 parameters; conv 10.6 % of
    them and 99 % of the ~15.5 GMAC per 224x224 image."""
    t = explain("vgg16")
    s = summary(t)
    blocks = t[t["layer"].str.match(r"block\d_(conv\d|pool)$")].set_index("layer")
    assert blocks.loc["block1_conv1", "shape_formula"] == "(224 - 3 + 2*1)/1 + 1 = 224"
    assert blocks.loc["block5_pool", "output_shape"] == "7x7x512"
    assert t.set_index("layer").loc["fc1", "params_formula"] == "25088*4096 + 4096 = 102,764,544"
    assert t["matches_keras"].all()
    assert s["total_params"] == 138_357_544
    assert s["conv_params_share"] == pytest.approx(0.106, abs=0.001)
    assert s["conv_macs_share"] > 0.99
    assert s["total_macs"] == pytest.approx(15.5e9, rel=0.01)


# the big nets at full size cost seconds each; their arithmetic is checked as well on small inputs
SMALL_INPUT = {"vgg16": (32, 32, 3), "vgg16_bn": (32, 32, 3), "alexnet": (99, 99, 3)}


@pytest.mark.parametrize("name", MODELS.names())
def test_every_registered_builder_is_explained(name):
    t = explain(name, SMALL_INPUT.get(name))
    assert t["matches_keras"].all(), t.loc[~t["matches_keras"], "layer"].tolist()
    assert t["params"].sum() == t.attrs["total_params"]


def test_ladder_digits_cnn_arithmetic():
    t = explain("digits_cnn", (28, 28, 1), 10).set_index("layer")
    assert [t.loc[n, "output_shape"] for n in ["conv1", "pool1", "conv2", "pool2", "conv3"]] == [
        "24x24x25",
        "12x12x25",
        "8x8x25",
        "4x4x25",
        "1x1x25",
    ]
    assert t.loc["conv3", "params_formula"] == "4*4*25*25 + 25 = 10,025"


def test_same_padding_odd_sizes_padding_and_batchnorm():
    """Asymmetric 'same' padding, explicit zero padding, batchnorm and global pooling."""
    inputs = keras.Input((7, 9, 3))
    x = layers.Conv2D(4, 3, strides=2, padding="same", name="c1")(inputs)  # 7 -> 4, 9 -> 5
    x = layers.ZeroPadding2D(1, name="zp")(x)
    x = layers.Conv2D(5, (2, 3), use_bias=False, name="c2")(x)
    x = layers.BatchNormalization(name="bn")(x)
    x = layers.MaxPooling2D(2, padding="same", name="mp")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    t = explain(keras.Model(inputs, layers.Dense(2)(x))).set_index("layer")
    assert t["matches_keras"].all()
    assert t.loc["c1", "output_shape"] == "4x5x4"
    assert t.loc["c1", "shape_formula"] == "(7 - 3 + 2*1)/2 + 1 = 4; (9 - 3 + 2*1)/2 + 1 = 5"
    assert t.loc["c2", "params"] == 2 * 3 * 4 * 5
    assert t.loc["bn", "params"] == 4 * 5


def test_nested_models_are_expanded():
    inner = keras.Sequential([keras.Input((8, 8, 1)), layers.Conv2D(2, 3, name="k")], name="base")
    inputs = keras.Input((8, 8, 1))
    model = keras.Model(inputs, layers.Dense(3, name="head")(layers.Flatten()(inner(inputs))))
    t = explain(model)
    assert "base/k" in set(t["layer"]) and t["matches_keras"].all()
    assert t["params"].sum() == model.count_params()


def test_parse_shape():
    assert parse_shape("227,227,3") == (227, 227, 3)
    assert parse_shape("32x32x1") == (32, 32, 1)
    for bad in ["", "a,b", "0,3,3", "1,2,3,4"]:
        with pytest.raises(ValueError):
            parse_shape(bad)


def test_cli(tmp_path, capsys):
    assert main(["explain", "lenet", "--input-shape", "32,32,1", "--csv", str(tmp_path / "t.csv")]) == 0
    out = capsys.readouterr().out
    assert "(32 - 5 + 2*2)/1 + 1 = 32" in out and "total parameters:" in out
    assert "conv1" in (tmp_path / "t.csv").read_text()
    assert main(["explain", "alexnet", "--input-shape", "28,28,1"]) == 2
    assert "too small" in capsys.readouterr().err
    assert main(["explain", "nope"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
    assert main(["explain", "lenet", "--input-shape", "x"]) == 2
