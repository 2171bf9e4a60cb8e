"""Interrupted runs resume: kill -9 mid-epoch, resume, and end where an uninterrupted run ends.

Also: `--resume` finds the unfinished run, resuming refuses a complete run or a changed
config, and a NaN loss stops the run naming the epoch while the last good checkpoint stays.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
import yaml

from fastcourse.cli import main
from fastcourse.train import checkpoint

pytestmark = pytest.mark.integration  # every test here starts a process or runs for seconds

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def resumable_yaml(tmp_path, tiny_config):
    """Dropout, augmentation and a two-phase schedule: everything a resume must continue."""
    cfg = tiny_config(
        name="resumable",
        data={"name": "mnist_sample", "train_limit": 256, "test_limit": 128},
        model={"name": "cnn_bn_dropout", "filters": [4, 8], "dense": 16},
        augment={"name": "course"},
        train={"batch_size": 32, "verbose": 0, "schedule": {"name": "phases", "phases": [[2, 3e-3], [1, 5e-4]]}},
    )
    path = tmp_path / "resumable.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _kill_after_first_checkpoint(config: Path, run_dir: Path) -> int:
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastcourse.cli", "run", str(config), "--run-dir", str(run_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    state = run_dir / "checkpoints" / checkpoint.STATE
    deadline = time.time() + 240
    while not state.exists():
        assert proc.poll() is None, "the run ended before its first checkpoint"
        assert time.time() < deadline, "no checkpoint within 4 minutes"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)  # no chance to clean up: as a crash or an OOM kill
    proc.wait()
    return json.loads(state.read_text())["epoch"]


def test_kill_9_then_resume_matches_an_uninterrupted_run(tmp_path, resumable_yaml, capsys):
    killed = tmp_path / "killed"
    done_at_kill = _kill_after_first_checkpoint(resumable_yaml, killed)
    assert 1 <= done_at_kill < 3 and not (killed / "metrics.json").exists()

    assert main(["run", str(killed)]) == 0  # pointing at the unfinished run directory resumes it
    out = capsys.readouterr().out
    assert f"resuming {killed} after {done_at_kill} completed epoch" in out

    straight = tmp_path / "straight"
    assert main(["run", str(resumable_yaml), "--run-dir", str(straight)]) == 0
    capsys.readouterr()

    a = json.loads((straight / "metrics.json").read_text())
    b = json.loads((killed / "metrics.json").read_text())
    print(
        f"\nkill -9 after {done_at_kill} epoch(s), resumed: test accuracy {b['eval_accuracy']:.6f} "
        f"loss {b['eval_loss']:.6f}; uninterrupted: accuracy {a['eval_accuracy']:.6f} loss {a['eval_loss']:.6f}"
    )
    assert b["eval_accuracy"] == pytest.approx(a["eval_accuracy"], abs=1e-6)
    assert b["eval_loss"] == pytest.approx(a["eval_loss"], rel=1e-4, abs=1e-5)
    ha, hb = pd.read_csv(straight / "history.csv"), pd.read_csv(killed / "history.csv")
    assert list(ha.columns) == list(hb.columns) and len(hb) == 3
    np.testing.assert_allclose(hb.to_numpy(), ha.to_numpy(), rtol=1e-4, atol=1e-5)
    assert len(b["epoch_seconds"]) == 3  # the killed run's epoch times are kept too

    # the finished run: no checkpoints left, no temporary files, the model loads in safe mode
    assert not (killed / "checkpoints").exists()
    assert not [p for p in killed.iterdir() if p.name.startswith(".") and p.name != ".lock"]
    from fastcourse.run.artifacts import load_model

    model = load_model(killed / "model.keras")
    np.testing.assert_allclose(
        np.concatenate([w.ravel() for w in model.get_weights()]),
        np.concatenate([w.ravel() for w in keras.saving.load_model(straight / "model.keras").get_weights()]),
        rtol=1e-4,
        atol=1e-5,
    )


def _interrupt_after_epochs(monkeypatch, n: int):
    """Ctrl-C right after the n-th checkpoint is committed."""
    real = checkpoint.save

    def save(model, folder, state):
        real(model, folder, state)
        if state.epoch >= n:
            raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint, "save", save)


def test_resume_flag_and_refusals(tmp_path, tiny_config, capsys, monkeypatch):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(
        yaml.safe_dump(
            tiny_config(
                data={"name": "mnist_sample", "train_limit": 128, "test_limit": 64},
                model={"name": "cnn", "filters": [4, 8], "dense": 16},
                train__epochs=2,
            )
        )
    )
    out = tmp_path / "runs"
    _interrupt_after_epochs(monkeypatch, 1)
    assert main(["run", str(cfg), "--out", str(out)]) == 130
    monkeypatch.undo()
    (run_dir,) = out.iterdir()
    err = capsys.readouterr().err.splitlines()
    # Ctrl-C: one line saying so, then the command that resumes on a line of its own
    assert err[-2].startswith("fastcourse: interrupted (Ctrl-C)") and err[-1] == f"fastcourse run {run_dir}"
    assert checkpoint.read_state(run_dir / "checkpoints")["epoch"] == 1

    # a changed config is refused: the run resumes with the config it started with
    code = main(["run", str(run_dir), "--set", "train.epochs=3"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "train.epochs is 3, the run started with 2 (from --set train.epochs=3)" in err
    assert "delete" not in err and "no --set for those keys" in err

    # temporary files of writers killed mid-write are swept when the run resumes
    stale = [run_dir / ".model.keras.k1ll3d_x.keras", run_dir / "checkpoints" / ".epoch-0002.keras.abcd1234.keras"]
    for path in stale:
        path.write_bytes(b"half a model")
    assert main(["run", str(cfg), "--out", str(out), "--resume"]) == 0
    assert not any(p.exists() for p in stale)
    printed = capsys.readouterr().out
    assert f"resuming {run_dir} after 1 completed epoch" in printed and f"run directory: {run_dir}" in printed
    assert list(out.iterdir()) == [run_dir]
    assert len(pd.read_csv(run_dir / "history.csv")) == 2

    code = main(["run", str(run_dir)])
    err = capsys.readouterr().err
    assert code == 2 and "complete run" in err and "nothing to resume" in err
    from fastcourse.config import load_config
    from fastcourse.run.rundir import find_unfinished

    assert find_unfinished(out, load_config(cfg)) is None  # --resume would start a new run


def test_nan_loss_stops_naming_the_epoch_and_keeps_the_last_checkpoint(tmp_path, tiny_config, capsys):
    cfg = tmp_path / "diverge.yaml"
    cfg.write_text(
        yaml.safe_dump(
            tiny_config(
                data={"name": "mnist_sample", "train_limit": 128, "test_limit": 64},
                model={"name": "cnn", "filters": [4, 8], "dense": 16},
                train={
                    "batch_size": 32,
                    "verbose": 0,
                    "optimizer": "sgd",
                    "schedule": {"name": "phases", "phases": [[1, 1e-3], [1, 1e30]]},
                },
            )
        )
    )
    run_dir = tmp_path / "run"
    code = main(["run", str(cfg), "--run-dir", str(run_dir)])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and "Traceback" not in err
    assert lines[0].startswith("fastcourse: error: epoch 2: the training loss became nan")
    assert "lower learning rate" in lines[0] and "checkpoint of epoch 1 is kept" in lines[0]
    assert "continue with" not in lines[0]  # the same config would diverge again
    assert not (run_dir / "model.keras").exists() and not (run_dir / "metrics.json").exists()
    state = checkpoint.read_state(run_dir / "checkpoints")
    assert state["epoch"] == 1 and all(np.isfinite(v) for v in state["history"]["loss"])
    good = keras.saving.load_model(run_dir / "checkpoints" / state["model_file"], safe_mode=True)
    assert all(np.isfinite(w).all() for w in good.get_weights())


def test_an_edited_config_is_refused_naming_what_changed_and_how_to_restore_it(
    tmp_path, tiny_config, capsys, monkeypatch
):
    """started.json holds the hash and a copy of the resolved config: resuming after config.yaml
    was edited names each key (then and now) and the restoring --set, and deletes nothing."""
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(
        yaml.safe_dump(
            tiny_config(
                data={"name": "mnist_sample", "train_limit": 128, "test_limit": 64},
                model={"name": "cnn", "filters": [4, 8], "dense": 16},
                train__epochs=2,
            )
        )
    )
    run_dir = tmp_path / "rd"
    _interrupt_after_epochs(monkeypatch, 1)
    assert main(["run", str(cfg), "--run-dir", str(run_dir)]) == 130
    monkeypatch.undo()
    capsys.readouterr()
    started = json.loads((run_dir / "started.json").read_text())
    assert len(started["config_sha256"]) == 64 and started["config"]["model"]["dense"] == 16

    original = (run_dir / "config.yaml").read_text()
    (run_dir / "config.yaml").write_text(original.replace("dense: 16", "dense: 32").replace("lr: 0.001", "lr: 0.01"))
    before = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    code = main(["run", str(run_dir)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "model.dense is 32, the run started with 16" in err
    assert "train.schedule.lr is 0.01, the run started with 0.001" in err
    assert f"put the values back in {run_dir / 'config.yaml'}" in err
    restore = f"fastcourse run {run_dir} --set model.dense=16 --set train.schedule.lr=0.001"
    assert restore in err and "delete" not in err
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == before  # the trained epoch is kept

    # the printed command resumes the run from its checkpoint
    assert main(restore.split()[1:]) == 0
    assert "after 1 completed epoch" in capsys.readouterr().out
    assert len(pd.read_csv(run_dir / "history.csv")) == 2

    # another config file aimed at the same run directory names its source
    other = tmp_path / "other.yaml"
    other.write_text(cfg.read_text().replace("dense: 16", "dense: 8"))
    (run_dir / "metrics.json").rename(run_dir / "metrics.json.done")  # unfinished again, for the check
    code = main(["run", str(other), "--run-dir", str(run_dir)])
    err = capsys.readouterr().err
    assert code == 2 and "model.dense is 8, the run started with 16" in err and f"give {other} another --run-dir" in err


def test_sigterm_keeps_the_checkpoint_exits_143_and_prints_the_resume_command(tmp_path, tiny_config, capsys):
    """SIGTERM (a scheduler, `docker stop`) is handled as Ctrl-C: the last checkpoint stays, exit
    143, and the resume command on a line of its own (not glued to the progress bar)."""
    cfg = tmp_path / "term.yaml"
    cfg.write_text(
        yaml.safe_dump(
            tiny_config(
                data={"name": "mnist_sample", "train_limit": 256, "test_limit": 64},
                model={"name": "cnn", "filters": [4, 8], "dense": 16},
                train__epochs=8,
                train__verbose=1,
                train__batch_size=32,
            )
        )
    )
    run_dir = tmp_path / "rd"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fastcourse.cli", "run", str(cfg), "--run-dir", str(run_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    state = run_dir / "checkpoints" / checkpoint.STATE
    deadline = time.time() + 240
    while not state.exists():
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.time() < deadline, "no checkpoint within 4 minutes"
        time.sleep(0.02)
    time.sleep(0.15)  # into the next epoch, mid progress bar
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, output[-3000:]
    lines = output.splitlines()
    said = [i for i, line in enumerate(lines) if "stopped by SIGTERM" in line]
    assert said and lines[said[0]].startswith("fastcourse: stopped by SIGTERM"), output[-2000:]
    assert lines[said[0] + 1] == f"fastcourse run {run_dir}", output[-2000:]
    assert "Traceback" not in output
    done = checkpoint.read_state(run_dir / "checkpoints")["epoch"]
    assert 1 <= done < 8 and not (run_dir / "metrics.json").exists()
    assert not [p for p in run_dir.rglob(".*") if p.name not in (".lock", ".lock.pid")]  # no half-written file

    assert main(["run", str(run_dir), "--set", "train.verbose=0"]) == 0  # the printed command, quietly
    assert f"resuming {run_dir} after {done} completed epoch" in capsys.readouterr().out
    assert len(pd.read_csv(run_dir / "history.csv")) == 8
