"""Validate: every check fires on data made to trigger it and stays silent on clean data."""

import numpy as np
import pytest

from components.schema import SOURCE_FILE_COLUMN
from components.validate import validate
from tests.conftest import make_rows

KINDS = {"x1": "numeric", "x2": "numeric", "color": "categorical"}


def _frame(n=120):
    frame = make_rows(n)
    frame[SOURCE_FILE_COLUMN] = "batch.csv"
    return frame


def _check(frame, **overrides):
    options = dict(label_column="label", timestamp_column="ts", min_rows=100,
                   expected_feature_kinds=KINDS, known_classes=[0, 1],
                   file_columns={"batch.csv": list(frame.columns.drop(SOURCE_FILE_COLUMN))})
    options.update(overrides)
    return validate(frame, **options)


def test_clean_data_passes():
    """Check that clean data gives no findings at all."""
    report = _check(_frame())
    assert report.valid and report.findings == []


def _missing_column(frame):
    return frame.drop(columns="x2")


def _text_in_numeric(frame):
    frame["x1"] = frame["x1"].astype(object)
    frame.loc[3, "x1"] = "lots"
    return frame


def _infinite(frame):
    frame.loc[4, "x2"] = np.inf
    return frame


def _unknown_class(frame):
    frame["label"] = frame["label"].astype(object)
    frame.loc[5, "label"] = 7
    return frame


def _empty_column(frame):
    frame["color"] = None
    return frame


def _one_class(frame):
    frame["label"] = 1
    return frame


@pytest.mark.parametrize(
    "damage, n, expected",
    [
        (_missing_column, 120, "file batch.csv, column 'x2': required column is missing"),
        (_text_in_numeric, 120, "file batch.csv, column 'x1': 1 value(s) are not numbers, "
                                "e.g. 'lots'"),
        (_infinite, 120, "file batch.csv, column 'x2': 1 infinite value(s)"),
        (_unknown_class, 120, "file batch.csv, column 'label': 1 label(s) outside the known "
                              "classes"),
        (_empty_column, 120, "column 'color': column is empty in every new row"),
        (_one_class, 120, "column 'label': only one class"),
        (lambda f: f, 50, "only 50 labelled new row(s); at least 100"),
    ],
    ids=["missing-column", "type-does-not-parse", "infinite", "unknown-class", "all-empty",
         "single-class", "too-few-rows"],
)
def test_each_error_fires(damage, n, expected):
    """Check that each kind of bad data is an error whose message names file and column."""
    frame = damage(_frame(n))
    file_columns = {"batch.csv": [c for c in frame.columns if c != SOURCE_FILE_COLUMN]}
    report = _check(frame, file_columns=file_columns)
    assert not report.valid
    assert any(expected in f.message() for f in report.errors), report.summary()


def test_missing_labels_warn_only():
    """Check that rows without a label are a warning (they are dropped), not an error."""
    frame = _frame(130)
    frame["label"] = frame["label"].astype(object)
    frame.loc[:9, "label"] = None
    report = _check(frame)
    assert report.valid
    assert [f.column for f in report.warnings] == ["label"]


def test_ingest_problems_become_errors():
    """Check that problems ingest found are errors in the report."""
    report = _check(_frame(), ingest_problems=["file x.csv: cannot be read as CSV"])
    assert report.summary() == "invalid data: file x.csv: cannot be read as CSV"


def test_cold_start_infers_schema():
    """Check that without a champion the types come from the data (a typo is still caught)."""
    frame = _text_in_numeric(_frame())
    report = _check(frame, expected_feature_kinds=None, known_classes=None)
    assert any("are not numbers" in f.problem for f in report.errors)
