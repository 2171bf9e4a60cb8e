"""Every task on every kind of dataset, and the config commands on image-folder configs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fastcourse.config import load_config
from fastcourse.data.synthetic import make_image_folder
from fastcourse.errors import UsageError
from fastcourse.tasks.runner import run_experiment

pytestmark = pytest.mark.integration  # every test here starts a process or runs for seconds

ROOT = Path(__file__).resolve().parents[1]
ARRAYS = {"name": "mnist_sample", "train_limit": 256, "test_limit": 64}
SMALL_CNN = {"name": "cnn_bn", "filters": [4, 8], "dense": 16}


def run(tmp_path, **cfg) -> dict:
    cfg = {"seed": 0, "out": str(tmp_path / "runs"), "train": {"batch_size": 32, "epochs": 1, "verbose": 0}, **cfg}
    return json.loads((run_experiment(load_config(cfg)) / "metrics.json").read_text())


def test_features_with_a_batchnorm_head_on_an_array_dataset(tmp_path):
    """The lesson-3 recipe on digits: cut the digit CNN, cache its features (with an augmented
    pass), train the batchnorm head on them, put it back."""
    m = run(
        tmp_path,
        name="arr-features",
        data=ARRAYS,
        model=SMALL_CNN,
        augment={"name": "course"},
        task={
            "name": "features",
            "cut": "block2_pool",
            "passes": 1,
            "cache_dir": str(tmp_path / "cache"),
            "head": {"units": 16, "batchnorm": True, "pool": False},
        },
    )
    assert m["data_kind"] == "arrays" and m["eval_split"] == "test" and m["eval_images"] == 64
    assert m["feature_shape"] == [4, 4, 8] and m["attach_max_abs_diff"] < 1e-5
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 3  # clean, 1 augmented pass, test


def test_fine_tune_phases_on_an_array_dataset(tmp_path):
    import pandas as pd

    m = run(
        tmp_path,
        name="arr-finetune",
        data=ARRAYS,
        model=SMALL_CNN,
        task={"name": "finetune", "freeze_epochs": 1, "unfreeze_epochs": 2, "frozen_up_to": "block2", "lr_mult": 10},
        train={"batch_size": 16, "verbose": 0, "schedule": {"name": "constant", "lr": 3e-3}},
    )
    assert m["epochs"] == 3 and m["data_kind"] == "arrays" and m["unfreeze_epochs"] == 2
    history = pd.read_csv(next((tmp_path / "runs").glob("arr-finetune-*")) / "history.csv")
    assert len(history) == 3 and history["loss"].iloc[-1] < history["loss"].iloc[0]


def test_vgg16_on_grey_digits_is_one_clear_line(tmp_path):
    with pytest.raises(UsageError) as err:
        run(
            tmp_path,
            name="arr-vgg",
            data=ARRAYS,
            model={"name": "vgg16", "include_top": False},
            task={"name": "features", "cache_dir": str(tmp_path / "cache")},
        )
    assert "\n" not in str(err.value) and "3" in str(err.value)


@pytest.fixture(scope="module")
def folder_config(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("folder-cfg")
    root = make_image_folder(tmp / "shapes", "dogscats", classes=2, per_class=12, valid_per_class=4, test=2, size=32)
    cfg = {
        "name": "shapes",
        "seed": 0,
        "out": str(tmp / "runs"),
        "data": {"name": "image_folder", "path": str(root), "image_size": [32, 32]},
        "model": SMALL_CNN,
        "augment": {"name": "dogscats"},
        "train": {"batch_size": 8, "epochs": 1, "verbose": 0},
    }
    path = tmp / "shapes.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize(
    "command, made",
    [
        (["preview-augment", "-n", "3"], "augment_preview.png"),
        (["lr-find", "--steps", "12"], "lr_find.png"),
        (["check"], None),
        (["show-config"], None),
    ],
)
def test_config_commands_on_a_folder_config(folder_config, tmp_path, command, made):
    out = ["--out", str(tmp_path)] if made else []
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("fastcourse")), command[0], str(folder_config), *command[1:], *out],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    if made:
        assert (tmp_path / made).read_bytes()[:4] == b"\x89PNG"
    if command[0] == "show-config":
        assert yaml.safe_load(proc.stdout)["data"]["image_size"] == [32, 32]
