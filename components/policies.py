"""The pipeline's two decisions, apart from the statistics they read.

- The trigger policy (``retrain_when``): is valid new data worth a retrain?
- The deploy gate: is the challenger good enough, and better than the champion?

Both return an outcome from :mod:`components.outcomes` and the sentence that explains it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from components.data.drift import DriftReport
from components.ml.comparison import PairedComparison
from components.outcomes import GateDecision, RetrainWhen, ValidateDecision
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
    if retrain_when == RetrainWhen.MIN_ROWS and report.labelled_rows < min_rows:
        return ValidateDecision.SKIPPED, (
            f"waiting for more rows: {report.labelled_rows} labelled new row(s), retraining "
            f"from {min_rows} (retrain_when=min_rows)")
    if retrain_when == RetrainWhen.DRIFT:
        beyond = report.beyond_training()
        if drift is None and not beyond:
            return (ValidateDecision.RETRAIN,
                    "no reference statistics to measure drift against; retraining")
        if drift is not None and drift.drifted:
            return ValidateDecision.RETRAIN, f"drift detected in {drift.drifted_text()}"
        if beyond:
            return (ValidateDecision.RETRAIN, "drift detected: values beyond the champion's "
                                              f"training data in {', '.join(beyond)}")
        return (ValidateDecision.SKIPPED,
                f"no drift detected (retrain_when=drift): {drift.strongest()}")
    return ValidateDecision.RETRAIN, report.summary()


# Deploy over a champion that has fallen below the threshold, on fewer than min_evaluation_rows,
# when the challenger is at least as good and at the interval's lower bound at most this much
# worse: a decaying champion must not be kept for lack of rows, and a truly worse model (by more
# than a point or two) must not replace it. With enough rows, better with confidence is asked:
# a month of wrong labels makes any champion look decayed, and there the rows do not lack.
NON_INFERIORITY_MARGIN = 0.02


@dataclass(frozen=True)
class FreshComparison:
    """The freshness rule's evidence: the paired comparison at its own confidence, and the margin
    by which the challenger may be worse at that interval's lower bound."""

    comparison: PairedComparison
    margin: float

    def to_dict(self) -> dict:
        c = self.comparison
        return {"margin": self.margin, "confidence": c.confidence, "ci_low": c.ci_low,
                "ci_high": c.ci_high}

    def allows(self, delta: float) -> bool:
        """At least as good on these rows, and not worse by more than the margin at the lower
        bound of the interval."""
        low = self.comparison.ci_low
        return low is not None and delta >= 0 and low > -self.margin

    def reason(self) -> str:
        level = f"{self.comparison.confidence:.0%}"
        return (f"a refit on the champion's rows and the new ones, with no concept change in "
                f"the new rows, not worse by more than {self.margin:g} with {level} confidence "
                f"({level} CI {self.comparison.ci_low:+.3f} to {self.comparison.ci_high:+.3f}; "
                "the freshness rule)")


@dataclass(frozen=True)
class GateVerdict:
    """The gate's decision and the sentence that explains it."""

    decision: str
    reason: str
    cold_start: bool


def gate_decision(comparison: PairedComparison | None, challenger_score: float | None, *,
                  metric: str, threshold: float, min_improvement: float, rows: int,
                  min_evaluation_rows: int, champion_version: str = "",
                  cold_interval: tuple[float, float] | None = None,
                  confidence: float = 0.95, baseline=None,
                  champion_score: float | None = None,
                  fresh: FreshComparison | None = None) -> GateVerdict:
    """The verdict of :func:`paired_verdict`, held to the trivial predictor too: a challenger
    that does not beat always answering the rows' most frequent class (``baseline``: its
    answer and the paired comparison with it) with confidence is never deployed, and a
    champion below it is said in the reason."""
    verdict = paired_verdict(comparison, challenger_score, metric=metric, threshold=threshold,
                             min_improvement=min_improvement, rows=rows,
                             min_evaluation_rows=min_evaluation_rows,
                             champion_version=champion_version, cold_interval=cold_interval,
                             confidence=confidence, fresh=fresh)
    if baseline is None or baseline.comparison.champion is None:
        return verdict
    trivial = (f"always answering {baseline.answer!r} ({metric} "
               f"{baseline.comparison.champion:.3f})")
    reason = verdict.reason
    if champion_score is not None and champion_score < baseline.comparison.champion:
        reason += (f"; the champion {champion_version} ({champion_score:.3f}) is below "
                   f"{trivial}")
    ci_low = baseline.comparison.ci_low
    if verdict.decision == GateDecision.DEPLOY and not (ci_low is not None and ci_low > 0):
        return GateVerdict(GateDecision.REJECT, f"{reason}; but the challenger does not beat "
                                                f"{trivial} with {confidence:.0%} confidence",
                           verdict.cold_start)
    return GateVerdict(verdict.decision, reason, verdict.cold_start)


def paired_verdict(comparison: PairedComparison | None, challenger_score: float | None, *,
                   metric: str, threshold: float, min_improvement: float, rows: int,
                   min_evaluation_rows: int, champion_version: str = "",
                   cold_interval: tuple[float, float] | None = None, confidence: float = 0.95,
                   fresh: FreshComparison | None = None) -> GateVerdict:
    """Deploy when the challenger reaches ``threshold`` and the lower bound of the interval of
    (challenger - champion) is above ``min_improvement``; or by the freshness rule (``fresh``,
    given for a same-world refit: :meth:`FreshComparison.allows`, on ``min_evaluation_rows``);
    or when the champion is below the threshold and the challenger, whatever its own score, is
    better with confidence on ``min_evaluation_rows`` rows, or not worse on fewer (at least as
    good, and no more than :data:`NON_INFERIORITY_MARGIN` worse at the lower bound). Without a
    champion, the threshold alone decides (a cold start)."""
    deploy, reject = GateDecision.DEPLOY, GateDecision.REJECT
    if challenger_score is None or (isinstance(challenger_score, float)
                                    and math.isnan(challenger_score)):
        return GateVerdict(reject, f"challenger {metric} is undefined on the {rows} evaluation "
                                   "rows", comparison is None)
    if comparison is None:
        interval = (f" ({confidence:.0%} CI {cold_interval[0]:.3f} to {cold_interval[1]:.3f})"
                    if cold_interval else "")
        if challenger_score < threshold:
            return GateVerdict(reject, f"cold start: challenger {metric} {challenger_score:.3f} "
                                       f"is below the threshold {threshold:.3f} on {rows} "
                                       f"rows{interval}", True)
        return GateVerdict(deploy, f"cold start: no champion yet; challenger {metric} "
                                   f"{challenger_score:.3f} >= threshold {threshold:.3f} on "
                                   f"{rows} rows{interval}", True)
    if comparison.delta is None:
        if challenger_score >= threshold:
            return GateVerdict(deploy, f"challenger {metric} {challenger_score:.3f} >= threshold "
                                       f"{threshold:.3f}; champion {champion_version} has no "
                                       f"{metric} on these rows", False)
        return GateVerdict(reject, f"challenger {metric} {challenger_score:.3f} is below the "
                                   f"threshold {threshold:.3f}", False)
    base = (f"challenger {metric} {comparison.challenger:.3f} vs champion {champion_version} "
            f"{comparison.champion:.3f} on {comparison.rows} rows: {comparison.interval_text()}")
    level = f"{comparison.confidence:.0%}"
    if comparison.challenger >= threshold and comparison.ci_low > min_improvement:
        return GateVerdict(deploy, f"{base}: better by more than {min_improvement:g} with "
                                   f"{level} confidence", False)
    if fresh is not None and min_improvement <= 0 and comparison.challenger >= threshold and \
            comparison.rows >= min_evaluation_rows and fresh.allows(comparison.delta):
        return GateVerdict(deploy, f"{base}: {fresh.reason()}", False)
    if comparison.champion < threshold and comparison.rows >= min_evaluation_rows and \
            comparison.ci_low > min_improvement:
        return GateVerdict(deploy, f"{base}: the champion is below the threshold "
                                   f"{threshold:.3f} and the challenger is better by more than "
                                   f"{min_improvement:g} with {level} confidence", False)
    if comparison.champion < threshold and comparison.rows < min_evaluation_rows and \
            comparison.delta >= 0 and comparison.ci_low > -NON_INFERIORITY_MARGIN:
        return GateVerdict(deploy, f"{base}: the champion is below the threshold "
                                   f"{threshold:.3f} and, on fewer than min_evaluation_rows "
                                   f"{min_evaluation_rows}, the challenger is not worse (by more than "
                                   f"{NON_INFERIORITY_MARGIN:g} with {level} confidence)",
                           False)
    if comparison.challenger < threshold:
        return GateVerdict(reject, f"{base}: the challenger is below the threshold "
                                   f"{threshold:.3f}", False)
    return GateVerdict(reject, f"{base}: does not beat the champion by more than "
                               f"{min_improvement:g} with {level} confidence", False)
