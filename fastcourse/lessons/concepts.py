"""Worked examples of the lessons' concepts, each checked against Keras and drawn as a plot.

- Hand-set neurons: AND, OR, NOT and XNOR (two layers) as Keras models with a step activation.
- A convolution by hand (the top-edge filter and its rotations) against Conv2D.
- Max pooling by hand against MaxPooling2D.
- Softmax.
- SGD fitting y = a x + b (lesson 2).
- The feature maps of any conv layer of any builder, for one image.

    >>> from fastcourse import concepts
    >>> concepts.truth_table(concepts.xnor())
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import keras
import numpy as np
import pandas as pd
from keras import layers

from fastcourse import io
from fastcourse.models.blocks import Step

# --- hand-set neurons ----------------------------------------------------------------------


# weights, bias of one neuron z = w . x + b, as the course set them by hand
GATES: dict[str, tuple[list[float], float]] = {
    "and": ([1.0, 1.0], -1.5),
    "or": ([1.0, 1.0], -0.5),
    "not": ([-2.0], 1.0),
}
# XNOR as two layers: a1 = f(0.5 - x1 - x2) (neither), a2 = f(-1.5 + x1 + x2) (both), out = f(-0.5 + a1 + a2)
XNOR_HIDDEN = ([[-1.0, 1.0], [-1.0, 1.0]], [0.5, -1.5])
XNOR_OUTPUT = ([[1.0], [1.0]], [-0.5])
TRUTH = {
    "and": lambda a, b: a & b,
    "or": lambda a, b: a | b,
    "not": lambda a: 1 - a,
    "xnor": lambda a, b: 1 - (a ^ b),
}


def _activation(sharpness: Optional[float]) -> layers.Layer:
    # A sigmoid of large weights is the differentiable version of the step.
    return Step() if sharpness is None else layers.Activation("sigmoid")


def logic_gate(gate: str, sharpness: Optional[float] = None) -> keras.Model:
    """One neuron computing `gate` ('and', 'or', 'not'): Dense(1) with hand-set weights -> step.

    With `sharpness` k, the weights are multiplied by k and the step becomes a sigmoid.
    """
    if gate not in GATES:
        raise ValueError(f"unknown gate {gate!r}; use one of {', '.join(GATES)} (or xnor())")
    w, b = GATES[gate]
    k = 1.0 if sharpness is None else float(sharpness)
    inputs = keras.Input((len(w),), name="x")
    dense = layers.Dense(1, name="neuron")
    z = dense(inputs)
    dense.set_weights([k * np.array(w, np.float32)[:, None], k * np.array([b], np.float32)])
    return keras.Model(inputs, _activation(sharpness)(z), name=gate)


def xnor(sharpness: Optional[float] = None) -> keras.Model:
    """XNOR as a two-layer network: (neither, both) hidden neurons, then OR of the two."""
    k = 1.0 if sharpness is None else float(sharpness)
    inputs = keras.Input((2,), name="x")
    hidden, output = layers.Dense(2, name="hidden"), layers.Dense(1, name="output")
    a = _activation(sharpness)(hidden(inputs))
    y = _activation(sharpness)(output(a))
    for layer, (w, b) in ((hidden, XNOR_HIDDEN), (output, XNOR_OUTPUT)):
        layer.set_weights([k * np.array(w, np.float32), k * np.array(b, np.float32)])
    return keras.Model(inputs, y, name="xnor")


def truth_table(model: keras.Model) -> pd.DataFrame:
    """Every 0/1 input combination, the model's output, and the gate's true value."""
    n = int(model.input_shape[-1])
    grid = np.array(np.meshgrid(*[[0, 1]] * n, indexing="ij")).reshape(n, -1).T
    out = _run(model, grid)[:, 0]
    table = pd.DataFrame(grid, columns=[f"x{i + 1}" for i in range(n)])
    table["output"] = out
    if model.name in TRUTH:
        table["expected"] = TRUTH[model.name](*[grid[:, i] for i in range(n)])
    return table


def _run(model: keras.Model, x: np.ndarray) -> np.ndarray:
    # a direct call: predict() would trace a function for each of these tiny inputs
    return np.asarray(model(np.asarray(x, np.float32)))


def plot_gates(path: str | Path, sharpness: Optional[float] = None) -> Path:
    """Each gate's output over the unit square (the decision regions) with its truth table."""
    import matplotlib.pyplot as plt

    models = [logic_gate(g, sharpness) for g in GATES] + [xnor(sharpness)]
    fig, axes = plt.subplots(1, len(models), figsize=(3.2 * len(models), 3.2))
    u = np.linspace(-0.25, 1.25, 121, dtype=np.float32)
    for ax, model in zip(axes, models):
        if model.input_shape[-1] == 1:
            out = _run(model, u[:, None])[:, 0]
            ax.plot(u, out, color="C0")
            ax.scatter([0, 1], truth_table(model)["output"], color="C3", zorder=3)
            ax.set_xlabel("x1")
            ax.set_ylabel("output")
        else:
            gx, gy = np.meshgrid(u, u)
            out = _run(model, np.stack([gx.ravel(), gy.ravel()], 1)).reshape(gx.shape)
            ax.contourf(gx, gy, out, levels=20 if sharpness else [-0.5, 0.5, 1.5], cmap="coolwarm", alpha=0.6)
            for _, row in truth_table(model).iterrows():
                ax.annotate(
                    f"{row['output']:.0f}", (row["x1"], row["x2"]), ha="center", va="center", fontsize=13, weight="bold"
                )
            ax.set_xlabel("x1")
            ax.set_ylabel("x2")
        ax.set_title(model.name.upper())
    fig.suptitle("hand-set neurons (" + ("step" if sharpness is None else f"sigmoid x{sharpness:g}") + ")")
    return io.save_figure(fig, path)


# --- convolution and pooling by hand -------------------------------------------------------

TOP_EDGE = np.array([[-1, -1, -1], [1, 1, 1], [0, 0, 0]], np.float32)


def edge_filters() -> dict[str, np.ndarray]:
    """The top-edge filter and its rotations, which find the other edges."""
    return {name: np.rot90(TOP_EDGE, k).copy() for k, name in enumerate(["top", "left", "bottom", "right"])}


def sample_digit(index: int = 0) -> tuple[np.ndarray, int]:
    """A 28x28 digit from the bundled MNIST sample's test split, scaled to 0-1, and its label."""
    from fastcourse.data import DATASETS

    data = DATASETS.get("mnist_sample")()
    return data.x_test[index, ..., 0].astype(np.float32) / 255.0, int(data.y_test[index])


def convolve(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """'valid' 2-D convolution as deep learning means it (cross-correlation, no kernel flip):
    out[i, j] = sum over the window of image[i + u, j + v] * kernel[u, v]."""
    windows = np.lib.stride_tricks.sliding_window_view(image, kernel.shape)
    return np.einsum("ijuv,uv->ij", windows, kernel).astype(np.float32)


def conv2d_keras(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """The same convolution by a Keras Conv2D layer holding `kernel` (no bias, valid padding)."""
    conv = layers.Conv2D(1, kernel.shape, use_bias=False, padding="valid")
    conv.build((None, *image.shape, 1))
    conv.set_weights([kernel.astype(np.float32)[:, :, None, None]])
    return np.asarray(conv(image[None, :, :, None].astype(np.float32)))[0, :, :, 0]


def max_pool(image: np.ndarray, size: int = 2) -> np.ndarray:
    """Max over non-overlapping size x size blocks (rows/columns that do not fill a block are dropped)."""
    h, w = (image.shape[0] // size) * size, (image.shape[1] // size) * size
    return image[:h, :w].reshape(h // size, size, w // size, size).max(axis=(1, 3))


def max_pool_keras(image: np.ndarray, size: int = 2) -> np.ndarray:
    return np.asarray(layers.MaxPooling2D(size)(image[None, :, :, None].astype(np.float32)))[0, :, :, 0]


def plot_convolution(image: np.ndarray, path: str | Path, title: str = "") -> Path:
    """The digit; each edge filter, its output by hand, by Conv2D, and after 2x2 max pooling."""
    import matplotlib.pyplot as plt

    filters = edge_filters()
    fig, axes = plt.subplots(len(filters), 5, figsize=(12, 2.5 * len(filters)))
    for row, (name, k) in zip(axes, filters.items()):
        hand, ref = convolve(image, k), conv2d_keras(image, k)
        panels = [
            (image, "digit"),
            (k, f"{name} filter"),
            (hand, "by hand"),
            (ref, f"Conv2D (max diff {np.abs(hand - ref).max():.1e})"),
            (max_pool(hand), "2x2 max pool"),
        ]
        for ax, (img, label) in zip(row, panels):
            if label == "digit":
                ax.imshow(img, cmap="gray")
            else:  # symmetric colour range: white is zero, red positive, blue negative
                lim = float(np.abs(img).max()) or 1.0
                ax.imshow(img, cmap="RdBu_r", vmin=-lim, vmax=lim)
            ax.set_title(label, fontsize=9)
            ax.axis("off")
    fig.suptitle(title or "edge filters over a digit")
    return io.save_figure(fig, path)


def plot_pooling(image: np.ndarray, path: str | Path, size: int = 2) -> Path:
    """An image before and after size x size max pooling (half the resolution for 2)."""
    import matplotlib.pyplot as plt

    pooled = max_pool(image, size)
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.2))
    for ax, img, label in zip(
        axes, [image, pooled, max_pool(pooled, size)], ["input", f"max pool {size}x{size}", "pooled twice"]
    ):
        ax.imshow(img, cmap="gray")
        ax.set_title(f"{label} {img.shape[0]}x{img.shape[1]}")
        ax.axis("off")
    return io.save_figure(fig, path)


# --- softmax ---------------------------------------------------------------------------------


def softmax(x: Sequence[float] | np.ndarray, axis: int = -1) -> np.ndarray:
    """exp(x_i) / sum_j exp(x_j), shifted by the max first so large inputs do not overflow."""
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def plot_softmax(logits: Sequence[float], path: str | Path, labels: Optional[Sequence[str]] = None) -> Path:
    """Activations, their exponentials and the softmax probabilities side by side."""
    import matplotlib.pyplot as plt

    logits = np.asarray(logits, np.float64)
    labels = list(labels) if labels is not None else [str(i) for i in range(len(logits))]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    for ax, values, label in zip(
        axes, [logits, np.exp(logits), softmax(logits)], ["activations x", "exp(x)", "softmax = exp(x) / sum exp(x)"]
    ):
        ax.bar(labels, values, color="C0")
        ax.set_title(label)
    return io.save_figure(fig, path)


# --- SGD on a line (lesson 2) -----------------------------------------------------------------


@dataclass
class LineFit:
    x: np.ndarray
    y: np.ndarray
    history: pd.DataFrame  # step, a, b, loss (root mean squared error)
    a_true: float
    b_true: float


def sgd_line(
    a: float = 3.0,
    b: float = 8.0,
    n: int = 30,
    lr: float = 0.01,
    steps: int = 400,
    a0: float = -1.0,
    b0: float = 1.0,
    seed: int = 0,
) -> LineFit:
    """Fit y = a x + b to n points from the guess (a0, b0), stepping against the gradient of the
    squared error: dL/db = 2 (y_pred - y), dL/da = x * dL/db, each averaged, times `lr`."""
    x = np.random.default_rng(seed).random(n)
    y = a * x + b
    ag, bg = float(a0), float(b0)
    rows = []
    for step in range(steps + 1):
        pred = ag * x + bg
        rows.append((step, ag, bg, float(np.sqrt(((y - pred) ** 2).mean()))))
        dydb = 2 * (pred - y)
        ag -= lr * float((x * dydb).mean())
        bg -= lr * float(dydb.mean())
    return LineFit(x, y, pd.DataFrame(rows, columns=["step", "a", "b", "loss"]), a, b)


def plot_sgd_line(fit: LineFit, path: str | Path, snapshots: int = 6) -> Path:
    """The points with the fitted line at a few steps, and the loss per step."""
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.scatter(fit.x, fit.y, color="k", s=12, label=f"y = {fit.a_true:g} x + {fit.b_true:g}")
    xs = np.linspace(0, 1, 2)
    idx = np.unique(np.geomspace(1, len(fit.history), snapshots).astype(int) - 1)
    for i in idx:
        r = fit.history.iloc[i]
        left.plot(
            xs, r.a * xs + r.b, alpha=0.4 + 0.6 * i / idx[-1], label=f"step {int(r.step)}: a={r.a:.2f} b={r.b:.2f}"
        )
    left.legend(fontsize=7)
    left.set_title("SGD fitting a line")
    right.plot(fit.history.step, fit.history.loss)
    right.set_yscale("log")
    right.set_xlabel("step")
    right.set_ylabel("RMSE")
    return io.save_figure(fig, path)


# --- what a conv layer sees ---------------------------------------------------------------------


def conv_layers(model: keras.Model) -> list[str]:
    """Names of the model's convolution layers, in order."""
    return [layer.name for layer in model.layers if isinstance(layer, layers.Conv2D)]


def feature_maps(model: keras.Model, layer: Optional[str], image: np.ndarray) -> np.ndarray:
    """The (H, W, C) output of conv layer `layer` (default: the first) for one raw image (H, W, C)."""
    names = conv_layers(model)
    if not names:
        raise ValueError(f"model {model.name!r} has no Conv2D layer")
    layer = layer or names[0]
    if layer not in names:
        raise ValueError(f"{layer!r} is not a conv layer of {model.name!r}; conv layers: {', '.join(names)}")
    probe = keras.Model(model.input, model.get_layer(layer).output)
    image = np.asarray(image, np.float32)
    if image.ndim == 2:
        image = image[..., None]
    return np.asarray(probe(image[None]), np.float32)[0]  # float32 under a mixed (bf16) policy too


def plot_feature_maps(
    model: keras.Model, layer: Optional[str], image: np.ndarray, path: str | Path, max_maps: int = 32
) -> Path:
    """The input image and up to `max_maps` feature maps of `layer`, as a grid."""
    import matplotlib.pyplot as plt

    maps = feature_maps(model, layer, image)
    layer = layer or conv_layers(model)[0]
    n = min(max_maps, maps.shape[-1])
    cols = min(8, n + 1)
    rows = int(np.ceil((n + 1) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.6 * rows), squeeze=False)
    img = np.asarray(image)
    for i, ax in enumerate(axes.ravel()):
        ax.axis("off")
        if i == 0:
            ax.imshow(img.squeeze() / max(float(img.max()), 1e-9), cmap="gray" if img.squeeze().ndim == 2 else None)
            ax.set_title("input", fontsize=8)
        elif i <= n:
            ax.imshow(maps[..., i - 1], cmap="viridis")
            ax.set_title(str(i - 1), fontsize=8)
    fig.suptitle(f"{model.name} / {layer}: {n} of {maps.shape[-1]} maps, {maps.shape[0]}x{maps.shape[1]}")
    return io.save_figure(fig, path)
