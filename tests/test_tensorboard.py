"""train.tensorboard: a 1-epoch tiny run leaves TensorBoard event files with the epoch scalars,
the learning rate per step and augmented sample images under RUN/tensorboard/."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("tensorboard")

from fastcourse.config import load_config
from fastcourse.tasks.runner import run_experiment
from fastcourse.train.callbacks import open_command, tensorboard_dir_for


def _tags(folder: Path) -> dict[str, set[str]]:
    """Tags of every event file under `folder`, keyed by the file's folder (train, validation)."""
    import tensorflow as tf

    found: dict[str, set[str]] = {}
    for path in folder.rglob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                found.setdefault(path.parent.name, set()).add(value.tag)
    return found


def test_tensorboard_dir_follows_the_checkpoints():
    assert tensorboard_dir_for(Path("runs/a/checkpoints")) == Path("runs/a/tensorboard")
    assert tensorboard_dir_for(Path("runs/a/checkpoints/frozen")) == Path("runs/a/tensorboard/frozen")
    assert open_command("runs/a/tensorboard") == "tensorboard --logdir runs/a/tensorboard"


@pytest.mark.integration
def test_tiny_run_writes_scalars_rate_and_images(tmp_path, capsys):
    cfg = load_config(
        {
            "name": "tb",
            "data": {"name": "mnist_sample", "train_limit": 128, "test_limit": 64},
            "model": {"name": "linear"},
            "augment": {"name": "course"},
            "train": {
                "epochs": 1,
                "batch_size": 32,
                "verbose": 0,
                "tensorboard": True,
                "bn_recalibrate": 0,
                "schedule": {"name": "one_cycle", "max_lr": 1e-2},
            },
            "out": str(tmp_path),
        }
    )
    run = run_experiment(cfg)
    board = run / "tensorboard"
    assert f"tensorboard --logdir {board}" in capsys.readouterr().out
    tags = _tags(board)
    assert {"epoch_loss", "epoch_accuracy", "learning_rate", "augmented_samples"} <= tags["train"], tags
    assert {"epoch_loss", "epoch_accuracy"} <= tags["validation"], tags
    # one rate per step (128 images / 32 = 4 steps), and they follow the one-cycle table
    import tensorflow as tf

    rates = [
        float(tf.make_ndarray(v.tensor))
        for p in (board / "train").glob("events.*")
        for e in tf.compat.v1.train.summary_iterator(str(p))
        for v in e.summary.value
        if v.tag == "learning_rate"
    ]
    assert len(rates) == 4 and max(rates) > min(rates)
    moms = [
        float(tf.make_ndarray(v.tensor))
        for p in (board / "train").glob("events.*")
        for e in tf.compat.v1.train.summary_iterator(str(p))
        for v in e.summary.value
        if v.tag == "momentum"
    ]
    assert len(moms) == 4 and 0.85 <= min(moms) < max(moms) <= 0.95  # fastai's moms, cycled


@pytest.mark.integration
def test_off_by_default(tmp_path):
    cfg = load_config(
        {
            "name": "notb",
            "data": {"name": "mnist_sample", "train_limit": 64, "test_limit": 32},
            "model": {"name": "linear"},
            "train": {"epochs": 1, "verbose": 0, "bn_recalibrate": 0},
            "out": str(tmp_path),
        }
    )
    assert not (run_experiment(cfg) / "tensorboard").exists()
