"""Runs share a features cache: two `fastcourse run` processes started together on one
task.cache_dir, while a third process is writing it, each say that the cache is being written by
that pid and wait; then each computes or reuses, and both end with the features and the metrics
of a run alone (byte-identical files, equal figures: same config, same seed, same features)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}

# a process writing the cache: it holds the cache folder's lock until its stdin closes
WRITER = (
    "import sys; from fastcourse.locks import hold\n"
    "with hold(sys.argv[1]):\n"
    "    print('held', flush=True); sys.stdin.read()\n"
)


def _run(config: Path, run_dir: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "fastcourse.cli", "run", str(config), "--run-dir", str(run_dir)],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        env=ENV,
    )


def _config(tmp_path: Path, tiny_config, cache: Path) -> Path:
    cfg = tiny_config(
        name="shared",
        data={"name": "mnist_sample", "train_limit": 256, "test_limit": 128},
        model={"name": "cnn", "filters": [4, 8], "dense": 16},
        task={"name": "features", "cache_dir": str(cache), "head": {"units": 8}},
        train__epochs=2,
    )
    path = tmp_path / f"{cache.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _metrics(run_dir: Path) -> dict:
    m = json.loads((run_dir / "metrics.json").read_text())
    return {k: m[k] for k in ("eval_accuracy", "eval_loss", "feature_files")}


@pytest.mark.integration
def test_two_runs_started_together_wait_for_the_writer_and_share_the_cache(tmp_path, tiny_config):
    cache = tmp_path / "cache"
    cache.mkdir()
    config = _config(tmp_path, tiny_config, cache)
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(cache)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=ENV
    )
    assert writer.stdout.readline().strip() == "held"
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    runs = [_run(config, tmp_path / name, log) for name, log in zip("ab", logs)]
    waiting = f"fastcourse: features cache {cache} is being written by pid {writer.pid}; waiting"
    try:
        deadline = time.time() + 300
        while not all(waiting in log.read_text() for log in logs):
            assert all(r.poll() is None for r in runs), [log.read_text()[-2000:] for log in logs]
            assert time.time() < deadline, "the runs did not reach the cache within 5 minutes"
            time.sleep(0.2)
    finally:
        writer.stdin.close()  # the writer is done: both continue
        writer.wait(timeout=60)
    for run, log in zip(runs, logs):
        assert run.wait(timeout=600) == 0, log.read_text()[-3000:]
    outputs = [log.read_text() for log in logs]
    assert all("in use by another" not in out and "Traceback" not in out for out in outputs)
    # one computed each file, the other found it there once the lock was its own
    assert any("done waiting; reusing" in out for out in outputs), outputs
    a, b = (_metrics(tmp_path / name) for name in "ab")
    assert a == b and len(a["feature_files"]) == 2
    assert sorted(p.name for p in cache.glob("*.npy")) == sorted(Path(f).name for f in a["feature_files"])
    assert not list(cache.glob("*.partial"))

    # the same config alone, into a cache of its own
    alone_cache = tmp_path / "alone"
    alone = subprocess.run(
        [sys.executable, "-m", "fastcourse.cli", "run", str(_config(tmp_path, tiny_config, alone_cache))]
        + ["--run-dir", str(tmp_path / "alone_run")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=ENV,
        timeout=600,
    )
    assert alone.returncode == 0, alone.stderr[-3000:]
    solo = _metrics(tmp_path / "alone_run")
    assert (solo["eval_accuracy"], solo["eval_loss"]) == (a["eval_accuracy"], a["eval_loss"])
    for shared_file, solo_file in zip(a["feature_files"], solo["feature_files"]):
        assert Path(shared_file).name == Path(solo_file).name
        assert Path(shared_file).read_bytes() == Path(solo_file).read_bytes()
