"""The Learner does its work through the lower layers, so a notebook and a YAML run cannot drift:
ensemble() is run/ensemble.py's member loop (the same members as `fastcourse run`'s ensemble),
show_results() is views.write_views (the same picks as `fastcourse views` on the saved run, on
arrays and on a folder given by a relative path), and load_learner builds through __init__."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import fastcourse
from fastcourse.cli import main
from fastcourse.config import load_config
from fastcourse.data.synthetic import make_image_folder
from fastcourse.run import records
from fastcourse.run.ensemble import member_loop
from fastcourse.tasks.runner import run_experiment


def test_member_loop_names_each_member_then_its_accuracy(capsys):
    trained = []

    def train_one(i, seed):
        trained.append((i, seed))
        return {**records.evaluation("test", 0.5 + i / 10, 1.0), "seed": seed}

    got = member_loop("ens", [5, 6, 7], [1, 2], train_one)  # member 0 already finished
    assert trained == [(1, 6), (2, 7)] and [m["seed"] for m in got] == [6, 7]
    assert capsys.readouterr().out.splitlines() == [
        "fastcourse: ensemble ens: member 2/3 (seed 6)",
        "fastcourse: member 1: test accuracy 0.6000",
        "fastcourse: ensemble ens: member 3/3 (seed 7)",
        "fastcourse: member 2: test accuracy 0.7000",
    ]
    member_loop("ens", [5], [0], train_one, verbose=False)
    assert capsys.readouterr().out == ""


@pytest.mark.integration
def test_learner_ensemble_trains_the_members_a_config_ensemble_trains(tmp_path, capsys):
    limits = {"train_limit": 64, "test_limit": 32}
    cfg = load_config(
        {
            "name": "ens",
            "seed": 4,
            "data": {"name": "mnist_sample", **limits},
            "model": {"name": "linear"},
            "ensemble": {"members": 2},
            "train": {"epochs": 1, "batch_size": 32, "verbose": 0, "schedule": {"name": "one_cycle", "max_lr": 3e-3}},
            "out": str(tmp_path / "runs"),
        }
    )
    want = json.loads((run_experiment(cfg) / "metrics.json").read_text())
    capsys.readouterr()
    learn = fastcourse.Learner("linear", "mnist_sample", seed=4, batch_size=32, out=tmp_path / "nb", **limits)
    got = learn.ensemble(2, epochs=1, lr=3e-3, one_cycle=True)
    printed = capsys.readouterr().out
    assert "fastcourse: ensemble learner: member 2/2 (seed 5)" in printed  # the run's loop, its lines
    for mine, theirs in zip(got["members"], want["members"]):
        assert mine["seed"] == theirs["seed"]
        assert mine["eval_accuracy"] == pytest.approx(theirs["eval_accuracy"], abs=1e-6)
        assert mine["eval_loss"] == pytest.approx(theirs["eval_loss"], abs=1e-5)
    for rule in ("mean", "geometric", "vote"):
        assert got["rules"][rule]["eval_accuracy"] == pytest.approx(want["rules"][rule]["eval_accuracy"], abs=1e-6)


def _same_views(learn, tmp_path):
    """show_results, and `fastcourse views` on a config run of the learner's own config (the
    same seed, so the same model: tests/test_learner.py): the same picks, files and figures."""
    cfg = {**learn.config.to_dict(), "task": {"name": "train"}, "out": str(tmp_path / "runs")}
    run_dir = run_experiment(load_config(cfg))
    mine = learn.show_results(n=2, out_dir=tmp_path / "learner-views")
    assert main(["views", str(run_dir), "-n", "2", "--seed", str(learn.seed), "--out", str(tmp_path / "cli")]) == 0
    theirs = json.loads((tmp_path / "cli" / "views" / "views.json").read_text())
    assert sorted(mine["files"]) == sorted(theirs["files"])
    assert all(path.is_file() for path in mine["files"].values())
    assert mine["confusion_matrix"] == theirs["confusion_matrix"]
    assert mine["accuracy"] == pytest.approx(theirs["accuracy"])
    assert mine["shown"] == theirs["shown"]
    return mine


@pytest.mark.integration
def test_show_results_on_arrays_draws_what_fastcourse_views_draws(tmp_path):
    learn = fastcourse.Learner(
        "linear", "mnist_sample", augment="course", seed=2, train_limit=96, test_limit=48, verbose=0, out=tmp_path
    )
    learn.fit_one_cycle(1, lr_max=1e-2)
    shown = _same_views(learn, tmp_path)
    assert "augmented" in shown["files"] and "most_confident_correct" in shown["files"]
    assert shown["shown"]["random_correct"] and all(name.isdigit() for name in shown["shown"]["random_correct"])


@pytest.mark.integration
def test_show_results_on_a_folder_given_by_a_relative_path(tmp_path, monkeypatch):
    make_image_folder(tmp_path / "photos", classes=2, per_class=8, valid_per_class=0, size=24, seed=0)
    monkeypatch.chdir(tmp_path)
    learn = fastcourse.Learner.from_folder(
        "photos", "linear", image_size=16, valid_pct=0.5, seed=2, verbose=0, batch_size=8, out="runs"
    )
    learn.fit_one_cycle(1, lr_max=1e-2)
    shown = _same_views(learn, tmp_path)
    names = [name for view in ("random_correct", "random_incorrect") for name in shown["shown"][view]]
    assert names and all(not os.path.isabs(n) and (tmp_path / "photos" / n).is_file() for n in names)


@pytest.mark.integration
def test_load_learner_is_a_learner_built_through_init(tmp_path):
    x, labels = np.random.default_rng(0).integers(0, 255, (12, 8, 8)), np.arange(12) % 3
    learn = fastcourse.Learner.from_arrays(x, labels, x, labels, "linear", class_names=["a", "b", "c"], verbose=0)
    loaded = fastcourse.load_learner(learn.export(tmp_path / "exported"))
    plain = fastcourse.Learner(loaded.model, loaded.inputs, image_size=(8, 8), valid_pct=None, verbose=0)
    state = ("seed", "name", "lr", "schedule_name", "schedule_args", "_train", "augment_name", "data_args")
    assert {k: getattr(loaded, k) for k in state} == {k: getattr(plain, k) for k in state}
    assert loaded.model_name == "linear" and loaded.exported["class_names"] == ["a", "b", "c"]
    assert "linear" in repr(loaded)
