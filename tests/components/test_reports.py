"""The reports the KFP UI shows of a run: evaluate's page of both models on the evaluation
rows, for a regressor and a classifier, rendered offline in headless Chromium."""

import numpy as np
import pytest

from components.ml.metrics import Predictions
from components.reports import evaluation_html
from tests.helpers import decision_record, screenshot_offline


def _regression_record():
    import dataclasses

    record = decision_record("v0001", reason="challenger rmse 9.9 vs champion v0001 12.0")
    training = dataclasses.replace(record.challenger.training, task="regression", classes=[])
    record.challenger.training = training
    record.challenger.metrics = {"rmse": 9.9, "mae": 7.5, "r2": 0.81}
    record.champion.metrics = {"rmse": 12.0, "mae": 9.1, "r2": 0.72}
    record.metric = "rmse"
    return record


def _regressors(rows=500):
    rng = np.random.default_rng(0)
    y = rng.normal(100, 20, rows)
    empty = np.empty((rows, 0))
    return (Predictions(y, empty, np.empty(0), y + rng.normal(0, 10, rows), "regression"),
            Predictions(y, empty, np.empty(0), y + rng.normal(3, 12, rows), "regression"))


def test_a_regressors_report_shows_predicted_against_actual_and_residuals():
    """Check the regression page: both models' scores, a scatter and a residual histogram as
    inline SVG, no script and no confusion matrix."""
    challenger, champion = _regressors()
    text = evaluation_html(_regression_record(), challenger, champion)
    assert "Predicted against actual (500 evaluation rows)" in text
    assert "Residuals (predicted - actual)" in text
    assert text.count("<svg") == 2
    assert "<script" not in text and "confusion" not in text
    assert "<th>rmse</th><td>12.0000</td><td>9.9000</td>" in text


def test_a_classifiers_report_shows_its_confusion_matrix():
    """Check the classification page: the challenger's confusion matrix as a table."""
    y = np.array([0, 0, 1, 1, 1])
    predictions = Predictions(y, np.eye(2)[[0, 1, 1, 1, 0]], np.array([0, 1]),
                              np.array([0, 1, 1, 1, 0]))
    text = evaluation_html(decision_record("v0001"), predictions)
    assert "<tr><th>actual 0</th><td>1</td><td>1</td></tr>" in text
    assert "<tr><th>actual 1</th><td>1</td><td>2</td></tr>" in text


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_chromium_renders_the_evaluation_report_offline_without_errors(tmp_path, chromium,
                                                                       task):
    """Check the page in headless Chromium with every network request refused: a screenshot,
    no console error, no failed load."""
    if task == "regression":
        text = evaluation_html(_regression_record(), *_regressors())
    else:
        y = np.arange(60) % 2
        text = evaluation_html(decision_record("v0001"), Predictions(
            y, np.eye(2)[y], np.array([0, 1]), y))
    page, shot = tmp_path / "evaluation.html", tmp_path / "evaluation.png"
    page.write_text(text)
    completed = screenshot_offline(chromium, page, shot, tmp_path / "profile", "1000,1300")
    assert shot.exists(), completed.stderr[-2000:]
    assert shot.stat().st_size > (30_000 if task == "regression" else 5_000)
    assert "CONSOLE" not in completed.stderr, completed.stderr[-2000:]
    assert "net::ERR" not in completed.stderr, completed.stderr[-2000:]
