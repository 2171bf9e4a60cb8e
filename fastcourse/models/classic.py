"""The classic CNNs the course's companion articles take apart: LeNet-5 and AlexNet.

Both are data (a list of layer specs) run through one small interpreter, so `fastcourse
explain lenet` / `explain alexnet` can show the arithmetic of every layer. Inputs are raw
0-255 pixels, normalised by one mean and std in a real Normalization layer (safe to reload).
"""

from __future__ import annotations

import keras
from keras import layers

from fastcourse.models.mnist import normalize
from fastcourse.models.registry import MODELS

# (kind, options): "conv" filters/size/strides/padding, "pool" size/strides, "dense" units,
# "dropout" rate. Names are deterministic (conv1, pool1, fc6 ...) so cuts and weights go by name.
LENET = [
    ("conv", dict(name="conv1", filters=6, size=5, padding="same")),  # 28x28 -> 28 (32x32 valid in 1998)
    ("pool", dict(name="pool1", size=2, strides=2)),  # -> 14
    ("conv", dict(name="conv2", filters=16, size=5)),  # -> 10
    ("pool", dict(name="pool2", size=2, strides=2)),  # -> 5
    ("flatten", dict(name="flatten")),
    ("dense", dict(name="fc3", units=120)),
    ("dense", dict(name="fc4", units=84)),
]

# AlexNet as the course's material gives it (one tower; Keras has no local response normalisation).
ALEXNET = [
    ("conv", dict(name="conv1", filters=96, size=11, strides=4)),  # 227 -> 55
    ("pool", dict(name="pool1", size=3, strides=2)),  # -> 27
    ("conv", dict(name="conv2", filters=256, size=5, padding="same")),  # P=2 -> 27
    ("pool", dict(name="pool2", size=3, strides=2)),  # -> 13
    ("conv", dict(name="conv3", filters=384, size=3, padding="same")),  # P=1 -> 13
    ("conv", dict(name="conv4", filters=384, size=3, padding="same")),
    ("conv", dict(name="conv5", filters=256, size=3, padding="same")),
    ("pool", dict(name="pool5", size=3, strides=2)),  # -> 6x6x256
    ("flatten", dict(name="flatten")),
    ("dense", dict(name="fc6", units=4096)),
    ("dropout", dict(name="fc6_dropout", rate=0.5)),
    ("dense", dict(name="fc7", units=4096)),
    ("dropout", dict(name="fc7_dropout", rate=0.5)),
]


def stack(x, spec: list[tuple[str, dict]], activation: str = "relu", pooling: str = "max"):
    """Apply a list of layer specs to tensor `x`."""
    pool = layers.MaxPooling2D if pooling == "max" else layers.AveragePooling2D
    for kind, o in spec:
        if kind == "conv":
            x = layers.Conv2D(
                o["filters"],
                o["size"],
                strides=o.get("strides", 1),
                padding=o.get("padding", "valid"),
                activation=activation,
                name=o["name"],
            )(x)
        elif kind == "pool":
            x = pool(o["size"], strides=o.get("strides"), name=o["name"])(x)
        elif kind == "flatten":
            x = layers.Flatten(name=o["name"])(x)
        elif kind == "dense":
            x = layers.Dense(o["units"], activation=activation, name=o["name"])(x)
        elif kind == "dropout":
            x = layers.Dropout(o["rate"], name=o["name"])(x) if o["rate"] else x
        else:
            raise ValueError(f"unknown layer kind {kind!r} in an architecture spec")
    return x


def _check_pooling(pooling: str) -> None:
    if pooling not in ("max", "avg"):
        raise ValueError(f"pooling={pooling!r}: use 'max' or 'avg'")


@MODELS.register()
def lenet(
    input_shape=(28, 28, 1),
    num_classes: int = 10,
    mean: float = 0.0,
    std: float = 1.0,
    activation: str = "tanh",
    pooling: str = "avg",
) -> keras.Model:
    """LeNet-5 (LeCun 1998): Conv6 5x5 -> pool -> Conv16 5x5 -> pool -> 120 -> 84 -> classes; 61,706 params on MNIST."""
    _check_pooling(pooling)
    inputs = keras.Input(input_shape, name="image")
    x = stack(normalize(mean, std)(inputs), LENET, activation, pooling)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name="lenet")


@MODELS.register()
def alexnet(
    input_shape=(227, 227, 3),
    num_classes: int = 1000,
    mean: float = 0.0,
    std: float = 1.0,
    dropout: float = 0.5,
) -> keras.Model:
    """AlexNet (Krizhevsky 2012) on 227x227x3: conv 55-27-27-13-13-13-13-6, FC 4096-4096-classes; 62.4M params."""
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout={dropout}: must be in [0, 1)")
    spec = [(k, dict(o, rate=dropout) if k == "dropout" else o) for k, o in ALEXNET]
    inputs = keras.Input(input_shape, name="image")
    x = stack(normalize(mean, std)(inputs), spec)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name="alexnet")
