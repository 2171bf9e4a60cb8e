"""The MNIST ladder of lesson 3 (mnist.ipynb), channels-last.

Every model starts by normalising its raw 0-255 input with ONE global mean and std of the
training pixels, in a real Normalization layer (no Lambda), so saved models reload in safe
mode. The CNN family is one function over an architecture spec; the registered steps are
variants of it.
"""

from __future__ import annotations

import keras
from keras import layers

from fastcourse.models.blocks import BatchNorm
from fastcourse.models.registry import MODELS


def normalize(mean: float, std: float) -> layers.Layer:
    return layers.Normalization(mean=float(mean), variance=float(std) ** 2, axis=None, name="normalize")


@MODELS.register()
def linear(input_shape=(28, 28, 1), num_classes: int = 10, mean: float = 0.0, std: float = 1.0) -> keras.Model:
    """Ladder step 1: normalise -> Flatten -> Dense(classes, softmax). Course: 0.9240."""
    inputs = keras.Input(input_shape, name="image")
    x = layers.Flatten(name="flatten")(normalize(mean, std)(inputs))
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name="linear")


@MODELS.register()
def hidden(
    input_shape=(28, 28, 1),
    num_classes: int = 10,
    mean: float = 0.0,
    std: float = 1.0,
    units: int = 512,
) -> keras.Model:
    """Ladder step 2: one hidden Dense(512, relu) layer (the course's softmax there was a slip). Course: 0.9397."""
    inputs = keras.Input(input_shape, name="image")
    x = layers.Flatten(name="flatten")(normalize(mean, std)(inputs))
    x = layers.Dense(units, activation="relu", name="hidden")(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name="hidden")


def ladder_cnn(
    input_shape=(28, 28, 1),
    num_classes: int = 10,
    mean: float = 0.0,
    std: float = 1.0,
    filters: tuple[int, ...] = (32, 64),
    dense: int = 512,
    batchnorm: bool = False,
    dropout: float = 0.0,
    name: str = "cnn",
) -> keras.Model:
    """[Conv(f) x2 -> MaxPool] per entry of `filters` -> Flatten -> Dense -> Dense(classes).

    With `batchnorm`, BN sits where the course put it: after the first conv of the first block,
    after each block's pool but the last, after the first conv of later blocks, after Flatten
    and after the hidden Dense. `dropout` goes before the last Dense.
    """
    inputs = keras.Input(input_shape, name="image")
    x = normalize(mean, std)(inputs)
    for b, f in enumerate(filters, start=1):
        x = layers.Conv2D(f, 3, activation="relu", name=f"block{b}_conv1")(x)
        if batchnorm:
            x = BatchNorm(name=f"block{b}_bn1")(x)
        x = layers.Conv2D(f, 3, activation="relu", name=f"block{b}_conv2")(x)
        x = layers.MaxPooling2D(name=f"block{b}_pool")(x)
        if batchnorm and b < len(filters):
            x = BatchNorm(name=f"block{b}_bn2")(x)
    x = layers.Flatten(name="flatten")(x)
    if batchnorm:
        x = BatchNorm(name="flatten_bn")(x)
    x = layers.Dense(dense, activation="relu", name="fc1")(x)
    if batchnorm:
        x = BatchNorm(name="fc1_bn")(x)
    if dropout:
        x = layers.Dropout(dropout, name="fc1_dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


@MODELS.register()
def cnn(
    input_shape=(28, 28, 1),
    num_classes: int = 10,
    mean: float = 0.0,
    std: float = 1.0,
    filters: tuple[int, ...] = (32, 64),
    dense: int = 512,
    batchnorm: bool = False,
    dropout: float = 0.0,
) -> keras.Model:
    """Ladder step 3 (and 4 with augmentation): Conv32x2-Pool-Conv64x2-Pool-Dense512. Course: 0.9926.

    `batchnorm` and `dropout` switch on steps 5 and 6 one at a time (`cnn_bn`, `cnn_bn_dropout` are
    them together), so a sweep can cross them: configs/sweeps/overfitting.yaml."""
    return ladder_cnn(input_shape, num_classes, mean, std, filters, dense, batchnorm, dropout, name="cnn")


@MODELS.register()
def cnn_bn(
    input_shape=(28, 28, 1),
    num_classes: int = 10,
    mean: float = 0.0,
    std: float = 1.0,
    filters: tuple[int, ...] = (32, 64),
    dense: int = 512,
) -> keras.Model:
    """Ladder step 5: the CNN with batchnorm. Course: 0.9945."""
    return ladder_cnn(input_shape, num_classes, mean, std, filters, dense, batchnorm=True, name="cnn_bn")


@MODELS.register()
def cnn_bn_dropout(
    input_shape=(28, 28, 1),
    num_classes: int = 10,
    mean: float = 0.0,
    std: float = 1.0,
    filters: tuple[int, ...] = (32, 64),
    dense: int = 512,
    dropout: float = 0.5,
) -> keras.Model:
    """Ladder step 6: batchnorm + Dropout(0.5) before the last Dense. Course: 0.9945."""
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout={dropout}: must be in [0, 1)")
    return ladder_cnn(
        input_shape, num_classes, mean, std, filters, dense, batchnorm=True, dropout=dropout, name="cnn_bn_dropout"
    )
