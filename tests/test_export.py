"""`fastcourse export`: a run's model as a SavedModel and as TFLite, preprocessing inside, reloaded
and compared with the run's Keras model on 8 images, for an arrays run and a folder run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fastcourse.cli import main
from fastcourse.results.export import export_run, read_classes, serve_savedmodel, serve_tflite

# measured on these runs (docs/serving.md): SavedModel 0, TFLite about 1e-7
SAVEDMODEL_TOL = 1e-5
TFLITE_TOL = 1e-5


@pytest.fixture(scope="module")
def arrays_run(tmp_path_factory):
    """mnist_sample, the cnn ladder step (small), 1 epoch on 256 images."""
    from fastcourse.config import load_config
    from fastcourse.tasks.runner import run_experiment

    out = tmp_path_factory.mktemp("runs")
    return run_experiment(
        load_config(
            {
                "name": "export-arrays",
                "seed": 0,
                "out": str(out),
                "data": {"name": "mnist_sample", "train_limit": 256, "test_limit": 64},
                "model": {"name": "cnn", "filters": [8, 16], "dense": 32},
                "augment": {"name": "none"},
                "train": {"batch_size": 64, "verbose": 0, "epochs": 1, "schedule": {"name": "constant", "lr": 1e-3}},
            }
        )
    )


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """A generated 3-class folder at 32x32, the cnn_bn ladder step, 1 epoch."""
    from fastcourse.config import load_config
    from fastcourse.data.synthetic import make_image_folder
    from fastcourse.tasks.runner import run_experiment

    root = make_image_folder(
        tmp_path_factory.mktemp("shapes"), classes=3, per_class=8, valid_per_class=4, test=0, size=32
    )
    return run_experiment(
        load_config(
            {
                "name": "export-folder",
                "seed": 0,
                "out": str(tmp_path_factory.mktemp("runs")),
                "data": {"name": "image_folder", "path": str(root), "image_size": [32, 32]},
                "model": {"name": "cnn_bn", "filters": [8, 16], "dense": 32},
                "augment": {"name": "none"},
                "train": {"batch_size": 8, "verbose": 0, "epochs": 1, "schedule": {"name": "constant", "lr": 1e-3}},
            }
        )
    )


def _images(run):
    """8 images of the run's evaluation split, as the run's pipeline gives them to the model."""
    from fastcourse.results.predict import load_run, model_images

    loaded = load_run(run)
    if loaded.data_kind == "arrays":
        return loaded, np.asarray(loaded.inputs().eval.x[:8], np.float32)
    files = loaded.inputs().eval_files[:8]
    return loaded, model_images(loaded, files)


@pytest.mark.integration
@pytest.mark.parametrize("which", ["arrays_run", pytest.param("folder_run", marks=pytest.mark.slow)])  # 35 s
def test_savedmodel_and_tflite_predict_as_the_run(which, request, tmp_path):
    run = request.getfixturevalue(which)
    from fastcourse.results.export import float32_copy

    loaded, images = _images(run)
    assert images.shape[0] == 8 and images.max() > 1.0  # raw 0-255 pixels, not normalised
    # the export computes in float32 whatever policy the run trained under (mixed_bfloat16 on a bf16 CPU)
    expected = float32_copy(loaded.model).predict(images, verbose=0)
    trained = loaded.model.predict(images, verbose=0)
    saved = export_run(run, "savedmodel", tmp_path / "out")
    lite = export_run(run, "tflite", tmp_path / "out")
    assert saved == tmp_path / "out" / "savedmodel" and (saved / "saved_model.pb").is_file()
    assert (lite / "model.tflite").is_file()
    for folder in (saved, lite):
        assert read_classes(folder) == loaded.class_names
        info = json.loads((folder / "export.json").read_text())
        assert info["input"]["shape"] == [None, *images.shape[1:]] and info["input"]["dtype"] == "float32"
    got_saved = serve_savedmodel(saved, images)
    got_lite = serve_tflite(lite / "model.tflite", images)
    saved_diff = float(np.abs(got_saved - expected).max())
    lite_diff = float(np.abs(got_lite - expected).max())
    trained_diff = float(np.abs(got_saved - trained).max())
    print(
        f"{which}: max |SavedModel - Keras| = {saved_diff:.2e}, max |TFLite - Keras| = {lite_diff:.2e}, "
        f"max |SavedModel - Keras in the run's own precision| = {trained_diff:.2e}"
    )
    assert saved_diff <= SAVEDMODEL_TOL and lite_diff <= TFLITE_TOL
    assert trained_diff < 0.05  # bfloat16 rounding of the trained policy, when it was mixed
    np.testing.assert_allclose(got_saved.sum(1), 1.0, rtol=1e-5)
    assert (got_lite.argmax(1) == expected.argmax(1)).all()
    # the preprocessing is inside: the export given 0-1 pixels would be another prediction
    assert np.abs(serve_savedmodel(saved, images / 255.0) - expected).max() > 1e-3


def test_cli_writes_into_the_run_and_replaces_atomically(arrays_run, capsys):
    assert main(["export", str(arrays_run), "--format", "savedmodel"]) == 0
    folder = arrays_run / "savedmodel"
    assert str(folder) in capsys.readouterr().out
    first = (folder / "saved_model.pb").stat().st_mtime_ns
    assert main(["export", str(arrays_run)]) == 0  # savedmodel is the default; the old export is replaced
    assert (folder / "saved_model.pb").stat().st_mtime_ns != first
    assert not [p.name for p in arrays_run.iterdir() if p.name.startswith(".savedmodel")]  # no temp folders left
    import os

    umask = os.umask(0)
    os.umask(umask)
    assert folder.stat().st_mode & 0o777 == 0o777 & ~umask  # the usual mode, not mkdtemp's 0700


def test_a_failed_export_leaves_the_old_one(arrays_run, tmp_path, monkeypatch):
    import fastcourse.results.export as export

    good = export_run(arrays_run, "savedmodel", tmp_path)
    before = sorted(p.name for p in good.rglob("*"))

    def broken(model, path):
        (path / "half").write_text("x")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(export, "write_savedmodel", broken)
    with pytest.raises(Exception, match="No space left"):
        export_run(arrays_run, "savedmodel", tmp_path)
    assert sorted(p.name for p in good.rglob("*")) == before
    assert [p.name for p in tmp_path.iterdir()] == ["savedmodel"]


def test_bad_input_is_one_line_exit_2(arrays_run, tmp_path, capsys):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    cases = [
        ([str(tmp_path / "nope")], "no such run directory"),
        ([str(tmp_path)], "no model.keras"),
        ([str(arrays_run), "--format", "onnx"], "--format 'onnx': use one of savedmodel, tflite"),
        ([str(arrays_run), "--out", str(a_file)], "is a file, not a folder"),
        ([str(arrays_run), "--out", str(a_file / "sub")], "choose a writable folder"),
    ]
    for argv, message in cases:
        assert main(["export", *argv]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err


def test_export_never_replaces_a_folder_it_did_not_write(arrays_run, tmp_path, capsys):
    """DIR/savedmodel (or DIR/tflite) that no export wrote is the user's: one line naming it, exit 2,
    and every file in it survives. A folder holding an export's export.json is replaced."""
    for fmt in ("savedmodel", "tflite"):
        out = tmp_path / fmt
        mine = out / fmt
        mine.mkdir(parents=True)
        (mine / "thesis.txt").write_text("four years of work\n")
        if fmt == "tflite":
            (mine / "export.json").write_text('{"format": "onnx"}')  # someone else's export.json
        assert main(["export", str(arrays_run), "--out", str(out), "--format", fmt]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(mine) in err and "not a fastcourse" in err, err
        assert (mine / "thesis.txt").read_text() == "four years of work\n"
        assert sorted(p.name for p in out.iterdir()) == [fmt]  # no temporary folder left beside it
    exported = export_run(arrays_run, "savedmodel", tmp_path / "again")
    (exported / "stale.txt").write_text("left by hand in an export")
    assert main(["export", str(arrays_run), "--out", str(tmp_path / "again")]) == 0
    assert not (exported / "stale.txt").exists() and (exported / "export.json").is_file()
