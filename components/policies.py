"""The pipeline's two decisions, apart from the statistics they read.

- The trigger policy (``retrain_when``): is valid new data worth a retrain?
- The deploy gate: is the challenger good enough, and better than the champion?

Both return an outcome from :mod:`components.outcomes` and the sentence that explains it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from components.data.drift import DriftReport
from components.ml.comparison import PairedComparison, percent
from components.outcomes import GateDecision, GateMetric, RetrainWhen, ValidateDecision
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
# For an error metric (rmse, mae) this margin, min_improvement and freshness_margin are shares of
# the champion's error: the label's units are the user's.
NON_INFERIORITY_MARGIN = 0.02


@dataclass(frozen=True)
class Bar:
    """What the gate holds a metric to: ``threshold`` (None: no bar), at least it for a score,
    at most it for an error."""

    metric: str
    threshold: float | None

    @property
    def lower_is_better(self) -> bool:
        return GateMetric.lower_is_better(self.metric)

    def met(self, score: float) -> bool:
        if self.threshold is None:
            return True
        return score <= self.threshold if self.lower_is_better else score >= self.threshold

    def failed(self) -> str:
        """``below the threshold 0.800`` (or above, for an error)."""
        side = "above" if self.lower_is_better else "below"
        return f"{side} the threshold {self.threshold:.3f}"

    def passed(self) -> str:
        """``>= threshold 0.800``, ``<= threshold 12.000``, or that there is none."""
        if self.threshold is None:
            return f"(no threshold for {self.metric}: beating the trivial predictor is the bar)"
        return f"{'<=' if self.lower_is_better else '>='} threshold {self.threshold:.3f}"

    def scale(self, champion_score: float | None) -> float:
        """What a margin is a share of: the champion's error for an error metric, else 1."""
        if self.lower_is_better and champion_score:
            return abs(champion_score)
        return 1.0

    def margin_text(self, margin: float) -> str:
        """``0`` or ``0.01``; for an error metric ``5% of the champion's rmse``."""
        if self.lower_is_better and margin:
            return f"{margin:.3g} of the champion's {self.metric}"
        return f"{margin:g}"


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

    def allows(self, bar: Bar) -> bool:
        """At least as good on these rows, and not worse by more than the margin at the lower
        bound of the interval."""
        c = self.comparison
        low = c.gain_low
        return low is not None and c.gain >= 0 and \
            low > -self.margin * bar.scale(c.champion)

    def reason(self, bar: Bar) -> str:
        level = percent(self.comparison.confidence)
        return (f"a refit on the champion's rows and the new ones, with no concept change in "
                f"the new rows, not worse by more than {bar.margin_text(self.margin)} with "
                f"{level} confidence ({level} CI {self.comparison.ci_low:+.3f} to "
                f"{self.comparison.ci_high:+.3f}; the freshness rule)")


@dataclass(frozen=True)
class NewestBatch:
    """The gate's second test: the paired comparison on the judged rows' newest batch alone (a
    file, or a file's month), the rows nearest to those the model will serve, at its share of
    the gate's error. Under drift the newest batch shows a gain that all the rows, most of them
    older, average away."""

    batch: str
    comparison: PairedComparison

    def better(self, bar: Bar, min_improvement: float) -> bool:
        return _shown_better(self.comparison, bar, min_improvement)

    def text(self) -> str:
        """``on the 200 rows of the newest batch (month_07.csv 2025-07): +0.095 (97.5% CI ...)``"""
        c = self.comparison
        shown = c.interval_text() if c.delta is not None else "undefined"
        return f"on the {c.rows} rows of the newest batch ({self.batch}): {shown}"

    def to_dict(self) -> dict:
        return {"batch": self.batch, **self.comparison.to_dict()}


@dataclass(frozen=True)
class GateVerdict:
    """The gate's decision and the sentence that explains it."""

    decision: str
    reason: str
    cold_start: bool


def gate_decision(comparison: PairedComparison | None, challenger_score: float | None, *,
                  metric: str, threshold: float | None, min_improvement: float, rows: int,
                  min_evaluation_rows: int, champion_version: str = "",
                  cold_interval: tuple[float, float] | None = None,
                  confidence: float = 0.95, baseline=None,
                  champion_score: float | None = None,
                  fresh: FreshComparison | None = None,
                  newest: NewestBatch | None = None) -> GateVerdict:
    """The verdict of :func:`paired_verdict`, held to the trivial predictor too: a challenger
    that does not beat always answering the rows' most frequent class (for regression their
    mean; ``baseline``: its answer and the paired comparison with it) with confidence is never
    deployed, and a champion below it is said in the reason."""
    verdict = paired_verdict(comparison, challenger_score, metric=metric, threshold=threshold,
                             min_improvement=min_improvement, rows=rows,
                             min_evaluation_rows=min_evaluation_rows,
                             champion_version=champion_version, cold_interval=cold_interval,
                             confidence=confidence, fresh=fresh, newest=newest)
    if baseline is None or baseline.comparison.champion is None:
        return verdict
    trivial = f"{baseline.text()} ({metric} {baseline.comparison.champion:.3f})"
    reason = verdict.reason
    bar = Bar(metric, threshold)
    if champion_score is not None and _worse(champion_score, baseline.comparison.champion, bar):
        reason += (f"; the champion {champion_version} ({champion_score:.3f}) is "
                   f"{'above' if bar.lower_is_better else 'below'} {trivial}")
    gain_low = baseline.comparison.gain_low
    if verdict.decision == GateDecision.DEPLOY and not (gain_low is not None and gain_low > 0):
        return GateVerdict(GateDecision.REJECT, f"{reason}; but the challenger does not beat "
                                                f"{trivial} with {percent(confidence)} confidence",
                           verdict.cold_start)
    return GateVerdict(verdict.decision, reason, verdict.cold_start)


def _shown_better(comparison: PairedComparison, bar: Bar, min_improvement: float) -> bool:
    """Better with the comparison's confidence: its interval's lower bound of the gain above
    ``min_improvement`` (for an error metric, a share of the champion's error)."""
    low = comparison.gain_low
    return low is not None and low > min_improvement * bar.scale(comparison.champion)


def _champion_undefined_verdict(challenger_score: float, bar: Bar,
                                champion_version: str) -> GateVerdict:
    """The champion has no score on these rows: the threshold alone decides."""
    metric = bar.metric
    if bar.met(challenger_score):
        return GateVerdict(GateDecision.DEPLOY, f"challenger {metric} {challenger_score:.3f} "
                                                f"{bar.passed()}; champion {champion_version} "
                                                f"has no {metric} on these rows", False)
    return GateVerdict(GateDecision.REJECT, f"challenger {metric} {challenger_score:.3f} is "
                                            f"{bar.failed()}", False)


def _newest_batch_verdict(newest: NewestBatch | None, bar: Bar, min_improvement: float,
                          enough_rows: bool, base: str) -> GateVerdict | None:
    """A deploy on the newest batch's own evidence: the challenger better there with confidence,
    and meeting the threshold there, or the champion missing it there (on ``enough_rows``, as
    for all the rows); None: no deploy on this ground."""
    if newest is None or not newest.better(bar, min_improvement):
        return None
    c, margin = newest.comparison, bar.margin_text(min_improvement)
    level = percent(c.confidence)
    if bar.met(c.challenger):
        return GateVerdict(GateDecision.DEPLOY, f"{base}: better on the newest batch by more "
                                                f"than {margin} with {level} confidence", False)
    if enough_rows and not bar.met(c.champion):
        return GateVerdict(GateDecision.DEPLOY, f"{base}: on the newest batch the champion is "
                                                f"{bar.failed()} and the challenger is better by "
                                                f"more than {margin} with {level} confidence",
                           False)
    return None


def _worse(score: float, other: float, bar: Bar) -> bool:
    return score > other if bar.lower_is_better else score < other


def _cold_start_verdict(challenger_score: float, bar: Bar, rows: int,
                        cold_interval: tuple[float, float] | None,
                        confidence: float) -> GateVerdict:
    """No champion: the threshold alone decides (none: the trivial baseline does, later)."""
    metric = bar.metric
    interval = (f" ({percent(confidence)} CI {cold_interval[0]:.3f} to {cold_interval[1]:.3f})"
                if cold_interval else "")
    if not bar.met(challenger_score):
        return GateVerdict(GateDecision.REJECT, f"cold start: challenger {metric} "
                                                f"{challenger_score:.3f} is {bar.failed()} on "
                                                f"{rows} rows{interval}", True)
    if bar.threshold is None:
        return GateVerdict(GateDecision.DEPLOY, f"cold start: no champion yet; challenger "
                                                f"{metric} {challenger_score:.3f} on {rows} "
                                                f"rows{interval} {bar.passed()}", True)
    return GateVerdict(GateDecision.DEPLOY, f"cold start: no champion yet; challenger {metric} "
                                            f"{challenger_score:.3f} {bar.passed()} on {rows} "
                                            f"rows{interval}", True)


def paired_verdict(comparison: PairedComparison | None, challenger_score: float | None, *,
                   metric: str, threshold: float | None, min_improvement: float, rows: int,
                   min_evaluation_rows: int, champion_version: str = "",
                   cold_interval: tuple[float, float] | None = None, confidence: float = 0.95,
                   fresh: FreshComparison | None = None,
                   newest: NewestBatch | None = None) -> GateVerdict:
    """Deploy when the challenger meets ``threshold`` (at least it for a score, at most it for an
    error; None: no threshold) and the lower bound of the interval of how much better it is than
    the champion is above ``min_improvement``; or by the freshness rule (``fresh``, given for a
    same-world refit: :meth:`FreshComparison.allows`, on ``min_evaluation_rows``); or when the
    champion misses the threshold and the challenger, whatever its own score, is better with
    confidence on ``min_evaluation_rows`` rows, or not worse on fewer (at least as good, and no
    more than :data:`NON_INFERIORITY_MARGIN` worse at the lower bound); or by ``newest``, the
    comparison on the newest batch alone (:func:`_newest_batch_verdict`). Without a champion,
    the threshold alone decides (a cold start)."""
    deploy, reject = GateDecision.DEPLOY, GateDecision.REJECT
    bar = Bar(metric, threshold)
    if challenger_score is None or (isinstance(challenger_score, float)
                                    and math.isnan(challenger_score)):
        return GateVerdict(reject, f"challenger {metric} is undefined on the {rows} evaluation "
                                   "rows", comparison is None)
    if comparison is None:
        return _cold_start_verdict(challenger_score, bar, rows, cold_interval, confidence)
    if comparison.delta is None:
        return _champion_undefined_verdict(challenger_score, bar, champion_version)
    base = (f"challenger {metric} {comparison.challenger:.3f} vs champion {champion_version} "
            f"{comparison.champion:.3f} on {comparison.rows} rows: {comparison.interval_text()}"
            + (f"; {newest.text()}" if newest is not None else ""))
    level = percent(comparison.confidence)
    scale = bar.scale(comparison.champion)
    better = _shown_better(comparison, bar, min_improvement)
    champion_missed = threshold is not None and not bar.met(comparison.champion)
    if bar.met(comparison.challenger) and better:
        return GateVerdict(deploy, f"{base}: better by more than "
                                   f"{bar.margin_text(min_improvement)} with {level} confidence",
                           False)
    newest_verdict = _newest_batch_verdict(newest, bar, min_improvement,
                                           comparison.rows >= min_evaluation_rows, base)
    if newest_verdict is not None:
        return newest_verdict
    if fresh is not None and min_improvement <= 0 and bar.met(comparison.challenger) and \
            comparison.rows >= min_evaluation_rows and fresh.allows(bar):
        return GateVerdict(deploy, f"{base}: {fresh.reason(bar)}", False)
    if champion_missed and comparison.rows >= min_evaluation_rows and better:
        return GateVerdict(deploy, f"{base}: the champion is {bar.failed()} and the challenger "
                                   f"is better by more than {bar.margin_text(min_improvement)} "
                                   f"with {level} confidence", False)
    if champion_missed and comparison.rows < min_evaluation_rows and \
            comparison.gain >= 0 and comparison.gain_low > -NON_INFERIORITY_MARGIN * scale:
        return GateVerdict(deploy, f"{base}: the champion is {bar.failed()} and, on fewer than "
                                   f"min_evaluation_rows {min_evaluation_rows}, the challenger is "
                                   f"not worse (by more than "
                                   f"{bar.margin_text(NON_INFERIORITY_MARGIN)} with {level} "
                                   "confidence)", False)
    if not bar.met(comparison.challenger):
        return GateVerdict(reject, f"{base}: the challenger is {bar.failed()}", False)
    return GateVerdict(reject, f"{base}: does not beat the champion by more than "
                               f"{bar.margin_text(min_improvement)} with {level} confidence",
                       False)
