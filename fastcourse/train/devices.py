"""Precision and multi-device training, through Keras' dtype policies and tf.distribute.

- `precision`: auto, float32, mixed_float16 or mixed_bfloat16. `auto` picks by what the machine
  can do (fastcourse.train.precision.resolve_precision): mixed_float16 on a GPU, mixed_bfloat16
  on a CPU with AMX or AVX-512 BF16, float32 elsewhere. A forced mixed_bfloat16 on a CPU
  without native bf16 is honoured with a warning (emulated bf16 was 4x slower); a forced
  mixed_float16 without a GPU trains in float32. The policy chosen and why is printed once per
  process (stderr). Models keep float32 outputs (`float32_outputs`).
- `distribute`: none, mirrored (tf.distribute.MirroredStrategy: all GPUs of one machine, or
  the logical CPUs of $FASTCOURSE_VIRTUAL_CPUS for testing) or multi_worker
  (MultiWorkerMirroredStrategy, configured by the TF_CONFIG environment variable).

Batch size and learning rate: `train.batch_size` is the GLOBAL batch, split evenly over the
replicas, so the same config gives the same optimisation on 1 or N devices. To use N devices
to go faster, multiply the batch by N and, by the linear scaling rule, the learning rate by N
(with a few epochs of warm-up: `schedule: {name: cosine, warmup: 2}` or one_cycle).
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Iterator

import keras
import tensorflow as tf

from fastcourse.errors import UsageError
from fastcourse.train.precision import has_gpu, resolve_precision  # noqa: F401  (has_gpu: one definition, there)

_configured_virtual_cpus = False


def configure_virtual_cpus() -> None:
    """Split the CPU into $FASTCOURSE_VIRTUAL_CPUS logical devices (before TF starts), so
    MirroredStrategy can be tried and tested on a machine without GPUs."""
    global _configured_virtual_cpus
    count = int(os.environ.get("FASTCOURSE_VIRTUAL_CPUS", "0") or 0)
    if count < 2 or _configured_virtual_cpus:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError as exc:  # TF already started: too late to split
        raise UsageError(f"FASTCOURSE_VIRTUAL_CPUS={count}: set it before the process starts ({exc})") from None
    _configured_virtual_cpus = True


_announced: set[tuple[str, str]] = set()


def apply_precision(precision: str, announce: bool = True) -> str:
    """Set Keras' global dtype policy; return the one actually in force.

    The choice is fastcourse.train.precision.resolve_precision's (its table): "auto" is
    mixed_float16 on a GPU, mixed_bfloat16 on a CPU with AMX / AVX-512 BF16, float32 elsewhere;
    a forced mixed_float16 without a GPU trains in float32. With `announce`, one line says what
    was chosen and why, once per process for each (requested, chosen) pair: an ensemble's
    members do not repeat it."""
    requested = precision
    precision, reason = resolve_precision(requested, gpu=has_gpu())
    if announce and (requested, precision) not in _announced:
        _announced.add((requested, precision))
        print(f"fastcourse: precision {precision} ({reason})", flush=True)  # stdout: stderr is for errors
    keras.mixed_precision.set_global_policy(precision)
    return precision


def float32_outputs(model: keras.Model) -> keras.Model:
    """Under a mixed policy, end the model with a float32 cast so the loss and the saved
    predictions are float32 (Keras' mixed-precision guide)."""
    if model.outputs[0].dtype == "float32":
        return model
    out = keras.layers.Activation("linear", dtype="float32", name="float32_output")(model.outputs[0])
    return keras.Model(model.inputs, out, name=model.name)


def make_strategy(distribute: str) -> tf.distribute.Strategy:
    configure_virtual_cpus()
    if distribute == "none":
        return tf.distribute.get_strategy()
    if distribute == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices)
    if distribute == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise UsageError(
                "train.distribute = multi_worker needs the TF_CONFIG environment variable "
                "(cluster and task); see the README's multi-worker section"
            )
        try:
            json.loads(os.environ["TF_CONFIG"])
        except json.JSONDecodeError as exc:
            raise UsageError(f"TF_CONFIG is not valid JSON: {exc}") from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise UsageError(f"train.distribute = {distribute!r}: use none, mirrored or multi_worker")


def is_chief() -> bool:
    """The worker that writes the run directory: worker 0 (or `chief`), or a single process."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = config.get("task") or {}
    return task.get("type", "worker") == "chief" or (
        task.get("type", "worker") == "worker"
        and int(task.get("index", 0)) == 0
        and "chief" not in config.get("cluster", {})
    )


@contextlib.contextmanager
def training_scope(precision: str, distribute: str) -> Iterator[tf.distribute.Strategy]:
    """Build, compile and fit inside this: the dtype policy and the strategy's scope."""
    previous = keras.mixed_precision.global_policy().name
    apply_precision(precision)
    strategy = make_strategy(distribute)
    try:
        with strategy.scope():
            yield strategy
    finally:
        keras.mixed_precision.set_global_policy(previous)
