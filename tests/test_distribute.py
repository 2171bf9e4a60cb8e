"""tf.distribute: MirroredStrategy over two logical CPUs, two workers on localhost, precision.

Each run is a subprocess: TensorFlow's devices and cluster must be set before it starts."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fastcourse.tasks.check import load_checked as load_config
from fastcourse.errors import UsageError

FASTCOURSE = str(Path(sys.executable).parent / "fastcourse")


def write_config(tmp_path, **train):
    cfg = {"name": "dist", "seed": 5, "data": {"name": "mnist_sample", "train_limit": 2048, "test_limit": 500},
           "model": {"name": "cnn", "filters": [8, 16], "dense": 32},
           "train": {"batch_size": 64, "verbose": 0, "epochs": 2, "schedule": {"name": "constant", "lr": 2e-3},
                     **train}}
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
    two = run_cli(["run", str(cfg), "--out", str(tmp_path / "two"), "--set", "train.distribute=mirrored"],
                  {"FASTCOURSE_VIRTUAL_CPUS": "2"})
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
    procs = [run_cli(["run", str(cfg), "--out", str(tmp_path / "runs")],
                     {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})})
             for i in range(2)]
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
    assert "needs a GPU" in capsys.readouterr().err


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
