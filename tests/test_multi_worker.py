"""The multi-worker loop's checkpoints (fastcourse/train/multi_worker.py), in one process: the loop
runs under any tf.distribute strategy, so the default one stands in for the chief. A run stopped
after its first epoch and resumed from the chief's checkpoint ends where an uninterrupted run
ends, with one continuous history. (Two real workers, one killed: tests/test_distribute.py.)"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from fastcourse.config import load_config
from fastcourse.data.arrays import mnist_sample
from fastcourse.data.sources import ArraySource, steps_per_epoch
from fastcourse.models import build_model
from fastcourse.train import checkpoint
from fastcourse.train.guards import Diverged
from fastcourse.train.multi_worker import fit_multi_worker
from fastcourse.train.optimizers import compile_model
from fastcourse.train.trainer import seed_everything

EPOCHS = 3


@pytest.fixture(scope="module")
def source():
    data = mnist_sample()
    return ArraySource(data.x_train[:256], data.y_train[:256], 10)


def train_config(tiny_config, **train):
    return load_config(
        tiny_config(
            train={
                "batch_size": 64,
                "verbose": 0,
                "epochs": EPOCHS,
                "schedule": {"name": "one_cycle", "max_lr": 3e-3},
                **train,
            }
        )
    ).train


def run(source, train, folder=None, epochs=EPOCHS, resume=False, model="cnn_bn_dropout"):
    """What the trainer does for one call under the strategy: build, compile, restore, loop."""
    keras.backend.clear_session()
    seed_everything(0)
    model = build_model(model, (28, 28, 1), 10, mean=33.0, std=78.0, filters=[4, 8], dense=16)
    steps = steps_per_epoch(len(source), train.batch_size)
    compile_model(model, train, steps, train.epochs)
    state = checkpoint.restore(model, folder) if resume else checkpoint.CheckpointState()
    ds = source.batches(train.batch_size, shuffle=True, seed=0, repeat=True, start_step=state.epoch * steps)
    history, seconds = fit_multi_worker(
        model,
        ds,
        epochs,
        steps,
        train.batch_size,
        tf.distribute.get_strategy(),
        state.epoch,
        verbose=0,
        checkpoint_dir=folder,
        resumed=state,
    )
    return model, history, seconds


@pytest.mark.slow  # ~12 s; test_distribute keeps two workers in the default tier
@pytest.mark.integration
def test_the_chief_checkpoints_each_epoch_and_a_resumed_run_ends_as_a_straight_one(source, tiny_config, tmp_path):
    train = train_config(tiny_config)
    straight, straight_history, _ = run(source, train)

    folder = tmp_path / "checkpoints"
    _, first, _ = run(source, train, folder, epochs=1)  # as if the workers were lost after epoch 1
    state = json.loads((folder / "state.json").read_text())
    assert state["epoch"] == 1 and state["model_file"] == "epoch-0001.keras"
    assert [p.name for p in folder.glob("*.keras")] == ["epoch-0001.keras"]
    assert state["history"]["loss"] == pytest.approx(first["loss"]) and len(state["epoch_seconds"]) == 1
    keras.saving.load_model(folder / "epoch-0001.keras", safe_mode=True)  # the single-device format

    resumed, history, seconds = run(source, train, folder, resume=True)
    assert len(history["loss"]) == len(history["accuracy"]) == len(seconds) == EPOCHS
    assert history["loss"][0] == first["loss"][0]  # the checkpointed epoch, kept, not retrained
    np.testing.assert_allclose(history["loss"], straight_history["loss"], rtol=1e-5)
    for a, b in zip(straight.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    assert json.loads((folder / "state.json").read_text())["epoch"] == EPOCHS


def test_a_diverged_epoch_is_never_checkpointed(source, tiny_config, tmp_path):
    train = train_config(
        tiny_config, epochs=2, optimizer="sgd", schedule={"name": "phases", "phases": [[1, 1e-3], [1, 1e30]]}
    )
    folder = tmp_path / "checkpoints"
    with pytest.raises(Diverged, match="epoch 2: the training loss became nan.*checkpoint of epoch 1 is kept"):
        run(source, train, folder, epochs=2, model="cnn")
    state = checkpoint.read_state(folder)
    assert state["epoch"] == 1 and np.isfinite(state["history"]["loss"]).all()
