"""Metrics: what a classifier scores on labelled rows, a chunk at a time or all at once."""

import numpy as np
import pytest

from components.ml.metrics import LossAndAccuracy, score_predictions


def test_scores_binary():
    """Check accuracy, F1, ROC AUC and log loss on a small binary example."""
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    scores = score_predictions(np.array([0, 1, 1, 1]), proba, np.array([0, 1]))
    assert scores["accuracy"] == 0.75
    assert scores["roc_auc"] == pytest.approx(1.0)
    assert scores["log_loss"] == pytest.approx(
        -np.mean(np.log([0.9, 0.8, 0.4, 0.7])))


def test_undefined_metrics_are_none():
    """Check that ROC AUC with one class present and log loss with an unknown class are None."""
    proba = np.array([[0.9, 0.1], [0.8, 0.2]])
    assert score_predictions(np.array([0, 0]), proba, np.array([0, 1]))["roc_auc"] is None
    assert score_predictions(np.array([0, 2]), proba, np.array([0, 1]))["log_loss"] is None


@pytest.mark.parametrize("classes", [["ant", "bee", "cat"], [0, 1, 2]])
def test_trace_scores_add_up_batches_as_sklearn_scores_all_rows(classes):
    """Check that loss and accuracy summed over batches equal scikit-learn's over all rows."""
    from sklearn.metrics import accuracy_score, log_loss

    rng = np.random.default_rng(0)
    classes = np.array(classes, dtype=object if isinstance(classes[0], str) else int)
    labels = classes[rng.integers(0, 3, 500)]
    probabilities = rng.dirichlet(np.ones(3), 500)
    probabilities[0] = [1.0, 0.0, 0.0]  # a zero probability for a true class is clipped, as sklearn
    labels[0] = classes[1]
    totals = LossAndAccuracy(classes)
    for start in range(0, 500, 150):
        totals.add(labels[start:start + 150], probabilities[start:start + 150])
    scores = totals.scores()
    assert scores["loss"] == pytest.approx(log_loss(labels, probabilities, labels=classes))
    assert scores["accuracy"] == pytest.approx(
        accuracy_score(labels, classes[probabilities.argmax(axis=1)]))


def test_trace_log_loss_is_none_for_a_label_the_model_does_not_know():
    """Check that a label the classifier does not know makes the log loss undefined."""
    totals = LossAndAccuracy(np.array(["a", "b"], dtype=object))
    totals.add(np.array(["a", "zz"], dtype=object), np.array([[0.9, 0.1], [0.2, 0.8]]))
    assert totals.scores() == {"loss": None, "accuracy": 0.5}
