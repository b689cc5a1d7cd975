"""Scores of a classifier on labelled rows: accuracy, macro F1, ROC AUC and log loss.

What a model predicted is kept as :class:`Predictions` (labels and probabilities only), so rows
can be scored a chunk at a time and the same numbers feed the gate, the confusion matrix and the
ROC curve.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from components.data.chunks import as_table
from components.ml.features import split_features
from components.outcomes import GateMetric

METRIC_NAMES = (*GateMetric.ALL, "log_loss")


class LossAndAccuracy:
    """Log loss and accuracy added up batch by batch: what a training trace row shows. In
    numpy, as sklearn's ``log_loss`` computes it, without its per-call input checks: a trace
    scores every epoch."""

    def __init__(self, classes):
        self.classes = np.asarray(classes)
        self._order = np.argsort(self.classes)
        self.rows = self.correct = 0
        self.loss: float | None = 0.0  # None once a label is one the classifier does not know

    def add(self, y, probabilities: np.ndarray) -> None:
        y = np.asarray(y)
        self.rows += len(y)
        self.correct += int((self.classes[np.argmax(probabilities, axis=1)] == y).sum())
        if self.loss is None or not len(y):
            return
        found = np.searchsorted(self.classes, y, sorter=self._order)
        known = found < len(self.classes)
        columns = self._order[np.where(known, found, 0)]
        if not (known & (self.classes[columns] == y)).all():
            self.loss = None
            return
        eps = np.finfo(probabilities.dtype).eps
        chosen = np.clip(probabilities[np.arange(len(y)), columns], eps, 1 - eps)
        self.loss -= float(np.log(chosen).sum())

    def scores(self) -> dict:
        return {"log_loss": None if self.loss is None or not self.rows else self.loss / self.rows,
                "accuracy": self.correct / self.rows if self.rows else None}


def score_predictions(y_true, probabilities: np.ndarray, classes,
                      predicted: np.ndarray | None = None) -> dict[str, float | None]:
    """Accuracy, macro F1, ROC AUC (one-vs-rest for multiclass) and log loss.

    ``predicted``: the classes the model predicts (its decision threshold applied); the most
    probable ones when not given. A metric that is undefined on these rows (ROC AUC with one
    class present, log loss with a class the model never saw) is None rather than a made-up
    number.
    """
    from sklearn.metrics import f1_score, roc_auc_score

    classes = np.asarray(classes)
    y_true = np.asarray(y_true)
    if predicted is None:
        predicted = classes[np.argmax(probabilities, axis=1)]
    totals = LossAndAccuracy(classes)
    totals.add(y_true, probabilities)
    loss = totals.scores()["log_loss"]
    scores: dict[str, float | None] = {
        "accuracy": float(np.mean(predicted == y_true)) if len(y_true) else None,
        "f1": float(f1_score(y_true, predicted, average="macro", labels=np.unique(y_true))),
        "roc_auc": None,
        "log_loss": loss,
    }
    seen = set(np.unique(y_true).tolist())
    if loss is not None and len(seen) > 1:
        if len(classes) == 2:
            scores["roc_auc"] = float(roc_auc_score(y_true == classes[1], probabilities[:, 1]))
        elif len(seen) == len(classes):
            scores["roc_auc"] = float(roc_auc_score(
                y_true, probabilities, multi_class="ovr", average="macro", labels=classes))
    return scores


@dataclass(frozen=True)
class Predictions:
    """A model's predictions for labelled rows: all evaluate keeps of the rows."""

    labels: np.ndarray
    probabilities: np.ndarray
    classes: np.ndarray
    predicted: np.ndarray  # the classes predicted (the model's decision threshold applied)

    def right(self) -> np.ndarray:
        """Per row: whether the predicted class is the label."""
        return self.predicted == self.labels

    def scores(self) -> dict[str, float | None]:
        return score_predictions(self.labels, self.probabilities, self.classes, self.predicted)

    def confusion(self) -> tuple[list[str], list[list[int]]]:
        """Class names and the confusion matrix (rows: true class, columns: predicted)."""
        from sklearn.metrics import confusion_matrix

        matrix = confusion_matrix(self.labels, self.predicted, labels=self.classes)
        return [str(c) for c in self.classes], matrix.astype(int).tolist()

    def roc_points(self, max_points: int = 50):
        """FPR, TPR and thresholds of the ROC curve for binary labels, thinned; else None."""
        from sklearn.metrics import roc_curve

        if len(self.classes) != 2 or len(np.unique(self.labels)) != 2:
            return None
        fpr, tpr, thresholds = roc_curve(self.labels == self.classes[1],
                                         self.probabilities[:, 1])
        keep = np.unique(np.linspace(0, len(fpr) - 1, min(max_points, len(fpr))).astype(int))
        finite = np.where(np.isfinite(thresholds[keep]), thresholds[keep], 1.0)
        return fpr[keep].tolist(), tpr[keep].tolist(), finite.tolist()


# How retrain's cross-fitted predictions travel to evaluate: columns beside the rows' own.
CROSS_FIT_CLASS = "__cross_fitted_class"  # the predicted class's index in the model's classes
CROSS_FIT_PROBABILITY = "__cross_fitted_p"  # + a class's index: its probability


def cross_fitted_columns(probabilities: np.ndarray, class_indices: np.ndarray) -> dict:
    """The columns that carry cross-fitted predictions (in the final model's class order)."""
    return {CROSS_FIT_CLASS: class_indices,
            **{f"{CROSS_FIT_PROBABILITY}{i}": probabilities[:, i]
               for i in range(probabilities.shape[1])}}


def split_cross_fitted(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows without the cross-fitted columns, and those columns."""
    columns = [c for c in frame.columns
               if c == CROSS_FIT_CLASS or str(c).startswith(CROSS_FIT_PROBABILITY)]
    return frame.drop(columns=columns), frame[columns]


def with_cross_fitted(predictions: Predictions, columns: pd.DataFrame,
                      rows: np.ndarray) -> Predictions:
    """``predictions`` with the cross-fitted answers in place of the model's for ``rows``."""
    if not rows.any():
        return predictions
    probabilities = predictions.probabilities.copy()
    predicted = predictions.predicted.copy()
    width = len(predictions.classes)
    probabilities[rows] = columns.loc[rows, [f"{CROSS_FIT_PROBABILITY}{i}"
                                             for i in range(width)]].to_numpy(dtype=float)
    predicted[rows] = predictions.classes[columns.loc[rows, CROSS_FIT_CLASS].to_numpy(dtype=int)]
    return Predictions(predictions.labels, probabilities, predictions.classes, predicted)


def predict(model, data, label_column: str) -> Predictions:
    """Run a fitted Pipeline built here over labelled rows a chunk at a time.

    ``data``: a DataFrame, or a Parquet path or :class:`components.data.chunks.Table`.
    """
    from components.ml.models import predicted_classes

    labels, probabilities = [], []
    for chunk in as_table(data).chunks():
        features, chunk_labels = split_features(chunk, label_column)
        labels.append(chunk_labels.to_numpy())
        probabilities.append(model.predict_proba(features))
    classes = np.asarray(model.classes_)
    if not labels:
        return Predictions(np.empty(0, dtype=classes.dtype), np.empty((0, len(classes))),
                           classes, np.empty(0, dtype=classes.dtype))
    probabilities = np.concatenate(probabilities)
    return Predictions(np.concatenate(labels), probabilities, classes,
                       predicted_classes(model, probabilities))


def score_model(model, data, label_column: str) -> dict[str, float | None]:
    """Score a fitted Pipeline built here on labelled rows."""
    return predict(model, data, label_column).scores()
