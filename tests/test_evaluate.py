"""Evaluate: the deploy gate and the metrics it reads."""

import numpy as np
import pytest

from components.stages.evaluate import DEPLOY, REJECT, LossAndAccuracy, decide, score_predictions


@pytest.mark.parametrize(
    "challenger, champion, expected, reason",
    [
        (0.85, None, DEPLOY, "cold start: no champion yet; challenger accuracy 0.8500 >= "
                             "threshold 0.8000"),
        (0.79, None, REJECT, "challenger accuracy 0.7900 is below the threshold 0.8000"),
        (0.85, 0.80, DEPLOY, "beats champion v0001 (0.8000) by 0.0500"),
        (0.85, 0.85, REJECT, "does not beat champion v0001 (0.8500) by more than 0.0000"),
        (0.84, 0.86, REJECT, "does not beat champion"),
        (0.78, 0.60, REJECT, "below the threshold"),
    ],
    ids=["seed-gate-cold-start", "below-threshold", "beats-champion", "tie-keeps-champion",
         "worse-than-champion", "better-but-below-threshold"],
)
def test_gate(challenger, champion, expected, reason):
    """Check the deploy decision and its reason for each case of the gate."""
    decision = decide({"accuracy": challenger},
                      None if champion is None else {"accuracy": champion},
                      metric="accuracy", threshold=0.80, min_improvement=0.0,
                      champion_version="v0001")
    assert decision.decision == expected
    assert reason in decision.reason
    assert decision.cold_start is (champion is None)


def test_min_improvement_is_required():
    """Check that a gain not above min_improvement keeps the champion."""
    decision = decide({"f1": 0.86}, {"f1": 0.85}, metric="f1", threshold=0.8,
                      min_improvement=0.02, champion_version="v0003")
    assert decision.decision == REJECT


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
    assert scores["log_loss"] == pytest.approx(log_loss(labels, probabilities, labels=classes))
    assert scores["accuracy"] == pytest.approx(
        accuracy_score(labels, classes[probabilities.argmax(axis=1)]))


def test_trace_log_loss_is_none_for_a_label_the_model_does_not_know():
    totals = LossAndAccuracy(np.array(["a", "b"], dtype=object))
    totals.add(np.array(["a", "zz"], dtype=object), np.array([[0.9, 0.1], [0.2, 0.8]]))
    assert totals.scores() == {"log_loss": None, "accuracy": 0.5}
