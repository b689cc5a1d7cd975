"""Champion against challenger on the same rows, paired: how much better, with what confidence.

Both models are scored on the same evaluation rows, so what matters is their difference row by
row. The confidence interval of (challenger - champion) on the gate metric is a paired bootstrap
(``scipy.stats.bootstrap`` with ``paired=True``: the rows are resampled, both models' answers
for a row stay together). For accuracy the p-value is the exact McNemar test: only the rows where
exactly one model is right carry information, and under "equally good" each of those is a fair
coin (``scipy.stats.binomtest``). For F1 and ROC AUC it is a paired permutation test (each row's
two answers swapped at random, ``scipy.stats.permutation_test``). Every random draw is seeded.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np

BOOTSTRAP_RESAMPLES = 9999  # accuracy: vectorised, cheap
SLOW_RESAMPLES = 1999  # F1 and ROC AUC: one metric computation per resample


@dataclass(frozen=True)
class PairedComparison:
    """The gate's statistics: both scores, their difference and its interval, on ``rows``."""

    metric: str | None  # None: a cold start, nothing compared
    rows: int
    challenger: float | None
    champion: float | None
    delta: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    method: str
    confidence: float

    @classmethod
    def threshold_only(cls, rows: int, confidence: float) -> PairedComparison:
        """A cold start's statistics: no champion to compare with, the threshold alone."""
        return cls(None, rows, None, None, None, None, None, None,
                   "cold start: the threshold alone", confidence)

    def to_dict(self) -> dict:
        return asdict(self)

    def interval_text(self) -> str:
        """``+0.071 (95% CI +0.041 to +0.102)``."""
        return (f"{self.delta:+.3f} ({self.confidence:.0%} CI {self.ci_low:+.3f} to "
                f"{self.ci_high:+.3f})")


def _macro_f1(y: np.ndarray, predicted: np.ndarray, classes: np.ndarray) -> float:
    present = [c for c in classes if (y == c).any()]
    scores = []
    for cls in present:
        tp = np.sum((predicted == cls) & (y == cls))
        fp = np.sum((predicted == cls) & (y != cls))
        fn = np.sum((predicted != cls) & (y == cls))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else float("nan")


def _roc_auc(y: np.ndarray, probabilities: np.ndarray, classes: np.ndarray) -> float:
    from scipy.stats import rankdata

    def binary(positive: np.ndarray, score: np.ndarray) -> float:
        n1 = int(positive.sum())
        n0 = len(positive) - n1
        if not n1 or not n0:
            return float("nan")
        ranks = rankdata(score)
        return float((ranks[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))

    if len(classes) == 2:
        return binary(y == classes[1], probabilities[:, 1])
    return float(np.mean([binary(y == cls, probabilities[:, i])
                          for i, cls in enumerate(classes)]))


def _metric(metric: str, y, predicted, probabilities, classes) -> float:
    if metric == "accuracy":
        return float(np.mean(predicted == y))
    if metric == "f1":
        return _macro_f1(y, predicted, classes)
    return _roc_auc(y, probabilities, classes)


def _interval(run, method: str) -> tuple[float, float]:
    """The bootstrap interval by ``method``; percentile where BCa cannot be computed (a
    difference that hardly varies), which scipy signals with NaN and a warning we replace."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.filterwarnings("ignore", message=".*BCa confidence interval cannot be")
        low, high = run(method).confidence_interval
    if np.isnan(low) or np.isnan(high):
        low, high = run("percentile").confidence_interval
    return float(low), float(high)


def compare(metric: str, y: np.ndarray, *, champion_predicted, champion_probabilities,
            challenger_predicted, challenger_probabilities, classes, confidence: float,
            seed: int) -> PairedComparison:
    """The paired comparison of two models' answers for the same labelled rows."""
    y = np.asarray(y)
    classes = np.asarray(classes)
    rows = len(y)
    challenger = _metric(metric, y, challenger_predicted, challenger_probabilities, classes)
    champion = _metric(metric, y, champion_predicted, champion_probabilities, classes)
    if rows < 2 or np.isnan(challenger) or np.isnan(champion):
        return PairedComparison(metric, rows, None if np.isnan(challenger) else challenger,
                                None if np.isnan(champion) else champion, None, None, None,
                                None, "undefined on these rows", confidence)
    rng = np.random.default_rng(seed)
    if metric == "accuracy":
        right_new = (challenger_predicted == y).astype(float)
        right_old = (champion_predicted == y).astype(float)
        only_new = int(np.sum((right_new == 1) & (right_old == 0)))
        only_old = int(np.sum((right_new == 0) & (right_old == 1)))
        if not only_new + only_old:  # the same rows right: no difference to resample
            return PairedComparison(metric, rows, challenger, champion, 0.0, 0.0, 0.0, 1.0,
                                    "no row where only one model is right", confidence)
        low, high, p_value, method = _accuracy_test(right_new, right_old, only_new, only_old,
                                                    confidence, rng)
    else:
        low, high, p_value, method = _resampled_test(
            metric, y, (challenger_predicted, challenger_probabilities),
            (champion_predicted, champion_probabilities), classes, confidence, rng)
    return PairedComparison(metric, rows, challenger, champion, challenger - champion, low,
                            high, float(p_value), method, confidence)


def _accuracy_test(right_new: np.ndarray, right_old: np.ndarray, only_new: int, only_old: int,
                   confidence: float, rng) -> tuple[float, float, float, str]:
    """The BCa interval of the accuracy difference, and the exact McNemar test."""
    from scipy.stats import binomtest

    low, high = paired_accuracy_interval(len(right_new), only_new, only_old, confidence, rng)
    p_value = binomtest(only_new, only_new + only_old, 0.5).pvalue
    return low, high, p_value, (
        f"paired bootstrap ({BOOTSTRAP_RESAMPLES} resamples, BCa); exact McNemar test on the "
        f"{only_new + only_old} rows where only one model is right")


def paired_accuracy_interval(rows: int, only_new: int, only_old: int, confidence: float,
                             rng) -> tuple[float, float]:
    """The paired bootstrap's BCa interval of (challenger - champion) accuracy, from counts.

    A row adds +1 (only the challenger right), -1 (only the champion) or 0 to the difference, so
    a resample of the rows is a multinomial draw of those three counts: the same distribution as
    resampling rows (``scipy.stats.bootstrap(paired=True)``), at a cost that does not grow with
    the rows. The bias correction and the jackknife acceleration are scipy's BCa formulas, with
    each row's leave-one-out value from its kind."""
    from scipy.special import ndtr, ndtri

    shares = np.array([only_new, only_old, rows - only_new - only_old]) / rows
    counts = rng.multinomial(rows, shares, size=BOOTSTRAP_RESAMPLES)
    resampled = (counts[:, 0] - counts[:, 1]) / rows
    observed = (only_new - only_old) / rows
    alpha = (1 - confidence) / 2
    share_below = (np.sum(resampled < observed) + np.sum(resampled <= observed)) / (
        2 * BOOTSTRAP_RESAMPLES)
    bias = ndtri(share_below)
    # Jackknife: leaving out a row of value d gives (rows * observed - d) / (rows - 1).
    values = np.array([1.0, -1.0, 0.0])
    weights = np.array([only_new, only_old, rows - only_new - only_old], dtype=float)
    left_out = (rows * observed - values) / (rows - 1)
    mean = np.sum(weights * left_out) / rows
    spread = np.sum(weights * (mean - left_out) ** 2)
    acceleration = (np.sum(weights * (mean - left_out) ** 3) / (6 * spread ** 1.5)
                    if spread > 0 else 0.0)
    if not np.isfinite(bias):  # every resample on one side: the percentile interval
        return (float(np.percentile(resampled, 100 * alpha)),
                float(np.percentile(resampled, 100 * (1 - alpha))))
    levels = []
    for z in (ndtri(alpha), -ndtri(alpha)):
        levels.append(float(ndtr(bias + (bias + z) / (1 - acceleration * (bias + z)))))
    return (float(np.percentile(resampled, 100 * levels[0])),
            float(np.percentile(resampled, 100 * levels[1])))


def _resampled_test(metric: str, y: np.ndarray, new: tuple, old: tuple, classes, confidence: float,
                    rng) -> tuple[float, float, float, str]:
    """A percentile interval of the difference by resampling rows, and a paired permutation
    test; ``new`` and ``old`` are each model's (predicted, probabilities)."""
    from scipy.stats import bootstrap, permutation_test

    rows, index = len(y), np.arange(len(y))

    def difference(rows_drawn, axis=-1):
        rows_drawn = rows_drawn.astype(int)
        return (_metric(metric, y[rows_drawn], new[0][rows_drawn], new[1][rows_drawn], classes)
                - _metric(metric, y[rows_drawn], old[0][rows_drawn], old[1][rows_drawn],
                          classes))

    def run(method):
        return bootstrap((index,), difference, vectorized=False, confidence_level=confidence,
                         n_resamples=SLOW_RESAMPLES, method=method, random_state=rng)

    low, high = _interval(run, "percentile")
    # Each row's two answers swap together: the permuted samples are indices into both
    # models' answers stacked (row i of the challenger is i, of the champion rows + i).
    stacked_predicted = np.concatenate([new[0], old[0]])
    stacked_probabilities = np.concatenate([new[1], old[1]])
    labels = np.concatenate([y, y])

    def swapped(first, second):
        first, second = first.astype(int), second.astype(int)
        return (_metric(metric, labels[first], stacked_predicted[first],
                        stacked_probabilities[first], classes)
                - _metric(metric, labels[second], stacked_predicted[second],
                          stacked_probabilities[second], classes))

    p_value = float(permutation_test((index, index + rows), swapped,
                                     permutation_type="samples", vectorized=False,
                                     n_resamples=SLOW_RESAMPLES, random_state=rng).pvalue)
    return low, high, p_value, (f"paired bootstrap ({SLOW_RESAMPLES} resamples, percentile); "
                                f"paired permutation test ({SLOW_RESAMPLES} permutations)")


def interval_of(metric: str, y: np.ndarray, predicted, probabilities, classes, *,
                confidence: float, seed: int) -> tuple[float, float] | None:
    """A bootstrap interval of one model's score (a cold start has nothing to compare with)."""
    from scipy.stats import bootstrap

    y = np.asarray(y)
    if len(y) < 2:
        return None
    rng = np.random.default_rng(seed)
    if metric == "accuracy":  # a resample's right answers are a binomial draw: the same thing
        right = int(np.sum(np.asarray(predicted) == y))
        means = rng.binomial(len(y), right / len(y), size=BOOTSTRAP_RESAMPLES) / len(y)
        alpha = (1 - confidence) / 2
        return (float(np.percentile(means, 100 * alpha)),
                float(np.percentile(means, 100 * (1 - alpha))))
    else:
        def score(rows_drawn, axis=-1):
            rows_drawn = rows_drawn.astype(int)
            return _metric(metric, y[rows_drawn], np.asarray(predicted)[rows_drawn],
                           probabilities[rows_drawn], np.asarray(classes))

        result = bootstrap((np.arange(len(y)),), score, vectorized=False,
                           confidence_level=confidence, n_resamples=SLOW_RESAMPLES,
                           method="percentile", random_state=rng)
    low, high = result.confidence_interval
    return (None if np.isnan(low) else (float(low), float(high)))
