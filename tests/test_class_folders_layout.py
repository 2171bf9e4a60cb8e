"""The class_folders layout: root/<class>/ images with no train/, the layout of Keras'
`image_dataset_from_directory`, torchvision's `ImageFolder` and fastai's `from_folder(valid_pct=)`.

Detected automatically (read as Keras reads it), held out stratified and seeded (as scikit-learn
splits), written out by `fastcourse split`, named by `fastcourse check`, and run through the
Learner, `fastcourse run`, predict, views, lr-find, the features cache and an ensemble. A folder
with both train/ and class folders at its root is refused in one line naming both readings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from fastcourse.data import DATASETS
from fastcourse.data.folders import open_folder
from fastcourse.errors import DataError, UsageError

ROOT = Path(__file__).resolve().parents[1]


def write_photos(root: Path, per_class: dict[str, int] | None = None, size: int = 40, seed: int = 0) -> Path:
    """root/cat/001.jpg, 002.png, ... and root/dog/...: each class its own shape (learnable), JPEG
    and PNG alternating, written by Pillow."""
    from fastcourse.data.synthetic import draw_shape

    rng = np.random.default_rng(seed)
    for shape, (cls, n) in zip(("circle", "square", "triangle"), (per_class or {"cat": 24, "dog": 24}).items()):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            draw_shape(shape, size, rng).save(root / cls / f"{i + 1:03d}.{'jpg' if i % 2 == 0 else 'png'}")
    return root


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return write_photos(tmp_path_factory.mktemp("class-folders") / "photos")


def _folder_of(path: str) -> str:
    return Path(path).parent.name


# --- detection and reading ---------------------------------------------------------------


def test_detected_and_read_as_keras_reads_it(photos):
    import keras

    data = open_folder(photos)
    assert data.layout == "class_folders" and data.class_names == ["cat", "dog"] and list(data.splits) == ["train"]
    train = data.split("train")
    ours = dict(zip(train.files, train.labels.tolist()))
    ds = keras.utils.image_dataset_from_directory(photos, shuffle=False, image_size=(8, 8), batch_size=None)
    labels = [int(y) for _, y in ds.as_numpy_iterator()]
    assert ds.class_names == data.class_names
    assert ours == {str(Path(f).absolute()): y for f, y in zip(ds.file_paths, labels)}
    assert len(ours) == 48 and all(data.class_names[y] == _folder_of(f) for f, y in ours.items())


def test_a_folder_with_train_and_root_class_folders_is_refused_naming_both(tmp_path):
    root = write_photos(tmp_path / "photos", {"cat": 2, "dog": 2})
    write_photos(root / "train", {"cat": 2, "dog": 2})
    for open_it in (lambda: open_folder(root), lambda: DATASETS.get("image_folder")(str(root))):
        with pytest.raises(DataError) as err:
            open_it()
        message = str(err.value)
        assert "\n" not in message
        assert "train/" in message and "dogscats" in message  # reading 1: train/<class>/
        assert "cat/, dog/" in message and "class_folders" in message  # reading 2: the root's class folders


def test_the_other_layouts_are_still_detected(tmp_path):
    from fastcourse.data.folder_files import detect_layout
    from fastcourse.data.synthetic import make_image_folder

    for layout in ("dogscats", "statefarm", "csv"):
        root = make_image_folder(tmp_path / layout, layout, per_class=2, valid_per_class=1, test=2, size=16)
        assert detect_layout(root) == layout
    # fast.ai's dogscats archive: test1/ holds images directly beside train/; it is a split, not a class
    flat = write_photos(tmp_path / "flat", {"x": 2})
    (flat / "x").rename(tmp_path / "dogscats" / "test1")
    assert detect_layout(tmp_path / "dogscats") == "dogscats"
    with pytest.raises(DataError, match="<class>/ folders of images"):
        detect_layout(tmp_path / "dogscats" / "test1")  # images directly, no class folders: no layout


def test_one_class_folder_and_an_empty_one_are_one_line_each(tmp_path):
    one = write_photos(tmp_path / "one", {"cat": 3})
    with pytest.raises(DataError, match=r"found 1 class folder\(s\); need at least 2"):
        open_folder(one)
    empty = write_photos(tmp_path / "empty", {"cat": 3, "dog": 3})
    (empty / "bird").mkdir()
    with pytest.raises(DataError, match="bird: no images in this class folder"):
        open_folder(empty)


# --- held out, split, checked ----------------------------------------------------------------


def test_valid_is_held_out_stratified_and_seeded_as_scikit_learn_splits(tmp_path):
    from sklearn.model_selection import train_test_split

    root = write_photos(tmp_path / "photos", {"cat": 24, "dog": 12}, size=16)

    def held(seed):
        return DATASETS.get("image_folder")(str(root), image_size=[16, 16], valid_fraction=0.25, split_seed=seed)

    data = held(3)
    train, valid = data.split("train"), data.split("valid")
    assert np.bincount(valid.labels).tolist() == [6, 3] and np.bincount(train.labels).tolist() == [18, 9]
    assert all(data.class_names[y] == _folder_of(f) for f, y in zip(valid.files, valid.labels))
    assert not set(train.files) & set(valid.files)
    every = open_folder(root).split("train")
    _, expected = train_test_split(np.arange(36), test_size=9, random_state=3, stratify=every.labels)
    assert valid.files == [every.files[i] for i in sorted(expected)]
    assert held(3).split("valid").files == valid.files  # the same seed, the same images
    assert held(4).split("valid").files != valid.files
    assert data.held_out == "0.25 of train held out, stratified, seed 3"


def test_fastcourse_split_writes_the_dogscats_layout(photos, tmp_path, capsys):
    from fastcourse.cli import main

    out = tmp_path / "photos_split"
    assert main(["split", str(photos), "--out", str(out), "--method", "stratified", "--valid", "0.25"]) == 0
    assert "stratified split (seed 0, valid 0.25, symlink)" in capsys.readouterr().out
    data = open_folder(out)
    assert data.layout == "dogscats" and data.class_names == ["cat", "dog"]
    assert np.bincount(data.split("valid").labels).tolist() == [6, 6]
    assert np.bincount(data.split("train").labels).tolist() == [18, 18]
    link = Path(data.split("valid").files[0])
    assert link.parent.parent == out / "valid" and link.resolve().parent.parent == photos.resolve()
    assert open_folder(photos).layout == "class_folders"  # the originals are untouched
    assert main(["split", str(photos), "--mode", "move"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mode=move" in err[0] and "copy" in err[0]
    with pytest.raises(UsageError, match="mode=move"):
        from fastcourse.data.split import make_split

        make_split(photos, mode="move")


def test_check_prints_the_layout_and_the_images_per_split(photos, tmp_path, capsys):
    from fastcourse.cli import main
    from fastcourse.data.synthetic import make_image_folder

    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {"data": {"name": "image_folder", "path": str(photos), "image_size": [32, 32], "valid_fraction": 0.2}}
        )
    )
    assert main(["check", str(config)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == f"{config}: ok"
    assert f"data: {photos}: layout class_folders (detected), 2 classes; images train 38, valid 10" in out[0]
    assert "(valid: 0.2 of train held out, stratified, seed 0)" in out[0]
    # what `run` refuses, check refuses: a class_folders folder has no valid split of its own
    assert main(["check", str(config), "--set", "data.valid_fraction=null"]) == 2
    assert "data.valid_fraction" in capsys.readouterr().err
    dogscats = make_image_folder(tmp_path / "shapes", "dogscats", per_class=4, valid_per_class=2, test=3, size=16)
    assert main(["check", str(config), "--set", f"data.path={dogscats}", "--set", "data.valid_fraction=null"]) == 0
    assert "layout dogscats (detected), 2 classes; images train 8, valid 4, test 3" in capsys.readouterr().out
    # arrays: no data line (they are not loaded by check)
    config.write_text(yaml.safe_dump({"data": {"name": "mnist_sample"}}))
    assert main(["check", str(config)]) == 0
    assert capsys.readouterr().out.splitlines() == [f"{config}: ok"]


# --- through every front door ------------------------------------------------------------------


@pytest.mark.integration  # trains a model
def test_the_learner_fits_and_predicts_on_class_folders(photos, tmp_path):
    import fastcourse

    learn = fastcourse.Learner.from_folder(
        photos, "cnn", image_size=32, valid_pct=0.2, batch_size=16, verbose=0, out=tmp_path, precision="float32"
    )
    assert "38 train / 10 valid, 2 classes" in repr(learn)
    learn.fit_one_cycle(1, lr_max=3e-3)
    probs, targets = learn.get_preds()
    files = learn.inputs.eval.files
    assert len(files) == 10 and np.bincount(targets).tolist() == [5, 5]
    assert all(learn.inputs.class_names[t] == _folder_of(f) for f, t in zip(files, targets))
    label, index, p = learn.predict(files[0])  # one file as the evaluation saw it
    assert label == ["cat", "dog"][index] and np.isclose(p.sum(), 1, atol=1e-5)
    np.testing.assert_allclose(p, probs[0], atol=1e-5)


@pytest.mark.integration  # a CLI run in a subprocess
def test_cli_run_then_predict_views_and_lr_find(photos, tmp_path, capsys):
    """The issue's command line: a shipped config pointed at the photos folder."""
    from fastcourse.cli import main

    overrides = [
        "data.name=image_folder",
        f"data.path={photos}",
        "data.valid_fraction=0.2",
        "data.image_size=[32, 32]",
        "train.schedule.phases=[[1, 1.0e-3]]",
        "train.batch_size=16",
        "train.precision=float32",
    ]
    sets = [a for o in overrides for a in ("--set", o)]
    fastcourse = str(Path(sys.executable).with_name("fastcourse"))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run(
        [fastcourse, "run", "configs/mnist_sample/cnn.yaml", *sets, "--out", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = (tmp_path / "runs").iterdir()
    m = json.loads((run / "metrics.json").read_text())
    assert (m["eval_split"], m["eval_images"], m["train_images"]) == ("valid", 10, 38)

    assert main(["predict", str(run), str(photos), "--out", str(tmp_path / "pred")]) == 0
    (table,) = (tmp_path / "pred").glob("predictions_*.csv")
    import pandas as pd

    pred = pd.read_csv(table)
    assert len(pred) == 48 and list(pred.columns[-2:]) == ["cat", "dog"]
    assert np.allclose(pred[["cat", "dog"]].sum(axis=1), 1, atol=1e-4)
    assert main(["views", str(run), "--out", str(tmp_path / "views"), "-n", "2"]) == 0
    views = json.loads(next((tmp_path / "views").rglob("views.json")).read_text())
    assert views  # the grids of the run's own held-out split
    capsys.readouterr()
    config = tmp_path / "photos.yaml"
    config.write_text((ROOT / "configs/mnist_sample/cnn.yaml").read_text())
    assert main(["lr-find", str(config), *sets, "--steps", "8", "--out", str(tmp_path / "lr")]) == 0
    found = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert found["min_loss_lr"] > 0 and "photos (folder)" in found["fits"], found
    assert (tmp_path / "lr" / "lr_find.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.integration  # two features runs
def test_the_features_cache_and_an_ensemble_of_heads_on_class_folders(photos, tmp_path):
    """A features run with two heads (an ensemble) writes the cache once (train and the held-out
    valid); the same config run again reuses every file and gets the same figures."""
    import pandas as pd

    from fastcourse.config import load_config
    from fastcourse.run import ensemble
    from fastcourse.tasks.runner import run_experiment

    cache = tmp_path / "cache"

    def run(out: str) -> Path:
        cfg = {
            "name": "photos-features",
            "seed": 0,
            "out": str(tmp_path / out),
            "task": {"name": "features", "cut": "conv2", "cache_dir": str(cache), "head": {"units": 8, "depth": 1}},
            "data": {"name": "image_folder", "path": str(photos), "image_size": [32, 32], "valid_fraction": 0.2},
            "model": {"name": "lenet"},
            "ensemble": {"members": 2},
            "train": {"batch_size": 8, "epochs": 1, "verbose": 0, "precision": "float32"},
        }
        return run_experiment(load_config(cfg))

    first = run("runs1")
    stamps = {p.name: p.stat().st_mtime_ns for p in cache.glob("*.npy")}
    assert len(stamps) == 2  # train and valid, shared by both heads
    held = DATASETS.get("image_folder")(str(photos), image_size=[32, 32], valid_fraction=0.2).split("valid").files
    members = [pd.read_csv(ensemble.member_dir(first, i) / "eval_predictions.csv")["file"].tolist() for i in (0, 1)]
    assert members[0] == members[1] == held
    second = run("runs2")
    assert {p.name: p.stat().st_mtime_ns for p in cache.glob("*.npy")} == stamps  # reused, not recomputed
    m1, m2 = (json.loads((r / "metrics.json").read_text()) for r in (first, second))
    assert m1["eval_images"] == m2["eval_images"] == 10 and m1["eval_accuracy"] == m2["eval_accuracy"]


def test_the_docs_layouts_table_is_the_detection_order():
    """docs/configs.md's table lists the layouts in the order detect_layout tries them (LAYOUTS)."""
    from fastcourse.data.folder_files import LAYOUTS

    text = (ROOT / "docs" / "configs.md").read_text()
    table = text[text.index("| layout | how it is detected | example tree |") :].split("\n\n")[0]
    rows = [line.split("|")[1].strip().strip("`") for line in table.splitlines()[2:]]
    assert rows == list(LAYOUTS)
