"""Retrain: each strategy, fine-tune fallbacks, auto under abrupt drift, labels of any kind."""

import pandas as pd
import pytest

from components.records import VersionMetadata
from components.stages.preprocess import split_by_time
from components.stages.retrain import RetrainError, fit_fresh, retrain
from tests.helpers import make_rows

KINDS = {"x1": "numeric", "x2": "numeric", "color": "categorical"}


def _prepare(frame):
    frame = frame.copy()
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True)
    return frame


def _run(strategy, train, history, validation, champion=None, model_type="hgb", **kw):
    options = dict(strategy=strategy, model_type=model_type, train=train, history=history,
                   validation=validation, label_column="label", timestamp_column="ts",
                   feature_kinds=KINDS, metric="accuracy", epochs=5, window_days=30,
                   window_files=2, champion=champion,
                   champion_meta=VersionMetadata(feature_kinds=KINDS) if champion is not None
                   else None)
    options.update(kw)
    return retrain(**options)


def _drifted(make, history_rows: int):
    """Rows of ``make`` for 200 days of history, then an abrupt change in the new rows: the
    history, the new training rows and the validation rows."""
    history = _prepare(make(history_rows, start="2024-06-01", seed=1))
    new = _prepare(make(600, start="2025-01-01", seed=2, shift=1.0))
    train, validation = split_by_time(new, timestamp_column="ts", validation_fraction=0.25)
    return history, train, validation


@pytest.fixture
def drift():
    """Old concept for 200 days of history, then an abrupt change in the new rows."""
    history, train, validation = _drifted(make_rows, 4800)
    champion, _ = fit_fresh(history, validation, label_column="label", feature_kinds=KINDS,
                            model_type="hgb", epochs=3)
    return history, train, validation, champion


def test_auto_prefers_recent_data_after_abrupt_drift(drift):
    """Check that auto finds on its own that old history hurts a full refit after abrupt drift."""
    history, train, validation, champion = drift
    result = _run("auto", train, history, validation, champion)
    scores = {c.strategy: c.score for c in result.candidates}
    assert result.strategy in ("window", "finetune")
    assert scores[result.strategy] > scores["full"] + 0.05
    assert any("auto chose" in note for note in result.notes)


def test_explicit_strategies_fit_what_they_say(drift):
    """Check that full trains on history plus new rows and window only on recent rows."""
    history, train, validation, champion = drift
    full = _run("full", train, history, validation, champion)
    window = _run("window", train, history, validation, champion)
    assert [c.rows for c in full.candidates] == [len(history) + len(train)]
    assert window.candidates[0].rows < len(history)


def test_the_chosen_window_moves_on_over_the_validation_rows_when_refitted(drift):
    """Check that the refit of a window ends at the newest validation row, not where the
    candidate's window ended: after a change the rows it drops are the old concept's."""
    history, train, validation, champion = drift
    result = _run("window", train, history, validation, champion, window_days=10)
    newest = validation["ts"].max()
    kept = result.training_data["ts"]
    assert kept.min() > newest - pd.Timedelta(days=10)
    assert kept.max() == newest
    assert result.notes == [f"refitted window on its {len(kept)} rows, the window moved on "
                            f"over the {len(validation)} validation rows",
                            "cross-fitted: each of the 600 new training rows predicted by window "
                            "fitted without it (10 folds)"]


@pytest.mark.parametrize("model_type", ["hgb", "sgd"])
def test_finetune_continues_the_champion(drift, model_type):
    """Check that finetune starts from the champion and leaves the champion itself untouched."""
    history, train, validation, _ = drift
    champion, _ = fit_fresh(history, validation, label_column="label", feature_kinds=KINDS,
                            model_type=model_type, epochs=3)
    before = champion.predict_proba(validation).copy()
    result = _run("finetune", train, history, validation, champion, model_type=model_type)
    assert result.strategy == "finetune"
    assert result.notes == ["refitted finetune on its 450 rows and the 150 validation rows",
                            "cross-fitted: each of the 600 new training rows predicted by "
                            "finetune fitted without it (10 folds)"]
    assert (champion.predict_proba(validation) == before).all()
    assert result.candidates[0].score > 0.6


def test_a_fit_records_the_rows_it_learned_from_in_each_batch(drift):
    """Check the batch counts the freshness rule reads: a window's are its own rows, month by
    month; a fine-tune's add its parent's, and are unknown (empty) where its parent's are."""
    history, train, validation, champion = drift
    window = _run("window", train, history, validation, champion)
    months = window.training_data["ts"].dt.strftime("%Y-%m")
    assert window.training_batches == {f"new rows {month}": int(rows)
                                       for month, rows in months.value_counts().items()}
    parent = {"new rows 2024-06": 500, "new rows 2025-01": 7}
    finetune = _run("finetune", train, history, validation, champion,
                    champion_meta=VersionMetadata(feature_kinds=KINDS, training_batches=parent))
    own = len(train) + len(validation)
    assert sum(finetune.training_batches.values()) == sum(parent.values()) + own
    assert finetune.training_batches["new rows 2024-06"] == 500
    assert _run("finetune", train, history, validation, champion).training_batches == {}


def test_finetune_without_champion_falls_back_and_says_so(drift):
    """Check that an explicit finetune on a cold start falls back to full with a note."""
    history, train, validation, _ = drift
    result = _run("finetune", train, history, validation, None)
    assert result.strategy == "full"
    assert "finetune is not possible (no champion to fine-tune" in result.notes[0]


def test_finetune_on_other_model_type_is_skipped_in_auto(drift):
    """Check that auto skips finetune when the champion is of another model type."""
    history, train, validation, champion = drift
    result = _run("auto", train, history, validation, champion, model_type="sgd")
    skipped = {c.strategy: c.note for c in result.candidates if c.status == "skipped"}
    assert "cannot be continued as 'sgd'" in skipped["finetune"]


def test_sgd_trace_has_one_row_per_epoch(drift):
    """Check that the sgd trace logs loss and accuracy for each epoch."""
    history, train, validation, _ = drift
    result = _run("full", train, history, validation, None, model_type="sgd", epochs=4)
    assert [row["epoch"] for row in result.trace] == [1, 2, 3, 4]
    assert all(0 <= row["validation_accuracy"] <= 1 for row in result.trace)
    assert result.trace[-1]["train_loss"] < result.trace[0]["train_loss"] + 0.05


@pytest.mark.parametrize("model_type", ["hgb", "sgd"])
def test_multiclass_string_labels(model_type):
    """Check that three string classes train and score."""
    frame = _prepare(make_rows(300, labels=("low", "mid", "high")))
    train, validation = split_by_time(frame, timestamp_column="ts", validation_fraction=0.2)
    result = _run("full", train, train.iloc[:0], validation, None, model_type=model_type)
    assert set(result.model.classes_) == {"low", "mid", "high"}
    assert result.candidates[0].metrics["roc_auc"] is not None


def test_no_fittable_candidate_is_an_error():
    """Check that rows of a single class give a clear error."""
    frame = _prepare(make_rows(50))
    frame["label"] = 1
    with pytest.raises(RetrainError, match="fewer than two classes"):
        _run("full", frame, frame.iloc[:0], frame, None)



def _rare_positives(n: int, seed: int) -> pd.DataFrame:
    """Rows whose positive class is rare (about 10%) and noisy: F1 is best below 0.5."""
    import numpy as np

    frame = make_rows(n, seed=seed)
    rng = np.random.default_rng(seed)
    logit = 1.5 * frame["x1"] + frame["x2"] - 3.2
    frame["label"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return _prepare(frame)


def test_a_tuned_decision_threshold_is_saved_in_the_model_file(tmp_path):
    """Check decision_threshold=tuned: TunedThresholdClassifierCV sets it on the selection rows
    for the gate metric (F1 here), it travels inside model.skops, and predict applies it."""
    from components.ml.metrics import score_model
    from components.ml.models import decision_threshold_of, load_model, save_model

    train, validation = _rare_positives(2000, 1), _rare_positives(600, 2)
    plain = _run("full", train, train.iloc[:0], validation, metric="f1")
    tuned = _run("full", train, train.iloc[:0], validation, metric="f1",
                 decision_threshold="tuned")
    threshold = decision_threshold_of(tuned.model)
    assert decision_threshold_of(plain.model) is None
    assert 0.05 < threshold < 0.5
    assert f"decision threshold tuned to {threshold:.3f} on the 600 validation rows" in \
        " ".join(tuned.notes)
    save_model(tuned.model, tmp_path / "model.skops")
    loaded = load_model(tmp_path / "model.skops")
    fresh = _rare_positives(20_000, 3)
    probabilities = loaded.predict_proba(fresh)
    assert (loaded.predict(fresh) == (probabilities[:, 1] >= threshold)).all()
    # on 20,000 fresh rows the tuned threshold gives the better F1
    assert score_model(loaded, fresh, "label")["f1"] > \
        score_model(plain.model, fresh, "label")["f1"] + 0.01


def test_a_fixed_decision_threshold_and_multiclass_labels():
    """Check a fixed threshold is applied as given, and that multiclass labels keep argmax."""
    from components.ml.models import decision_threshold_of

    rows = _rare_positives(800, 4)
    fixed = _run("full", rows, rows.iloc[:0], rows.tail(200), decision_threshold="0.3")
    assert decision_threshold_of(fixed.model) == 0.3
    assert "decision threshold 0.3" in fixed.notes
    three = _prepare(make_rows(600, seed=5, labels=("a", "b", "c")))
    multi = _run("full", three, three.iloc[:0], three.tail(150), decision_threshold="tuned")
    assert decision_threshold_of(multi.model) is None
    assert "decision_threshold tuned applies to binary labels only: argmax" in multi.notes


def test_cross_fitted_answers_are_honest_where_the_model_s_own_are_not():
    """Check that every new training row gets a prediction from a fit without it: on labels
    that are pure noise the final model is right on most of its own training rows, and the
    cross-fitted answers only on about half."""
    import numpy as np

    from components.ml.metrics import CROSS_FIT_CLASS, split_cross_fitted

    rows = _prepare(make_rows(600, seed=4))
    rows["label"] = np.random.default_rng(5).integers(0, 2, len(rows))
    train, validation = split_by_time(rows, timestamp_column="ts", validation_fraction=0.2)
    result = _run("full", train, rows.iloc[:0], validation)
    frame, columns = split_cross_fitted(result.cross_fitted)
    assert len(frame) == len(rows)
    assert any(note.startswith("cross-fitted: each of the 600 new training rows") for note in
               result.notes)
    own = np.mean(result.model.predict(frame.drop(columns=["label"])) == frame["label"])
    cross = np.mean(result.model.classes_[columns[CROSS_FIT_CLASS]] == frame["label"])
    assert own > 0.8
    assert abs(cross - 0.5) < 0.07
    probabilities = columns.drop(columns=[CROSS_FIT_CLASS]).to_numpy()
    assert np.allclose(probabilities.sum(axis=1), 1)


def test_above_the_limit_the_holdout_alone_judges(monkeypatch, drift):
    """Check that no cross-fitting is done where the new rows are many: the note says why."""
    from components.data import roles

    history, train, validation, champion = drift
    monkeypatch.setattr(roles, "CROSS_FIT_LIMIT", 100)
    result = _run("full", train, history, validation, champion)
    assert result.cross_fitted is None
    assert "not cross-fitted: 600 new training rows and 5250 to fit on (the run's holdout rows " \
           "are the gate's evidence)" in result.notes


def test_after_a_concept_change_auto_adds_a_candidate_fitted_on_the_rows_since(drift):
    """Check the candidate that follows a change: the champion's unseen rows show its world
    changed at the new rows' batch, so auto fits a candidate on the rows from there on only."""
    from components.stages.retrain import concept_change

    history, train, validation, champion = drift
    pool = history.tail(400)  # stands in for the rolling holdout (older rows)
    change = concept_change(champion, pool, pd.concat([train, validation], ignore_index=True),
                            label_column="label", timestamp_column="ts", confidence=0.95)
    assert change is not None
    assert change.note.startswith("concept change: the champion is right on")
    result = _run("auto", train, history, validation, champion, change=change)
    since = next(c for c in result.candidates if c.strategy == "since_change")
    assert since.status == "fitted"
    assert since.rows == len(train) + len(validation)  # every new row is after the change
    assert any("a candidate fitted on the rows from there on" in note for note in result.notes)


def _judged_rows(champion, frame, task="classification"):
    """A version's judged rows as evaluate writes them: content hashes, when each arrived and
    how the version did on each."""
    from components.data.roles import content_hashes
    from components.ml.concept_change import judged_columns
    from components.ml.metrics import predict

    answers = predict(champion, frame, "label")
    return pd.DataFrame({"row_hash": content_hashes(frame, KINDS, "label", "ts"),
                         **judged_columns(frame, answers, "ts")})


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_a_change_at_the_first_new_row_is_seen_from_the_rows_that_judged_the_champion(
        drift, number_drift, task):
    """Check that with no unseen row older than the new ones (every new row is one month's, and
    the rolling holdout is empty) a change at the new rows' first batch is still found, against
    how the champion did on the rows its promotion was judged on; and that rows both judged and
    in the rolling holdout count once."""
    from components.stages.retrain import concept_change

    if task == "classification":
        history, train, validation, champion = drift
    else:
        history, train, validation = number_drift
        champion, _ = fit_fresh(history, validation, label_column="label", feature_kinds=KINDS,
                                model_type="hgb", epochs=3, task="regression")
    new = pd.concat([train, validation], ignore_index=True)
    terms = dict(label_column="label", timestamp_column="ts", confidence=0.95,
                 feature_kinds=KINDS)
    assert concept_change(champion, None, new, **terms) is None
    judged = _judged_rows(champion, history.tail(400))
    change = concept_change(champion, None, new, judged=judged, **terms)
    assert change is not None
    assert change.batches == {"new rows 2025-01"}
    assert "of the 400 older rows" in change.note
    both = concept_change(champion, history.tail(400), new, judged=judged, **terms)
    assert "of the 400 older rows" in both.note


def test_without_a_change_auto_fits_no_since_change_candidate(drift):
    """Check that the since-change candidate appears only when a change was found."""
    history, train, validation, champion = drift
    result = _run("auto", train, history, validation, champion)
    assert "since_change" not in [c.strategy for c in result.candidates]


def test_the_rows_a_change_is_sought_on_are_thinned_above_the_limit():
    """Check that above the limit the change is sought on every k-th row of each chunk (memory
    stays at a chunk), from every table, and that below it every row is read."""
    from components.data.chunks import FrameTable
    from components.stages.retrain import thinned

    first, second = FrameTable(make_rows(900, seed=1)), FrameTable(make_rows(300, seed=2))
    few = thinned([first, second], max_rows=120)
    assert 100 <= len(few) <= 120
    assert set(few["x1"]) <= set(first.frame["x1"]) | set(second.frame["x1"])
    assert len(set(few["x1"]) & set(second.frame["x1"])) >= 25
    assert len(thinned([first, second], max_rows=5000)) == 1200


# -- regression --------------------------------------------------------------------------------
@pytest.fixture
def number_drift():
    """A number to predict: the old relation for 200 days of history, then an abrupt change."""
    from tests.helpers import make_numbers

    return _drifted(make_numbers, 3000)


@pytest.mark.parametrize("model_type", ["hgb", "sgd", "lightgbm_model:make_model"])
def test_regression_fits_every_strategy_and_traces_squared_error_and_r2(number_drift,
                                                                       model_type):
    """Check that auto fits every strategy for a numeric label, chooses by RMSE (lower is
    better), cross-fits predicted values, and traces squared error and R² by epoch."""
    history, train, validation = number_drift
    first = _run("full", train, history, validation, model_type=model_type, metric="rmse",
                 task="regression")
    meta = VersionMetadata(feature_kinds=KINDS, model_type=model_type, task="regression")
    result = _run("auto", train, history, validation, first.model, model_type=model_type,
                  metric="rmse", task="regression", champion_meta=meta)
    fitted = [c for c in result.candidates if c.status == "fitted"]
    assert {c.strategy for c in fitted} >= {"finetune", "full", "window"}
    assert result.strategy == min(fitted, key=lambda c: c.score).strategy
    assert set(result.trace[-1]) == {"epoch", "iterations", "train_loss", "train_r2",
                                     "validation_loss", "validation_r2"}
    assert result.trace[-1]["validation_r2"] > 0.5
    crossed = result.cross_fitted["__cross_fitted_value"].to_numpy()
    assert len(crossed) == len(train) + len(validation)
    assert abs(crossed - result.cross_fitted["label"]).mean() < result.cross_fitted[
        "label"].std()
    assert not hasattr(result.model, "classes_")


def test_sgd_regression_learns_a_label_in_large_units():
    """Check that SGD regression learns a label in the thousands (its target is standardised
    inside the model, and its predictions come back in the label's units)."""
    from tests.helpers import make_numbers

    rows = _prepare(make_numbers(1500, seed=3, scale=5000.0))
    model, trace = fit_fresh(rows[:1200], rows[1200:], label_column="label",
                             feature_kinds=KINDS, model_type="sgd", epochs=5, task="regression")
    assert trace[-1]["validation_r2"] > 0.8
    predicted = model.predict(rows[1200:][list(KINDS)])
    assert 0.5 * rows["label"].mean() < predicted.mean() < 1.5 * rows["label"].mean()


@pytest.mark.parametrize("new_rows, fit_rows, folds", [
    (200, 3000, 3), (1400, 2600, 6), (600, 600, 10), (20_000, 25_000, 8), (1, 1, 3),
], ids=["history-heavy", "half-new", "all-new", "mostly-new", "one-row"])
def test_new_rows_are_cross_fitted_in_enough_folds_that_each_fit_keeps_nine_tenths(
        new_rows, fit_rows, folds):
    """Check how many folds the new rows are cross-fitted in: a fold leaves out at most a tenth
    of what the procedure learns from where three to ten folds allow it, so a window or a
    since-change fit (all new rows) is not judged by fits on two thirds of its rows."""
    from components.stages.retrain import cross_fit_folds

    assert cross_fit_folds(new_rows, fit_rows) == folds


def _candidates(train_full, train_window, validation, *, window_ahead: float | None = None):
    """A full and a window candidate fitted on the given rows, scored on the selection rows;
    with ``window_ahead``, the window's score put that far above the full one's, as a lucky
    draw would."""
    from components.ml.metrics import score_model
    from components.stages.retrain import Candidate

    candidates = []
    for strategy, rows in (("full", train_full), ("window", train_window)):
        model, _ = fit_fresh(rows, validation.read(), label_column="label",
                             feature_kinds=KINDS, model_type="hgb", epochs=3)
        score = score_model(model, validation, "label")["accuracy"]
        candidates.append(Candidate(strategy, "fitted", rows=len(rows), score=score,
                                    model=model))
    if window_ahead is not None:
        candidates[1].score = candidates[0].score + window_ahead
    return candidates


def test_without_a_concept_change_auto_keeps_a_full_refit_unless_another_is_surely_better(
        drift):
    """Check auto's choice where no concept change was found: a window that scores a little
    better on the selection rows (as one does by chance) does not displace the full refit, one
    better with 80% confidence does; after a change the best score wins."""
    from components.data.chunks import FrameTable
    from components.stages.retrain import ConceptChange, _choose

    history, train, validation, _ = drift
    selection = FrameTable(validation)
    same_world = _candidates(train, train.tail(300), selection, window_ahead=0.001)
    notes: list[str] = []
    fit = {"label_column": "label", "seed": 0}
    assert _choose(same_world, "accuracy", notes, validation=selection, change=None,
                   fit=fit).strategy == "full"
    assert notes == [f"auto chose full: window's accuracy {same_world[1].score:.4f} on the "
                     f"{len(validation)} selection rows is not better with 80% confidence, and "
                     "no concept change was found"]
    change = ConceptChange(frozenset(), "concept change: ...", "ts")
    assert _choose(same_world, "accuracy", [], validation=selection, change=change,
                   fit=fit).strategy == "window"
    old_world = _candidates(history, train, selection)  # full learned the old concept
    notes = []
    assert _choose(old_world, "accuracy", notes, validation=selection, change=None,
                   fit=fit).strategy == "window"
    assert notes[0].startswith("auto chose window (accuracy ")
