"""Looking at results: the index pickers on hand-made arrays, and `fastcourse views` on a folder."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from results_fixtures import array_run, folder_run, make_labelled_folder, make_run

from fastcourse.cli import main
from fastcourse.results import views

# 3 classes; predicted = argmax. Rows:     label  predicted  P(pred)
PROBS = np.array(
    [
        [0.90, 0.05, 0.05],  # 0  0  0       correct, confident
        [0.60, 0.30, 0.10],  # 1  0  0       correct
        [0.20, 0.70, 0.10],  # 2  0  1       wrong: a 0 taken for a 1
        [0.10, 0.80, 0.10],  # 3  1  1       correct
        [0.05, 0.95, 0.00],  # 4  1  1       correct, most confident 1
        [0.50, 0.40, 0.10],  # 5  1  0       wrong: a 1 taken for a 0
        [0.34, 0.33, 0.33],  # 6  2  0       wrong: a 2 taken for a 0, near uniform
        [0.05, 0.90, 0.05],  # 7  2  1       wrong: a 2 taken for a 1, confident
    ]
)
LABELS = np.array([0, 0, 0, 1, 1, 1, 2, 2])


def test_random_correct_and_incorrect_pick_only_from_their_set():
    correct, incorrect = [0, 1, 3, 4], [2, 5, 6, 7]
    assert views.random_correct(LABELS, PROBS, n=10).tolist() == correct  # fewer than n: all
    for seed in range(5):
        picked = views.random_correct(LABELS, PROBS, n=2, seed=seed)
        assert len(picked) == 2 and set(picked) <= set(correct) and len(set(picked)) == 2
        picked = views.random_incorrect(LABELS, PROBS, n=3, seed=seed)
        assert len(picked) == 3 and set(picked) <= set(incorrect)
    again = views.random_incorrect(LABELS, PROBS, 3, seed=1).tolist()
    assert views.random_incorrect(LABELS, PROBS, 3, seed=1).tolist() == again
    draws = {tuple(views.random_incorrect(LABELS, PROBS, 2, seed=s)) for s in range(20)}
    assert len(draws) > 1  # the seed matters


def test_most_confident_correct_per_class():
    assert views.most_confident_correct(LABELS, PROBS, 0).tolist() == [0, 1]
    assert views.most_confident_correct(LABELS, PROBS, 1).tolist() == [4, 3]
    assert views.most_confident_correct(LABELS, PROBS, 1, n=1).tolist() == [4]
    assert views.most_confident_correct(LABELS, PROBS, 2).tolist() == []  # no 2 was predicted


def test_most_confident_incorrect_is_predicted_as_the_class_but_is_not():
    # predicted 0 wrongly: rows 5 (P0 .50) and 6 (P0 .34); predicted 1 wrongly: 7 (.90), 2 (.70)
    assert views.most_confident_incorrect(LABELS, PROBS, 0).tolist() == [5, 6]
    assert views.most_confident_incorrect(LABELS, PROBS, 1).tolist() == [7, 2]
    assert views.most_confident_incorrect(LABELS, PROBS, 1, n=1).tolist() == [7]
    assert views.most_confident_incorrect(LABELS, PROBS, 2).tolist() == []


def test_most_uncertain_two_classes_is_closest_to_a_half():
    p_first = np.array([0.9, 0.52, 0.1, 0.45, 0.5, 0.7])
    probs = np.stack([p_first, 1 - p_first], axis=1)
    assert views.most_uncertain(probs, n=3).tolist() == [4, 1, 3]  # |p - .5| = 0, .02, .05
    assert views.most_uncertain(probs, n=3, by="entropy").tolist() == [4, 1, 3]  # same order for two


def test_most_uncertain_many_classes_entropy_and_max_prob():
    # entropies: row 6 1.099, 5 .943, 1 .898, 2 .802, 3 .639, 0 = 7 .394 (tie: file order), 4 .199
    assert views.most_uncertain(PROBS, n=8).tolist() == [6, 5, 1, 2, 3, 0, 7, 4]
    # the two measures disagree: [.5 .5 0] has the lower max-prob, [.6 .2 .2] the higher entropy
    probs = np.array([[0.5, 0.5, 0.0], [0.6, 0.2, 0.2], [0.98, 0.01, 0.01]])
    assert views.most_uncertain(probs, n=2, by="entropy").tolist() == [1, 0]
    assert views.most_uncertain(probs, n=2, by="max_prob").tolist() == [0, 1]
    np.testing.assert_allclose(views.uncertainty(probs, "max_prob"), [0.5, 0.4, 0.02])
    with pytest.raises(ValueError, match="two classes"):
        views.uncertainty(PROBS, by="half")
    with pytest.raises(ValueError, match="unknown uncertainty"):
        views.uncertainty(PROBS, by="margin")


def test_ties_keep_file_order():
    probs = np.tile([[0.5, 0.5]], (4, 1))
    assert views.most_uncertain(probs, n=4).tolist() == [0, 1, 2, 3]
    labels = np.zeros(4, np.int64)
    probs = np.tile([[0.8, 0.2]], (4, 1))
    assert views.most_confident_correct(labels, probs, 0, n=3).tolist() == [0, 1, 2]


def test_pickers_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="labels for"):
        views.random_correct(LABELS[:3], PROBS)
    with pytest.raises(ValueError, match=r"\(N, classes\)"):
        views.most_uncertain(PROBS[:, 0])


def test_views_command_draws_every_grid(tmp_path, capsys):
    run = make_run(tmp_path, augment={"name": "dogscats"})
    folder, truth = make_labelled_folder(tmp_path)
    assert main(["views", str(run), str(folder), "--out", str(tmp_path), "-n", "3"]) == 0
    out = tmp_path / "views"  # --out names the folder views/ goes into
    expected = [
        "random_correct",
        "random_incorrect",
        "most_uncertain",
        "most_confident_correct",
        "most_confident_incorrect",
        "confusion_matrix",
        "augmented",
        "top_losses",
    ]
    for name in expected:
        with Image.open(out / f"{name}.png") as im:  # a real PNG with some size
            assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100
    summary = json.loads((out / "views.json").read_text())
    assert sorted(summary["files"]) == sorted([*expected, "most_confused"])
    # the two mistakes: one pair each way, and the two highest losses
    assert (out / "most_confused.csv").read_text() == "actual,predicted,count\ncats,dogs,1\ndogs,cats,1\n"
    assert summary["most_confused"] == [["cats", "dogs", 1], ["dogs", "cats", 1]]
    assert sorted(summary["shown"]["top_losses"][:2]) == ["cats/cat.7.png", "dogs/dog.8.png"]
    # 11 images: the two in the wrong folder are the only mistakes
    assert summary["accuracy"] == pytest.approx(9 / 11)
    assert summary["confusion_matrix"] == [[5, 1], [1, 4]]
    shown = summary["shown"]
    assert sorted(shown["random_incorrect"]) == ["cats/cat.7.png", "dogs/dog.8.png"]
    assert shown["most_confident_incorrect"] == {"cats": ["dogs/dog.8.png"], "dogs": ["cats/cat.7.png"]}
    # biggest red squares are the surest cats; biggest blue the surest dogs
    assert shown["most_confident_correct"]["cats"] == ["cats/cat.3.png", "cats/cat.2.png", "cats/cat.1.png"]
    assert shown["most_confident_correct"]["dogs"][0] == "dogs/dog.6.png"
    # the grayscale image has no colour signal: P = .5, the most uncertain
    assert shown["most_uncertain"][0] == "cats/gray.png"
    assert all(f in truth or f.endswith(("gray.png", "palette.png")) for f in shown["random_correct"])
    printed = capsys.readouterr().out
    assert "accuracy 0.8182 on 11 images" in printed
    assert str(out / "views.json") in printed.splitlines()  # each path it wrote


def test_views_without_augmentation_skips_the_augmented_grid(tmp_path, capsys):
    run = make_run(tmp_path)  # augment: none
    folder, _ = make_labelled_folder(tmp_path)
    assert main(["views", str(run), str(folder)]) == 0
    assert (run / "views" / "confusion_matrix.png").is_file()
    assert not (run / "views" / "augmented.png").exists()
    assert "--augment" in capsys.readouterr().out


def test_views_errors(tmp_path, capsys):
    run = make_run(tmp_path)
    folder, _ = make_labelled_folder(tmp_path)
    (folder / "birds").mkdir()
    Image.new("RGB", (8, 8)).save(folder / "birds" / "b.png")
    assert main(["views", str(run), str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert "'birds' is not one of them" in err and "\n" not in err
    (folder / "birds" / "b.png").unlink()
    assert main(["views", str(run), str(folder), "--index", "99"]) == 2
    assert "--index 99" in capsys.readouterr().err


@pytest.mark.integration
def test_views_from_a_predictions_csv_match_views_that_predict(tmp_path):
    run = make_run(tmp_path)
    folder, _ = make_labelled_folder(tmp_path)
    assert main(["views", str(run), str(folder), "--out", str(tmp_path / "a")]) == 0
    assert main(["predict", str(run), str(folder), "--out", str(tmp_path)]) == 0
    assert (
        main(
            [
                "views",
                str(run),
                str(folder),
                "--probs",
                str(tmp_path / "predictions_valid.csv"),
                "--out",
                str(tmp_path / "b"),
            ]
        )
        == 0
    )
    a, b = (json.loads((tmp_path / d / "views" / "views.json").read_text()) for d in "ab")
    assert a["shown"] == b["shown"] and a["confusion_matrix"] == b["confusion_matrix"]


def test_views_probs_csv_errors(tmp_path, capsys):
    run = make_run(tmp_path)
    folder, _ = make_labelled_folder(tmp_path)
    (tmp_path / "other.csv").write_text("filename,a,b\ncats/cat.0.png,0.5,0.5\n")
    (tmp_path / "gone.csv").write_text("filename,cats,dogs\ncats/nope.png,0.5,0.5\n")
    for csv, message in (("other.csv", "not the run's classes"), ("gone.csv", "cats/nope.png is not in")):
        assert main(["views", str(run), str(folder), "--probs", str(tmp_path / csv)]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err, err


VIEW_PNGS = [
    "random_correct",
    "random_incorrect",
    "most_uncertain",
    "most_confident_correct",
    "most_confident_incorrect",
    "confusion_matrix",
]


def _check_pngs(out, names):
    for name in names:
        with Image.open(out / f"{name}.png") as im:
            assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100


@pytest.mark.integration
def test_views_of_a_folder_run_on_its_own_valid_split(tmp_path):
    """No FOLDER: the run's valid split, with the probabilities the run saved."""
    run, data = folder_run()
    assert main(["views", str(run), "--out", str(tmp_path), "-n", "2"]) == 0
    out = tmp_path / "views"
    _check_pngs(out, VIEW_PNGS + ["augmented"])  # the run has augment: dogscats
    summary = json.loads((out / "views.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    assert summary["split"] == "valid" and summary["accuracy"] == pytest.approx(metrics["eval_accuracy"])
    assert np.sum(summary["confusion_matrix"]) == 10
    assert all(f.startswith("valid/") for f in summary["shown"]["most_uncertain"])
    # the labelled folder itself gives the same views
    assert main(["views", str(run), str(data / "valid"), "--out", str(tmp_path / "b"), "-n", "2"]) == 0
    other = json.loads((tmp_path / "b" / "views" / "views.json").read_text())
    assert other["confusion_matrix"] == summary["confusion_matrix"]
    assert other["shown"]["most_uncertain"] == [f[len("valid/") :] for f in summary["shown"]["most_uncertain"]]


@pytest.mark.integration
def test_views_of_an_array_run(tmp_path, capsys):
    """An MNIST-like run has no image files: its test arrays are drawn (gray), default RUN/views/
    unless --out says otherwise; with --tta the model predicts again."""
    run = array_run()
    assert main(["views", str(run), "--out", str(tmp_path), "-n", "3"]) == 0
    out = tmp_path / "views"
    _check_pngs(out, VIEW_PNGS + ["augmented"])  # augment: course
    summary = json.loads((out / "views.json").read_text())
    labels = np.load(run / "eval_labels.npy")
    probs = np.load(run / "eval_probs.npy")
    assert summary["split"] == "test"
    assert summary["accuracy"] == pytest.approx(float((probs.argmax(1) == labels).mean()))
    uncertain = views.most_uncertain(probs, 3)
    assert summary["shown"]["most_uncertain"] == [str(i) for i in uncertain]
    assert str(out / "views.json") in capsys.readouterr().out
    assert main(["views", str(run), "--out", str(tmp_path / "t"), "--tta", "2", "-n", "2"]) == 0
    assert (tmp_path / "t" / "views" / "views.json").is_file()


@pytest.mark.integration  # trains a tiny Learner (seconds)
def test_views_and_predict_open_a_saved_learner_run(tmp_path):
    """`Learner.save()` writes what `fastcourse run` writes, so `views` and `predict` open it, although
    its config.yaml names the task `learner`, which no registry holds."""
    import fastcourse
    from fastcourse.cli import main

    learn = fastcourse.Learner("linear", "mnist_sample", train_limit=64, test_limit=32, verbose=0, out=tmp_path)
    learn.fit(1)
    run = learn.save(tmp_path / "run")
    assert main(["views", str(run), "-n", "2"]) == 0
    assert list((tmp_path / "run" / "views").glob("*.png"))
    assert main(["predict", str(run)]) == 0
