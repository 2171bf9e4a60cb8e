"""kill -9 at three points (mid-epoch on an image folder, mid-feature-pass, mid-ensemble-member),
then `fastcourse run RUN_DIR`: the resumed run keeps what was done before the kill (its history
starts with the epochs finished then, finished members and feature chunks are not redone) and
ends with the same metrics as an uninterrupted run on the same seed. Tolerance: accuracy equal to
1e-6, loss to a relative 1e-4 (the same ops in the same order; only float summation may differ)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from fastcourse.data.synthetic import make_image_folder

pytestmark = pytest.mark.integration  # every test here starts a process or runs for seconds

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 8  # for the mid-epoch kill: enough that the kill lands before the last one, even on an idle machine


def start(config: Path, run_dir: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "fastcourse.cli", "run", str(config), "--run-dir", str(run_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"},
    )


def kill_when(proc: subprocess.Popen, ready, what: str, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not ready():
        assert proc.poll() is None, f"the run ended before {what}"
        assert time.time() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)  # no chance to clean up: as a crash or an OOM kill
    proc.wait()


def finish(target: Path, *args) -> Path:
    proc = subprocess.run(
        [sys.executable, "-m", "fastcourse.cli", "run", str(target), *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return Path(proc.stdout.strip().splitlines()[-1].split("run directory: ", 1)[1])


def same_metrics(a: Path, b: Path) -> None:
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    assert mb["eval_accuracy"] == pytest.approx(ma["eval_accuracy"], abs=1e-6)
    assert mb["eval_loss"] == pytest.approx(ma["eval_loss"], rel=1e-4, abs=1e-6)


def write(tmp: Path, cfg: dict) -> Path:
    path = tmp / f"{cfg['name']}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_image_folder(
        tmp_path_factory.mktemp("kill") / "shapes",
        "dogscats",
        classes=3,
        per_class=60,
        valid_per_class=8,
        test=0,
        size=32,
    )


def test_kill_mid_epoch_on_an_image_folder(folder, tmp_path):
    cfg = write(
        tmp_path,
        {
            "name": "folder",
            "seed": 3,
            "data": {"name": "image_folder", "path": str(folder), "image_size": [32, 32]},
            "model": {"name": "cnn_bn_dropout", "filters": [4, 8], "dense": 16},
            "augment": {"name": "dogscats"},
            "train": {
                "batch_size": 8,
                "epochs": EPOCHS,
                "verbose": 0,
                "schedule": {"name": "one_cycle", "max_lr": 3e-3},
            },
        },
    )
    killed = tmp_path / "killed"
    proc = start(cfg, killed)
    state = killed / "checkpoints" / "state.json"
    # past the first checkpoint, a moment into the epochs after it (an epoch here takes a few
    # tenths of a second on an idle machine, more on a busy one): killed between two checkpoints
    t_first = []

    def mid_epoch():
        if state.exists() and not t_first:
            t_first.append(time.time())
        return bool(t_first) and time.time() - t_first[0] > 0.15

    kill_when(proc, mid_epoch, "the middle of an epoch after the first")
    before = json.loads(state.read_text())
    assert 1 <= before["epoch"] < EPOCHS and not (killed / "metrics.json").exists()

    finish(killed)
    straight = finish(cfg, "--run-dir", tmp_path / "straight")
    same_metrics(straight, killed)
    history = pd.read_csv(killed / "history.csv")
    assert len(history) == EPOCHS
    # the epochs finished before the kill are in the history with their values: resumed, not restarted
    for key, values in before["history"].items():
        assert history[key].tolist()[: len(values)] == pytest.approx(values, rel=1e-12)
    assert len(json.loads((killed / "metrics.json").read_text())["epoch_seconds"]) == EPOCHS


@pytest.mark.slow  # ~25 s; the feature cache's damaged-file rebuild is tested in-process (test_features_cache)
def test_kill_mid_feature_pass(folder, tmp_path):
    cache = tmp_path / "cache"
    cfg = write(
        tmp_path,
        {
            "name": "features",
            "seed": 0,
            "data": {"name": "image_folder", "path": str(folder), "image_size": [32, 32]},
            "model": {"name": "vgg16", "include_top": False},
            "augment": {"name": "dogscats"},
            "task": {
                "name": "features",
                "cache_dir": str(cache),
                "passes": 1,
                "head": {"units": 16, "batchnorm": True},
            },
            "train": {"batch_size": 8, "epochs": 1, "verbose": 0},
        },
    )
    killed = tmp_path / "killed"
    proc = start(cfg, killed)

    def committed_chunk():  # a pass is part-way: some chunks committed, the file not yet complete
        for progress in cache.glob("*.progress.json"):
            try:
                if 0 < json.loads(progress.read_text())["rows"] < 180:
                    return True
            except (OSError, ValueError, KeyError):
                pass
        return False

    kill_when(proc, committed_chunk, "a committed feature chunk")
    rows = max(json.loads(p.read_text())["rows"] for p in cache.glob("*.progress.json"))
    finish(killed)
    straight = finish(cfg, "--run-dir", tmp_path / "straight")  # same cache: reused, same features
    same_metrics(straight, killed)
    assert rows > 0 and len(list(cache.glob("*.npy"))) == 3  # clean + 1 augmented pass + valid
    assert not list(cache.glob("*.partial"))


@pytest.mark.slow  # ~40 s; kill -9 stays in the default tier: test_kill_mid_epoch_on_an_image_folder, test_resume
def test_kill_mid_ensemble_member(tmp_path, tiny_config):
    raw = tiny_config(
        name="ens",
        data={"name": "mnist_sample", "train_limit": 384, "test_limit": 128},
        model={"name": "cnn_bn_dropout", "filters": [4, 8], "dense": 16},
        augment={"name": "course"},
        ensemble={"members": 2},
        train={"batch_size": 32, "epochs": 3, "verbose": 0, "schedule": {"name": "one_cycle", "max_lr": 3e-3}},
    )
    cfg = write(tmp_path, raw)
    killed = tmp_path / "killed"
    proc = start(cfg, killed)
    member1 = killed / "members" / "1" / "checkpoints" / "state.json"
    kill_when(proc, member1.exists, "member 1's first checkpoint")
    m0 = killed / "members" / "0"
    kept = {p: p.stat().st_mtime_ns for p in m0.iterdir() if p.is_file()}
    assert (m0 / "eval_probs.npy").is_file()
    finish(killed)
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # the finished member was not retrained
    straight = finish(cfg, "--run-dir", tmp_path / "straight")
    same_metrics(straight, killed)
    for i in range(2):
        same_metrics(straight / "members" / str(i), killed / "members" / str(i))
