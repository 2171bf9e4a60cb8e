"""metrics.json's keys (fastcourse/run/records.py), the run's wall time (run/frame.py's WallClock)
and the figures that name their split (run/plots.py), down to a features run on a folder."""

from __future__ import annotations

import json
import time

import pytest
import yaml

from fastcourse.run import records
from fastcourse.run.frame import WallClock, timed


def test_evaluation_keys_name_their_split_and_keep_the_old_names():
    """The one test of the deprecated 0.1.0 keys as written: test_* are aliases of eval_* (records.ALIASES)."""
    ev = records.evaluation("valid", 0.75, 0.5, 40)
    assert ev == {
        "eval_split": "valid",
        "eval_accuracy": 0.75,
        "eval_loss": 0.5,
        "eval_images": 40,
        "test_split": "valid",
        "test_accuracy": 0.75,
        "test_loss": 0.5,
        "test_images": 40,
    }
    assert records.evaluation("test", 1, None)["eval_loss"] is None  # a vote has no loss
    m = records.run_metrics(
        name="n",
        task="features",
        model="m",
        dataset="d",
        data_kind="folder",
        data_source="s",
        classes=["a", "b"],
        augment="none",
        split="valid",
        accuracy=0.75,
        loss=0.5,
        eval_images=40,
        train_images=80,
        epochs=2,
        train_seconds=3,
        params=10,
        seed=0,
        versions={},
        cut="x",
    )
    assert (m["eval_split"], m["test_accuracy"], m["cut"]) == ("valid", 0.75, "x")
    assert "test_accuracy" in m["aliases"] and "eval_accuracy" in m["aliases"]


def test_readers_take_the_new_keys_then_the_old_ones():
    new = {"eval_split": "valid", "eval_accuracy": 0.9, "eval_loss": 0.3}
    old = {"test_split": "valid", "test_accuracy": 0.8, "test_loss": 0.4}
    assert (records.eval_split(new), records.eval_accuracy(new), records.eval_loss(new)) == ("valid", 0.9, 0.3)
    assert (records.eval_split(old), records.eval_accuracy(old), records.eval_loss(old)) == ("valid", 0.8, 0.4)
    assert records.eval_accuracy({**old, **new}) == 0.9
    assert records.eval_accuracy({"eval_accuracy": float("nan")}) is None


def test_read_metrics_tells_sound_damaged_and_missing_apart(tmp_path):
    path = tmp_path / "metrics.json"
    assert records.read_metrics(path) == (None, None)
    path.write_text(json.dumps({"eval_split": "test", "eval_accuracy": 0.5}))
    assert records.read_metrics(path)[0]["eval_accuracy"] == 0.5
    for text, why in (
        ("{", "not valid JSON"),
        ("3", "not a JSON object"),
        ('{"eval_split": "valid"}', "no eval_acc"),
        ('{"eval_split": "valid", "eval_accuracy": 1.5}', "no eval_accuracy between 0 and 1"),
    ):
        path.write_text(text)
        metrics, problem = records.read_metrics(path)
        assert metrics is None and problem.startswith(why)


def test_wall_clock_adds_the_sessions_and_records_once(tmp_path):
    (tmp_path / records.METRICS).write_text(json.dumps({"eval_split": "test", "eval_accuracy": 0.5}))
    (tmp_path / records.WALL).write_text(json.dumps({"seconds": 100.0}))  # an earlier, killed session
    result = timed(tmp_path, lambda: (time.sleep(0.05), {"eval_accuracy": 0.5})[1])
    metrics = json.loads((tmp_path / records.METRICS).read_text())
    assert 100.05 <= metrics["wall_seconds"] < 101 and result["wall_seconds"] == metrics["wall_seconds"]
    assert not (tmp_path / records.WALL).exists()


def test_wall_clock_keeps_the_time_of_an_interrupted_session(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with WallClock(tmp_path, every=0.02):
            time.sleep(0.1)
            assert json.loads((tmp_path / records.WALL).read_text())["seconds"] > 0  # written while running
            raise KeyboardInterrupt
    kept = json.loads((tmp_path / records.WALL).read_text())["seconds"]
    assert 0.1 <= kept < 1
    with WallClock(tmp_path) as clock:  # the resumed session starts from it
        assert clock.seconds() >= kept
        assert clock.record() is None  # no metrics.json: nothing recorded, the running total is kept
    assert (tmp_path / records.WALL).is_file()


def test_learning_curves_name_the_evaluation_split(tmp_path, monkeypatch):
    from fastcourse.run import plots

    legends = []
    real = plots.save_figure

    def keep(fig, path):
        legends.extend(t.get_text() for ax in fig.axes for t in ax.get_legend().get_texts())
        return real(fig, path)

    monkeypatch.setattr(plots, "save_figure", keep)
    history = {"loss": [1.0, 0.5], "val_loss": [0.9, 0.6], "accuracy": [0.5, 0.7], "val_accuracy": [0.6, 0.8]}
    for split in ("valid", "test"):
        legends.clear()
        plots.plot_learning_curves(history, tmp_path / f"{split}.png", split=split)
        assert legends == ["train", split, "train", split]


@pytest.mark.integration
def test_a_features_run_on_a_folder_counts_extraction_and_says_valid(tmp_path, monkeypatch, capsys):
    """The wall time holds the feature precomputation (made 1 s slower here), `run` prints it and
    the valid split, and `runs` shows it as minutes with the split."""
    from fastcourse.cli import main
    from fastcourse.data.synthetic import make_image_folder
    from fastcourse.results import runs
    from fastcourse.tasks import features as features_task

    root = make_image_folder(
        tmp_path / "shapes", "dogscats", classes=2, per_class=8, valid_per_class=4, test=0, size=32, mixed_modes=False
    )
    real = features_task.precompute_features

    def slow_precompute(*args, **kwargs):
        time.sleep(0.5)
        return real(*args, **kwargs)

    monkeypatch.setattr(features_task, "precompute_features", slow_precompute)  # called twice: train, valid
    config = tmp_path / "features.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "name": "feat",
                "seed": 0,
                "out": str(tmp_path / "runs"),
                "task": {
                    "name": "features",
                    "cut": "conv2",
                    "cache_dir": str(tmp_path / "cache"),
                    "head": {"units": 8, "depth": 1},
                },
                "data": {"name": "image_folder", "path": str(root), "image_size": [32, 32]},
                "model": {"name": "lenet"},
                "train": {"batch_size": 8, "epochs": 1, "verbose": 0, "precision": "float32"},
            }
        )
    )
    assert main(["run", str(config)]) == 0
    printed = capsys.readouterr().out
    (run,) = (tmp_path / "runs").iterdir()
    m = json.loads((run / "metrics.json").read_text())
    assert m["eval_split"] == "valid" and m["eval_images"] == 8
    assert m["wall_seconds"] >= m["train_seconds"] + 1.0  # the two slowed extractions are in it
    assert f"valid accuracy: {m['eval_accuracy']:.4f}" in printed and f"wall time {m['wall_seconds']:.1f} s" in printed
    row = runs.list_runs(tmp_path / "runs").iloc[0]
    assert (row.split, row.status) == ("valid", "finished")
    assert row.minutes == pytest.approx(m["wall_seconds"] / 60)
    assert row.images_per_s == pytest.approx(16 * m["epochs"] / m["wall_seconds"])
