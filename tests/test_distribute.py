"""tf.distribute: MirroredStrategy over two logical CPUs, two workers on localhost (and their
checkpoints: every worker restores the chief's; a worker killed after the first epoch, then the
run resumed), precision.

Each run is a subprocess: TensorFlow's devices and cluster must be set before it starts."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from fastcourse.config import load_config
from fastcourse.errors import UsageError

pytestmark = pytest.mark.integration  # every test here starts a process or runs for seconds

FASTCOURSE = str(Path(sys.executable).parent / "fastcourse")


def write_config(tmp_path, **train):
    cfg = {
        "name": "dist",
        "seed": 5,
        "data": {"name": "mnist_sample", "train_limit": 2048, "test_limit": 500},
        "model": {"name": "cnn", "filters": [8, 16], "dense": 32},
        "train": {"batch_size": 64, "verbose": 0, "epochs": 2, "schedule": {"name": "constant", "lr": 2e-3}, **train},
    }
    path = tmp_path / "dist.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_cli(args, env_extra=None, timeout=300):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env_extra or {})}
    return subprocess.Popen([FASTCOURSE, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc, timeout=300):
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-2000:]
    return out


def metrics_of(out):
    run_dir = Path(out.split("run directory: ")[1].strip())
    return json.loads((run_dir / "metrics.json").read_text())


def test_mirrored_over_two_cpus_matches_one_device(tmp_path):
    cfg = write_config(tmp_path)
    one = run_cli(["run", str(cfg), "--out", str(tmp_path / "one")])
    two = run_cli(
        ["run", str(cfg), "--out", str(tmp_path / "two"), "--set", "train.distribute=mirrored"],
        {"FASTCOURSE_VIRTUAL_CPUS": "2"},
    )
    single, mirrored = metrics_of(finish(one)), metrics_of(finish(two))
    assert mirrored["replicas"] == 2 and single["replicas"] == 1
    assert single["eval_accuracy"] > 0.8
    assert abs(mirrored["eval_accuracy"] - single["eval_accuracy"]) < 0.05


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_workers_on_localhost_complete(tmp_path):
    cfg = write_config(tmp_path, distribute="multi_worker", deterministic=False)
    cluster = {"worker": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]}
    procs = [
        run_cli(
            ["run", str(cfg), "--out", str(tmp_path / "runs")],
            {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})},
        )
        for i in range(2)
    ]
    outs = [finish(p, timeout=400) for p in procs]
    chief = metrics_of(outs[0])
    assert chief["replicas"] == 2 and chief["eval_accuracy"] > 0.5
    assert "chief worker wrote the run directory" in outs[1]
    assert len(list((tmp_path / "runs").iterdir())) == 1  # only the chief kept a run directory


def test_multi_worker_without_tf_config_is_a_clear_error(monkeypatch):
    from fastcourse.train.devices import make_strategy

    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(UsageError, match="needs the TF_CONFIG"):
        make_strategy("multi_worker")


def test_mixed_precision_on_cpu_falls_back_to_float32(capsys):
    from fastcourse.train.devices import apply_precision, has_gpu

    if has_gpu():
        pytest.skip("this machine has a GPU: mixed precision is used for real")
    assert apply_precision("mixed_float16") == "float32"
    assert "needs a GPU" in capsys.readouterr().out


@pytest.mark.skipif(not __import__("tensorflow").config.list_physical_devices("GPU"), reason="needs a GPU")
def test_mixed_precision_keeps_float32_outputs():
    import keras

    from fastcourse.models import build_model
    from fastcourse.train.devices import float32_outputs, training_scope

    with training_scope("mixed_float16", "none"):
        model = float32_outputs(build_model("cnn", (28, 28, 1), 10))
        assert model.get_layer("block1_conv1").compute_dtype == "float16"
    assert model.outputs[0].dtype == "float32"
    assert keras.mixed_precision.global_policy().name == "float32"


def test_precision_and_distribute_are_validated(tiny_config):
    with pytest.raises(Exception, match="train.precision"):
        load_config(tiny_config(train__precision="float8"))
    with pytest.raises(Exception, match="train.distribute"):
        load_config(tiny_config(train__distribute="horovod"))


def tf_config(cluster, index):
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}


def two_ports():
    """Two free loopback ports, held until both are chosen so they differ."""
    with socket.socket() as a, socket.socket() as b:
        a.bind(("127.0.0.1", 0))
        b.bind(("127.0.0.1", 0))
        return [f"127.0.0.1:{s.getsockname()[1]}" for s in (a, b)]


def stop(proc, grace=30):
    """Wait a little for a process whose peer is gone; kill it if it is still waiting."""
    try:
        proc.communicate(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate(timeout=30)


@pytest.mark.slow  # six worker processes: 2-3 minutes on two busy cores
def test_a_worker_killed_after_the_first_epoch_then_the_run_resumed(tmp_path):
    """The chief checkpoints each epoch; a worker is lost (SIGKILL) after the first; the cluster
    is started again: the chief resumes its run directory, the other worker starts afresh and is
    given the chief's checkpoint. The run finishes with every epoch, its history continuous."""
    import pandas as pd

    epochs = 4
    cfg = write_config(tmp_path, distribute="multi_worker", deterministic=False, epochs=epochs)
    run_dir, state = tmp_path / "run", tmp_path / "run" / "checkpoints" / "state.json"
    cluster = {"worker": two_ports()}
    chief = run_cli(["run", str(cfg), "--run-dir", str(run_dir)], tf_config(cluster, 0))
    worker = run_cli(["run", str(cfg), "--out", str(tmp_path / "worker")], tf_config(cluster, 1))
    try:
        deadline = time.time() + 300
        while not state.exists():
            assert chief.poll() is None and worker.poll() is None, "a worker ended before the first checkpoint"
            assert time.time() < deadline, "no checkpoint within 300 s"
            time.sleep(0.02)
        os.kill(worker.pid, signal.SIGKILL)  # lost: no chance to clean up
        worker.wait(timeout=30)
    finally:
        for proc in (chief, worker):
            if proc.poll() is None:
                stop(proc, grace=0 if proc is worker else 30)
    before = json.loads(state.read_text())
    assert 1 <= before["epoch"] < epochs and not (run_dir / "metrics.json").exists()

    cluster = {"worker": two_ports()}  # a new cluster, as a scheduler would start it
    chief = run_cli(["run", str(run_dir)], tf_config(cluster, 0))
    worker = run_cli(["run", str(cfg), "--out", str(tmp_path / "worker")], tf_config(cluster, 1))
    out_chief, out_worker = finish(chief, timeout=400), finish(worker, timeout=400)
    assert f"resuming {run_dir} after {before['epoch']} completed epoch" in out_chief
    assert "chief worker wrote the run directory" in out_worker
    metrics = metrics_of(out_chief)
    assert metrics["replicas"] == 2 and len(metrics["epoch_seconds"]) == epochs
    history = pd.read_csv(run_dir / "history.csv")
    assert history["epoch"].tolist() == list(range(1, epochs + 1))
    # the epochs before the loss are kept with their values, and training went on from them
    assert history["loss"].tolist()[: before["epoch"]] == pytest.approx(before["history"]["loss"], rel=1e-12)
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]

    # and it ends where the same cluster ends without the loss
    cluster = {"worker": two_ports()}
    procs = [
        run_cli(["run", str(cfg), "--out", str(tmp_path / f"straight{i}")], tf_config(cluster, i)) for i in range(2)
    ]
    straight_dir = Path(finish(procs[0], timeout=400).split("run directory: ")[1].strip())
    finish(procs[1], timeout=400)
    straight = pd.read_csv(straight_dir / "history.csv")
    assert history["loss"].tolist() == pytest.approx(straight["loss"].tolist(), rel=1e-4)
    assert metrics["eval_accuracy"] == pytest.approx(
        metrics_of(f"run directory: {straight_dir}")["eval_accuracy"], abs=2e-3
    )


RESTORE = """
import hashlib, json, sys
import keras, numpy as np, tensorflow as tf
from fastcourse.config import TrainConfig
from fastcourse.models import build_model
from fastcourse.train import checkpoint
from fastcourse.train.optimizers import compile_model

strategy = tf.distribute.MultiWorkerMirroredStrategy()
with strategy.scope():
    keras.utils.set_random_seed(int(sys.argv[2]))  # each worker starts from other weights
    model = build_model("cnn_bn_dropout", (28, 28, 1), 10, filters=[4, 8], dense=16)
    compile_model(model, TrainConfig(epochs=3), 4)
    state = checkpoint.restore(model, sys.argv[1])
variables = [*model.variables, *model.optimizer.variables]
digest = hashlib.sha256(b"".join(np.asarray(keras.ops.convert_to_numpy(v)).tobytes() for v in variables))
print(json.dumps({"epoch": state.epoch, "digest": digest.hexdigest(), "history": state.history}))
"""


def test_every_worker_restores_the_chiefs_checkpoint(tmp_path):
    """Only the chief's folder holds the checkpoint; both workers end with its weights, optimizer
    state and seed states, and continue after its epoch (the default-tier half of the kill test)."""
    import hashlib

    import keras
    import numpy as np

    from fastcourse.config import TrainConfig
    from fastcourse.models import build_model
    from fastcourse.train import checkpoint
    from fastcourse.train.optimizers import compile_model

    keras.utils.set_random_seed(7)
    model = build_model("cnn_bn_dropout", (28, 28, 1), 10, filters=[4, 8], dense=16)
    compile_model(model, TrainConfig(epochs=3), 4)
    model.optimizer.build(model.trainable_variables)
    for v in [*model.variables, *model.optimizer.variables]:  # a state no fresh model has
        v.assign(np.random.default_rng(0).integers(1, 100, v.shape).astype(v.dtype))
    chief_dir, worker_dir = tmp_path / "chief", tmp_path / "worker"
    worker_dir.mkdir()
    checkpoint.save(model, chief_dir, checkpoint.CheckpointState(epoch=2, history={"loss": [2.0, 1.0]}))
    want = hashlib.sha256(
        b"".join(
            np.asarray(keras.ops.convert_to_numpy(v)).tobytes() for v in [*model.variables, *model.optimizer.variables]
        )
    ).hexdigest()

    cluster = {"worker": two_ports()}
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RESTORE, str(folder), str(i)],
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**env, **tf_config(cluster, i)},
        )
        for i, folder in enumerate([chief_dir, worker_dir])
    ]
    chief, worker = (json.loads(finish(p, timeout=300).strip().splitlines()[-1]) for p in procs)
    assert chief == {"epoch": 2, "digest": want, "history": {"loss": [2.0, 1.0]}}
    assert worker["epoch"] == 2 and worker["digest"] == want  # its history is the chief's to keep
