"""Policies: the deploy gate and the trigger policy decide, and say why."""

import numpy as np
import pytest

from components.ml.comparison import compare
from components.outcomes import GateDecision, ValidateDecision
from components.policies import (
    NON_INFERIORITY_MARGIN,
    FreshComparison,
    NewestBatch,
    gate_decision,
    trigger_decision,
)
from components.records import Finding, ValidationReport

DEPLOY, REJECT = GateDecision.DEPLOY, GateDecision.REJECT


def _paired(rows: int, champion_right: int, challenger_right: int, both_right: int,
            confidence: float = 0.95):
    """A paired comparison of two classifiers on ``rows`` binary rows: the champion right on
    ``champion_right`` of them, the challenger on ``challenger_right``, both on ``both_right``."""
    y = np.zeros(rows, dtype=int)
    champion = np.ones(rows, dtype=int)  # wrong unless set right below
    challenger = np.ones(rows, dtype=int)
    order = np.random.default_rng(0).permutation(rows)
    only_champion = champion_right - both_right
    only_challenger = challenger_right - both_right
    champion[order[:both_right + only_champion]] = 0
    challenger[order[:both_right]] = 0
    challenger[order[both_right + only_champion:both_right + only_champion
                     + only_challenger]] = 0
    probabilities = np.eye(2)
    return compare("accuracy", y, champion_predicted=champion,
                   champion_probabilities=probabilities[champion],
                   challenger_predicted=challenger,
                   challenger_probabilities=probabilities[challenger],
                   classes=np.array([0, 1]), confidence=confidence, seed=7)


def _gate(comparison, *, threshold=0.80, min_improvement=0.0, min_rows=300):
    return gate_decision(comparison, comparison.challenger, metric="accuracy",
                         threshold=threshold, min_improvement=min_improvement,
                         rows=comparison.rows, min_evaluation_rows=min_rows, champion_version="v0001")


def test_a_clear_gain_deploys_and_the_reason_names_the_interval():
    """Check that 0.872 against 0.801 on 412 rows deploys, and the reason reads as the issue's."""
    comparison = _paired(412, champion_right=330, challenger_right=359, both_right=320)
    verdict = _gate(comparison)
    assert verdict.decision == DEPLOY
    assert verdict.reason.startswith("challenger accuracy 0.871 vs champion v0001 0.801 on "
                                     "412 rows: +0.070 (95% CI +0."), verdict.reason
    assert comparison.ci_low > 0.03
    assert comparison.ci_high < 0.11
    assert comparison.p_value < 1e-4
    assert "exact McNemar" in comparison.method


def test_the_seed_gate_on_40_rows_no_longer_deploys_a_noisy_gain():
    """Check that one more right answer in 40 (0.725 against 0.700) is not called better."""
    verdict = _gate(_paired(40, champion_right=28, challenger_right=29, both_right=24),
                    threshold=0.6)
    assert verdict.decision == REJECT
    assert "does not beat the champion by more than 0 with 95% confidence" in verdict.reason


def test_the_interval_must_clear_min_improvement():
    """Check that a gain whose lower bound is above 0 but not above min_improvement is kept."""
    comparison = _paired(2000, champion_right=1700, challenger_right=1760, both_right=1680)
    assert 0 < comparison.ci_low < 0.05
    assert _gate(comparison).decision == DEPLOY
    assert _gate(comparison, min_improvement=0.05).decision == REJECT


def test_a_decaying_champion_is_replaced_by_a_challenger_that_is_not_worse_for_lack_of_rows():
    """Check that on fewer than min_evaluation_rows a champion below the threshold gives way to
    an equal challenger above it, and not to one that may be more than the margin worse; and
    that on enough rows the challenger must be better with confidence (a month of wrong labels
    makes any champion look decayed, and there the rows do not lack)."""
    equal = _paired(200, champion_right=158, challenger_right=164, both_right=154)
    assert equal.champion < 0.8 <= equal.challenger
    assert -NON_INFERIORITY_MARGIN < equal.ci_low < 0
    verdict = _gate(equal)
    assert verdict.decision == DEPLOY
    assert "the champion is below the threshold" in verdict.reason
    assert "on fewer than min_evaluation_rows 300, the challenger is not worse" in verdict.reason
    assert _gate(equal, min_rows=200).decision == REJECT
    worse = _paired(60, champion_right=46, challenger_right=46, both_right=36)
    assert worse.ci_low < -NON_INFERIORITY_MARGIN
    assert _gate(worse, threshold=0.9).decision == REJECT


def test_below_the_threshold_a_challenger_needs_a_champion_below_it_too():
    """Check that a challenger under the threshold never replaces a champion above it, and does
    replace a champion further below it (serving the less bad model)."""
    worse = _gate(_paired(500, champion_right=420, challenger_right=380, both_right=370))
    assert worse.decision == REJECT
    assert "the challenger is below the threshold 0.800" in worse.reason
    both_low = _gate(_paired(500, champion_right=300, challenger_right=380, both_right=290))
    assert both_low.decision == DEPLOY
    assert "the champion is below the threshold 0.800 and the challenger is better by more " \
           "than 0 with 95% confidence" in both_low.reason


def test_cold_start_uses_the_threshold_and_reports_the_interval():
    """Check the cold-start gate: the threshold alone decides; the reason carries the rows."""
    verdict = gate_decision(None, 0.85, metric="accuracy", threshold=0.8, min_improvement=0.0,
                            rows=300, min_evaluation_rows=300, cold_interval=(0.81, 0.89))
    assert verdict.decision == DEPLOY
    assert verdict.cold_start
    assert verdict.reason == ("cold start: no champion yet; challenger accuracy 0.850 >= "
                              "threshold 0.800 on 300 rows (95% CI 0.810 to 0.890)")
    below = gate_decision(None, 0.7, metric="accuracy", threshold=0.8, min_improvement=0.0,
                          rows=300, min_evaluation_rows=300)
    assert below.decision == REJECT
    assert "below the threshold" in below.reason


def test_an_undefined_challenger_score_is_rejected():
    """Check that a metric undefined on the rows (one class only, ROC AUC) never deploys."""
    verdict = gate_decision(None, float("nan"), metric="roc_auc", threshold=0.5,
                            min_improvement=0.0, rows=12, min_evaluation_rows=300)
    assert verdict.decision == REJECT
    assert "undefined on the 12 evaluation rows" in verdict.reason


class _Drift:
    """What the trigger policy reads of a drift report."""

    def __init__(self, drifted):
        self.drifted = drifted

    def strongest(self):
        return "largest PSI 0.300 (x1, drift at 0.25)"

    def drifted_text(self):
        return ", ".join(self.drifted)


VALID = ValidationReport([], rows=200, labelled_rows=200)
FEW = ValidationReport([], rows=50, labelled_rows=50)
INVALID = ValidationReport([Finding("error", "required column is missing", "a.csv", "x1")],
                           rows=200, labelled_rows=200)


@pytest.mark.parametrize(
    "report, drift, policy, expected, reason",
    [
        (INVALID, _Drift(["x1"]), "drift", ValidateDecision.INVALID_DATA,
         "invalid data: file a.csv, column 'x1': required column is missing"),
        (VALID, _Drift([]), "always", ValidateDecision.RETRAIN, "ok: 200 new rows passed"),
        (VALID, _Drift([]), "drift", ValidateDecision.SKIPPED,
         "no drift detected (retrain_when=drift): largest PSI 0.300"),
        (VALID, _Drift(["x1"]), "drift", ValidateDecision.RETRAIN, "drift detected in x1"),
        (VALID, None, "drift", ValidateDecision.RETRAIN, "no reference statistics"),
        (FEW, None, "min_rows", ValidateDecision.SKIPPED,
         "waiting for more rows: 50 labelled new row(s), retraining from 100"),
        (VALID, None, "min_rows", ValidateDecision.RETRAIN, "ok: 200 new rows"),
    ],
    ids=["errors-always-win", "always", "drift-calm", "drift-found", "drift-no-reference",
         "min-rows-waits", "min-rows-reached"],
)
def test_trigger_policy(report, drift, policy, expected, reason):
    """Check the validate decision and its reason under each retrain_when policy."""
    decision, why = trigger_decision(report, drift, retrain_when=policy, min_rows=100)
    assert decision == expected
    assert why.startswith(reason), why


def _skewed(rows: int, positives: int, challenger_right: int, champion_right: int):
    """Binary labels, ``positives`` of them 1; each model right on the first rows it is."""
    from components.ml.metrics import Predictions

    y = np.array([1] * positives + [0] * (rows - positives))
    probabilities = np.eye(2)

    def answers(right: int) -> Predictions:
        predicted = np.where(np.arange(rows) < right, y, 1 - y)
        return Predictions(y, probabilities[predicted], np.array([0, 1]), predicted)

    return answers(challenger_right), answers(champion_right)


def test_a_challenger_that_does_not_beat_the_majority_class_is_never_deployed():
    """Check the trivial baseline: on 400 rows that are 95% one class, a cold start of accuracy
    0.957 (the issue's case) does not beat always answering that class with confidence, so it
    is rejected, naming the baseline, although it clears the threshold."""
    from components.stages.evaluate import against_baseline

    challenger, _ = _skewed(400, 20, challenger_right=383, champion_right=0)
    baseline = against_baseline("accuracy", challenger, 0.95, seed=1)
    assert baseline.answer == 0
    assert baseline.comparison.champion == 0.95
    verdict = gate_decision(None, 0.9575, metric="accuracy", threshold=0.8, min_improvement=0.0,
                            rows=400, min_evaluation_rows=300, baseline=baseline)
    assert verdict.decision == REJECT
    assert verdict.reason.startswith("cold start: no champion yet; challenger accuracy 0.958 >= "
                                     "threshold 0.800 on 400 rows")
    assert verdict.reason.endswith("; but the challenger does not beat always answering 0 "
                                   "(accuracy 0.950) with 95% confidence")


def test_a_champion_below_the_majority_class_is_said_in_the_reason():
    """Check that a champion scoring under the trivial predictor is named as such, and a
    challenger that clearly beats both still deploys."""
    from components.stages.evaluate import against_baseline

    challenger, champion = _skewed(400, 120, challenger_right=380, champion_right=218)
    baseline = against_baseline("accuracy", challenger, 0.95, seed=1)
    comparison = compare("accuracy", challenger.labels, champion_predicted=champion.predicted,
                         champion_probabilities=champion.probabilities,
                         challenger_predicted=challenger.predicted,
                         challenger_probabilities=challenger.probabilities,
                         classes=np.array([0, 1]), confidence=0.95, seed=7)
    verdict = gate_decision(comparison, 0.95, metric="accuracy", threshold=0.8,
                            min_improvement=0.0, rows=400, min_evaluation_rows=300,
                            champion_version="v0001", baseline=baseline,
                            champion_score=0.545)
    assert verdict.decision == DEPLOY
    assert verdict.reason.endswith("; the champion v0001 (0.545) is below always answering 0 "
                                   "(accuracy 0.700)")


def _fresh(rows: int, champion_right: int, challenger_right: int, both_right: int,
           confidence: float = 0.8, margin: float = 0.01) -> FreshComparison:
    """The freshness rule's evidence for :func:`_paired`'s rows, at its own confidence."""
    return FreshComparison(_paired(rows, champion_right, challenger_right, both_right,
                                   confidence=confidence), margin)


@pytest.mark.parametrize("rows, champion_right, challenger_right, both_right, expected", [
    (2000, 1700, 1720, 1650, DEPLOY),  # +1 point, not shown better, surely not 1 point worse
    (2000, 1700, 1700, 1650, DEPLOY),  # as good
    (2000, 1700, 1690, 1650, REJECT),  # worse on these rows
    (400, 340, 343, 320, REJECT),  # +0.75 point on 400 rows: could be more than 1 point worse
], ids=["a-point-better", "as-good", "a-little-worse", "too-few-rows-to-rule-out-worse"])
def test_the_freshness_rule_deploys_a_refit_not_worse_by_more_than_its_margin(
        rows, champion_right, challenger_right, both_right, expected):
    """Check that a same-world refit is deployed when it is at least as good and the lower bound
    of the interval at the freshness confidence is above minus the margin; not otherwise."""
    comparison = _paired(rows, champion_right, challenger_right, both_right)
    fresh = _fresh(rows, champion_right, challenger_right, both_right)
    assert _gate(comparison).decision == REJECT  # the superiority rule alone keeps the champion
    verdict = gate_decision(comparison, comparison.challenger, metric="accuracy", threshold=0.8,
                            min_improvement=0.0, rows=rows, min_evaluation_rows=300,
                            champion_version="v0001", fresh=fresh)
    assert verdict.decision == expected, verdict.reason
    if expected == DEPLOY:
        assert "not worse by more than 0.01 with 80% confidence" in verdict.reason
        assert "the freshness rule" in verdict.reason


def test_the_freshness_rule_never_applies_on_the_seed_40_rows_or_with_a_min_improvement():
    """Check that the seed's 40-row case (0.725 against 0.700) is still rejected with the
    freshness rule in force, and that a team asking for an improvement gets only improvements."""
    comparison = _paired(40, champion_right=28, challenger_right=29, both_right=24)
    fresh = _fresh(40, 28, 29, 24)
    verdict = gate_decision(comparison, comparison.challenger, metric="accuracy", threshold=0.6,
                            min_improvement=0.0, rows=40, min_evaluation_rows=300,
                            champion_version="v0001", fresh=fresh)
    assert verdict.decision == REJECT
    big = _paired(2000, 1700, 1720, 1650)
    verdict = gate_decision(big, big.challenger, metric="accuracy", threshold=0.8,
                            min_improvement=0.01, rows=2000, min_evaluation_rows=300,
                            champion_version="v0001", fresh=_fresh(2000, 1700, 1720, 1650))
    assert verdict.decision == REJECT


def _newest_gate(every_row, newest, *, threshold=0.80, min_rows=300):
    return gate_decision(every_row, every_row.challenger, metric="accuracy", threshold=threshold,
                         min_improvement=0.0, rows=every_row.rows, min_evaluation_rows=min_rows,
                         champion_version="v0002",
                         newest=NewestBatch("month_07.csv 2025-07", newest))


def test_a_gain_only_the_newest_batch_shows_deploys_and_the_reason_says_where():
    """Check the drift case: on 600 rows over three months the challenger is 2 points ahead,
    not shown better at 97.5%; on the newest month's 200 rows it is 9.5 points ahead, shown
    better at 97.5%. The gate deploys on the newest batch and says so; with the newest batch
    no better than the rest it rejects, and the reason still gives both intervals."""
    every_row = _paired(600, champion_right=500, challenger_right=512, both_right=470,
                        confidence=0.975)
    newest = _paired(200, champion_right=165, challenger_right=184, both_right=160,
                     confidence=0.975)
    assert every_row.ci_low < 0 < newest.ci_low
    verdict = _newest_gate(every_row, newest)
    assert verdict.decision == DEPLOY, verdict.reason
    assert verdict.reason.startswith(
        f"challenger accuracy 0.853 vs champion v0002 0.833 on 600 rows: "
        f"{every_row.interval_text()}; on the 200 rows of the newest batch (month_07.csv "
        f"2025-07): +0.095 (97.5% CI +0.")
    assert verdict.reason.endswith(": better on the newest batch by more than 0 with 97.5% "
                                   "confidence")
    flat = _paired(200, champion_right=165, challenger_right=169, both_right=160,
                   confidence=0.975)
    verdict = _newest_gate(every_row, flat)
    assert verdict.decision == REJECT
    assert "on the 200 rows of the newest batch (month_07.csv 2025-07): +0.020" in verdict.reason
    assert verdict.reason.endswith("does not beat the champion by more than 0 with 97.5% "
                                   "confidence")


def test_on_the_newest_batch_a_champion_below_the_threshold_needs_enough_rows_in_all():
    """Check the threshold on the newest batch: a challenger below 0.80 there deploys only where
    the champion is below it there too, and, as for every row, on min_evaluation_rows rows."""
    every_row = _paired(600, champion_right=500, challenger_right=505, both_right=470,
                        confidence=0.975)  # the champion above 0.80 on every row
    newest = _paired(200, champion_right=133, challenger_right=152, both_right=125,
                     confidence=0.975)
    assert newest.challenger < 0.8 and newest.ci_low > 0
    verdict = _newest_gate(every_row, newest)
    assert verdict.decision == DEPLOY, verdict.reason
    assert verdict.reason.endswith(": on the newest batch the champion is below the threshold "
                                   "0.800 and the challenger is better by more than 0 with "
                                   "97.5% confidence")
    assert _newest_gate(every_row, newest, min_rows=700).decision == REJECT
    assert _newest_gate(every_row, newest, threshold=0.6).decision == DEPLOY  # both above it


# -- regression: each metric in its own direction ----------------------------------------------
def _regression(rows, champion_noise, challenger_noise, metric="rmse", seed=0):
    rng = np.random.default_rng(seed)
    y = rng.normal(500, 100, rows)
    shared = rng.normal(size=rows)
    old = y + champion_noise * (0.6 * shared + 0.8 * rng.normal(size=rows))
    new = y + challenger_noise * (0.6 * shared + 0.8 * rng.normal(size=rows))
    return compare(metric, y, champion_predicted=old, champion_probabilities=None,
                   challenger_predicted=new, challenger_probabilities=None, classes=None,
                   confidence=0.95, seed=7)


def _regression_gate(comparison, metric="rmse", threshold=None, min_improvement=0.0):
    return gate_decision(comparison, comparison.challenger, metric=metric, threshold=threshold,
                         min_improvement=min_improvement, rows=comparison.rows,
                         min_evaluation_rows=300, champion_version="v0001")


def test_a_lower_rmse_with_confidence_deploys_and_a_higher_one_is_rejected():
    """Check that the gate reads RMSE as an error: lower with confidence deploys, higher not."""
    better = _regression(400, 60.0, 45.0)
    verdict = _regression_gate(better)
    assert verdict.decision == DEPLOY, verdict.reason
    assert better.delta < 0 and better.ci_high < 0
    assert verdict.reason.startswith("challenger rmse ")
    assert "better by more than 0 with 95% confidence" in verdict.reason
    worse = _regression(400, 45.0, 60.0)
    assert _regression_gate(worse).decision == REJECT


def test_r2_is_higher_is_better():
    """Check that R² deploys in its own direction, the same rows as RMSE."""
    comparison = _regression(400, 60.0, 45.0, metric="r2")
    assert comparison.delta > 0
    assert _regression_gate(comparison, metric="r2").decision == DEPLOY


def test_an_error_threshold_is_an_upper_bound_and_min_improvement_a_share_of_the_error():
    """Check that threshold reads 'at most' for RMSE, and min_improvement is a share of the
    champion's error."""
    comparison = _regression(400, 60.0, 45.0)
    score = comparison.challenger
    cold = {"metric": "rmse", "min_improvement": 0.0, "rows": 400, "min_evaluation_rows": 300}
    above = gate_decision(None, score, threshold=score - 1, **cold)
    assert above.decision == REJECT
    assert f"cold start: challenger rmse {score:.3f} is above the threshold {score - 1:.3f}" \
        in above.reason
    assert gate_decision(None, score, threshold=score + 1, **cold).reason.startswith(
        f"cold start: no champion yet; challenger rmse {score:.3f} <= threshold")
    assert _regression_gate(comparison, threshold=score + 1).decision == DEPLOY
    gained = comparison.gain_low / comparison.champion
    assert _regression_gate(comparison, min_improvement=gained * 0.9).decision == DEPLOY
    refused = _regression_gate(comparison, min_improvement=gained * 1.1)
    assert refused.decision == REJECT
    assert "of the champion's rmse" in refused.reason


def test_a_regressor_that_does_not_beat_the_mean_is_never_deployed():
    """Check that a cold-start regressor no better than always answering the mean is refused,
    naming the mean."""
    from components.ml.metrics import Predictions
    from components.stages.evaluate import against_baseline

    rng = np.random.default_rng(2)
    y = rng.normal(100, 10, 300)
    useless = Predictions(y, np.empty((300, 0)), np.empty(0), rng.normal(100, 10, 300),
                          "regression")
    baseline = against_baseline("rmse", useless, 0.95, seed=0)
    verdict = gate_decision(None, useless.scores()["rmse"], metric="rmse", threshold=None,
                            min_improvement=0.0, rows=300, min_evaluation_rows=300,
                            baseline=baseline)
    assert verdict.decision == REJECT
    assert "does not beat always answering the mean 99.4649 (rmse 10.162)" in verdict.reason
    assert "(no threshold for rmse" in verdict.reason
