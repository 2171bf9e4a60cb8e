"""`fastcourse runs` / `compare` (fastcourse/results/runs.py) on run directories built by hand."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from PIL import Image

from fastcourse.errors import UsageError
from fastcourse.results import compare, runs

HISTORY = "epoch,accuracy,loss,val_accuracy,val_loss\n1,0.70,0.90,0.80,0.60\n2,0.85,0.45,0.88,0.40\n"


def config(name="cnn-a", seed=42, lr=1e-3, model="cnn", task="train", ensemble=None):
    return {
        "name": name,
        "seed": seed,
        "task": {"name": task},
        "data": {"name": "mnist_sample", "train_limit": None},
        "model": {"name": model},
        "augment": {"name": "course"},
        "train": {"epochs": 2, "batch_size": 64, "schedule": {"name": "phases", "phases": [[2, lr]]}},
        "ensemble": ensemble,
        "out": "runs",
    }


def make_run(root: Path, dirname: str, cfg: dict, metrics=None, history=HISTORY, state=None, age=0.0) -> Path:
    """A run directory as fastcourse leaves it; `age` seconds older than now (for the ordering)."""
    run = root / dirname
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    (run / ".lock").write_text("123")
    if metrics is not None:
        (run / "metrics.json").write_text(json.dumps(metrics))
    if history is not None and metrics is not None:
        (run / "history.csv").write_text(history)
    if state is not None:
        (run / "checkpoints").mkdir()
        (run / "checkpoints" / "state.json").write_text(json.dumps(state))
    stamp = time.time() - age
    os.utime(run / "config.yaml", (stamp, stamp))
    return run


def finished_metrics(**extra):
    """metrics.json as fastcourse writes it now: the evaluation named by its split, the wall time."""
    return {
        "name": "cnn-a",
        "model": "cnn",
        "dataset": "mnist_sample",
        "eval_split": "test",
        "eval_accuracy": 0.9812,
        "epochs": 2,
        "train_images": 1000,
        "train_seconds": 90.0,
        "wall_seconds": 100.0,
        "images_per_second": 1234.5,
        **extra,
    }


def old_metrics(**extra):
    """metrics.json as fastcourse 0.1.0 wrote it: test_* keys (also for the valid split), no wall time."""
    return {
        "name": "cnn-a",
        "model": "cnn",
        "dataset": "mnist_sample",
        "test_split": "test",
        "test_accuracy": 0.9812,
        "epochs": 2,
        "train_images": 1000,
        "train_seconds": 90.0,
        "images_per_second": 1234.5,
        **extra,
    }


@pytest.fixture
def three_runs(tmp_path):
    root = tmp_path / "runs"
    make_run(root, "cnn-a-1", config(), metrics=finished_metrics(), age=300)
    make_run(
        root,
        "cnn-a-2",
        config(),
        state={"epoch": 1, "epoch_seconds": [30.0, 30.0], "history": {"loss": [0.9], "val_loss": [0.6]}},
        age=200,
    )
    make_run(root, "linear-1", config(name="linear", model="linear"), age=100)
    return root


def test_list_runs_rows_statuses_and_values(three_runs):
    df = runs.list_runs(three_runs)
    assert list(df.columns) == runs.COLUMNS
    assert list(df["name"]) == ["linear-1", "cnn-a-2", "cnn-a-1"]  # newest first
    by = df.set_index("name")
    assert dict(by["status"]) == {"linear-1": "failed", "cnn-a-2": "interrupted", "cnn-a-1": "finished"}
    done = by.loc["cnn-a-1"]
    assert (done.task, done.model, done.dataset, done.epochs) == ("train", "cnn", "mnist_sample", 2)
    assert (done.split, done.accuracy) == ("test", pytest.approx(0.9812))
    assert done.minutes == pytest.approx(100.0 / 60)  # the wall time, not the 90 s of training
    assert done.images_per_s == pytest.approx(1000 * 2 / 100.0)  # end to end, not the trainer's 1234.5
    stopped = by.loc["cnn-a-2"]
    assert stopped.epochs == 1 and stopped.minutes == pytest.approx(1.0)  # from the checkpoint
    assert by.isna().loc["linear-1", ["epochs", "split", "accuracy", "minutes"]].all()
    assert by.loc["linear-1", "model"] == "linear"

    text = runs.format_runs(df)
    lines = text.splitlines()
    assert lines[0].split() == runs.COLUMNS and len(lines) == 4
    assert "0.9812" in text and " 20 " in text and "1234" not in text and "interrupted" in text


def test_minutes_are_the_wall_time_of_a_features_run(tmp_path):
    """A features run spends most of its time extracting: minutes and images/s count it."""
    metrics = finished_metrics(
        task="features",
        eval_split="valid",
        epochs=3,
        train_images=2000,
        train_seconds=4.0,
        wall_seconds=143.0,
        images_per_second=961.0,
    )
    make_run(tmp_path, "dogscats-features", config(task="features"), metrics=metrics)
    row = runs.list_runs(tmp_path).iloc[0]
    assert (row.split, row.minutes) == ("valid", pytest.approx(143.0 / 60))
    assert row.images_per_s == pytest.approx(2000 * 3 / 143.0)
    assert "2.4" in runs.format_runs(runs.list_runs(tmp_path))


def test_runs_of_fastcourse_0_1_are_read_through_the_old_keys(tmp_path):
    make_run(tmp_path, "old", config(), metrics=old_metrics(test_split="valid"))
    row = runs.list_runs(tmp_path).iloc[0]
    assert (row.status, row.split, row.accuracy) == ("finished", "valid", pytest.approx(0.9812))
    assert row.minutes == pytest.approx(1.5)  # no wall time recorded: its training time
    assert row.images_per_s == pytest.approx(1000 * 2 / 90.0)


def test_an_unfinished_run_shows_its_wall_time_so_far(tmp_path):
    run = make_run(tmp_path, "half", config(), state={"epoch": 1, "epoch_seconds": [30.0]})
    (run / "wall.json").write_text(json.dumps({"seconds": 150.0}))
    row = runs.list_runs(tmp_path).iloc[0]
    assert (row.status, row.minutes) == ("interrupted", pytest.approx(2.5))


@pytest.mark.parametrize(
    "text, why",
    [
        ('{"eval_split": "test", "eval_accuracy": 0.98', "not valid JSON"),
        ("[0.98]", "not a JSON object"),
        ('{"eval_split": "test", "epochs": 2}', "no eval_accuracy"),
        ('{"eval_split": "test", "eval_accuracy": "high"}', "no eval_accuracy"),
        ('{"eval_accuracy": 0.98}', "no eval_split"),
        ("", "not valid JSON"),
    ],
)
def test_a_damaged_metrics_json_shows_as_damaged(tmp_path, text, why):
    run = make_run(tmp_path, "broken", config(), metrics={})
    (run / "metrics.json").write_text(text)
    df = runs.list_runs(tmp_path)
    row = df.iloc[0]
    assert row.status == "damaged" and pd.isna(row.accuracy)
    assert runs.damage(run).startswith(why)
    note = runs.format_runs(df).splitlines()[-1]
    assert note.startswith("broken: metrics.json is damaged") and why in note
    md = compare.compare_markdown(
        [run, make_run(tmp_path, "good", config(), metrics=finished_metrics())], ["broken", "good"]
    )
    assert "| broken | damaged | - | - |" in md and "| good | finished | test | 0.9812 |" in md


def test_running_run_is_seen_by_its_lock(three_runs):
    fd = os.open(three_runs / "cnn-a-2" / ".lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as rundir.locked does
        df = runs.list_runs(three_runs).set_index("name")
        assert df.loc["cnn-a-2", "status"] == "running"
        assert df.loc["cnn-a-1", "status"] == "finished"
    finally:
        os.close(fd)
    assert runs.list_runs(three_runs).set_index("name").loc["cnn-a-2", "status"] == "interrupted"


def test_ensembles_and_reproductions_are_one_row_each(tmp_path):
    root = tmp_path / "runs"
    ens_metrics = finished_metrics(name="ens", eval_accuracy=0.99, ensemble_members=2, wall_seconds=400.0)
    del ens_metrics["images_per_second"]  # an ensemble's metrics.json has none of its own
    ens = make_run(root, "ens-1", config(name="ens", ensemble={"members": 2}), metrics=ens_metrics)
    for i in range(2):
        (ens / "members" / str(i)).mkdir(parents=True)
        (ens / "members" / str(i) / "config.yaml").write_text(yaml.safe_dump(config()))
        (ens / "members" / str(i) / "metrics.json").write_text(json.dumps({"images_per_second": 100.0 * (i + 1)}))
    half = make_run(root, "ens-2", config(name="ens", ensemble={"members": 2}))
    (half / "members" / "0").mkdir(parents=True)
    (half / "members" / "0" / "metrics.json").write_text(json.dumps({"train_seconds": 60.0}))

    rep = root / "reproduce-mnist-1"
    rep.mkdir()
    (rep / "reproduce.yaml").write_text(yaml.safe_dump({"dataset": "mnist", "steps": ["linear", "cnn"]}))
    make_run(rep, "linear", config(name="linear"), metrics=finished_metrics(eval_accuracy=0.92))
    make_run(rep, "cnn", config(), metrics=old_metrics(test_accuracy=0.99))
    for step in ("linear", "cnn"):
        (rep / step / "step_time.json").write_text(json.dumps({"seconds": 60.0}))
    (rep / "report.md").write_text("# report\n")

    df = runs.list_runs(root).set_index("name")
    assert sorted(df.index) == ["ens-1", "ens-2", "reproduce-mnist-1"]  # members and steps are not rows
    assert tuple(df.loc["ens-1", ["task", "status"]]) == ("ensemble", "finished")
    # 2 members x 2 epochs x 1000 images in 400 s
    assert df.loc["ens-1", "images_per_s"] == pytest.approx(2 * 2 * 1000 / 400.0)
    assert tuple(df.loc["ens-2", ["task", "status"]]) == ("ensemble", "interrupted")
    r = df.loc["reproduce-mnist-1"]
    assert (r.task, r.dataset, r.status) == ("reproduce", "mnist", "finished")
    assert (r.split, r.accuracy, r.minutes) == ("test", pytest.approx(0.99), pytest.approx(2.0))


def test_list_runs_empty_and_missing(tmp_path):
    assert "no run directories" in runs.format_runs(runs.list_runs(tmp_path))
    with pytest.raises(UsageError, match=str(tmp_path / "nope")):
        runs.list_runs(tmp_path / "nope")


def test_compare_names_exactly_the_differing_keys(tmp_path):
    a = make_run(tmp_path / "runs", "cnn-a", config(seed=1, lr=1e-3), metrics=finished_metrics())
    b = make_run(
        tmp_path / "runs",
        "cnn-b",
        config(seed=2, lr=1e-2),
        state={"epoch": 1, "history": {"loss": [0.8], "accuracy": [0.7]}},
    )
    png, md = compare.compare_runs([a, b], tmp_path / "out")

    assert png == tmp_path / "out" / compare.COMPARE_PNG
    with Image.open(png) as img:
        assert img.format == "PNG" and img.size[0] > 0 and img.size[1] > 0
    assert (tmp_path / "out" / compare.COMPARE_MD).read_text() == md

    section = md.split("## Config differences")[1]
    rows = [line.strip("|").split("|") for line in section.splitlines() if line.startswith("| ")]
    header, *body = [[c.strip() for c in row] for row in rows]
    assert header == ["key", "cnn-a", "cnn-b"]
    assert {row[0]: row[1:] for row in body} == {
        "seed": ["1", "2"],
        "train.schedule.phases": ["[[2, 0.001]]", "[[2, 0.01]]"],
    }


def test_compare_refuses_missing_and_non_run_dirs(tmp_path):
    a = make_run(tmp_path, "a", config(), metrics=finished_metrics())
    missing = tmp_path / "no-such-run"
    with pytest.raises(UsageError, match=str(missing)) as exc:
        compare.compare_runs([a, missing], tmp_path / "out")
    assert "\n" not in str(exc.value)
    (tmp_path / "plain").mkdir()
    with pytest.raises(UsageError, match="plain: no config.yaml"):
        compare.compare_runs([a, tmp_path / "plain"], tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.integration
def test_import_does_not_load_tensorflow():
    code = (
        "import sys, fastcourse.results.runs, fastcourse.results.compare; "
        "print('tensorflow' in sys.modules or 'keras' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "False"


def test_compare_names_each_runs_split_in_the_table_and_the_legend(tmp_path, monkeypatch):
    a = make_run(tmp_path, "folder-run", config(seed=1), metrics=finished_metrics(eval_split="valid"))
    b = make_run(tmp_path, "array-run", config(seed=2), metrics=old_metrics())
    c = make_run(tmp_path, "unfinished", config(seed=3), state={"epoch": 1, "history": {"val_loss": [0.5]}})
    legends = []
    real = compare.io.save_figure

    def keep_legend(fig, path):
        legends.extend(t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts())
        return real(fig, path)

    monkeypatch.setattr(compare.io, "save_figure", keep_legend)
    _, md = compare.compare_runs([a, b, c], tmp_path / "out")
    assert "| run | status | split | accuracy | epochs | minutes |" in md
    assert "| folder-run | finished | valid | 0.9812 |" in md and "| array-run | finished | test | 0.9812 |" in md
    assert {"folder-run (valid)", "array-run (test)", "unfinished (eval)", "folder-run (train)"} <= set(legends)
    assert not any("validation" in t or "test (clean)" in t for t in legends)
