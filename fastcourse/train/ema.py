"""Weight averaging (`train.ema: {momentum: m}`): Keras' optimizer EMA, swapped in to evaluate.

The optimizer keeps the average (Keras' `use_ema` / `ema_momentum`: after each optimizer step,
average = m x average + (1 - m) x weights; the first step copies the weights). The average is an
optimizer variable, so the per-epoch checkpoint holds it beside the raw weights (which training
continues from), and a resumed run continues it exactly. For every evaluation the trainer swaps
the average in (`averaged_weights`), recomputes the batchnorm statistics for it, evaluates, and
swaps the raw weights back; at the end of each training call Keras' fit leaves the average in the
model (`finalize_variable_values`), so the final evaluation and the saved and exported model are
the averaged one.

Why Keras' EMA and not a callback: it updates inside the compiled train step, so it sees every
step with any `steps_per_execution` (a callback sees one batch in K there), and it averages the
float32 variables under mixed_bfloat16 or mixed_float16 (the loss-scale wrapper forwards it).
tests/test_ema.py checks both against an average computed by hand. It does not fit gradient
accumulation: Keras updates the average at every batch, not every optimizer step, so
`train.ema` with `train.accumulate` > 1 is refused at load.
"""

from __future__ import annotations

import contextlib

import keras


def _inner(optimizer):
    return getattr(optimizer, "inner_optimizer", optimizer)  # LossScaleOptimizer forwards to it


def uses_ema(model: keras.Model) -> bool:
    """Whether `model`'s optimizer keeps a built moving average of the weights."""
    opt = getattr(model, "optimizer", None)
    return opt is not None and bool(getattr(_inner(opt), "use_ema", False)) and bool(getattr(opt, "built", False))


def average_values(model: keras.Model) -> list:
    """The moving average of each trainable variable, as numpy arrays, in the model's order."""
    return [keras.ops.convert_to_numpy(v) for v in _inner(model.optimizer)._model_variables_moving_average]


def finalize(model: keras.Model) -> None:
    """The average into the model's weights, as Keras' fit does at its end."""
    if uses_ema(model):
        model.optimizer.finalize_variable_values(model.trainable_variables)


@contextlib.contextmanager
def averaged_weights(model: keras.Model):
    """Inside the block the model's trainable weights are the optimizer's average; after it,
    the weights training continues from. No-op without an average."""
    if not uses_ema(model):
        yield
        return
    raw = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
    finalize(model)
    try:
        yield
    finally:
        for variable, value in zip(model.trainable_variables, raw):
            variable.assign(value)
