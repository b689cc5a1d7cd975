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
