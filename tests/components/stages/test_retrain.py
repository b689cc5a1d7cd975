"""Retrain: each strategy, fine-tune fallbacks, auto under abrupt drift, labels of any kind."""

import pandas as pd
import pytest

from components.stages.preprocess import split_by_time
from components.stages.retrain import RetrainError, fit_fresh, retrain
from tests.conftest import make_rows

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
                   champion_meta={"feature_kinds": KINDS} if champion is not None else None)
    options.update(kw)
    return retrain(**options)


@pytest.fixture
def drift():
    """Old concept for 200 days of history, then an abrupt change in the new rows."""
    history = _prepare(make_rows(4800, start="2024-06-01", seed=1))
    new = _prepare(make_rows(600, start="2025-01-01", seed=2, shift=1.0))
    train, validation = split_by_time(new, timestamp_column="ts", validation_fraction=0.25)
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


@pytest.mark.parametrize("model_type", ["hgb", "sgd"])
def test_finetune_continues_the_champion(drift, model_type):
    """Check that finetune starts from the champion and leaves the champion itself untouched."""
    history, train, validation, _ = drift
    champion, _ = fit_fresh(history, validation, label_column="label", feature_kinds=KINDS,
                            model_type=model_type, epochs=3)
    before = champion.predict_proba(validation).copy()
    result = _run("finetune", train, history, validation, champion, model_type=model_type)
    assert result.strategy == "finetune" and result.notes == []
    assert (champion.predict_proba(validation) == before).all()
    assert result.candidates[0].score > 0.6


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

