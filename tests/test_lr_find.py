"""`fastcourse lr-find` on every task kind (fastcourse/tasks/lr_find.py), in-process through the CLI:
train on arrays and on a folder, the features head on cached features, a frozen fine-tune. Each
must suggest a finite positive rate inside the swept range and write the plot."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from fastcourse.cli import main
from fastcourse.data.synthetic import make_image_folder
from fastcourse.tasks.check import load_checked

ROOT = Path(__file__).resolve().parents[1]
MIN_LR, MAX_LR = 1e-6, 1.0
STEPS = ["--steps", "30", "--min-lr", str(MIN_LR), "--max-lr", str(MAX_LR)]
SMALL_CNN = {"name": "cnn_bn", "filters": [4, 8], "dense": 16}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_image_folder(
        tmp_path_factory.mktemp("lrf") / "shapes",
        "dogscats",
        classes=2,
        per_class=16,
        valid_per_class=4,
        test=0,
        size=32,
    )


def folder_overrides(folder: Path) -> list[str]:
    return [
        "--set",
        "model.weights=none",
        "--set",
        f"data.path={folder}",
        "--set",
        "data.image_size=[32, 32]",
        "--set",
        "train.verbose=0",
    ]


def lr_find(config: Path | str, out: Path, *extra: str, capsys) -> dict:
    code = main(["lr-find", str(config), *STEPS, "--out", str(out), *extra])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-2000:]
    found = json.loads(captured.out.strip().splitlines()[-1])
    assert math.isfinite(found["suggested_lr"]) and MIN_LR <= found["suggested_lr"] <= MAX_LR
    assert MIN_LR <= found["min_loss_lr"] <= MAX_LR
    assert Path(found["plot"]) == out / "lr_find.png"
    assert (out / "lr_find.png").read_bytes()[:4] == b"\x89PNG"
    return found


def write(tmp_path: Path, cfg: dict) -> Path:
    path = tmp_path / f"{cfg['name']}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.integration
def test_train_on_arrays(tmp_path, capsys):
    cfg = write(
        tmp_path,
        {
            "name": "arrays",
            "seed": 0,
            "data": {"name": "mnist_sample", "train_limit": 256, "test_limit": 64},
            "model": SMALL_CNN,
            "augment": {"name": "course"},
            "train": {"batch_size": 32},
        },
    )
    found = lr_find(cfg, tmp_path / "out", capsys=capsys)
    assert found["task"] == "train" and found["fits"].startswith("cnn_bn on mnist_sample (arrays)")


@pytest.mark.integration
def test_train_on_a_folder(folder, tmp_path, capsys):
    cfg = write(
        tmp_path,
        {
            "name": "folder",
            "seed": 0,
            "data": {"name": "image_folder", "path": str(folder), "image_size": [32, 32]},
            "model": SMALL_CNN,
            "augment": {"name": "dogscats"},
            "train": {"batch_size": 8},
        },
    )
    found = lr_find(cfg, tmp_path / "out", capsys=capsys)
    assert found["task"] == "train" and "(folder)" in found["fits"]


@pytest.mark.integration
def test_features_fits_the_head_on_the_cache_the_run_then_reuses(folder, tmp_path, capsys):
    """The issue's command: it used to fit the bare conv base against the labels (a traceback)."""
    cache = tmp_path / "cache"
    config = ROOT / "configs/dogscats/features_dense.yaml"
    overrides = [
        *folder_overrides(folder),
        "--set",
        f"task.cache_dir={cache}",
        "--set",
        "task.head={units: 32, depth: 1}",
        "--set",
        f"out={tmp_path / 'runs'}",
        "--set",
        "train.epochs=1",
    ]
    found = lr_find(config, tmp_path / "out", *overrides, capsys=capsys)
    assert found["task"] == "features" and found["fits"].startswith("the dense head on vgg16 features at block5_conv3")
    cached = {p: p.stat().st_mtime_ns for p in cache.glob("*.npy")}
    assert len(cached) == 1  # the training features, pass 0

    # the run finds them where lr-find left them: same cache key, nothing recomputed
    assert main(["run", str(config), *overrides]) == 0
    capsys.readouterr()
    metrics = json.loads(next((tmp_path / "runs").glob("*/metrics.json")).read_text())
    train_file = Path(metrics["feature_files"][0])
    assert train_file in cached and train_file.stat().st_mtime_ns == cached[train_file]


@pytest.mark.integration
def test_finetune_fits_the_new_top_frozen_as_its_first_phase(folder, tmp_path, capsys):
    config = ROOT / "configs/dogscats/fine_tune.yaml"  # freeze_epochs: 1, then unfreeze
    overrides = [*folder_overrides(folder), "--set", "train.batch_size=8"]
    found = lr_find(config, tmp_path / "out", *overrides, capsys=capsys)
    assert found["task"] == "finetune" and found["fits"].endswith("training head")


@pytest.mark.integration
def test_finetune_target_is_frozen_and_its_weights_come_back(folder, tmp_path):
    import keras

    from fastcourse.tasks.lr_find import lr_find_target
    from fastcourse.train.lr_find import lr_find_train

    cfg = load_checked(
        ROOT / "configs/dogscats/fine_tune.yaml",
        [
            "model.weights=none",
            f"data.path={folder}",
            "data.image_size=[32, 32]",
            "task.freeze_epochs=1",
            "task.frozen_up_to=block5",
            "train.batch_size=8",
        ],
    )
    keras.utils.set_random_seed(0)
    target = lr_find_target(cfg)
    trainable = {w.path.split("/")[0] for w in target.model.trainable_weights}
    assert trainable == {"block5_conv1", "block5_conv2", "block5_conv3", "fc1", "fc2", "predictions"}
    before = [w.copy() for w in target.model.get_weights()]
    lr_find_train(target.model, target.source, cfg.train, steps=8, min_lr=1e-5, max_lr=1e-1)
    for a, b in zip(before, target.model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert {w.path.split("/")[0] for w in target.model.trainable_weights} == trainable


@pytest.mark.integration
def test_unfreeze_only_finetune_is_given_in_schedule_units(tiny_config):
    """With only unfreeze_epochs the first call runs at half the schedule's rate with spread
    multipliers: the suggestion is a schedule rate (the swept range is the one asked for)."""
    import keras

    from fastcourse.tasks.lr_find import lr_find_for, lr_find_target

    cfg = load_checked(tiny_config(model=SMALL_CNN, task={"name": "finetune", "unfreeze_epochs": 1, "lr_mult": 10}))
    keras.utils.set_random_seed(0)
    target = lr_find_target(cfg)
    assert target.scale == 0.5 and target.lr_multipliers == {
        "block1": 0.1,
        "block2": pytest.approx(10**-0.5),
        "head": 1.0,
    }
    learnable = {w.path for w in target.model.weights if "moving" not in w.path}
    assert {w.path for w in target.model.trainable_weights} == learnable  # everything unfrozen
    found = lr_find_for(cfg, steps=8, min_lr=1e-5, max_lr=1e-1)
    assert found.finder.lrs[0] == pytest.approx(1e-5) and 1e-5 <= found.finder.suggestion <= 1e-1


def test_sklearn_features_without_pretraining_is_one_line(tmp_path, capsys):
    cfg = write(
        tmp_path,
        {
            "name": "sk",
            "data": {"name": "mnist_sample", "train_limit": 64, "test_limit": 32},
            "model": {"name": "lenet"},
            "task": {"name": "sklearn_features", "layer": "fc4"},
        },
    )
    assert main(["lr-find", str(cfg), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "task.pretrain: true" in err


@pytest.mark.parametrize(
    "args, says",
    [
        (["--min-lr", "1", "--max-lr", "0.1"], "0 < min-lr < max-lr"),
        (["--steps", "2"], "at least 5 steps"),
    ],
)
def test_a_bad_range_is_one_line(tmp_path, capsys, args, says):
    cfg = write(
        tmp_path,
        {"name": "bad", "data": {"name": "mnist_sample", "train_limit": 64, "test_limit": 32}, "model": SMALL_CNN},
    )
    assert main(["lr-find", str(cfg), *args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and says in err


def test_suggest_stays_in_the_swept_range():
    from fastcourse.train.lr_find import suggest

    lrs = np.geomspace(1e-4, 1e-1, 4)
    assert suggest(lrs, np.array([1.0, 2.0, 3.0, 4.0])) == pytest.approx(1e-4)  # fewer than 5 points
    lrs = np.geomspace(1e-6, 1.0, 40)
    losses = np.r_[np.full(20, 2.0), np.linspace(2.0, 0.5, 15), [0.6, 1.0, 3.0, np.inf, np.nan]]
    rate = suggest(lrs, losses)
    assert lrs[20] <= rate <= lrs[35] and math.isfinite(rate)


@pytest.mark.integration
def test_sklearn_features_with_pretraining_tests_the_network(tmp_path, capsys):
    cfg = write(
        tmp_path,
        {
            "name": "skp",
            "data": {"name": "mnist_sample", "train_limit": 128, "test_limit": 32},
            "model": {"name": "lenet"},
            "train": {"batch_size": 32},
            "task": {"name": "sklearn_features", "layer": "fc4", "pretrain": True},
        },
    )
    found = lr_find(cfg, tmp_path / "out", capsys=capsys)
    assert found["task"] == "sklearn_features" and found["fits"].endswith("before the cut")
