"""Top losses and most confused (fastcourse.results.views, the Learner), against fastai's
ClassificationInterpretation (fastai/interpret.py: top_losses = losses.topk(k, largest), most_confused
= sorted off-diagonal (actual, predicted, count) >= min_val) and scikit-learn's per-sample log loss and
confusion matrix."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from sklearn.metrics import log_loss as sk_log_loss

from fastcourse.results import views


def _preds(n=200, classes=5, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    logits = rng.normal(size=(n, classes)) + 2.0 * np.eye(classes)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return labels, probs


def test_top_losses_are_sklearns_per_sample_log_loss_sorted_descending():
    labels, probs = _preds()
    losses, idxs = views.top_losses(labels, probs)
    per_sample = np.array(
        [sk_log_loss([labels[i]], probs[i : i + 1], labels=np.arange(probs.shape[1])) for i in range(len(labels))]
    )
    assert losses.shape == idxs.shape == (len(labels),)  # every image by default, as fastai's
    np.testing.assert_allclose(losses, per_sample[idxs], rtol=1e-9)
    assert np.all(np.diff(losses) <= 0)  # largest first
    np.testing.assert_allclose(losses, np.sort(per_sample)[::-1], rtol=1e-9)
    top3, idx3 = views.top_losses(labels, probs, k=3)
    assert list(idx3) == list(idxs[:3]) and top3.shape == (3,)
    low, low_idx = views.top_losses(labels, probs, k=4, largest=False)
    np.testing.assert_allclose(low, np.sort(per_sample)[:4], rtol=1e-9)


def test_most_confused_is_sklearns_confusion_matrix_off_the_diagonal():
    labels, probs = _preds(n=300, classes=4, seed=1)
    names = ["a", "b", "c", "d"]
    cm = sk_confusion_matrix(labels, probs.argmax(1), labels=range(4))
    for min_val in (1, 3):
        got = views.most_confused(labels, probs, names, min_val=min_val)
        pairs = [(i, j) for i in range(4) for j in range(4) if i != j and cm[i, j] >= min_val]
        want = [(names[i], names[j], int(cm[i, j])) for i, j in pairs]
        want.sort(key=lambda t: t[2], reverse=True)  # fastai: sorted(res, key=itemgetter(2), reverse=True)
        assert got == want
        counts = Counter((names[a], names[p]) for a, p in zip(labels, probs.argmax(1)) if a != p)
        assert all(counts[(a, p)] == c for a, p, c in got)
    assert views.most_confused(labels, probs, names, min_val=10**6) == []


def test_write_views_on_arrays_writes_top_losses_and_most_confused(tmp_path):
    labels, probs = _preds(n=30, classes=3, seed=2)
    images = np.random.default_rng(0).integers(0, 255, (30, 8, 8)).astype(np.uint8)
    summary = views.write_views(
        None, [f"test[{i}]" for i in range(30)], labels, probs, ["x", "y", "z"], tmp_path, display=lambda i: images[i]
    )
    with Image.open(summary["files"]["top_losses"]) as im:
        assert im.format == "PNG"
    rows = (tmp_path / "most_confused.csv").read_text().splitlines()
    assert rows[0] == "actual,predicted,count"
    assert [tuple(r.split(",")) for r in rows[1:]] == [
        (a, p, str(c)) for a, p, c in views.most_confused(labels, probs, ["x", "y", "z"])
    ]
    _, idxs = views.top_losses(labels, probs, k=9)
    assert summary["shown"]["top_losses"] == [f"test[{i}]" for i in idxs]


@pytest.mark.integration  # trains a linear model for an epoch
def test_learner_interpretation_on_arrays(tmp_path):
    import fastcourse

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 120)
    x = rng.integers(0, 60, (120, 12, 12)).astype(np.uint8)
    for i, label in enumerate(y):
        x[i, 4 * label : 4 * label + 4] += 100
    learn = fastcourse.Learner.from_arrays(
        x[:90], y[:90], x[90:], y[90:], "linear", out=tmp_path, verbose=0, batch_size=16, class_names=["p", "q", "r"]
    )
    learn.fit(1, lr=1e-2)
    probs, targets = learn.get_preds()
    losses, idxs = learn.top_losses()
    want = np.array(
        [sk_log_loss([targets[i]], np.asarray(probs)[i : i + 1], labels=[0, 1, 2]) for i in range(len(targets))]
    )
    # float32 rows sum to 1 within 1e-7: this module divides them by their sum, sklearn 1.9 does not
    np.testing.assert_allclose(losses, want[idxs], atol=1e-6)
    assert np.all(np.diff(losses) <= 0)
    cm = sk_confusion_matrix(targets, np.asarray(probs).argmax(1), labels=[0, 1, 2])
    assert sum(c for _, _, c in learn.most_confused()) == int(cm.sum() - np.trace(cm))
    png = learn.plot_top_losses(4)
    assert png.name == "top_losses.png" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.integration  # trains a linear model for an epoch
def test_learner_interpretation_on_a_folder(tmp_path):
    import fastcourse

    rng = np.random.default_rng(1)
    for c, colour in (("red", 0), ("blue", 2)):
        (tmp_path / "photos" / c).mkdir(parents=True)
        for i in range(8):
            im = rng.integers(0, 80, (10, 10, 3)).astype(np.uint8)
            im[..., colour] += 150
            Image.fromarray(im).save(tmp_path / "photos" / c / f"{i}.png")
    learn = fastcourse.Learner.from_folder(
        tmp_path / "photos",
        "linear",
        image_size=10,
        valid_pct=0.5,
        seed=0,
        out=tmp_path / "runs",
        verbose=0,
        batch_size=4,
    )
    learn.fit(1, lr=1e-3)
    probs, targets = learn.get_preds()
    losses, idxs = learn.top_losses(k=3)
    per_sample = -np.log(np.clip(np.asarray(probs, np.float64)[np.arange(len(targets)), targets], 1e-15, 1))
    np.testing.assert_allclose(losses, np.sort(per_sample)[::-1][:3], atol=1e-6)
    cm = sk_confusion_matrix(targets, np.asarray(probs).argmax(1), labels=[0, 1])
    want = sorted(
        [
            (n, m, int(cm[i, j]))
            for i, n in enumerate(["blue", "red"])
            for j, m in enumerate(["blue", "red"])
            if i != j and cm[i, j]
        ],
        key=lambda t: t[2],
        reverse=True,
    )
    assert learn.inputs.class_names == ["blue", "red"] and learn.most_confused() == want
    assert learn.plot_top_losses(3).is_file()
