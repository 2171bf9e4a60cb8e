"""fastai's one-cycle momentum, as the optimizer really applies it (fastcourse.train.optimizers).

The formula itself is checked in tests/test_schedules.py (ONE_CYCLE_TABLE, worked out by hand from
fastai's SchedCos). Here a short Keras fit reads back the momentum each step really used: with a
loss linear in one weight, the gradient g_k of step k is known exactly, so Adam's first moment
m_k = b_k m_(k-1) + (1 - b_k) g_k gives b_k = (g_k - m_k) / (g_k - m_(k-1)), and SGD's
m_k = b_k m_(k-1) - lr_k g_k gives b_k = (m_k + lr_k g_k) / m_(k-1).
"""

import keras
import numpy as np
import pytest

from fastcourse.config import TrainConfig
from fastcourse.train import schedules as S
from fastcourse.train.optimizers import ScheduleAdapter, build_optimizer, compile_model, make_optimizer

EPOCHS, STEPS = 2, 8


def _train(optimizer="adam", **schedule):
    return TrainConfig(
        optimizer=optimizer, batch_size=1, epochs=EPOCHS, schedule={"name": "one_cycle", "max_lr": 0.5, **schedule}
    )


def _linear_fit(opt, steps_per_execution=1, probe=None):
    """A loss linear in one weight: step k's gradient is x_k = +1, -1, +1, ... exactly."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((1,))
    model = keras.Model(inputs, keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")(inputs))
    model.compile(optimizer=opt, loss=lambda y, p: keras.ops.mean(p), steps_per_execution=steps_per_execution)
    n = EPOCHS * STEPS
    x = np.array([[1.0 if k % 2 == 0 else -1.0] for k in range(n)], np.float32)
    model.fit(x, np.zeros((n, 1), np.float32), batch_size=1, epochs=1, shuffle=False, verbose=0, callbacks=probe or [])
    return model, x[:, 0]


class SlotProbe(keras.callbacks.Callback):
    """The optimizer's first-moment (Adam) or momentum (SGD) slot after every step."""

    def __init__(self, slot):
        super().__init__()
        self.slot, self.values = slot, []

    def on_train_batch_end(self, batch, logs=None):
        opt = self.model.optimizer
        var = opt._momentums[0] if self.slot == "adam" else opt.momentums[0]
        self.values.append(float(keras.ops.convert_to_numpy(var)[0, 0]))


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd"])
def test_the_momentum_used_each_step_is_fastais(name):
    opt = make_optimizer(_train(name), STEPS)
    probe = SlotProbe("sgd" if name == "sgd" else "adam")
    _, g = _linear_fit(opt, probe=[probe])
    m = np.array([0.0, *probe.values], np.float64)
    n = EPOCHS * STEPS
    assert len(probe.values) == n
    pos = np.arange(n) / n  # fastai's pct_train before step k
    want = S.combined_cos(pos, 0.25, 0.95, 0.85, 0.95)
    if name == "sgd":
        lr = S.one_cycle(pos * EPOCHS, EPOCHS, max_lr=0.5)
        used = (m[2:] + lr[1:] * g[1:]) / m[1:-1]  # step 1 starts from m = 0: it shows no momentum
        np.testing.assert_allclose(used, want[1:], atol=2e-6)
    else:
        used = (g - m[1:]) / (g - m[:-1])
        np.testing.assert_allclose(used, want, atol=2e-6)
    assert want.min() == pytest.approx(0.85) and want[0] == pytest.approx(0.95)


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_steps_per_execution_changes_nothing(name):
    """The momentum is read from the optimizer's step counter inside the compiled step, so 4
    steps per execution train exactly as 1 does."""
    one, _ = _linear_fit(make_optimizer(_train(name), STEPS), steps_per_execution=1)
    four, _ = _linear_fit(make_optimizer(_train(name), STEPS), steps_per_execution=4)
    for a, b in zip(one.optimizer.variables, four.optimizer.variables):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b), rtol=1e-6)
    np.testing.assert_allclose(one.get_weights()[0], four.get_weights()[0], rtol=1e-6)


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_a_constant_momentum_is_keras_own_update(name):
    """The scheduled update is Keras' own (Adam, SGD) when the schedule holds the momentum still."""
    flat = ScheduleAdapter("one_cycle", {"moms": (0.9, 0.9, 0.9)}, EPOCHS, STEPS, quantity="momentum")
    ours, _ = _linear_fit(build_optimizer(name, 0.05, momentum_schedule=flat))
    keras_own, _ = _linear_fit(
        keras.optimizers.Adam(0.05, beta_1=0.9) if name == "adam" else keras.optimizers.SGD(0.05, momentum=0.9)
    )
    np.testing.assert_allclose(ours.get_weights()[0], keras_own.get_weights()[0], rtol=1e-6)


def test_momentum_off_and_where_it_does_not_apply():
    assert getattr(make_optimizer(_train("adam", moms=None), STEPS), "momentum_schedule", None) is None
    assert getattr(make_optimizer(_train("rmsprop"), STEPS), "momentum_schedule", None) is None
    constant = TrainConfig(optimizer="adam", epochs=1, schedule={"name": "constant", "lr": 1e-3})
    assert isinstance(make_optimizer(constant, STEPS), keras.optimizers.Adam)
    assert make_optimizer(_train("adam"), STEPS).momentum_schedule.table.shape == (EPOCHS * STEPS,)


def test_cycled_optimizer_saves_and_reloads_in_safe_mode(tmp_path):
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    compile_model(model, _train("adam", moms=[0.9, 0.8, 0.9]), STEPS)
    model.fit(np.ones((4, 3), np.float32), np.eye(2, dtype=np.float32)[[0, 1, 0, 1]], verbose=0)
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras", safe_mode=True)
    sched = again.optimizer.momentum_schedule
    np.testing.assert_allclose(sched.table, model.optimizer.momentum_schedule.table)
    assert sched.table[0] == pytest.approx(0.9) and sched.table.min() == pytest.approx(0.8, abs=1e-3)


def test_a_model_saved_with_final_div_reloads_with_its_old_end():
    """Runs saved before fastai's div_final kept PyTorch's end, max_lr / (div x final_div)."""
    old = ScheduleAdapter("one_cycle", {"max_lr": 1.0, "div": 25.0, "final_div": 1e4}, 1, 1000)
    assert old.params == {"max_lr": 1.0, "div": 25.0, "div_final": 2.5e5, "moms": None}
    low, frac = 1 / 2.5e5, (0.999 - 0.25) / 0.75  # the old code's cosine down, at the last step
    assert old.table[-1] == pytest.approx(low + (1 - low) * 0.5 * (1 + np.cos(np.pi * frac)), rel=1e-5)
