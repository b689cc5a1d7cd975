"""Stage 5, evaluate: compare champion and challenger on the same holdout rows, and decide.

The evaluation rows are holdout rows (:mod:`components.data.roles`), which no version trains on:
this run's new ones first, then the newest of the rolling holdout kept in the registry, reaching
back until there are ``min_evaluation_rows`` (at most ``max_evaluation_rows``, the newest). Rows
from before a concept change would judge the models on a world that is gone, so when the
champion's accuracy on this run's rows is lower than on the earlier ones, with the gate's
confidence (Fisher's exact test), the earlier rows are left out and the report says so. The
statistics are :mod:`components.ml.comparison`'s, the decision the deploy gate's
(:mod:`components.policies`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from components.data.chunks import as_table
from components.data.schema import SOURCE_FILE_COLUMN
from components.ml.comparison import PairedComparison, compare, interval_of
from components.ml.metrics import Predictions, predict
from components.ml.threads import limited_threads
from components.policies import GateVerdict, gate_decision


@dataclass
class EvaluationRows:
    """The rows the gate compares on, and where they come from."""

    frame: pd.DataFrame
    new_rows: int  # this run's holdout rows among them
    earlier_rows: int  # from the rolling holdout of earlier runs
    available: int  # holdout rows there were to choose from
    period_start: str = ""
    period_end: str = ""
    note: str = ""

    def summary(self) -> dict:
        summary = asdict(self)
        summary.pop("frame")
        return {"rows": int(len(self.frame)), **summary}


def _newest(data, count: int, timestamp_column: str) -> pd.DataFrame:
    """The newest ``count`` rows of a table (by event time, else by file and row order)."""
    table = as_table(data)
    if table.rows <= count:
        return table.read()
    if timestamp_column and timestamp_column in table.columns:
        stamps = np.concatenate([chunk[timestamp_column].to_numpy(dtype="datetime64[ns]")
                                 for chunk in table.chunks(columns=[timestamp_column])])
        keep = np.zeros(len(stamps), dtype=bool)
        keep[np.argsort(stamps, kind="stable")[-count:]] = True
    else:
        keep = np.zeros(table.rows, dtype=bool)
        keep[-count:] = True
    parts, offset = [], 0
    for chunk in table.chunks():
        parts.append(chunk[keep[offset:offset + len(chunk)]])
        offset += len(chunk)
    return pd.concat(parts, ignore_index=True)


def _period(frame: pd.DataFrame, timestamp_column: str) -> tuple[str, str]:
    if not len(frame):
        return "", ""
    if timestamp_column and timestamp_column in frame:
        stamps = pd.to_datetime(frame[timestamp_column], utc=True)
        return str(stamps.min()), str(stamps.max())
    if SOURCE_FILE_COLUMN in frame:
        files = sorted(frame[SOURCE_FILE_COLUMN].astype(str).unique())
        return files[0], files[-1]
    return "", ""


def evaluation_rows(new_holdout, pool, *, min_rows: int, max_rows: int,
                    timestamp_column: str) -> EvaluationRows:
    """This run's holdout rows, then the newest earlier ones until ``min_rows`` (at most
    ``max_rows``, the newest)."""
    new = _newest(new_holdout, max_rows, timestamp_column)
    available = as_table(new_holdout).rows + (as_table(pool).rows if pool is not None else 0)
    earlier = pd.DataFrame()
    if pool is not None and len(new) < min_rows:
        earlier = _newest(pool, min(min_rows, max_rows) - len(new), timestamp_column)
    frame = pd.concat([earlier, new], ignore_index=True) if len(earlier) else new
    start, end = _period(frame, timestamp_column)
    note = "" if len(frame) >= min_rows else (
        f"only {len(frame)} holdout rows exist, fewer than min_evaluation_rows {min_rows}")
    return EvaluationRows(frame, len(new), len(earlier), available, start, end, note)


def without_stale_rows(rows: EvaluationRows, champion: Predictions, *, confidence: float,
                       timestamp_column: str) -> EvaluationRows:
    """The rows without the earlier ones when the champion is worse on this run's rows than on
    the earlier ones, with ``confidence``: a concept change, which the earlier rows predate."""
    from scipy.stats import fisher_exact

    if not rows.earlier_rows or not rows.new_rows:
        return rows
    right = champion.predicted == champion.labels
    earlier, new = right[:rows.earlier_rows], right[rows.earlier_rows:]
    table = [[int(new.sum()), int((~new).sum())], [int(earlier.sum()), int((~earlier).sum())]]
    p_value = fisher_exact(table, alternative="less").pvalue
    if p_value >= 1 - confidence:
        return rows
    frame = rows.frame.iloc[rows.earlier_rows:].reset_index(drop=True)
    start, end = _period(frame, timestamp_column)
    return EvaluationRows(frame, rows.new_rows, 0, rows.available, start, end,
                          f"concept change: the champion is right on {new.mean():.3f} of this "
                          f"run's {len(new)} holdout rows and on {earlier.mean():.3f} of the "
                          f"{len(earlier)} earlier ones (Fisher's exact test p={p_value:.2g}); "
                          "the earlier rows are left out")


@dataclass(frozen=True)
class Evaluation:
    """Both models' scores on the evaluation rows, their paired comparison, and the verdict."""

    challenger: Predictions
    challenger_scores: dict
    champion_scores: dict | None
    comparison: PairedComparison | None
    verdict: GateVerdict
    rows: EvaluationRows

    def gate(self) -> dict:
        """What the decision record and ``retrain run --json`` say of the gate."""
        stats = self.comparison.to_dict() if self.comparison else {
            "metric": None, "rows": len(self.rows.frame), "delta": None, "ci_low": None,
            "ci_high": None, "p_value": None, "method": "cold start: the threshold alone"}
        return {**stats, "evaluation": self.rows.summary()}


def evaluate(challenger, champion, new_holdout, pool, *, label_column: str,
             timestamp_column: str, metric: str, threshold: float, min_improvement: float,
             min_rows: int, max_rows: int, confidence: float, seed: int,
             champion_version: str) -> Evaluation:
    """Score the challenger (and the champion, if there is one) on the evaluation rows, compare
    them paired, and decide.

    ``new_holdout`` and ``pool``: this run's holdout rows and the registry's rolling holdout
    (None if there is none yet); DataFrames, Parquet paths or Tables.
    """
    rows = evaluation_rows(new_holdout, pool, min_rows=min_rows, max_rows=max_rows,
                           timestamp_column=timestamp_column)
    with limited_threads(len(rows.frame)):
        champion_predictions = (predict(champion, rows.frame, label_column)
                                if champion is not None else None)
        if champion_predictions is not None:
            trimmed = without_stale_rows(rows, champion_predictions, confidence=confidence,
                                         timestamp_column=timestamp_column)
            if trimmed is not rows:
                dropped = rows.earlier_rows
                rows = trimmed
                champion_predictions = _tail(champion_predictions, dropped)
        challenger_predictions = predict(challenger, rows.frame, label_column)
    challenger_scores = challenger_predictions.scores()
    champion_scores = champion_predictions.scores() if champion_predictions else None
    comparison, cold_interval = None, None
    if champion_predictions is not None:
        comparison = compare(
            metric, challenger_predictions.labels,
            champion_predicted=champion_predictions.predicted,
            champion_probabilities=_aligned(champion_predictions, challenger_predictions),
            challenger_predicted=challenger_predictions.predicted,
            challenger_probabilities=challenger_predictions.probabilities,
            classes=challenger_predictions.classes, confidence=confidence, seed=seed)
    elif len(rows.frame):
        cold_interval = interval_of(metric, challenger_predictions.labels,
                                    challenger_predictions.predicted,
                                    challenger_predictions.probabilities,
                                    challenger_predictions.classes, confidence=confidence,
                                    seed=seed)
    verdict = gate_decision(comparison, challenger_scores.get(metric), metric=metric,
                            threshold=threshold, min_improvement=min_improvement,
                            rows=len(rows.frame), champion_version=champion_version,
                            cold_interval=cold_interval, confidence=confidence)
    return Evaluation(challenger_predictions, challenger_scores, champion_scores, comparison,
                      verdict, rows)


def _tail(predictions: Predictions, dropped: int) -> Predictions:
    return Predictions(predictions.labels[dropped:], predictions.probabilities[dropped:],
                       predictions.classes, predictions.predicted[dropped:])


def _aligned(champion: Predictions, challenger: Predictions) -> np.ndarray:
    """The champion's probabilities in the challenger's class order (a new class gets 0)."""
    if list(champion.classes) == list(challenger.classes):
        return champion.probabilities
    aligned = np.zeros((len(champion.labels), len(challenger.classes)))
    for index, cls in enumerate(challenger.classes):
        matches = np.flatnonzero(champion.classes == cls)
        if len(matches):
            aligned[:, index] = champion.probabilities[:, matches[0]]
    return aligned
