"""Block helpers in keras-hub's style: one function per block, deterministic layer names.

Names follow keras.applications' VGG16 (`block{i}_conv{j}`, `block{i}_pool`, `fc1`, `fc2`), so
its weight files load by name, and freezing or cutting "at block4" is a name lookup.
"""

from __future__ import annotations

import keras
import tensorflow as tf
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
        x = BatchNorm(name=f"{name}_bn")(x)
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


@keras.saving.register_keras_serializable(package="fastcourse")
class BatchNorm(layers.BatchNormalization):
    """Keras' BatchNormalization, computed by TensorFlow's fused kernel where it can be.

    Keras 3 normalises with separate ops (moments, then scale and shift, all upcast to float32),
    which made the course's batchnorm CNN 3x slower than the same CNN without batchnorm under
    mixed_bfloat16 on a 2-core CPU; TensorFlow's FusedBatchNormV3 (the kernel Keras 2 used with
    `fused=True`) does it in one pass, about 2x faster. Same arguments, same weights, same
    moving-statistics rule (biased batch variance, as Keras), so a model built with it behaves
    like one built with keras.layers.BatchNormalization. The fused path covers the last axis of
    2-D and 4-D inputs without masks or renorm; anything else falls back to Keras' own call.
    """

    def _fusable(self, inputs, mask) -> bool:
        rank = len(inputs.shape)
        return (
            mask is None
            and not self.renorm
            and not getattr(self, "synchronized", False)
            and rank in (2, 4)
            and self.axis in (-1, rank - 1)
            and inputs.shape[-1] is not None
        )

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        channels = inputs.shape[-1]
        x = inputs if len(inputs.shape) == 4 else tf.reshape(inputs, [-1, 1, 1, channels])
        if x.dtype not in (tf.float16, tf.bfloat16, tf.float32):
            x = tf.cast(x, tf.float32)
        gamma = tf.cast(self.gamma, tf.float32) if self.scale else tf.ones([channels], tf.float32)
        beta = tf.cast(self.beta, tf.float32) if self.center else tf.zeros([channels], tf.float32)
        if training and self.trainable:
            y, mean, variance = tf.compat.v1.nn.fused_batch_norm(x, gamma, beta, epsilon=self.epsilon, is_training=True)
            # the kernel returns the Bessel-corrected variance; Keras' moments are biased
            count = tf.cast(tf.size(x) // channels, tf.float32)
            variance = variance * (count - 1.0) / tf.maximum(count, 1.0)
            m = self.momentum
            self.moving_mean.assign(self.moving_mean * m + tf.cast(mean, self.moving_mean.dtype) * (1.0 - m))
            self.moving_variance.assign(
                self.moving_variance * m + tf.cast(variance, self.moving_variance.dtype) * (1.0 - m)
            )
        else:
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(
                x,
                gamma,
                beta,
                mean=tf.cast(self.moving_mean, tf.float32),
                variance=tf.cast(self.moving_variance, tf.float32),
                epsilon=self.epsilon,
                is_training=False,
            )
        if len(inputs.shape) != 4:
            y = tf.reshape(y, tf.shape(inputs))
        return tf.cast(y, self.compute_dtype)
