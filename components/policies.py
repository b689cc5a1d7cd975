"""The pipeline's two decisions, apart from the statistics they read.

- The trigger policy (``retrain_when``): is valid new data worth a retrain?
- The deploy gate: is the challenger good enough, and better than the champion?

Both return an outcome from :mod:`components.outcomes` and the sentence that explains it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from components.data.drift import DriftReport
from components.outcomes import GateDecision, ValidateDecision
from components.records import ValidationReport


def trigger_decision(report: ValidationReport, drift: DriftReport | None, *, retrain_when: str,
                     min_rows: int) -> tuple[str, str]:
    """``(decision, reason)``: retrain, invalid-data, or skipped, under the ``retrain_when`` policy.

    Errors always make ``invalid-data``. ``drift`` with no reference to compare with (a cold
    start, or a champion stored without statistics) retrains, since nothing shows it is not
    needed.
    """
    if not report.valid:
        return ValidateDecision.INVALID_DATA, report.summary()
    if retrain_when == "min_rows" and report.labelled_rows < min_rows:
        return ValidateDecision.SKIPPED, (
            f"waiting for more rows: {report.labelled_rows} labelled new row(s), retraining "
            f"from {min_rows} (retrain_when=min_rows)")
    if retrain_when == "drift":
        if drift is None:
            return (ValidateDecision.RETRAIN,
                    "no reference statistics to measure drift against; retraining")
        if not drift.drifted:
            return (ValidateDecision.SKIPPED,
                    f"no drift detected (retrain_when=drift): {drift.strongest()}")
        return ValidateDecision.RETRAIN, f"drift detected in {', '.join(drift.drifted)}"
    return ValidateDecision.RETRAIN, report.summary()


@dataclass(frozen=True)
class GateVerdict:
    """The gate's decision and the sentence that explains it."""

    decision: str
    reason: str
    cold_start: bool


def gate_decision(challenger: dict, champion: dict | None, *, metric: str, threshold: float,
                  min_improvement: float, champion_version: str = "") -> GateVerdict:
    """Deploy when the challenger's ``metric`` reaches ``threshold`` and beats the champion's by
    more than ``min_improvement`` (a tie keeps the champion); with no champion, the threshold
    alone decides (a cold start)."""
    deploy, reject = GateDecision.DEPLOY, GateDecision.REJECT
    value = challenger.get(metric)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return GateVerdict(reject, f"challenger {metric} is undefined on the validation rows",
                           champion is None)
    if value < threshold:
        return GateVerdict(reject, f"challenger {metric} {value:.4f} is below the threshold "
                                   f"{threshold:.4f}", champion is None)
    if champion is None:
        return GateVerdict(deploy, f"cold start: no champion yet; challenger {metric} "
                                   f"{value:.4f} >= threshold {threshold:.4f}", True)
    baseline = champion.get(metric)
    if baseline is None:
        return GateVerdict(deploy, f"challenger {metric} {value:.4f} >= threshold "
                                   f"{threshold:.4f}; champion {champion_version} has no "
                                   f"{metric} on these rows", False)
    gain = value - baseline
    if gain <= min_improvement:
        return GateVerdict(reject, f"challenger {metric} {value:.4f} does not beat champion "
                                   f"{champion_version} ({baseline:.4f}) by more than "
                                   f"{min_improvement:.4f}", False)
    return GateVerdict(deploy, f"challenger {metric} {value:.4f} >= threshold {threshold:.4f} "
                               f"and beats champion {champion_version} ({baseline:.4f}) by "
                               f"{gain:.4f}", False)
