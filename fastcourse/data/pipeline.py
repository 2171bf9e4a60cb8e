"""Image files as tf.data batches: decoding (TensorFlow's decoder, or Pillow for the files the
scan marked), resizing, an optional decoded-image file cache, and the augmentation + prefetch
tail that every Source's batches end with (`augment_and_prefetch`, used by data/sources.py too).

    ds = image_dataset(files, labels, num_classes=2, image_size=(224, 224), batch_size=64,
                       shuffle=True, seed=0, augment=augment.build("dogscats"))
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from fastcourse.data import images as _images
from fastcourse.data.images import files_fingerprint
from fastcourse.errors import UsageError


def augment_and_prefetch(ds, augment: Optional[Callable], seed: int, start_step: int, labelled: bool):
    """The tail of every batch pipeline: `augment(images, seed)` on whole batches, with a
    stateless seed made of `seed` and the global batch index (so a run is reproducible and a
    resumed one continues the sequence), then prefetch."""
    import tensorflow as tf

    if augment is not None:
        seed_t = tf.constant(seed, tf.int64)
        ds = ds.enumerate(start=start_step)
        if labelled:
            ds = ds.map(lambda i, b: (augment(b[0], tf.stack([seed_t, i])), b[1]), num_parallel_calls=tf.data.AUTOTUNE)
        else:
            ds = ds.map(lambda i, x: augment(x, tf.stack([seed_t, i])), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def decode_image(path, image_size, pillow=False):
    """Read one file -> float32 (H, W, 3) RGB in 0-255, resized (bilinear) to `image_size`.

    `pillow` (a bool or a bool tensor, from the scan) sends the file through Pillow: EXIF
    rotation, CMYK, alpha on white, 16-bit gray, WebP/TIFF/BMP/GIF (see data/images.py)."""
    import tensorflow as tf

    def fast():
        # channels=3 turns grayscale and palette into RGB
        raw = tf.io.read_file(path)
        image = tf.io.decode_image(raw, channels=3, expand_animations=False, dtype=tf.uint8)
        return tf.ensure_shape(image, [None, None, 3])

    def slow():
        image = tf.numpy_function(_pillow_decode, [path], tf.uint8, stateful=False)
        return tf.ensure_shape(image, [None, None, 3])

    if isinstance(pillow, (bool, np.bool_)):
        image = slow() if pillow else fast()
    else:
        image = tf.cond(pillow, slow, fast)
    image = tf.image.resize(tf.cast(image, tf.float32), image_size, method="bilinear")
    return tf.clip_by_value(image, 0.0, 255.0)


def _pillow_decode(path: bytes) -> np.ndarray:
    name = path.decode("utf-8")
    try:
        return _images.pillow_rgb(name)
    except (OSError, SyntaxError, ValueError) as exc:  # changed since the scan: named, then dropped
        print(f"fastcourse: skipping {name}: unreadable image: {exc}", file=sys.stderr, flush=True)
        raise


def image_dataset(
    files: Sequence[str],
    labels: Optional[np.ndarray] = None,
    num_classes: Optional[int] = None,
    image_size=(224, 224),
    batch_size: int = 64,
    shuffle: bool = False,
    seed: int = 0,
    augment: Optional[Callable] = None,
    repeat: bool = False,
    start_step: int = 0,
    cache_dir: Optional[str] = None,
    shuffle_buffer: int = 2048,
    pillow: Optional[Sequence[bool] | np.ndarray] = None,
):
    """Batches of (images, one-hot labels), or images alone when `labels` is None.

    With `cache_dir`, images are decoded and resized once: the first pass writes them (as
    uint8) to a tf.data file cache named after the file list, their sizes and mtimes, and the
    image size; later epochs and runs read that instead of decoding JPEGs again. Shuffling
    then happens after the cache, within a buffer of `shuffle_buffer` images.

    Files are decoded in a parallel map, in order (deterministic) unless `shuffle`, which
    reshuffles each epoch from `seed`. `augment(images, seed)` (fastcourse.data.augment) runs on
    whole batches with a stateless seed made of `seed` and the batch index, as the array
    pipeline does. Soft labels (N, C) pass through. Elements that fail to decode are dropped.

    `pillow` marks the files to decode with Pillow (FolderSplit.pillow, from the folder's
    scan); without it, every file's header is read here to decide (a quick threaded pass).
    """
    import tensorflow as tf

    from fastcourse.data.base import onehot as _labels

    autotune = tf.data.AUTOTUNE
    size = tuple(int(s) for s in image_size)
    if pillow is None:
        pillow = [st.pillow or st.problem is not None for st in _images.scan(files, "fast")]
    if len(pillow) != len(files):
        raise UsageError(f"image_dataset: {len(pillow)} pillow flags for {len(files)} files")
    items = (list(files), np.asarray(pillow, bool).reshape(len(files)))
    if labels is None:
        ds = tf.data.Dataset.from_tensor_slices(items)
    else:
        if num_classes is None:
            raise UsageError("image_dataset: num_classes is needed with labels")
        ds = tf.data.Dataset.from_tensor_slices((items, _labels(labels, num_classes)))
    if cache_dir:
        ds = _cached_decode(ds, files, size, cache_dir, labels is not None)
        if shuffle:
            ds = ds.shuffle(min(len(files), shuffle_buffer), seed=seed, reshuffle_each_iteration=True)
    else:
        if shuffle:
            ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
        if labels is None:
            ds = ds.map(lambda f, p: decode_image(f, size, p), num_parallel_calls=autotune, deterministic=True)
        else:
            ds = ds.map(
                lambda x, y: (decode_image(x[0], size, x[1]), y), num_parallel_calls=autotune, deterministic=True
            )
        ds = ds.ignore_errors(log_warning=True)  # a file that changed since the check: drop, not crash
    ds = ds.batch(batch_size)
    if repeat:
        ds = ds.repeat()
    if start_step:
        ds = ds.skip(start_step)
    return augment_and_prefetch(ds, augment, seed, start_step, labels is not None)


def _cached_decode(ds, files: Sequence[str], size: tuple[int, int], cache_dir: str, labelled: bool):
    """Decode -> uint8 -> tf.data file cache -> float32; the cache is named by the files'
    fingerprint (paths, sizes, mtimes and the image size), so it changes with the input."""
    import tensorflow as tf

    # sha256 (fastcourse 0.1.0 named these caches by sha1): a cache under an old name is not found, and
    # the images are decoded once more into a cache under the new name
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    path = str(Path(cache_dir) / f"decoded-{size[0]}x{size[1]}-{files_fingerprint(files, size)[:16]}")

    def to_uint8(path, pillow):
        return tf.cast(tf.round(decode_image(path, size, pillow)), tf.uint8)

    autotune = tf.data.AUTOTUNE
    if labelled:
        ds = ds.map(lambda x, y: (to_uint8(*x), y), num_parallel_calls=autotune, deterministic=True)
    else:
        ds = ds.map(to_uint8, num_parallel_calls=autotune, deterministic=True)
    ds = ds.ignore_errors(log_warning=True).cache(path)
    if labelled:
        return ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=autotune)
    return ds.map(lambda x: tf.cast(x, tf.float32), num_parallel_calls=autotune)
