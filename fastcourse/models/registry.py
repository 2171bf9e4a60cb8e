"""The model registry. A builder's keyword arguments are its config section; the experiment
adds `input_shape`, `num_classes` and, where the builder takes them, the training set's pixel
`mean` and `std`."""

from __future__ import annotations

import inspect

from fastcourse.registry import MODELS


def build_model(name: str, input_shape, num_classes: int, mean: float = 0.0, std: float = 1.0, **kwargs):
    """Build the registered model `name`, passing the data-supplied arguments it accepts."""
    builder = MODELS.get(name)
    accepted = inspect.signature(builder).parameters
    supplied = {"input_shape": tuple(input_shape), "num_classes": num_classes, "mean": mean, "std": std}
    args = {k: v for k, v in supplied.items() if k in accepted}
    return builder(**args, **kwargs)
