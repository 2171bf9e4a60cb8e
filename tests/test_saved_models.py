"""Every .keras file a run writes loads with keras.saving.load_model(path, safe_mode=True): in a fresh
Python that imported only keras when it holds only Keras' own classes, and after
`import fastcourse.saving` otherwise (the modules that define fastcourse's Keras classes register
them with keras.saving.register_keras_serializable; fastcourse.saving imports them all)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from fastcourse.config import load_config
from fastcourse.data.synthetic import make_image_folder
from fastcourse.tasks.runner import run_experiment

pytestmark = pytest.mark.integration  # every test here starts a process or runs for seconds

ROOT = Path(__file__).resolve().parents[1]


def fastcourse_classes(path: Path) -> bool:
    with zipfile.ZipFile(path) as z:
        return '"fastcourse>' in z.read("config.json").decode()


def load_in_fresh_python(path: Path, first: str) -> subprocess.CompletedProcess:
    code = (
        f"{first}\nimport keras\nm = keras.saving.load_model({str(path)!r}, safe_mode=True)\n"
        "print('outputs', m.output_shape)"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3", "HOME": str(Path.home())},
    )


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("saved")
    folder = make_image_folder(tmp / "shapes", "dogscats", classes=2, per_class=6, valid_per_class=3, test=0, size=32)
    tiny = {"seed": 0, "out": str(tmp / "runs"), "train": {"batch_size": 8, "epochs": 1, "verbose": 0}}
    arrays = {"name": "mnist_sample", "train_limit": 64, "test_limit": 32}
    images = {"name": "image_folder", "path": str(folder), "image_size": [32, 32]}
    configs = {
        "train": {"name": "train", "data": arrays, "model": {"name": "cnn_bn", "filters": [4, 8], "dense": 8}},
        "ensemble": {"name": "ensemble", "data": arrays, "model": {"name": "linear"}, "ensemble": {"members": 2}},
        "features": {
            "name": "features",
            "data": images,
            "model": {"name": "vgg16", "include_top": False},
            "task": {"name": "features", "cache_dir": str(tmp / "cache"), "head": {"units": 8}, "finetune_epochs": 1},
        },
        "finetune": {
            "name": "finetune",
            "data": images,
            "model": {"name": "vgg16", "dropout": 0.0},
            "task": {"name": "finetune"},
        },
        "sklearn": {
            "name": "sklearn",
            "data": arrays,
            "model": {"name": "lenet"},
            "task": {"name": "sklearn_features", "layer": "fc4"},
        },
    }
    out = {}
    for kind, cfg in configs.items():
        run = run_experiment(load_config({**tiny, **cfg}))
        out[kind] = sorted(run.rglob("*.keras"))
    return out


def test_every_saved_model_loads_in_safe_mode(saved_models):
    kinds = {"keras only": 0, "fastcourse classes": 0}
    for task, paths in saved_models.items():
        assert paths, f"{task}: no .keras file written"
        for path in paths:
            if fastcourse_classes(path):
                kinds["fastcourse classes"] += 1
                plain = load_in_fresh_python(path, "")
                assert plain.returncode != 0, f"{path} names fastcourse classes yet loads without fastcourse?"
                after = load_in_fresh_python(path, "import fastcourse.saving")
            else:
                kinds["keras only"] += 1
                after = load_in_fresh_python(path, "")
            assert after.returncode == 0 and "outputs" in after.stdout, f"{task}: {path}\n{after.stderr[-2000:]}"
    assert all(kinds.values()), kinds  # both paths were exercised


def test_fastcourse_saving_imported_after_keras_registers_too(saved_models):
    path = next(p for paths in saved_models.values() for p in paths if fastcourse_classes(p))
    proc = load_in_fresh_python(path, "import keras\nimport fastcourse.saving")
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_fastcourse_loader_needs_no_import(saved_models):
    """fastcourse's own loader passes its classes to Keras as custom_objects: nothing to import first."""
    path = next(p for paths in saved_models.values() for p in paths if fastcourse_classes(p))
    code = (
        "import keras\nfrom fastcourse.run.artifacts import load_model\n"
        f"print('outputs', load_model({str(path)!r}).output_shape)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0 and "outputs" in proc.stdout, proc.stderr[-2000:]


def test_import_fastcourse_alone_imports_no_tensorflow():
    proc = subprocess.run(
        [sys.executable, "-c", "import sys, fastcourse; print('tensorflow' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.stdout.strip() == "False", proc.stderr
