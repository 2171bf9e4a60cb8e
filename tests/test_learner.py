"""The Learner is a second front door on the same trainer: the same config run and the same
Learner calls give the same metrics on the same seed, and save() writes a run's artifacts."""

from __future__ import annotations

import json

import numpy as np
import pytest

import fastcourse
from fastcourse.config import load_config
from fastcourse.data import DATASETS
from fastcourse.errors import UsageError
from fastcourse.tasks.runner import run_experiment

LIMITS = {"train_limit": 192, "test_limit": 96}


def _config(tmp_path, model="cnn", augment="course", schedule=None, **train):
    return load_config(
        {
            "name": "door",
            "seed": 3,
            "data": {"name": "mnist_sample", **LIMITS},
            "model": {"name": model},
            "augment": {"name": augment},
            "train": {
                "epochs": 1,
                "batch_size": 32,
                "verbose": 0,
                "schedule": schedule or {"name": "one_cycle", "max_lr": 3e-3},
                **train,
            },
            "out": str(tmp_path / "runs"),
        }
    )


@pytest.mark.integration
def test_config_run_and_learner_give_the_same_metrics(tmp_path):
    run = run_experiment(_config(tmp_path))
    want = json.loads((run / "metrics.json").read_text())

    learn = fastcourse.Learner(
        "cnn",
        DATASETS.get("mnist_sample")(),
        augment="course",
        seed=3,
        batch_size=32,
        verbose=0,
        **LIMITS,
        out=tmp_path / "nb",
    )
    learn.fit_one_cycle(1, max_lr=3e-3)
    saved = learn.save(tmp_path / "learner-run")
    got = json.loads((saved / "metrics.json").read_text())
    assert got["eval_accuracy"] == pytest.approx(want["eval_accuracy"], abs=1e-6)
    assert got["eval_loss"] == pytest.approx(want["eval_loss"], abs=1e-6)
    np.testing.assert_allclose(np.load(saved / "eval_probs.npy"), np.load(run / "eval_probs.npy"), atol=1e-6)
    # the same artifacts as a run
    for name in [
        "model.keras",
        "metrics.json",
        "history.csv",
        "eval_probs.npy",
        "eval_labels.npy",
        "learning_curves.png",
        "confusion_matrix.png",
        "config.yaml",
    ]:
        assert (saved / name).is_file(), name
    assert learn.config.train.schedule.name == "one_cycle" and learn.config.model.name == "cnn"


@pytest.mark.integration
def test_learner_on_a_model_and_a_plain_schedule(tmp_path):
    """A keras.Model built after the same seeding, and fit(n, lr), match a constant-rate run."""
    import keras

    from fastcourse.models import build_model
    from fastcourse.train.devices import float32_outputs
    from fastcourse.train.trainer import seed_everything

    run = run_experiment(
        _config(
            tmp_path, model="linear", augment="none", schedule={"name": "constant", "lr": 2e-3}, precision="float32"
        )
    )
    want = json.loads((run / "metrics.json").read_text())
    data = DATASETS.get("mnist_sample")().limit(**{"train": 192, "test": 96})
    keras.backend.clear_session()
    seed_everything(3)
    mean, std = data.pixel_stats()
    model = float32_outputs(build_model("linear", data.input_shape, 10, mean=mean, std=std))
    # the model is built here in float32, so both run in float32 (precision "auto" may pick bf16)
    learn = fastcourse.Learner(model, data, seed=3, batch_size=32, verbose=0, out=tmp_path / "nb", precision="float32")
    learn.fit(1, lr=2e-3)
    got = learn.evaluate()
    assert got["accuracy"] == pytest.approx(want["eval_accuracy"], abs=1e-6)
    assert got["loss"] == pytest.approx(want["eval_loss"], abs=1e-6)


@pytest.mark.integration
def test_predict_tta_lr_find_views_and_ensemble(tmp_path):
    learn = fastcourse.Learner(
        "linear",
        "mnist_sample",
        augment="course",
        train_limit=128,
        test_limit=64,
        batch_size=32,
        verbose=0,
        out=tmp_path,
        precision="float32",
    )
    finder = learn.lr_find(steps=20, plot=tmp_path / "lr.png")
    assert len(finder.lrs) > 3 and (tmp_path / "lr.png").is_file()
    learn.fit(1)
    clean, tta = learn.get_preds()[0], learn.get_preds(tta=2)[0]
    assert clean.shape == tta.shape == (64, 10)
    np.testing.assert_allclose(tta.sum(1), 1.0, atol=1e-5)
    assert not np.allclose(clean, tta)
    label, index, probs = learn.predict(learn.inputs.eval.x[0])
    assert probs.shape == (10,) and label == learn.inputs.class_names[index]
    np.testing.assert_allclose(probs, clean[0], atol=1e-6)
    shown = learn.show_results(n=2)
    assert shown["files"]["confusion_matrix"].is_file()
    summary = learn.ensemble(2, epochs=1)
    assert len(summary["members"]) == 2 and set(summary["rules"]) == {"mean", "geometric", "vote"}
    assert learn.model.output_shape[-1] == 10
    metrics = json.loads((learn.save() / "metrics.json").read_text())
    assert metrics["ensemble"]["rules"]["mean"]["eval_accuracy"] == pytest.approx(metrics["eval_accuracy"])


@pytest.mark.integration
def test_fine_tune_and_folders(tmp_path):
    from fastcourse.data.synthetic import make_image_folder

    root = tmp_path / "shapes"
    make_image_folder(root, layout="dogscats", classes=2, per_class=6, valid_per_class=3, test=3, size=32, seed=0)
    data = DATASETS.get("image_folder")(path=str(root), image_size=[32, 32])
    learn = fastcourse.Learner(
        "vgg16",
        data,
        augment="dogscats",
        model_args={"weights": None},
        batch_size=4,
        verbose=0,
        bn_recalibrate=0,
        out=tmp_path / "runs",
        tensorboard=True,
    )
    learn.fine_tune(1, base_lr=1e-4, freeze_epochs=1)
    assert len(learn.results) == 2
    preds = learn.predict(root / "test", tta=1)
    assert len(preds.filenames) == 3 and preds.probs.shape == (3, 2)
    assert list(preds.class_names) == list(data.class_names)
    assert (tmp_path / "runs" / "learner" / "tensorboard" / "frozen" / "train").is_dir()
    run = learn.save()
    assert (run / "eval_predictions.csv").is_file()


@pytest.mark.integration
def test_bad_arguments_say_what_to_give():
    with pytest.raises(UsageError, match="registered builder"):
        fastcourse.Learner(3, "mnist_sample")
    with pytest.raises(UsageError, match="name"):
        fastcourse.Learner("linear", "mnist_sample", augment={"rotation": 3})


def test_learner_names_the_split_behind_val_once(tmp_path, capsys):
    learn = fastcourse.Learner(
        "linear", DATASETS.get("mnist_sample")(), verbose=2, train_limit=128, test_limit=64, out=tmp_path / "nb"
    )
    learn.fit(1)
    learn.fit(1)
    out = capsys.readouterr().out
    assert out.count("the progress bar's val_loss / val_accuracy are the 64 test images") == 1, out
