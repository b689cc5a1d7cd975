"""Stage 5, evaluate: compare champion and challenger on the same rows, and decide.

The champion has seen none of this run's new rows, so every one of them is evidence: the
holdout rows (:mod:`components.data.roles`), which no version trains on, answered by the
challenger itself, and the training rows, answered by retrain's cross-fitted fits of the same
procedure, each without the row (the ``cross_fitted`` rows). To these come the newest rows of the
rolling holdout kept in the registry, up to ``max_evaluation_rows``, but never those that promoted
the champion (deploy marks them). Rows from before a concept change would judge the models on a
world that is gone, so the rows are taken a batch at a time (a file, or a file's calendar month:
the batches of :func:`components.data.drift.batch_names`), and they start after the batch
boundary where the rows before it and after it differ most, if significantly
(:func:`components.ml.concept_change.since_concept_change`). Every row after that boundary is
judged on; since the boundary is chosen on those rows, the comparison on them is drawn at the
gate's level shared among the boundaries it was chosen from (:func:`shared_level`), so the
choice cannot make an equal challenger pass more often than ``confidence`` allows. Then the
newest whole batches of earlier rows are taken until there are ``min_evaluation_rows``. A model
chosen on these rows serves the next ones, and under drift the newest batch is nearest to them:
where the judged rows span more than one batch, the two models are also compared on the newest
batch alone, better with confidence on either deploys, and the two share the gate's error. The
record says how many rows of each kind the decision used, how their answers were obtained,
where the rows stopped and why. The statistics are :mod:`components.ml.comparison`'s, the
decision the deploy gate's (:mod:`components.policies`).
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from components.data.chunks import as_table, rows_since_newest
from components.data.drift import batch_names
from components.data.roles import PROMOTED_VERSION_COLUMN
from components.data.schema import SOURCE_FILE_COLUMN, plain_value
from components.ml.comparison import PairedComparison, compare, compared, interval_of, percent
from components.ml.concept_change import (
    batch_starts,
    in_time_order,
    learned_every_row_of,
    since_concept_change,
)
from components.ml.metrics import (
    PER_ROW_WEIGHT,
    Predictions,
    per_row_weights,
    predict,
    right_answers,
    split_cross_fitted,
    with_cross_fitted,
)
from components.ml.threads import limited_threads
from components.outcomes import GateDecision, GateMetric, Strategy
from components.policies import FreshComparison, GateVerdict, NewestBatch, gate_decision
from components.records import VersionMetadata


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
    cross_fitted_rows: int = 0  # this run's training rows, the challenger's answers cross-fitted
    left_out_promoting: int = 0  # earlier rows left out: they promoted the champion
    concept_change: bool = False  # a change at or within this run's rows (not only earlier)
    predictions: str = ""  # how the challenger's answer for each kind of row was obtained
    cut_chosen_among: int = 0  # batch boundaries a concept-change cut was chosen among (0: none)
    newest_batch: str = ""  # the batch also judged alone ("": the rows are one batch)
    in_newest_batch: np.ndarray | None = None  # which rows it holds
    # Per judged row, its weight in the paired difference under an equal challenger
    # (components.ml.metrics.per_row_weights; None: every row alike, as where none weighs
    # anything), and what they weigh.
    row_weights: np.ndarray | None = None
    newest_batch_share_of: str = "the rows"

    @property
    def newest_batch_rows(self) -> int:
        return int(self.in_newest_batch.sum()) if self.newest_batch else 0

    @property
    def newest_batch_share(self) -> float:
        """The newest batch's share of what the test on every row weighs: of the row weights
        where there are any (for accuracy, of the rows where exactly one model is right), else
        of the rows. The two tests' differences correlate by its square root, so it is exact
        where the newest batch's rows disagree more or less often than older ones."""
        if not self.newest_batch:
            return 0.0
        if self.row_weights is not None:
            return float(self.row_weights[self.in_newest_batch].sum() / self.row_weights.sum())
        return self.newest_batch_rows / len(self.frame)

    def comparison_confidence(self, level: float) -> float:
        """The level the comparisons with the champion on every row are drawn at: ``level``,
        its error shared among the boundaries a concept-change cut was chosen from
        (Bonferroni), so that choosing the cut where the champion happened to do worst cannot
        make an equal challenger pass more often than ``level`` allows."""
        return shared_level(level, self.cut_chosen_among)

    def better_confidence(self, level: float) -> float:
        """The level "better with confidence" is tested at on every row. With a newest batch
        also tested alone, an equal challenger must pass either test no more often than
        ``level`` allows: both tests are drawn at :meth:`newest_batch_confidence`; after a cut,
        whose choice makes every row's test a pick among several, this one at half of
        :meth:`comparison_confidence`'s error (Bonferroni)."""
        if not self.newest_batch:
            return self.comparison_confidence(level)
        if self.cut_chosen_among:
            return shared_level(self.comparison_confidence(level), 2)
        return self.newest_batch_confidence(level)

    def newest_batch_confidence(self, level: float) -> float:
        """The newest batch's own test: :func:`nested_pair_level` for its share of the rows;
        after a cut, the other half of the error (the newest batch is judged whatever the cut,
        so the cut's choice does not touch it)."""
        if self.cut_chosen_among:
            return shared_level(level, 2)
        return nested_pair_level(level, round(self.newest_batch_share, 4))

    def summary(self) -> dict:
        summary = asdict(self)
        for unsaid in ("frame", "in_newest_batch", "row_weights"):
            summary.pop(unsaid)
        return {"rows": int(len(self.frame)), **summary,
                "newest_batch_rows": self.newest_batch_rows,
                "newest_batch_share": round(self.newest_batch_share, 4)}


ROW_SOURCE = "__evaluation_source"  # which kind of row: while the rows are chosen
EARLIER, HOLDOUT, CROSS_FITTED = "earlier", "holdout", "cross-fitted"


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


def candidate_rows(new_holdout, pool, *, max_rows: int, timestamp_column: str,
                   cross_fitted=None, champion_version: str = "") -> tuple[pd.DataFrame, int]:
    """The newest ``max_rows`` of the rows the gate may judge on, oldest first (by event time;
    in batch mode earlier runs' rows, then this run's in file order), each marked with its kind
    (:data:`ROW_SOURCE`): the rolling holdout's, this run's holdout rows, and this run's
    cross-fitted training rows. Rolling-holdout rows whose judgement promoted the champion are
    left out (a champion is not judged on the rows that chose it); how many is the second value.
    """
    parts = ((pool, EARLIER), (new_holdout, HOLDOUT), (cross_fitted, CROSS_FITTED))
    # This run's rows can be millions, none of them promoting: only their newest can be kept.
    frames = [frame.assign(**{ROW_SOURCE: kind}) for data, kind in parts if data is not None
              for frame in [as_table(data).read() if kind == EARLIER
                            else newest_rows(data, max_rows, timestamp_column)] if len(frame)]
    if not frames:
        return as_table(new_holdout).read().assign(**{ROW_SOURCE: HOLDOUT}), 0
    frame = pd.concat(frames, ignore_index=True)
    left_out = 0
    if PROMOTED_VERSION_COLUMN in frame:
        promoting = (frame[PROMOTED_VERSION_COLUMN] == champion_version).to_numpy() & bool(
            champion_version)
        left_out = int(promoting.sum())
        frame = frame[~promoting].drop(columns=[PROMOTED_VERSION_COLUMN])
    frame = in_time_order(frame, timestamp_column, (frame[ROW_SOURCE] != EARLIER).to_numpy())
    return frame.tail(max_rows).reset_index(drop=True), left_out


def newest_rows(data, max_rows: int, timestamp_column: str) -> pd.DataFrame:
    """``data``'s rows, in file order; only its newest ``max_rows`` when it has more, ordered by
    :func:`in_time_order` as :func:`candidate_rows` orders every candidate (so no more of them
    can be among the newest of all), from the rows :func:`rows_since_newest` reads a chunk at a
    time. In batch mode (no event time) every row."""
    _, rows = rows_since_newest(data, max_rows, timestamp_column)
    if len(rows) <= max_rows or not timestamp_column or timestamp_column not in rows:
        return rows
    ordered = in_time_order(rows, timestamp_column, np.ones(len(rows), dtype=bool))
    return rows.loc[np.sort(ordered.index[len(rows) - max_rows:])].reset_index(drop=True)


def shared_level(level: float, ways: int) -> float:
    """``level`` with its error shared ``ways`` ways (Bonferroni; 0 or 1: ``level``): among the
    batch boundaries a cut was chosen from, or between two tests either of which deploys."""
    return 1 - (1 - level) / max(1, ways)


@functools.lru_cache(maxsize=1024)
def nested_pair_level(level: float, share: float) -> float:
    """The level two tests of "better" are each drawn at when passing either deploys and one is
    drawn on a ``share`` (0..1) of the other's evidence (the newest batch among every row, by
    :attr:`EvaluationRows.newest_batch_share`): an equal challenger then passes one or the
    other as often as one test at ``level`` lets it (its one-sided error, (1 - level) / 2). The
    two differences correlate by sqrt(share) (normal approximation). Halving the error
    (Bonferroni) ignores that the newest batch is part of every row and is stricter: at 0.95,
    97.24% each for a third of the evidence (the newest 200 of 600 rows where they weigh
    alike) where it gives 97.5%; all of it makes the two tests one. Rounded up to 0.0001."""
    from scipy.optimize import brentq
    from scipy.special import owens_t
    from scipy.stats import norm

    if share >= 1:
        return level
    tail, correlation = (1 - level) / 2, np.sqrt(max(0.0, share))
    slope = np.sqrt((1 - correlation) / (1 + correlation))

    def either_passes(z: float) -> float:  # P(Z1 > z or Z2 > z), by Owen's T function
        return norm.sf(z) + 2 * owens_t(z, slope)

    z = brentq(lambda z: either_passes(z) - tail, norm.isf(tail), norm.isf(tail / 2))
    return float(np.ceil((1 - 2 * norm.sf(z)) * 10_000) / 10_000)


@dataclass(frozen=True)
class Cut:
    """Which rows the gate judges on after a concept change: ``kept``, the note that says why,
    whether the change touches this run's rows (at their first batch or within them), and the
    number of batch boundaries the cut was chosen among (0: no change, every row kept)."""

    kept: np.ndarray
    note: str = ""
    new_rows_changed: bool = False
    chosen_among: int = 0


def cut_at_change(frame: pd.DataFrame, champion_right: np.ndarray, challenger_right: np.ndarray,
                  *, confidence: float, timestamp_column: str,
                  this_run: np.ndarray | None = None) -> Cut:
    """The rows from the batch boundary where :func:`since_concept_change` finds the champion's
    world changed, all of them evidence. The cut is chosen on the rows it keeps, so it tends to
    start where the champion happened to do worst, which leans towards the challenger; the
    comparison on them is drawn at :func:`shared_level`, corrected for that choice. A change
    before all of this run's rows (``this_run``) only decides which earlier rows join them:
    this run's rows are all kept, as they would be without a change. Without a change every row
    is kept."""
    end, note = since_concept_change(frame, champion_right, challenger_right,
                                     confidence=confidence, timestamp_column=timestamp_column)
    if not end:
        return Cut(np.ones(len(frame), dtype=bool))
    among = len(batch_starts(frame, timestamp_column)[1])
    kept = np.arange(len(frame)) >= end  # this run's rows are the newest: all kept
    first_new = _first_of(this_run, default=None)
    before_this_run = first_new is not None and end < first_new
    where = ("before this run's rows: the earlier rows from there on join this run's"
             if before_this_run else f"the gate judges on the {int(kept.sum())} rows from there on")
    return Cut(kept, (f"{note}; {where}, and the {len(frame) - int(kept.sum())} older rows are "
                      f"left out; the cut was chosen among {among} batch boundaries, so the "
                      f"comparison is drawn at {percent(shared_level(confidence, among))} "
                      "confidence"), not before_this_run, among)


def _first_of(mask: np.ndarray | None, default):
    """The index of the first true row of ``mask`` (this run's first row), else ``default``."""
    return int(np.argmax(mask)) if mask is not None and mask.any() else default


def newest_batches(frame: pd.DataFrame, *, kept: np.ndarray, min_rows: int,
                   timestamp_column: str, this_run: np.ndarray | None = None) -> np.ndarray:
    """``kept`` from the boundary where the newest whole batches first reach ``min_rows`` kept
    rows (all of ``kept`` when together they do not). Every one of this run's rows
    (``this_run``) is evidence: only earlier rows are left out to keep to ``min_rows``."""
    _, boundaries = batch_starts(frame, timestamp_column)
    first_new = _first_of(this_run, default=len(frame))
    left = np.concatenate([np.cumsum(kept[::-1])[::-1], [0]])  # kept rows from each index on
    reached = [b for b in boundaries if left[b] >= min_rows and b <= first_new]
    start = max(reached, default=0)
    return kept & (np.arange(len(frame)) >= start)


def newest_batch_of(judged: pd.DataFrame, timestamp_column: str) -> tuple[str, np.ndarray]:
    """The batch of the newest of the judged rows (oldest first), and which rows are in it."""
    if not len(judged):
        return "", np.zeros(0, dtype=bool)
    names = batch_names(judged, timestamp_column)
    return str(names[-1]), names == names[-1]


def evaluation_rows(frame: pd.DataFrame, available: int, *, kept: np.ndarray, min_rows: int,
                    timestamp_column: str, change_note: str = "",
                    left_out_promoting: int = 0, concept_change: bool = False,
                    cut_chosen_among: int = 0, confidence: float = 0.95,
                    against_champion: bool = False, row_weights: np.ndarray | None = None,
                    weighed_by: str = "") -> EvaluationRows:
    """The judged rows and what the record says of them. ``against_champion``: whether there is
    a champion to compare with, and so a newest batch to judge alone when the rows span more
    than one. ``row_weights`` (over ``frame``) and ``weighed_by``: each row's weight in the
    paired difference and what it is (:func:`components.ml.metrics.per_row_weights`)."""
    judged = frame[kept].reset_index(drop=True)
    kinds = judged[ROW_SOURCE].value_counts() if ROW_SOURCE in judged else pd.Series(
        {HOLDOUT: len(judged)})
    judged = judged.drop(columns=[ROW_SOURCE], errors="ignore")
    period_start, period_end = _period(judged, timestamp_column)
    notes = [change_note] if change_note else []
    if left_out_promoting:
        notes.append(f"{left_out_promoting} earlier holdout rows that promoted the champion "
                     "are left out")
    if len(judged) < min_rows:
        notes.append(f"{len(judged)} rows to compare on, fewer than min_evaluation_rows "
                     f"{min_rows}")
    counts = {kind: int(kinds.get(kind, 0)) for kind in (EARLIER, HOLDOUT, CROSS_FITTED)}
    said = [f"cross-fitted answers on {counts[CROSS_FITTED]} new training rows (each from a "
            "fit without it)"] if counts[CROSS_FITTED] else []
    if counts[HOLDOUT] + counts[EARLIER] or not said:
        said.append(f"the challenger model's own answers on {counts[HOLDOUT] + counts[EARLIER]} "
                    "holdout rows")
    predictions = ", ".join(said)
    newest, in_newest = newest_batch_of(judged, timestamp_column)
    if not against_champion or in_newest.all():
        newest, in_newest = "", None
    weighed = (dict(row_weights=row_weights[kept], newest_batch_share_of=weighed_by)
               if newest and row_weights is not None and row_weights[kept].sum() > 0 else {})
    rows = EvaluationRows(judged, counts[HOLDOUT], counts[EARLIER], available, period_start,
                          period_end, "", cross_fitted_rows=counts[CROSS_FITTED],
                          left_out_promoting=left_out_promoting, concept_change=concept_change,
                          predictions=predictions, cut_chosen_among=cut_chosen_among,
                          newest_batch=newest, in_newest_batch=in_newest, **weighed)
    if newest:
        notes.append(f"the gate also compares on the newest batch alone ({newest}, "
                     f"{rows.newest_batch_rows} rows), and better with confidence on either "
                     f"deploys, so {_shared_how(rows)}: "
                     f"{percent(rows.better_confidence(confidence))} on every row, "
                     f"{percent(rows.newest_batch_confidence(confidence))} on the newest batch")
    rows.note = "; ".join(notes)
    return rows


def _shared_how(rows: EvaluationRows) -> str:
    if rows.cut_chosen_among:
        return "each has half of the error"
    share = (f"holds {rows.newest_batch_share:.1%} of {rows.newest_batch_share_of}"
             if rows.row_weights is not None
             else f"is {rows.newest_batch_rows} of the {len(rows.frame)} rows")
    return ("both are drawn at the level that keeps an equal challenger to the gate's error "
            f"(the newest batch {share})")


@dataclass(frozen=True)
class Baseline:
    """The trivial predictor's answer and the challenger's paired comparison with it (the
    baseline as the comparison's "champion")."""

    answer: object
    comparison: PairedComparison
    regression: bool = False

    def text(self) -> str:
        """``always answering 0``, or ``always answering the mean 12.5``."""
        if self.regression:
            return f"always answering the mean {self.answer:.6g}"
        return f"always answering {self.answer!r}"

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
    fresh: FreshComparison | None = None
    metric: str = GateMetric.ACCURACY
    champion: Predictions | None = None  # the champion's answers on the same rows
    newest: NewestBatch | None = None  # the comparison on the newest batch alone

    def gate(self) -> dict:
        """What the decision record and ``retrain run --json`` say of the gate."""
        comparison = self.comparison or PairedComparison.threshold_only(
            len(self.rows.frame), self.confidence,
            "lower" if GateMetric.lower_is_better(self.metric) else "higher")
        gate = {**comparison.to_dict(), "evaluation": self.rows.summary()}
        if self.baseline is not None:
            gate["baseline"] = self.baseline.to_dict()
        if self.fresh is not None:
            gate["freshness"] = self.fresh.to_dict()
        if self.newest is not None:
            gate["newest_batch"] = self.newest.to_dict()
        return gate


@dataclass(frozen=True)
class Freshness:
    """The freshness rule's terms (:func:`components.policies.paired_verdict`)."""

    margin: float
    confidence: float


def evaluate(challenger, champion, new_holdout, pool, *, label_column: str,
             timestamp_column: str, metric: str, threshold: float | None,
             min_improvement: float,
             min_rows: int, max_rows: int, confidence: float, seed: int,
             champion_version: str, cross_fitted=None, fresh_refit: bool = False,
             freshness: Freshness | None = None) -> Evaluation:
    """Score the challenger (and the champion, if there is one) on the evaluation rows, compare
    them paired, and decide. ``metric`` is resolved for the task and ``threshold`` is the bar it
    is held to (None: none).

    ``new_holdout``, ``pool`` and ``cross_fitted``: this run's holdout rows, the registry's
    rolling holdout (None if there is none yet) and retrain's cross-fitted new training rows
    (None or empty: none); DataFrames, Parquet paths or Tables. ``fresh_refit``: whether the
    challenger learned every row its champion did (:func:`refits_the_champions_rows`), for the
    freshness rule.
    """
    frame, left_out = candidate_rows(new_holdout, pool, max_rows=max_rows,
                                     timestamp_column=timestamp_column,
                                     cross_fitted=cross_fitted, champion_version=champion_version)
    available = sum(as_table(d).rows for d in (new_holdout, pool, cross_fitted) if d is not None)
    frame, cross_columns = split_cross_fitted(frame)
    cut = Cut(np.ones(len(frame), dtype=bool))
    with limited_threads(len(frame)):
        challenger_predictions = with_cross_fitted(
            predict(challenger, frame, label_column), cross_columns,
            (frame[ROW_SOURCE] == CROSS_FITTED).to_numpy())
        champion_predictions = (predict(champion, frame, label_column)
                                if champion is not None and len(frame) else None)
    this_run = (frame[ROW_SOURCE] != EARLIER).to_numpy()
    row_weights = None
    if champion_predictions is not None:
        row_weights = per_row_weights(metric, challenger_predictions, champion_predictions)
        cut = cut_at_change(frame, *right_answers(champion_predictions, challenger_predictions),
                            confidence=confidence, timestamp_column=timestamp_column,
                            this_run=this_run)
    kept = newest_batches(frame, kept=cut.kept, min_rows=min_rows,
                          timestamp_column=timestamp_column, this_run=this_run)
    rows = evaluation_rows(frame, available, kept=kept, min_rows=min_rows,
                           timestamp_column=timestamp_column, change_note=cut.note,
                           left_out_promoting=left_out, concept_change=cut.new_rows_changed,
                           cut_chosen_among=cut.chosen_among, confidence=confidence,
                           against_champion=champion_predictions is not None,
                           row_weights=row_weights, weighed_by=PER_ROW_WEIGHT.get(metric, ""))
    challenger_predictions = challenger_predictions.subset(kept)
    if champion_predictions is not None:
        champion_predictions = champion_predictions.subset(kept)
    return _judged(challenger_predictions, champion_predictions, rows, metric=metric,
                   threshold=threshold, min_improvement=min_improvement, min_rows=min_rows,
                   confidence=confidence, seed=seed, champion_version=champion_version,
                   fresh_refit=fresh_refit, freshness=freshness)


# Strategies whose fit learns every row its champion learned from, and the new ones, by
# construction: all the rows, or the champion itself continued.
FRESH_REFITS = (Strategy.FULL, Strategy.FINETUNE)


def refits_the_champions_rows(strategy: str, training_batches: dict,
                              champion_meta: VersionMetadata | None) -> bool:
    """Whether the challenger learned every row its champion did, and the new ones: a refit of
    the same world when the rows show no concept change (the freshness rule). A full refit or a
    fine-tune does by construction; a window or since-change fit when it learned at least as
    many rows of each of the champion's batches (``training_batches``, the challenger's;
    :func:`components.ml.concept_change.learned_every_row_of`)."""
    return strategy in FRESH_REFITS or (champion_meta is not None and learned_every_row_of(
        training_batches, champion_meta.training_batches))


def _judged(challenger: Predictions, champion: Predictions | None, rows: EvaluationRows, *,
            metric: str, threshold: float | None, min_improvement: float, min_rows: int,
            confidence: float, seed: int, champion_version: str, fresh_refit: bool,
            freshness: Freshness | None) -> Evaluation:
    """Both models' scores on the judged rows, their paired comparison and the verdict."""
    challenger_scores = challenger.scores()
    champion_scores = champion.scores() if champion else None
    comparison, cold_interval, fresh, newest = None, None, None, None

    def paired(level: float) -> PairedComparison:
        return compared(metric, challenger, champion, confidence=level, seed=seed)

    if champion is not None:
        comparison = paired(rows.better_confidence(confidence))
        newest = _newest_batch(metric, challenger, champion, rows, confidence, seed)
    elif len(rows.frame):
        cold_interval = interval_of(metric, challenger.labels, challenger.predicted,
                                    challenger.probabilities, challenger.classes,
                                    confidence=confidence, seed=seed)
    baseline = against_baseline(metric, challenger, confidence, seed)
    decide = functools.partial(
        gate_decision, comparison, challenger_scores.get(metric), metric=metric,
        threshold=threshold, min_improvement=min_improvement, rows=len(rows.frame),
        min_evaluation_rows=min_rows, champion_version=champion_version,
        cold_interval=cold_interval, confidence=confidence, baseline=baseline,
        champion_score=(champion_scores or {}).get(metric), newest=newest)
    verdict = decide()
    # The freshness rule's own interval is drawn only where it could change the decision.
    if verdict.decision == GateDecision.REJECT and comparison is not None and \
            freshness is not None and fresh_refit and not rows.concept_change:
        fresh = FreshComparison(paired(rows.comparison_confidence(freshness.confidence)),
                                freshness.margin)
        verdict = decide(fresh=fresh)
    return Evaluation(challenger, challenger_scores, champion_scores, comparison, verdict, rows,
                      confidence, baseline, fresh, metric, champion, newest)


def _newest_batch(metric: str, challenger: Predictions, champion: Predictions,
                  rows: EvaluationRows, confidence: float, seed: int) -> NewestBatch | None:
    """The paired comparison on the newest batch alone, where the rows span more than one."""
    if not rows.newest_batch:
        return None
    alone = rows.in_newest_batch
    return NewestBatch(rows.newest_batch, compared(
        metric, challenger.subset(alone), champion.subset(alone),
        confidence=rows.newest_batch_confidence(confidence), seed=seed))


def against_baseline(metric: str, predictions: Predictions, confidence: float,
                     seed: int) -> Baseline | None:
    """The challenger against the trivial predictor on the same rows: always answering their
    most frequent class (the no-information rate), its probabilities the classes' shares; for
    a regressor, always answering their mean."""
    labels = predictions.labels
    if len(labels) < 2:
        return None
    if predictions.regression:
        mean = float(np.mean(labels))
        comparison = compare(metric, labels, champion_predicted=np.full(len(labels), mean),
                             champion_probabilities=None,
                             challenger_predicted=predictions.predicted,
                             challenger_probabilities=None, classes=None,
                             confidence=confidence, seed=seed)
        return Baseline(mean, comparison, regression=True)
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
