"""The comparisons of `make bench` (`python -m benchmarks`): fastcourse against the peer, the
course's recipe in plain Keras 3 (benchmarks/peer.py), measured in the same run.

- `ladder`: one epoch each of the peer, fastcourse with the same augmentation and batch,
  fastcourse's tuned settings, and the same model with no augmentation at all (the ceiling).
  Images/s (steady state: the first steps, which trace the graph, are left out), achieved
  GFLOP/s, that as a fraction of a matrix multiply measured in the same run, clean test
  accuracy, and the ratio to the peer.
- `choices`: each of fastcourse's choices measured alone against the batch-64 baseline (one epoch).
- `time_to_accuracy`: the peer trains its 5 epochs; fastcourse's time-to-accuracy recipe
  (`fastcourse bench --cases time_to_accuracy`) trains until it reaches the peer's final test
  accuracy. Wall time of both (evaluation excluded) and the ratio, printed as
  `time-to-accuracy ratio: 8.4x`. Without Fashion-MNIST the bundled MNIST sample is used with a
  fixed target of 0.97.
- `fastai` (`make bench-fastai`): benchmarks/fastai_peer.py.
"""

from __future__ import annotations

import time
from typing import Optional

from benchmarks.peer import run_peer, warm_up
from fastcourse.bench import flops
from fastcourse.bench.cases import time_to_accuracy_case
from fastcourse.bench.recipe import SAMPLE_TARGET, EpochEval, accuracy, course_model, run_fastcourse
from fastcourse.bench.report import Row, describe, machine_line, ratio_line, speedup, time_to_reach
from fastcourse.data import ArrayDataset

# Each choice of issue 6, measured alone against the batch-64 baseline (one epoch each).
KERAS_LAYERS_AUG = (
    "keras_layers",
    {
        "layers": [
            {"RandomRotation": {"factor": 8 / 360, "fill_mode": "nearest"}},
            {"RandomTranslation": {"height_factor": 0.08, "width_factor": 0.08, "fill_mode": "nearest"}},
            {"RandomShear": {"x_factor": 0.3, "y_factor": 0.3, "fill_mode": "nearest"}},
            {"RandomZoom": {"height_factor": 0.08, "width_factor": 0.08, "fill_mode": "nearest"}},
        ]
    },
)
CHOICES = [
    ("baseline: batch 64, one affine op per batch", {}),
    ("augmentation as 4 Keras preprocessing layers", {"augment": KERAS_LAYERS_AUG}),
    ("no augmentation", {"augment": None}),
    ("steps_per_execution 8", {"steps_per_execution": 8}),
    ("batch 128 + steps_per_execution 8", {"batch_size": 128, "steps_per_execution": 8}),
    ("batch 256 + steps_per_execution 8", {"batch_size": 256, "steps_per_execution": 8}),
    ("XLA (jit_compile), batch 128 + spe 8", {"batch_size": 128, "steps_per_execution": 8, "jit_compile": True}),
    ("mixed_bfloat16, batch 128 + spe 8", {"batch_size": 128, "steps_per_execution": 8, "policy": "mixed_bfloat16"}),
    ("op determinism on, batch 128 + spe 8", {"batch_size": 128, "steps_per_execution": 8, "deterministic": True}),
]


def choices_case(data: ArrayDataset, matmul: float, seed: int, images: int = 15000) -> list[Row]:
    """Throughput of each choice on the first `images` training images (one epoch each)."""
    data = data.limit(images, None)
    train_flops = flops.train_flops_per_image(course_model(data))
    rows = []
    for label, options in CHOICES:
        print(f"choices: {label}", flush=True)
        _, ips, secs = run_fastcourse(data, 1, seed, **options)
        gf = ips * train_flops / 1e9
        rows.append(Row("choices_1_epoch", label, ips, gf, gf / matmul, seconds=secs))
    base = rows[0].images_per_second
    for r in rows:
        r.notes = f"{r.images_per_second / base:.2f}x baseline" if base else ""
    return rows


def ladder_case(data: ArrayDataset, matmul: float, seed: int, tuned: dict) -> list[Row]:
    train_flops = flops.train_flops_per_image(course_model(data))
    warm_up(data, seed)

    def row(contender, ips, model, seconds, notes=""):
        gf = ips * train_flops / 1e9
        return Row(
            "ladder_cnn_1_epoch",
            contender,
            ips,
            gf,
            gf / matmul,
            accuracy(model, data),
            seconds,
            notes=notes,
            wall_images_per_second=len(data.x_train) / seconds,
        )

    rows = []
    model, ips, secs = run_peer(data, 1, seed)
    rows.append(row("peer: Keras fit + legacy ImageDataGenerator, batch 64", ips, model, secs))
    model, ips, secs = run_fastcourse(data, 1, seed)
    rows.append(row("fastcourse, course augmentation, batch 64", ips, model, secs))
    model, ips, secs = run_fastcourse(data, 1, seed, **tuned)
    rows.append(row(f"fastcourse, course augmentation, tuned: {describe(tuned)}", ips, model, secs))
    model, ips, secs = run_fastcourse(
        data,
        1,
        seed,
        augment=None,
        batch_size=tuned.get("batch_size", 64),
        steps_per_execution=tuned.get("steps_per_execution", 1),
        schedule=tuned.get("schedule"),
    )
    rows.append(row("same model and settings, no augmentation (the ceiling)", ips, model, secs))
    peer_ips, peer_wall = rows[0].images_per_second, rows[0].wall_images_per_second
    for r in rows:
        r.ratio_to_peer = r.images_per_second / peer_ips if peer_ips else None
        r.wall_ratio_to_peer = r.wall_images_per_second / peer_wall if peer_wall else None
    return rows


def peer_time_to_accuracy_case(
    data: ArrayDataset,
    seed: int,
    peer_epochs: int,
    fast: dict,
    max_epochs: int,
    target: Optional[float] = None,
    breakdown: bool = False,
) -> list[Row]:
    """The peer's `peer_epochs`, then fastcourse's recipe to the peer's final accuracy (or a
    fixed `target`); both evaluation excluded, model building and tracing included. The peer's
    time is its time to reach the target (at most its `peer_epochs`)."""
    print(f"time to accuracy: peer, {peer_epochs} epochs", flush=True)
    peer_curve: list[tuple[float, float]] = []
    clock = {"start": time.perf_counter(), "eval": 0.0}
    run_peer(data, peer_epochs, seed, callbacks=[EpochEval(data, clock, peer_curve, target, label="peer")])
    fixed = target is not None
    target = target if fixed else peer_curve[-1][1]
    peer_time = time_to_reach(peer_curve, target)
    peer_note = ""
    if peer_time is None:  # a fixed target the peer missed: its whole run is a lower bound
        peer_time = peer_curve[-1][0]
        peer_note = f"the peer did not reach {target:.4f} in {peer_epochs} epochs: a lower bound"
    (ours,) = time_to_accuracy_case(data, seed, fast, max_epochs=max_epochs, target=target, breakdown=breakdown)
    reached = not ours.notes.startswith("NOT")
    ours.ratio_to_peer = speedup(peer_time, ours.seconds if reached else None)
    ours.extra["ratio_line"] = ratio_line(ours.ratio_to_peer, peer_note if reached else "") + f" | {machine_line()}"
    peer = Row(
        "time_to_accuracy",
        f"peer: course recipe, batch 64, {peer_epochs} epochs",
        0.0,
        test_accuracy=peer_curve[-1][1],
        seconds=peer_time,
        ratio_to_peer=1.0,
        notes=f"target {target:.4f}" + (" (fixed)" if fixed else " (its final accuracy)"),
        extra={"curve": peer_curve},
    )
    return [peer, ours]


# fastcourse's tuned settings for one epoch of the ladder CNN. Batch 64 stays: at batch 128 one
# epoch makes half the updates and ended at 0.70 test accuracy against 0.82 (Fashion-MNIST,
# constant 1e-3); one-cycle at 3e-3 reached 0.869 after one epoch (the peer: 0.857).
TUNED = {"batch_size": 64, "steps_per_execution": 8, "schedule": {"name": "one_cycle", "max_lr": 3e-3}}
PEER_EPOCHS = {"full": (5, 3), "quick": (2, 2)}  # (peer epochs, fastcourse cycles at most)


def _ladder(ctx: dict) -> list[Row]:
    return ladder_case(ctx["data"], ctx["matmul"], ctx["seed"], TUNED)


def _choices(ctx: dict) -> list[Row]:
    return choices_case(ctx["data"], ctx["matmul"], ctx["seed"])


def _time_to_accuracy(ctx: dict) -> list[Row]:
    data = ctx["data"]
    peer_epochs, epochs = PEER_EPOCHS["quick" if ctx["quick"] else "full"]
    return peer_time_to_accuracy_case(
        data,
        ctx["seed"],
        peer_epochs=peer_epochs,
        fast=ctx["fast"],
        max_epochs=epochs,
        target=None if data.name.startswith("fashion") else SAMPLE_TARGET,
        breakdown=ctx["breakdown"],
    )


def _fastai(ctx: dict) -> list[Row]:
    from benchmarks.fastai_peer import fastai_case

    return fastai_case(ctx["data"], seeds=(0,) if ctx["quick"] else (0, 1, 2), breakdown=ctx["breakdown"])


# The comparison cases, run by fastcourse.bench.cases.run_bench after fastcourse's own; a name
# here that fastcourse also has (time_to_accuracy) replaces fastcourse's alone-version.
COMPARISONS = {"ladder": _ladder, "choices": _choices, "time_to_accuracy": _time_to_accuracy, "fastai": _fastai}
