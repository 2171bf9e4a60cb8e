"""Precomputed features (lesson 3): run the frozen conv part once, train heads on the result.

Each pass is one .npy file on disk: pass 0 holds the clean images' features, passes 1..N
augmented copies (Statefarm's trick). Files are filled chunk by chunk (data/chunks.py): an
interrupted pass resumes at the chunk where it stopped, and a file appears under its final
name only when complete. Training reads them through `FeatureSource` with positioned reads, a
batch at a time: nothing is copied whole into RAM. `dtype="float16"` halves the disk they take.

The cache key is built from values, never from object reprs: the images' fingerprint (file
paths, sizes and mtimes, and the image size; or a hash of the pixels for arrays), a hash of the
conv part's weights, the cut layer, the input and output shapes, the augmentation's config
name and parameters, the pass index, its seed and the dtype::

    paths = precompute_features(conv, FolderSource(files, labels, 2, (224, 224)), "cache/features",
                                augment=aug, augment_spec={"name": "dogscats"}, passes=2)
    train = FeatureSource([FeaturePart(p, labels) for p in paths], num_classes=2)
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from fastcourse import io
from fastcourse.data.chunks import ChunkedArray
from fastcourse.data.sources import Source
from fastcourse.errors import RunError, UsageError
from fastcourse.locks import locked

DTYPES = ("float32", "float16")


def weights_digest(model) -> str:
    """sha256 of every weight of `model` (names and values)."""
    import keras

    h = hashlib.sha256()
    for w in model.weights:
        h.update(w.path.encode())
        h.update(np.ascontiguousarray(keras.ops.convert_to_numpy(w)).tobytes())
    return h.hexdigest()


def cache_key(
    conv,
    source: Source,
    augment_spec: Optional[dict],
    pass_index: int,
    seed: int,
    dtype: str,
    weights: Optional[str] = None,
) -> tuple[str, dict]:
    """The hash that names one pass's features file, and the values it was made from."""
    meta = {
        "data": source.fingerprint(),
        "n": len(source),
        "weights": weights or weights_digest(conv),
        "cut": conv.layers[-1].name,
        "input_shape": [int(d) for d in conv.input_shape[1:]],
        "output_shape": [int(d) for d in conv.output_shape[1:]],
        "augment": augment_spec if pass_index else None,
        "pass": int(pass_index),
        "seed": int(seed) if pass_index else 0,
        "dtype": dtype,
        # features computed in bf16 differ from float32 ones: a change of precision recomputes
        "compute": conv.layers[-1].dtype_policy.name,
    }
    key = hashlib.sha256(json.dumps(meta, sort_keys=True, default=str).encode()).hexdigest()[:20]
    return key, meta


_LAST_RUNNER: list = []  # one slot: (model, function); holds at most one model alive


def _runner(conv):
    """A traced inference function for any batch size; the same model reuses it (no retrace)."""
    import tensorflow as tf

    if _LAST_RUNNER and _LAST_RUNNER[0] is conv:
        return _LAST_RUNNER[1]
    spec = tf.TensorSpec([None, *conv.input_shape[1:]], tf.float32)
    fn = tf.function(lambda x: tf.cast(conv(x, training=False), tf.float32), input_signature=[spec])
    _LAST_RUNNER[:] = [conv, fn]
    return fn


def precompute_features(
    conv,
    source: Source,
    cache_dir: str | os.PathLike,
    *,
    augment: Optional[Callable] = None,
    augment_spec: Optional[dict] = None,
    passes: int = 0,
    seed: int = 0,
    batch_size: int = 32,
    dtype: str = "float32",
    desc: str = "features",
    verbose: bool = True,
    commit_every: int = 8,
) -> list[Path]:
    """Paths of the features files of `source`: [clean, augmented pass 1, ..., pass `passes`].

    Cached: an unchanged rerun reuses the files; any change of a key value recomputes."""
    from tqdm.auto import tqdm

    if passes and augment is None:
        raise UsageError(f"passes={passes}: augmented passes need an augmentation (augment.name)")
    if dtype not in DTYPES:
        raise UsageError(f"features dtype={dtype!r}: use one of {', '.join(DTYPES)}")
    cache = io.make_folder(cache_dir, "features cache (task.cache_dir)")
    weights = weights_digest(conv)
    n, steps = len(source), -(-len(source) // batch_size)
    shape = (n, *[int(d) for d in conv.output_shape[1:]])
    paths = []
    bar = tqdm(total=(1 + passes) * steps, desc=desc, unit="batch", disable=not verbose)
    with locked(cache):  # two runs never fill one file
        for p in range(1 + passes):
            key, meta = cache_key(conv, source, augment_spec, p, seed + p, dtype, weights)
            path = cache / f"{desc}-pass{p}-{key}.npy"
            paths.append(path)
            if path.is_file():
                bar.update(steps)
                continue
            chunked = ChunkedArray(path, shape, dtype, key=key)
            if chunked.rows and verbose:
                print(f"fastcourse: {desc}: pass {p}: resuming at image {chunked.rows} of {n}", flush=True)
            _fill(conv, source, chunked, batch_size, augment if p else None, seed + p, commit_every, bar)
            chunked.finish()
            io.write_json(path.with_suffix(".json"), meta)
    bar.close()
    return paths


def _fill(
    conv, source: Source, chunked: ChunkedArray, batch_size: int, augment, seed: int, commit_every: int, bar
) -> None:
    """Rows [chunked.rows, n) of one pass, committed every `commit_every` batches."""
    n = chunked.shape[0]
    start_step = chunked.rows // batch_size
    row = start_step * batch_size
    bar.update(start_step)
    run = _runner(conv)
    ds = source.batches(batch_size, augment=augment, seed=seed, start_step=start_step, labels=False)
    for step, images in enumerate(ds, start=start_step + 1):
        feats = run(images).numpy()
        chunked.array[row : row + len(feats)] = feats.astype(chunked.dtype, copy=False)
        row += len(feats)
        bar.update(1)
        if step % commit_every == 0 or row == n:
            chunked.commit(row)  # a kill from here on resumes after this batch
    if row != n:
        raise RunError(
            f"{chunked.path.name}: {row} of {n} images decoded; a file changed since it was "
            "checked; open the dataset again"
        )
