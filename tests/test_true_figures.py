"""Per-epoch figures are the model as `evaluate` sees it (BN statistics recomputed before each
validation): the history's last val figures equal the run's reported ones, on arrays, an image
folder and a features head. With Keras' stale moving statistics (momentum 0.99), a one-epoch
cnn_bn_dropout showed val_accuracy 0.113 against a final 0.958."""

import json

import keras
import pandas as pd
import pytest

from fastcourse.config import load_config
from fastcourse.data.synthetic import make_image_folder
from fastcourse.tasks.runner import run_experiment


def _run(cfg: dict, out):
    run_dir = run_experiment(load_config(cfg), out=out)
    return json.loads((run_dir / "metrics.json").read_text()), pd.read_csv(run_dir / "history.csv")


def _agrees(metrics: dict, history: pd.DataFrame) -> None:
    assert history["val_accuracy"].iloc[-1] == pytest.approx(metrics["eval_accuracy"], abs=0.005)
    # the loss pins it down where two accuracies could agree by chance (a stale model's loss is far off)
    assert history["val_loss"].iloc[-1] == pytest.approx(metrics["eval_loss"], rel=0.01, abs=1e-3)


@pytest.mark.integration
def test_one_epoch_cnn_bn_dropout_on_the_sample(tmp_path):
    metrics, history = _run(
        {
            "name": "bn1",
            "seed": 42,
            "data": {"name": "mnist_sample"},
            "model": {"name": "cnn_bn_dropout"},
            "augment": {"name": "course"},
            "train": {"epochs": 1, "batch_size": 64, "verbose": 0},
        },
        tmp_path,
    )
    assert history["val_accuracy"].iloc[-1] >= 0.9
    _agrees(metrics, history)
    assert metrics["bn_statistics_batches"] == 100


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_image_folder(
        tmp_path_factory.mktemp("shapes") / "shapes",
        "dogscats",
        classes=2,
        per_class=48,
        valid_per_class=16,
        test=0,
        size=32,
    )


@pytest.mark.integration
def test_a_folder_run(shapes, tmp_path):
    metrics, history = _run(
        {
            "name": "folder",
            "seed": 0,
            "data": {"name": "image_folder", "path": str(shapes), "image_size": [32, 32]},
            "model": {"name": "cnn_bn", "filters": [8, 16], "dense": 32},
            "train": {"epochs": 2, "batch_size": 16, "verbose": 0},
        },
        tmp_path,
    )
    assert metrics["eval_split"] == "valid" and len(history) == 2
    _agrees(metrics, history)


@pytest.mark.integration
def test_a_features_head(shapes, tmp_path):
    """A batchnorm head on cached features of a tiny conv base (random weights)."""
    metrics, history = _run(
        {
            "name": "feats",
            "seed": 0,
            "data": {"name": "image_folder", "path": str(shapes), "image_size": [32, 32]},
            "model": {"name": "cnn_bn", "filters": [4, 8], "dense": 16},
            "task": {
                "name": "features",
                "cut": "block2_pool",
                "cache_dir": str(tmp_path / "cache"),
                "head": {"units": 16, "batchnorm": True, "pool": False},
            },
            "train": {"epochs": 1, "batch_size": 16, "verbose": 0},
        },
        tmp_path,
    )
    _agrees(metrics, history)


@pytest.mark.integration
def test_the_progress_bar_prints_the_true_figures(capsys):
    """Keras' progress bar comes after fastcourse's callbacks, so it prints the val_* they write."""
    import numpy as np

    from fastcourse.config import TrainConfig
    from fastcourse.data.arrays import mnist_sample
    from fastcourse.data.sources import ArraySource
    from fastcourse.models import build_model
    from fastcourse.train.trainer import evaluate, fit, seed_everything

    data = mnist_sample().limit(640, 256)
    seed_everything(0)
    model = build_model("cnn_bn_dropout", data.input_shape, 10, *data.pixel_stats())
    val = ArraySource(data.x_test, data.y_test, 10)
    result = fit(
        model, ArraySource(data.x_train, data.y_train, 10), TrainConfig(epochs=1, verbose=2), 0, validation=val
    )
    printed = capsys.readouterr().out
    final = evaluate(model, val)["accuracy"]
    assert f"val_accuracy: {final:.4f}" in printed
    assert result.history["val_accuracy"] == [pytest.approx(final, abs=1e-6)]
    assert np.isfinite(result.extra["bn_epoch_seconds"]).all()
    assert keras.mixed_precision.global_policy().name == "float32"


def test_the_progress_bar_names_a_test_split(shapes, tmp_path, capsys):
    """Keras calls the per-epoch figures val_* whatever they are: a run whose evaluation split is
    test says so once; a run with a valid split prints nothing more."""
    sample = {
        "name": "named",
        "seed": 0,
        "data": {"name": "mnist_sample", "train_limit": 256, "test_limit": 128},
        "model": {"name": "linear"},
        "train": {"epochs": 1, "batch_size": 64, "verbose": 2},
    }
    metrics, _ = _run(sample, tmp_path)
    out = capsys.readouterr().out
    assert metrics["eval_split"] == "test"
    assert out.count("the progress bar's val_loss / val_accuracy are the 128 test images") == 1, out
    folder = {
        **sample,
        "data": {"name": "image_folder", "path": str(shapes), "image_size": [32, 32]},
        "model": {"name": "cnn_bn", "filters": [4, 8], "dense": 16},
        "train": {"epochs": 1, "batch_size": 16, "verbose": 2},
    }
    metrics, _ = _run(folder, tmp_path)
    assert metrics["eval_split"] == "valid" and "val_accuracy are the" not in capsys.readouterr().out
