"""The CLI end to end: a small run into a temporary directory, list, show-config, errors."""

import json
import subprocess
import sys
from pathlib import Path

import keras
import pandas as pd
import pytest
import yaml

from fastcourse.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.integration
def test_run_writes_a_complete_run_directory(tmp_path, capsys):
    cfg = tmp_path / "small.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "name": "small",
                "seed": 3,
                "data": {"name": "mnist_sample", "train_limit": 2000, "test_limit": 500},
                "model": {"name": "cnn", "filters": [16, 32], "dense": 64},
                "augment": {"name": "course"},
                "train": {"verbose": 0, "schedule": {"name": "phases", "phases": [[1, 2e-3], [1, 5e-4]]}},
            }
        )
    )
    assert main(["run", str(cfg), "--out", str(tmp_path / "runs"), "--set", "train.batch_size=32"]) == 0
    out = capsys.readouterr().out
    run_dir = Path(out.split("run directory: ")[1].strip())
    assert run_dir.parent == tmp_path / "runs"
    for name in (
        "config.yaml",
        "metrics.json",
        "history.csv",
        "model.keras",
        "learning_curves.png",
        "confusion_matrix.png",
    ):
        assert (run_dir / name).stat().st_size > 0, name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["eval_accuracy"] > 0.85, metrics["eval_accuracy"]  # a sane digit classifier
    assert f"test accuracy: {metrics['eval_accuracy']:.4f}" in out
    for key in ("eval_loss", "train_seconds", "images_per_second", "seed", "versions"):
        assert key in metrics
    assert metrics["versions"]["keras"] == keras.__version__
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert resolved["train"]["batch_size"] == 32 and resolved["train"]["epochs"] == 2
    history = pd.read_csv(run_dir / "history.csv")
    assert list(history["epoch"]) == [1, 2] and {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(history)
    model = keras.saving.load_model(run_dir / "model.keras", safe_mode=True)
    assert model.output_shape == (None, 10)
    assert not list(run_dir.glob(".*tmp"))  # no temporary files left behind


def test_second_run_gets_its_own_directory(tmp_path, tiny_config):
    from fastcourse.run.experiment import new_run_dir

    a, b = new_run_dir(tmp_path, "x"), new_run_dir(tmp_path, "x")
    assert a != b and a.is_dir() and b.is_dir()


def test_bad_config_is_one_line_and_exit_2(tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("model: {name: cnn}\ntrain: {epochs: 1, bach_size: 3}\n")
    assert main(["run", str(cfg), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "did you mean 'batch_size'" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == [cfg]  # nothing was created


def test_show_config_and_list(capsys):
    assert main(["show-config", str(ROOT / "configs/mnist/cnn_bn_dropout.yaml"), "--set", "seed=7"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["seed"] == 7 and shown["train"]["epochs"] == 35 and shown["model"]["name"] == "cnn_bn_dropout"
    assert main(["list"]) == 0
    listed = capsys.readouterr().out
    for word in (
        "models:",
        "cnn_bn_dropout",
        "datasets:",
        "fashion_mnist",
        "augmentations:",
        "course",
        "schedules:",
        "one_cycle",
    ):
        assert word in listed


@pytest.mark.integration
def test_console_script_runs():
    exe = Path(sys.executable).parent / "fastcourse"
    proc = subprocess.run([str(exe), "list", "schedules"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "phases" in proc.stdout


def test_preview_augment_command(tmp_path, capsys):
    out = tmp_path / "augment_preview.png"  # --out names the folder, as in every command
    assert main(["preview-augment", str(ROOT / "configs/mnist_sample/cnn.yaml"), "--out", str(tmp_path)]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.integration
def test_no_tensorflow_absl_or_cuda_log_lines_unless_asked(tmp_path):
    """A clean run of the shipped sample config writes nothing to stderr: no oneDNN notice, no absl
    "before InitializeLog" line, no `failed call to cuInit`. FASTCOURSE_TF_LOGS=1 brings them back."""
    import os
    import re

    exe = str(Path(sys.executable).parent / "fastcourse")
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "FASTCOURSE_TF_LOGS")}
    proc = subprocess.run(
        [
            exe,
            "run",
            "mnist_sample/cnn",
            "--set",
            "data.train_limit=128",
            "--set",
            "data.test_limit=64",
            "--set",
            "train.schedule.phases=[[1, 1e-3]]",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr == "", proc.stderr[-3000:]
    assert "run directory: " in proc.stdout
    native = re.compile(
        r"^(WARNING: All log messages before absl|[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\])", re.M
    )
    assert not native.search(proc.stdout)


def test_command_line_mistakes_are_one_line_and_exit_2(capsys):
    for argv, words in [
        (["run"], ["run:", "required", "CONFIG_OR_RUN_DIR"]),
        (["rn"], ["invalid choice", "'rn'"]),
        (["explain", "cnn", "--num-classes", "many"], ["explain:", "invalid int value", "'many'"]),
    ]:
        with pytest.raises(SystemExit) as stop:
            main(argv)
        err = capsys.readouterr().err
        assert stop.value.code == 2 and err.count("\n") == 1 and err.startswith("fastcourse: error: "), err
        assert all(w in err for w in words) and "--help" in err, (words, err)


def test_an_out_folder_that_cannot_be_made_is_bad_input(tmp_path, capsys):
    """Exit 2 (bad input, as the CLI docstring says), not 1: a file in the way, a read-only place."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cfg = ROOT / "configs/mnist_sample/cnn.yaml"
    assert main(["run", str(cfg), "--out", str(blocker / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "file/runs: Not a directory" in err and "--out" in err
    assert main(["preview-augment", str(cfg), "--out", str(blocker)]) == 2
    assert "is a file" in capsys.readouterr().err
