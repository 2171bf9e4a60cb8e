"""A run's model over image batches: files scanned and decoded exactly as training decoded them
(a fastcourse.data.sources.FolderSource, whose per-file decoder the folder scan
fastcourse.data.images.scan chooses), with the model's channels, and optional test-time
augmentation (TTA).

TTA averages the probabilities of the clean images and of `tta` augmented copies of them,
each copy drawn from a stateless seed (the seed, the batch, the pass), so a rerun with the
same seed and batch size gives the same numbers. `tta="flip"` averages each image's and its
mirror image's (clothes and photos; never digits, where a mirrored 2 is no 2).
"""

from __future__ import annotations

import math
import sys
from typing import Callable, Optional, Sequence, Union

import numpy as np

from fastcourse.errors import DataError, UsageError
from fastcourse.results.saved_run import Run


def scanned(
    paths: Sequence[str], on_error: str = "raise", shown: Sequence[str] | None = None
) -> tuple[list[int], np.ndarray]:
    """Scan the files as a folder dataset scans them (fastcourse.data.images.scan): return the
    indices of the usable ones and, for those, whether Pillow decodes them (EXIF, CMYK, WebP...).

    A bad file stops with a DataError naming it, or with on_error="skip" is left out (named on
    stderr). `shown` are the names to print (default the paths)."""
    from fastcourse.data.images import scan

    if on_error not in ("raise", "skip"):
        raise UsageError(f"on_error={on_error!r}: use 'raise' or 'skip'")
    shown = list(shown) if shown is not None else list(paths)
    statuses = scan(list(paths), "fast")
    bad = [i for i, st in enumerate(statuses) if st.problem]
    if bad and on_error == "raise":
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise DataError(
            f"{paths[bad[0]]}: {statuses[bad[0]].problem[1]}{more}; remove or replace it, or pass --on-error skip"
        )
    for i in bad:
        print(f"fastcourse: skipping {paths[i]}: {statuses[i].problem[1]}", file=sys.stderr, flush=True)
    keep = [i for i, st in enumerate(statuses) if not st.problem]
    if not keep:
        raise DataError(f"none of the {len(paths)} images is readable (first: {paths[0]})")
    return keep, np.asarray([statuses[i].pillow for i in keep], bool)


def folder_source(
    run: Run, paths: Sequence[str], labels: Optional[np.ndarray] = None, pillow: Optional[np.ndarray] = None
):
    """A FolderSource over `paths` (absolute) at the model's image size: training's decoding."""
    from fastcourse.data.sources import FolderSource

    height, width, _ = run.image_shape
    return FolderSource(list(paths), labels, len(run.class_names), (height, width), None, pillow)


def model_batches(run: Run, source, batch_size: int):
    """The source's images in batches, with the channels the model takes (float32 0-255).

    Image files decode to RGB; a one-channel model (the MNIST ladder) gets them as gray
    (ITU-R 601 luma, as Pillow's convert("L")), which keeps a gray image's values."""
    import tensorflow as tf

    ds = source.batches(batch_size, labels=False)
    want, have = run.image_shape[2], int(source.input_shape[-1])
    if want == have:
        return ds
    if want == 1 and have == 3:
        weights = tf.constant([0.299, 0.587, 0.114], tf.float32)
        return ds.map(lambda x: tf.reduce_sum(x * weights, axis=-1, keepdims=True))
    raise UsageError(f"the model takes {want}-channel images; these have {have} channels")


def model_images(run: Run, paths: Sequence[str]) -> np.ndarray:
    """`paths` as the model sees them (decoded, resized, the model's channels)."""
    keep, pillow = scanned(paths)
    return np.concatenate(
        [np.asarray(b) for b in model_batches(run, folder_source(run, [paths[i] for i in keep], None, pillow), 32)]
    )


TTA_FLIP = "flip"  # tta="flip": the clean image and its mirror image, no random draw
Tta = Union[int, str]


def check_tta(tta: Tta) -> None:
    """A UsageError unless `tta` is 0, a positive number of augmented passes, or "flip"."""
    if tta == TTA_FLIP:
        return
    if isinstance(tta, bool) or not isinstance(tta, (int, np.integer)) or tta < 0:
        raise UsageError(
            f"--tta {tta}: give 0 (no augmentation), a positive number of augmented passes, "
            f"or {TTA_FLIP} (each image and its mirror image)"
        )


def needs_augmenter(tta: Tta) -> bool:
    """Whether `tta` draws copies from an augmentation pipeline ("flip" brings its own)."""
    return bool(tta) and tta != TTA_FLIP


def predict_images(
    model,
    batches,
    augmenter: Optional[Callable] = None,
    tta: Tta = 0,
    seed: int = 0,
    total: Optional[int] = None,
    progress: bool = True,
) -> np.ndarray:
    """Probabilities (N, classes) for a dataset of image batches; with `tta`, the mean over the
    clean batch and `tta` augmented copies of it (augmented in tf.data, seeded per batch/pass).

    The model runs in inference mode (batchnorm uses its moving statistics, which the trainer
    recalibrated before saving): these are the model's real outputs."""
    import tensorflow as tf
    from tqdm.auto import tqdm

    check_tta(tta)
    if tta == TTA_FLIP:
        from fastcourse.data.augment import mirror_images

        augmenter, tta = mirror_images, 1
    if tta and augmenter is None:
        raise UsageError(
            "test-time augmentation needs an augmentation, but the run has `augment: none`; "
            "pass --augment NAME (e.g. dogscats)"
        )
    if tta:
        seed_t = tf.constant(int(seed), tf.int64)

        def copies(step, images):
            passes = [images] + [augmenter(images, tf.stack([seed_t, step * tta + k])) for k in range(tta)]
            return tf.stack(passes)  # (tta+1, B, H, W, C), augmented in parallel with the model's work

        batches = batches.enumerate().map(copies, num_parallel_calls=tf.data.AUTOTUNE)
    out = []
    for images in tqdm(batches, total=total, desc="predict", unit="batch", disable=not progress, leave=False):
        if tta:  # one model call per pass: the model's batch stays `batch_size` (VGG memory)
            probs = np.mean([np.asarray(model.predict_on_batch(p), np.float64) for p in images], axis=0)
        else:
            probs = np.asarray(model.predict_on_batch(images), np.float64)
        out.append(probs)
    classes = int(model.output_shape[-1])
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, classes), np.float32)


def predict_source(
    run: Run,
    source,
    tta: Tta = 0,
    batch_size: int = 32,
    augment: str | None = None,
    seed: int | None = None,
    progress: bool = True,
) -> np.ndarray:
    """Probabilities for every example of a Source (arrays or image files), in order.

    `seed` (default the run's) seeds the TTA copies; `augment` names another pipeline for TTA
    than the run's own. Raises DataError when a file does not decode (named when it can be)."""
    if batch_size < 1:
        raise UsageError(f"batch_size={batch_size}: must be at least 1")
    augmenter = run.augmenter(augment) if needs_augmenter(tta) else None
    probs = predict_images(
        run.model,
        model_batches(run, source, batch_size),
        augmenter,
        tta,
        run.seed if seed is None else int(seed),
        total=math.ceil(len(source) / batch_size),
        progress=progress,
    )
    if len(probs) != len(source):  # the pipeline drops a file that fails to decode: find it
        bad = _undecodable(run, source)
        raise DataError(f"{bad}: cannot decode this image; remove or replace it and predict again")
    return probs


def _undecodable(run: Run, source) -> str:
    files = getattr(source, "files", None)
    if not files:
        return "one of the images"
    from fastcourse.data.sources import FolderSource

    for i, f in enumerate(files):
        one = FolderSource(
            [f],
            None,
            source.num_classes,
            source.image_size,
            None,
            None if source.pillow is None else source.pillow[i : i + 1],
        )
        if sum(int(b.shape[0]) for b in one.batches(1, labels=False)) == 0:
            return str(f)
    return f"one of {files[0]} ... {files[-1]}"
