"""Optimizers driven by a schedule evaluated per step, with optional per-group rate multipliers.

Every call of the trainer compiles a FRESH optimizer whose learning-rate table spans exactly that
call (`epochs` x `steps`), so each fine-tune phase and each pseudo-label round gets its own
table, from any schedule, stretched to its length and scaled by `scale`.

Discriminative rates are per-variable multipliers of the scheduled rate applied inside the
optimizer's own update, so they are true learning rates for Adam and RMSprop too (gradient
scaling would be cancelled by Adam's normalisation).

A schedule that also drives the momentum (one_cycle's `moms`, as fastai's fit_one_cycle) gives
the optimizer a second table: Adam's and AdamW's beta_1 and SGD's momentum are read from it at
the optimizer's own step counter inside the update, so they change every step inside the
compiled train step, with any `steps_per_execution`, under tf.distribute, and continue where a
resumed run stopped (the counter is checkpointed). No variable is added to the optimizer.
RMSprop keeps its momentum (0), as fastai's RMSProp without `mom` does.
"""

from __future__ import annotations

import keras
import numpy as np

from fastcourse.models.surgery import layer_group
from fastcourse.train.schedules import lr_table, momentum_table

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
MOMENTUM_CYCLED = ("adam", "adamw", "sgd")  # the optimizers whose momentum a schedule can drive


@keras.saving.register_keras_serializable(package="fastcourse")
class ScheduleAdapter(keras.optimizers.schedules.LearningRateSchedule):
    """A registered schedule, evaluated per step from a precomputed table.

    Its config holds the schedule's name and parameters, not the table, so saved models stay
    small and reload in safe mode. `quantity="momentum"` gives the schedule's momentum table
    instead (`fastcourse.train.schedules.momentum_table`; `scale` does not apply to it).

    With gradient accumulation (`accumulate` K > 1: one optimizer step per K batches) the table
    has one entry per OPTIMIZER step (steps_per_epoch / K of them an epoch), as a run with a batch
    K times larger has: Keras reads the rate at its micro-batch counter, which is divided by K
    here; the momentum is read at `optimizer.iterations`, already in optimizer steps.
    """

    def __init__(
        self,
        name: str,
        params: dict,
        total_epochs: int,
        steps_per_epoch: int,
        scale: float = 1.0,
        quantity: str = "learning_rate",
        accumulate: int = 1,
    ):
        self.name = name
        self.params = _current_params(name, dict(params))
        self.total_epochs = int(total_epochs)
        self.steps_per_epoch = int(steps_per_epoch)
        self.scale = float(scale)
        self.quantity = quantity
        self.accumulate = int(accumulate)
        per_epoch = self.steps_per_epoch / self.accumulate if self.accumulate > 1 else self.steps_per_epoch
        if quantity == "momentum":
            table = momentum_table(name, self.params, self.total_epochs, per_epoch)
            if table is None:
                raise ValueError(f"schedule {name!r} with {self.params} does not drive the momentum")
            self.table = table
        else:
            self.table = lr_table(name, self.params, self.total_epochs, per_epoch) * np.float32(self.scale)

    def __call__(self, step):
        last = self.table.shape[0] - 1
        step = keras.ops.cast(step, "int32")
        if self.accumulate > 1 and self.quantity == "learning_rate":  # Keras' micro-batch counter
            step = keras.ops.floor_divide(step, self.accumulate)
        index = keras.ops.minimum(step, last)
        return keras.ops.take(keras.ops.convert_to_tensor(self.table), index)

    def get_config(self):
        return {
            "name": self.name,
            "params": self.params,
            "total_epochs": self.total_epochs,
            "steps_per_epoch": self.steps_per_epoch,
            "scale": self.scale,
            **({"quantity": self.quantity} if self.quantity != "learning_rate" else {}),
            **({"accumulate": self.accumulate} if self.accumulate > 1 else {}),
        }


def _current_params(name: str, params: dict) -> dict:
    """Parameters saved by an earlier fastcourse, in today's names: one_cycle's `final_div` ended
    at max_lr / (div x final_div) (PyTorch's OneCycleLR); that end is div_final = div x final_div,
    and those runs' momentum did not cycle."""
    if name == "one_cycle" and "final_div" in params:
        params = dict(params)
        params["div_final"] = float(params.get("div", 25.0)) * float(params.pop("final_div"))
        params.setdefault("moms", None)
    return params


def momentum_schedule(
    optimizer: str, name: str, params: dict, total_epochs: int, steps_per_epoch: int, accumulate: int = 1
):
    """The per-step momentum of schedule `name` for `optimizer`, or None where it leaves the
    optimizer's own (a schedule without one, `moms: null`, RMSprop)."""
    if optimizer not in MOMENTUM_CYCLED or momentum_table(name, _current_params(name, params), 1, 1) is None:
        return None
    return ScheduleAdapter(name, params, total_epochs, steps_per_epoch, quantity="momentum", accumulate=accumulate)


def spread_multipliers(groups: list[str], lr_mult: float) -> dict[str, float]:
    """fastai's slice(lr/lr_mult, lr): geometric rates from the first group to the head (1.0)."""
    if len(groups) == 1:
        return {groups[0]: 1.0}
    return {g: float(m) for g, m in zip(groups, np.geomspace(1.0 / lr_mult, 1.0, len(groups)))}


class _Multiplied:
    """Mixin for a Keras optimizer: learning rate x multiplier of the variable's layer group, and
    optionally a momentum from `momentum_schedule` (a ScheduleAdapter) at each step."""

    def __init__(self, *args, lr_multipliers: dict | None = None, momentum_schedule=None, **kwargs):
        if isinstance(momentum_schedule, dict):  # from a saved config
            momentum_schedule = keras.saving.deserialize_keras_object(momentum_schedule)
        super().__init__(*args, **kwargs)
        self.lr_multipliers = dict(lr_multipliers or {})
        self.momentum_schedule = momentum_schedule
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
        learning_rate = learning_rate * mult if mult != 1.0 else learning_rate
        if self.momentum_schedule is None:
            return super().update_step(gradient, variable, learning_rate)
        # the step this update belongs to, as the learning-rate schedule reads it; momentum_update
        # comes from _CycledAdam or _CycledSGD (build_optimizer gives a schedule to those only)
        return self.momentum_update(gradient, variable, learning_rate, self.momentum_schedule(self.iterations))

    def get_config(self):
        config = {**super().get_config(), "lr_multipliers": self.lr_multipliers}
        if self.momentum_schedule is not None:
            config["momentum_schedule"] = keras.saving.serialize_keras_object(self.momentum_schedule)
        return config


class _CycledAdam:
    """Keras' Adam update (keras/src/optimizers/adam.py, Keras 3.15) with beta_1 given per step.

    Its bias correction 1 - beta_1^t uses the current beta_1, as fastai's Adam does with the
    current `mom` (fastai/optimizer.py: debias(mom, 1-mom, step))."""

    def momentum_update(self, gradient, variable, learning_rate, momentum):
        ops = keras.ops
        lr = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        beta_1 = ops.cast(momentum, variable.dtype)
        local_step = ops.cast(self.iterations + 1, variable.dtype)
        beta_1_power = ops.power(beta_1, local_step)
        beta_2_power = ops.power(ops.cast(self.beta_2, variable.dtype), local_step)
        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._velocities[index]
        alpha = lr * ops.sqrt(1 - beta_2_power) / (1 - beta_1_power)
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))
        if self.amsgrad:
            v_hat = self._velocity_hats[index]
            self.assign(v_hat, ops.maximum(v_hat, v))
            v = v_hat
        self.assign_sub(variable, ops.divide(ops.multiply(m, alpha), ops.add(ops.sqrt(v), self.epsilon)))


class _CycledSGD:
    """Keras' SGD momentum update (keras/src/optimizers/sgd.py, Keras 3.15) with the momentum
    given per step (the optimizer is built with a nonzero momentum, so its slots exist)."""

    def momentum_update(self, gradient, variable, learning_rate, momentum):
        ops = keras.ops
        learning_rate = ops.cast(learning_rate, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        momentum = ops.cast(momentum, variable.dtype)
        m = self.momentums[self._get_variable_index(variable)]
        self.assign(m, ops.subtract(ops.multiply(m, momentum), ops.multiply(gradient, learning_rate)))
        if self.nesterov:
            self.assign_add(variable, ops.subtract(ops.multiply(m, momentum), ops.multiply(gradient, learning_rate)))
        else:
            self.assign_add(variable, m)


@keras.saving.register_keras_serializable(package="fastcourse")
class MultipliedAdam(_Multiplied, _CycledAdam, keras.optimizers.Adam):
    """Adam with per-group learning-rate multipliers and an optional per-step beta_1."""


@keras.saving.register_keras_serializable(package="fastcourse")
class MultipliedAdamW(_Multiplied, _CycledAdam, keras.optimizers.AdamW):
    """AdamW with per-group learning-rate multipliers and an optional per-step beta_1."""


@keras.saving.register_keras_serializable(package="fastcourse")
class MultipliedSGD(_Multiplied, _CycledSGD, keras.optimizers.SGD):
    """SGD (momentum) with per-group learning-rate multipliers and an optional per-step momentum."""


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
    """`train.optimizer` driven by `train.schedule` over `epochs` (default train.epochs) x `steps`:
    its rate, and its momentum where the schedule drives one (one_cycle's `moms`)."""
    epochs = epochs or train.epochs
    accumulate = int(getattr(train, "accumulate", 1) or 1)
    lr = ScheduleAdapter(train.schedule.name, train.schedule.args, epochs, steps, scale, accumulate=accumulate)
    momentum = momentum_schedule(train.optimizer, train.schedule.name, train.schedule.args, epochs, steps, accumulate)
    ema = getattr(train, "ema", None)
    return build_optimizer(
        train.optimizer,
        lr,
        train.weight_decay,
        lr_multipliers,
        momentum,
        accumulate=accumulate,
        ema_momentum=None if ema is None else ema.momentum,
    )


def build_optimizer(
    name: str,
    learning_rate,
    weight_decay: float | None = None,
    lr_multipliers: dict | None = None,
    momentum_schedule: ScheduleAdapter | None = None,
    accumulate: int = 1,
    ema_momentum: float | None = None,
):
    """The Keras optimizer `name` (one of OPTIMIZERS) at `learning_rate` (a number or a schedule).

    `weight_decay` is Keras' decoupled decay (each step: weight -= lr x weight_decay x weight),
    which every Keras optimizer takes; adamw falls back to 1e-4 without one, the others to none.
    SGD gets momentum 0.9. `momentum_schedule` (adam, adamw, sgd) replaces Adam's beta_1 or
    SGD's momentum at each step. `accumulate` K > 1 is Keras' gradient_accumulation_steps (one
    update per K batches, with the mean of their gradients); `ema_momentum` keeps Keras' moving
    average of the weights (use_ema; fastcourse.train.ema swaps it in for evaluation)."""
    kwargs: dict = {"learning_rate": learning_rate}
    if accumulate > 1:
        kwargs["gradient_accumulation_steps"] = int(accumulate)
    if ema_momentum is not None:
        kwargs.update(use_ema=True, ema_momentum=float(ema_momentum))
    if weight_decay:
        kwargs["weight_decay"] = float(weight_decay)
    elif name == "adamw":
        kwargs["weight_decay"] = 1e-4
    if name == "sgd":
        kwargs["momentum"] = 0.9
    if momentum_schedule is not None:
        if name not in MOMENTUM_CYCLED:
            raise ValueError(f"optimizer {name!r} has no momentum to schedule; use one of {', '.join(MOMENTUM_CYCLED)}")
        kwargs["momentum_schedule"] = momentum_schedule
    if lr_multipliers or momentum_schedule is not None:
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
