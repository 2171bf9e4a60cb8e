"""Optimizers driven by a schedule evaluated per step, with optional per-group rate multipliers.

Every call of the trainer compiles a FRESH optimizer whose learning-rate table spans exactly that
call (`epochs` x `steps`), so each fine-tune phase and each pseudo-label round gets its own
table, from any schedule, stretched to its length and scaled by `scale`.

Discriminative rates are per-variable multipliers of the scheduled rate applied inside the
optimizer's own update, so they are true learning rates for Adam and RMSprop too (gradient
scaling would be cancelled by Adam's normalisation).
"""

from __future__ import annotations

import keras
import numpy as np

from fastcourse.models.surgery import layer_group
from fastcourse.train.schedules import lr_table

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")


@keras.saving.register_keras_serializable(package="fastcourse")
class ScheduleAdapter(keras.optimizers.schedules.LearningRateSchedule):
    """A registered schedule, evaluated per step from a precomputed table.

    Its config holds the schedule's name and parameters, not the table, so saved models stay
    small and reload in safe mode.
    """

    def __init__(self, name: str, params: dict, total_epochs: int, steps_per_epoch: int, scale: float = 1.0):
        self.name = name
        self.params = dict(params)
        self.total_epochs = int(total_epochs)
        self.steps_per_epoch = int(steps_per_epoch)
        self.scale = float(scale)
        self.table = lr_table(name, self.params, self.total_epochs, self.steps_per_epoch) * np.float32(self.scale)

    def __call__(self, step):
        last = self.table.shape[0] - 1
        index = keras.ops.minimum(keras.ops.cast(step, "int32"), last)
        return keras.ops.take(keras.ops.convert_to_tensor(self.table), index)

    def get_config(self):
        return {
            "name": self.name,
            "params": self.params,
            "total_epochs": self.total_epochs,
            "steps_per_epoch": self.steps_per_epoch,
            "scale": self.scale,
        }


def spread_multipliers(groups: list[str], lr_mult: float) -> dict[str, float]:
    """fastai's slice(lr/lr_mult, lr): geometric rates from the first group to the head (1.0)."""
    if len(groups) == 1:
        return {groups[0]: 1.0}
    return {g: float(m) for g, m in zip(groups, np.geomspace(1.0 / lr_mult, 1.0, len(groups)))}


class _Multiplied:
    """Mixin for a Keras optimizer: learning rate x multiplier of the variable's layer group."""

    def __init__(self, *args, lr_multipliers: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lr_multipliers = dict(lr_multipliers or {})
        self._var_mults: list[float] = []

    def build(self, var_list):
        super().build(var_list)
        self._var_mults = [self.multiplier_for(v) for v in var_list]

    def multiplier_for(self, variable) -> float:
        layer_name = variable.path.split("/")[-2] if "/" in variable.path else variable.path
        return float(self.lr_multipliers.get(layer_group(layer_name), self.lr_multipliers.get(layer_name, 1.0)))

    def update_step(self, gradient, variable, learning_rate):
        mult = self._var_mults[self._get_variable_index(variable)] if self._var_mults else 1.0
        # resolved in Python at trace time: a constant factor per variable in the graph
        return super().update_step(gradient, variable, learning_rate * mult if mult != 1.0 else learning_rate)

    def get_config(self):
        return {**super().get_config(), "lr_multipliers": self.lr_multipliers}


@keras.saving.register_keras_serializable(package="fastcourse")
class MultipliedAdam(_Multiplied, keras.optimizers.Adam):
    """Adam with per-group learning-rate multipliers."""


@keras.saving.register_keras_serializable(package="fastcourse")
class MultipliedAdamW(_Multiplied, keras.optimizers.AdamW):
    """AdamW with per-group learning-rate multipliers."""


@keras.saving.register_keras_serializable(package="fastcourse")
class MultipliedSGD(_Multiplied, keras.optimizers.SGD):
    """SGD (momentum) with per-group learning-rate multipliers."""


@keras.saving.register_keras_serializable(package="fastcourse")
class MultipliedRMSprop(_Multiplied, keras.optimizers.RMSprop):
    """RMSprop with per-group learning-rate multipliers."""


_PLAIN = {
    "adam": keras.optimizers.Adam,
    "adamw": keras.optimizers.AdamW,
    "sgd": keras.optimizers.SGD,
    "rmsprop": keras.optimizers.RMSprop,
}
_MULTIPLIED = {"adam": MultipliedAdam, "adamw": MultipliedAdamW, "sgd": MultipliedSGD, "rmsprop": MultipliedRMSprop}


def make_optimizer(
    train, steps: int, epochs: int | None = None, scale: float = 1.0, lr_multipliers: dict | None = None
) -> keras.optimizers.Optimizer:
    """`train.optimizer` driven by `train.schedule` over `epochs` (default train.epochs) x `steps`."""
    lr = ScheduleAdapter(train.schedule.name, train.schedule.args, epochs or train.epochs, steps, scale)
    return build_optimizer(train.optimizer, lr, train.weight_decay, lr_multipliers)


def build_optimizer(name: str, learning_rate, weight_decay: float | None = None, lr_multipliers: dict | None = None):
    """The Keras optimizer `name` (one of OPTIMIZERS) at `learning_rate` (a number or a schedule).

    `weight_decay` is Keras' decoupled decay (each step: weight -= lr x weight_decay x weight),
    which every Keras optimizer takes; adamw falls back to 1e-4 without one, the others to none.
    SGD gets momentum 0.9."""
    kwargs: dict = {"learning_rate": learning_rate}
    if weight_decay:
        kwargs["weight_decay"] = float(weight_decay)
    elif name == "adamw":
        kwargs["weight_decay"] = 1e-4
    if name == "sgd":
        kwargs["momentum"] = 0.9
    if lr_multipliers:
        return _MULTIPLIED[name](lr_multipliers=lr_multipliers, **kwargs)
    return _PLAIN[name](**kwargs)


def compile_model(
    model: keras.Model,
    train,
    steps: int,
    epochs: int | None = None,
    scale: float = 1.0,
    lr_multipliers: dict | None = None,
    metrics: list | None = None,
) -> keras.Model:
    """Compile for one training call: a fresh optimizer, categorical cross-entropy, accuracy
    (and any further Keras `metrics`, e.g. from the Learner's metrics=)."""
    model.compile(
        optimizer=make_optimizer(train, steps, epochs, scale, lr_multipliers),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=train.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy"), *(metrics or [])],
        steps_per_execution=train.steps_per_execution,
        jit_compile=train.jit_compile,
    )
    return model
