"""Stage 4, retrain: fit the challenger by fine-tuning, full refit, or sliding window.

Fine-tuning an ``hgb`` model adds boosting iterations fitted on the new rows, on top of the
champion's trees; fine-tuning an ``sgd`` model continues its ``partial_fit`` epochs on the new
rows; a team's own estimator (:mod:`components.ml.estimators`) continues by its module's
``continue_fit`` hook, ``partial_fit`` epochs or ``warm_start`` with more estimators, and
otherwise is not fine-tuned. Fine-tuning keeps the champion's fitted feature transforms, so the
continued model reads features exactly as before. Classification and regression alike: what
differs (the label, the loss, the score) is the task's.

``auto`` fits every strategy that applies and keeps the one that scores best on the selection
rows (the newest new training rows). Under abrupt drift old history hurts a full refit;
``auto`` finds that out from the scores rather than from a rule. Below
:data:`components.data.roles.REFIT_LIMIT` rows the chosen candidate is then refitted with the
selection rows (a window moving on to end at the newest rows), and a binary model gets its
decision threshold. Then, in a run small enough (:func:`components.data.roles.cross_fittable`),
every new row is answered by the chosen procedure fitted without it: the gate's evidence.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from components.data.chunks import FrameTable, as_table
from components.data.drift import batch_names
from components.data.roles import REFIT_LIMIT, cross_fittable
from components.data.schema import SOURCE_FILE_COLUMN
from components.ml.comparison import compared, percent
from components.ml.concept_change import batch_rows
from components.ml.estimators import (
    HGB,
    HGB_FINETUNE_ITERATIONS,
    RANDOM_STATE,
    SGD,
    FactoryError,
    can_give_probabilities,
    continuation,
    continue_fitting,
    is_factory,
    new_estimator,
    no_continuation_reason,
    takes_raw_columns,
)
from components.ml.features import build_feature_transformer, features_and_labels
from components.ml.metrics import (
    TRACE_SCORE,
    cross_fitted_columns,
    model_output,
    predict,
    score_model,
    trace_totals,
)
from components.ml.models import (
    assemble,
    base_estimator,
    feature_step,
    model_type_of,
    with_decision_threshold,
)
from components.ml.threads import limited_threads, single_threaded
from components.outcomes import GateMetric, Strategy, Task
from components.params import refuse
from components.records import TrainingSummary, VersionMetadata

# Order of preference when candidates tie: the cheapest change, then the most rows (a refit on
# every row keeps what the champion learned; the freshness rule can deploy it).
CANDIDATE_ORDER = (Strategy.FINETUNE, Strategy.FULL, Strategy.SINCE_CHANGE, Strategy.WINDOW)
CALLER = "the retrain stage"


class RetrainError(Exception):
    """No challenger could be fitted."""


@dataclass
class Candidate:
    """One strategy considered by retrain."""

    strategy: str
    status: str  # "fitted" or "skipped"
    note: str = ""
    rows: int = 0
    score: float | None = None
    metrics: dict = field(default_factory=dict)
    model: object = None
    trace: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"strategy": self.strategy, "status": self.status, "note": self.note,
                "rows": self.rows, "score": self.score, "metrics": self.metrics}


@dataclass
class RetrainResult:
    """The chosen challenger, every candidate's outcome, and the chosen model's training trace."""

    model: object
    strategy: str
    requested_strategy: str
    model_type: str
    candidates: list[Candidate]
    trace: list[dict]
    notes: list[str]
    training_data: object = None  # the rows the chosen model was fitted on (frame or Table)
    cross_fitted: pd.DataFrame | None = None  # the new rows, predicted without them
    task: str = Task.CLASSIFICATION
    model_config: dict = field(default_factory=dict)
    training_batches: dict = field(default_factory=dict)  # TrainingSummary.training_batches

    def summary(self, feature_kinds: dict[str, str], classes: list,
                libraries: dict[str, str]) -> TrainingSummary:
        """What ``training.json`` records of this fit."""
        return TrainingSummary(
            strategy=self.strategy, requested_strategy=self.requested_strategy,
            model_type=self.model_type, candidates=[c.to_dict() for c in self.candidates],
            trace=self.trace, notes=self.notes, feature_kinds=feature_kinds, classes=classes,
            libraries=libraries, task=self.task, model_config=self.model_config,
            training_batches=self.training_batches)


# -- fitting -----------------------------------------------------------------------------------
def _trace_row(epoch, iterations, train_scores, validation_scores, task: str) -> dict:
    score = TRACE_SCORE[task]
    return {
        "epoch": epoch,
        "iterations": iterations,
        "train_loss": train_scores["loss"],
        f"train_{score}": train_scores[score],
        "validation_loss": validation_scores["loss"],
        f"validation_{score}": validation_scores[score],
    }


class _Learner:
    """An estimator learning in epochs of ``partial_fit``: one step on ``(X, y)``, and what it
    answers for the trace. A regressor that learns a standardised target
    (:func:`_scaled_target`) steps on the scaled labels and answers in the label's units."""

    def __init__(self, model, task: str, classes=None):
        self.model, self.task, self.classes = model, task, classes
        self.scaled = type(model).__name__ == "TransformedTargetRegressor"

    def step(self, X, y) -> None:
        if self.scaled:
            target = self.model.transformer_.transform(np.asarray(y, float).reshape(-1, 1))
            self.model.regressor_.partial_fit(X, target.ravel())
        elif self.task == Task.CLASSIFICATION:
            self.model.partial_fit(X, y, classes=self.classes)
        else:
            self.model.partial_fit(X, y)

    def output(self, X) -> np.ndarray:
        return model_output(self.model, X)


def _scaled_target(regressor, y):
    """``regressor`` inside a ``TransformedTargetRegressor`` whose scaler is fitted on ``y``:
    SGD's steps suit a standardised target whatever the label's units (a price in the
    thousands makes them diverge)."""
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.preprocessing import StandardScaler

    wrapped = TransformedTargetRegressor(regressor=regressor, transformer=StandardScaler())
    wrapped.transformer_ = StandardScaler().fit(np.asarray(y, dtype=float).reshape(-1, 1))
    wrapped.regressor_ = regressor
    wrapped._training_dim = 1  # what fit sets for a one-dimensional target
    return wrapped


def _fit_epochs(learner: _Learner, train_parts, validation_parts, epochs: int,
                seed: int) -> list[dict]:
    """Run ``epochs`` shuffled passes of ``partial_fit``, tracing loss and score after each.

    ``train_parts`` and ``validation_parts`` are sequences of ``(X, y)``: one for rows held in
    memory, one per chunk for rows streamed from disk (see :class:`_TransformedChunks`). Each
    epoch visits the chunks in a new random order and shuffles the rows within each.
    """
    rng = np.random.default_rng(seed)
    trace = []
    for epoch in range(1, epochs + 1):
        chunk_order = rng.permutation(len(train_parts)) if len(train_parts) > 1 else [0]
        for index in chunk_order:
            X, y = train_parts[index]
            order = rng.permutation(len(y))
            learner.step(X.iloc[order] if isinstance(X, pd.DataFrame) else X[order], y[order])
        trace.append(_trace_row(epoch, epoch, _score_parts(learner, train_parts),
                                _score_parts(learner, validation_parts), learner.task))
    return trace


def _score_parts(learner: _Learner, parts) -> dict:
    """Loss and score over ``(X, y)`` parts, added up chunk by chunk."""
    totals = trace_totals(learner.task, getattr(learner.model, "classes_", None))
    for X, y in parts:
        totals.add(y, learner.output(X))
    return totals.scores()


def _traced_once(estimator, X, y, X_val, y_val, task: str, iterations: int = 1) -> list[dict]:
    """One trace row after a fit that has no epochs to show (a team's own estimator)."""
    scores = []
    for features, labels in ((X, y), (X_val, y_val)):
        totals = trace_totals(task, getattr(estimator, "classes_", None))
        if len(labels):
            totals.add(labels, model_output(estimator, features))
        scores.append(totals.scores())
    return [_trace_row(1, iterations, *scores, task)]


def _transformed(transformer, features: pd.DataFrame):
    """The features as the estimator reads them: through the fitted transforms, or as they are
    (an estimator that takes the raw columns)."""
    if transformer is None:
        return features
    return np.asarray(transformer.transform(features), dtype=float)


def _labels(y, task: str) -> np.ndarray:
    """Labels as the task's estimator takes them: floats for a regressor."""
    return np.asarray(y, dtype=float) if task == Task.REGRESSION else y


class _TransformedChunks:
    """A table's rows put through the fitted feature transforms once, kept on disk as one
    ``.npy`` file per chunk, and loaded one chunk at a time: ``(X, y)`` for ``partial_fit``."""

    def __init__(self, transformer, data, label_column: str, folder: str, name: str,
                 label_dtype=None):
        self._paths = []
        for index, chunk in enumerate(as_table(data).chunks()):
            features, labels = features_and_labels(chunk, label_column)
            X = np.asarray(transformer.transform(features), dtype=float)
            y = labels.astype(label_dtype, copy=False) if label_dtype is not None else labels
            path = f"{folder}/{name}-{index:05d}"
            np.save(f"{path}-X.npy", X)
            np.save(f"{path}-y.npy", y, allow_pickle=True)
            self._paths.append(path)

    def __len__(self) -> int:
        return len(self._paths)

    def __getitem__(self, index: int):
        path = self._paths[index]
        return np.load(f"{path}-X.npy"), np.load(f"{path}-y.npy", allow_pickle=True)


def _trace_hgb(estimator, X, y, X_val, y_val, epochs: int, task: str,
               first_iteration: int = 0) -> list[dict]:
    """Loss and score after evenly spaced boosting stages, reported as ``epochs`` rows."""
    total = estimator.n_iter_
    checkpoints = sorted({max(first_iteration + 1, round(first_iteration + (total - first_iteration)
                                                          * k / epochs)) for k in range(1, epochs + 1)})
    staged = (estimator.staged_predict if task == Task.REGRESSION
              else estimator.staged_predict_proba)
    classes = getattr(estimator, "classes_", None)
    trace, epoch = [], 0
    for iteration, (p_train, p_val) in enumerate(zip(staged(X), staged(X_val), strict=True),
                                                 start=1):
        if iteration in checkpoints:
            epoch += 1
            scores = []
            for labels, output in ((y, p_train), (y_val, p_val)):
                totals = trace_totals(task, classes)
                totals.add(labels, output)
                scores.append(totals.scores())
            trace.append(_trace_row(epoch, iteration, *scores, task))
    return trace


def fit_fresh(
    rows: pd.DataFrame, validation: pd.DataFrame, *, label_column: str,
    feature_kinds: dict[str, str], model_type: str, epochs: int, seed: int = RANDOM_STATE,
    traced: bool = True, task: str = Task.CLASSIFICATION, model_config: dict | None = None,
):
    """Fit a new Pipeline on ``rows``; returns it and its epoch-by-epoch trace (for gradient
    boosting none unless ``traced``: the staged predictions cost more than a small fit; a team's
    own estimator, one row after its fit)."""
    features, y = features_and_labels(rows, label_column)
    val_features, y_val = features_and_labels(validation, label_column)
    y, y_val = _labels(y, task), _labels(y_val, task)
    estimator = new_estimator(model_type, task=task, feature_kinds=feature_kinds,
                              model_config=model_config, random_state=seed)
    transformer = None if takes_raw_columns(model_type) else \
        build_feature_transformer(feature_kinds)
    if transformer is None:
        X, X_val = features, val_features
    else:
        X = np.asarray(transformer.fit_transform(features), dtype=float)
        X_val = np.asarray(transformer.transform(val_features), dtype=float)
    if model_type == SGD:
        if task == Task.REGRESSION:
            estimator = _scaled_target(estimator, y)
        classes = np.unique(np.concatenate([y, y_val])) if task == Task.CLASSIFICATION else None
        trace = _fit_epochs(_Learner(estimator, task, classes), [(X, y)], [(X_val, y_val)],
                            epochs, seed)
    else:
        estimator.fit(X, y)
        if not traced:
            trace = []
        elif model_type == HGB:
            trace = _trace_hgb(estimator, X, y, X_val, y_val, epochs, task)
        else:
            trace = _traced_once(estimator, X, y, X_val, y_val, task)
    return assemble(transformer, estimator, task), trace


def label_values(data, label_column: str) -> set:
    """The distinct labels of a DataFrame, Parquet path or Table (read a chunk at a time)."""
    values: set = set()
    for chunk in as_table(data).chunks(columns=[label_column]):
        values.update(chunk[label_column].dropna().unique().tolist())
    return values


def unlearnable(rows, label_column: str, task: str) -> str | None:
    """Why no model can be fitted on ``rows``: fewer than two classes, or one label value."""
    if len(label_values(rows, label_column)) >= 2:
        return None
    return ("fewer than two classes in its rows" if task == Task.CLASSIFICATION
            else "its rows hold one label value")


def finetune_blocker(champion, champion_meta: VersionMetadata | None, *, model_type: str,
                     feature_kinds: dict[str, str], train, label_column: str,
                     task: str = Task.CLASSIFICATION) -> str | None:
    """Why the champion cannot be continued on these rows, or None if it can."""
    if champion is None:
        return "no champion to fine-tune (cold start)"
    champion_type = (champion_meta.model_type if champion_meta and champion_meta.model_type
                     else model_type_of(champion))
    if champion_type != model_type:
        return f"champion is a {champion_type!r} model; it cannot be continued as {model_type!r}"
    if champion_meta is None or champion_meta.feature_kinds != feature_kinds:
        return "the features changed since the champion was trained"
    estimator = base_estimator(champion)
    how = continuation(estimator, model_type) if is_factory(model_type) else model_type
    if how is None:
        return no_continuation_reason(estimator, model_type)
    if task == Task.REGRESSION:
        return None
    known = {str(c) for c in champion.classes_}
    present = {str(c) for c in label_values(train, label_column)}
    if present - known:
        return f"new classes {sorted(present - known)} that the champion does not know"
    if how not in (SGD, "partial_fit") and present != known:  # a refit of more trees
        what = "gradient boosting" if how == HGB else f"a {type(estimator).__name__}"
        return (f"{what} continues only on rows holding every class; missing "
                f"{sorted(known - present)}")
    return None


def fit_finetune(champion, train, validation, *, label_column: str, epochs: int,
                 seed: int = RANDOM_STATE, traced: bool = True, task: str = Task.CLASSIFICATION,
                 model_type: str = ""):
    """Continue a copy of the champion on ``train``: more boosting stages, more SGD epochs, or
    the way a team's own estimator continues (:func:`components.ml.estimators.continuation`).

    ``train`` and ``validation``: DataFrames, Parquet paths or Tables. Epochs of ``partial_fit``
    stream them: each chunk is transformed once into a temporary folder, and every epoch is a
    pass over those chunks, so memory stays at a chunk whatever the rows. Gradient boosting
    cannot continue from chunks; it reads its rows whole.
    """
    import tempfile

    model_type = model_type or model_type_of(champion)
    model = copy.deepcopy(champion)
    if task == Task.CLASSIFICATION:
        model = with_decision_threshold(model, None)  # retrain sets it anew
    transformer, estimator = feature_step(model), model.steps[-1][1]
    how = SGD if model_type == SGD else HGB if model_type == HGB else \
        continuation(base_estimator(model), model_type)
    if how in (SGD, "partial_fit") and transformer is not None:
        label_dtype = estimator.classes_.dtype if task == Task.CLASSIFICATION else float
        with tempfile.TemporaryDirectory(prefix="finetune-") as folder:
            train_parts = _TransformedChunks(transformer, train, label_column, folder, "train",
                                             label_dtype=label_dtype)
            validation_parts = _TransformedChunks(transformer, validation, label_column, folder,
                                                  "validation", label_dtype=label_dtype
                                                  if task == Task.REGRESSION else None)
            trace = _fit_epochs(_Learner(estimator, task, getattr(estimator, "classes_", None)),
                                train_parts, validation_parts, epochs, seed + 1)
        return model, trace
    features, y = features_and_labels(as_table(train).read(), label_column)
    val_features, y_val = features_and_labels(as_table(validation).read(), label_column)
    X, X_val = _transformed(transformer, features), _transformed(transformer, val_features)
    y, y_val = _labels(y, task), _labels(y_val, task)
    if task == Task.CLASSIFICATION:
        y = y.astype(estimator.classes_.dtype, copy=False)
    if how == HGB:
        already = estimator.n_iter_
        estimator.set_params(warm_start=True, max_iter=already + HGB_FINETUNE_ITERATIONS)
        estimator.fit(X, y)
        estimator.set_params(warm_start=False)
        trace = (_trace_hgb(estimator, X, y, X_val, y_val, epochs, task, first_iteration=already)
                 if traced else [])
        return model, trace
    continued = continue_fitting(estimator, model_type, X, y, task=task)
    model = assemble(transformer, continued, task)
    return model, (_traced_once(continued, X, y, X_val, y_val, task) if traced else [])


def window_rows(rows: pd.DataFrame, *, timestamp_column: str, window_days: int,
                window_files: int) -> pd.DataFrame:
    """The newest ``window_days`` of rows, or the rows of the newest ``window_files`` files."""
    if rows.empty:
        return rows
    if timestamp_column:
        start = rows[timestamp_column].max() - pd.Timedelta(days=window_days)
        return rows[rows[timestamp_column] > start]
    newest = sorted(rows[SOURCE_FILE_COLUMN].unique())[-window_files:]
    return rows[rows[SOURCE_FILE_COLUMN].isin(newest)]




@dataclass(frozen=True)
class ConceptChange:
    """The batches from the one where the champion's world changed on (their names, as
    :func:`components.data.drift.batch_names` gives them), and the note that found it."""

    batches: frozenset
    note: str
    timestamp_column: str = ""


def concept_change(champion, pool, new_rows: pd.DataFrame, *, label_column: str,
                   timestamp_column: str, confidence: float, judged=None,
                   feature_kinds: dict[str, str] | None = None) -> ConceptChange | None:
    """Where the champion's world changed, if the rows it has never seen (the rolling holdout's
    and this run's new rows) show a change of how often it is right at a batch boundary. Before
    them come the rows its promotion was judged on (``judged``, the registry's, with its honest
    answers there; those in the rolling holdout are answered afresh), so a change at the first
    new row is seen too."""
    from components.data.roles import content_hashes
    from components.ml.concept_change import champion_right, in_time_order, since_concept_change

    if champion is None or not len(new_rows):
        return None
    earlier = as_table(pool).read() if pool is not None else new_rows.iloc[:0]
    unseen = pd.concat([earlier, new_rows], ignore_index=True)
    if judged is not None and len(earlier) and feature_kinds is not None:
        judged = judged[~np.isin(judged["row_hash"], content_hashes(
            earlier, feature_kinds, label_column, timestamp_column))]
    known, right = champion_right(predict(champion, unseen, label_column), judged)
    frame = pd.concat([judged, unseen], ignore_index=True) if judged is not None else unseen
    this_run = np.arange(len(frame)) >= len(frame) - len(new_rows)
    order = in_time_order(frame.assign(__champion_right=np.concatenate([known, right])),
                          timestamp_column, this_run)
    right = order.pop("__champion_right").to_numpy(dtype=bool)
    end, note = since_concept_change(order, right, right, confidence=confidence,
                                     timestamp_column=timestamp_column)
    if not end:
        return None
    return ConceptChange(frozenset(batch_names(order.iloc[end:], timestamp_column)), note,
                         timestamp_column)


def thinned(tables, max_rows: int) -> pd.DataFrame:
    """The rows of ``tables`` (each a Table or FrameTable), every k-th of each chunk when there are
    more than ``max_rows``: enough to see where the champion's world changed, read a chunk at a
    time so that memory stays at a chunk whatever the rows."""
    total = sum(table.rows for table in tables)
    step = max(1, -(-total // max_rows))
    return pd.concat([chunk.iloc[::step] for table in tables for chunk in table.chunks()],
                     ignore_index=True)


def since_change_rows(rows: pd.DataFrame, change: ConceptChange) -> pd.DataFrame:
    """The rows of the batches from the change on."""
    return rows[np.isin(batch_names(rows, change.timestamp_column), list(change.batches))]


# -- the stage ---------------------------------------------------------------------------------
def check_estimator(*, model_type: str, task: str, feature_kinds: dict[str, str],
                    model_config: dict, strategy: str, metric: str,
                    decision_threshold: str) -> None:
    """Refuse, before any fit, a team's factory that raises or returns no estimator for the
    task, one whose model cannot continue under an explicit ``finetune``, and one without class
    probabilities where the gate metric or the decision threshold needs them: the usual
    parameter message, naming the path and what went wrong."""
    if not is_factory(model_type):
        return
    try:
        estimator = new_estimator(model_type, task=task, feature_kinds=feature_kinds,
                                  model_config=model_config)
    except FactoryError as error:
        raise refuse("model_type", CALLER, "the import path of a factory that returns an "
                     f"unfitted scikit-learn estimator for a {task} task", model_type,
                     detail=str(error)) from None
    if strategy == Strategy.FINETUNE and continuation(estimator, model_type) is None:
        raise refuse("strategy", CALLER, "one of {'auto', 'full', 'window'} for this model_type",
                     strategy, detail=no_continuation_reason(estimator, model_type))
    if task != Task.CLASSIFICATION or can_give_probabilities(estimator):
        return
    if metric == GateMetric.ROC_AUC:
        raise refuse("metric", CALLER, "'accuracy' or 'f1' for this model_type", metric,
                     detail=f"a {type(estimator).__name__} gives no class probabilities "
                            "(predict_proba), which ROC AUC needs")
    if decision_threshold != "0.5":
        raise refuse("decision_threshold", CALLER, "'0.5' for this model_type",
                     decision_threshold, detail=f"a {type(estimator).__name__} gives no class "
                                                "probabilities (predict_proba) to set a "
                                                "threshold on")


def retrain(*, strategy: str, model_type: str, train: pd.DataFrame, history: pd.DataFrame,
            validation: pd.DataFrame, label_column: str, timestamp_column: str,
            feature_kinds: dict[str, str], metric: str, epochs: int, window_days: int,
            window_files: int, champion=None, champion_meta: VersionMetadata | None = None,
            seed: int = RANDOM_STATE, decision_threshold: str = "0.5",
            change: ConceptChange | None = None, task: str = Task.CLASSIFICATION,
            model_config: dict | None = None) -> RetrainResult:
    """Fit the challenger with the requested strategy (``auto``: the best of those that apply).

    Candidates are fitted on ``train`` (and the history their strategy uses) and compared on
    ``validation``; the chosen one is refitted with the validation rows (below
    :data:`REFIT_LIMIT` training rows). For binary labels the decision threshold is set last
    (``decision_threshold``: a probability, or ``tuned`` on the validation rows for the gate
    metric). Last, :func:`cross_fit` answers every new row for the gate.

    ``train`` (new rows less validation and any holdout rows), ``history`` (rows the champion
    line consumed before, less those in the rolling holdout) and ``validation`` (the newest new
    training rows): each a DataFrame, a Parquet path or a Table. The rest are the pipeline
    parameters of the same names (``metric`` resolved for the task), the champion Pipeline
    (None: a cold start) with its metadata, the seed of every random choice, and with
    ``change`` (:func:`concept_change`) ``auto``'s candidate fitted on the rows since the change.
    """
    model_config = dict(model_config or {})
    check_estimator(model_type=model_type, task=task, feature_kinds=feature_kinds,
                    model_config=model_config, strategy=strategy, metric=metric,
                    decision_threshold=decision_threshold)
    train, history, validation = as_table(train), as_table(history), as_table(validation)
    blocker = finetune_blocker(champion, champion_meta, model_type=model_type,
                               feature_kinds=feature_kinds, train=train,
                               label_column=label_column, task=task)
    wanted, notes = _strategies_to_try(strategy, blocker, history.rows + train.rows, change)
    window = dict(timestamp_column=timestamp_column, window_days=window_days,
                  window_files=window_files)
    candidate_rows = _candidate_rows(wanted, train, history, change=change, **window)
    fit = dict(champion=champion, label_column=label_column, feature_kinds=feature_kinds,
               model_type=model_type, epochs=epochs, seed=seed, task=task,
               model_config=model_config)
    with limited_threads(history.rows + train.rows, len(feature_kinds)):
        candidates = [_fit_candidate(name, candidate_rows, blocker=blocker,
                                     auto=strategy == Strategy.AUTO, validation=validation,
                                     metric=metric, change=change, **fit) for name in wanted]
        best = _choose(candidates, metric, notes if strategy == Strategy.AUTO else None,
                       validation=validation, change=change, fit=fit)
        # The threshold is tuned on the candidate, for which the validation rows are unseen.
        threshold, threshold_note = _decision_threshold(best.model, decision_threshold,
                                                        validation, label_column, metric, task)
        model, training_data = _refitted(best, candidate_rows, validation, change, notes,
                                         window=window, fit=fit)
        if task == Task.CLASSIFICATION:
            model = with_decision_threshold(model, threshold)
        cross_fitted, cross_fit_note = cross_fit(
            best, getattr(model, "classes_", None), train, history, validation,
            threshold=threshold, row_choice={**window, "change": change}, fit=fit)
    notes += [note for note in (threshold_note, cross_fit_note) if note]
    return RetrainResult(model=model, strategy=best.strategy, requested_strategy=strategy,
                         model_type=model_type, candidates=candidates, trace=best.trace,
                         notes=notes, training_data=training_data, cross_fitted=cross_fitted,
                         task=task, model_config=model_config,
                         training_batches=_learned_batches(best.strategy, training_data,
                                                           champion_meta, timestamp_column))


def _learned_batches(strategy: str, training_data, champion_meta: VersionMetadata | None,
                     timestamp_column: str) -> dict[str, int]:
    """The rows the model learned from in each batch: a fine-tune's are its parent's and its
    own (unknown, empty, where the parent's are)."""
    own = batch_rows(training_data, timestamp_column)
    if strategy != Strategy.FINETUNE:
        return own
    parent = champion_meta.training_batches if champion_meta is not None else {}
    if not parent:
        return {}
    return {name: parent.get(name, 0) + own.get(name, 0) for name in sorted({*parent, *own})}


def _refitted(best: Candidate, candidate_rows: dict, validation, change, notes: list[str], *,
              window: dict, fit: dict):
    """The chosen candidate's model and the rows it learned from: refitted with the validation
    rows below :data:`REFIT_LIMIT` (a since-change fit holds them already)."""
    model, training_data = best.model, candidate_rows[best.strategy]
    if best.strategy == Strategy.SINCE_CHANGE:
        return model, since_change_rows(as_table(_with_rows(training_data, validation)).read(),
                                        change)
    if best.rows < REFIT_LIMIT and validation.rows:
        training_data, refit_note = _refit_rows(best, candidate_rows, validation, **window)
        model, _ = _fit(best.strategy, training_data, validation, traced=False, **fit)
        notes.append(refit_note)
    return model, training_data


# Each fold fit learns from all but a fold of the new rows: at least 90% of what the model
# deployed learns from (more folds where the new rows are most of it, as for a window, a
# since-change fit or a fine-tune), and never fewer than three folds nor more than ten.
FOLD_SHARE_LEFT_OUT = 0.1
MIN_FOLDS, MAX_FOLDS = 3, 10


def cross_fit_folds(new_rows: int, fit_rows: int) -> int:
    """How many folds the ``new_rows`` are cross-fitted in, for a procedure that learns from
    ``fit_rows`` rows (them among them): enough that a fold leaves out at most
    :data:`FOLD_SHARE_LEFT_OUT` of those rows, so the fold fits answer almost as the model
    deployed would (fewer folds make the evidence err towards the champion)."""
    wanted = int(np.ceil(new_rows / max(1.0, FOLD_SHARE_LEFT_OUT * fit_rows)))
    return int(np.clip(wanted, MIN_FOLDS, MAX_FOLDS))


def cross_fit(best: Candidate, classes, train, history, validation, *, threshold: float | None,
              row_choice: dict, fit: dict) -> tuple[pd.DataFrame | None, str]:
    """The new training rows (training and selection rows), each with the prediction of the
    chosen procedure fitted without it: :func:`cross_fit_folds` fits of the chosen strategy,
    each on its rows less a fold of the new rows. The champion has never seen these rows, so
    with these honest predictions the gate compares the two on every new row; a run small enough
    to be cross-fitted (:func:`components.data.roles.cross_fittable`) holds no row out. The
    model deployed is still the one fitted on all its rows; the fold models, fitted on a little
    less, make the comparison err towards the champion."""
    if not cross_fittable(train.rows + validation.rows, best.rows):
        return None, (f"not cross-fitted: {train.rows + validation.rows} new training rows and "
                      f"{best.rows} to fit on (the run's holdout rows are the gate's evidence)")
    new = pd.concat([train.read(), validation.read()], ignore_index=True)
    folds = cross_fit_folds(len(new), best.rows + validation.rows)
    predictions = predicted_without(
        best.strategy, new, lambda left_out: _candidate_rows(
            [best.strategy], FrameTable(new[~left_out]), history, **row_choice)[best.strategy],
        classes, threshold=threshold, fit=fit, folds=folds)
    if predictions is None:
        return None, (f"not cross-fitted: {best.strategy} without one of {folds} folds of the "
                      f"{len(new)} new rows cannot be fitted (one class or one value)")
    frame = new.assign(**cross_fitted_columns(*predictions))
    return frame, (f"cross-fitted: each of the {len(new)} new training rows predicted by "
                   f"{best.strategy} fitted without it ({folds} folds)")


def predicted_without(strategy: str, held: pd.DataFrame, rows_without, classes, *,
                      threshold: float | None, fit: dict, folds: int = MIN_FOLDS):
    """Each of ``held``'s rows predicted by ``strategy`` fitted on ``rows_without(left_out)``
    (the rows it learns from when the rows of ``held`` marked in ``left_out`` are left out), over
    ``folds`` folds of ``held``. For a classifier the probabilities in
    ``classes``' order and the predicted class's index; for a regressor (no ``classes``) None
    and the predicted values. None when a fold's rows cannot be fitted (one class, one value).
    Single-threaded folds are shared with a sibling process where one is at hand
    (:mod:`components.runtime.siblings`): the same fits, on two cores."""
    from components.runtime.siblings import shared_with_a_sibling

    fold_of = np.random.default_rng(fit["seed"]).permutation(len(held)) % folds
    if any(not (fold_of == fold).any() for fold in range(folds)):
        return None
    answers = shared_with_a_sibling(fold_answers, lambda fold: dict(
        strategy=strategy, rows=rows_without(fold_of == fold), held=held[fold_of == fold],
        threshold=threshold, fit=fit), range(folds), share=single_threaded())
    if any(answer is None for answer in answers):
        return None
    regression = fit["task"] == Task.REGRESSION
    class_list = [] if regression else list(np.asarray(classes))
    probabilities = None if regression else np.zeros((len(held), len(class_list)))
    predicted = np.zeros(len(held), dtype=float if regression else int)
    for fold, (fold_classes, fold_probabilities, fold_predicted) in enumerate(answers):
        left_out = fold_of == fold
        if regression:
            predicted[left_out] = fold_predicted
            continue
        for index, cls in enumerate(class_list):
            if cls in fold_classes:
                probabilities[left_out, index] = fold_probabilities[:, fold_classes.index(cls)]
        predicted[left_out] = [class_list.index(a) if a in class_list else 0
                               for a in fold_predicted]
    return probabilities, predicted


def fold_answers(*, strategy: str, rows, held: pd.DataFrame, threshold: float | None,
                 fit: dict) -> tuple[list, np.ndarray | None, np.ndarray] | None:
    """``strategy`` fitted on ``rows``, answering ``held``: its classes, probabilities and
    predicted labels (a regressor: no classes nor probabilities); None when ``rows`` cannot be
    fitted (one class, one value)."""
    if unlearnable(rows, fit["label_column"], fit["task"]):
        return None
    model, _ = _fit(strategy, rows, FrameTable(held), traced=False, **fit)
    if fit["task"] == Task.REGRESSION:
        return [], None, predict(model, held, fit["label_column"]).predicted
    answers = predict(with_decision_threshold(model, threshold), held, fit["label_column"])
    return list(np.asarray(answers.classes)), answers.probabilities, answers.predicted


def _since_change_candidate(rows: pd.DataFrame, validation, change: ConceptChange, *,
                            metric: str, **fit) -> Candidate:
    """The candidate fitted on the rows since a concept change, the validation rows from it on
    among them: after a change in the newest batch those are most of the rows there are. Scored
    on every validation row as the others are, each predicted by a fit without it (the rows from
    the change on over :func:`cross_fit_folds` folds; the older ones by the whole fit)."""
    name, label_column = Strategy.SINCE_CHANGE, fit["label_column"]
    valid = validation.read()
    after = np.isin(batch_names(valid, change.timestamp_column), list(change.batches))
    every = pd.concat([rows, valid[after]], ignore_index=True)
    blocked = unlearnable(every, label_column, fit["task"])
    if blocked:
        return Candidate(name, "skipped", blocked, rows=len(every))
    model, trace = _fit(name, every, validation, **fit)
    predictions = predict(model, valid, label_column)
    fold = predicted_without(name, valid[after].reset_index(drop=True),
                             lambda left_out: pd.concat([rows, valid[after][~left_out]],
                                                        ignore_index=True),
                             getattr(model, "classes_", None), threshold=None, fit=fit,
                             folds=cross_fit_folds(int(after.sum()), len(every))
                             ) if after.any() else None
    if fold is not None:
        if predictions.regression:
            predictions.predicted[after] = fold[1]
        else:
            predictions.probabilities[after] = fold[0]
            predictions.predicted[after] = np.asarray(model.classes_)[fold[1]]
    scores = predictions.scores()
    return Candidate(name, "fitted", note=f"fitted on the {len(every)} rows since the change, "
                     f"{int(after.sum())} validation rows among them (scored on those by fits "
                     "without them)", rows=len(every), score=scores.get(metric), metrics=scores,
                     model=model, trace=trace)


# Without a concept change the world is presumed the same, and auto keeps a full refit (every row;
# the freshness rule can deploy it) unless another candidate beats it on the selection rows with
# this confidence: those rows are few (a fifth of a month's new rows), and a window or a
# fine-tune that scores better on them does so mostly by chance.
CHOICE_CONFIDENCE = 0.8


def _choose(candidates: list[Candidate], metric: str, notes: list[str] | None, *, validation,
            change: ConceptChange | None, fit: dict) -> Candidate:
    """The fitted candidate with the best score on the validation (selection) rows (ties: the
    cheapest change); with ``notes`` (auto), says which it chose, and where no concept change
    was found keeps ``full`` unless the best beats it with :data:`CHOICE_CONFIDENCE` (``fit``:
    its ``label_column`` and ``seed``)."""
    fitted = [c for c in candidates if c.status == "fitted"]
    if not fitted:
        raise RetrainError("no strategy could be fitted: " + "; ".join(
            f"{c.strategy}: {c.note}" for c in candidates))
    best = max(fitted, key=lambda c: (_comparable(c.score, metric),
                                      -CANDIDATE_ORDER.index(c.strategy)))
    if notes is None:
        return best
    shown = "-" if best.score is None else f"{best.score:.4f}"
    full = next((c for c in fitted if c.strategy == Strategy.FULL), None)
    if change is None and full is not None and best is not full and \
            not _better_than(best, full, validation, metric, fit["label_column"], fit["seed"]):
        notes.append(f"auto chose full: {best.strategy}'s {metric} {shown} on the "
                     f"{validation.rows} selection rows is not better with "
                     f"{percent(CHOICE_CONFIDENCE)} confidence, and no concept change was found")
        return full
    notes.append(f"auto chose {best.strategy} ({metric} {shown} on the {validation.rows} "
                 "selection rows)")
    return best


def _better_than(candidate: Candidate, other: Candidate, validation, metric: str,
                 label_column: str, seed: int) -> bool:
    """Whether ``candidate`` beats ``other`` on the validation rows with
    :data:`CHOICE_CONFIDENCE` (the paired comparison the gate makes)."""
    comparison = compared(metric, predict(candidate.model, validation, label_column),
                          predict(other.model, validation, label_column),
                          confidence=CHOICE_CONFIDENCE, seed=seed)
    return comparison.gain_low is not None and comparison.gain_low > 0


def _refit_rows(best: Candidate, candidate_rows: dict, validation, *, timestamp_column: str,
                window_days: int, window_files: int):
    """The rows the chosen candidate is refitted on, with the validation rows, and a note: a
    window moves on to end at the newest rows."""
    if best.strategy != Strategy.WINDOW:
        return (_with_rows(candidate_rows[best.strategy], validation),
                f"refitted {best.strategy} on its {best.rows} rows and the {validation.rows} "
                "validation rows")
    rows = window_rows(_with_rows(candidate_rows[Strategy.FULL], validation),
                       timestamp_column=timestamp_column, window_days=window_days,
                       window_files=window_files)
    return rows, (f"refitted window on its {len(rows)} rows, the window moved on over the "
                  f"{validation.rows} validation rows")


def _with_rows(rows, validation):
    """A strategy's rows and the validation rows, in the form the strategy fits on."""
    if isinstance(rows, pd.DataFrame):
        return pd.concat([rows, validation.read()], ignore_index=True)
    return FrameTable(pd.concat([as_table(rows).read(), validation.read()], ignore_index=True))


def _fit(name: str, rows, validation, *, champion, label_column: str,
         feature_kinds: dict[str, str], model_type: str, epochs: int, seed: int,
         task: str = Task.CLASSIFICATION, model_config: dict | None = None,
         traced: bool = True):
    if name == Strategy.FINETUNE:
        return fit_finetune(champion, rows, validation, label_column=label_column,
                            epochs=epochs, seed=seed, traced=traced, task=task,
                            model_type=model_type)
    return fit_fresh(as_table(rows).read(), validation.read(), label_column=label_column,
                     feature_kinds=feature_kinds, model_type=model_type, epochs=epochs,
                     seed=seed, traced=traced, task=task, model_config=model_config)


TUNING_SCORING = {"accuracy": "accuracy", "f1": "f1_macro",
                  "roc_auc": "balanced_accuracy"}  # ROC AUC does not depend on a threshold
MIN_CLASS_ROWS_TO_TUNE = 10


def _decision_threshold(model, decision_threshold: str, validation, label_column: str,
                        metric: str, task: str = Task.CLASSIFICATION) -> tuple[float | None, str]:
    """The decision threshold (None: argmax) and a note of how it was set, or why not."""
    if task == Task.REGRESSION:
        return None, ""
    if len(model.classes_) != 2:
        return None, ("" if decision_threshold == "0.5" else
                      f"decision_threshold {decision_threshold} applies to binary labels only: "
                      "argmax")
    if decision_threshold != "tuned":
        threshold = float(decision_threshold)
        return (None, "") if threshold == 0.5 else (threshold,
                                                    f"decision threshold {threshold:g}")
    from sklearn.frozen import FrozenEstimator
    from sklearn.model_selection import TunedThresholdClassifierCV

    features, y = features_and_labels(validation.read(), label_column)
    counts = pd.Series(y).value_counts()
    if len(counts) < 2 or counts.min() < MIN_CLASS_ROWS_TO_TUNE:
        return None, (f"decision threshold not tuned: the validation rows hold fewer than "
                      f"{MIN_CLASS_ROWS_TO_TUNE} of a class; 0.5")
    tuner = TunedThresholdClassifierCV(FrozenEstimator(with_decision_threshold(model, None)),
                                       scoring=TUNING_SCORING[metric],
                                       response_method="predict_proba",
                                       cv=min(5, int(counts.min())), random_state=0)
    tuner.fit(features, y)
    threshold = float(tuner.best_threshold_)
    return threshold, (f"decision threshold tuned to {threshold:.3f} on the {len(y)} "
                       f"validation rows for {TUNING_SCORING[metric]}")


def _strategies_to_try(strategy: str, blocker: str | None, rows_given: int,
                       change: ConceptChange | None) -> tuple[list[str], list[str]]:
    """The candidates to fit, and a note when an explicit finetune falls back to full, or auto
    adds the rows since a concept change."""
    if strategy == Strategy.AUTO:
        if change is None:
            return [s for s in CANDIDATE_ORDER if s != Strategy.SINCE_CHANGE], []
        return list(CANDIDATE_ORDER), [f"{change.note}: a candidate fitted on the rows from "
                                       "there on"]
    if strategy == Strategy.FINETUNE and blocker:
        return [Strategy.FULL], [f"finetune is not possible ({blocker}); fell back to full over the "
                          f"{rows_given} rows given (in the pipeline a finetune run reads no "
                          "history)"]
    return [strategy], []


def _candidate_rows(wanted: list[str], train, history, *, timestamp_column: str,
                    window_days: int, window_files: int,
                    change: ConceptChange | None = None) -> dict[str, object]:
    """The rows each strategy learns from. A fine-tune streams its rows (a Table); the others
    fit on every row they use at once (a DataFrame)."""
    rows: dict[str, object] = {Strategy.FINETUNE: train}
    if set(wanted) - {Strategy.FINETUNE}:
        combined = (pd.concat([history.read(), train.read()], ignore_index=True)
                    if history.rows else train.read())
        rows[Strategy.FULL] = combined
        rows[Strategy.WINDOW] = window_rows(combined, timestamp_column=timestamp_column,
                                     window_days=window_days, window_files=window_files)
        if change is not None:
            rows[Strategy.SINCE_CHANGE] = since_change_rows(combined, change)
    return rows


def _fit_candidate(name: str, candidate_rows: dict, *, blocker: str | None, auto: bool,
                   validation, metric: str, change: ConceptChange | None, **fit) -> Candidate:
    """Fit one strategy and score it on the validation rows, or say why it was skipped."""
    if name == Strategy.FINETUNE and blocker:
        return Candidate(name, "skipped", blocker)
    rows = candidate_rows[name]
    if name in (Strategy.WINDOW, Strategy.SINCE_CHANGE) and auto and \
            len(rows) == len(candidate_rows[Strategy.FULL]):
        what = "the window holds" if name == Strategy.WINDOW else "the rows since the change are"
        return Candidate(name, "skipped", f"{what} every row: same as full",
                         rows=len(rows))
    if name == Strategy.SINCE_CHANGE:
        return _since_change_candidate(rows, validation, change, metric=metric, **fit)
    row_count = as_table(rows).rows
    blocked = unlearnable(rows, fit["label_column"], fit["task"])
    if blocked:
        return Candidate(name, "skipped", blocked, rows=row_count)
    model, trace = _fit(name, rows, validation, **fit)
    scores = score_model(model, validation, fit["label_column"])
    return Candidate(name, "fitted", rows=row_count, score=scores.get(metric), metrics=scores,
                     model=model, trace=trace)


def _comparable(score: float | None, metric: str) -> float:
    """A score where higher is better: an error counts negated; none counts worst."""
    if score is None:
        return -np.inf
    return -score if GateMetric.lower_is_better(metric) else score
