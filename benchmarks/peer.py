"""The peer: the course's recipe in plain Keras 3 (the batchnorm + dropout CNN with Keras' own
BatchNormalization, `model.fit` at batch 64 with Adam 1e-3, fed by the legacy ImageDataGenerator
with the course's augmentation)."""

from __future__ import annotations

import time
from typing import Optional

import keras
import numpy as np

from fastcourse.bench.recipe import SteadyTimer, course_model, run_fastcourse
from fastcourse.data import ArrayDataset

COURSE_AUG = dict(rotation=8.0, shift=0.08, shear=0.3, zoom=0.08)


def plain_keras_model(data: ArrayDataset) -> keras.Model:
    """fastcourse's course CNN with its fused BatchNorm swapped for keras.layers.BatchNormalization
    (same config), so that the peer is Keras as users have it."""
    from fastcourse.models.blocks import BatchNorm

    def keras_layer(layer):
        cls = keras.layers.BatchNormalization if isinstance(layer, BatchNorm) else layer.__class__
        return cls.from_config(layer.get_config())

    return keras.models.clone_model(course_model(data), clone_function=keras_layer)


def run_peer(data: ArrayDataset, epochs: int, seed: int, callbacks: Optional[list] = None):
    """The course recipe in plain Keras 3: legacy ImageDataGenerator -> model.fit, batch 64."""
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    keras.utils.set_random_seed(seed)
    gen = ImageDataGenerator(
        rotation_range=COURSE_AUG["rotation"],
        width_shift_range=COURSE_AUG["shift"],
        height_shift_range=COURSE_AUG["shift"],
        zoom_range=COURSE_AUG["zoom"],
        shear_range=float(np.degrees(COURSE_AUG["shear"])),  # the legacy generator takes degrees
    )
    y = np.eye(data.num_classes, dtype=np.float32)[data.y_train]
    batches = gen.flow(data.x_train.astype(np.float32), y, batch_size=64, seed=seed)
    model = plain_keras_model(data)
    model.compile(keras.optimizers.Adam(1e-3), "categorical_crossentropy", metrics=["accuracy"])
    timer = SteadyTimer(64)
    start = time.perf_counter()
    model.fit(batches, steps_per_epoch=len(batches), epochs=epochs, verbose=0, callbacks=[timer, *(callbacks or [])])
    return model, timer.images_per_second(), time.perf_counter() - start


def warm_up(data: ArrayDataset, seed: int) -> None:
    """Pay TensorFlow's one-time start-up costs (kernels, thread pools) before any timing, so
    that no contender carries them. (The peer's slow first epoch is not that: it stays at about
    84 s wall against 42 s of steady stepping with or without this; the legacy generator's fit
    path spends the rest outside the steady steps.)"""
    small = data.limit(1024, 256)
    run_peer(small, 1, seed)
    run_fastcourse(small, 1, seed)
