"""Sources: what the ONE trainer reads, whatever the data is.

A Source knows how many examples it has, their labels and the classes, and makes tf.data
pipelines of batches from them:

- `ArraySource`: images in memory (MNIST, Fashion-MNIST, the bundled sample);
- `FolderSource`: image files decoded in a parallel map (dogs vs cats, Statefarm, your photos);
- `FeatureSource`: precomputed features read from .npy files on disk with positioned reads, a
  batch at a time, never loaded whole (fastcourse.data.features writes them).

Training batches are an endless, reshuffled (from `seed`) stream; `start_step` continues it
exactly where a killed run stopped. Evaluation batches are clean and in order.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from fastcourse.data.base import onehot
from fastcourse.errors import RunError, UsageError


def steps_per_epoch(n: int, batch_size: int) -> int:
    return max(1, math.ceil(n / batch_size))


class Source:
    """Base class. Subclasses set `num_classes`, `labels` and implement `_batched` (or `batches`)."""

    num_classes: int
    labels: Optional[np.ndarray]
    kind = "source"

    def __len__(self) -> int:
        raise NotImplementedError

    @property
    def input_shape(self) -> tuple[int, ...]:
        raise NotImplementedError

    def _batched(self, batch_size: int, with_labels: bool, shuffle: bool, seed: int, repeat: bool, start_step: int):
        """Batches of float32 images (and one-hot labels) before augmentation."""
        raise NotImplementedError

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        augment: Optional[Callable] = None,
        repeat: bool = False,
        start_step: int = 0,
        labels: bool = True,
    ):
        """tf.data of (images float32, one-hot labels), or images alone (`labels=False` or none).

        `augment(images, seed)` runs on whole batches with a stateless seed made of `seed` and the
        global batch index, so a run is reproducible and a resumed one continues the sequence."""
        from fastcourse.data.pipeline import augment_and_prefetch

        with_labels = labels and self.labels is not None
        ds = self._batched(batch_size, with_labels, shuffle, seed, repeat, start_step)
        return augment_and_prefetch(ds, augment, seed, start_step, with_labels)

    def take(self, n: int) -> "Source":
        """The first `n` examples (quick runs)."""
        raise NotImplementedError

    def fingerprint(self) -> str:
        """A hash of what the examples are, for caches keyed by data."""
        raise NotImplementedError


@dataclass
class ArraySource(Source):
    """uint8 (or float 0-255) images in memory, with integer (or soft) labels or none."""

    x: np.ndarray
    labels: Optional[np.ndarray]
    num_classes: int
    kind = "arrays"

    def __len__(self) -> int:
        return len(self.x)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.x.shape[1:])

    def _batched(self, batch_size, with_labels, shuffle, seed, repeat, start_step):
        import tensorflow as tf

        # shuffle and batch the uint8 arrays, cast whole batches: cheaper than per example
        ds = (
            tf.data.Dataset.from_tensor_slices((self.x, onehot(self.labels, self.num_classes)))
            if with_labels and self.labels is not None
            else tf.data.Dataset.from_tensor_slices(self.x)
        )
        if shuffle:
            ds = ds.shuffle(len(self), seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size)
        if repeat:
            ds = ds.repeat()
        if start_step:
            ds = ds.skip(start_step)
        if with_labels:
            return ds.map(lambda im, y: (tf.cast(im, tf.float32), y), num_parallel_calls=tf.data.AUTOTUNE)
        return ds.map(lambda im: tf.cast(im, tf.float32), num_parallel_calls=tf.data.AUTOTUNE)

    def fingerprint(self) -> str:
        """What identifies these images for a features cache: a hash of the pixels."""
        import hashlib

        return hashlib.sha256(np.ascontiguousarray(self.x).tobytes()).hexdigest()

    def take(self, n: int) -> "ArraySource":
        return ArraySource(self.x[:n], None if self.labels is None else self.labels[:n], self.num_classes)


@dataclass
class FolderSource(Source):
    """Image files (absolute paths) decoded and resized to `image_size` in a parallel map."""

    files: Sequence[str]
    labels: Optional[np.ndarray]
    num_classes: int
    image_size: tuple[int, int]
    cache_dir: Optional[str] = None
    pillow: Optional[np.ndarray] = None  # per file: decode with Pillow (EXIF, CMYK, WebP...; the scan says)
    channels: int = 3  # 1: read as grey, for a model trained on grey images (pipeline.to_channels)
    kind = "folder"

    def __len__(self) -> int:
        return len(self.files)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (*self.image_size, self.channels)

    def batches(self, batch_size, *, shuffle=False, seed=0, augment=None, repeat=False, start_step=0, labels=True):
        from fastcourse.data.pipeline import image_dataset

        return image_dataset(
            self.files,
            self.labels if labels else None,
            self.num_classes,
            self.image_size,
            batch_size,
            shuffle=shuffle,
            seed=seed,
            augment=augment,
            repeat=repeat,
            start_step=start_step,
            cache_dir=self.cache_dir,
            pillow=self.pillow,
            channels=self.channels,
        )

    def fingerprint(self) -> str:
        """What identifies these images for a features cache: paths, sizes, mtimes, image size."""
        from fastcourse.data.images import files_fingerprint

        return files_fingerprint(self.files, self.image_size)

    def take(self, n: int) -> "FolderSource":
        return FolderSource(
            list(self.files[:n]),
            None if self.labels is None else self.labels[:n],
            self.num_classes,
            self.image_size,
            self.cache_dir,
            None if self.pillow is None else self.pillow[:n],
            self.channels,
        )


@dataclass
class FeaturePart:
    """Rows of one features file (.npy, read with positioned reads) with their labels (ints or soft)."""

    path: str | Path
    labels: Optional[np.ndarray] = None
    rows: Optional[np.ndarray] = None  # a subset of the file's rows, in this order; None = all


class _NpyRows:
    """Rows of a .npy file read with positioned reads (os.pread), not a memory map: mapped pages
    count in the process's resident memory and grow it with the file, while reads leave the data
    in the OS page cache only."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        with open(self.path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version not in ((1, 0), (2, 0)):
                raise UsageError(f"{self.path}: .npy format {version}; features files are written as 1.0")
            header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = header(f)
            self.offset = f.tell()
        if fortran:
            raise UsageError(f"{self.path}: a Fortran-ordered array; features files are written C-ordered")
        self.shape, self.dtype = tuple(shape), np.dtype(dtype)
        self.row_shape = self.shape[1:]
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        self.fd = os.open(self.path, os.O_RDONLY)

    def __len__(self) -> int:
        return self.shape[0]

    def read(self, rows: np.ndarray, out: np.ndarray) -> None:
        """Sorted `rows` into `out` (float32); runs of consecutive rows are one read each."""
        i = 0
        while i < len(rows):
            j = i + 1
            while j < len(rows) and rows[j] == rows[j - 1] + 1:
                j += 1
            size = (j - i) * self.row_bytes
            data = os.pread(self.fd, size, self.offset + int(rows[i]) * self.row_bytes)
            if len(data) != size:
                raise RunError(
                    f"{self.path}: the features file is shorter than its header says; delete it to recompute"
                )
            out[i:j] = np.frombuffer(data, self.dtype).reshape(j - i, *self.row_shape)
            i = j

    def close(self) -> None:
        fd, self.fd = self.fd, -1  # -1: closed (close may run twice: by hand, then from __del__)
        if fd >= 0:
            os.close(fd)

    __del__ = close


class FeatureSource(Source):
    """Precomputed features in .npy files, read batch by batch, never whole.

    Parts are concatenated: the clean pass, each augmented pass (same images, same labels), and
    pseudo-labelled rows of the test images (soft labels). Shuffling draws row indices; rows are
    read from disk inside tf.data with positioned reads, so resident memory stays at a few
    batches whatever the files' sizes. Files may hold float16 (half the disk); batches are float32."""

    kind = "features"

    def __init__(self, parts: Sequence[FeaturePart], num_classes: int):
        if not parts:
            raise UsageError("a FeatureSource needs at least one features file")
        self.parts, self.num_classes = list(parts), int(num_classes)
        self._readers = [_NpyRows(p.path) for p in self.parts]
        shapes = {r.row_shape for r in self._readers}
        if len(shapes) != 1:
            raise UsageError(f"features files of different shapes: {sorted(shapes)}")
        self._rows = [
            np.arange(len(r)) if p.rows is None else np.asarray(p.rows, np.int64)
            for p, r in zip(self.parts, self._readers)
        ]
        self._offsets = np.cumsum([0] + [len(r) for r in self._rows])
        labelled = [p.labels is not None for p in self.parts]
        if any(labelled) and not all(labelled):
            raise UsageError("either every features part has labels or none has")
        self.labels = None
        if all(labelled):
            part_labels = [p.labels for p in self.parts if p.labels is not None]
            for p, y, r in zip(self.parts, part_labels, self._rows):
                if len(y) != len(r):
                    raise UsageError(f"{p.path}: {len(y)} labels for {len(r)} feature rows")
            self.labels = np.concatenate([onehot(y, self.num_classes) for y in part_labels])

    def __len__(self) -> int:
        return int(self._offsets[-1])

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self._readers[0].row_shape)

    def _gather(self, index: np.ndarray) -> np.ndarray:
        index = np.asarray(index, np.int64)
        out = np.empty((len(index), *self.input_shape), np.float32)
        part = np.searchsorted(self._offsets, index, side="right") - 1
        for k in np.unique(part):
            sel = np.flatnonzero(part == k)
            rows = self._rows[k][index[sel] - self._offsets[k]]
            order = np.argsort(rows, kind="stable")  # reads in file order
            block = np.empty((len(rows), *self.input_shape), np.float32)
            self._readers[k].read(rows[order], block)
            out[sel[order]] = block
        return out

    def _batched(self, batch_size, with_labels, shuffle, seed, repeat, start_step):
        import tensorflow as tf

        n = len(self)
        ds = tf.data.Dataset.range(n)
        if shuffle:
            ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size)
        if repeat:
            ds = ds.repeat()
        if start_step:
            ds = ds.skip(start_step)
        shape = [None, *self.input_shape]
        labels = tf.constant(self.labels) if with_labels else None

        def load(index):
            x = tf.numpy_function(self._gather, [index], tf.float32, stateful=False)
            x.set_shape(shape)
            return (x, tf.gather(labels, index)) if with_labels else x

        return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)

    def take(self, n: int) -> "FeatureSource":
        first = self.parts[0]
        rows = self._rows[0][:n]
        return FeatureSource(
            [FeaturePart(first.path, None if first.labels is None else first.labels[:n], rows)], self.num_classes
        )
