"""Pseudo-labelling (lesson 3, Statefarm): add unlabelled examples with the model's soft labels.

`ratio` is the share of pseudo-labelled examples in the mixed training set: ratio 0.25 adds one
pseudo-labelled example for every three labelled ones (as many as the unlabelled set holds)::

    rows = pseudo_rows(len(train), len(test), ratio=0.25, seed=0)   # which test rows join
    soft = predict(head, test)[rows]                                # their soft labels
"""

from __future__ import annotations

import numpy as np

from fastcourse.errors import UsageError


def pseudo_rows(labelled: int, unlabelled: int, ratio: float = 0.25, seed: int = 0) -> np.ndarray:
    """Sorted indices of the unlabelled examples that join a round, drawn from `seed`."""
    if not 0.0 <= ratio < 1.0:
        raise UsageError(f"pseudo-label ratio={ratio}: must be in [0, 1)")
    take = min(int(round(ratio * labelled / (1.0 - ratio))), unlabelled)
    return (
        np.sort(np.random.default_rng(seed).choice(unlabelled, take, replace=False)) if take else np.zeros(0, np.int64)
    )
