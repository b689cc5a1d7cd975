"""Policies: the deploy gate and the trigger policy decide, and say why."""

import pytest

from components.outcomes import GateDecision, ValidateDecision
from components.policies import gate_decision, trigger_decision
from components.records import Finding, ValidationReport

DEPLOY, REJECT = GateDecision.DEPLOY, GateDecision.REJECT


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
    decision = gate_decision({"accuracy": challenger},
                      None if champion is None else {"accuracy": champion},
                      metric="accuracy", threshold=0.80, min_improvement=0.0,
                      champion_version="v0001")
    assert decision.decision == expected
    assert reason in decision.reason
    assert decision.cold_start is (champion is None)


def test_min_improvement_is_required():
    """Check that a gain not above min_improvement keeps the champion."""
    decision = gate_decision({"f1": 0.86}, {"f1": 0.85}, metric="f1", threshold=0.8,
                      min_improvement=0.02, champion_version="v0003")
    assert decision.decision == REJECT




class _Drift:
    """What the trigger policy reads of a drift report."""

    def __init__(self, drifted):
        self.drifted = drifted

    def strongest(self):
        return "largest PSI 0.300 (x1, drift at 0.25)"


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
