"""`fastcourse predict`: file order, CSV layout, equality with the model on the same pixels and
with what training saved (folder and array runs), EXIF orientation, test-time augmentation,
`--out`, and the error cases."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from results_fixtures import (
    SIZE,
    array_run,
    folder_run,
    make_model,
    make_run,
    make_test_folder,
    shape_image,
    upright_model,
    write_image,
)

from fastcourse.cli import main
from fastcourse.data import augment
from fastcourse.errors import DataError, UsageError
from fastcourse.results.predict import list_images, load_run, predict_eval, predict_folder, read_predictions

FASTCOURSE = str(Path(sys.executable).with_name("fastcourse"))


def _pixels(folder, files, channels=3, size=SIZE):
    """The images as the model should see them: decoded, resized bilinear, float 0-255."""
    out = []
    for f in files:
        image = tf.io.decode_image(tf.io.read_file(str(folder / f)), channels=channels, expand_animations=False)
        out.append(tf.image.resize(tf.cast(image, tf.float32), (size, size), method="bilinear").numpy())
    return np.clip(np.stack(out), 0, 255)


def test_list_images_recursive_sorted_without_hidden_or_other_files(tmp_path):
    for name in ["b/2.png", "a/10.png", "a/9.jpg", "c.JPG", ".hidden/1.png", "a/.x.png", "notes.txt"]:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    assert list_images(tmp_path) == ["a/10.png", "a/9.jpg", "b/2.png", "c.JPG"]


def test_list_images_errors(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        list_images(tmp_path / "missing")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match="no images found"):
        list_images(tmp_path)


def test_predict_command_writes_probabilities_in_file_order(tmp_path):
    run = make_run(tmp_path)
    test = make_test_folder(tmp_path, n=7)
    assert main(["predict", str(run), str(test), "--batch-size", "3"]) == 0  # batches of 3, 3, 1
    frame = pd.read_csv(run / "predictions_test.csv")  # named after the folder
    files = list_images(test)
    assert list(frame.columns) == ["filename", "cats", "dogs"]
    assert frame["filename"].tolist() == files  # sorted text order: 1, 2, 3.jpg, ...
    expected = make_model().predict(_pixels(test, files), verbose=0)
    np.testing.assert_allclose(frame[["cats", "dogs"]].to_numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(frame[["cats", "dogs"]].sum(1), 1.0, atol=1e-5)
    # blue squares (odd ids) are dogs, red (even ids) are cats
    is_dog = frame["dogs"] > 0.5
    assert is_dog.tolist() == [int(f.split("/")[-1].split(".")[0]) % 2 == 1 for f in files]
    back = read_predictions(run / "predictions_test.csv")
    assert back.filenames == files and back.class_names == ["cats", "dogs"]


def test_grayscale_and_palette_images_become_rgb(tmp_path):
    run = make_run(tmp_path)
    folder = tmp_path / "mixed"
    rgb = shape_image("blue", 24)
    write_image(folder / "a.png", rgb)
    write_image(folder / "b.png", rgb, mode="P")
    write_image(folder / "c.png", rgb, mode="RGBA")
    write_image(folder / "d.png", rgb, mode="L")
    preds = predict_folder(run, folder, progress=False)
    np.testing.assert_allclose(preds.probs[1:3], preds.probs[[0, 0]], atol=1e-3)  # same colours
    assert preds.probs[3, 1] == pytest.approx(0.5, abs=1e-3)  # gray: no blue-minus-red signal


@pytest.mark.integration
def test_tta_is_the_mean_of_the_clean_and_augmented_predictions(tmp_path):
    aug_cfg = {"name": "dogscats", "rotation": 15.0, "shift": 0.1}
    run = make_run(tmp_path, augment=aug_cfg)
    test = make_test_folder(tmp_path, n=5)
    files = list_images(test)
    model = make_model()
    pipeline = augment.build("dogscats", {"rotation": 15.0, "shift": 0.1})
    tta = 3
    clean = _pixels(test, files)
    expected = []
    for b, start in enumerate(range(0, len(files), 4)):  # batch size 4: batches 0 and 1
        images = tf.constant(clean[start : start + 4])
        passes = [model.predict_on_batch(images)]
        for k in range(tta):  # the run's seed (3), the batch, the pass: as predict seeds them
            passes.append(model.predict_on_batch(pipeline(images, tf.constant([3, b * tta + k], tf.int64))))
        expected.append(np.mean(passes, axis=0))
    expected = np.concatenate(expected)
    preds = predict_folder(run, test, tta=tta, batch_size=4, progress=False)
    np.testing.assert_allclose(preds.probs, expected, atol=1e-5)
    plain = predict_folder(run, test, batch_size=4, progress=False)
    assert np.abs(preds.probs - plain.probs).max() > 1e-4  # the augmentation really changed something
    again = predict_folder(run, test, tta=tta, batch_size=4, progress=False)
    np.testing.assert_array_equal(again.probs, preds.probs)  # seeded: a rerun gives the same numbers


def test_tta_needs_an_augmentation(tmp_path):
    run = make_run(tmp_path)  # augment: none
    test = make_test_folder(tmp_path, n=2)
    with pytest.raises(UsageError, match="--augment"):
        predict_folder(run, test, tta=2, progress=False)
    preds = predict_folder(run, test, tta=2, augment="dogscats", progress=False)
    assert preds.probs.shape == (2, 2)


def test_class_names_from_the_runs_dataset_and_mismatches(tmp_path):
    from fastcourse.models.mnist import linear

    run = make_run(tmp_path, classes=[str(i) for i in range(10)], model=linear((SIZE, SIZE, 3), 10))
    (run / "metrics.json").write_text(json.dumps({"class_names": list("abcdefghij")}))  # older key
    assert load_run(run).class_names == list("abcdefghij")
    (run / "metrics.json").unlink()  # fall back to config.yaml's data: mnist_sample, classes "0".."9"
    assert load_run(run).class_names == [str(i) for i in range(10)]
    with pytest.raises(UsageError, match="10 outputs but 2 class names"):
        load_run(run, ["cats", "dogs"])


def test_run_and_folder_errors(tmp_path, capsys):
    run = make_run(tmp_path)
    test = make_test_folder(tmp_path, n=2)
    bad = tmp_path / "bad"
    write_image(bad / "1.png", shape_image("red", 10))
    (bad / "2.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    no_model = tmp_path / "empty_run"
    no_model.mkdir()
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.yaml").write_text("name: x\n")
    (tmp_path / "broken_run").mkdir()
    (tmp_path / "broken_run" / "model.keras").write_bytes(b"not a zip")
    cases = [
        (["predict", str(no_model), str(test)], 2, "no model.keras"),
        (["predict", str(tmp_path / "nowhere"), str(test)], 2, "no such run directory"),
        (["predict", str(tmp_path / "broken_run"), str(test)], 2, "not a .keras model file"),
        (["predict", str(unfinished), str(test)], 2, "the run is unfinished"),
        (["predict", str(run), str(tmp_path / "nothing")], 2, "no such folder"),
        (["predict", str(run), str(bad)], 2, "2.jpg: unreadable image"),
        (["predict", str(run), str(test), "--tta", "-1"], 2, "--tta -1"),
        (["predict", str(run), str(test), "--classes", "a,,b"], 2, "--classes"),
    ]
    for argv, code, message in cases:
        assert main(argv) == code, argv
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith("fastcourse: error:") and message in err, err
    assert not list(run.glob("predictions*"))


@pytest.mark.integration
def test_predict_an_array_run_end_to_end(tmp_path, capsys):
    """A model the trainer saved (28x28x1 digits) predicts PNG digits written from its data, and
    its own test split (no FOLDER) exactly as training evaluated it."""
    from fastcourse.data import DATASETS
    from fastcourse.run.artifacts import load_model

    run = array_run()
    data = DATASETS.get("mnist_sample")()
    folder = tmp_path / "digits"
    for i in range(6):
        write_image(folder / f"{i:02d}.png", data.x_test[i][..., 0])
    assert main(["predict", str(run), str(folder), "--out", str(tmp_path / "out")]) == 0
    path = tmp_path / "out" / "predictions_digits.csv"
    assert str(path) in capsys.readouterr().out.splitlines()
    frame = pd.read_csv(path)
    assert list(frame.columns) == ["filename"] + [str(i) for i in range(10)]
    model = load_model(run / "model.keras", compile=False)
    expected = model.predict(data.x_test[:6].astype(np.float32), verbose=0)  # 28x28: no resize
    np.testing.assert_allclose(frame.iloc[:, 1:].to_numpy(), expected, atol=1e-5)
    # no FOLDER: the run's test split, equal to what training saved
    assert main(["predict", str(run), "--out", str(tmp_path / "out")]) == 0
    frame = pd.read_csv(tmp_path / "out" / "predictions_test.csv")
    saved = np.load(run / "eval_probs.npy")
    assert len(frame) == len(saved) == 24
    assert np.abs(frame.iloc[:, 1:].to_numpy() - saved).max() < 1e-4
    # TTA on arrays: the run's `course` augmentation, seeded
    a, b = (predict_eval(run, tta=2, progress=False).probs for _ in range(2))
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - saved).max() > 1e-4


@pytest.mark.integration
def test_folder_run_predicts_what_training_saved(tmp_path):
    """A batchnorm CNN trained on an image folder: predicting its valid/ folder gives the
    probabilities the run saved (eval_probs.npy), row for row, from Python and from the CLI."""
    run, data = folder_run()
    saved = np.load(run / "eval_probs.npy")
    table = pd.read_csv(run / "eval_predictions.csv")
    by_file = dict(zip([Path(f).relative_to(data / "valid").as_posix() for f in table["file"]], saved))
    preds = predict_folder(run, data / "valid", labelled=True, batch_size=3, progress=False)
    assert sorted(preds.filenames) == sorted(by_file) and len(preds.filenames) == 10
    expected = np.stack([by_file[f] for f in preds.filenames])
    assert np.abs(preds.probs - expected).max() < 1e-4
    assert preds.labels.tolist() == [["cats", "dogs"].index(f.split("/")[0]) for f in preds.filenames]
    # the run's own eval split, opened from its config
    own = predict_eval(run, progress=False)
    assert own.split == "valid" and own.filenames == [f"valid/{f}" for f in preds.filenames]
    assert np.abs(own.probs - saved).max() < 1e-4
    assert main(["predict", str(run), str(data / "valid"), "--out", str(tmp_path)]) == 0
    frame = pd.read_csv(tmp_path / "predictions_valid.csv")
    assert np.abs(frame[["cats", "dogs"]].to_numpy() - expected).max() < 1e-4


@pytest.mark.integration
def test_tta_on_a_folder_run_differs_from_clean_and_is_reproducible():
    run, data = folder_run()
    clean = predict_folder(run, data / "test", progress=False).probs
    tta = predict_folder(run, data / "test", tta=2, progress=False).probs
    again = predict_folder(run, data / "test", tta=2, progress=False).probs
    other = predict_folder(run, data / "test", tta=2, seed=11, progress=False).probs
    assert np.abs(tta - clean).max() > 1e-5
    np.testing.assert_array_equal(tta, again)  # same seed, same numbers
    assert np.abs(other - tta).max() > 1e-6  # another seed, other copies
    np.testing.assert_allclose(tta.sum(1), 1.0, atol=1e-5)


def test_an_exif_rotated_jpeg_is_predicted_as_its_upright_copy(tmp_path):
    from PIL import Image

    run = make_run(tmp_path, model=upright_model())
    upright = np.full((SIZE, SIZE, 3), 128, np.uint8)
    upright[2:12, 4:28] = (20, 20, 230)  # a blue bar at the top: a dog, when upright
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(upright).save(folder / "a_upright.jpg", quality=100)
    # stored on its side, as a phone stores a portrait photo; orientation 6 = turn 90 degrees clockwise
    sideways = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    sideways.save(folder / "b_exif.jpg", quality=100, exif=exif)
    sideways.save(folder / "c_sideways.jpg", quality=100)  # the same pixels without the tag
    preds = predict_folder(run, folder, progress=False)
    assert preds.filenames == ["a_upright.jpg", "b_exif.jpg", "c_sideways.jpg"]
    assert preds.probs[0, 1] > 0.6
    np.testing.assert_allclose(preds.probs[1], preds.probs[0], atol=0.01)
    assert abs(preds.probs[2, 1] - preds.probs[0, 1]) > 0.05  # without EXIF it would differ


@pytest.mark.integration
def test_out_naming_a_file_is_a_one_line_error(tmp_path):
    run = make_run(tmp_path)
    test = make_test_folder(tmp_path, n=2)
    target = tmp_path / "a_file.csv"
    target.write_text("x")
    for argv in (
        ["predict", str(run), str(test)],
        ["submit", str(run), str(test), "--kind", "dogscats"],
        ["views", str(run), str(test)],
    ):
        done = subprocess.run([FASTCOURSE, *argv, "--out", str(target)], capture_output=True, text=True, timeout=300)
        err = done.stderr.strip()
        assert done.returncode == 2, (argv, err)
        assert err.startswith("fastcourse: error: --out") and "is a file" in err and "\n" not in err, err
        assert "Traceback" not in done.stderr
    assert target.read_text() == "x"


def test_unreadable_images_are_skipped_when_asked(tmp_path, capsys):
    run = make_run(tmp_path)
    folder = tmp_path / "bad"
    write_image(folder / "1.png", shape_image("red", 10))
    write_image(folder / "3.png", shape_image("blue", 10))
    (folder / "2.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    preds = predict_folder(run, folder, on_error="skip", progress=False)
    assert preds.filenames == ["1.png", "3.png"] and preds.probs.shape == (2, 2)
    assert "skipping" in capsys.readouterr().err


def test_a_file_that_passes_the_check_but_does_not_decode_is_named(tmp_path, monkeypatch):
    import fastcourse.data.images as images

    run = make_run(tmp_path)
    folder = tmp_path / "corrupt"
    for i in range(3):
        write_image(folder / f"{i}.png", np.random.default_rng(i).integers(0, 255, (40, 40, 3), dtype=np.uint8))
    data = bytearray((folder / "1.png").read_bytes())
    for i in range(60, len(data) - 20):  # scramble the pixel data, keep the header and IEND
        data[i] ^= 0x55
    (folder / "1.png").write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"1\.png: unreadable image"):  # the folder scan finds it
        predict_folder(run, folder, batch_size=2, progress=False)
    # a file that changes after the scan (or that the scan cannot tell) is dropped by the
    # decoding pipeline: the count no longer fits, and the file is named
    monkeypatch.setattr(images, "scan", lambda files, check="fast", workers=8: [images.FileStatus(f) for f in files])
    with pytest.raises(DataError, match=r"1\.png: cannot decode"):
        predict_folder(run, folder, batch_size=2, progress=False)


def _left_handed_model():
    """linear(32x32x3, cats/dogs) whose P(dogs) rises with blue in the LEFT half and falls with
    blue in the right half: an image and its mirror image are predicted differently."""
    from fastcourse.models.mnist import linear

    model = linear((SIZE, SIZE, 3), 2)
    kernel = np.zeros((SIZE, SIZE, 3, 2), np.float32)
    per_pixel = 40.0 / (SIZE * SIZE * 255.0)
    kernel[:, : SIZE // 2, 2, 1] = per_pixel
    kernel[:, SIZE // 2 :, 2, 1] = -per_pixel
    model.get_layer("predictions").set_weights([kernel.reshape(-1, 2), np.zeros(2, np.float32)])
    return model


def _mirror_mean(model, images):
    """Flip TTA by hand: the mean of the model on the images and on their columns reversed."""
    images = np.asarray(images, np.float32)
    return (model.predict(images, verbose=0) + model.predict(images[:, :, ::-1], verbose=0)) / 2


@pytest.mark.integration
def test_flip_tta_on_a_folder_is_the_mean_of_each_image_and_its_mirror(tmp_path, capsys):
    """`--tta flip` needs no augmentation in the run; its probabilities are the by-hand mean."""
    model = _left_handed_model()
    run = make_run(tmp_path, model=model)  # augment: none
    folder = tmp_path / "test"
    for i, left in enumerate((2, 10, 20)):  # a blue bar at three distances from the left edge
        image = np.full((SIZE, SIZE, 3), 128, np.uint8)
        image[4:28, left : left + 8] = (20, 20, 230)
        write_image(folder / f"{i}.png", image)
    files = list_images(folder)
    assert main(["predict", str(run), str(folder), "--tta", "flip"]) == 0
    assert "TTA: the mean of each image and its mirror image" in capsys.readouterr().out
    probs = pd.read_csv(run / "predictions_test.csv")[["cats", "dogs"]].to_numpy()
    np.testing.assert_allclose(probs, _mirror_mean(model, _pixels(folder, files)), atol=1e-5)
    plain = predict_folder(run, folder, progress=False).probs
    assert np.abs(probs - plain).max() > 0.05  # the mirror really changed the left-handed model's view


@pytest.mark.integration
def test_flip_tta_on_arrays_through_the_cli_and_the_learner(tmp_path, capsys):
    import fastcourse
    from fastcourse.run.inputs import inputs_for
    from fastcourse.run.rundir import saved_config

    run = array_run()
    loaded = load_run(run)
    inputs = inputs_for(saved_config(run))
    images = np.stack([x for x, _ in inputs.eval.batches(64, labels=True).unbatch().as_numpy_iterator()])
    expected = _mirror_mean(loaded.model, images)
    assert main(["predict", str(run), "--tta", "flip", "--out", str(tmp_path)]) == 0
    (csv,) = tmp_path.glob("predictions_*.csv")
    probs = pd.read_csv(csv).drop(columns="filename").to_numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    assert "TTA: the mean of each image and its mirror image" in capsys.readouterr().out
    x = np.random.default_rng(0).integers(0, 256, (12, 28, 28)).astype(np.uint8)
    learn = fastcourse.Learner.from_arrays(x[:8], [0, 1] * 4, x[8:], [0, 1] * 2, "linear", verbose=0)
    probs, targets = learn.get_preds(tta="flip")
    np.testing.assert_allclose(probs, _mirror_mean(learn.model, x[8:, :, :, None]), atol=1e-5)
    assert targets.tolist() == [0, 1, 0, 1]
    assert np.abs(probs - learn.get_preds()[0]).max() > 1e-4


def test_a_bad_tta_value_is_one_line(tmp_path, capsys):
    run = make_run(tmp_path)
    test = make_test_folder(tmp_path, n=1)
    with pytest.raises(SystemExit) as stop:  # argparse's own stop, with fastcourse's one line
        main(["predict", str(run), str(test), "--tta", "flop"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "'flop': give a number of augmented passes, or flip" in err and len(err.splitlines()) == 1
    assert main(["predict", str(run), str(test), "--tta", "-1"]) == 2
    expected = "--tta -1: give 0 (no augmentation), a positive number of augmented passes, or flip"
    assert expected in capsys.readouterr().err
    with pytest.raises(UsageError, match="or flip"):
        predict_folder(run, test, tta="mirror", progress=False)
