"""Drift: fires on the demo's drifted months, stays quiet on data from the same distribution."""

import numpy as np
import pandas as pd
import pytest

from app import demo_data
from components.data.drift import (
    DRIFT,
    MIN_BATCH_ROWS,
    OK,
    detect_drift,
    population_stability_index,
    reference_statistics,
)
from components.data.schema import SOURCE_FILE_COLUMN, infer_schema
from components.outcomes import ValidateDecision
from components.params import DEFAULT_THRESHOLDS
from components.policies import trigger_decision
from components.records import Finding, ValidationReport
from components.reports import drift_html, drift_markdown

INVALID, RETRAIN, SKIPPED = (ValidateDecision.INVALID_DATA, ValidateDecision.RETRAIN,
                             ValidateDecision.SKIPPED)

LABEL, TIME = demo_data.LABEL_COLUMN, demo_data.TIMESTAMP_COLUMN


@pytest.fixture(scope="module")
def reference(demo_folder):
    """Statistics of the demo's initial quarter, the first champion's training data."""
    initial = pd.read_csv(demo_folder / "customers_2025-01_initial.csv")
    schema = infer_schema(initial, label_column=LABEL, timestamp_column=TIME)
    return reference_statistics(initial, schema)


def _same_distribution_month(seed: int, rows: int = 1000) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return demo_data.customers(rows, demo_data.month_start(3), demo_data.month_start(4), 0.0, rng)


def test_psi_matches_the_formula():
    """Check PSI against a hand computation, and that identical shares give 0."""
    reference, new = np.array([0.5, 0.3, 0.2]), np.array([0.3, 0.3, 0.4])
    expected = (0.3 - 0.5) * np.log(0.3 / 0.5) + (0.4 - 0.2) * np.log(0.4 / 0.2)
    assert population_stability_index(reference, new) == pytest.approx(expected)
    assert population_stability_index(reference, reference) == 0.0


@pytest.mark.parametrize("month", ["2025-06", "2025-08", "2025-10", "2025-12"])
def test_drift_fires_on_drifted_demo_months(demo_folder, reference, month):
    """Check that the growing web activity of the later demo months is reported as drift."""
    new = pd.read_csv(demo_folder / f"customers_{month}.csv")
    report = detect_drift(new, reference, DEFAULT_THRESHOLDS)
    assert "web_visits_last_month" in report.drifted
    web = next(f for f in report.features if f.feature == "web_visits_last_month")
    assert web.statistic >= 0.25
    assert web.ks_pvalue < 1e-6


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_no_drift_on_a_month_from_the_same_distribution(reference, seed):
    """Check that a fresh sample of the initial distribution drifts nowhere (label included)."""
    report = detect_drift(_same_distribution_month(seed), reference, DEFAULT_THRESHOLDS)
    assert report.drifted == []
    assert len(report.features) == 9  # eight features and the label


def test_categorical_and_label_drift(reference):
    """Check that a moved category mix (JS distance) and a moved class prior are drift."""
    new = _same_distribution_month(21)
    new["region"] = np.where(np.arange(len(new)) % 2 == 0, "west", new["region"])
    new[LABEL] = (np.arange(len(new)) % 10 == 0).astype(int)
    report = detect_drift(new, reference, DEFAULT_THRESHOLDS)
    assert set(report.drifted) == {"region", LABEL}
    label = next(f for f in report.features if f.is_label)
    assert label.test == "js"
    assert label.statistic > 0.1


def test_unseen_categories_count_as_drift(reference):
    """Check that values the reference never had are pooled as '(unseen)' and move JS."""
    new = _same_distribution_month(22)
    new["membership"] = "platinum"
    membership = next(f for f in detect_drift(new, reference, DEFAULT_THRESHOLDS).features
                      if f.feature == "membership")
    assert membership.verdict == DRIFT
    assert membership.new[-1] == pytest.approx(1.0)
    assert membership.bins[-1] == "(unseen)"


def test_reports_render_every_feature(demo_folder, reference):
    """Check that the Markdown table and the HTML page hold one entry per feature."""
    new = pd.read_csv(demo_folder / "customers_2025-08.csv")
    report = detect_drift(new, reference, DEFAULT_THRESHOLDS)
    markdown = drift_markdown(report, 0.05)
    html = drift_html(report)
    for entry in report.features:
        assert f"| {entry.feature}" in markdown
    assert html.count("<svg") == len(report.features) == 9
    assert "web_visits_last_month <span class='drift'>drift" in html
    verdicts = {f.feature: f.verdict for f in report.features}
    assert verdicts["age"] == OK
    assert verdicts["region"] != DRIFT


def test_statistics_are_small_and_need_no_raw_rows(reference):
    """Check that the stored reference is a summary (bins, shares, sketch), not the rows."""
    web = reference["features"]["web_visits_last_month"]
    assert sum(web["shares"]) == pytest.approx(1.0)
    assert len(web["shares"]) == len(web["edges"]) + 1
    assert len(web["sketch"]) == 500
    assert reference["rows"] == 1000
    assert set(reference["label"]["shares"]) == {"0", "1"}


def _report(errors=0, labelled=300):
    return ValidationReport([Finding("error", "bad")] * errors, rows=labelled,
                            labelled_rows=labelled)


def test_trigger_policies(demo_folder, reference):
    """Check always / drift / min_rows decisions, and that errors always win."""
    drifted = detect_drift(pd.read_csv(demo_folder / "customers_2025-10.csv"), reference,
                           DEFAULT_THRESHOLDS)
    calm = detect_drift(_same_distribution_month(11), reference, DEFAULT_THRESHOLDS)
    assert trigger_decision(_report(), calm, retrain_when="always", min_rows=100)[0] == RETRAIN
    assert trigger_decision(_report(), drifted, retrain_when="drift", min_rows=100) == (
        RETRAIN, "drift detected in web_visits_last_month, will_buy")
    decision, reason = trigger_decision(_report(), calm, retrain_when="drift", min_rows=100)
    assert decision == SKIPPED
    assert reason.startswith("no drift detected (retrain_when=drift)")
    assert trigger_decision(_report(), None, retrain_when="drift", min_rows=100)[0] == RETRAIN
    assert trigger_decision(_report(labelled=150), calm, retrain_when="min_rows", min_rows=500) == (
        SKIPPED, "waiting for more rows: 150 labelled new row(s), retraining from 500 "
                 "(retrain_when=min_rows)")
    assert trigger_decision(_report(labelled=600), calm, retrain_when="min_rows", min_rows=500)[0] == RETRAIN
    assert trigger_decision(_report(errors=1), drifted, retrain_when="drift", min_rows=100)[0] == INVALID


def _calm_then_moved(seed: int, *, one_file: bool):
    """A calm month left pending by a skipped run, then a month whose age and income moved."""
    rng = np.random.default_rng(seed)
    calm = demo_data.customers(200, demo_data.month_start(3), demo_data.month_start(4), 0.0, rng)
    moved = demo_data.customers(200, demo_data.month_start(4), demo_data.month_start(5), 0.0,
                                rng)
    moved["age"] += 9
    moved["income"] *= 1.25
    calm[SOURCE_FILE_COLUMN] = "pending.csv" if not one_file else "export.csv"
    moved[SOURCE_FILE_COLUMN] = "new.csv" if not one_file else "export.csv"
    return pd.concat([calm, moved], ignore_index=True)


@pytest.mark.parametrize("one_file", [False, True], ids=["two-files", "one-file-two-months"])
def test_a_drifted_batch_pooled_with_a_calm_one_is_found(reference, one_file):
    """Check that a shift the pooled PSI hides (under 0.25) is found in its own batch: each file,
    or each calendar month of a file that spans several."""
    new = _calm_then_moved(0, one_file=one_file)
    report = detect_drift(new, reference, DEFAULT_THRESHOLDS, timestamp_column=TIME)
    pooled = {f.feature: f for f in report.features}
    assert pooled["age"].verdict != DRIFT
    assert pooled["income"].verdict != DRIFT
    moved = "export.csv 2025-05" if one_file else "new.csv 2025-05"
    assert set(report.drifted) == {"age", "income"}
    assert report.drifted_batches("age") == [moved]
    assert [b.rows for b in report.batches] == [200, 200]
    decision, reason = trigger_decision(_report(), report, retrain_when="drift", min_rows=100)
    assert decision == RETRAIN
    assert reason == f"drift detected in age (in {moved}), income (in {moved})"
    markdown = drift_markdown(report, 0.05)
    assert f"| {moved} | 200 | age, income |" in markdown
    assert report.to_dict()["batches"][1]["drifted"] == ["age", "income"]


def test_small_batches_are_shown_but_not_judged(reference):
    """Check that a batch under MIN_BATCH_ROWS rows never decides drift on its own."""
    new = _calm_then_moved(1, one_file=False)
    small = new[new[SOURCE_FILE_COLUMN] == "new.csv"].head(MIN_BATCH_ROWS - 1)
    rows = pd.concat([new[new[SOURCE_FILE_COLUMN] == "pending.csv"], small], ignore_index=True)
    report = detect_drift(rows, reference, DEFAULT_THRESHOLDS, timestamp_column=TIME)
    assert [b.judged for b in report.batches] == [True, False]
    assert report.drifted == []
    assert "not judged (under 100 rows)" in drift_markdown(report, 0.05)


def test_calm_batches_rarely_drift_by_chance(reference):
    """Check the chance check: 40 calm 200-row files drift nowhere, pooled or alone."""
    frames = []
    for seed in range(40):
        month = _same_distribution_month(100 + seed, rows=200)
        month[SOURCE_FILE_COLUMN] = f"month-{seed:02d}.csv"
        frames.append(month)
    report = detect_drift(pd.concat(frames, ignore_index=True), reference, DEFAULT_THRESHOLDS)
    assert len(report.batches) == 40
    assert report.drifted == []
