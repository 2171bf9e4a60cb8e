"""The shared trainer: phase rates really take effect, the loss goes down, seeds repeat."""

import json

import keras
import numpy as np
import pytest

from fastcourse.config import load_config
from fastcourse.data.arrays import mnist_sample
from fastcourse.data.sources import ArraySource
from fastcourse.models import build_model
from fastcourse.tasks.runner import run_experiment
from fastcourse.train.lr_find import lr_find, suggest
from fastcourse.train.trainer import fit, seed_everything


@pytest.fixture(scope="module")
def sample():
    data = mnist_sample()
    return data.x_train[:640], data.y_train[:640]


class WeightsAtEpochEnd(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.snapshots, self.rates = [], []

    def on_epoch_begin(self, epoch, logs=None):
        # the rate for the next step, i.e. this epoch's first
        self.rates.append(float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)))

    def on_epoch_end(self, epoch, logs=None):
        self.snapshots.append([w.copy() for w in self.model.get_weights()])


def test_each_phase_rate_really_takes_effect(sample, tiny_config):
    """The course's `model.optimizer.lr = x` did nothing in Keras 1; here phase 3's near-zero
    rate must freeze the weights while phases 1-2 move them."""
    x, y = sample
    cfg = load_config(
        tiny_config(
            train={
                "batch_size": 64,
                "verbose": 0,
                "schedule": {"name": "phases", "phases": [[1, 1e-2], [1, 1e-3], [1, 1e-12]]},
            }
        )
    )
    seed_everything(0)
    model = build_model("linear", (28, 28, 1), 10, mean=33.0, std=78.0)
    probe = WeightsAtEpochEnd()
    fit(model, ArraySource(x, y, 10), cfg.train, seed=0, callbacks=[probe])
    # the rate in force during each epoch is its phase's own
    assert probe.rates[0] == pytest.approx(1e-2) and probe.rates[1] == pytest.approx(1e-3)
    assert probe.rates[2] == pytest.approx(1e-12)
    moved = [max(np.abs(a - b).max() for a, b in zip(s1, s0)) for s0, s1 in zip(probe.snapshots, probe.snapshots[1:])]
    assert moved[0] > 1e-4  # phase 2 (1e-3) still trains
    assert moved[1] < 1e-8  # phase 3 (1e-12) does not


@pytest.mark.integration
def test_a_few_epochs_lower_the_loss(sample, tiny_config):
    x, y = sample
    cfg = load_config(tiny_config(train__epochs=3))
    seed_everything(0)
    model = build_model("cnn", (28, 28, 1), 10, mean=33.0, std=78.0, filters=(8, 16), dense=32)
    result = fit(model, ArraySource(x, y, 10), cfg.train, seed=0, validation=ArraySource(x[:128], y[:128], 10))
    losses = result.history["loss"]
    assert losses[-1] < losses[0] * 0.7
    assert len(result.epoch_seconds) == 3 and result.images_per_second > 0
    assert "val_accuracy" in result.history


@pytest.mark.integration
def test_same_seed_same_numbers(tmp_path, tiny_config):
    cfg = load_config(tiny_config(augment={"name": "course"}, train__epochs=2))
    runs = [json.loads((run_experiment(cfg, out=tmp_path / str(i)) / "metrics.json").read_text()) for i in range(2)]
    assert runs[0]["eval_loss"] == runs[1]["eval_loss"]
    assert runs[0]["eval_accuracy"] == runs[1]["eval_accuracy"]
    other = load_config(tiny_config(augment={"name": "course"}, train__epochs=2, seed=2))
    third = json.loads((run_experiment(other, out=tmp_path / "x") / "metrics.json").read_text())
    assert third["eval_loss"] != runs[0]["eval_loss"]


def test_lr_find_suggests_a_rate_and_restores_weights(sample, tmp_path):
    x, y = sample
    seed_everything(0)
    model = build_model("linear", (28, 28, 1), 10, mean=33.0, std=78.0)
    before = [w.copy() for w in model.get_weights()]
    result = lr_find(model, ArraySource(x, y, 10), batch_size=32, min_lr=1e-6, max_lr=10.0, steps=60)
    assert 1e-6 <= result.suggestion <= 10.0
    assert result.losses[0] > np.nanmin(result.losses)  # the loss fell somewhere in the sweep
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert result.plot(tmp_path / "lr.png").stat().st_size > 1000


def test_suggest_steep_picks_steepest_descent_and_valley_lies_on_the_fall():
    lrs = np.geomspace(1e-5, 1, 50)
    losses = 2.0 - np.tanh((np.log10(lrs) + 3) * 2)  # falls fastest at 1e-3, from 3 to 1
    assert suggest(lrs, losses, "steep") == pytest.approx(1e-3, rel=0.3)
    assert 1e-4 < suggest(lrs, losses) < 1e-2  # valley, the default: inside the fall


@pytest.mark.integration
def test_true_batchnorm_statistics_after_one_epoch(tmp_path, tiny_config):
    """cnn_bn_dropout, one epoch on the bundled sample: Keras' moving statistics have not settled
    (0.1-0.2 test accuracy in inference mode); the recalibrated model evaluates at 0.9 or more,
    and the history's val figure is that model's (tests/test_true_figures.py for the other kinds)."""
    import pandas as pd

    runs, history = {}, {}
    for n in (100, 0):
        cfg = load_config(
            tiny_config(
                data={"name": "mnist_sample"},
                model={"name": "cnn_bn_dropout"},
                train__bn_recalibrate=n,
                train__epochs=1,
            )
        )
        run_dir = run_experiment(cfg, out=tmp_path / str(n))
        runs[n] = json.loads((run_dir / "metrics.json").read_text())
        history[n] = pd.read_csv(run_dir / "history.csv")
    assert runs[100]["eval_accuracy"] >= 0.9 and runs[100]["bn_statistics_batches"] == 100
    assert runs[0]["eval_accuracy"] < 0.5 and "bn_statistics_batches" not in runs[0]
    for n in (100, 0):  # with or without recomputation, the history shows the model evaluated
        assert history[n]["val_accuracy"].iloc[-1] == pytest.approx(runs[n]["eval_accuracy"], abs=0.005)
