"""Dense heads for conv features (lesson 3): what trains on precomputed VGG features and is then
put back on the conv part (fastcourse.models.surgery.attach_head)."""

from __future__ import annotations

import keras
from keras import layers

from fastcourse.models.blocks import BatchNorm, fc_block
from fastcourse.models.registry import MODELS


@MODELS.register()
def dense_head(
    input_shape=(14, 14, 512),
    num_classes: int = 2,
    units: int = 4096,
    depth: int = 2,
    dropout: float = 0.5,
    batchnorm: bool = False,
    pool: bool = True,
) -> keras.Model:
    """Dense head for conv features: [MaxPool] -> Flatten -> depth x FCBlock(units, BN?, dropout p) -> softmax.

    batchnorm=True with dropout 0.6 is the lesson's batchnorm head; dropout 0 its first head.
    Features smaller than 2x2 are not pooled.
    """
    inputs = keras.Input(tuple(input_shape), name="features")
    # features of 1 pixel (a 32-pixel image through a 32x-downsampling backbone) have nothing to pool
    pool = pool and len(input_shape) == 3 and min(input_shape[:2]) >= 2
    x = layers.MaxPooling2D(2, strides=2, name="head_pool")(inputs) if pool else inputs
    x = layers.Flatten(name="head_flatten")(x)
    if batchnorm:
        x = BatchNorm(name="head_flatten_bn")(x)
    for i in range(1, depth + 1):
        x = fc_block(x, i, units, dropout, batchnorm, prefix="head_")  # apart from VGG's own fc1/fc2
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="head_predictions")(x)
    return keras.Model(inputs, outputs, name="head")
