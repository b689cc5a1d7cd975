"""End to end: a number to predict. The demo's customers with ``spend_next_month`` as the label
go through the compiled YAML under kfp.local (`retrain run --json`) over several months: the task
is inferred, the gate decides on RMSE in its own direction, the model serves numbers, and a label
that stops being numbers is invalid-data that changes nothing."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from app import demo_data

pytestmark = pytest.mark.slow
CUTOFFS = demo_data.demo_cutoffs()
LABEL = demo_data.REGRESSION_LABEL_COLUMN


def retrain(root: Path, cutoff: str, *extra: str) -> subprocess.CompletedProcess:
    """``retrain run --json`` on the spend demo's source and registry under ``root``."""
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "run", "--json", "--source-uri", str(root / "source"),
         "--registry-uri", str(root / "registry"), "--model-name", "spend",
         "--label-column", LABEL, "--timestamp-column", demo_data.TIMESTAMP_COLUMN,
         "--cutoff", cutoff, "--pipeline-root", str(root / "pipeline_root"), *extra],
        capture_output=True, text=True, timeout=300)


def record_of(completed) -> dict:
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def spend(tmp_path_factory):
    """The cold start on the initial quarter, then two months, as a user would run them."""
    root = tmp_path_factory.mktemp("spend")
    demo = root / "demo"
    demo_data.write_demo_data(demo, months=3, task="regression")
    (root / "source").mkdir()
    records = []
    for month, name in enumerate(sorted(p.name for p in demo.glob("*.csv"))[:3]):
        (root / "source" / name).write_bytes((demo / name).read_bytes())
        records.append(record_of(retrain(root, CUTOFFS[month])))
    return root, demo, records


def test_a_numeric_label_is_regression_end_to_end(spend):
    """Check the cold start: the task inferred and recorded, RMSE as the gate's metric with no
    threshold by default, the regression scores in the record, the version and its schema."""
    root, _, records = spend
    cold = records[0]
    assert cold["status"] == "deployed", cold["reason"]
    assert (cold["metric"], cold["threshold"]) == ("rmse", None)
    assert set(cold["challenger"]["metrics"]) == {"rmse", "mae", "r2"}
    assert cold["challenger"]["metrics"]["r2"] > 0.5
    assert cold["reason"].startswith("cold start: no champion yet; challenger rmse ")
    assert cold["gate"]["better"] == "lower"
    assert isinstance(cold["gate"]["baseline"]["answer"], float)  # the mean of the rows
    version = root / "registry" / "spend" / "versions" / "v0001"
    metadata = json.loads((version / "metadata.json").read_text())
    assert (metadata["task"], metadata["classes"]) == ("regression", [])
    schema = json.loads((version / "schema.json").read_text())
    assert schema["label"]["task"] == "regression"
    assert "more than 20 distinct whole numbers" in schema["label"]["task_reason"] or \
        "not whole" in schema["label"]["task_reason"]
    assert (cold["task"], cold["task_reason"]) == ("regression", schema["label"]["task_reason"])
    assert records[1]["task"] == "regression"
    training = json.loads((version / "training.json").read_text())
    assert {"train_r2", "validation_r2"} <= set(training["trace"][-1])


def test_later_months_are_judged_on_rmse_in_its_direction(spend):
    """Check that each later month compares champion and challenger on RMSE, lower being
    better, with the paired interval in the reason."""
    _, _, records = spend
    for record in records[1:]:
        assert record["status"] in ("deployed", "rejected")
        assert record["reason"].startswith("challenger rmse "), record["reason"]
        gate = record["gate"]
        assert gate["metric"] == "rmse" and gate["better"] == "lower"
        assert gate["ci_low"] <= gate["delta"] <= gate["ci_high"]
        assert gate["evaluation"]["rows"] >= 200


def test_the_evaluation_report_shows_predicted_against_actual(spend):
    """Check that evaluate wrote the HTML page of predictions against the actual values and
    the residuals (SVG charts, no script)."""
    root, _, _ = spend
    [page] = sorted((root / "pipeline_root").glob("retrain-pipeline-*/evaluate/"
                                                  "evaluation_report"))[-1:]
    text = page.read_text()
    assert "Predicted against actual" in text and "Residuals" in text
    assert "<svg" in text and "<script" not in text


def test_a_label_that_turns_to_words_is_invalid_data_and_changes_nothing(spend, tmp_path):
    """Check that a month whose label holds words is invalid-data naming the column and an
    example, and that the champion stays."""
    import shutil

    root, demo, _ = spend
    copy = tmp_path / "copy"
    shutil.copytree(root / "source", copy / "source")
    shutil.copytree(root / "registry", copy / "registry")
    pointer = (copy / "registry" / "spend" / "champion.json").read_bytes()
    month = pd.read_csv(sorted(demo.glob("*.csv"))[3])
    month[LABEL] = month[LABEL].map(lambda v: "high" if v > 60 else "low")
    month.to_csv(copy / "source" / "customers_2025-06.csv", index=False)
    record = record_of(retrain(copy, CUTOFFS[3]))
    assert record["status"] == "invalid-data"
    [finding] = [f for f in record["findings"] if f["check"] == "type"]
    assert finding["column"] == LABEL and "are not numbers, e.g. '" in finding["problem"]
    assert (copy / "registry" / "spend" / "champion.json").read_bytes() == pointer
    (copy / "source" / "customers_2025-06.csv").write_bytes(sorted(demo.glob("*.csv"))[3]
                                                              .read_bytes())
    asked = record_of(retrain(copy, CUTOFFS[3], "--task", "classification"))
    assert asked["status"] == "invalid-data"
    [finding] = [f for f in asked["findings"] if f["check"] == "task"]
    assert finding["column"] == LABEL
    assert "a model's task never changes" in finding["problem"]
    assert (copy / "registry" / "spend" / "champion.json").read_bytes() == pointer


@pytest.mark.parametrize("flags, name", [
    (["--task", "regression", "--decision-threshold", "tuned"], "decision_threshold"),
    (["--task", "regression", "--metric", "accuracy"], "metric"),
], ids=["decision-threshold", "metric"])
def test_classification_only_parameters_are_refused_for_regression(tmp_path, flags, name):
    """Check that a classification-only parameter with a regression task exits 2 with the
    usual parameter message, before anything runs."""
    completed = retrain(tmp_path, CUTOFFS[0], *flags)
    assert completed.returncode == 2
    assert f"The '{name}' parameter of retrain run must be" in completed.stderr
    assert "for a regression task" in completed.stderr
    assert not (tmp_path / "registry").exists()
