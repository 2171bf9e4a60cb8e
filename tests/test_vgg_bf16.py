"""VGG16 in bfloat16: the features and finetune tasks under `train.precision: mixed_bfloat16` compute
every phase in bf16 (feature extraction, the head on cached features, each fine-tune phase, the
final evaluation), keep float32 softmax tops, and reach the same valid accuracy as float32 (within
0.01: one image of the 100 valid ones) on a generated image folder."""

from __future__ import annotations

import json
import time

import keras
import numpy as np
import pytest

from fastcourse.config import load_config
from fastcourse.data.synthetic import draw_shape
from fastcourse.tasks.runner import run_experiment

# A CPU without native bf16 emulates it (slower, same figures): the run warns, the test still holds.
pytestmark = pytest.mark.filterwarnings("ignore:mixed_bfloat16 on a CPU")

SIZE = 48  # VGG16's smallest comfortable input: 1x1x512 after block5's pool
SHAPES = ("ring", "square")  # an outline against a filled shape: random VGG16 features separate them
VALID_PER_CLASS = 50  # 100 valid images: 0.01 is one image


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A generated dogscats-layout folder, 40 train and 50 valid images per class, 48 px."""
    root = tmp_path_factory.mktemp("bf16") / "shapes"
    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("valid", VALID_PER_CLASS)):
        for kind in SHAPES:
            (root / split / kind).mkdir(parents=True)
            for i in range(n):
                draw_shape(kind, SIZE, rng).save(root / split / kind / f"{kind}{i:03d}.png")
    return root


def _run(folder, tmp_path, precision: str, task: dict, model: dict, **train) -> tuple[dict, keras.Model, float]:
    cfg = load_config(
        {
            "name": f"{task['name']}-{precision}",
            "seed": 0,
            "task": task,
            "out": str(tmp_path / "runs"),
            "data": {"name": "image_folder", "path": str(folder), "image_size": [SIZE, SIZE]},
            "model": model,
            "augment": {"name": "none"},
            "train": {
                "batch_size": 16,
                "epochs": 3,
                "verbose": 0,
                "precision": precision,
                "schedule": {"name": "constant", "lr": 1e-3},
                **train,
            },
        }
    )
    start = time.perf_counter()
    run = run_experiment(cfg)
    seconds = time.perf_counter() - start
    metrics = json.loads((run / "metrics.json").read_text())
    return metrics, keras.saving.load_model(run / "model.keras", safe_mode=True), seconds


def _layers(model: keras.Model):
    for layer in model.layers:
        yield from _layers(layer) if isinstance(layer, keras.Model) else (layer,)


def _check_policy(model: keras.Model, precision: str) -> None:
    """Every conv and hidden dense layer computes in the run's policy; softmax tops in float32."""
    convs = [layer for layer in _layers(model) if isinstance(layer, keras.layers.Conv2D)]
    dense = [layer for layer in _layers(model) if isinstance(layer, keras.layers.Dense)]
    tops = [layer for layer in dense if layer.get_config()["activation"] == "softmax"]
    assert len(convs) == 13 and len(tops) == 1, (len(convs), [t.name for t in tops])
    for layer in [*convs, *dense]:
        expected = "float32" if layer in tops else precision
        assert layer.dtype_policy.name == expected, (layer.name, layer.dtype_policy.name)
    assert model.outputs[0].dtype == "float32"


def _compare(pair: dict, label: str) -> None:
    f32, bf16 = pair["float32"], pair["mixed_bfloat16"]
    print(
        f"{label}: valid accuracy float32 {f32[0]['eval_accuracy']:.4f} ({f32[2]:.1f} s), "
        f"mixed_bfloat16 {bf16[0]['eval_accuracy']:.4f} ({bf16[2]:.1f} s)"
    )
    for precision, (metrics, model, _) in pair.items():
        assert metrics["eval_split"] == "valid" and metrics["eval_images"] == 2 * VALID_PER_CLASS
        assert metrics["eval_accuracy"] >= 0.9, (precision, metrics["eval_accuracy"])  # chance is 0.5
        _check_policy(model, precision)
        assert metrics["precision"] == precision  # metrics.json records the policy the run computed under
    assert abs(bf16[0]["eval_accuracy"] - f32[0]["eval_accuracy"]) <= 0.01 + 1e-9


def _features(folder, tmp_path, **task) -> dict:
    cache = tmp_path / "cache"  # shared: the bf16 run must not reuse the float32 features
    pair = {
        p: _run(
            folder,
            tmp_path,
            p,
            {"name": "features", "cache_dir": str(cache), "head": {"units": 64, "depth": 1, "batchnorm": True}, **task},
            {"name": "vgg16", "include_top": False},
            epochs=5,
        )
        for p in ("float32", "mixed_bfloat16")
    }
    for metrics, _, _ in pair.values():  # the head back on the convs predicts what it did on the cache
        assert metrics["attach_max_abs_diff"] < 1e-5
    files = {p: set(m["feature_files"]) for p, (m, _, _) in pair.items()}
    assert not files["float32"] & files["mixed_bfloat16"], files
    for path in files["mixed_bfloat16"]:
        meta = json.loads(open(path.removesuffix(".npy") + ".json").read())
        assert meta["compute"] == "mixed_bfloat16" and meta["dtype"] == "float32", meta
    return pair


@pytest.mark.slow  # two VGG16 runs, ~16 s
@pytest.mark.integration  # two whole runs in this process: seconds each
def test_features_task_in_bf16_matches_float32(folder, tmp_path):
    """Features extracted, the head trained and the run evaluated in bf16: the float32 accuracy."""
    _compare(_features(folder, tmp_path), "features")


@pytest.mark.slow
def test_features_task_fine_tune_phase_in_bf16_matches_float32(folder, tmp_path):
    """The features task's last phase (the head back on the frozen convs, trained on images)."""
    pair = _features(folder, tmp_path, finetune_epochs=1)
    for metrics, _, _ in pair.values():
        assert metrics["epochs"] == 6
    _compare(pair, "features + fine-tune phase")


@pytest.mark.slow
def test_finetune_task_phases_in_bf16_match_float32(folder, tmp_path):
    """fastai's fine_tune: the body frozen, then every block, both in bf16. vgg16_bn: VGG16 whose
    fc1/fc2 are batch-normalised (the course's vgg16bn), so the top trains on random conv features
    in one epoch (plain VGG16 with weights none stayed at chance for two)."""
    pair = {
        p: _run(
            folder,
            tmp_path,
            p,
            {"name": "finetune", "freeze_epochs": 1, "unfreeze_epochs": 1},
            {"name": "vgg16_bn", "dropout": 0.0},
            schedule={"name": "one_cycle", "max_lr": 3e-4},  # 1e-3 trained chaotically: 0.96 vs 0.99
        )
        for p in ("float32", "mixed_bfloat16")
    }
    for metrics, _, _ in pair.values():
        assert metrics["epochs"] == 2 and metrics["freeze_epochs"] == 1 and metrics["unfreeze_epochs"] == 1
    _compare(pair, "finetune")
