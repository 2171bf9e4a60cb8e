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

Each file has a manifest beside it (`<file>.json`): the key's values, the key, and the file's
size, CRC-32 and stat (inode, mtime, ctime) when it was written. A file is reused only when its
manifest is this key's and its size matches; when its stat differs from the recorded one (it was
copied, truncated or replaced since) its CRC-32 is computed again and must match. So a damaged,
truncated, zero-byte or foreign file (another cache's, copied in) is named in one line and
recomputed, never read into training. An untouched file costs one stat and a small JSON read;
a full CRC-32, which can cost more than an epoch of a small head, is paid only after the file
changed.

Runs share a cache: a run that finds another one writing it waits for it (the cache folder's
lock, `fastcourse.locks.shared`), then reuses what the other wrote.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from fastcourse import io
from fastcourse.data.chunks import ChunkedArray
from fastcourse.data.sources import Source
from fastcourse.errors import RunError, UsageError
from fastcourse.locks import shared

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
    return meta_key(meta), meta


def meta_key(meta: dict) -> str:
    """The key of a cache file from the values it was made from (its manifest holds them)."""
    return hashlib.sha256(json.dumps(meta, sort_keys=True, default=str).encode()).hexdigest()[:20]


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
    reused = []
    # two runs never fill one file: a second one waits, then reuses what the first wrote
    with shared(cache, "features cache") as waited_for:
        for p in range(1 + passes):
            key, meta = cache_key(conv, source, augment_spec, p, seed + p, dtype, weights)
            path = cache / f"{desc}-pass{p}-{key}.npy"
            paths.append(path)
            if path.exists() or manifest_path(path).exists():
                problem = check_cached(path, key, meta, shape, dtype)
                if problem is None:
                    reused.append(path)
                    bar.update(steps)
                    continue
                print(f"fastcourse: features cache {cache}: {path.name} {problem}; recomputing it", flush=True)
            chunked = ChunkedArray(path, shape, dtype, key=key)
            if chunked.rows and verbose:
                print(f"fastcourse: {desc}: pass {p}: resuming at image {chunked.rows} of {n}", flush=True)
            _fill(conv, source, chunked, batch_size, augment if p else None, seed + p, commit_every, bar)
            chunked.finish()
            write_manifest(path, key, meta)
    bar.close()
    if waited_for is not None and reused:
        print(f"fastcourse: features cache {cache}: done waiting; reusing {len(reused)} cached file(s)", flush=True)
    return paths


def manifest_path(path: Path) -> Path:
    """The manifest of the cached file `path`: its key's values and the file's size and CRC-32."""
    return path.with_suffix(".json")


def _crc32(path: Path, block: int = 1 << 22) -> str:
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(block):
            crc = zlib.crc32(chunk, crc)
    return f"{crc:08x}"


def _stat(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_ino, st.st_mtime_ns, st.st_ctime_ns]


def write_manifest(path: Path, key: str, meta: dict) -> None:
    """Record `path`'s key, size, CRC-32 and stat (read once, just after it was written)."""
    record = {"bytes": path.stat().st_size, "crc32": _crc32(path)}
    io.write_json(manifest_path(path), {**meta, "key": key, "file": {**record, "stat": _stat(path)}})


def check_cached(path: Path, key: str, meta: dict, shape: tuple, dtype: str) -> Optional[str]:
    """None when the cached file `path` can be reused for `key`; else what is wrong with it, to
    follow its name in a line ("is truncated (1024 of 2048 bytes)").

    An untouched file (size and stat as recorded) costs a stat and a small JSON read; a file whose
    stat changed (copied, restored, touched) is read once for its CRC-32, and its new stat is
    recorded when it matches."""
    manifest = manifest_path(path)
    try:
        saved = json.loads(manifest.read_text())
        if "file" not in saved and meta_key(saved) == key:  # written before manifests had a checksum
            return _adopt(path, key, saved, shape, dtype)
        record = saved["file"]
        size, crc, stat = int(record["bytes"]), str(record["crc32"]), list(record["stat"])
    except FileNotFoundError:
        return f"has no manifest ({manifest.name} is missing)"
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return f"has no readable manifest ({manifest.name} is damaged)"
    if saved.get("key") != key:
        return f"belongs to another cache ({manifest.name} records key {saved.get('key')}, this is {key})"
    try:
        actual = path.stat().st_size
    except FileNotFoundError:
        return "is missing (its manifest is there)"
    if actual != size:
        if actual == 0:
            return f"is empty (0 of {size} bytes)"
        return f"is {'truncated' if actual < size else 'too long'} ({actual} of {size} bytes)"
    if _stat(path) == stat:
        return None
    if _crc32(path) != crc:
        return "is damaged or another file (its CRC-32 differs from the one recorded when it was written)"
    if problem := _not_array(path, shape, dtype):
        return problem
    io.write_json(manifest, {**saved, "file": {**record, "stat": _stat(path)}})  # the next reuse is a stat
    return None


def _not_array(path: Path, shape: tuple, dtype: str) -> Optional[str]:
    """What keeps `path` from being a whole .npy of `shape` and `dtype` (header and size), or None."""
    try:
        with open(path, "rb") as f:
            fmt = np.lib.format
            read = fmt.read_array_header_1_0 if fmt.read_magic(f) == (1, 0) else fmt.read_array_header_2_0
            found, _, found_dtype = read(f)
            offset = f.tell()
        size = path.stat().st_size
    except (OSError, ValueError, EOFError):
        return "is not a .npy file"
    if tuple(found) != tuple(shape) or np.dtype(found_dtype) != np.dtype(dtype):
        return f"holds a {np.dtype(found_dtype).name} array of shape {tuple(found)}, not {dtype} {tuple(shape)}"
    expected = offset + int(np.prod(shape)) * np.dtype(dtype).itemsize
    if size != expected:
        return f"is {'truncated' if size < expected else 'too long'} ({size} of {expected} bytes)"
    return None


def _adopt(path: Path, key: str, meta: dict, shape: tuple, dtype: str) -> Optional[str]:
    """A file cached before manifests recorded a checksum: reused, with its CRC-32 recorded now,
    when its header and size are whole."""
    if not path.exists():
        return "is missing (its manifest is there)"
    if problem := _not_array(path, shape, dtype):
        return problem
    write_manifest(path, key, meta)
    return None


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
