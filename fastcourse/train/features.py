"""Precomputed conv features (lesson 3): run the frozen conv part once, train dense heads on it.

Features are cached on disk as .npy files read memory-mapped. The cache key is a hash of the
backbone's weights, the cut layer, the preprocessing layer's config, the image size, the file
list (paths, sizes, modification times) and the augmentation (name, seed, passes), so an
unchanged rerun reuses the file and any change recomputes it::

    conv = cut_model(vgg16((224, 224, 3), include_top=False, weights="imagenet"), "block5_conv3")
    feats = precompute_features(conv, split.files, (224, 224), cache_dir="cache")  # (N, 14, 14, 512)
    head = dense_head(feats.shape[1:], 2, dropout=0.0)
    ... train head on feats ...
    full = attach_head(conv, head)   # same predictions as head(feats), on raw images
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Optional, Sequence

import keras
import numpy as np

from fastcourse import io, rundir
from fastcourse.errors import RunError, UsageError
from fastcourse.train.chunks import ChunkedArray
from fastcourse.models.heads import dense_head  # noqa: F401  (re-exported: heads train on features)


def cut_model(model: keras.Model, cut: str = "block5_conv3") -> keras.Model:
    """The model from its input up to layer `cut`'s output (the course's split_at last conv)."""
    names = [layer.name for layer in model.layers]
    if cut not in names:
        raise UsageError(f"cut={cut!r}: no such layer; layers: {', '.join(names)}")
    return keras.Model(model.inputs, model.get_layer(cut).output, name=f"{model.name}_to_{cut}")


def attach_head(conv: keras.Model, head: keras.Model, name: str = "finetuned") -> keras.Model:
    """Put a head trained on features back on the conv part: raw images -> class probabilities."""
    return keras.Model(conv.inputs, head(conv.outputs[0]), name=name)


_LAST_RUNNER: list = []  # one slot: (model, size, function); holds at most one model alive


def _runner(conv: keras.Model, image_size):
    """A traced inference function for any batch size; the same model and size reuse it (no retrace)."""
    import tensorflow as tf

    size = tuple(int(s) for s in image_size)
    if _LAST_RUNNER and _LAST_RUNNER[0] is conv and _LAST_RUNNER[1] == size:
        return _LAST_RUNNER[2]
    spec = tf.TensorSpec([None, *size, 3], tf.float32)
    fn = tf.function(lambda x: conv(x, training=False), input_signature=[spec])
    _LAST_RUNNER[:] = [conv, size, fn]
    return fn


# --- the cache -------------------------------------------------------------------------------

def weights_digest(model: keras.Model) -> str:
    h = hashlib.sha256()
    for w in model.weights:
        h.update(w.path.encode())
        h.update(np.ascontiguousarray(keras.ops.convert_to_numpy(w)).tobytes())
    return h.hexdigest()


def cache_key(conv: keras.Model, files: Sequence[str], image_size, augment: Optional[Callable] = None,
              passes: int = 0, seed: int = 0) -> tuple[str, dict]:
    """The hash that names a features file, and the description it was made from."""
    files_h = hashlib.sha256()
    for f in files:
        st = os.stat(f)
        files_h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    # the weightless layers (VGGPreprocess, pools) and their settings
    preprocess = [(layer.__class__.__name__, layer.get_config()) for layer in conv.layers
                  if not layer.weights and layer.__class__.__name__ != "InputLayer"]
    meta = {
        "weights": weights_digest(conv), "cut": conv.layers[-1].name, "output_shape": list(conv.output_shape[1:]),
        "preprocess": json.loads(json.dumps(preprocess, default=str)), "image_size": [int(s) for s in image_size],
        "files": files_h.hexdigest(), "n": len(files), "augment": repr(augment) if augment is not None else None,
        "passes": int(passes), "seed": int(seed) if passes else 0,
    }
    key = hashlib.sha256(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:20]
    return key, meta


def precompute_features(
    conv: keras.Model, files: Sequence[str], image_size, batch_size: int = 32,
    cache_dir: str | os.PathLike | None = "cache/features", augment: Optional[Callable] = None,
    passes: int = 0, seed: int = 0, desc: str = "features", verbose: bool = True, commit_every: int = 8,
) -> np.ndarray:
    """Conv features of `files`: (N, ...) clean, or ((1 + passes) * N, ...) with `passes`
    augmented copies after the clean ones (Statefarm's trick). Memory-mapped from the cache.

    Interrupted, it resumes at the last committed chunk (every `commit_every` batches)."""
    from tqdm.auto import tqdm

    from fastcourse.data.folders import image_dataset

    if passes and augment is None:
        raise UsageError(f"passes={passes} augmented passes need an augmentation")
    key, meta = cache_key(conv, files, image_size, augment, passes, seed)
    path = Path(cache_dir) / f"{desc}-{key}.npy" if cache_dir else None
    if path is not None and path.is_file():
        if verbose:
            print(f"fastcourse: {desc}: reusing cached features {path}", flush=True)
        return np.load(path, mmap_mode="r")
    n = len(files)
    shape = ((1 + passes) * n, *conv.output_shape[1:])
    run = _runner(conv, image_size)
    steps_per_pass = -(-n // batch_size)
    bar = tqdm(total=(1 + passes) * steps_per_pass, desc=desc, unit="batch", disable=not verbose)

    def fill(out: np.ndarray, done: int = 0, commit: Optional[Callable[[int], None]] = None) -> np.ndarray:
        """Rows [done, end): resumes inside a pass at the batch where `done` stopped."""
        for p in range(done // n, 1 + passes):
            start_step = (done - p * n) // batch_size if done > p * n else 0
            row = p * n + start_step * batch_size
            bar.update(p * steps_per_pass + start_step - bar.n)
            ds = image_dataset(files, None, None, image_size, batch_size,
                               augment=augment if p else None, seed=seed + p, start_step=start_step)
            for step, images in enumerate(ds, start=start_step + 1):
                feats = run(images).numpy()
                out[row:row + len(feats)] = feats
                row += len(feats)
                bar.update(1)
                if commit is not None and (step % commit_every == 0 or row == (p + 1) * n):
                    commit(row)  # a kill from here on resumes after this batch
            if row != (p + 1) * n:
                raise RunError(f"{desc}: {row - p * n} of {n} images decoded; a file changed since it was "
                               "checked; reopen the dataset")
        return out

    if path is None:
        out = fill(np.empty(shape, np.float32))
        bar.close()
        return out
    # Filled chunk by chunk into a memory-mapped file whose progress survives a kill; the
    # cache file itself appears only when complete. The lock keeps two runs off one file.
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise io.os_error(exc, f"cannot create the features cache {path.parent}") from None
    with rundir.locked(path.parent):
        chunked = ChunkedArray(path, shape, "float32", key=key)
        if chunked.rows and verbose:
            print(f"fastcourse: {desc}: resuming at image {chunked.rows} of {shape[0]}", flush=True)
        fill(chunked.array, chunked.rows, chunked.commit)
        chunked.finish()
    bar.close()
    io.write_json(path.with_suffix(".json"), meta)
    return np.load(path, mmap_mode="r")
