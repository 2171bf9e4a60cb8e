"""Schedules are pure functions of fractional epochs, checked numerically."""

import keras
import numpy as np
import pytest

from fastcourse.train import schedules as S
from fastcourse.train.optimizers import ScheduleAdapter


def test_constant():
    np.testing.assert_allclose(S.constant(np.array([0, 1.5, 9.99]), 10, lr=0.01), [0.01] * 3)


def test_phases_boundaries():
    ph = [(1, 1e-3), (4, 1e-2), (12, 1e-3)]
    e = np.array([0.0, 0.999, 1.0, 4.99, 5.0, 16.9, 17.0, 99.0])
    np.testing.assert_allclose(S.phases(e, 17, phases=ph), [1e-3, 1e-3, 1e-2, 1e-2, 1e-3, 1e-3, 1e-3, 1e-3])


@pytest.mark.parametrize("bad", [[], [(0, 1e-3)], [(1, -1.0)]])
def test_phases_reject_bad(bad):
    with pytest.raises(ValueError):
        S.phases(np.array([0.0]), 1, phases=bad)


def test_step():
    np.testing.assert_allclose(
        S.step(np.array([0, 9.9, 10, 25]), 30, lr=1.0, factor=0.5, every=10), [1.0, 1.0, 0.5, 0.25]
    )


def test_cosine_with_warmup():
    e = np.array([0.0, 1.0, 2.0, 6.0, 10.0])
    got = S.cosine(e, 10, lr=1.0, min_lr=0.1, warmup=2)
    np.testing.assert_allclose(got, [0.0, 0.5, 1.0, 0.1 + 0.45 * (1 + np.cos(np.pi * 0.5)), 0.1], atol=1e-12)


def test_one_cycle_shape():
    e = np.linspace(0, 10, 1001)
    lr = S.one_cycle(e, 10, max_lr=1.0, pct_start=0.3, div=25, div_final=1e4)
    assert lr[0] == pytest.approx(1 / 25)
    assert lr.max() == pytest.approx(1.0)
    assert e[lr.argmax()] == pytest.approx(3.0)
    assert lr[-1] == pytest.approx(1 / 1e4)  # fastai: lr_max / div_final, not / (div x final_div)
    assert np.all(np.diff(lr[:300]) >= 0) and np.all(np.diff(lr[300:]) <= 1e-15)


# fastai's fit_one_cycle defaults (fastai/callback/schedule.py): lr_max 1e-2, div 25, div_final 1e5,
# pct_start 0.25, moms (0.95, 0.85, 0.95). Values worked out by hand from SchedCos,
# start + (1 + cos(pi (1 - pos))) (end - start) / 2, at pos = 0, 1/2, 0 | 1/3, 1 of the pieces:
#   12.5 %: half way up, (4e-4 + 1e-2) / 2 and (0.95 + 0.85) / 2;
#   50 %: a third of the way down, 1e-2 - (1e-2 - 1e-7) / 4 and 0.85 + 0.10 / 4.
ONE_CYCLE_TABLE = [
    # (fraction of training, rate, momentum)
    (0.0, 4e-4, 0.95),
    (0.125, 5.2e-3, 0.90),
    (0.25, 1e-2, 0.85),
    (0.5, 0.007500025, 0.875),
    (1.0, 1e-7, 0.95),
]


@pytest.mark.parametrize("pct, rate, momentum", ONE_CYCLE_TABLE)
def test_one_cycle_is_fastais(pct, rate, momentum):
    epochs = 8  # any length: the schedule is a function of the fraction of training
    assert float(S.one_cycle(pct * epochs, epochs)) == pytest.approx(rate, abs=1e-6, rel=1e-9)
    assert float(S.one_cycle_momentum(pct * epochs, epochs)) == pytest.approx(momentum, abs=1e-6)


def test_one_cycle_momentum_off():
    assert S.one_cycle_momentum(np.array([0.0, 1.0]), 2, moms=None) is None
    assert S.momentum_table("one_cycle", {"moms": None}, 2, 5) is None
    assert S.momentum_table("cosine", {}, 2, 5) is None
    table = S.momentum_table("one_cycle", {"max_lr": 1e-3}, 2, 4)  # 8 steps: step i at pos i/8
    np.testing.assert_allclose(table[[0, 1, 2, 4]], [0.95, 0.90, 0.85, 0.875], atol=1e-6)


def test_adapter_is_per_step_and_serialises():
    sched = ScheduleAdapter("phases", {"phases": [(1, 0.1), (1, 0.01)]}, total_epochs=2, steps_per_epoch=5)
    assert float(sched(0)) == pytest.approx(0.1)
    assert float(sched(4)) == pytest.approx(0.1)
    assert float(sched(5)) == pytest.approx(0.01)
    assert float(sched(10_000)) == pytest.approx(0.01)  # past the end: the last rate
    again = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(sched))
    np.testing.assert_allclose(again.table, sched.table)


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd", "rmsprop"])
@pytest.mark.parametrize("multiplied", [False, True])
def test_weight_decay_reaches_every_optimizer(name, multiplied):
    """`train.weight_decay` decays the weights whatever the optimizer (it once reached adamw only):
    one step with a zero gradient at rate 1 leaves weight x (1 - weight_decay)."""
    from fastcourse.train.optimizers import build_optimizer

    var = keras.Variable(np.ones(3, dtype=np.float32))
    opt = build_optimizer(name, 1.0, 0.1, {"": 1.0} if multiplied else None)
    opt.apply_gradients([(keras.ops.zeros(3), var)])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(var), 0.9, rtol=1e-6)
    assert name != "sgd" or opt.momentum == 0.9


def test_no_weight_decay_unless_asked():
    from fastcourse.train.optimizers import build_optimizer

    assert build_optimizer("adam", 1e-3).weight_decay is None
    assert build_optimizer("adamw", 1e-3).weight_decay == pytest.approx(1e-4)  # AdamW's own default
