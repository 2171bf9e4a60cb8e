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
    resumed one continues the sequence), then prefetch. A pipeline that mixes images and labels
    (fastcourse.data.mix.Mixed) gets the labels too: `augment.with_labels(images, labels, seed)`."""
    import tensorflow as tf

    if augment is not None:
        seed_t = tf.constant(seed, tf.int64)
        ds = ds.enumerate(start=start_step)
        if labelled and getattr(augment, "mixes_labels", False):
            ds = ds.map(
                lambda i, b: augment.with_labels(b[0], b[1], tf.stack([seed_t, i])), num_parallel_calls=tf.data.AUTOTUNE
            )
        elif labelled:
            ds = ds.map(lambda i, b: (augment(b[0], tf.stack([seed_t, i])), b[1]), num_parallel_calls=tf.data.AUTOTUNE)
        else:
            ds = ds.map(lambda i, x: augment(x, tf.stack([seed_t, i])), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def to_channels(images, channels: int):
    """RGB images (..., 3) as a model with `channels` takes them: 1 is the ITU-R 601-2 luma
    (tf.image.rgb_to_grayscale: 0.2989 R + 0.587 G + 0.114 B, Pillow's convert("L") up to its
    rounding); grey (..., 1) to 3 repeats the channel, as decoding a grey file as RGB does."""
    import tensorflow as tf

    have = int(images.shape[-1])
    if have == channels:
        return images
    if (have, channels) == (3, 1):
        return tf.image.rgb_to_grayscale(images)
    if (have, channels) == (1, 3):
        return tf.image.grayscale_to_rgb(images)
    raise UsageError(f"images with {have} channels for a model that takes {channels}; give grey or RGB images")


def conform(x: np.ndarray, shape: Sequence[int]) -> tuple[np.ndarray, list[str]]:
    """Images as an array, (N, H, W, C) 0-255, as a model of input `shape` (h, w, c) takes them,
    the way the folder pipeline reads files: RGBA composited on white, RGB to grey or grey to RGB
    (to_channels), another size resized (bilinear, tf.image.resize, as decode_image). Returns the
    images and one note per conversion made (for the caller to say once)."""
    import tensorflow as tf

    h, w, c = (int(d) for d in shape)
    x = np.asarray(x, np.float32)
    notes = []
    if x.shape[-1] == 4:  # as images.pillow_rgb: alpha composited on white
        alpha = x[..., 3:] / 255.0
        x = x[..., :3] * alpha + 255.0 * (1.0 - alpha)
        notes.append("transparent images composited on white")
    if x.shape[-1] != c:
        notes.append("colour images converted to grey" if c == 1 else "grey images converted to RGB")
        x = np.asarray(to_channels(tf.constant(x), c))
    if tuple(x.shape[1:3]) != (h, w):
        notes.append(f"images of {x.shape[1]}x{x.shape[2]} resized to {h}x{w} (bilinear)")
        x = np.clip(np.asarray(tf.image.resize(x, (h, w), method="bilinear")), 0.0, 255.0)
    return x, notes


def decode_image(path, image_size, pillow=False, channels: int = 3):
    """Read one file -> float32 (H, W, channels) in 0-255, resized (bilinear) to `image_size`:
    RGB, or grey (to_channels) for a model that takes one channel.

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
    return to_channels(tf.clip_by_value(image, 0.0, 255.0), channels)


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
    channels: int = 3,
):
    """Batches of (images, one-hot labels), or images alone when `labels` is None; `channels`
    3 (RGB) or 1 (grey, for a model trained on grey images: to_channels).

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
        ds = _cached_decode(ds, files, size, cache_dir, labels is not None, channels)
        if shuffle:
            ds = ds.shuffle(min(len(files), shuffle_buffer), seed=seed, reshuffle_each_iteration=True)
    else:
        if shuffle:
            ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
        if labels is None:
            ds = ds.map(
                lambda f, p: decode_image(f, size, p, channels), num_parallel_calls=autotune, deterministic=True
            )
        else:
            ds = ds.map(
                lambda x, y: (decode_image(x[0], size, x[1], channels), y),
                num_parallel_calls=autotune,
                deterministic=True,
            )
        ds = ds.ignore_errors(log_warning=True)  # a file that changed since the check: drop, not crash
    ds = ds.batch(batch_size)
    if repeat:
        ds = ds.repeat()
    if start_step:
        ds = ds.skip(start_step)
    return augment_and_prefetch(ds, augment, seed, start_step, labels is not None)


def _cached_decode(ds, files: Sequence[str], size: tuple[int, int], cache_dir: str, labelled: bool, channels: int = 3):
    """Decode -> uint8 -> tf.data file cache -> float32; the cache is named by the files'
    fingerprint (paths, sizes, mtimes and the image size), so it changes with the input."""
    import tensorflow as tf

    # sha256 (fastcourse 0.1.0 named these caches by sha1): a cache under an old name is not found, and
    # the images are decoded once more into a cache under the new name
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    grey = "-grey" if channels == 1 else ""  # RGB keeps the names caches already have
    path = str(Path(cache_dir) / f"decoded-{size[0]}x{size[1]}{grey}-{files_fingerprint(files, size)[:16]}")

    def to_uint8(path, pillow):
        return tf.cast(tf.round(decode_image(path, size, pillow, channels)), tf.uint8)

    autotune = tf.data.AUTOTUNE
    if labelled:
        ds = ds.map(lambda x, y: (to_uint8(*x), y), num_parallel_calls=autotune, deterministic=True)
    else:
        ds = ds.map(to_uint8, num_parallel_calls=autotune, deterministic=True)
    ds = ds.ignore_errors(log_warning=True).cache(path)
    if labelled:
        return ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=autotune)
    return ds.map(lambda x: tf.cast(x, tf.float32), num_parallel_calls=autotune)
