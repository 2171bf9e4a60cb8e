"""fastcourse.train.metrics, the one place every reported figure is computed, against
scikit-learn's metrics on the same arrays, and Kaggle's log loss worked out by hand."""

import keras
import numpy as np
import pytest
from sklearn import metrics as sk

from fastcourse.train import metrics


@pytest.fixture
def case(rng):
    n, c = 500, 7
    logits = rng.normal(0, 3, (n, c))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = rng.integers(0, c, n)
    y[:5] = c - 1  # every class present, and the last one often
    return probs, y, c


def test_accuracy_log_loss_and_confusion_are_sklearns(case):
    probs, y, c = case
    assert probs.min() > 1e-15  # inside Kaggle's clipping: it changes nothing here
    assert metrics.accuracy(probs, y) == pytest.approx(sk.accuracy_score(y, probs.argmax(1)), abs=1e-7)
    assert metrics.log_loss(probs, y) == pytest.approx(sk.log_loss(y, probs, labels=np.arange(c)), abs=1e-7)
    np.testing.assert_array_equal(
        metrics.confusion_matrix(y, probs.argmax(1), c), sk.confusion_matrix(y, probs.argmax(1), labels=range(c))
    )
    one_hot = np.eye(c)[y]
    assert metrics.log_loss(probs, one_hot) == pytest.approx(metrics.log_loss(probs, y), abs=1e-12)
    assert metrics.accuracy(probs, one_hot) == metrics.accuracy(probs, y)
    got = metrics.scores(probs, y)
    assert got["loss"] == metrics.log_loss(probs, y) and got["accuracy"] == metrics.accuracy(probs, y)


def test_float32_probabilities_as_a_model_gives_them(case):
    """A model's float32 softmax rows sum to 1 only within float32 rounding: they are
    renormalised in float64, as sklearn sees the same rows renormalised."""
    probs, y, c = case
    p32 = probs.astype(np.float32)
    p64 = p32.astype(np.float64) / p32.astype(np.float64).sum(1, keepdims=True)
    assert metrics.log_loss(p32, y) == pytest.approx(sk.log_loss(y, p64, labels=np.arange(c)), abs=1e-7)


def test_kaggles_clipping_and_rescaling_by_hand():
    """Kaggle: each row divided by its sum, then clipped to [1e-15, 1 - 1e-15].
    Row 0 gives the true class 0: -log(1e-15) = 34.538776; row 1, [2, 2] rescaled to [0.5, 0.5]:
    log 2 = 0.693147; row 2 is certain and right: -log(1 - 1e-15) ~ 1e-15. Mean 11.743974."""
    probs = np.array([[0.0, 1.0], [2.0, 2.0], [1.0, 0.0]])
    y = np.array([0, 1, 0])
    assert metrics.log_loss(probs, y) == pytest.approx((34.538776 + 0.693147) / 3, abs=1e-6)
    # sklearn >= 1.3 clips at the dtype's epsilon (2.2e-16 in float64) and does not rescale:
    # -log(2.2e-16) = 36.04, so the clipping has to be ours
    assert sk.log_loss(y, probs / probs.sum(1, keepdims=True), labels=[0, 1]) > metrics.log_loss(probs, y) + 0.4


def test_soft_labels_are_the_cross_entropy(rng):
    probs = rng.dirichlet(np.ones(4), 50)
    soft = rng.dirichlet(np.ones(4), 50)
    want = -(soft * np.log(np.clip(probs, 1e-15, 1))).sum(1).mean()
    assert metrics.log_loss(probs, soft) == pytest.approx(want, abs=1e-7)


def test_a_class_nobody_predicts_keeps_its_row_and_column():
    cm = metrics.confusion_matrix(np.array([0, 0, 2]), np.array([0, 2, 2]), 4)
    np.testing.assert_array_equal(cm, [[1, 0, 1, 0], [0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]])


@pytest.mark.integration
def test_history_val_loss_is_the_final_evaluation(rng):
    """issue 28's features_dense run: history.csv said val_loss 5.25 for the last epoch, the final
    evaluation of the same model on the same images 3.98. Keras' loss reads the softmax's logits
    and clips nothing; the evaluation clipped the probabilities. Both now come from
    fastcourse.train.metrics: a model that makes confident mistakes shows it."""
    from fastcourse.config import TrainConfig
    from fastcourse.data.sources import ArraySource
    from fastcourse.train.trainer import evaluate, fit, seed_everything

    seed_everything(0)
    x = rng.integers(0, 256, (96, 8, 8, 1)).astype(np.uint8)
    y = rng.integers(0, 2, 96)
    inputs = keras.Input((8, 8, 1))
    big = keras.initializers.RandomNormal(stddev=2.0, seed=0)  # logits in the hundreds: certain, often wrong
    out = keras.layers.Dense(2, activation="softmax", kernel_initializer=big)(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, out)
    train = TrainConfig(epochs=1, batch_size=32, verbose=0, bn_recalibrate=0, schedule={"name": "constant", "lr": 1e-7})
    source = ArraySource(x, y, 2)
    result = fit(model, source, train, seed=0, validation=source)
    final = evaluate(model, source)
    assert result.history["val_loss"][-1] == pytest.approx(final["loss"], abs=1e-7)
    assert result.history["val_accuracy"][-1] == pytest.approx(final["accuracy"], abs=1e-7)
    assert final["loss"] == pytest.approx(
        sk.log_loss(y, np.clip(final["probs"].astype(np.float64), 1e-15, 1)), abs=1e-6
    )
    keras_own = model.evaluate(source.batches(256), verbose=0, return_dict=True)["loss"]
    assert abs(keras_own - final["loss"]) > 1.0  # what history.csv used to hold
