"""Pseudo-labelling (lesson 3, Statefarm): add unlabelled examples with the model's soft labels.

`ratio` is the share of pseudo-labelled examples in the mixed training set: ratio 0.25 adds one
pseudo-labelled example for every three labelled ones (as many as the unlabelled set holds)::

    x, y = mix_pseudo_labels(x_train, y_train, x_test, head.predict(x_test), ratio=0.25, seed=0)
"""
from __future__ import annotations

import numpy as np

from fastcourse.errors import UsageError


def mix_pseudo_labels(
    x: np.ndarray, y: np.ndarray, x_unlabelled: np.ndarray, soft_labels: np.ndarray, ratio: float = 0.25,
    seed: int = 0, num_classes: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(x, one-hot/soft y) with pseudo-labelled rows appended; labels become (N, C) floats."""
    if not 0.0 <= ratio < 1.0:
        raise UsageError(f"pseudo-label ratio={ratio}: must be in [0, 1)")
    soft = np.asarray(soft_labels, np.float32)
    num_classes = num_classes or soft.shape[1]
    y = np.asarray(y)
    hard = y.astype(np.float32) if y.ndim == 2 else np.eye(num_classes, dtype=np.float32)[y.astype(np.int64)]
    want = int(round(ratio * len(x) / (1.0 - ratio)))
    take = min(want, len(x_unlabelled))
    if take == 0:
        return np.asarray(x), hard
    pick = np.sort(np.random.default_rng(seed).choice(len(x_unlabelled), take, replace=False))
    x_mix = np.concatenate([np.asarray(x), np.asarray(x_unlabelled[pick])])
    y_mix = np.concatenate([hard, soft[pick]])
    return x_mix, y_mix
