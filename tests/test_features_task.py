"""The sklearn_features task: a builder's cut layer -> a scikit-learn classifier."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from fastcourse.config import load_config
from fastcourse.errors import ConfigError, DataError
from fastcourse.models import build_model
from fastcourse.tasks.runner import run_experiment


def _cfg(tiny_config, tmp_path, **task):
    return load_config(
        tiny_config(
            task={"name": "sklearn_features", **task},
            model={"name": "lenet"},
            out=str(tmp_path),
            data__train_limit=400,
            data__test_limit=200,
        )
    )


@pytest.mark.integration
def test_logistic_on_pretrained_lenet_features(tiny_config, tmp_path):
    run = run_experiment(_cfg(tiny_config, tmp_path, layer="fc4", pretrain=True))
    m = json.loads((run / "metrics.json").read_text())
    assert m["feature_dim"] == 84 and m["layer"] == "fc4" and m["classifier"] == "logistic"
    assert m["eval_accuracy"] > 0.6 and m["train_accuracy"] >= m["eval_accuracy"]
    assert 0 < m["eval_loss"] < 2.3  # better than chance (ln 10)
    assert 0 <= m["network_test_accuracy"] <= 1
    for f in ["config.yaml", "confusion_matrix.png", "history.csv", "features.keras"]:
        assert (run / f).is_file()
    extractor = keras.saving.load_model(run / "features.keras", safe_mode=True)
    assert extractor.output_shape == (None, 84)


def test_gradient_boosting_on_pooled_conv_features(tiny_config, tmp_path):
    run = run_experiment(
        _cfg(tiny_config, tmp_path, layer="conv2", pool="avg", classifier="gradient_boosting", max_iter=5)
    )
    m = json.loads((run / "metrics.json").read_text())
    assert m["feature_dim"] == 16 and m["pool"] == "avg"
    assert m["eval_accuracy"] > 0.2  # above chance (0.1) on 16 random-filter averages
    assert not (run / "history.csv").exists()


def test_weights_from_a_saved_model_are_used(tiny_config, tmp_path, rng):
    source = build_model("lenet", (28, 28, 1), 10)
    source.save(tmp_path / "lenet.keras")
    run = run_experiment(_cfg(tiny_config, tmp_path / "runs", weights=str(tmp_path / "lenet.keras")))
    extractor = keras.saving.load_model(run / "features.keras", safe_mode=True)
    x = rng.integers(0, 256, (2, 28, 28, 1)).astype("float32")
    cut = keras.Model(source.inputs, source.get_layer("fc4").output)  # default cut: the last layer's input
    np.testing.assert_allclose(np.asarray(extractor(x)), np.asarray(cut(x)), atol=1e-5)


def test_bad_task_settings_fail_before_training(tiny_config, tmp_path):
    with pytest.raises(ConfigError, match="task.layer = 'nope'.*fc4"):
        run_experiment(_cfg(tiny_config, tmp_path, layer="nope", pretrain=True))
    with pytest.raises(DataError, match="no such file"):
        run_experiment(_cfg(tiny_config, tmp_path, weights=str(tmp_path / "missing.keras")))
    with pytest.raises(ConfigError, match="task.classifier"):
        _cfg(tiny_config, tmp_path, classifier="svm")


@pytest.mark.integration
def test_image_folder_train_vs_valid(tmp_path):
    """A folder dataset: features of train/ fit the classifier, valid/ scores it."""
    from fastcourse.data.synthetic import make_image_folder

    root = make_image_folder(
        tmp_path / "shapes", layout="dogscats", classes=2, per_class=16, valid_per_class=8, test=0, size=32
    )
    cfg = load_config(
        {
            "name": "folder",
            "seed": 0,
            "out": str(tmp_path / "runs"),
            "task": {"name": "sklearn_features", "layer": "conv2", "pool": "max"},
            "data": {"name": "image_folder", "path": str(root), "image_size": [32, 32]},
            "model": {"name": "lenet"},
            "train": {"batch_size": 8, "verbose": 0},
        }
    )
    m = json.loads((run_experiment(cfg) / "metrics.json").read_text())
    assert (m["train_images"], m["eval_images"], m["feature_dim"]) == (32, 16, 16)
    assert 0.0 <= m["eval_accuracy"] <= 1.0 and m["train_accuracy"] > 0.5
    # the one trainer trains on folders too: pretraining the network before the cut works there
    pre = load_config(
        {
            **cfg.to_dict(),
            "out": str(tmp_path / "pre"),
            "task": {"name": "sklearn_features", "layer": "conv2", "pool": "max", "pretrain": True},
        }
    )
    m2 = json.loads((run_experiment(pre) / "metrics.json").read_text())
    assert m2["pretrained_here"] and 0.0 <= m2["network_test_accuracy"] <= 1.0
    assert m2["feature_dim"] == 16 and m2["train_accuracy"] != m["train_accuracy"]  # other weights, other features


@pytest.mark.parametrize("path", ["configs/dogscats/vgg_logistic.yaml", "configs/statefarm/vgg_boosting.yaml"])
def test_vgg_feature_configs_validate(path):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    cfg = load_config(root / path)
    assert cfg.task.name == "sklearn_features" and cfg.model.name == "vgg16"
    assert f"fastcourse run {path}" in (root / path).read_text()
