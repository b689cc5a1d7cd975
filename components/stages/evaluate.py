"""Stage 5, evaluate: compare champion and challenger on the same holdout rows, and decide.

The evaluation rows are holdout rows (:mod:`components.data.roles`), which no version trains on:
the newest of this run's and of the rolling holdout kept in the registry, up to
``max_evaluation_rows``. Rows from before a concept change would judge the models on a world that
is gone, so the rows are taken a batch at a time (a file, or a file's calendar month: the batches
of :func:`components.data.drift.batch_names`), and they start after the batch boundary where
the rows before it and after it differ most, if significantly: in how often the champion is right,
or in which model is right where only one is (Fisher's exact tests, two-sided, at the gate's level
shared among them). Then the newest whole batches are taken until there are
``min_evaluation_rows``. A stop can leave fewer
than ``min_evaluation_rows``; the record says where it stopped and why. A stop on a stable stream
(in at most 5% of runs) costs rows, not correctness: the rows kept are still unseen holdout rows.
The statistics are :mod:`components.ml.comparison`'s, the decision the deploy gate's
(:mod:`components.policies`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from components.data.chunks import as_table
from components.data.drift import batch_names
from components.data.schema import SOURCE_FILE_COLUMN, plain_value
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


NEW_ROW = "__new_holdout_row"  # marks this run's rows while the candidates are chosen


def _period(frame: pd.DataFrame, timestamp_column: str) -> tuple[str, str]:
    if not len(frame):
        return "", ""
    if timestamp_column and timestamp_column in frame:
        stamps = pd.to_datetime(frame[timestamp_column], utc=True)
        return str(stamps.min()), str(stamps.max())
    if SOURCE_FILE_COLUMN in frame:
        files = list(dict.fromkeys(frame[SOURCE_FILE_COLUMN].astype(str)))
        return files[0], files[-1]
    return "", ""


def candidate_rows(new_holdout, pool, *, max_rows: int, timestamp_column: str) -> pd.DataFrame:
    """The newest ``max_rows`` of the rolling holdout and this run's holdout rows, oldest first
    (by event time; in batch mode earlier runs' rows, then this run's, in file order)."""
    frames = [] if pool is None else [as_table(pool).read().assign(**{NEW_ROW: False})]
    frames.append(as_table(new_holdout).read().assign(**{NEW_ROW: True}))
    frame = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(
        len(f) for f in frames) else frames[-1]
    if timestamp_column and timestamp_column in frame and len(frame):
        order = np.argsort(pd.to_datetime(frame[timestamp_column], utc=True).to_numpy(),
                           kind="stable")
        frame = frame.iloc[order]
    return frame.tail(max_rows).reset_index(drop=True)


def _batch_starts(frame: pd.DataFrame, timestamp_column: str) -> tuple[list, list[int]]:
    names = batch_names(frame, timestamp_column)
    return names, [i for i in range(1, len(names)) if names[i] != names[i - 1]]


def _two_by_two(newer_yes: int, newer_no: int, older_yes: int, older_no: int) -> float:
    from scipy.stats import fisher_exact

    if min(newer_yes + newer_no, older_yes + older_no) == 0:
        return 1.0
    return float(fisher_exact([[newer_yes, newer_no], [older_yes, older_no]]).pvalue)


def since_concept_change(frame: pd.DataFrame, champion_right: np.ndarray,
                         challenger_right: np.ndarray, *, confidence: float,
                         timestamp_column: str) -> tuple[int, str]:
    """Where the rows worth judging on start: after the batch boundary at which the older rows
    tell the most different story from the newer ones, if that difference is significant, and
    the note that says so (0 and "" when no boundary's is).

    Two stories, each by Fisher's exact test on all the rows before a boundary against all the
    rows after it (so a change spread over several batches, too small between any two, is still
    found): the rate at which the champion is right (its world changed), and, among the rows where
    exactly one model is right, the share where it is the challenger (the comparison itself
    changed: e.g. a champion trained on both worlds is as right before as after, while a
    challenger trained on the new one is not). The gate's level is shared among the tests
    (Bonferroni), so a stable stream loses its older rows in at most that share of runs."""
    names, boundaries = _batch_starts(frame, timestamp_column)
    if not boundaries:
        return 0, ""
    tests = 2 * len(boundaries)
    only_challenger = challenger_right & ~champion_right
    only_champion = champion_right & ~challenger_right

    def counts(story: str, end: int) -> list[int]:
        """After the boundary (yes, no), then before it (yes, no)."""
        if story == "champion":
            yes, no = champion_right, ~champion_right
        else:
            yes, no = only_challenger, only_champion
        return [int(yes[end:].sum()), int(no[end:].sum()), int(yes[:end].sum()),
                int(no[:end].sum())]

    p_value, end, story = min(((_two_by_two(*counts(story, end)), end, story)
                               for end in boundaries for story in ("champion", "comparison")),
                              key=lambda found: (found[0], -found[1]))
    if p_value >= (1 - confidence) / tests:
        return 0, ""
    newer_yes, newer_no, older_yes, older_no = counts(story, end)
    if story == "champion":
        said = (f"the champion is right on {newer_yes / (newer_yes + newer_no):.3f} of the "
                f"{newer_yes + newer_no} rows from {names[end]} on and on "
                f"{older_yes / (older_yes + older_no):.3f} of the {older_yes + older_no} "
                f"older rows")
    else:
        said = (f"of the rows where one model alone is right, the challenger is on {newer_yes} "
                f"of {newer_yes + newer_no} from {names[end]} on and on {older_yes} of "
                f"{older_yes + older_no} of the {end} older rows")
    return end, (f"concept change: {said} (Fisher's exact test p={p_value:.2g}, below "
                 f"{1 - confidence:g} over {tests} tests); they are left out")


def newest_batches(frame: pd.DataFrame, *, start: int, min_rows: int,
                   timestamp_column: str) -> int:
    """Where the newest whole batches from ``start`` on first reach ``min_rows`` rows (``start``
    when all of them together do not)."""
    _, boundaries = _batch_starts(frame, timestamp_column)
    reached = [b for b in boundaries if b >= start and len(frame) - b >= min_rows]
    return max(reached, default=start)


def evaluation_rows(frame: pd.DataFrame, available: int, *, start: int, min_rows: int,
                    timestamp_column: str, change_note: str = "") -> EvaluationRows:
    kept = frame.iloc[start:].reset_index(drop=True)
    new = int(kept[NEW_ROW].sum()) if NEW_ROW in kept else len(kept)
    kept = kept.drop(columns=[NEW_ROW], errors="ignore")
    period_start, period_end = _period(kept, timestamp_column)
    notes = [change_note] if change_note else []
    if len(kept) < min_rows:
        notes.append(f"{len(kept)} holdout rows to compare on, fewer than min_evaluation_rows "
                     f"{min_rows}")
    return EvaluationRows(kept, new, len(kept) - new, available, period_start, period_end,
                          "; ".join(notes))


@dataclass(frozen=True)
class Baseline:
    """The trivial predictor's answer and the challenger's paired comparison with it (the
    baseline as the comparison's "champion")."""

    answer: object
    comparison: PairedComparison

    def to_dict(self) -> dict:
        c = self.comparison
        return {"answer": self.answer, "score": c.champion, "challenger_minus_baseline": c.delta,
                "ci_low": c.ci_low, "ci_high": c.ci_high, "p_value": c.p_value}


@dataclass(frozen=True)
class Evaluation:
    """Both models' scores on the evaluation rows, their paired comparison, and the verdict."""

    challenger: Predictions
    challenger_scores: dict
    champion_scores: dict | None
    comparison: PairedComparison | None
    verdict: GateVerdict
    rows: EvaluationRows
    confidence: float
    baseline: Baseline | None = None

    def gate(self) -> dict:
        """What the decision record and ``retrain run --json`` say of the gate."""
        comparison = self.comparison or PairedComparison.threshold_only(
            len(self.rows.frame), self.confidence)
        gate = {**comparison.to_dict(), "evaluation": self.rows.summary()}
        if self.baseline is not None:
            gate["baseline"] = self.baseline.to_dict()
        return gate


def evaluate(challenger, champion, new_holdout, pool, *, label_column: str,
             timestamp_column: str, metric: str, threshold: float, min_improvement: float,
             min_rows: int, max_rows: int, confidence: float, seed: int,
             champion_version: str) -> Evaluation:
    """Score the challenger (and the champion, if there is one) on the evaluation rows, compare
    them paired, and decide.

    ``new_holdout`` and ``pool``: this run's holdout rows and the registry's rolling holdout
    (None if there is none yet); DataFrames, Parquet paths or Tables.
    """
    frame = candidate_rows(new_holdout, pool, max_rows=max_rows,
                           timestamp_column=timestamp_column)
    available = as_table(new_holdout).rows + (as_table(pool).rows if pool is not None else 0)
    start, change_note = 0, ""
    with limited_threads(len(frame)):
        challenger_predictions = predict(challenger, frame, label_column)
        champion_predictions = (predict(champion, frame, label_column)
                                if champion is not None and len(frame) else None)
        if champion_predictions is not None:
            start, change_note = since_concept_change(
                frame, champion_predictions.right(), challenger_predictions.right(),
                confidence=confidence, timestamp_column=timestamp_column)
    start = newest_batches(frame, start=start, min_rows=min_rows,
                           timestamp_column=timestamp_column)
    rows = evaluation_rows(frame, available, start=start, min_rows=min_rows,
                           timestamp_column=timestamp_column, change_note=change_note)
    challenger_predictions = _tail(challenger_predictions, start)
    if champion_predictions is not None:
        champion_predictions = _tail(champion_predictions, start)
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
    baseline = against_baseline(metric, challenger_predictions, confidence, seed)
    verdict = gate_decision(comparison, challenger_scores.get(metric), metric=metric,
                            threshold=threshold, min_improvement=min_improvement,
                            rows=len(rows.frame), min_evaluation_rows=min_rows,
                            champion_version=champion_version,
                            cold_interval=cold_interval, confidence=confidence,
                            baseline=baseline,
                            champion_score=(champion_scores or {}).get(metric))
    return Evaluation(challenger_predictions, challenger_scores, champion_scores, comparison,
                      verdict, rows, confidence, baseline)


def against_baseline(metric: str, predictions: Predictions, confidence: float,
                     seed: int) -> Baseline | None:
    """The challenger against the trivial predictor on the same rows: always answering their
    most frequent class (the no-information rate), its probabilities the classes' shares."""
    labels = predictions.labels
    if len(labels) < 2:
        return None
    values, counts = np.unique(labels, return_counts=True)
    answer = values[np.argmax(counts)]
    shares = np.array([float(np.mean(labels == c)) for c in predictions.classes])
    comparison = compare(
        metric, labels, champion_predicted=np.full(len(labels), answer,
                                                   dtype=predictions.predicted.dtype),
        champion_probabilities=np.tile(shares, (len(labels), 1)),
        challenger_predicted=predictions.predicted,
        challenger_probabilities=predictions.probabilities, classes=predictions.classes,
        confidence=confidence, seed=seed)
    return Baseline(plain_value(answer), comparison)


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
