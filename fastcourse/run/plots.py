"""Plots and tables for a run: learning curves, confusion matrices."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from fastcourse.io import save_figure
from fastcourse.train.metrics import confusion_matrix  # noqa: F401  (the one computation; plotted here)

# Figures for files are made without pyplot, so the user's backend (a notebook's inline one) is
# never switched and nothing is drawn twice.


def plot_learning_curves(history: dict[str, Sequence[float]], path: str | Path, title: str = "", *, split: str) -> Path:
    """Loss and accuracy per epoch, side by side: the training batches (augmented, as trained on)
    and the evaluation split `split` ("valid" or "test"), which the legend names."""
    fig = Figure(figsize=(10, 3.8))
    axes = fig.subplots(1, 2)
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for key, style in ((metric, "-"), (f"val_{metric}", "--")):
            if key in history and len(history[key]):
                epochs = np.arange(1, len(history[key]) + 1)
                ax.plot(epochs, history[key], style, marker="o", ms=3, label="train" if key == metric else split)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return save_figure(fig, path)


def plot_confusion_matrix(cm: np.ndarray, classes: Sequence[str], path: str | Path, title: str = "") -> Path:
    """The course's plot_confusion_matrix: counts in cells, true classes down, predicted across."""
    n = len(classes)
    size = max(4.0, 0.55 * n + 2)
    fig = Figure(figsize=(size, size))
    ax = fig.subplots()
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = cm.max() / 2 if cm.size else 0
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                str(cm[i, j]),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if cm[i, j] > threshold else "black",
            )
    ax.set_title(title or "confusion matrix")
    return save_figure(fig, path)
