"""Block helpers in keras-hub's style: one function per block, deterministic layer names.

Names follow keras.applications' VGG16 (`block{i}_conv{j}`, `block{i}_pool`, `fc1`, `fc2`), so
its weight files load by name, and freezing or cutting "at block4" is a name lookup.
"""
from __future__ import annotations

import keras
from keras import layers, ops


def conv_block(x, block: int, repeats: int, filters: int, pool: bool = True):
    """The course's ConvBlock: `repeats` x Conv3x3 relu (padding 1), then MaxPool 2x2 stride 2.

    `padding="same"` equals the course's ZeroPadding2D(1) + valid 3x3 conv, with fewer layers.
    """
    for j in range(1, repeats + 1):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"block{block}_conv{j}")(x)
    if pool:
        x = layers.MaxPooling2D(2, strides=2, name=f"block{block}_pool")(x)
    return x


def fc_block(x, index: int, units: int = 4096, dropout: float = 0.5, batchnorm: bool = False, prefix: str = ""):
    """The course's FCBlock: Dense relu (-> BatchNorm in vgg16bn) -> Dropout, named {prefix}fc{index}."""
    name = f"{prefix}fc{index}"
    x = layers.Dense(units, activation="relu", name=name)(x)
    if batchnorm:
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
    if dropout:
        x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return x


@keras.saving.register_keras_serializable(package="fastcourse")
class Step(layers.Layer):
    """The step activation f(z) = 1 if z >= 0 else 0 (no gradient: for hand-set weights)."""

    def call(self, x):
        return ops.cast(ops.greater_equal(x, 0), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape
