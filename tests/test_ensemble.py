"""Ensembles: the combination arithmetic, the one-model ensemble, and resuming after a crash."""

from __future__ import annotations

import json
from collections import Counter

import keras
import numpy as np
import pytest
from sklearn.metrics import accuracy_score, log_loss

from fastcourse.config import load_config
from fastcourse.data import DATASETS
from fastcourse.errors import RunError, UsageError
from fastcourse.models import build_model
from fastcourse.models.ensemble import average_members
from fastcourse.run import ensemble
from fastcourse.tasks import TASKS
from fastcourse.tasks.runner import run_experiment
from fastcourse.train import metrics as fc_metrics


def test_rules_match_numpy(rng):
    m, n, c = 5, 60, 4
    probs = rng.dirichlet(np.ones(c) * 0.7, size=(m, n))
    y = rng.integers(0, c, n)

    np.testing.assert_allclose(ensemble.combine(probs, "mean"), np.mean(probs, axis=0))

    geo = np.prod(probs, axis=0) ** (1.0 / m)
    np.testing.assert_allclose(ensemble.combine(probs, "geometric"), geo / geo.sum(1, keepdims=True), rtol=1e-10)

    votes = ensemble.combine(probs, "vote").argmax(1)
    mean = probs.mean(0)
    for i in range(n):
        counts = Counter(probs[:, i].argmax(1).tolist())
        top = max(counts.values())
        tied = [k for k, v in counts.items() if v == top]
        assert votes[i] == max(tied, key=lambda k: mean[i, k])

    # the rules' figures are fastcourse.train.metrics' (checked against sklearn in test_metrics.py)
    s = ensemble.summarize(probs, y, [{"eval_accuracy": 0.5, "eval_loss": 1.0}] * m, "test")
    assert s["rules"]["mean"]["eval_loss"] == pytest.approx(log_loss(y, mean, labels=np.arange(c)), abs=1e-7)
    assert s["rules"]["mean"]["eval_accuracy"] == pytest.approx(accuracy_score(y, mean.argmax(1)), abs=1e-7)


def test_vote_is_not_the_mean_and_ties_go_to_the_more_confident_class():
    # image 0: two members say class 0 barely, one says class 1 with certainty
    # image 1: a 1-1 tie between classes 0 and 1; class 1 has the higher mean probability
    probs = np.array(
        [
            [[0.51, 0.49], [0.60, 0.40]],
            [[0.51, 0.49], [0.05, 0.95]],
            [[0.00, 1.00], [0.50, 0.50]],
        ]
    )
    assert ensemble.combine(probs, "mean").argmax(1)[0] == 1
    assert ensemble.combine(probs, "vote").argmax(1)[0] == 0
    tie = probs[:2, 1:2]  # members 0 and 1 on image 1: one vote each
    assert ensemble.combine(tie, "vote").argmax(1)[0] == 1
    with pytest.raises(ValueError, match="unknown combination rule"):
        ensemble.combine(probs, "median")


def test_summary_spread_and_gain():
    probs = np.array([[[0.9, 0.1], [0.4, 0.6]], [[0.6, 0.4], [0.7, 0.3]], [[0.2, 0.8], [0.45, 0.55]]])
    y = np.array([0, 1])
    members = [
        {
            "eval_split": "valid",
            "eval_accuracy": fc_metrics.accuracy(p, y),
            "eval_loss": fc_metrics.log_loss(p, y),
            "seed": s,
        }
        for s, p in enumerate(probs)
    ]
    s = ensemble.summarize(probs, y, members, "valid")
    accs = np.array([m["eval_accuracy"] for m in members])
    assert s["member_accuracy"]["mean"] == pytest.approx(accs.mean())
    assert s["member_accuracy"]["std"] == pytest.approx(accs.std(ddof=1))
    assert s["rules"]["mean"]["eval_accuracy"] == pytest.approx(fc_metrics.accuracy(probs.mean(0), y))
    assert s["rules"]["vote"]["eval_loss"] is None
    assert s["gain_over_member_mean"] == pytest.approx(s["rules"]["mean"]["eval_accuracy"] - accs.mean())
    # every entry names its split (the 0.1.0 aliases are tests/test_records.py's)
    for entry in [*s["members"], *s["rules"].values()]:
        assert entry["eval_split"] == "valid"


@pytest.mark.integration
def test_ensemble_model_saves_reloads_in_safe_mode_and_averages(tmp_path, rng):
    members = [build_model("cnn_bn_dropout", (28, 28, 1), 10, 33.0, 78.0, filters=(4, 8), dense=16) for _ in range(3)]
    model = average_members(members)
    path = tmp_path / "ensemble.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    assert "average" in [layer.name for layer in reloaded.layers]
    x = rng.uniform(0, 255, (6, 28, 28, 1)).astype("float32")
    expected = np.mean([m.predict(x, verbose=0) for m in members], axis=0)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), expected, atol=1e-6)
    with pytest.raises(ValueError, match="disagree"):
        average_members([members[0], build_model("linear", (28, 28, 1), 5)])


def _ensemble_config(tiny_config, **extra):
    return load_config(
        tiny_config(
            name="tiny-ens",
            data__train_limit=128,
            data__test_limit=64,
            model__filters=[4, 8],
            model__dense=16,
            ensemble={"members": 2, **extra},
        )
    )


@pytest.mark.integration
def test_interrupted_ensemble_resumes_at_first_unfinished_member(tiny_config, tmp_path, monkeypatch):
    from fastcourse.tasks import train as train_task

    cfg = _ensemble_config(tiny_config)
    original, evaluate = ensemble.train_member, train_task.evaluate
    calls: list[int] = []
    monkeypatch.setattr(ensemble, "train_member", lambda *a, **k: (calls.append(int(a[2].name)), original(*a, **k))[1])

    def crash_in_member_1(*args, **kwargs):  # member 1 dies after its epochs, before it is saved
        if calls[-1] == 1:
            raise RuntimeError("injected crash")
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(train_task, "evaluate", crash_in_member_1)
    run_dir = tmp_path / "ens"
    with pytest.raises(RuntimeError, match="injected"):
        run_experiment(cfg, run_dir=run_dir)
    assert calls == [0, 1]
    assert [ensemble.is_finished(ensemble.member_dir(run_dir, i)) for i in range(2)] == [True, False]
    assert not (run_dir / "metrics.json").exists()
    assert (ensemble.member_dir(run_dir, 1) / "checkpoints" / "state.json").is_file()  # its epoch was kept
    assert not (ensemble.member_dir(run_dir, 0) / "checkpoints").exists()  # a saved member needs none
    kept = {p: p.stat().st_mtime_ns for p in ensemble.member_dir(run_dir, 0).iterdir()}
    monkeypatch.setattr(train_task, "evaluate", evaluate)

    # resuming under a different config is refused, naming the key
    with pytest.raises(UsageError, match="ensemble.seeds"):
        run_experiment(_ensemble_config(tiny_config, seeds=[7, 8]), run_dir=run_dir)

    # finishing needs every member: a clear error, not a half-made ensemble
    with pytest.raises(RunError, match="members 1 are not finished"):
        ensemble.finish_ensemble(cfg, run_dir)

    calls.clear()
    assert run_experiment(cfg, run_dir=run_dir) == run_dir
    assert calls == [1]  # only the unfinished member ran again
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # finished members' files untouched
    assert not (run_dir / "checkpoints").exists()  # dropped once the ensemble is complete

    metrics = json.loads((run_dir / "metrics.json").read_text())
    probs = np.stack([np.load(ensemble.member_dir(run_dir, i) / "eval_probs.npy") for i in range(2)])
    y = DATASETS.get("mnist_sample")().y_test[:64]
    assert [m["seed"] for m in metrics["members"]] == [1, 2]
    member_metrics = [json.loads((ensemble.member_dir(run_dir, i) / "metrics.json").read_text()) for i in range(2)]
    accs = [m["eval_accuracy"] for m in member_metrics]
    assert [m["eval_accuracy"] for m in metrics["members"]] == accs
    assert metrics["member_accuracy"]["mean"] == pytest.approx(np.mean(accs))
    for rule in ensemble.RULES:
        assert metrics["rules"][rule]["eval_accuracy"] == pytest.approx(
            fc_metrics.accuracy(ensemble.combine(probs, rule), y)
        )
    assert metrics["eval_accuracy"] == metrics["rules"]["mean"]["eval_accuracy"]
    assert metrics["eval_split"] == "test"
    # wall time: each member's over both sessions (member 1 was interrupted), the ensemble's over all
    walls = [m["wall_seconds"] for m in member_metrics]
    assert [m["wall_seconds"] for m in metrics["members"]] == walls
    assert all(w >= m["train_seconds"] > 0 for w, m in zip(walls, member_metrics))
    assert metrics["wall_seconds"] > sum(walls)
    assert not list(run_dir.rglob("wall.json"))  # the sessions' running totals are dropped once recorded
    # the one-model ensemble reloads safely and predicts what the mean rule computes
    assert metrics["keras_model"]["max_abs_diff_from_mean_rule"] < 1e-5
    reloaded = keras.saving.load_model(run_dir / "model.keras", safe_mode=True)
    assert (
        reloaded.count_params()
        == 2 * keras.saving.load_model(ensemble.member_dir(run_dir, 0) / "model.keras", safe_mode=True).count_params()
    )


def test_seed_count_must_match_members(tiny_config):
    from fastcourse.errors import ConfigError

    with pytest.raises(ConfigError, match="2 seeds for 3 members"):
        load_config(tiny_config(ensemble={"members": 3, "seeds": [1, 2]}))


def test_course_ensemble_configs_load():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "configs"
    for ds in ("mnist", "fashion_mnist"):
        cfg = load_config(root / ds / "ensemble.yaml")
        assert cfg.ensemble.members == 6 and cfg.train.epochs == 35  # the course's 1 + 4 + 12 + 18
        # clothes get flips and small shifts; the digits' rotation, shear and zoom cost accuracy there
        augment = {"mnist": "course", "fashion_mnist": "fashion"}[ds]
        assert (cfg.model.name, cfg.augment.name, cfg.data.name) == ("cnn_bn_dropout", augment, ds)
        assert ensemble.member_seeds(cfg) == [42, 43, 44, 45, 46, 47]


def test_parallel_falls_back_to_one_after_another_without_gpus(tiny_config):
    import tensorflow as tf

    cfg = _ensemble_config(tiny_config, parallel=True)
    gpus = len(tf.config.list_physical_devices("GPU"))
    assert ensemble._parallel_devices(cfg) == (gpus if gpus > 1 else 1)
    assert ensemble._parallel_devices(_ensemble_config(tiny_config)) == 1


@pytest.mark.slow
def test_parallel_workers_train_and_save_members(tiny_config, tmp_path):
    """The one-process-per-GPU path, exercised on CPU (each worker is told a GPU id it ignores)."""
    cfg = _ensemble_config(tiny_config, parallel=True)
    run_dir = tmp_path / "ens"
    ensemble._train_parallel(cfg, TASKS.get("train"), ensemble.member_seeds(cfg), [0, 1], run_dir, gpus=2)
    assert all(ensemble.is_finished(ensemble.member_dir(run_dir, i)) for i in (0, 1))
    ensemble.finish_ensemble(cfg, run_dir)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [m["seed"] for m in metrics["members"]] == [1, 2]


@pytest.mark.integration
def test_members_of_a_limited_folder_ensemble_see_the_same_images(tmp_path):
    """Folder limits are drawn from the seed; members have seeds of their own, yet train and are
    evaluated on the ensemble's draw (else their predictions could not be combined)."""
    import pandas as pd

    from fastcourse.data.synthetic import make_image_folder

    root = make_image_folder(
        tmp_path / "shapes", "dogscats", classes=2, per_class=12, valid_per_class=8, test=0, size=24, mixed_modes=False
    )
    cfg = load_config(
        {
            "name": "ens-folder",
            "seed": 3,
            "out": str(tmp_path / "runs"),
            "data": {
                "name": "image_folder",
                "path": str(root),
                "image_size": [24, 24],
                "train_limit": 8,
                "test_limit": 6,
            },
            "model": {"name": "cnn", "filters": [4, 8], "dense": 8},
            "ensemble": {"members": 2},
            "train": {
                "batch_size": 8,
                "epochs": 1,
                "verbose": 0,
                "precision": "float32",
                "schedule": {"name": "constant", "lr": 1e-3},
            },
        }
    )
    run_dir = run_experiment(cfg)
    files = [pd.read_csv(ensemble.member_dir(run_dir, i) / "eval_predictions.csv")["file"].tolist() for i in (0, 1)]
    assert files[0] == files[1] and len(files[0]) == 6
    assert json.loads((run_dir / "metrics.json").read_text())["eval_split"] == "valid"
