"""The registries of this layer (datasets, augmentations) and the in-memory dataset type."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fastcourse.registry import AUGMENTATIONS, DATASETS  # noqa: F401  (this layer's registries)


@dataclass
class ArrayDataset:
    """Images as uint8 arrays (N, H, W, C) with integer labels, split into train and test."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    source: str = ""  # where the data was found, for metrics.json
    notes: dict = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def pixel_stats(self) -> tuple[float, float]:
        """ONE global mean and std of the training pixels, as the course normalised."""
        if self.x_train.dtype == np.uint8:
            # exact integer sums (squares fit uint16): 0.06 s on Fashion-MNIST's 47M pixels where a
            # float64 copy took 1.7 s, paid by every run before its first step
            n = self.x_train.size
            total = float(self.x_train.sum(dtype=np.uint64))
            wide = self.x_train.astype(np.uint16)
            squares = float((wide * wide).sum(dtype=np.uint64))
            mean = total / n
            return mean, float(np.sqrt(max(squares / n - mean * mean, 0.0)))
        x = self.x_train.astype(np.float64)
        return float(x.mean()), float(x.std())

    def limit(self, train: int | None = None, test: int | None = None) -> "ArrayDataset":
        """The first `train` / `test` images (for quick runs and tests)."""
        return ArrayDataset(
            self.name,
            self.x_train[:train],
            self.y_train[:train],
            self.x_test[:test],
            self.y_test[:test],
            self.class_names,
            self.source,
            dict(self.notes),
        )


def onehot(y: np.ndarray, num_classes: int) -> np.ndarray:
    """One-hot float labels; soft labels (N, C) pass through (pseudo-labelling)."""
    y = np.asarray(y)
    if y.ndim == 2:
        return y.astype(np.float32)
    return np.eye(num_classes, dtype=np.float32)[y.astype(np.int64)]
