"""fastcourse's side of every measurement: the data, the course's CNN, training it through the
trainer with the bench's timers, and the time-to-accuracy recipe (`FAST_TO_ACCURACY`)."""

from __future__ import annotations

import time
from typing import Callable, Optional

import keras
import numpy as np

from fastcourse.data import ArrayDataset


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


class PhaseClock(keras.callbacks.Callback):
    """The marks `fastcourse.bench.breakdown.phases` splits a fit() call's seconds by: when the
    call began (set by the caller), when Keras began training, when the first execution (the
    traced function's first call: tracing and `steps_per_execution` steps) and each epoch ended,
    and how many images each epoch trained. The steady rate counts, in each fit call, the
    executions after the first `skip` (SteadyTimer's rule), so that the time between calls
    (batchnorm statistics, evaluation, the next call's tracing) is never in it."""

    def __init__(self, batch_size: int, steps_per_execution: int):
        super().__init__()
        self.batch_size, self.spe = batch_size, steps_per_execution
        self.skip = max(2, 10 // steps_per_execution)
        self.fits: list[dict] = []
        self.steady_images, self.steady_seconds = 0, 0.0

    def start(self) -> None:
        self.fits.append({"call": time.perf_counter(), "images": 0})
        self.executions, self.t0 = 0, None

    def on_train_begin(self, logs=None):
        self.fits[-1]["begin"] = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        now, fit = time.perf_counter(), self.fits[-1]
        self.executions += 1
        if "first" not in fit:
            fit["first"] = now
            fit["first_images"] = self.spe * self.batch_size
        if self.executions == self.skip:
            self.t0 = self.last = now
        elif self.t0 is not None:
            self.steady_images += self.spe * self.batch_size
            self.steady_seconds += now - self.last
            self.last = now

    def images_per_second(self) -> float:
        return self.steady_images / self.steady_seconds if self.steady_seconds > 0 else 0.0

    def on_epoch_end(self, epoch, logs=None):  # before EpochEval's BN statistics and evaluation
        fit = self.fits[-1]
        fit["images"] += int((self.params or {}).get("steps") or 0) * self.batch_size
        fit["end"] = time.perf_counter()


NO_FASHION = (
    "bench: Fashion-MNIST is not on this machine (get it: apt-get install dataset-fashion-mnist, "
    "or fastcourse data get fashion_mnist); using the bundled MNIST sample, target accuracy {target}"
)
SAMPLE_TARGET = 0.97  # the time-to-accuracy target on the bundled sample (no peer 5-epoch figure to use)
# The plain-Keras peer's clean test accuracy after its 5 epochs (the course's recipe, batch 64),
# measured on Fashion-MNIST on a 2-core AMD EPYC (docs/performance.md): the time-to-accuracy target.
FASHION_TARGET = 0.8981


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


def target_for(data: ArrayDataset) -> float:
    """The time-to-accuracy target: FASHION_TARGET on Fashion-MNIST, SAMPLE_TARGET otherwise."""
    return FASHION_TARGET if data.name.startswith("fashion") else SAMPLE_TARGET


def course_model(data: ArrayDataset) -> keras.Model:
    """The course's batchnorm + dropout CNN (`cnn_bn_dropout`), normalised by the data's pixel statistics."""
    from fastcourse.models import build_model

    mean, std = data.pixel_stats()
    return build_model("cnn_bn_dropout", data.input_shape, data.num_classes, mean=mean, std=std)


def run_fastcourse(
    data: ArrayDataset,
    epochs: int,
    seed: int,
    batch_size: int = 64,
    augment: Optional[tuple[str, dict]] = ("course", {}),
    steps_per_execution: int = 1,
    schedule: Optional[dict] = None,
    jit_compile: bool = False,
    deterministic: bool = False,
    policy: str = "float32",
    epoch_eval: Optional[tuple[list, float]] = None,
    bn_batches: int = 100,
    restarts: Optional[float] = None,
    fraction: float = 1.0,
    train_options: Optional[dict] = None,
    marks: Optional[dict] = None,
):
    """The course's CNN through fastcourse's trainer; `policy` sets Keras' dtype policy directly
    (the bench measures bfloat16 and float32 side by side). With `epoch_eval` = (curve,
    target), each epoch ends with BN recalibration (timed) and a clean evaluation (not timed)
    appended to `curve`, and training stops once `target` is reached. With `restarts` (a
    factor), every epoch is one fit(epochs=1) call with its own whole schedule, the peak rate
    multiplied by `restarts` from one to the next: each evaluation sees an annealed model.
    `fraction` < 1 makes each cycle shorter than an epoch: a seeded draw of that share of the
    training images, each seen once. `train_options` go to TrainConfig as they are (optimizer,
    weight_decay, label_smoothing). A `marks` dict is filled with the clock marks that
    `fastcourse.bench.breakdown.phases` splits the seconds by."""
    from fastcourse.config import TrainConfig
    from fastcourse.data import augment as aug
    from fastcourse.data.sources import ArraySource
    from fastcourse.train.trainer import fit, seed_everything

    clock = {"start": time.perf_counter(), "eval": 0.0, "bn": 0.0}
    seed_everything(seed, deterministic=deterministic)
    schedule = schedule or {"name": "constant", "lr": 1e-3}

    def config(epochs: int, schedule: dict):
        return TrainConfig(
            epochs=epochs,
            batch_size=batch_size,
            verbose=0,
            steps_per_execution=steps_per_execution,
            jit_compile=jit_compile,
            validate_each_epoch=False,
            schedule=schedule,
            bn_recalibrate=0 if epoch_eval is not None else bn_batches,  # with epoch_eval, its callback does it
            **(train_options or {}),
        )

    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(policy)
    try:
        built = time.perf_counter()
        model = course_model(data)
        if policy != "float32":
            from fastcourse.train.devices import float32_outputs

            model = float32_outputs(model)
        built = time.perf_counter() - built
        timer = SteadyTimer(batch_size, skip=max(2, 10 // steps_per_execution))
        phases = PhaseClock(batch_size, steps_per_execution)
        callbacks = [timer, phases]
        source = ArraySource(data.x_train, data.y_train, data.num_classes)
        if fraction < 1.0:
            keep = np.random.default_rng(seed).permutation(len(data.x_train))[: int(len(data.x_train) * fraction)]
            source = ArraySource(data.x_train[keep], data.y_train[keep], data.num_classes)
        if epoch_eval is not None:
            from fastcourse.train.trainer import recalibrate

            recal = TrainConfig(batch_size=batch_size, bn_recalibrate=bn_batches)
            callbacks.append(
                EpochEval(
                    data,
                    clock,
                    epoch_eval[0],
                    epoch_eval[1],
                    label="fastcourse",
                    recalibrate=lambda m: recalibrate(m, source, recal, seed),
                )
            )
        augmenter = aug.build(*augment) if augment else None
        if restarts and epoch_eval is not None:
            for k in range(epochs):
                peak = {**schedule, "max_lr": schedule["max_lr"] * restarts**k}
                phases.start()
                fit(model, source, config(1, peak), seed + k, augment=augmenter, callbacks=callbacks)
                if epoch_eval[0][-1][1] >= epoch_eval[1]:
                    break
        else:
            phases.start()
            fit(model, source, config(epochs, schedule), seed, augment=augmenter, callbacks=callbacks)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    ips = phases.images_per_second() or timer.images_per_second(steps_per_execution)
    if marks is not None:
        marks.update(build=built, fits=phases.fits, steady_images_per_second=ips, bn=clock["bn"], eval=clock["eval"])
    return model, ips, time.perf_counter() - clock["start"]


# Time to the peer's 5-epoch accuracy: every cycle is a whole one-cycle schedule (one fit(epochs=1)
# call, peak 6e-3, halved at each restart), so each evaluation sees an annealed model; batch 128,
# steps_per_execution 8, the precision `auto` picks, BN statistics from 5 clean batches, no
# augmentation (it pays over long runs, not in the first epochs), AdamW with fastai's weight decay
# 0.01, each cycle 0.9 of an epoch (a seeded draw, each image once). docs/performance.md keeps the
# measurements that chose each setting and those left out.
FAST_TO_ACCURACY = {
    "batch_size": 128,
    "steps_per_execution": 8,
    "max_lr": 6e-3,
    "augment": None,
    "bn_batches": 5,
    "policy": "auto",
    "restarts": 0.5,
    "fraction": 0.9,
    "train_options": {"optimizer": "adamw", "weight_decay": 0.01},
}


def recipe_options(fast: dict, policy: str) -> dict:
    """run_fastcourse's arguments for the time-to-accuracy recipe."""
    return {
        "batch_size": fast["batch_size"],
        "steps_per_execution": fast["steps_per_execution"],
        "schedule": {"name": "one_cycle", "max_lr": fast["max_lr"]},
        "augment": fast.get("augment", ("course", {})),
        "policy": policy,
        "bn_batches": fast.get("bn_batches", 100),
        "restarts": fast.get("restarts"),
        "fraction": fast.get("fraction", 1.0),
        "train_options": fast.get("train_options"),
    }


def accuracy(model: keras.Model, data: ArrayDataset) -> float:
    from fastcourse.data.sources import ArraySource
    from fastcourse.train.trainer import predict

    probs = predict(model, ArraySource(data.x_test, None, data.num_classes))
    return float((probs.argmax(1) == data.y_test).mean())


class EpochEval(keras.callbacks.Callback):
    """After each epoch: recompute BN statistics (as fit() does at its end; timed as training)
    and evaluate on the clean test set (not timed). Stops training at `target`. `clock` is a
    dict with `start` (perf_counter at the start), `eval` and optionally `bn` (seconds so far).

    Recomputing the moving statistics in the live model changes nothing in training (training
    normalises with batch statistics); it only makes the inference-mode model the one fit()
    would return if it stopped here."""

    def __init__(
        self,
        data: ArrayDataset,
        clock: dict,
        curve: list,
        target: Optional[float] = None,
        recalibrate: Optional[Callable] = None,
        label: str = "",
    ):
        super().__init__()
        self.data, self.clock, self.curve, self.target = data, clock, curve, target
        self.recal, self.label = recalibrate, label

    def on_epoch_end(self, epoch, logs=None):
        if self.recal is not None:
            t0 = time.perf_counter()
            self.recal(self.model)  # part of the training cost: fit() pays it too
            self.clock["bn"] = self.clock.get("bn", 0.0) + time.perf_counter() - t0
        t0 = time.perf_counter()
        elapsed = t0 - self.clock["start"] - self.clock["eval"]
        acc = accuracy(self.model, self.data)
        self.clock["eval"] += time.perf_counter() - t0
        self.curve.append((elapsed, acc))
        print(f"  {self.label} epoch {len(self.curve)}: {elapsed:.1f} s, test accuracy {acc:.4f}", flush=True)
        if self.target is not None and acc >= self.target:
            self.model.stop_training = True
