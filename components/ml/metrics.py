"""Scores of a model on labelled rows: for a classifier accuracy, macro F1, ROC AUC and log
loss; for a regressor RMSE, MAE and R².

What a model predicted is kept as :class:`Predictions` (labels, predictions and, for a
classifier, probabilities only), so rows can be scored a chunk at a time and the same numbers
feed the gate, the confusion matrix and ROC curve, or the predicted-against-actual report.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from components.data.chunks import as_table
from components.ml.features import split_features
from components.outcomes import GateMetric, Task

METRIC_NAMES = {Task.CLASSIFICATION: (*GateMetric.CLASSIFICATION, "log_loss"),
                Task.REGRESSION: GateMetric.REGRESSION}


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
        return {"loss": None if self.loss is None or not self.rows else self.loss / self.rows,
                "accuracy": self.correct / self.rows if self.rows else None}


class SquaredErrorAndR2:
    """Mean squared error and R² added up batch by batch: a regression trace row's loss and
    score (sums of squares, so chunks add exactly)."""

    def __init__(self):
        self.rows = 0
        self.squared_error = self.total = self.total_squares = 0.0

    def add(self, y, predicted: np.ndarray) -> None:
        y = np.asarray(y, dtype=float)
        self.rows += len(y)
        self.squared_error += float(np.sum((np.asarray(predicted, dtype=float) - y) ** 2))
        self.total += float(y.sum())
        self.total_squares += float(np.sum(y ** 2))

    def scores(self) -> dict:
        if not self.rows:
            return {"loss": None, "r2": None}
        spread = self.total_squares - self.total ** 2 / self.rows
        return {"loss": self.squared_error / self.rows,
                "r2": 1 - self.squared_error / spread if spread > 0 else None}


# The trace's score besides the loss, by task, as trace rows and the Metrics artifact name it.
TRACE_SCORE = {Task.CLASSIFICATION: "accuracy", Task.REGRESSION: "r2"}


def trace_totals(task: str, classes=None):
    """What adds up a trace row's loss and score over chunks, for ``task``: ``add(y, output)``
    (the probabilities of a classifier, the predictions of a regressor), then ``scores()``
    (``loss``, and ``accuracy`` or ``r2``)."""
    return LossAndAccuracy(classes) if task == Task.CLASSIFICATION else SquaredErrorAndR2()


def score_regression(y_true, predicted: np.ndarray) -> dict[str, float | None]:
    """RMSE, MAE and R² (None where undefined: R² of a constant label)."""
    y_true, predicted = np.asarray(y_true, dtype=float), np.asarray(predicted, dtype=float)
    if not len(y_true):
        return dict.fromkeys(GateMetric.REGRESSION)
    errors = predicted - y_true
    spread = float(np.sum((y_true - y_true.mean()) ** 2))
    return {"rmse": float(np.sqrt(np.mean(errors ** 2))), "mae": float(np.mean(np.abs(errors))),
            "r2": 1 - float(np.sum(errors ** 2)) / spread if spread > 0 else None}


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
    loss = totals.scores()["loss"]
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
    """A model's predictions for labelled rows: all evaluate keeps of the rows. A regressor's
    have no classes and no probabilities (zero columns)."""

    labels: np.ndarray
    probabilities: np.ndarray
    classes: np.ndarray
    predicted: np.ndarray  # the classes predicted (the model's decision threshold applied)
    task: str = Task.CLASSIFICATION

    @property
    def regression(self) -> bool:
        return self.task == Task.REGRESSION

    def errors(self) -> np.ndarray:
        """A regressor's prediction minus the label, per row."""
        return np.asarray(self.predicted, dtype=float) - np.asarray(self.labels, dtype=float)

    def right(self, tolerance: float | None = None) -> np.ndarray:
        """Per row: whether the predicted class is the label; for a regressor, whether the
        prediction is within ``tolerance`` of it (see :func:`right_answers`)."""
        if self.regression:
            return np.abs(self.errors()) <= tolerance
        return self.predicted == self.labels

    def subset(self, rows: np.ndarray) -> Predictions:
        return Predictions(self.labels[rows], self.probabilities[rows], self.classes,
                           self.predicted[rows], self.task)

    def scores(self) -> dict[str, float | None]:
        if self.regression:
            return score_regression(self.labels, self.predicted)
        return score_predictions(self.labels, self.probabilities, self.classes, self.predicted)

    def confusion(self) -> tuple[list[str], list[list[int]]]:
        """Class names and the confusion matrix (rows: true class, columns: predicted); none for
        a regressor."""
        from sklearn.metrics import confusion_matrix

        if self.regression:
            return [], []
        matrix = confusion_matrix(self.labels, self.predicted, labels=self.classes)
        return [str(c) for c in self.classes], matrix.astype(int).tolist()

    def roc_points(self, max_points: int = 50):
        """FPR, TPR and thresholds of the ROC curve for binary labels, thinned; else None."""
        from sklearn.metrics import roc_curve

        if self.regression or len(self.classes) != 2 or len(np.unique(self.labels)) != 2:
            return None
        fpr, tpr, thresholds = roc_curve(self.labels == self.classes[1],
                                         self.probabilities[:, 1])
        keep = np.unique(np.linspace(0, len(fpr) - 1, min(max_points, len(fpr))).astype(int))
        finite = np.where(np.isfinite(thresholds[keep]), thresholds[keep], 1.0)
        return fpr[keep].tolist(), tpr[keep].tolist(), finite.tolist()


def right_answers(champion: Predictions, challenger: Predictions) -> tuple[np.ndarray,
                                                                              np.ndarray]:
    """Per row, whether each model is right: the class, or for regression a prediction within
    the champion's median absolute error on these rows of the label (the same bar for both, so
    the champion is right on about half of them and a change in its world, or in which model is
    closer, shows in how often each is right, as for classes)."""
    if not champion.regression:
        return champion.right(), challenger.right()
    tolerance = float(np.median(np.abs(champion.errors()))) if len(champion.labels) else 0.0
    return champion.right(tolerance), challenger.right(tolerance)


# What each metric's per-row part weighs, as the record and the evaluation note say it.
PER_ROW_WEIGHT = {GateMetric.ACCURACY: "the rows where exactly one model is right",
                  GateMetric.RMSE: "the rows' squared differences in squared error",
                  GateMetric.R2: "the rows' squared differences in squared error",
                  GateMetric.MAE: "the rows' squared differences in absolute error"}


def row_losses(metric: str, errors: np.ndarray) -> np.ndarray:
    """Per row, the loss a regression metric is the mean of (before its root or its scaling):
    absolute errors for MAE, squared errors for RMSE and R²."""
    return np.abs(errors) if metric == GateMetric.MAE else errors ** 2


def loss_differences(metric: str, y, challenger_predicted, champion_predicted) -> np.ndarray:
    """Per row, the challenger's loss minus the champion's (:func:`row_losses`)."""
    return (row_losses(metric, challenger_predicted - y)
            - row_losses(metric, champion_predicted - y))


def per_row_weights(metric: str, challenger: Predictions, champion: Predictions):
    """Per row, its weight in the paired difference of ``metric`` between two models when they
    are equal: the square of the difference of the row's parts (for accuracy 1 where exactly one
    model is right, the rows McNemar's test counts; for RMSE, R² and MAE the
    :func:`loss_differences`). None for a metric that is not a mean of per-row parts (F1, ROC
    AUC)."""
    if metric == GateMetric.ACCURACY:
        return (challenger.right() != champion.right()).astype(float)
    if metric not in PER_ROW_WEIGHT:
        return None
    labels = np.asarray(challenger.labels, dtype=float)
    return loss_differences(metric, labels, np.asarray(challenger.predicted, dtype=float),
                            np.asarray(champion.predicted, dtype=float)) ** 2


# How retrain's cross-fitted predictions travel to evaluate: columns beside the rows' own.
CROSS_FIT_CLASS = "__cross_fitted_class"  # the predicted class's index in the model's classes
CROSS_FIT_PROBABILITY = "__cross_fitted_p"  # + a class's index: its probability
CROSS_FIT_VALUE = "__cross_fitted_value"  # a regressor's prediction


def cross_fitted_columns(probabilities: np.ndarray | None, predicted: np.ndarray) -> dict:
    """The columns that carry cross-fitted predictions: for a classifier the probabilities (in
    the final model's class order) and ``predicted`` as the class's index; for a regressor
    (``probabilities`` None) the predicted values."""
    if probabilities is None:
        return {CROSS_FIT_VALUE: np.asarray(predicted, dtype=float)}
    return {CROSS_FIT_CLASS: predicted,
            **{f"{CROSS_FIT_PROBABILITY}{i}": probabilities[:, i]
               for i in range(probabilities.shape[1])}}


def split_cross_fitted(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows without the cross-fitted columns, and those columns."""
    columns = [c for c in frame.columns if c in (CROSS_FIT_CLASS, CROSS_FIT_VALUE)
               or str(c).startswith(CROSS_FIT_PROBABILITY)]
    return frame.drop(columns=columns), frame[columns]


def with_cross_fitted(predictions: Predictions, columns: pd.DataFrame,
                      rows: np.ndarray) -> Predictions:
    """``predictions`` with the cross-fitted answers in place of the model's for ``rows``."""
    if not rows.any():
        return predictions
    probabilities = predictions.probabilities.copy()
    predicted = predictions.predicted.copy()
    if predictions.regression:
        predicted[rows] = columns.loc[rows, CROSS_FIT_VALUE].to_numpy(dtype=float)
    else:
        width = len(predictions.classes)
        probabilities[rows] = columns.loc[rows, [f"{CROSS_FIT_PROBABILITY}{i}"
                                                 for i in range(width)]].to_numpy(dtype=float)
        predicted[rows] = predictions.classes[columns.loc[rows, CROSS_FIT_CLASS]
                                              .to_numpy(dtype=int)]
    return Predictions(predictions.labels, probabilities, predictions.classes, predicted,
                       predictions.task)


def model_output(model, features: pd.DataFrame) -> np.ndarray:
    """What a fitted model answers for rows: a classifier's class probabilities (one-hot of its
    predictions when it has none), a regressor's predictions."""
    from components.ml.estimators import can_give_probabilities
    from components.ml.models import task_of

    if task_of(model) == Task.REGRESSION:
        return np.asarray(model.predict(features), dtype=float)
    if can_give_probabilities(model):
        return model.predict_proba(features)
    predicted = np.asarray(model.predict(features))
    classes = np.asarray(model.classes_)
    return (predicted[:, None] == classes[None, :]).astype(float)


def predict(model, data, label_column: str) -> Predictions:
    """Run a fitted Pipeline built here over labelled rows a chunk at a time.

    ``data``: a DataFrame, or a Parquet path or :class:`components.data.chunks.Table`.
    """
    from components.ml.models import predicted_classes, task_of

    task = task_of(model)
    labels, outputs = [], []
    for chunk in as_table(data).chunks():
        features, chunk_labels = split_features(chunk, label_column)
        labels.append(chunk_labels.to_numpy(dtype=float) if task == Task.REGRESSION
                      else chunk_labels.to_numpy())
        outputs.append(model_output(model, features))
    if task == Task.REGRESSION:
        predicted = np.concatenate(outputs) if outputs else np.empty(0)
        return Predictions(np.concatenate(labels) if labels else np.empty(0),
                           np.empty((len(predicted), 0)), np.empty(0), predicted, task)
    classes = np.asarray(model.classes_)
    if not labels:
        return Predictions(np.empty(0, dtype=classes.dtype), np.empty((0, len(classes))),
                           classes, np.empty(0, dtype=classes.dtype))
    probabilities = np.concatenate(outputs)
    return Predictions(np.concatenate(labels), probabilities, classes,
                       predicted_classes(model, probabilities))


def score_model(model, data, label_column: str) -> dict[str, float | None]:
    """Score a fitted Pipeline built here on labelled rows."""
    return predict(model, data, label_column).scores()
