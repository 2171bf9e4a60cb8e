"""`fastcourse bench`: fastcourse against its peer, measured in the same run.

The peer is the course's recipe in plain Keras 3: the ladder's batchnorm +
dropout CNN, `model.fit` at batch 64 with Adam 1e-3, fed by the legacy ImageDataGenerator
with the course's augmentation. Cases:

- `ladder`: one epoch each of the peer, fastcourse with the same augmentation and batch,
  fastcourse's tuned settings, and the same model with no augmentation at all (the ceiling).
  Images/s (steady state: the first steps, which trace the graph, are left out), achieved
  GFLOP/s, that as a fraction of a matrix multiply measured in the same run, clean test
  accuracy, and the ratio to the peer.
- `time_to_accuracy`: the peer trains its 5 epochs; fastcourse (a one-cycle schedule per epoch,
  larger batches, the precision `auto` picks) trains until it reaches the peer's final test
  accuracy, evaluated after each epoch once batchnorm statistics are recomputed (as fit() does
  at its end). Wall
  time of both (evaluation excluded) and the ratio, printed as `time-to-accuracy ratio: 8.4x`.
  Without Fashion-MNIST the bundled MNIST sample is used with a fixed target of 0.97.
  It first prints the precision `auto` chose and the measured speed of float32 and bf16.
- `vgg16`: VGG16 conv-part feature extraction at 224x224 (random weights).
- `features`: VGG16 conv features from a JPEG folder at 224x224 vs the same forward pass on
  in-memory tensors; a dense head on cached features vs on the frozen full model (epochs/s).
- `memory`: peak RSS and images/s of precomputing and training the batchnorm head through
  FeatureSource at 2,000 / 8,000 / 32,000 images, each size in a fresh process.

`--gpu` (`make bench-gpu`): the full 6 x 35-epoch ensemble with mixed_float16 on one GPU.

Output: a table, and the same rows as JSON (`--json PATH`).
"""
from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

import keras
import numpy as np

from fastcourse.lessons import flops
from fastcourse.data import ArrayDataset

COURSE_AUG = dict(rotation=8.0, shift=0.08, shear=0.3, zoom=0.08)


@dataclass
class Row:
    case: str
    contender: str
    images_per_second: float
    gflops: float = 0.0
    roofline_fraction: float = 0.0
    test_accuracy: Optional[float] = None
    seconds: float = 0.0
    ratio_to_peer: Optional[float] = None
    notes: str = ""
    wall_images_per_second: float = 0.0  # images / wall time of the whole fit (setup, tracing included)
    wall_ratio_to_peer: Optional[float] = None
    extra: dict = field(default_factory=dict)


class SteadyTimer(keras.callbacks.Callback):
    """Images/s over the steps after `skip` (tracing and warm-up are left out)."""

    def __init__(self, batch_size: int, skip: int = 10):
        super().__init__()
        self.batch_size, self.skip = batch_size, skip
        self.steps, self.t0, self.t1, self.n0, self.begin = 0, None, None, 0, None

    def on_train_begin(self, logs=None):
        self.begin = time.perf_counter()

    def on_train_end(self, logs=None):
        self.end = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        if self.steps == self.skip:
            self.t0, self.n0 = time.perf_counter(), self.steps
        self.t1 = time.perf_counter()

    def images_per_second(self, steps_per_call: int = 1) -> float:
        if self.t0 is None or self.steps <= self.n0:  # too few steps to skip any: time the whole fit
            params = self.params or {}
            steps = int(params.get("steps") or 0) * int(params.get("epochs") or 1)
            seconds = getattr(self, "end", 0.0) - (self.begin or 0.0)
            return steps * self.batch_size / seconds if steps and seconds > 0 else 0.0
        return (self.steps - self.n0) * self.batch_size * steps_per_call / (self.t1 - self.t0)


NO_FASHION = ("bench: Fashion-MNIST is not on this machine (get it: apt-get install dataset-fashion-mnist, "
              "or fastcourse data get fashion_mnist); using the bundled MNIST sample, target accuracy {target}")
SAMPLE_TARGET = 0.97  # the time-to-accuracy target on the bundled sample (no peer 5-epoch figure to use)


def bench_data(quick: bool) -> ArrayDataset:
    """Fashion-MNIST when it is installed, else the bundled digit sample (saying so in one
    line, with how to get Fashion-MNIST); cut for --quick."""
    from fastcourse.data import DATASETS
    from fastcourse.errors import DataError

    try:
        data = DATASETS.get("fashion_mnist")(download=False)
    except DataError:
        print(NO_FASHION.format(target=SAMPLE_TARGET), flush=True)
        data = DATASETS.get("mnist_sample")()
    if quick:
        data = data.limit(min(len(data.x_train), 6000), min(len(data.x_test), 2000))
    return data


def peer_model(data: ArrayDataset, plain_keras: bool = False) -> keras.Model:
    """The course's batchnorm + dropout CNN. `plain_keras` swaps fastcourse's fused BatchNorm for
    keras.layers.BatchNormalization (same config), so that the peer is Keras as users have it."""
    from fastcourse.models import build_model
    from fastcourse.models.blocks import BatchNorm

    mean, std = data.pixel_stats()
    model = build_model("cnn_bn_dropout", data.input_shape, data.num_classes, mean=mean, std=std)
    if not plain_keras:
        return model

    def keras_layer(layer):
        cls = keras.layers.BatchNormalization if isinstance(layer, BatchNorm) else layer.__class__
        return cls.from_config(layer.get_config())

    return keras.models.clone_model(model, clone_function=keras_layer)


def run_peer(data: ArrayDataset, epochs: int, seed: int, callbacks: Optional[list] = None):
    """The course recipe in plain Keras 3: legacy ImageDataGenerator -> model.fit, batch 64."""
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    keras.utils.set_random_seed(seed)
    gen = ImageDataGenerator(
        rotation_range=COURSE_AUG["rotation"], width_shift_range=COURSE_AUG["shift"],
        height_shift_range=COURSE_AUG["shift"], zoom_range=COURSE_AUG["zoom"],
        shear_range=float(np.degrees(COURSE_AUG["shear"])),  # the legacy generator takes degrees
    )
    y = np.eye(data.num_classes, dtype=np.float32)[data.y_train]
    batches = gen.flow(data.x_train.astype(np.float32), y, batch_size=64, seed=seed)
    model = peer_model(data, plain_keras=True)
    model.compile(keras.optimizers.Adam(1e-3), "categorical_crossentropy", metrics=["accuracy"])
    timer = SteadyTimer(64)
    start = time.perf_counter()
    model.fit(batches, steps_per_epoch=len(batches), epochs=epochs, verbose=0, callbacks=[timer, *(callbacks or [])])
    return model, timer.images_per_second(), time.perf_counter() - start


def run_fastcourse(data: ArrayDataset, epochs: int, seed: int, batch_size: int = 64,
                   augment: Optional[tuple[str, dict]] = ("course", {}), steps_per_execution: int = 1,
                   schedule: Optional[dict] = None, jit_compile: bool = False, deterministic: bool = False,
                   policy: str = "float32", epoch_eval: Optional[tuple[list, float]] = None,
                   bn_batches: int = 100, restarts: Optional[float] = None):
    """The same model through fastcourse's trainer; `policy` sets Keras' dtype policy directly
    (the bench measures bfloat16 and float32 side by side). With `epoch_eval` = (curve,
    target), each epoch ends with BN recalibration (timed) and a clean evaluation (not timed)
    appended to `curve`, and training stops once `target` is reached. With `restarts` (a
    factor), every epoch is one fit(epochs=1) call with its own whole schedule, the peak rate
    multiplied by `restarts` from one to the next: each evaluation sees an annealed model."""
    from fastcourse.data import augment as aug
    from fastcourse.config import TrainConfig
    from fastcourse.data.sources import ArraySource
    from fastcourse.train.trainer import fit, seed_everything

    clock = {"start": time.perf_counter(), "eval": 0.0}
    seed_everything(seed, deterministic=deterministic)
    schedule = schedule or {"name": "constant", "lr": 1e-3}

    def config(epochs: int, schedule: dict):
        return TrainConfig(
            epochs=epochs, batch_size=batch_size, verbose=0, steps_per_execution=steps_per_execution,
            jit_compile=jit_compile, validate_each_epoch=False, schedule=schedule,
            bn_recalibrate=0 if epoch_eval is not None else bn_batches,  # with epoch_eval, its callback does it
        )
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = peer_model(data)
        if policy != "float32":
            from fastcourse.train.devices import float32_outputs

            model = float32_outputs(model)
        timer = SteadyTimer(batch_size, skip=max(2, 10 // steps_per_execution))
        callbacks = [timer]
        source = ArraySource(data.x_train, data.y_train, data.num_classes)
        if epoch_eval is not None:
            from fastcourse.train.trainer import recalibrate

            recal = TrainConfig(batch_size=batch_size, bn_recalibrate=bn_batches)
            callbacks.append(EpochEval(data, clock, epoch_eval[0], epoch_eval[1], label="fastcourse",
                                       recalibrate=lambda m: recalibrate(m, source, recal, seed)))
        augmenter = aug.build(*augment) if augment else None
        if restarts and epoch_eval is not None:
            for k in range(epochs):
                peak = {**schedule, "max_lr": schedule["max_lr"] * restarts ** k}
                fit(model, source, config(1, peak), seed + k, augment=augmenter, callbacks=callbacks)
                if epoch_eval[0][-1][1] >= epoch_eval[1]:
                    break
        else:
            fit(model, source, config(epochs, schedule), seed, augment=augmenter, callbacks=callbacks)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    return model, timer.images_per_second(steps_per_execution), time.perf_counter() - clock["start"]


# Each choice of issue 6, measured alone against the batch-64 baseline (one epoch each).
KERAS_LAYERS_AUG = ("keras_layers", {"layers": [
    {"RandomRotation": {"factor": 8 / 360, "fill_mode": "nearest"}},
    {"RandomTranslation": {"height_factor": 0.08, "width_factor": 0.08, "fill_mode": "nearest"}},
    {"RandomShear": {"x_factor": 0.3, "y_factor": 0.3, "fill_mode": "nearest"}},
    {"RandomZoom": {"height_factor": 0.08, "width_factor": 0.08, "fill_mode": "nearest"}},
]})
CHOICES = [
    ("baseline: batch 64, one affine op per batch", {}),
    ("augmentation as 4 Keras preprocessing layers", {"augment": KERAS_LAYERS_AUG}),
    ("no augmentation", {"augment": None}),
    ("steps_per_execution 8", {"steps_per_execution": 8}),
    ("batch 128 + steps_per_execution 8", {"batch_size": 128, "steps_per_execution": 8}),
    ("batch 256 + steps_per_execution 8", {"batch_size": 256, "steps_per_execution": 8}),
    ("XLA (jit_compile), batch 128 + spe 8", {"batch_size": 128, "steps_per_execution": 8, "jit_compile": True}),
    ("mixed_bfloat16, batch 128 + spe 8", {"batch_size": 128, "steps_per_execution": 8,
                                           "policy": "mixed_bfloat16"}),
    ("op determinism on, batch 128 + spe 8", {"batch_size": 128, "steps_per_execution": 8,
                                               "deterministic": True}),
]


def choices_case(data: ArrayDataset, matmul: float, seed: int, images: int = 15000) -> list[Row]:
    """Throughput of each choice on the first `images` training images (one epoch each)."""
    data = data.limit(images, None)
    train_flops = flops.train_flops_per_image(peer_model(data))
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


def accuracy(model: keras.Model, data: ArrayDataset) -> float:
    from fastcourse.data.sources import ArraySource
    from fastcourse.train.trainer import predict

    probs = predict(model, ArraySource(data.x_test, None, data.num_classes))
    return float((probs.argmax(1) == data.y_test).mean())


def warm_up(data: ArrayDataset, seed: int) -> None:
    """Pay TensorFlow's one-time start-up costs (kernels, thread pools) before any timing, so
    that no contender carries them. (The peer's slow first epoch is not that: it stays at about
    84 s wall against 42 s of steady stepping with or without this; the legacy generator's fit
    path spends the rest outside the steady steps.)"""
    small = data.limit(1024, 256)
    run_peer(small, 1, seed)
    run_fastcourse(small, 1, seed)


def ladder_case(data: ArrayDataset, matmul: float, seed: int, tuned: dict) -> list[Row]:
    train_flops = flops.train_flops_per_image(peer_model(data))
    warm_up(data, seed)

    def row(contender, ips, model, seconds, notes=""):
        gf = ips * train_flops / 1e9
        return Row("ladder_cnn_1_epoch", contender, ips, gf, gf / matmul, accuracy(model, data), seconds, notes=notes,
                   wall_images_per_second=len(data.x_train) / seconds)

    rows = []
    model, ips, secs = run_peer(data, 1, seed)
    rows.append(row("peer: Keras fit + legacy ImageDataGenerator, batch 64", ips, model, secs))
    model, ips, secs = run_fastcourse(data, 1, seed)
    rows.append(row("fastcourse, course augmentation, batch 64", ips, model, secs))
    model, ips, secs = run_fastcourse(data, 1, seed, **tuned)
    rows.append(row(f"fastcourse, course augmentation, tuned: {_describe(tuned)}", ips, model, secs))
    model, ips, secs = run_fastcourse(data, 1, seed, augment=None, batch_size=tuned.get("batch_size", 64),
                                      steps_per_execution=tuned.get("steps_per_execution", 1),
                                      schedule=tuned.get("schedule"))
    rows.append(row("same model and settings, no augmentation (the ceiling)", ips, model, secs))
    peer_ips, peer_wall = rows[0].images_per_second, rows[0].wall_images_per_second
    for r in rows:
        r.ratio_to_peer = r.images_per_second / peer_ips if peer_ips else None
        r.wall_ratio_to_peer = r.wall_images_per_second / peer_wall if peer_wall else None
    return rows


def _describe(options: dict) -> str:
    parts = [f"batch {options.get('batch_size', 64)}", f"spe {options.get('steps_per_execution', 1)}"]
    if "augment" in options:
        parts.append(f"augment {options['augment'][0] if options['augment'] else 'none'}")
    if options.get("schedule"):
        parts.append(", ".join(f"{k} {v}" for k, v in options["schedule"].items()))
    return ", ".join(parts)


def time_to_reach(curve: list[tuple[float, float]], target: float) -> Optional[float]:
    """Seconds at the first evaluation whose accuracy reaches `target` (curve: (seconds,
    accuracy) after each epoch, in order); None when it never does."""
    for seconds, acc in curve:
        if acc >= target - 1e-9:
            return float(seconds)
    return None


def speedup(peer_seconds: Optional[float], our_seconds: Optional[float]) -> Optional[float]:
    """How many times faster fastcourse reached the target (peer time / our time)."""
    if not peer_seconds or not our_seconds:
        return None
    return float(peer_seconds) / float(our_seconds)


def ratio_line(ratio: Optional[float], note: str = "") -> str:
    """The one parsable line: `time-to-accuracy ratio: 8.4x` (`not reached` when fastcourse
    missed the target; a `>=` bound when the peer itself missed a fixed target)."""
    text = "not reached" if ratio is None else f"{ratio:.1f}x"
    return f"time-to-accuracy ratio: {text}" + (f" ({note})" if note else "")


class EpochEval(keras.callbacks.Callback):
    """After each epoch: recompute BN statistics (as fit() does at its end; timed as training)
    and evaluate on the clean test set (not timed). Stops training at `target`.

    Recomputing the moving statistics in the live model changes nothing in training (training
    normalises with batch statistics); it only makes the inference-mode model the one fit()
    would return if it stopped here."""

    def __init__(self, data: ArrayDataset, clock: dict, curve: list, target: Optional[float] = None,
                 recalibrate: Optional[Callable] = None, label: str = ""):
        super().__init__()
        self.data, self.clock, self.curve, self.target = data, clock, curve, target
        self.recal, self.label = recalibrate, label

    def on_epoch_end(self, epoch, logs=None):
        if self.recal is not None:
            self.recal(self.model)  # part of the training cost: fit() pays it too
        t0 = time.perf_counter()
        elapsed = t0 - self.clock["start"] - self.clock["eval"]
        acc = accuracy(self.model, self.data)
        self.clock["eval"] += time.perf_counter() - t0
        self.curve.append((elapsed, acc))
        print(f"  {self.label} epoch {len(self.curve)}: {elapsed:.1f} s, test accuracy {acc:.4f}", flush=True)
        if self.target is not None and acc >= self.target:
            self.model.stop_training = True


def precision_speeds(data: ArrayDataset, seed: int, images: int = 4096, batch_size: int = 256) -> dict:
    """Measured training images/s of float32 and mixed_bfloat16 (same model, no augmentation)."""
    small = data.limit(images, 256)
    out = {}
    for policy in ("float32", "mixed_bfloat16"):
        _, ips, _ = run_fastcourse(small, 2, seed, batch_size=batch_size, steps_per_execution=4, augment=None,
                                   policy=policy, schedule={"name": "constant", "lr": 1e-3})
        out[policy] = ips
    return out


def time_to_accuracy_case(data: ArrayDataset, seed: int, peer_epochs: int, tuned: dict,
                          max_epochs: int, target: Optional[float] = None) -> list[Row]:
    """Wall time until the peer's final test accuracy (or a fixed `target`) is reached.

    Both sides: evaluation time excluded; model building, tracing and (fastcourse) batchnorm
    recalibration included. The peer's time is its time to reach the target (at most its
    `peer_epochs`); fastcourse runs one one-cycle schedule over `max_epochs` and stops at
    the first epoch that reaches the target."""
    from fastcourse.train.precision import resolve_precision

    policy, reason = resolve_precision(tuned.get("policy", "auto"))
    print(f"bench: precision {policy} ({reason})", flush=True)
    speeds = precision_speeds(data, seed)
    print("bench: measured training speed: " + ", ".join(f"{k} {v:.0f} images/s" for k, v in speeds.items())
          + f" (bf16/float32 {speeds['mixed_bfloat16'] / speeds['float32']:.2f}x)", flush=True)

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

    options = {"batch_size": tuned["batch_size"], "steps_per_execution": tuned["steps_per_execution"],
               "schedule": {"name": "one_cycle", "max_lr": tuned["max_lr"]},
               "augment": tuned.get("augment", ("course", {})), "policy": policy,
               "bn_batches": tuned.get("bn_batches", 100), "restarts": tuned.get("restarts")}
    plan = (f"a one-epoch cycle per epoch, peak x{options['restarts']:g} each time, at most {max_epochs}"
            if options["restarts"] else f"one-cycle over {max_epochs} epoch(s)")
    print(f"time to accuracy: fastcourse, target {target:.4f}, {_describe(options)}, {policy}, {plan}", flush=True)
    ours: list[tuple[float, float]] = []
    run_fastcourse(data, max_epochs, seed, **options, epoch_eval=(ours, target))
    our_time = time_to_reach(ours, target)
    ratio = speedup(peer_time, our_time)
    rows = [
        Row("time_to_accuracy", f"peer: course recipe, batch 64, {peer_epochs} epochs", 0.0,
            test_accuracy=peer_curve[-1][1], seconds=peer_time, ratio_to_peer=1.0,
            notes=f"target {target:.4f}" + (" (fixed)" if fixed else " (its final accuracy)"),
            extra={"curve": peer_curve}),
        Row("time_to_accuracy", f"fastcourse: {_describe(options)}, {policy}, {plan}", 0.0,
            test_accuracy=max(a for _, a in ours), seconds=our_time or ours[-1][0], ratio_to_peer=ratio,
            notes=(f"reached after {len(ours)} epoch(s)" if our_time else "NOT reached"),
            extra={"curve": ours, "precision": policy, "precision_speeds": speeds, "target": target}),
    ]
    print_table(rows)
    print(ratio_line(ratio, peer_note if our_time else ""), flush=True)
    return rows


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
    return [Row("vgg16_features_224", f"VGG16 conv part, batch {batch_size}", ips, gf, gf / matmul,
                seconds=secs, notes=f"{fwd / 2e9:.1f} GMAC/image")]


def device_description() -> str:
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return f"{len(gpus)} GPU(s)" if gpus else f"CPU ({os.cpu_count()} cores)"


CASES = ("ladder", "choices", "time_to_accuracy", "vgg16", "features", "memory")
DEFAULT_CASES = ("ladder", "choices", "time_to_accuracy", "vgg16")
# fastcourse's tuned settings for one epoch of the ladder CNN. Batch 64 stays: at batch 128 one
# epoch makes half the updates and ended at 0.70 test accuracy against 0.82 (Fashion-MNIST,
# constant 1e-3); one-cycle at 3e-3 reached 0.869 after one epoch (the peer: 0.857).
TUNED = {"batch_size": 64, "steps_per_execution": 8, "schedule": {"name": "one_cycle", "max_lr": 3e-3}}
# Time to the peer's 5-epoch accuracy: every epoch is a whole one-cycle schedule (one fit(epochs=1)
# call, peak 6e-3, halved at each restart), so each evaluation sees an annealed model; batch 128,
# steps_per_execution 8, the precision `auto` picks, BN statistics from 20 clean batches, no
# augmentation (it pays over long runs, not in the first epochs). Measured on Fashion-MNIST while
# choosing: one epoch at batch 128 / 6e-3 reached 0.904; at batch 256 / 1e-2 0.901, 256 / 6e-3
# 0.898; a 2-epoch cycle at 256 / 6e-3 0.896 after its first epoch and 0.914 after the second
# (the peer's 5 epochs: 0.902).
FAST_TO_ACCURACY = {"batch_size": 128, "steps_per_execution": 8, "max_lr": 6e-3, "augment": None,
                    "bn_batches": 20, "policy": "auto", "restarts": 0.5}
TTA_EPOCHS = {"full": (5, 3), "quick": (2, 2)}  # (peer epochs, fastcourse epochs at most)


def run_bench(quick: bool = False, seed: int = 0, cases: tuple[str, ...] = DEFAULT_CASES,
              json_path: Optional[str] = None, tuned: Optional[dict] = None,
              fast: Optional[dict] = None) -> list[Row]:
    tuned, fast = tuned or TUNED, fast or FAST_TO_ACCURACY
    report: dict = {"device": device_description()}
    rows: list[Row] = []
    if set(cases) & {"ladder", "choices", "time_to_accuracy", "vgg16"}:
        data = bench_data(quick)
        report["dataset"] = data.name
        print(f"bench: {data.name} ({len(data.x_train)} train / {len(data.x_test)} test) on {device_description()}",
              flush=True)
        matmul = report["matmul_gflops"] = flops.matmul_gflops()
        print(f"bench: float32 matmul {matmul:.0f} GFLOP/s (the roofline)", flush=True)
    if "ladder" in cases:
        rows += ladder_case(data, matmul, seed, tuned)
        print_table(rows)
    if "choices" in cases:
        rows += choices_case(data, matmul, seed)
        print_table(rows)
    if "time_to_accuracy" in cases:
        peer_epochs, epochs = TTA_EPOCHS["quick" if quick else "full"]
        rows += time_to_accuracy_case(data, seed, peer_epochs=peer_epochs, tuned=fast, max_epochs=epochs,
                                      target=None if data.name.startswith("fashion") else SAMPLE_TARGET)
    if "vgg16" in cases:
        rows += vgg16_features_case(matmul, images=16 if quick else 64)
    if "features" in cases:
        rows += features_case(images=16 if quick else 64, size=112 if quick else 224, epochs=2 if quick else 3)
    if "memory" in cases:
        rows += memory_case(QUICK_MEMORY_SIZES if quick else MEMORY_SIZES)
    print_table(rows)
    if json_path:
        from fastcourse import io

        io.write_json(json_path, {**report, "rows": [asdict(r) for r in rows]})
        print(f"bench: JSON written to {json_path}")
    return rows


def print_table(rows: list[Row]) -> None:
    import pandas as pd

    table = pd.DataFrame([{
        "case": r.case, "contender": r.contender,
        "images/s (steady)": round(r.images_per_second, 1) if r.images_per_second else "",
        "images/s (wall)": round(r.wall_images_per_second, 1) if r.wall_images_per_second else "",
        "GFLOP/s": round(r.gflops, 1) if r.gflops else "",
        "of matmul": f"{r.roofline_fraction:.0%}" if r.roofline_fraction else "",
        "test acc": f"{r.test_accuracy:.4f}" if r.test_accuracy is not None else "",
        "seconds": round(r.seconds, 1),
        "vs peer (steady)": f"{r.ratio_to_peer:.2f}x" if r.ratio_to_peer else "",
        "vs peer (wall)": f"{r.wall_ratio_to_peer:.2f}x" if r.wall_ratio_to_peer else "",
        "notes": r.notes,
    } for r in rows])
    if table.empty:
        return
    with pd.option_context("display.max_colwidth", 70, "display.width", 250):
        print(table.to_string(index=False), flush=True)


# --- features: decoding vs in-memory forward passes, cached features vs the frozen model ----

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


def features_case(images: int = 64, size: int = 224, batch_size: int = 16, epochs: int = 3,
                  units: int = 256, rounds: int = 3) -> list[Row]:
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
            precompute_features(conv, source.take(batch_size), f"{tmp}/warm-{i}", batch_size=batch_size,
                                verbose=False)  # trace once: the figure is the steady state
        # interleaved rounds, best of each side: a shared machine's noise hits both alike
        timings: dict[str, float] = {}
        for r in range(rounds):
            for i, (label, source) in enumerate(sides.items() if r % 2 == 0 else reversed(sides.items())):
                t0 = time.perf_counter()
                paths = precompute_features(conv, source, f"{tmp}/cache-{r}-{i}", batch_size=batch_size,
                                            verbose=False)
                timings[label] = min(timings.get(label, float("inf")), time.perf_counter() - t0)
        for label in sides:
            rows.append(Row(f"features_vgg16_{size}", f"VGG16 conv features from {label}", images / timings[label],
                            seconds=timings[label]))
        base = rows[0].images_per_second
        for r in rows:
            r.notes = f"{r.images_per_second / base:.2f}x in-memory"
        train = TrainConfig(epochs=epochs + 1, batch_size=batch_size, verbose=0, validate_each_epoch=False,
                            bn_recalibrate=0)
        shape = tuple(conv.output_shape[1:])
        cached = fit(dense_head(shape, 2, units=units, dropout=0.5),
                     FeatureSource([FeaturePart(p, labels) for p in paths], 2), train, 0)
        full = attach_head(conv, dense_head(shape, 2, units=units, dropout=0.5))
        set_trainable(full, "head")
        frozen = fit(full, folder, train, 0)
    cached_eps = 1.0 / float(np.median(cached.epoch_seconds[1:]))
    frozen_eps = 1.0 / float(np.median(frozen.epoch_seconds[1:]))
    rows.append(Row("features_head", "dense head on the frozen full model (JPEG folder)", images * frozen_eps,
                    seconds=1.0 / frozen_eps, ratio_to_peer=1.0, notes=f"{frozen_eps:.3f} epochs/s"))
    rows.append(Row("features_head", "the same head on cached features", images * cached_eps,
                    seconds=1.0 / cached_eps, ratio_to_peer=cached_eps / frozen_eps,
                    notes=f"{cached_eps:.2f} epochs/s; {cached_eps / frozen_eps:.0f}x the frozen model "
                          "(target >= 20x)"))
    return rows


# --- memory: peak RSS of features + head training through FeatureSource -----------------

MEMORY_SIZES = (2000, 8000, 32000)
QUICK_MEMORY_SIZES = (500, 2000)


def memory_child(n: int, workdir: str, size: int = 112, distinct: int = 256, batch_size: int = 64,
                 units: int = 1024, epochs: int = 2) -> dict:
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
    (clean,) = precompute_features(conv, FolderSource(files, labels, 2, (size, size)), work / "cache",
                                   batch_size=32, dtype="float16", verbose=False)
    precompute_s = time.perf_counter() - t0
    feats = np.load(clean)  # `distinct` rows: a few MB
    path = work / f"features-{n}.npy"
    with open(path, "wb") as f:
        np.lib.format.write_array_header_2_0(f, {"descr": np.lib.format.dtype_to_descr(feats.dtype),
                                                 "fortran_order": False, "shape": (n, *feats.shape[1:])})
        block = feats.tobytes()
        for start in range(0, n, distinct):
            f.write(block[: min(distinct, n - start) * feats[0].nbytes])
    del feats
    y = labels[np.arange(n) % distinct]
    seed_everything(0, deterministic=False)
    source = FeatureSource([FeaturePart(path, y)], 2)
    head = dense_head(tuple(source.input_shape), 2, units=units, dropout=0.6, batchnorm=True)
    result = fit(head, source, TrainConfig(epochs=epochs, batch_size=batch_size, verbose=0, validate_each_epoch=False),
                 0)
    status = _proc_status()  # now, after training: anonymous memory vs pages of mapped files
    path.unlink()
    return {"images": n, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
            "rss_anon_mb": status.get("RssAnon", 0.0), "rss_file_mb": status.get("RssFile", 0.0),
            "images_per_second": n / result.epoch_seconds[-1], "features_file_mb": n * source.input_shape[0]
            * source.input_shape[1] * source.input_shape[2] * 2 / 2**20, "precompute_seconds": precompute_s}


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

    code = ("import json, sys; from fastcourse.lessons.bench import memory_child; "
            f"print('MEMORY ' + json.dumps(memory_child({int(n)}, {str(workdir)!r}, **{options!r})))")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("MEMORY ")]
    if proc.returncode != 0 or not lines:
        from fastcourse.errors import RunError

        raise RunError(f"memory bench at {n} images failed (exit {proc.returncode}): {proc.stderr.strip()[-600:]}")
    return json.loads(lines[-1][len("MEMORY "):])


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
            rows.append(Row("memory_feature_head", f"batchnorm head on FeatureSource, {n} images",
                            m["images_per_second"], seconds=n / m["images_per_second"],
                            extra={k: m.get(k, 0.0) for k in ("peak_rss_mb", "features_file_mb", "rss_anon_mb",
                                                                  "rss_file_mb")}))
    base = rows[0].extra["peak_rss_mb"]
    for r in rows:
        rss = r.extra["peak_rss_mb"]
        r.notes = (f"peak RSS {rss:.0f} MB ({rss / base:.2f}x the smallest; at the end {r.extra['rss_anon_mb']:.0f} "
                   f"MB anonymous + {r.extra['rss_file_mb']:.0f} MB mapped files), "
                   f"features file {r.extra['features_file_mb']:.0f} MB")
    growth = rows[-1].extra["peak_rss_mb"] / base
    ok = growth <= 1.25 and rows[-1].extra["peak_rss_mb"] < 3 * 1024
    print(f"memory: peak RSS at {sizes[-1]} images is {growth:.2f}x that at {sizes[0]} "
          f"({'within' if ok else 'NOT within'} the target: <= 1.25x and under 3 GB)", flush=True)
    return rows


# --- --gpu: the full ensemble on one GPU -------------------------------------------------

GPU_SKIP = "bench --gpu: no GPU on this machine; skipped (the 6 x 35-epoch ensemble with mixed_float16 needs one)"


def gpu_ensemble(dataset: str = "fashion_mnist", members: int = 6, epochs: int = 35, seed: int = 0,
                 batch_size: int = 256, max_lr: float = 6e-3) -> Optional[dict]:
    """6 x 35 epochs of the batchnorm + dropout CNN with the course augmentation, mixed_float16,
    one-cycle, test probabilities averaged. Prints minutes and accuracy; without a GPU prints
    one line and returns None."""
    from fastcourse.train.precision import has_gpu

    if not has_gpu():
        print(GPU_SKIP, flush=True)
        return None
    from fastcourse.config import TrainConfig
    from fastcourse.data import DATASETS
    from fastcourse.data import augment as aug
    from fastcourse.data.sources import ArraySource
    from fastcourse.train.devices import float32_outputs, training_scope
    from fastcourse.train.trainer import fit, predict, seed_everything

    data = DATASETS.get(dataset)(download=False)
    train = TrainConfig(epochs=epochs, batch_size=batch_size, verbose=0, steps_per_execution=16,
                        validate_each_epoch=False, precision="mixed_float16",
                        schedule={"name": "one_cycle", "max_lr": max_lr})
    source = ArraySource(data.x_train, data.y_train, data.num_classes)
    test = ArraySource(data.x_test, None, data.num_classes)
    start, probs, accs = time.perf_counter(), [], []
    for m in range(members):
        with training_scope("mixed_float16", "none"):
            seed_everything(seed + m, deterministic=False)
            model = float32_outputs(peer_model(data))
            fit(model, source, train, seed + m, augment=aug.build("course", {}))
        probs.append(predict(model, test))
        accs.append(float((probs[-1].argmax(1) == data.y_test).mean()))
        print(f"bench --gpu: member {m + 1}/{members}: test accuracy {accs[-1]:.4f}, "
              f"{(time.perf_counter() - start) / 60:.1f} min so far", flush=True)
    acc = float((np.mean(probs, 0).argmax(1) == data.y_test).mean())
    minutes = (time.perf_counter() - start) / 60
    print(f"bench --gpu: {data.name}, {members} x {epochs} epochs, mixed_float16: {minutes:.1f} minutes, "
          f"ensemble test accuracy {acc:.4f} (members {np.mean(accs):.4f} mean)", flush=True)
    return {"dataset": data.name, "minutes": minutes, "ensemble_accuracy": acc, "member_accuracy": accs}
