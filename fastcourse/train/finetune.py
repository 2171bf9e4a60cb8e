"""Fine-tuning: a new top, freezing by block name, discriminative learning rates, fine_tune.

Layer groups are the prefix before the first "_" of a layer name: block1..block5 (the conv
blocks), then everything else of the top (flatten, fc1, fc2, predictions, a head) as "head".
`freeze`/`unfreeze` recompile for you (Keras only honours `trainable` after a compile).
Discriminative rates are per-variable multipliers of the scheduled rate, applied inside the
optimizer's own update (so they are true learning rates for Adam and RMSprop too, unlike
gradient scaling, which Adam would cancel)::

    model = replace_top(vgg16(weights="imagenet"), 2)
    result = fine_tune(model, train_ds, steps, train_cfg, freeze_epochs=1, epochs=3, lr_mult=100)
"""
from __future__ import annotations

import copy
from typing import Optional

import keras
import numpy as np
from keras import layers

from fastcourse.errors import UsageError

HEAD = "head"
TOP_LAYERS = ("flatten", "fc", "predictions", "avg", "max", "head")


def layer_group(name: str) -> str:
    """'block3_conv2' -> 'block3'; fc1, predictions, head layers -> 'head'; others unchanged."""
    if name.startswith("block") and "_" in name:
        return name.split("_", 1)[0]
    if name.startswith(TOP_LAYERS):
        return HEAD
    return name.split("_", 1)[0]


def layer_groups(model: keras.Model) -> list[str]:
    """Groups with weights, in model order (block1 .. block5, head)."""
    out: list[str] = []
    for layer in _flat_layers(model):
        g = layer_group(layer.name)
        if layer.weights and g not in out:
            out.append(g)
    return out


def _flat_layers(model: keras.Model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):  # a nested head or conv part
            yield from _flat_layers(layer)
        else:
            yield layer


def replace_top(model: keras.Model, num_classes: int, name: str = "predictions") -> keras.Model:
    """Drop the last layer and put a new softmax Dense(num_classes) in its place (course finetune)."""
    features = model.layers[-2].output
    outputs = layers.Dense(num_classes, activation="softmax", name=name)(features)
    return keras.Model(model.inputs, outputs, name=model.name)


def set_trainable(model: keras.Model, trainable: list[str] | str, bn_trainable: Optional[bool] = None) -> list[str]:
    """Make only the given groups (or layer names) trainable; "all" unfreezes everything.

    Returns the trainable groups. Names that match nothing raise UsageError with the known groups.
    """
    groups = layer_groups(model)
    wanted = groups if trainable == "all" else [trainable] if isinstance(trainable, str) else list(trainable)
    names = {layer.name for layer in _flat_layers(model)}
    unknown = [w for w in wanted if w not in groups and w not in names]
    if unknown:
        raise UsageError(f"cannot freeze/unfreeze {unknown}: known groups {groups}")
    model.trainable = True
    for layer in _flat_layers(model):
        on = layer_group(layer.name) in wanted or layer.name in wanted
        if bn_trainable is not None and isinstance(layer, layers.BatchNormalization):
            on = bn_trainable
        layer.trainable = on
    return [g for g in groups if g in wanted]


def freeze(model: keras.Model, up_to: str = "head", train=None, steps: int = 1, lr_mult: dict | None = None):
    """Freeze every group before `up_to` (a group name); train the rest. Recompiles when `train` is given."""
    groups = layer_groups(model)
    if up_to not in groups:
        raise UsageError(f"freeze up_to={up_to!r}: known groups {groups}")
    set_trainable(model, groups[groups.index(up_to):])
    if train is not None:
        compile_discriminative(model, train, steps, lr_mult)
    return model


def unfreeze(model: keras.Model, train=None, steps: int = 1, lr_mult: dict | None = None):
    """Make every layer trainable; recompiles when `train` is given."""
    set_trainable(model, "all")
    if train is not None:
        compile_discriminative(model, train, steps, lr_mult)
    return model


def spread_multipliers(groups: list[str], lr_mult: float) -> dict[str, float]:
    """fastai's slice(lr/lr_mult, lr): geometric rates from the first group to the head (1.0)."""
    if len(groups) == 1:
        return {groups[0]: 1.0}
    return {g: float(m) for g, m in zip(groups, np.geomspace(1.0 / lr_mult, 1.0, len(groups)))}


# --- an optimizer with per-group learning-rate multipliers -------------------------------------

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


MULTIPLIED = {"adam": MultipliedAdam, "adamw": MultipliedAdamW, "sgd": MultipliedSGD, "rmsprop": MultipliedRMSprop}


def make_discriminative_optimizer(train, steps: int, lr_multipliers: dict | None) -> keras.optimizers.Optimizer:
    """The trainer's configured optimizer (same class settings, same schedule), with multipliers."""
    from fastcourse.train.trainer import make_optimizer

    base = make_optimizer(train, steps)
    if not lr_multipliers:
        return base
    config = base.get_config()
    config["learning_rate"] = base._learning_rate if hasattr(base, "_learning_rate") else base.learning_rate
    return MULTIPLIED[train.optimizer](lr_multipliers=lr_multipliers, **config)


def compile_discriminative(model: keras.Model, train, steps: int, lr_multipliers: dict | None = None) -> keras.Model:
    """compile_model, with per-group learning-rate multipliers when given."""
    from fastcourse.train.trainer import compile_model

    if not lr_multipliers:
        return compile_model(model, train, steps)
    model.compile(
        optimizer=make_discriminative_optimizer(train, steps, lr_multipliers),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=train.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        steps_per_execution=train.steps_per_execution, jit_compile=train.jit_compile,
    )
    return model


def with_epochs(train, epochs: int, lr: Optional[float] = None):
    """A copy of the train config for one phase: `epochs` long, optionally a new constant-rate base."""
    phase = copy.deepcopy(train)
    phase.epochs = int(epochs)
    if lr is not None:
        args = {k: v for k, v in phase.schedule.args.items() if k != "phases"}
        name = phase.schedule.name if phase.schedule.name != "phases" else "constant"
        args["lr"] = float(lr)
        phase.schedule = type(phase.schedule)(name=name, **args)
    return phase
