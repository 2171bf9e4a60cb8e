"""The cases of `fastcourse bench` and `run_bench`, which runs them: what fastcourse does on the
machine it runs on. The comparisons with other toolkits (the plain-Keras peer, fastai) live in
the repository's `benchmarks/` (`make bench`, `make bench-fastai`), which runs these cases too.

- `time_to_accuracy`: fastcourse's time-to-accuracy recipe (`recipe.FAST_TO_ACCURACY`: a one-cycle
  schedule per cycle, batch 128, the precision `auto` picks, BN statistics from 5 batches) until
  the clean test accuracy reaches 0.8981 (the plain-Keras peer's 5-epoch figure) on
  Fashion-MNIST, 0.97 on the bundled MNIST sample when Fashion-MNIST is not installed. It first
  prints the precision `auto` chose and the measured speed of float32 and bf16. `--breakdown`
  splits the seconds (fastcourse.bench.breakdown): model build, fit setup, tracing / first step,
  steady steps (images/s and the share of a bf16 matmul measured in the same run), batchnorm
  statistics, other, and the evaluation beside them.
- `vgg16`: VGG16 conv-part feature extraction at 224x224 (random weights).
- `bn_epoch`: the cost of true per-epoch figures: batchnorm statistics recomputed before each
  validation, as a share of the epoch (target: at most 5%), with the per-epoch val accuracies.
- `features`: VGG16 conv features at 224x224 in float32 and in mixed_bfloat16 (images/s); from a
  JPEG folder vs the same forward pass on in-memory tensors; a dense head on cached features vs
  on the frozen full model (epochs/s).
- `lesson3`: the rates of lesson 3's steps (VGG16 features, head epochs, augmented passes,
  augmented full-model epochs) in float32 and under `auto`, and the estimated minutes for dogs
  vs cats before and after, ending `lesson3 estimate: 84 min (before: 182 min)`.
- `memory`: peak RSS and images/s of precomputing and training the batchnorm head through
  FeatureSource at 2,000 / 8,000 / 32,000 images, each size in a fresh process.

`--gpu` (`make bench-gpu`): the full 6 x 35-epoch ensemble with mixed_float16 on one GPU.

Output: a table, and the same rows as JSON (`--json PATH`).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Callable, Optional

import keras
import numpy as np

from fastcourse.bench import breakdown as split
from fastcourse.bench import flops
from fastcourse.bench.bn_epoch import bn_epoch_case
from fastcourse.bench.features import features_case, precision_rates
from fastcourse.bench.lesson3 import lesson3_case
from fastcourse.bench.memory import MEMORY_SIZES, QUICK_MEMORY_SIZES, memory_case
from fastcourse.bench.recipe import (
    FAST_TO_ACCURACY,
    bench_data,
    course_model,
    recipe_options,
    run_fastcourse,
    target_for,
)
from fastcourse.bench.report import Row, describe, device_description, machine_line, print_table, time_to_reach
from fastcourse.data import ArrayDataset


def precision_speeds(data: ArrayDataset, seed: int, images: int = 4096, batch_size: int = 256) -> dict:
    """Measured training images/s of float32 and mixed_bfloat16 (same model, no augmentation)."""
    small = data.limit(images, 256)
    out = {}
    for policy in ("float32", "mixed_bfloat16"):
        _, ips, _ = run_fastcourse(
            small,
            2,
            seed,
            batch_size=batch_size,
            steps_per_execution=4,
            augment=None,
            policy=policy,
            schedule={"name": "constant", "lr": 1e-3},
        )
        out[policy] = ips
    return out


def time_to_accuracy_case(
    data: ArrayDataset,
    seed: int,
    fast: Optional[dict] = None,
    max_epochs: int = 3,
    target: Optional[float] = None,
    breakdown: bool = False,
) -> list[Row]:
    """Wall time of fastcourse's recipe until the clean test accuracy reaches `target` (default
    `recipe.target_for(data)`): model building, tracing and batchnorm recalibration included,
    evaluation excluded. One cycle at a time (`fast["restarts"]`), at most `max_epochs`. The row's
    `extra` keeps the curve, the clock marks and their split (`breakdown.phases`); with
    `breakdown`, the split is printed beside the steady rate's share of a bf16 matmul measured
    in the same run."""
    from fastcourse.train.precision import resolve_precision

    fast = fast or FAST_TO_ACCURACY
    target = target_for(data) if target is None else target
    policy, reason = resolve_precision(fast.get("policy", "auto"))
    print(f"bench: precision {policy} ({reason})", flush=True)
    speeds = precision_speeds(data, seed)
    print(
        "bench: measured training speed: "
        + ", ".join(f"{k} {v:.0f} images/s" for k, v in speeds.items())
        + f" (bf16/float32 {speeds['mixed_bfloat16'] / speeds['float32']:.2f}x)",
        flush=True,
    )
    options = recipe_options(fast, policy)
    plan = (
        f"one cycle of {options['fraction']:g} epoch at a time, peak x{options['restarts']:g} each time, "
        f"at most {max_epochs}"
        if options["restarts"]
        else f"one-cycle over {max_epochs} epoch(s)"
    )
    print(f"time to accuracy: fastcourse, target {target:.4f}, {describe(options)}, {policy}, {plan}", flush=True)
    ours: list[tuple[float, float]] = []
    marks: dict = {}
    _, ips, _ = run_fastcourse(data, max_epochs, seed, **options, epoch_eval=(ours, target), marks=marks)
    our_time = time_to_reach(ours, target)
    total = our_time or ours[-1][0]
    train_flops = flops.train_flops_per_image(course_model(data))
    extra = {
        "curve": ours,
        "precision": policy,
        "precision_speeds": speeds,
        "target": target,
        "marks": marks,
        "phases": split.phases(marks, total),
        "train_flops_per_image": train_flops,
    }
    if breakdown:
        extra["bf16_matmul_gflops"] = roofline = flops.bf16_matmul_gflops()
        for line in split.table(f"fastcourse seed {seed}", marks, total, train_flops, roofline):
            print(line, flush=True)
        print(machine_line(), flush=True)
    return [
        Row(
            "time_to_accuracy",
            f"fastcourse: {describe(options)}, {policy}, {plan}",
            ips,
            test_accuracy=max(a for _, a in ours),
            seconds=total,
            notes=(f"target {target:.4f} reached after {len(ours)} cycle(s)" if our_time else "NOT reached"),
            extra=extra,
        )
    ]


def vgg16_features_case(matmul: float, images: int, batch_size: int = 8) -> list[Row]:
    """Forward passes of VGG16's conv part at 224x224, random weights (throughput only)."""
    model = keras.applications.VGG16(weights=None, include_top=False, input_shape=(224, 224, 3))
    x = np.random.default_rng(0).uniform(0, 255, (batch_size, 224, 224, 3)).astype(np.float32)
    fwd = flops.forward_flops_per_image(model)
    run = keras.ops.convert_to_numpy
    predict_step = model.predict_on_batch
    run(predict_step(x))  # warm-up (graph tracing)
    start = time.perf_counter()
    done = 0
    while done < images:
        run(predict_step(x))
        done += batch_size
    secs = time.perf_counter() - start
    ips = done / secs
    gf = ips * fwd / 1e9
    return [
        Row(
            "vgg16_features_224",
            f"VGG16 conv part, batch {batch_size}",
            ips,
            gf,
            gf / matmul,
            seconds=secs,
            notes=f"{fwd / 2e9:.1f} GMAC/image",
        )
    ]


CASES = ("time_to_accuracy", "vgg16", "bn_epoch", "features", "memory", "lesson3")
DEFAULT_CASES = ("time_to_accuracy", "vgg16", "bn_epoch")
TTA_EPOCHS = {"full": 3, "quick": 2}  # cycles at most
NEEDS_DATA = {"time_to_accuracy", "vgg16", "bn_epoch"}


def run_bench(
    quick: bool = False,
    seed: int = 0,
    cases: tuple[str, ...] = DEFAULT_CASES,
    json_path: Optional[str] = None,
    fast: Optional[dict] = None,
    breakdown: bool = False,
    more: Optional[dict[str, Callable[[dict], list[Row]]]] = None,
) -> list[Row]:
    """Run `cases` in order of CASES, then those of `more` (name -> function of the context: data,
    matmul, seed, quick, breakdown, fast; a name of CASES there replaces fastcourse's case), print
    one table and the parsable lines, write the JSON."""
    more = more or {}
    report: dict = {"device": device_description(), "machine": machine_line()}
    ctx: dict = {"seed": seed, "quick": quick, "breakdown": breakdown, "fast": fast or FAST_TO_ACCURACY}
    rows: list[Row] = []
    if set(cases) & (NEEDS_DATA | set(more)):
        data = ctx["data"] = bench_data(quick)
        report["dataset"] = data.name
        print(
            f"bench: {data.name} ({len(data.x_train)} train / {len(data.x_test)} test) on {device_description()}",
            flush=True,
        )
        matmul = report["matmul_gflops"] = ctx["matmul"] = flops.matmul_gflops()
        print(f"bench: float32 matmul {matmul:.0f} GFLOP/s (the roofline)", flush=True)
    print(report["machine"], flush=True)
    if "time_to_accuracy" in cases and "time_to_accuracy" not in more:
        rows += time_to_accuracy_case(
            data, seed, ctx["fast"], max_epochs=TTA_EPOCHS["quick" if quick else "full"], breakdown=breakdown
        )
    if "vgg16" in cases:
        rows += vgg16_features_case(matmul, images=16 if quick else 64)
    if "bn_epoch" in cases:
        rows += bn_epoch_case(data, seed, epochs=3)
    if "features" in cases:
        rows += precision_rates(images=16 if quick else 32)  # VGG16 at 224 in float32 and bf16
        rows += features_case(images=16 if quick else 64, size=112 if quick else 224, epochs=2 if quick else 3)
    if "memory" in cases:
        rows += memory_case(QUICK_MEMORY_SIZES if quick else MEMORY_SIZES)
    if "lesson3" in cases:  # dogs vs cats minutes, before and after (fastcourse/bench/lesson3.py)
        rows += lesson3_case(images=16, size=112, jpeg_size=192, rounds=1) if quick else lesson3_case()
    for name, case in more.items():
        if name in cases:
            rows += case(ctx)
    print_table(rows)  # once, at the end: every case's rows together
    for r in rows:
        if "ratio_line" in r.extra:
            print(r.extra["ratio_line"], flush=True)
    if json_path:
        from fastcourse import io

        io.write_json(json_path, {**report, "rows": [asdict(r) for r in rows]})
        print(f"bench: JSON written to {json_path}")
    return rows
