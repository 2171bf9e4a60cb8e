"""`memory`: peak RSS of precomputing features and training the batchnorm head through
FeatureSource, each size in a fresh process."""

from __future__ import annotations

import os
import time

import numpy as np

from fastcourse.bench.features import _conv_part, write_jpegs
from fastcourse.bench.report import Row

MEMORY_SIZES = (2000, 8000, 32000)
QUICK_MEMORY_SIZES = (500, 2000)


def memory_child(
    n: int, workdir: str, size: int = 112, distinct: int = 256, batch_size: int = 64, units: int = 1024, epochs: int = 2
) -> dict:
    """One size, in its own process: VGG16 conv features (block5_conv3, float16 on disk) of
    `distinct` generated JPEGs, precomputed through precompute_features (cached across sizes),
    laid out as an n-row features file by repeating them (written with plain file writes, not
    through a memory map), then the batchnorm head trained on it through FeatureSource.
    Returns peak RSS (ru_maxrss) and the head's images/s (the last epoch: the first traces)."""
    import resource
    from pathlib import Path

    from fastcourse.config import TrainConfig
    from fastcourse.data.features import precompute_features
    from fastcourse.data.sources import FeaturePart, FeatureSource, FolderSource
    from fastcourse.models.heads import dense_head
    from fastcourse.train.trainer import fit, seed_everything

    work = Path(workdir)
    files, labels = write_jpegs(work / "jpegs", distinct, size)
    conv = _conv_part(size)
    t0 = time.perf_counter()
    (clean,) = precompute_features(
        conv,
        FolderSource(files, labels, 2, (size, size)),
        work / "cache",
        batch_size=32,
        dtype="float16",
        verbose=False,
    )
    precompute_s = time.perf_counter() - t0
    feats = np.load(clean)  # `distinct` rows: a few MB
    path = work / f"features-{n}.npy"
    with open(path, "wb") as f:
        np.lib.format.write_array_header_2_0(
            f,
            {
                "descr": np.lib.format.dtype_to_descr(feats.dtype),
                "fortran_order": False,
                "shape": (n, *feats.shape[1:]),
            },
        )
        block = feats.tobytes()
        for start in range(0, n, distinct):
            f.write(block[: min(distinct, n - start) * feats[0].nbytes])
    del feats
    y = labels[np.arange(n) % distinct]
    seed_everything(0, deterministic=False)
    source = FeatureSource([FeaturePart(path, y)], 2)
    head = dense_head(tuple(source.input_shape), 2, units=units, dropout=0.6, batchnorm=True)
    result = fit(
        head, source, TrainConfig(epochs=epochs, batch_size=batch_size, verbose=0, validate_each_epoch=False), 0
    )
    status = _proc_status()  # now, after training: anonymous memory vs pages of mapped files
    path.unlink()
    return {
        "images": n,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "rss_anon_mb": status.get("RssAnon", 0.0),
        "rss_file_mb": status.get("RssFile", 0.0),
        "images_per_second": n / result.epoch_seconds[-1],
        "features_file_mb": n * source.input_shape[0] * source.input_shape[1] * source.input_shape[2] * 2 / 2**20,
        "precompute_seconds": precompute_s,
    }


def _proc_status() -> dict[str, float]:
    """RssAnon / RssFile / VmRSS of this process in MB (Linux; empty elsewhere)."""
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "RssAnon", "RssFile") and value.split():
                    out[key] = float(value.split()[0]) / 1024.0
    except OSError:
        pass
    return out


def measure_memory(n: int, workdir: str, **options) -> dict:
    """memory_child(n) in a fresh Python process (so each peak RSS is that size's own)."""
    import json
    import subprocess
    import sys

    code = (
        "import json, sys; from fastcourse.bench.memory import memory_child; "
        f"print('MEMORY ' + json.dumps(memory_child({int(n)}, {str(workdir)!r}, **{options!r})))"
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("MEMORY ")]
    if proc.returncode != 0 or not lines:
        from fastcourse.errors import RunError

        raise RunError(f"memory bench at {n} images failed (exit {proc.returncode}): {proc.stderr.strip()[-600:]}")
    return json.loads(lines[-1][len("MEMORY ") :])


def memory_case(sizes: tuple[int, ...] = MEMORY_SIZES, warm: bool = True, **options) -> list[Row]:
    """Peak RSS and images/s of the batchnorm head on FeatureSource at each size (fresh process
    each); target: the largest size's peak within 25% of the smallest's, and under 3 GB."""
    import tempfile

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if warm:
            measure_memory(min(sizes), tmp, **options)  # fills the features cache: no size pays for it
        for n in sizes:
            print(f"memory: {n} images", flush=True)
            m = measure_memory(n, tmp, **options)
            rows.append(
                Row(
                    "memory_feature_head",
                    f"batchnorm head on FeatureSource, {n} images",
                    m["images_per_second"],
                    seconds=n / m["images_per_second"],
                    extra={k: m.get(k, 0.0) for k in ("peak_rss_mb", "features_file_mb", "rss_anon_mb", "rss_file_mb")},
                )
            )
    base = rows[0].extra["peak_rss_mb"]
    for r in rows:
        rss = r.extra["peak_rss_mb"]
        r.notes = (
            f"peak RSS {rss:.0f} MB ({rss / base:.2f}x the smallest; at the end {r.extra['rss_anon_mb']:.0f} "
            f"MB anonymous + {r.extra['rss_file_mb']:.0f} MB mapped files), "
            f"features file {r.extra['features_file_mb']:.0f} MB"
        )
    growth = rows[-1].extra["peak_rss_mb"] / base
    ok = growth <= 1.25 and rows[-1].extra["peak_rss_mb"] < 3 * 1024
    print(
        f"memory: peak RSS at {sizes[-1]} images is {growth:.2f}x that at {sizes[0]} "
        f"({'within' if ok else 'NOT within'} the target: <= 1.25x and under 3 GB)",
        flush=True,
    )
    return rows
