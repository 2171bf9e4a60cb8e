"""tf.data pipelines for in-memory arrays.

Training: in memory -> shuffle (seeded) -> batch -> repeat -> augment whole batches in a
parallel map -> prefetch. The augmentation draws from a stateless seed made of the run seed
and the global batch index, so a run is reproducible, every epoch sees new augmentations, and a
resumed run (`start_step`) continues the exact same sequence.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

AUTOTUNE = tf.data.AUTOTUNE


def steps_per_epoch(n: int, batch_size: int) -> int:
    return max(1, math.ceil(n / batch_size))


def train_dataset(
    x: np.ndarray, y: np.ndarray, num_classes: int, batch_size: int, seed: int,
    augment: Optional[Callable] = None, start_step: int = 0,
) -> tf.data.Dataset:
    """An endless, shuffled, augmented stream of (images float32 0-255, one-hot labels)."""
    ds = tf.data.Dataset.from_tensor_slices((x, _labels(y, num_classes)))
    ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).repeat()
    if start_step:
        ds = ds.skip(start_step)  # before the augmenting map: skipped batches cost no augmentation
    ds = ds.enumerate(start=start_step)
    seed_t = tf.constant(seed, tf.int64)

    def prepare(step, batch):
        images, labels = batch
        images = tf.cast(images, tf.float32)
        if augment is not None:
            images = augment(images, tf.stack([seed_t, step]))
        return images, labels

    return ds.map(prepare, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def eval_dataset(x: np.ndarray, y: np.ndarray | None, num_classes: int, batch_size: int = 256) -> tf.data.Dataset:
    """Clean (never augmented) images in order, for evaluation and prediction."""
    if y is None:
        ds = tf.data.Dataset.from_tensor_slices(x)
        return ds.batch(batch_size).map(lambda im: tf.cast(im, tf.float32), num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)
    ds = tf.data.Dataset.from_tensor_slices((x, _labels(y, num_classes)))
    return ds.batch(batch_size).map(
        lambda im, lab: (tf.cast(im, tf.float32), lab), num_parallel_calls=AUTOTUNE
    ).prefetch(AUTOTUNE)


def _labels(y: np.ndarray, num_classes: int) -> np.ndarray:
    """One-hot float labels; soft labels (N, C) pass through (pseudo-labelling, smoothing)."""
    y = np.asarray(y)
    if y.ndim == 2:
        return y.astype(np.float32)
    return np.eye(num_classes, dtype=np.float32)[y.astype(np.int64)]
