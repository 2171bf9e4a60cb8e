"""The "Identify the digits" tuning ladder (an MLP made wider, deeper, regularised, then a CNN).

Each step is a registered builder so configs and `fastcourse explain` can name it; all are
the same two functions over data: `mlp(hidden=[...], dropout)` and the small CNN.
Inputs are raw 0-255 pixels normalised by one mean and std, as in the MNIST ladder.
"""

from __future__ import annotations

from typing import Sequence

import keras
from keras import layers

from fastcourse.models.classic import stack
from fastcourse.models.mnist import normalize
from fastcourse.models.registry import MODELS

# Conv 25 5x5 -> pool -> Conv 25 5x5 -> pool -> Conv 25 4x4 -> Dense 50 (28 -> 24 -> 12 -> 8 -> 4 -> 1).
DIGITS_CNN = [
    ("conv", dict(name="conv1", filters=25, size=5)),
    ("pool", dict(name="pool1", size=2, strides=2)),
    ("conv", dict(name="conv2", filters=25, size=5)),
    ("pool", dict(name="pool2", size=2, strides=2)),
    ("conv", dict(name="conv3", filters=25, size=4)),
    ("flatten", dict(name="flatten")),
    ("dense", dict(name="fc1", units=50)),
]


def mlp(
    input_shape=(28, 28, 1),
    num_classes: int = 10,
    mean: float = 0.0,
    std: float = 1.0,
    hidden: Sequence[int] = (50,),
    dropout: float = 0.0,
    name: str = "mlp",
) -> keras.Model:
    """Flatten -> [Dense(h, relu) (+ Dropout)] for h in `hidden` -> Dense(classes, softmax)."""
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout={dropout}: must be in [0, 1)")
    if not hidden or any(int(h) < 1 for h in hidden):
        raise ValueError(f"hidden={list(hidden)}: give one or more positive layer widths")
    inputs = keras.Input(input_shape, name="image")
    x = layers.Flatten(name="flatten")(normalize(mean, std)(inputs))
    for i, units in enumerate(hidden, start=1):
        x = layers.Dense(int(units), activation="relu", name=f"hidden{i}")(x)
        if dropout:
            x = layers.Dropout(dropout, name=f"hidden{i}_dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


@MODELS.register()
def digits_mlp(
    input_shape=(28, 28, 1),
    num_classes: int = 10,
    mean: float = 0.0,
    std: float = 1.0,
    hidden: list[int] = (50,),
    dropout: float = 0.0,
) -> keras.Model:
    """Digits step 1: 784-50-10 (any widths through `hidden`, e.g. [500] or [50, 50, 50, 50, 50])."""
    return mlp(input_shape, num_classes, mean, std, hidden, dropout, name="digits_mlp")


@MODELS.register()
def digits_wide(input_shape=(28, 28, 1), num_classes: int = 10, mean: float = 0.0, std: float = 1.0) -> keras.Model:
    """Digits step 2, wide: 784-500-10."""
    return mlp(input_shape, num_classes, mean, std, (500,), name="digits_wide")


@MODELS.register()
def digits_deep(input_shape=(28, 28, 1), num_classes: int = 10, mean: float = 0.0, std: float = 1.0) -> keras.Model:
    """Digits step 3, deep: five hidden layers of 50."""
    return mlp(input_shape, num_classes, mean, std, (50,) * 5, name="digits_deep")


@MODELS.register()
def digits_deep_dropout(
    input_shape=(28, 28, 1),
    num_classes: int = 10,
    mean: float = 0.0,
    std: float = 1.0,
    dropout: float = 0.2,
) -> keras.Model:
    """Digits step 4: five hidden layers of 50, each followed by Dropout(0.2)."""
    return mlp(input_shape, num_classes, mean, std, (50,) * 5, dropout, name="digits_deep_dropout")


@MODELS.register()
def digits_deep_wide(
    input_shape=(28, 28, 1),
    num_classes: int = 10,
    mean: float = 0.0,
    std: float = 1.0,
    dropout: float = 0.2,
) -> keras.Model:
    """Digits step 5, deep and wide: five hidden layers of 500 with Dropout(0.2)."""
    return mlp(input_shape, num_classes, mean, std, (500,) * 5, dropout, name="digits_deep_wide")


@MODELS.register()
def digits_cnn(input_shape=(28, 28, 1), num_classes: int = 10, mean: float = 0.0, std: float = 1.0) -> keras.Model:
    """Digits step 6: Conv25 5x5 -> pool -> Conv25 5x5 -> pool -> Conv25 4x4 -> Dense 50 -> Dense classes."""
    inputs = keras.Input(input_shape, name="image")
    x = stack(normalize(mean, std)(inputs), DIGITS_CNN)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name="digits_cnn")
