"""Preprocess: cleaning, the time split, and transforms that live inside the model."""

import pandas as pd
import pytest

from components.stages.preprocess import clean, split_by_time
from tests.helpers import make_rows

KINDS = {"x1": "numeric", "x2": "numeric", "color": "categorical"}


def test_clean_drops_duplicates_and_unlabelled_rows():
    """Check that exact duplicates and rows without a label are dropped and counted."""
    frame = make_rows(20)
    frame = pd.concat([frame, frame.iloc[:3]], ignore_index=True)
    frame["label"] = frame["label"].astype(object)
    frame.loc[5, "label"] = None
    cleaned, duplicates, unlabelled = clean(frame, label_column="label", feature_kinds=KINDS)
    assert (duplicates, unlabelled) == (3, 1)
    assert len(cleaned) == 19


def test_clean_coerces_numbers_given_as_text():
    """Check that numeric features stored as text become floats."""
    frame = make_rows(5)
    frame["x1"] = frame["x1"].map(str)
    cleaned, _, _ = clean(frame, label_column="label", feature_kinds=KINDS)
    assert cleaned["x1"].dtype == float


def test_validation_is_the_newest_fraction():
    """Check that the validation rows are the most recent ones, whatever the input order."""
    frame = make_rows(100).sample(frac=1, random_state=0)
    train, validation = split_by_time(frame, timestamp_column="ts", validation_fraction=0.2)
    assert len(validation) == 20
    assert len(train) == 80
    assert validation["ts"].min() > train["ts"].max()


def test_split_that_leaves_no_training_rows_is_refused():
    """Check that a validation fraction swallowing every row is an error."""
    with pytest.raises(ValueError, match="leaves no training rows"):
        split_by_time(make_rows(2), timestamp_column="ts", validation_fraction=0.9)


@pytest.fixture
def split(tmp_path):
    """``preprocess`` over new rows and history, its outputs read back."""
    from components.stages.preprocess import preprocess

    def run(new, history, **options):
        paths = {name: tmp_path / f"{name}.parquet"
                 for name in ("train", "validation", "history", "evaluation")}
        result = preprocess(new, history, label_column="label", timestamp_column="ts",
                            feature_kinds=KINDS, validation_fraction=0.2, model_name="m",
                            holdout_fraction=0.2, train_path=paths["train"],
                            validation_path=paths["validation"], history_path=paths["history"],
                            evaluation_path=paths["evaluation"], **options)
        return result, {name: pd.read_parquet(path) for name, path in paths.items()}

    return run


def test_a_run_small_enough_to_cross_fit_holds_no_row_out(split):
    """Check that every new row of a run below the cross-fit limits is a training or selection
    row: retrain answers each by a fit without it, so none needs holding out."""
    result, frames = split(make_rows(500, seed=1), make_rows(300, start="2024-01-01"))
    assert (result.train_rows, result.validation_rows, result.holdout_rows) == (400, 100, 0)
    assert frames["evaluation"].empty
    assert result.history_rows == 300


def test_a_run_too_large_to_cross_fit_holds_out_the_same_rows_whatever_their_order(
        split, monkeypatch):
    """Check that above the cross-fit limit a run holds out about holdout_fraction of its new
    rows, chosen by their content: the same rows whichever order they arrive in."""
    from components.data import roles

    monkeypatch.setattr(roles, "CROSS_FIT_LIMIT", 100)
    new = make_rows(500, seed=1)
    result, frames = split(new, new.iloc[:0])
    assert 70 <= result.holdout_rows <= 130
    assert result.train_rows + result.validation_rows + result.holdout_rows == 500
    _, shuffled = split(new.sample(frac=1, random_state=3), new.iloc[:0])
    assert sorted(shuffled["evaluation"]["x1"]) == sorted(frames["evaluation"]["x1"])


def test_history_rows_in_the_rolling_holdout_are_left_out_of_training(split):
    """Check that the history rows a later gate may still judge on (those in the rolling
    holdout, with the promotion marks) are not training rows, and that every other history row
    is."""
    history = make_rows(300, start="2024-01-01")
    pool = history.iloc[::6].assign(__promoted_version="v0001")  # 50 rows
    result, frames = split(make_rows(200, seed=1), history, rolling_holdout=pool)
    assert (result.history_rows, result.history_holdout_rows) == (250, 50)
    assert not set(frames["history"]["x1"]) & set(pool["x1"])
