"""Kaggle submission writers: columns, row order, clipping, gzip, and the error cases."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest
from results_fixtures import SIZE, folder_run, make_run, make_test_folder, shape_image, write_image

from fastcourse.cli import main
from fastcourse.errors import UsageError
from fastcourse.results.submission import (
    dogscats_frame,
    statefarm_clip,
    statefarm_frame,
    submission_frame,
    write_submission,
)


def test_dogscats_frame_clips_p_dog_and_sorts_by_numeric_id():
    files = ["unknown/10.jpg", "unknown/2.jpg", "unknown/1.jpg"]  # sorted as text, not as numbers
    probs = np.array([[0.99, 0.01], [0.3, 0.7], [0.0, 1.0]])
    frame = dogscats_frame(files, probs, ["cats", "dogs"])
    assert list(frame.columns) == ["id", "label"]
    assert frame["id"].tolist() == [1, 2, 10]
    np.testing.assert_allclose(frame["label"], [0.95, 0.7, 0.05])


def test_dogscats_frame_finds_dogs_in_any_column():
    frame = dogscats_frame(["7.png"], np.array([[0.8, 0.2]]), ["dogs", "cats"])
    assert frame["label"].tolist() == [0.8]


def test_statefarm_frame_reorders_and_clips_like_the_course():
    lo, hi = statefarm_clip()
    assert lo == pytest.approx(0.07 / 9) and hi == 0.93
    classes = [f"c{i}" for i in (9, 8, 7, 6, 5, 4, 3, 2, 1, 0)]  # reversed: must be put back in order
    probs = np.zeros((2, 10))
    probs[0, 0] = 1.0  # c9 certain
    probs[1] = 0.1  # uniform
    frame = statefarm_frame(["train/c0/img_5.jpg", "img_3.jpg"], probs, classes)
    assert list(frame.columns) == ["img"] + [f"c{i}" for i in range(10)]
    assert frame["img"].tolist() == ["img_5.jpg", "img_3.jpg"]  # file order, base names
    assert frame.loc[0, "c9"] == pytest.approx(0.93)
    assert frame.loc[0, "c0"] == pytest.approx(lo)
    np.testing.assert_allclose(frame.iloc[1, 1:].to_numpy(float), 0.1)


def test_write_submission_gzip_round_trip(tmp_path):
    frame = statefarm_frame([f"img_{i}.jpg" for i in range(3)], np.full((3, 10), 0.1), [f"c{i}" for i in range(10)])
    path = write_submission(frame, tmp_path / "sub.csv.gz", "statefarm")
    with gzip.open(path, "rt") as fh:  # really gzip, not a plain file with a .gz name
        assert fh.readline().strip() == "img," + ",".join(f"c{i}" for i in range(10))
    back = pd.read_csv(path)
    assert back.shape == (3, 11)
    # same frame, same bytes (no timestamp in the gzip header)
    assert write_submission(frame, tmp_path / "again.csv.gz").read_bytes() == path.read_bytes()


def test_write_submission_plain_csv_and_statefarm_requires_gz(tmp_path):
    frame = dogscats_frame(["1.jpg"], np.array([[0.4, 0.6]]), ["cats", "dogs"])
    path = write_submission(frame, tmp_path / "sub.csv", "dogscats")
    assert path.read_text().splitlines() == ["id,label", "1,0.600000"]
    with pytest.raises(UsageError, match=r"\.csv\.gz"):
        write_submission(frame, tmp_path / "sf.csv", "statefarm")


@pytest.mark.parametrize(
    "kind, classes, files, message",
    [
        ("dogscats", ["cat", "dog"], ["1.jpg"], "needs a 'dogs' class"),
        ("dogscats", ["cats", "dogs"], ["cat.1.jpg"], "numeric id"),
        ("dogscats", ["cats", "dogs"], ["a/1.jpg", "b/1.jpg"], "appears twice"),
        ("statefarm", ["cats", "dogs"], ["1.jpg"], "c0..c9"),
        ("statefarm", [f"c{i}" for i in range(10)], ["a/img_1.jpg", "b/img_1.jpg"], "appears twice"),
        ("kaggle", ["cats", "dogs"], ["1.jpg"], "unknown submission kind"),
    ],
)
def test_classes_and_names_that_do_not_fit_the_kind(kind, classes, files, message):
    probs = np.full((len(files), len(classes)), 1.0 / len(classes))
    with pytest.raises(UsageError, match=message):
        submission_frame(kind, files, probs, classes)


def test_submit_command_from_a_run(tmp_path):
    run = make_run(tmp_path)
    test = make_test_folder(tmp_path, n=12)
    assert main(["submit", str(run), str(test), "--kind", "dogscats"]) == 0
    frame = pd.read_csv(run / "submission_dogscats.csv")
    assert frame["id"].tolist() == list(range(1, 13))
    assert frame["label"].between(0.05, 0.95).all()
    # odd ids are blue squares (dogs), even ids red (cats)
    assert (frame["label"][frame["id"] % 2 == 1] > 0.5).all()
    assert (frame["label"][frame["id"] % 2 == 0] < 0.5).all()
    # from the predictions CSV: the same submission without predicting again
    assert main(["predict", str(run), str(test), "--out", str(tmp_path / "p")]) == 0
    assert (
        main(
            [
                "submit",
                "--probs",
                str(tmp_path / "p" / "predictions_test.csv"),
                "--kind",
                "dogscats",
                "--out",
                str(tmp_path / "s"),
            ]
        )
        == 0
    )
    assert (tmp_path / "s" / "submission_dogscats.csv").read_text() == (run / "submission_dogscats.csv").read_text()
    # --probs without --out: beside the CSV
    assert main(["submit", "--probs", str(tmp_path / "p" / "predictions_test.csv"), "--kind", "dogscats"]) == 0
    assert (tmp_path / "p" / "submission_dogscats.csv").is_file()


@pytest.mark.integration
def test_submit_a_trained_folder_run(tmp_path, capsys):
    """dogscats: id,label = P(dogs) clipped to [0.05, 0.95], from a FOLDER or the run's own test/."""
    from fastcourse.results.predict import predict_folder

    run, data = folder_run()
    assert main(["submit", str(run), str(data / "test"), "--kind", "dogscats", "--out", str(tmp_path / "a")]) == 0
    path = tmp_path / "a" / "submission_dogscats.csv"
    assert str(path) in capsys.readouterr().out.splitlines()
    frame = pd.read_csv(path)
    assert list(frame.columns) == ["id", "label"] and frame["id"].tolist() == [1, 2, 3, 4, 5, 6]
    assert frame["label"].between(0.05, 0.95).all()
    preds = predict_folder(run, data / "test", progress=False)
    expected = np.clip(preds.probs[:, 1], 0.05, 0.95)[
        np.argsort([int(f.split("/")[-1].split(".")[0]) for f in preds.filenames])
    ]
    np.testing.assert_allclose(frame["label"], expected, atol=1e-5)
    # no FOLDER: the test/ images of the run's dataset give the same file
    assert main(["submit", str(run), "--kind", "dogscats", "--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "b" / "submission_dogscats.csv").read_text() == path.read_text()


def test_submit_statefarm_writes_gzip_into_the_out_folder(tmp_path):
    from fastcourse.models.mnist import linear

    classes = [f"c{i}" for i in range(10)]
    run = make_run(tmp_path, classes=classes, model=linear((SIZE, SIZE, 3), 10))
    for i in range(3):
        write_image(tmp_path / "sf_test" / f"img_{i}.jpg", shape_image("red", 10 + i))
    assert (
        main(
            [
                "submit",
                str(run),
                str(tmp_path / "sf_test"),
                "--kind",
                "statefarm",
                "--out",
                str(tmp_path / "new" / "folder"),
            ]
        )
        == 0
    )
    path = tmp_path / "new" / "folder" / "submission_statefarm.csv.gz"
    with gzip.open(path, "rt") as fh:
        assert fh.readline().strip() == "img," + ",".join(classes)
    frame = pd.read_csv(path)
    assert frame["img"].tolist() == ["img_0.jpg", "img_1.jpg", "img_2.jpg"]
    lo, hi = statefarm_clip()
    values = frame.iloc[:, 1:].to_numpy()
    assert (values >= lo - 1e-9).all() and (values <= hi + 1e-9).all()


def test_submit_command_errors_are_one_line(tmp_path, capsys):
    run = make_run(tmp_path)
    test = make_test_folder(tmp_path, n=2)
    empty = tmp_path / "empty"
    empty.mkdir()
    no_model = tmp_path / "no_model"
    no_model.mkdir()
    cases = [
        (["submit", str(no_model), str(test), "--kind", "dogscats"], "no model.keras"),
        (["submit", str(run), str(empty), "--kind", "dogscats"], "no images found"),
        (["submit", str(run), str(test), "--kind", "statefarm"], "c0..c9"),
        (["submit", str(run), str(test), "--kind", "dogscats", "--out", str(test / "unknown" / "1.png")], "is a file"),
        (["submit", "--kind", "dogscats"], "give RUN"),
        (["submit", str(run), "--kind", "dogscats"], "the run's dataset"),  # its config names mnist_sample
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("fastcourse: error:") and message in err and "\n" not in err, err
    assert not list(run.glob("submission*"))
