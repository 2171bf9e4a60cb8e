"""Floating-point operations of a model, counted from its layers (multiply and add = 2).

Training costs about three forward passes (forward, gradient w.r.t. activations, gradient
w.r.t. weights); `train_flops_per_image` uses that rule.
"""

from __future__ import annotations

import math
import time

import keras
import numpy as np


def forward_flops_per_image(model: keras.Model) -> float:
    """Multiply-adds x 2 of the conv and dense layers (other layers are negligible here)."""
    total = 0.0
    for layer in _leaf_layers(model):
        if isinstance(layer, keras.layers.Conv2D):
            out = layer.output.shape  # (None, H, W, K)
            kh, kw = layer.kernel_size
            cin = layer.input.shape[-1]
            total += 2.0 * out[1] * out[2] * out[3] * kh * kw * cin
        elif isinstance(layer, keras.layers.Dense):
            cin = layer.input.shape[-1]
            positions = math.prod(d for d in layer.input.shape[1:-1] if d) or 1
            total += 2.0 * positions * cin * layer.units
    return total


def train_flops_per_image(model: keras.Model) -> float:
    return 3.0 * forward_flops_per_image(model)


def matmul_gflops(size: int = 2048, repeats: int = 7) -> float:
    """Single-precision matrix multiply throughput of this machine (numpy/BLAS), the roofline."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    a @ b  # warm up the BLAS threads
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    # the best run: on a shared machine the others only show contention
    return 2.0 * size**3 / float(np.min(times)) / 1e9


def bf16_matmul_gflops(size: int = 2048, repeats: int = 7) -> float:
    """bfloat16 matrix multiply throughput through TensorFlow (oneDNN: AMX or AVX-512 BF16 where
    the CPU has them), best of `repeats`: the roofline of steps trained in bf16."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    a = tf.constant(rng.standard_normal((size, size), dtype=np.float32), dtype=tf.bfloat16)
    b = tf.constant(rng.standard_normal((size, size), dtype=np.float32), dtype=tf.bfloat16)
    step = tf.function(lambda a, b: tf.linalg.matmul(a, b)[0, 0])  # one element back: no copy timed
    step(a, b).numpy()  # trace and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step(a, b).numpy()
        times.append(time.perf_counter() - start)
    return 2.0 * size**3 / float(np.min(times)) / 1e9


def _leaf_layers(model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _leaf_layers(layer)
        else:
            yield layer
