"""Every reported metric, computed in one place: accuracy, log loss, confusion matrix.

The trainer's per-epoch validation and final evaluation, ensembles and their rules, flip TTA, the
features and scikit-learn tasks, the Learner and the views all call these, so a figure printed
during training, saved in history.csv or metrics.json, or drawn in a confusion matrix is the same
computation on the same probabilities. scikit-learn computes them (`sklearn.metrics`).

Log loss is Kaggle's (the course's competitions, dogs vs cats and State Farm, were scored so):
each row of probabilities is divided by its sum, then clipped to [1e-15, 1 - 1e-15]
(scikit-learn's `log_loss` did the same before version 1.3; it now clips at the dtype's machine
epsilon and leaves the rows alone, so the rows are prepared here and then handed to it).
Keras' own cross-entropy differs: it clips at 1e-7, and on a softmax output it reads the logits
and does not clip at all, so a confidently wrong prediction costs more there than it can here.

    from fastcourse.train.metrics import scores
    scores(probs, labels)  # {"loss": ..., "accuracy": ..., "probs": probs}
"""

from __future__ import annotations

import numpy as np

EPS = 1e-15  # Kaggle's clipping of submitted probabilities


def hard_labels(labels: np.ndarray) -> np.ndarray:
    """Integer class labels from integer, one-hot or soft (N, C) labels (their argmax)."""
    labels = np.asarray(labels)
    return labels.argmax(1) if labels.ndim == 2 else labels.astype(np.int64)


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float:
    """The fraction of rows whose highest score is the label (scores need not be probabilities)."""
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(hard_labels(labels), np.asarray(probs).argmax(1)))


def kaggle_probs(probs: np.ndarray) -> np.ndarray:
    """Rows divided by their sum, then clipped to [EPS, 1 - EPS], in float64."""
    p = np.asarray(probs, dtype=np.float64)
    sums = p.sum(1, keepdims=True)
    p = np.divide(p, sums, out=np.full_like(p, 1.0 / p.shape[1]), where=sums > 0)
    return np.clip(p, EPS, 1 - EPS)


def log_loss(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean log loss of class probabilities `probs` (N, C) against integer or one-hot labels, or
    the cross-entropy against soft labels (N, C), with Kaggle's row normalisation and clipping."""
    from sklearn.metrics import log_loss as sk_log_loss

    p = kaggle_probs(probs)
    labels = np.asarray(labels)
    if labels.ndim == 2 and not np.isin(labels, (0.0, 1.0)).all():  # soft labels: no class to name
        return float(-(labels * np.log(p)).sum(1).mean())
    return float(sk_log_loss(hard_labels(labels), p, labels=np.arange(p.shape[1])))


def sample_losses(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each row's log loss, -log p(label), with Kaggle's row normalisation and clipping (their
    mean is `log_loss`; scikit-learn's log_loss of that one row gives the same)."""
    p = kaggle_probs(probs)
    y = hard_labels(labels)
    return -np.log(p[np.arange(len(y)), y])


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts (num_classes, num_classes): true classes down, predicted across."""
    from sklearn.metrics import confusion_matrix as sk_confusion_matrix

    return sk_confusion_matrix(
        np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64), labels=np.arange(num_classes)
    ).astype(np.int64)


def scores(probs: np.ndarray, labels: np.ndarray) -> dict:
    """Log loss and accuracy of class probabilities against integer, one-hot or soft labels."""
    return {"loss": log_loss(probs, labels), "accuracy": accuracy(probs, labels), "probs": probs}
