"""Batch-level augmentation: MixUp, CutMix (fastcourse.data.mix) and RandAugment
(fastcourse.data.augment.randaugment), against their references: fastai's CutMix.rand_bbox and
label weight (fastai/callback/mixup.py), MixUp's formula (Zhang et al.), Keras 3's RandAugment."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from fastcourse.data import augment
from fastcourse.data.mix import CutMix, Mixed, MixUp, build_mix
from fastcourse.data.sources import ArraySource
from fastcourse.errors import UsageError


def fastai_rand_bbox(W, H, lam, cx, cy):
    """fastai's CutMix.rand_bbox (fastai/callback/mixup.py), in numpy, with the draws given."""
    cut_rat = np.sqrt(1.0 - lam)
    cut_w = int(np.round(W * cut_rat))
    cut_h = int(np.round(H * cut_rat))
    x1 = np.clip(cx - cut_w // 2, 0, W)
    y1 = np.clip(cy - cut_h // 2, 0, H)
    x2 = np.clip(cx + cut_w // 2, 0, W)
    y2 = np.clip(cy + cut_h // 2, 0, H)
    return x1, y1, x2, y2


def _batch(n=8, size=(12, 10), classes=10, seed=0):
    rs = np.random.RandomState(seed)
    x = rs.randint(0, 256, (n, *size, 1)).astype(np.float32)
    y = np.eye(classes, dtype=np.float32)[rs.permutation(classes)[:n]]  # distinct classes
    return x, y


def test_cutmix_is_fastais_box_and_label_weight_per_image():
    x, y = _batch()
    cut = CutMix(alpha=1.0)
    params = cut.draw(tf.shape(x), tf.constant([5, 7], tf.int64))
    images, labels = (t.numpy() for t in cut.apply(x, y, params))
    lam, cx, cy, perm = (params[k].numpy() for k in ("lam", "cx", "cy", "perm"))
    H, W = x.shape[1:3]
    assert sorted(perm) == list(range(len(x)))
    for i in range(len(x)):
        x1, y1, x2, y2 = fastai_rand_bbox(W, H, lam[i], cx[i], cy[i])
        expected = x[i].copy()
        expected[y1:y2, x1:x2] = x[perm[i]][y1:y2, x1:x2]  # fastai: xb[..., y1:y2, x1:x2] = xb1[...]
        np.testing.assert_array_equal(images[i], expected)
        kept = 1 - ((x2 - x1) * (y2 - y1)) / float(W * H)  # fastai's self.lam after the box
        np.testing.assert_allclose(labels[i], kept * y[i] + (1 - kept) * y[perm[i]], atol=1e-6)
    assert np.allclose(labels.sum(1), 1.0)


def test_cutmix_lambda_is_beta_alpha_alpha():
    """The draws' mean and variance are Beta(alpha, alpha)'s: 1/2 and 1 / (4 (2 alpha + 1))."""
    for alpha in (0.4, 2.0):
        lam = CutMix(alpha).draw([20000, 4, 4, 1], tf.constant([1, 2], tf.int64))["lam"].numpy()
        assert abs(lam.mean() - 0.5) < 0.01
        assert abs(lam.var() - 1 / (4 * (2 * alpha + 1))) < 0.01


def test_mixup_blends_images_and_labels_with_one_weight():
    """Keras' MixUp, as driven here: image i = lam x_i + (1 - lam) x_j and its label the same
    blend of the two one-hot rows (read back from the label, the classes being distinct)."""
    x, y = _batch()
    images, labels = (t.numpy() for t in MixUp(alpha=0.4)(x, y, tf.constant([3, 4], tf.int64)))
    classes = y.argmax(1)
    mixed = 0
    for i in range(len(x)):
        lam = labels[i, classes[i]]
        others = [c for c in np.flatnonzero(labels[i] > 1e-6) if c != classes[i]]
        j = int(np.flatnonzero(classes == others[0])[0]) if others else i
        np.testing.assert_allclose(images[i], lam * x[i] + (1 - lam) * x[j], rtol=1e-4, atol=1e-3)
        mixed += bool(others)
    assert mixed >= len(x) // 2
    assert np.allclose(labels.sum(1), 1.0)


def _stream(aug, start_step=0, n=4, seed=3):
    x, _ = _batch(n=24, size=(8, 8))
    source = ArraySource(x.astype(np.uint8), np.arange(24) % 10, 10)
    return list(source.batches(8, shuffle=True, seed=seed, augment=aug, repeat=True, start_step=start_step).take(n))


@pytest.mark.parametrize("spec", [{"name": "mixup", "alpha": 0.4}, {"name": "cutmix", "alpha": 1.0}])
def test_mix_is_seeded_by_the_run_and_resumes(spec):
    """Same seed: the same mixed batches; a run resumed at step 2 gets batches 2 and 3; another
    seed other ones; the image pipeline's own draws are unchanged by the mix."""
    whole = _stream(augment.build("fashion", {"mix": spec}))
    again = _stream(augment.build("fashion", {"mix": spec}))
    resumed = _stream(augment.build("fashion", {"mix": spec}), start_step=2, n=2)
    other = _stream(augment.build("fashion", {"mix": spec}), seed=4, n=1)
    for a, b in zip(whole, again):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    for a, b in zip(whole[2:], resumed):
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
    assert not np.allclose(whole[0][0], other[0][0])
    assert (whole[0][1].numpy().max(1) < 1).any()  # labels became soft


def test_mixed_pipeline_alone_is_the_image_pipeline():
    """Without labels (previews, TensorBoard samples, TTA) a Mixed pipeline is its image pipeline."""
    x, _ = _batch()
    seed = tf.constant([1, 2], tf.int64)
    mixed = augment.build("fashion", {"mix": {"name": "mixup"}})
    assert isinstance(mixed, Mixed) and isinstance(mixed.mix, MixUp) and mixed.mix.alpha == 0.4
    np.testing.assert_array_equal(mixed(tf.constant(x), seed), augment.build("fashion")(tf.constant(x), seed))
    assert augment.build("none", mix={"name": "cutmix"})(x, seed) is x


@pytest.mark.parametrize(
    "spec, words",
    [
        ({"name": "mixip"}, "mixup or cutmix"),
        ({"name": "mixup", "alpha": 0}, "(0, 100]"),
        ({"name": "cutmix", "alpha": -1.0}, "(0, 100]"),
        ({"name": "mixup", "beta": 1}, "name: mixup | cutmix"),
    ],
)
def test_bad_mix_is_one_line(spec, words):
    with pytest.raises(UsageError, match=None) as info:
        build_mix(spec)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_randaugment_per_image_equals_keras_when_every_image_draws_the_same_ops():
    """PerImageRandAugment's transform, given Keras' own transformation with its per-batch op
    indices repeated for each image, is exactly Keras' RandAugment's."""
    x, _ = _batch(n=4, size=(16, 16))
    keras_layer = keras.layers.RandAugment(value_range=(0, 255), num_ops=2, factor=0.5, seed=1, dtype="float32")
    ours = augment.PerImageRandAugment(value_range=(0, 255), num_ops=2, factor=0.5, seed=1, dtype="float32")
    for _ in range(4):
        t = keras_layer.get_random_transformation(tf.constant(x), training=True)
        expected = keras_layer.transform_images(tf.constant(x), t).numpy()
        per_image = dict(t, layer_idxes=tf.repeat(t["layer_idxes"][:, None], len(x), axis=1))
        np.testing.assert_allclose(ours.transform_images(tf.constant(x), per_image).numpy(), expected, atol=1e-4)


def test_randaugment_draws_ops_per_image_from_the_runs_seed():
    x = np.repeat(_batch(n=1, size=(16, 16))[0], 16, axis=0)  # one image, sixteen times
    pipe = augment.build("randaugment", {"num_ops": 1, "magnitude": 0.5})
    a = pipe(tf.constant(x), tf.constant([1, 2], tf.int64)).numpy()
    b = augment.build("randaugment", {"num_ops": 1, "magnitude": 0.5})(tf.constant(x), tf.constant([1, 2], tf.int64))
    np.testing.assert_array_equal(a, b.numpy())  # fresh layers, same seed: same batch
    assert len({a[i].tobytes() for i in range(16)}) > 4  # the copies differ (ops and strengths per image)
    assert a.min() >= 0 and a.max() <= 255  # the course's pixel range


def _folder(root, n=6):
    rs = np.random.RandomState(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rs.randint(0, 256, (10, 10, 3)).astype(np.uint8)).save(root / c / f"{i}.png")
    return root


@pytest.mark.parametrize("spec", [{"name": "mixup"}, {"name": "cutmix"}])
def test_mix_on_an_image_folder_resumes(tmp_path, spec):
    from fastcourse.data.sources import FolderSource

    root = _folder(tmp_path / "imgs")
    files = sorted(str(p) for p in root.rglob("*.png"))
    labels = np.array([0 if "/a/" in f else 1 for f in files])
    source = FolderSource(files, labels, 2, (10, 10), pillow=np.zeros(len(files), bool))

    def stream(start_step=0, n=3):
        aug = augment.build("none", mix=spec)
        ds = source.batches(4, shuffle=True, seed=2, augment=aug, repeat=True, start_step=start_step)
        return [(a.numpy(), b.numpy()) for a, b in ds.take(n)]

    whole, resumed = stream(), stream(start_step=1, n=2)
    for (a, la), (b, lb) in zip(whole[1:], resumed):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)
    labels_seen = np.concatenate([la for _, la in whole])
    # soft labels that sum to one, and some images mixed across the two classes (a pair drawn from
    # one class mixes into a hard label, so look over every batch of the seeded stream)
    assert np.allclose(labels_seen.sum(1), 1.0) and (labels_seen.max(1) < 1).any()


@pytest.mark.integration  # trains a model for an epoch
def test_run_with_mixup_validates_on_hard_labels(tmp_path, tiny_config):
    """A run with MixUp and RandAugment trains on soft labels; its per-epoch and final figures are
    on the clean hard-labelled test images (the final evaluation equals the history's last)."""
    import json

    from fastcourse.config import load_config
    from fastcourse.tasks.runner import run_experiment

    cfg = load_config(
        tiny_config(
            augment={"name": "randaugment", "num_ops": 1, "magnitude": 0.3, "mix": {"name": "mixup", "alpha": 0.4}},
            out=str(tmp_path),
        )
    )
    assert cfg.augment.mix.name == "mixup"
    run_dir = run_experiment(cfg)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    labels, probs = np.load(run_dir / "eval_labels.npy"), np.load(run_dir / "eval_probs.npy")
    assert labels.ndim == 1  # hard labels
    assert metrics["eval_accuracy"] == pytest.approx(float((probs.argmax(1) == labels).mean()), abs=1e-9)
    history = np.genfromtxt(run_dir / "history.csv", delimiter=",", names=True)
    assert float(np.atleast_1d(history["val_accuracy"])[-1]) == pytest.approx(metrics["eval_accuracy"], abs=1e-6)
    assert "name: mixup" in (run_dir / "config.yaml").read_text()


@pytest.mark.integration  # trains a model for an epoch
def test_learner_on_a_folder_with_cutmix(tmp_path):
    """The Learner takes the mix in its augment dict, trains on the folder with it, and records it
    in the config it would run as; its validation figures are on hard labels."""
    import fastcourse

    root = _folder(tmp_path / "photos", n=8)
    learn = fastcourse.Learner.from_folder(
        root,
        "linear",
        augment={"name": "randaugment", "num_ops": 1, "magnitude": 0.2, "mix": {"name": "cutmix", "alpha": 1.0}},
        image_size=10,
        valid_pct=0.25,
        seed=1,
        out=tmp_path / "runs",
        verbose=0,
        batch_size=4,
    )
    assert isinstance(learn.augment_fn, Mixed) and isinstance(learn.augment_fn.mix, CutMix)
    assert learn.config.augment.mix.name == "cutmix"
    learn.fit(1, lr=1e-3)
    probs, targets = learn.get_preds()
    assert np.asarray(targets).ndim == 1 and np.asarray(probs).shape == (len(targets), 2)


@pytest.mark.integration  # loads the bundled sample and draws two PNGs: seconds
def test_preview_augment_draws_the_mix_and_randaugment(tmp_path, capsys):
    from fastcourse.cli import main

    assert (
        main(
            ["preview-augment", "mnist_sample/cnn", "--set", "augment.mix={name: cutmix}", "--out", str(tmp_path / "a")]
        )
        == 0
    )
    assert "preview:" in capsys.readouterr().out
    args = ["--set", "augment.name=randaugment", "--set", "augment.magnitude=0.2", "--out", str(tmp_path / "b")]
    assert main(["preview-augment", "mnist_sample/cnn", *args]) == 0
    for sub in ("a", "b"):
        with Image.open(tmp_path / sub / "augment_preview.png") as im:
            assert im.format == "PNG" and im.size[0] > 200
    assert main(["preview-augment", "mnist_sample/cnn", "--set", "augment.mix={name: mixip}"]) == 2
    assert "augment.mix.name = 'mixip'" in capsys.readouterr().err
