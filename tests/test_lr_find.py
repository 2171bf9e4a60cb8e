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
from fastcourse.config import load_config
from fastcourse.data.synthetic import make_image_folder

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


def lr_find(config: Path | str, out: Path, *extra: str, capsys, must_suggest: bool = False) -> dict:
    """The CLI's JSON. A 30-step sweep on a few dozen images may not fall far enough for a
    suggestion: then it says so in one line on stderr, and the JSON's suggestion is null."""
    code = main(["lr-find", str(config), *STEPS, "--out", str(out), *extra])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-2000:]
    found = json.loads(captured.out.strip().splitlines()[-1])
    if found["suggested_lr"] is None and not must_suggest:
        line = f"fastcourse: lr_find: {found['no_descent']}"
        assert "no real descent" in line and "\n" not in line and line in captured.err.splitlines()
    else:
        assert math.isfinite(found["suggested_lr"]) and MIN_LR <= found["suggested_lr"] <= MAX_LR
        assert found["suggested_lr"] == found["suggestions"][found["suggested_by"]]
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
    found = lr_find(cfg, tmp_path / "out", "--suggest", "steep", capsys=capsys, must_suggest=True)
    assert found["task"] == "train" and found["fits"].startswith("cnn_bn on mnist_sample (arrays)")
    assert found["suggested_by"] == "steep" and set(found["suggestions"]) == {"valley", "slide", "minimum", "steep"}


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

    cfg = load_config(
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

    cfg = load_config(tiny_config(model=SMALL_CNN, task={"name": "finetune", "unfreeze_epochs": 1, "lr_mult": 10}))
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
    assert found.finder.lrs[0] == pytest.approx(1e-5) and 1e-5 <= found.finder.min_loss_lr <= 1e-1
    # 8 steps leave 3 points after fastai's trim: every rule's pick, where there is one, in schedule units
    assert all(1e-6 <= v <= 1e-1 for v in found.finder.suggestions.values() if v is not None)


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


# fastai's four rules (fastai/callback/schedule.py) on small curves whose answers are worked out
# by hand below, at rates 10^-7, 10^-6, ... (one decade a point, so index i is rate 10^(i-7)).
def _decades(n):
    return 10.0 ** (np.arange(n) - 7.0)


def test_valley_by_hand():
    """The longest strictly falling run is index 2 (one of the three 3.0s) to index 10: 9 points.
    fastai puts its start one before that, at 10 - 9 = 1, and picks a third plus a sixth of the
    way in: 1 + int(9 / 3) + int(9 / 3 / 2) = 5."""
    from fastcourse.train.lr_find import valley

    losses = np.array([3, 3, 3, 2.9, 2.5, 2.0, 1.5, 1.0, 0.7, 0.5, 0.4, 0.6, 1.5])
    assert valley(_decades(13), losses) == pytest.approx(1e-2)  # index 5


def test_slide_by_hand():
    """Losses fall 0.01 a step, then turn up at the end. np.gradient: -0.01 at 0..15, then 0.025,
    0.18, 0.55, 0.8. The 15-step window slides left from (19, 4): its ends differ by more than
    0.005 at (19, 4), (18, 3), (17, 2), (16, 1) and by 0 at (15, 0), so the suggestion is the
    left end of the last differing window, index 1."""
    from fastcourse.train.lr_find import slide

    losses = np.r_[1.0 - 0.01 * np.arange(17), [0.9, 1.2, 2.0]]
    assert slide(_decades(20), losses) == pytest.approx(1e-6)  # index 1
    with pytest.raises(ValueError):
        slide(_decades(15), losses[:15])  # no room for the 15-step window


def test_minimum_and_steep_by_hand():
    """minimum: the lowest loss is at index 4 (1e-3), a tenth of it is 1e-4. steep: the drops
    per decade are -0.1, -0.3, -1.0, -0.2, +0.5; the steepest is the segment from index 2."""
    from fastcourse.train.lr_find import minimum, steep

    losses = np.array([2.0, 1.9, 1.6, 0.6, 0.4, 0.9])
    assert minimum(_decades(6), losses) == pytest.approx(1e-4)
    assert steep(_decades(6), losses) == pytest.approx(1e-5)  # index 2


def test_fastais_trim_and_the_default():
    """Like fastai's lr_find: the first tenth of the planned steps and the last 5 recorded points
    are dropped, and the curve is cut at its first non-finite loss, before any rule sees it."""
    from fastcourse.train.lr_find import result_of, trimmed

    lrs = np.geomspace(1e-7, 10, 40)
    losses = np.r_[np.full(4, 9.0), np.linspace(2.0, 1.0, 26), [0.9, 1.5, np.inf], np.full(7, np.nan)]
    lr, loss = trimmed(lrs, losses, 40)
    np.testing.assert_array_equal(lr, lrs[4:32])  # from 40 // 10; the inf at 32 ends it
    result = result_of(lrs, losses, 40)
    assert result.method == "valley" and result.suggestion == result.suggestions["valley"]
    assert set(result.suggestions) == {"valley", "slide", "minimum", "steep"}
    # the falling stretch is lrs[4..30] (27 points, fastai's start at 3): 3 + 9 + 4 = 16
    assert result.suggestion == pytest.approx(lrs[16])
    assert result.suggestions["minimum"] == pytest.approx(lrs[30] / 10)
    assert result.no_descent is None and "suggested" in result.message()


def test_no_real_descent_gives_no_suggestion():
    from fastcourse.train.lr_find import result_of, suggest

    rng = np.random.default_rng(0)
    lrs = np.geomspace(1e-7, 1e-2, 60)
    flat = 0.69 + 0.005 * rng.standard_normal(60)  # a flat, noisy line (lesson 3's stand-in)
    result = result_of(lrs, flat, 60)
    assert result.suggestion is None and result.suggestions == {}
    line = result.message()
    assert "\n" not in line and "no real descent" in line and "no rate is suggested" in line
    assert suggest(lrs, flat) is None
    assert result_of(lrs[:6], flat[:6], 6).suggestion is None  # nothing left after the trim


def test_an_unknown_rule_is_one_line():
    from fastcourse.errors import UsageError
    from fastcourse.train.lr_find import suggest

    with pytest.raises(UsageError, match="use one of valley, slide, minimum, steep"):
        suggest(np.geomspace(1e-5, 1, 20), np.linspace(2, 1, 20), "lowest")


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


@pytest.mark.integration
def test_the_sample_curve():
    """The bundled MNIST sample's real curve: it falls, then blows up; valley sits on the fall,
    below the rate of the lowest loss, and each rule is fastai's reading of the same curve."""
    from fastcourse.data.arrays import mnist_sample
    from fastcourse.data.sources import ArraySource
    from fastcourse.models.registry import MODELS
    from fastcourse.train.lr_find import lr_find, trimmed
    from fastcourse.train.trainer import seed_everything

    data = mnist_sample()
    seed_everything(0)
    model = MODELS.get("cnn")(input_shape=(28, 28, 1), num_classes=10, filters=[8, 16], dense=32)
    result = lr_find(model, ArraySource(data.x_train[:1024], data.y_train[:1024], 10), batch_size=32, steps=100)
    lr, loss = trimmed(result.lrs, result.losses, 100)
    assert result.no_descent is None and result.suggestion == result.suggestions["valley"]
    at = int(np.argmin(np.abs(np.log(lr / result.suggestion))))
    assert lr[0] < result.suggestion < result.min_loss_lr and loss[at] < loss[0]  # on the fall
    assert result.suggestions["minimum"] == pytest.approx(lr[np.argmin(loss)] / 10)
    assert lr[0] <= result.suggestions["steep"] <= result.min_loss_lr
    print({k: f"{v:.2e}" for k, v in result.suggestions.items()}, f"min loss at {result.min_loss_lr:.2e}")
