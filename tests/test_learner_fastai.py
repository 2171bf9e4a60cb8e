"""The Learner with fastai's names: from_folder / from_arrays / from_dataset, a folder path as
data, fit_one_cycle(lr_max=), get_preds, predict(one image), show_batch, lr_find inline,
callbacks= and metrics=, save() that never overwrites, load, export and load_learner."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

import fastcourse
from fastcourse.data.synthetic import make_image_folder
from fastcourse.errors import UsageError
from fastcourse.learner import show

QUIET = {"verbose": 0, "batch_size": 8}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Two classes of generated shapes in train/ only (no valid/: valid_pct holds some out)."""
    root = tmp_path_factory.mktemp("shapes") / "photos"
    make_image_folder(root, layout="dogscats", classes=2, per_class=10, valid_per_class=0, test=3, size=32, seed=0)
    return root


@pytest.fixture(scope="module")
def folder_learner(folder, tmp_path_factory):
    learn = fastcourse.Learner.from_folder(
        folder, "cnn", image_size=24, valid_pct=0.25, seed=1, out=tmp_path_factory.mktemp("runs"), **QUIET
    )
    learn.fit_one_cycle(1, lr_max=3e-3)
    return learn


def _digits(n, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.integers(0, 60, (n, 16, 16)).astype(np.uint8)
    for i, label in enumerate(y):  # a bright band per class: learnable in one epoch
        x[i, 5 * label : 5 * label + 5] += 150
    return x, y


@pytest.fixture(scope="module")
def array_learner(tmp_path_factory):
    (xt, yt), (xv, yv) = _digits(96, 0), _digits(24, 1)
    learn = fastcourse.Learner.from_arrays(
        xt, yt, xv, yv, "linear", class_names=["top", "middle", "bottom"], out=tmp_path_factory.mktemp("runs"), **QUIET
    )
    learn.fit(1, lr=1e-2)
    return learn


def test_from_folder_holds_out_valid_pct_and_a_path_string_is_data(folder, folder_learner, tmp_path):
    inputs = folder_learner.inputs
    assert inputs.kind == "folder" and inputs.eval_split == "valid" and inputs.input_shape == (24, 24, 3)
    assert len(inputs.train) == 15 and len(inputs.eval) == 5  # 25% of 20, stratified
    assert not set(inputs.train.files) & set(inputs.eval.files)
    # the config it records names the folder, so `fastcourse run` can repeat it
    assert folder_learner.config.data.name == "image_folder"
    assert folder_learner.config.data.args["path"] == str(folder)
    # a plain string works where a dataset does
    plain = fastcourse.Learner("linear", str(folder), image_size=16, valid_pct=0.5, out=tmp_path, **QUIET)
    assert len(plain.inputs.eval) == 10 and plain.inputs.input_shape == (16, 16, 3)
    with pytest.raises(UsageError, match="neither a registered dataset"):
        fastcourse.Learner("linear", str(tmp_path / "nowhere"))


def test_from_dataset_and_from_arrays(array_learner):
    learn = fastcourse.Learner.from_dataset("mnist_sample", "linear", train_limit=64, test_limit=32, **QUIET)
    assert learn.inputs.eval_split == "test" and learn.inputs.num_classes == 10
    assert array_learner.inputs.class_names == ["top", "middle", "bottom"]
    assert array_learner.inputs.input_shape == (16, 16, 1)
    with pytest.raises(UsageError, match="from_arrays.*x_train"):
        fastcourse.Learner.from_arrays(np.zeros((4, 2, 2)), [0, 1, 0, 1], np.zeros((2, 16, 16)), [0, 1], "linear")


def test_fit_one_cycle_takes_lr_max_and_max_lr(array_learner):
    learn = fastcourse.Learner.from_arrays(*_digits(32, 2), *_digits(8, 3), "linear", **QUIET)
    learn.fit_one_cycle(1, lr_max=5e-3)
    assert learn._last_schedule == ("one_cycle", {"max_lr": 5e-3})
    learn.fit_one_cycle(1, max_lr=4e-3)
    assert learn._last_schedule == ("one_cycle", {"max_lr": 4e-3})
    assert learn.config.train.schedule.name == "one_cycle"
    with pytest.raises(UsageError, match="same setting"):
        learn.fit_one_cycle(1, lr_max=1e-3, max_lr=2e-3)


def test_get_preds_is_the_split_and_predict_is_one_image(array_learner, folder_learner):
    probs, targets = array_learner.get_preds()
    assert probs.shape == (24, 3) and np.array_equal(targets, _digits(24, 1)[1])
    assert array_learner.evaluate()["accuracy"] == pytest.approx(float((probs.argmax(1) == targets).mean()))
    assert array_learner.get_preds("train")[0].shape == (96, 3)
    x = _digits(24, 1)[0]
    label, index, p = array_learner.predict(x[5])
    assert p.shape == (3,) and index == int(probs[5].argmax()) and label == ["top", "middle", "bottom"][index]
    np.testing.assert_allclose(p, probs[5], atol=1e-6)
    with pytest.raises(UsageError, match="get_preds"):
        array_learner.predict(None)
    assert array_learner.predict(np.zeros((8, 8)))[2].shape == (3,)  # resized to 16x16, as tests/test_learner_input.py
    with pytest.raises(UsageError, match="shape"):
        array_learner.predict(np.zeros((1, 8, 8, 2)))  # two channels: neither grey nor RGB
    # an image file: the same probabilities as its row in the valid split
    vprobs, vtargets = folder_learner.get_preds("valid")
    file = folder_learner.inputs.eval.files[2]
    label, index, p = folder_learner.predict(file)
    np.testing.assert_allclose(p, vprobs[2], atol=1e-6)
    assert label == folder_learner.inputs.class_names[index]
    with pytest.raises(UsageError, match="its 'test' split"):
        array_learner.get_preds("valid")  # arrays evaluate on "test"


def test_callbacks_and_metrics_reach_keras():
    seen = []

    class Count(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(sorted(logs))

    learn = fastcourse.Learner.from_arrays(
        *_digits(32, 4),
        *_digits(8, 5),
        "linear",
        callbacks=[Count()],
        metrics=[keras.metrics.TopKCategoricalAccuracy(k=2, name="top2")],
        **QUIET,
    )
    result = learn.fit(1, callbacks=[Count()])
    assert len(seen) == 2  # the learner's callback and this call's
    assert "top2" in result.history and "val_top2" in result.history


def test_show_batch_and_lr_find_draw_inline(array_learner, folder_learner, monkeypatch, tmp_path, capsys):
    import IPython.display

    shown = []
    monkeypatch.setattr(show, "in_ipython", lambda: True)
    monkeypatch.setattr(IPython.display, "display", shown.append)
    fig = folder_learner.show_batch(4, path=tmp_path / "batch.png")
    assert len(fig.axes) >= 4 and (tmp_path / "batch.png").stat().st_size > 0
    titles = {ax.get_title() for ax in fig.axes} - {""}
    assert titles <= set(folder_learner.inputs.class_names) and titles
    finder = array_learner.lr_find(steps=8)  # 3 points after fastai's trim, falling less than 5%
    assert finder.suggestion is None and len(shown) == 2
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"fastcourse: {finder.message()}"
    assert all(isinstance(s, IPython.display.Image) and s.data[:4] == b"\x89PNG" for s in shown)
    array_learner.lr_find(steps=8, plot=tmp_path / "lr.png")
    assert (tmp_path / "lr.png").stat().st_size > 0


@pytest.mark.integration
def test_save_never_overwrites_and_load(array_learner, tmp_path):
    first = array_learner.save()
    second = array_learner.save()
    assert first != second and first.parent == second.parent
    assert (first / "model.keras").is_file() and (second / "model.keras").is_file()
    target = array_learner.save(tmp_path / "run")
    with pytest.raises(UsageError, match="already holds a saved run.*overwrite=True"):
        array_learner.save(tmp_path / "run")
    assert array_learner.save(tmp_path / "run", overwrite=True) == target
    want = array_learner.get_preds()[0]
    other = fastcourse.Learner.from_arrays(*_digits(96, 0), *_digits(24, 1), "linear", seed=9, **QUIET)
    assert not np.allclose(other.get_preds()[0], want, atol=1e-4)
    other.load(target)
    np.testing.assert_allclose(other.get_preds()[0], want, atol=1e-6)
    wrong = fastcourse.Learner.from_dataset("mnist_sample", "linear", train_limit=8, test_limit=8, **QUIET)
    with pytest.raises(UsageError, match="3 outputs"):
        wrong.load(target)


def test_export_and_load_learner_on_arrays(array_learner, tmp_path):
    path = array_learner.export(tmp_path / "exported")
    meta = json.loads((path / "learner.json").read_text())
    assert meta["class_names"] == ["top", "middle", "bottom"] and meta["input_shape"] == [16, 16, 1]
    assert "pickle" not in " ".join(p.name for p in path.iterdir())
    keras.saving.load_model(path / "model.keras", safe_mode=True)  # loads in plain Keras' safe mode
    loaded = fastcourse.load_learner(path)
    x = _digits(24, 1)[0][:8]
    np.testing.assert_allclose(loaded.get_preds(x)[0], array_learner.get_preds(x)[0], atol=1e-6)
    assert loaded.predict(x[3])[:2] == array_learner.predict(x[3])[:2]
    assert loaded.inputs.class_names == ["top", "middle", "bottom"]
    with pytest.raises(UsageError, match="already holds files"):
        array_learner.export(path)
    with pytest.raises(UsageError, match="no data to train"):
        loaded.fit(1)
    with pytest.raises(UsageError, match="no learner.json"):
        fastcourse.load_learner(tmp_path)


def test_export_and_load_learner_on_a_folder(folder, folder_learner, tmp_path):
    path = folder_learner.export(tmp_path / "exported")
    meta = json.loads((path / "learner.json").read_text())
    assert meta["image_size"] == [24, 24] and meta["preprocessing"]["resize"] == {
        "size": [24, 24],
        "method": "bilinear",
    }
    loaded = fastcourse.load_learner(path)
    assert loaded.inputs.class_names == folder_learner.inputs.class_names
    files = sorted(str(p) for p in (folder / "train").rglob("*.*"))[:8]
    assert len(files) == 8
    got = np.stack([loaded.predict(f)[2] for f in files])
    want = np.stack([folder_learner.predict(f)[2] for f in files])
    np.testing.assert_allclose(got, want, atol=1e-6)
    test = loaded.predict(folder / "test")  # a folder: every image in it, with its file name
    assert len(test.filenames) == 3 and test.probs.shape == (3, 2)
