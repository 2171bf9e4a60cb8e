"""`lesson3`: how long lesson 3's dogs vs cats path takes on this machine, step by step.

The course (fast.ai 2017, lesson 3) precomputes VGG16's conv features (cut at block5_conv3) of
23,000 train + 2,000 valid images at 224 px, trains the dense head on them for 8 epochs, then
trains the full model (convs frozen) for 3 epochs on augmented images: every augmented image
goes through the conv part again, and each epoch's validation too. This case measures each
step's rate on a small generated JPEG folder with random-weight VGG16 (weights do not change
the speed) and turns the rates into minutes for the course's counts:

- before: float32, features, 8 head epochs, 3 augmented full-model epochs (the course's path);
- after: the precision `auto` picks, features, 3 augmented passes through the conv part computed
  once each and cached (the features task's `task.passes: 3`), the head trained on the clean
  and augmented features together (`train.epochs: 3`: 12 epochs' worth of rows, the course's
  8 clean + 3 augmented).

The last line, `lesson3 estimate: 84 min (before: 182 min)`, is for scripts.
"""

from __future__ import annotations

import math
import tempfile
import time
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import numpy as np

from fastcourse.bench.features import _conv_part, write_jpegs
from fastcourse.bench.report import Row

TARGET_MINUTES = 90.0
STEPS = ("features", "head", "augmented_pass", "full_epoch")  # the rates' keys (images/s)


@dataclass(frozen=True)
class Counts:
    """Lesson 3's dogs vs cats: images and epochs."""

    train: int = 23_000
    valid: int = 2_000
    head_epochs: int = 8
    augmented_epochs: int = 3


COURSE = Counts()


def head_epochs_for(counts: Counts, passes: int) -> int:
    """Epochs over clean + `passes` augmented feature files that give the head at least the rows
    the course's 8 clean + 3 augmented epochs give it (3 for 3 passes)."""
    return math.ceil((counts.head_epochs + counts.augmented_epochs) / (1 + passes))


def before_minutes(rates: Mapping[str, float], counts: Counts = COURSE) -> dict[str, float]:
    """Minutes per step of the course's path. The full-model epochs validate through the full
    model (clean images, the features rate); the head's validation on cached features is left
    out (a forward pass of 2,000 rows an epoch, under 3% of its training)."""
    return {
        "features (train + valid)": (counts.train + counts.valid) / rates["features"] / 60,
        f"{counts.head_epochs} head epochs on cached features": counts.head_epochs * counts.train / rates["head"] / 60,
        f"{counts.augmented_epochs} augmented full-model epochs (+ validation)": counts.augmented_epochs
        * (counts.train / rates["full_epoch"] + counts.valid / rates["features"])
        / 60,
    }


def after_minutes(
    rates: Mapping[str, float], counts: Counts = COURSE, passes: int = 3, head_epochs: Optional[int] = None
) -> dict[str, float]:
    """Minutes per step with `passes` augmented passes cached and the head trained on clean +
    augmented features for `head_epochs` (default head_epochs_for) epochs of (1 + passes) x train rows."""
    epochs = head_epochs_for(counts, passes) if head_epochs is None else head_epochs
    steps = {"features (train + valid)": (counts.train + counts.valid) / rates["features"] / 60}
    if passes:
        steps[f"{passes} augmented passes through the conv part, cached"] = (
            passes * counts.train / rates["augmented_pass"] / 60
        )
    steps[f"{epochs} head epochs on clean + {passes} augmented feature sets"] = (
        epochs * (1 + passes) * counts.train / rates["head"] / 60
    )
    return steps


def estimate_line(after: float, before: float) -> str:
    """The parsable last line."""
    return f"lesson3 estimate: {after:.0f} min (before: {before:.0f} min)"


def features_gb(counts: Counts = COURSE, passes: int = 3, size: int = 224) -> float:
    """Disk taken by the cached block5_conv3 features (size/16 square x 512 channels, float32) of
    the clean train set, its `passes` augmented copies and the valid set."""
    rows = (1 + passes) * counts.train + counts.valid
    return rows * (size // 16) ** 2 * 512 * 4 / 1e9


def verdict(rates: Mapping[str, float], counts: Counts = COURSE, passes: int = 3) -> str:
    """Whether the after recipe fits TARGET_MINUTES and, when not, the closest recipe that would:
    the most augmented passes, then the most head epochs (down to the rows of the course's clean
    head epochs alone); and when the conv part's forward passes alone are over the target, says so
    with their minutes (then the recipe, not the speed of the rest, decides)."""
    total = sum(after_minutes(rates, counts, passes).values())
    if total <= TARGET_MINUTES:
        return f"{total:.0f} min: within the {TARGET_MINUTES:.0f}-minute target on this machine"
    floor = conv_floor_minutes(rates, counts, passes)
    if floor > TARGET_MINUTES:  # no head, cache or pipeline can help: the conv passes alone are over
        return (
            f"{total:.0f} min: over the {TARGET_MINUTES:.0f}-minute target on this machine; the conv part's "
            f"forward passes alone (features + {passes} augmented passes) take {floor:.0f} min, so only fewer "
            f"passes bring it under: {_closest(rates, counts, passes)}"
        )
    over = f"{total:.0f} min: over the {TARGET_MINUTES:.0f}-minute target on this machine"
    return f"{over}; {_closest(rates, counts, passes)}"


def conv_floor_minutes(rates: Mapping[str, float], counts: Counts = COURSE, passes: int = 3) -> float:
    """Minutes of the conv part's forward passes alone: the clean features of train + valid and
    `passes` augmented passes over train, at the measured rates (the heads add to this)."""
    return ((counts.train + counts.valid) / rates["features"] + passes * counts.train / rates["augmented_pass"]) / 60


def _closest(rates: Mapping[str, float], counts: Counts, passes: int) -> str:
    """The closest recipe under TARGET_MINUTES: the most augmented passes, then the most head epochs."""
    for p in range(passes, -1, -1):
        for epochs in range(head_epochs_for(counts, p), math.ceil(counts.head_epochs / (1 + p)) - 1, -1):
            fewer = sum(after_minutes(rates, counts, p, epochs).values())
            if fewer <= TARGET_MINUTES:
                return (
                    f"task.passes: {p}, train.epochs: {epochs} ({fewer:.0f} min) would bring it under, "
                    "which changes the course's recipe"
                )
    return (
        f"even without augmented passes: the conv forward pass over {counts.train + counts.valid:,} images is the floor"
    )


def _rate(seconds: list[float], images: int) -> float:
    return images / float(np.median(seconds))


def measure_rates(
    policies: tuple[str, ...] = ("float32", "auto"),
    images: int = 48,
    size: int = 224,
    jpeg_size: int = 384,
    batch_size: int = 16,
    head_batch_size: int = 64,
    units: int = 4096,
    rounds: int = 2,
    epochs: int = 3,
    tmp: Optional[str] = None,
) -> dict[str, dict[str, float]]:
    """images/s of each step under each of `policies` (train.precision values), on `images`
    generated JPEGs of `jpeg_size` px decoded and resized to `size`. The passes: best of `rounds`,
    the policies interleaved so a shared machine's noise hits them alike; the epochs: median of
    those after the first, which traces."""
    from fastcourse.config import TrainConfig
    from fastcourse.data import augment
    from fastcourse.data.features import precompute_features
    from fastcourse.data.sources import FeaturePart, FeatureSource, FolderSource
    from fastcourse.models.heads import dense_head
    from fastcourse.models.surgery import attach_head, set_trainable
    from fastcourse.train.devices import float32_outputs, training_scope
    from fastcourse.train.trainer import fit

    own = tempfile.TemporaryDirectory() if tmp is None else None
    root = own.name if own else str(tmp)
    try:
        files, labels = write_jpegs(f"{root}/jpegs", images, jpeg_size)
        folder = FolderSource(files, labels, 2, (size, size))
        aug, spec = augment.build("dogscats", {}), {"name": "dogscats"}
        kw: dict[str, Any] = dict(batch_size=batch_size, verbose=False)
        convs, clean, augmented, paths = {}, {}, {}, {}
        for policy in policies:  # each conv part built under its policy, both passes traced once
            with training_scope(policy, "none"):
                convs[policy] = _conv_part(size)
                precompute_features(convs[policy], folder.take(batch_size), f"{root}/warm-{policy}", **kw)
                precompute_features(
                    convs[policy], folder.take(batch_size), f"{root}/warm-{policy}", augment=aug, augment_spec=spec,
                    passes=1, **kw,
                )  # fmt: skip
        for r in range(rounds):
            for policy in policies if r % 2 == 0 else policies[::-1]:
                cache = f"{root}/cache-{policy}-{r}"
                with training_scope(policy, "none"):
                    t0 = time.perf_counter()
                    (paths[policy],) = precompute_features(convs[policy], folder, cache, **kw)
                    t1 = time.perf_counter()
                    # the clean pass is in this cache already: only the augmented pass runs
                    precompute_features(convs[policy], folder, cache, augment=aug, augment_spec=spec, passes=1, **kw)
                    augmented[policy] = min(augmented.get(policy, float("inf")), time.perf_counter() - t1)
                clean[policy] = min(clean.get(policy, float("inf")), t1 - t0)
        train = TrainConfig(
            epochs=epochs, batch_size=head_batch_size, verbose=0, validate_each_epoch=False, bn_recalibrate=0
        )
        head_args: dict[str, Any] = dict(units=units, depth=2, dropout=0.6, batchnorm=True)  # the course's BN head
        out = {}
        for policy in policies:
            # the head at the course's batch 64 needs more rows than a few dozen images: the same file, 8 times
            rows = FeatureSource([FeaturePart(paths[policy], labels)] * 8, 2)
            with training_scope(policy, "none"):
                shape = tuple(convs[policy].output_shape[1:])
                head = fit(float32_outputs(dense_head(shape, 2, **head_args)), rows, train, 0)
                full = attach_head(convs[policy], float32_outputs(dense_head(shape, 2, **head_args)))
                set_trainable(full, "head")  # convs frozen, as the course's augmented full-model epochs
                whole = fit(full, folder, train.model_copy(update={"batch_size": batch_size}), 0, augment=aug)
            out[policy] = {
                "features": images / clean[policy],
                "augmented_pass": images / augmented[policy],
                "head": _rate(head.epoch_seconds[1:] or head.epoch_seconds, len(rows)),
                "full_epoch": _rate(whole.epoch_seconds[1:] or whole.epoch_seconds, images),
            }
    finally:
        if own:
            own.cleanup()
    return out


def lesson3_case(
    images: int = 48,
    size: int = 224,
    jpeg_size: int = 384,
    batch_size: int = 16,
    units: int = 4096,
    rounds: int = 2,
    epochs: int = 3,
    counts: Counts = COURSE,
    passes: int = 3,
) -> list[Row]:
    """Rates of each lesson-3 step in float32 and under `auto`, and the estimated minutes for
    dogs vs cats before (float32, the course's path) and after (auto, cached augmented passes).
    Prints the per-step estimate; the last row's extra["ratio_line"] is the parsable line."""
    from fastcourse.train.precision import resolve_precision

    chosen, reason = resolve_precision("auto")
    kw: dict[str, Any] = dict(
        images=images, size=size, jpeg_size=jpeg_size, batch_size=batch_size, units=units, rounds=rounds, epochs=epochs
    )
    rates = measure_rates(("float32", "auto") if chosen != "float32" else ("float32",), **kw)
    measured = {"float32": rates["float32"], chosen: rates.get("auto", rates["float32"])}
    labels = {
        "features": f"decode + resize {jpeg_size}->{size} + VGG16 conv features (block5_conv3)",
        "augmented_pass": "augmented images through the frozen conv part (one cached pass)",
        "head": f"batchnorm head ({units} x 2) epoch on cached features",
        "full_epoch": "full model, convs frozen, augmented epoch (the course's path)",
    }
    rows = []
    for step in STEPS:
        f32, best = measured["float32"][step], measured[chosen][step]
        for policy, rate in (("float32", f32), (chosen, best)) if chosen != "float32" else (("float32", f32),):
            rows.append(
                Row(
                    "lesson3",
                    f"{labels[step]}, {policy}",
                    rate,
                    seconds=0.0,
                    notes=f"{rate / f32:.2f}x float32" if policy != "float32" else "",
                    extra={"step": step, "policy": policy},
                )
            )
    before = before_minutes(measured["float32"], counts)
    after = after_minutes(measured[chosen], counts, passes)
    total_before, total_after = sum(before.values()), sum(after.values())
    print(
        f"lesson3: dogs vs cats, {counts.train:,} train + {counts.valid:,} valid at {size} px "
        f"(rates from {images} generated JPEGs; precision auto: {chosen}, {reason})",
        flush=True,
    )
    print("lesson3: before (float32, the course's path):", flush=True)
    for step, minutes in before.items():
        print(f"  {step:<62} {minutes:7.1f} min", flush=True)
    print(f"  {'total':<62} {total_before:7.1f} min", flush=True)
    print(
        f"lesson3: after ({chosen}, features task with task.passes: {passes}, "
        f"train.epochs: {head_epochs_for(counts, passes)}):",
        flush=True,
    )
    for step, minutes in after.items():
        print(f"  {step:<62} {minutes:7.1f} min", flush=True)
    print(f"  {'total':<62} {total_after:7.1f} min", flush=True)
    print(
        "lesson3: the after recipe trains the head on clean and augmented features mixed, where the course "
        "trained it on clean features then the full model on augmented images; its accuracy could not be "
        "checked here (no dogs vs cats images offline)",
        flush=True,
    )
    print(f"lesson3: {verdict(measured[chosen], counts, passes)}", flush=True)
    gb = features_gb(counts, passes, size)
    print(
        f"lesson3: the after recipe's features files take {gb:.1f} GB on disk in float32 "
        f"({gb / 2:.1f} GB with task.dtype: float16)",
        flush=True,
    )
    for name, minutes in (("before", total_before), ("after", total_after)):
        rows.append(
            Row(
                "lesson3_estimate",
                f"dogs vs cats, {name}: "
                + ("float32, the course's path" if name == "before" else f"{chosen}, cached augmented passes"),
                0.0,
                seconds=minutes * 60,
                notes=f"{minutes:.1f} min",
                extra={"minutes": {**(before if name == "before" else after)}, "rates": measured},
            )
        )
    rows[-1].extra["ratio_line"] = estimate_line(total_after, total_before)
    return rows
