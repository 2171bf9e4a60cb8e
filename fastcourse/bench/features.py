"""`features`: VGG16 conv features from a JPEG folder vs in-memory tensors, a dense head on cached
features vs on the frozen full model."""

from __future__ import annotations

import time

import keras
import numpy as np

from fastcourse.bench.report import Row


def write_jpegs(folder, n: int, size: int, seed: int = 0, classes: int = 2) -> tuple[list[str], np.ndarray]:
    """`n` distinct generated JPEGs (shapes on noise, fastcourse.data.synthetic), labels alternating."""
    from pathlib import Path

    from fastcourse.data.synthetic import SHAPES, draw_shape

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    files, labels = [], np.arange(n) % classes
    for i in range(n):
        path = folder / f"img_{i:05d}.jpg"
        if not path.is_file():
            draw_shape(SHAPES[labels[i]], size, rng).save(path, quality=90)
        files.append(str(path))
    return files, labels


def _conv_part(size: int, seed: int = 0) -> keras.Model:
    """VGG16's conv part up to block5_conv3 (the lesson's cut), random weights fixed by `seed`."""
    from fastcourse.models.surgery import cut_model
    from fastcourse.models.vgg import vgg16

    keras.utils.set_random_seed(seed)
    return cut_model(vgg16((size, size, 3), include_top=False, weights=None), "block5_conv3")


def features_case(
    images: int = 64, size: int = 224, batch_size: int = 16, epochs: int = 3, units: int = 256, rounds: int = 3
) -> list[Row]:
    """VGG16 conv features from a JPEG folder vs the same forward pass on in-memory tensors
    (images/s), and a dense head on cached features vs the same head on the frozen full model
    (epochs/s; the lesson saw 35x)."""
    import tempfile

    from fastcourse.config import TrainConfig
    from fastcourse.data.features import precompute_features
    from fastcourse.data.sources import ArraySource, FeaturePart, FeatureSource, FolderSource
    from fastcourse.models.heads import dense_head
    from fastcourse.models.surgery import attach_head, set_trainable
    from fastcourse.train.trainer import fit

    conv = _conv_part(size)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        files, labels = write_jpegs(f"{tmp}/jpegs", images, size)
        folder = FolderSource(files, labels, 2, (size, size))
        pixels = np.concatenate([np.asarray(b) for b in folder.batches(batch_size, labels=False)]).astype(np.uint8)
        memory = ArraySource(pixels, labels, 2)
        sides = {"in-memory tensors": memory, "JPEG folder (decode + resize)": folder}
        for i, source in enumerate(sides.values()):
            precompute_features(
                conv, source.take(batch_size), f"{tmp}/warm-{i}", batch_size=batch_size, verbose=False
            )  # trace once: the figure is the steady state
        # interleaved rounds, best of each side: a shared machine's noise hits both alike
        timings: dict[str, float] = {}
        for r in range(rounds):
            for i, (label, source) in enumerate(sides.items() if r % 2 == 0 else reversed(sides.items())):
                t0 = time.perf_counter()
                paths = precompute_features(conv, source, f"{tmp}/cache-{r}-{i}", batch_size=batch_size, verbose=False)
                timings[label] = min(timings.get(label, float("inf")), time.perf_counter() - t0)
        for label in sides:
            rows.append(
                Row(
                    f"features_vgg16_{size}",
                    f"VGG16 conv features from {label}",
                    images / timings[label],
                    seconds=timings[label],
                )
            )
        base = rows[0].images_per_second
        for r in rows:
            r.notes = f"{r.images_per_second / base:.2f}x in-memory"
        train = TrainConfig(
            epochs=epochs + 1, batch_size=batch_size, verbose=0, validate_each_epoch=False, bn_recalibrate=0
        )
        shape = tuple(conv.output_shape[1:])
        cached = fit(
            dense_head(shape, 2, units=units, dropout=0.5),
            FeatureSource([FeaturePart(p, labels) for p in paths], 2),
            train,
            0,
        )
        full = attach_head(conv, dense_head(shape, 2, units=units, dropout=0.5))
        set_trainable(full, "head")
        frozen = fit(full, folder, train, 0)
    cached_eps = 1.0 / float(np.median(cached.epoch_seconds[1:]))
    frozen_eps = 1.0 / float(np.median(frozen.epoch_seconds[1:]))
    rows.append(
        Row(
            "features_head",
            "dense head on the frozen full model (JPEG folder)",
            images * frozen_eps,
            seconds=1.0 / frozen_eps,
            ratio_to_peer=1.0,
            notes=f"{frozen_eps:.3f} epochs/s",
        )
    )
    rows.append(
        Row(
            "features_head",
            "the same head on cached features",
            images * cached_eps,
            seconds=1.0 / cached_eps,
            ratio_to_peer=cached_eps / frozen_eps,
            notes=f"{cached_eps:.2f} epochs/s; {cached_eps / frozen_eps:.0f}x the frozen model (target >= 20x)",
        )
    )
    return rows


def precision_rates(
    images: int = 32,
    size: int = 224,
    batch_size: int = 16,
    rounds: int = 2,
    policies: tuple[str, ...] = ("float32", "mixed_bfloat16"),
) -> list[Row]:
    """VGG16 conv features (block5_conv3, random weights) of in-memory images at `size`, through
    precompute_features (the features task's path), under each dtype policy: images/s, best of
    `rounds` interleaved rounds. The features task computes under the run's policy
    (train.precision, auto by default: mixed_bfloat16 on a CPU with native bf16)."""
    import tempfile

    from fastcourse.data.features import precompute_features
    from fastcourse.data.sources import ArraySource

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (images, size, size, 3), dtype=np.uint8)
    source = ArraySource(pixels, np.arange(images) % 2, 2)
    previous = keras.mixed_precision.global_policy().name
    best: dict[str, float] = {}
    convs: dict[str, keras.Model] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for policy in policies:  # build each model under its policy, and trace it once
                keras.mixed_precision.set_global_policy(policy)
                convs[policy] = _conv_part(size)
                precompute_features(
                    convs[policy], source.take(batch_size), f"{tmp}/warm-{policy}", batch_size=batch_size, verbose=False
                )
            for r in range(rounds):
                for policy in policies if r % 2 == 0 else policies[::-1]:
                    keras.mixed_precision.set_global_policy(policy)
                    t0 = time.perf_counter()
                    precompute_features(
                        convs[policy], source, f"{tmp}/{policy}-{r}", batch_size=batch_size, verbose=False
                    )
                    best[policy] = min(best.get(policy, float("inf")), time.perf_counter() - t0)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    base = images / best[policies[0]]
    rows = [
        Row(
            f"features_precision_vgg16_{size}",
            f"VGG16 conv features, {policy}, batch {batch_size}",
            images / best[policy],
            seconds=best[policy],
            notes=f"{images / best[policy] / base:.2f}x float32",
        )
        for policy in policies
    ]
    for row in rows:
        print(f"bench: {row.contender}: {row.images_per_second:.1f} images/s", flush=True)
    return rows
