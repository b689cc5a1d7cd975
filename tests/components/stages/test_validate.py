"""Validate: every check fires on data made to trigger it and stays silent on clean data."""

import json

import numpy as np
import pytest

from components.data.schema import SOURCE_FILE_COLUMN, SchemaError, check_schema, infer_schema
from components.params import DEFAULT_THRESHOLDS, InvalidParameterError, thresholds_with
from components.records import IngestReport
from components.stages.validate import ERROR, WARNING, validate
from tests.helpers import make_numbers, make_rows

# The schema a champion trained on 2000 rows would carry.
REFERENCE = make_rows(2000, seed=1)
SCHEMA = infer_schema(REFERENCE, label_column="label", timestamp_column="ts")


def _frame(n=300, seed=2):
    frame = make_rows(n, seed=seed)
    frame[SOURCE_FILE_COLUMN] = "batch.csv"
    return frame


def _check(frame, **overrides):
    options = dict(schema=SCHEMA, timestamp_column="ts", min_rows=100,
                   thresholds=dict(DEFAULT_THRESHOLDS),
                   file_columns={"batch.csv": [c for c in frame.columns
                                               if c != SOURCE_FILE_COLUMN]})
    options.update(overrides)
    return validate(frame, **options)


def test_clean_data_passes():
    """Check that clean data from the reference's distribution gives no findings at all."""
    report = _check(_frame())
    assert report.valid and report.findings == [], report.findings


def _set(column, share, value):
    def damage(frame):
        frame[column] = frame[column].astype(object)
        frame.loc[: int(len(frame) * share) - 1, column] = value
        return frame
    return damage


def _drop_x2(frame):
    return frame.drop(columns="x2")


def _extra(frame):
    frame["notes"] = "hello"
    return frame


def _infinite(frame):
    frame.loc[4, "x2"] = np.inf
    return frame


def _duplicates(share):
    def damage(frame):
        copies = int(len(frame) * share)
        frame.iloc[1:copies + 1] = frame.iloc[[0] * copies].to_numpy()
        return frame
    return damage


def _rare_class(frame):
    ones = frame.index[frame["label"] == 1]
    frame.loc[ones[1:], "label"] = 0
    return frame


CASES = {
    # id: (damage, expected check, expected severity, text in the message)
    "missing-column": (_drop_x2, "missing_column", ERROR,
                       "file batch.csv, column 'x2': required column is missing"),
    "extra-column": (_extra, "extra_column", WARNING, "column 'notes': column is not in the"),
    "not-a-number": (_set("x1", 0.01, "lots"), "type", ERROR,
                     "file batch.csv, column 'x1': 3 value(s) are not numbers, e.g. 'lots'"),
    "infinite": (_infinite, "type", ERROR, "file batch.csv, column 'x2': 1 infinite value(s)"),
    "out-of-range-warning": (_set("x1", 0.05, 100.0), "out_of_range", WARNING,
                             "5.0% of the values (15) are outside"),
    "out-of-range-error": (_set("x1", 0.6, 100.0), "out_of_range", ERROR,
                           "e.g. 100.0"),
    "unseen-category-warning": (_set("color", 0.01, "purple"), "unseen_category", WARNING,
                                "categories the schema does not know, e.g. 'purple'"),
    "unseen-category-error": (_set("color", 0.2, "purple"), "unseen_category", ERROR,
                              "20.0% of the values (60)"),
    "missing-warning": (_set("x2", 0.1, None), "missing_values", WARNING,
                        "10.0% of the values are missing"),
    "missing-error": (_set("x2", 0.4, None), "missing_values", ERROR,
                      "40.0% of the values are missing"),
    "missing-in-never-missing": (_set("x2", 0.01, None), "missing_values", WARNING,
                                 "the schema says it is never missing"),
    "all-missing": (_set("color", 1.0, None), "missing_values", ERROR, "100.0% of the values"),
    "duplicates-warning": (_duplicates(0.05), "duplicates", WARNING, "5.0% of the new rows"),
    "duplicates-error": (_duplicates(0.6), "duplicates", ERROR, "60.0% of the new rows"),
    "unknown-class": (_set("label", 0.01, 7), "unknown_class", ERROR,
                      "file batch.csv, column 'label': 3 label(s) outside the known classes"),
    "single-class": (_set("label", 1.0, 1), "class_balance", ERROR, "only one class"),
    "rare-class": (_rare_class, "class_balance", WARNING, "class '1' is 0.3% of the new"),
    "missing-label": (_set("label", 0.02, None), "missing_label", WARNING,
                      "6 row(s) have no label"),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_each_finding_fires(case):
    """Check that each check of a contract (a user's schema) fires, with its severity, naming
    the column (and file, if one)."""
    damage, check, severity, text = CASES[case]
    frame = damage(_frame())
    report = _check(frame, contract=True)
    matching = [f for f in report.findings if f.check == check]
    assert [f.severity for f in matching] == [severity], report.findings
    assert text in matching[0].message(), matching[0].message()
    assert report.valid is (severity == WARNING)
    assert [f.check for f in report.findings] == [check], report.findings


@pytest.mark.parametrize("damage, check, text", [
    (_set("x1", 0.6, 100.0), "beyond_training_range",
     "60.0% of the values (180) are outside the range seen in training [-3.5"),
    (_set("color", 0.2, "purple"), "unseen_in_training",
     "20.0% of the values (60) are categories unseen in training, e.g. 'purple'")],
    ids=["range", "category"])
def test_values_beyond_the_champions_schema_are_drift_not_errors(damage, check, text):
    """Check that with the champion's own schema (statistics, not a contract) values beyond its
    range or categories are a warning naming the share and the range, counted as drift, and
    never make the rows invalid, however many there are."""
    report = _check(damage(_frame()))
    [finding] = report.findings
    assert (finding.check, finding.severity) == (check, WARNING)
    assert text in finding.problem
    assert finding.problem.endswith("(drift, not an error: pass a schema with --schema-uri to "
                                    "enforce it)")
    assert report.valid
    assert report.beyond_training() == [finding.column]


@pytest.mark.parametrize("ratio, limit, shown", [
    (0.0096, 0.01, "0.96%"), (0.01004, 0.01, "1.004%"), (0.05, 0.01, "5.0%"),
    (0.30001, 0.30, "30.001%"), (0.25, 0.30, "25.0%")],
    ids=["just-under", "just-over", "far-over", "hair-over", "under"])
def test_a_share_never_reads_as_on_the_other_side_of_its_limit(ratio, limit, shown):
    """Check the rounding of shares in findings: as few decimals as keep it on its side."""
    from components.stages.validate import share

    assert share(ratio, limit) == shown


def test_too_few_rows_is_an_error_or_a_warning():
    """Check that the row count blocks, unless the policy waits for rows (then it warns)."""
    report = _check(_frame(50))
    assert [(f.check, f.severity) for f in report.findings] == [("row_count", ERROR)]
    assert "only 50 labelled new row(s); at least 100" in report.summary()
    waiting = _check(_frame(50), too_few_rows=WARNING)
    assert waiting.valid
    assert waiting.labelled_rows == 50


def test_thresholds_move_the_verdict():
    """Check that a threshold override turns an error into a warning."""
    frame = _set("x1", 0.6, 100.0)(_frame())
    lenient = thresholds_with({"out_of_range_error": 0.9}, "test")
    assert [f.severity for f in _check(frame, thresholds=lenient).findings] == [WARNING]


def test_unknown_threshold_name_is_refused():
    """Check that a misspelt threshold is refused with the valid names listed."""
    with pytest.raises(InvalidParameterError, match="psi_drift"):
        thresholds_with({"psi_drfit": 0.3}, "retrain run")
    with pytest.raises(InvalidParameterError, match=r"range \[0, 1\]"):
        thresholds_with({"psi_drift": 3}, "retrain run")


def test_ingest_problems_become_errors():
    """Check that problems ingest found are errors in the report."""
    report = _check(_frame(), ingest_problems=["file x.csv: cannot be read as CSV"])
    assert report.summary() == "invalid data: file x.csv: cannot be read as CSV"


def test_cold_start_schema_from_the_new_rows_still_catches_typos():
    """Check that a schema inferred from the new rows themselves still catches a stray text."""
    frame = _set("x1", 0.01, "lots")(_frame())
    schema = infer_schema(frame, label_column="label", timestamp_column="ts")
    report = _check(frame, schema=schema)
    assert [f.check for f in report.errors] == ["type"]


def test_schema_records_types_ranges_domains_and_classes():
    """Check the schema.json contract: column, type, nullable, range, domain, label classes."""
    by_name = {c["name"]: c for c in SCHEMA["columns"]}
    assert by_name["x1"]["type"] == "numeric"
    assert by_name["x1"]["nullable"] is False
    assert by_name["x1"]["min"] == pytest.approx(REFERENCE["x1"].min())
    assert by_name["color"] == {"name": "color", "type": "categorical", "nullable": False,
                                "domain": ["blue", "green", "red"]}
    assert SCHEMA["label"] == {"name": "label", "task": "classification", "classes": [0, 1]}
    assert json.loads(json.dumps(SCHEMA)) == SCHEMA


def test_bad_schema_file_names_the_field():
    """Check that a malformed user schema is refused naming the file and the field."""
    broken = json.loads(json.dumps(SCHEMA))
    broken["columns"][0]["type"] = "integer"
    with pytest.raises(SchemaError, match=r"schema my.json: columns\[0\] \('x1'\): 'type'"):
        check_schema(broken, "my.json")


def _step_inputs(tmp_path, frame):
    from components.steps import write_json

    frame.to_parquet(tmp_path / "new.parquet", index=False)
    write_json(tmp_path / "ingest.json", IngestReport(
        outcome="new-data", cutoff="2026-01-01T00:00:00Z", watermark_before=None,
        new_watermark=None, new_rows=len(frame), history_rows=0, new_files={},
        consumed_files={}, file_columns={}, problems=[]).to_dict())
    return dict(new_data=str(tmp_path / "new.parquet"),
                ingest_report=str(tmp_path / "ingest.json"),
                registry_uri=str(tmp_path / "registry"), model_name="m", champion_version="",
                label_column="label", timestamp_column="ts", task="auto", min_rows=100,
                retrain_when="always", validation_thresholds={}, run_id="run-1",
                validation_report=str(tmp_path / "report.json"),
                report=str(tmp_path / "report.md"), drift_report=str(tmp_path / "drift.html"),
                schema=str(tmp_path / "resolved_schema.json"))


def test_user_schema_file_is_enforced(tmp_path):
    """Check that --schema-uri replaces the inferred schema: a category it lacks is reported."""
    from components.steps import validate_step

    narrowed = json.loads(json.dumps(SCHEMA))
    next(c for c in narrowed["columns"] if c["name"] == "color")["domain"] = ["green", "red"]
    (tmp_path / "schema.json").write_text(json.dumps(narrowed))
    result = validate_step(schema_uri=str(tmp_path / "schema.json"),
                           **_step_inputs(tmp_path, make_rows(300, seed=3)))
    assert result.decision == "invalid-data"
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["schema_source"] == str(tmp_path / "schema.json")
    # The schema the rows were checked against is what training gets.
    assert json.loads((tmp_path / "resolved_schema.json").read_text()) == narrowed
    [finding] = report["findings"]
    assert (finding["check"], finding["column"]) == ("unseen_category", "color")
    assert "e.g. 'blue'" in finding["problem"]


def test_unreadable_schema_file_names_it(tmp_path):
    """Check that a schema file that is not JSON fails with the file named."""
    from components.steps import validate_step

    (tmp_path / "schema.json").write_text("{not json")
    with pytest.raises(SchemaError, match=r"schema .*schema.json: not valid JSON"):
        validate_step(schema_uri=str(tmp_path / "schema.json"),
                      **_step_inputs(tmp_path, make_rows(300, seed=3)))


def test_a_float_label_with_missing_values_is_read_as_the_classes_it_holds():
    """Check that labels 1.0/0.0 with gaps (an integer label as Parquet stores it) match the
    schema's classes 0 and 1: only the missing labels are reported."""
    frame = _frame()
    frame["label"] = frame["label"].astype(float)
    frame.loc[:5, "label"] = np.nan
    report = _check(frame)
    assert [(f.check, f.severity) for f in report.findings] == [("missing_label", WARNING)]


@pytest.mark.parametrize("present", [False, True], ids=["missing", "present"])
def test_a_label_column_that_is_not_the_schemas_is_invalid_data_naming_it(present):
    """Check that a run whose label_column differs from the champion schema's label ends as
    invalid-data naming the column, whether or not the data holds it."""
    frame = _frame()
    if present:
        frame["target"] = frame["label"]
    report = _check(frame, label_column="target")
    checks = {(f.check, f.column) for f in report.errors}
    assert ("label_column", "target") in checks
    assert (("missing_column", "target") in checks) is not present
    assert "the label_column is 'target', but the schema's label is 'label'" in report.summary()


# -- a numeric label (regression) --------------------------------------------------------------
NUMBERS = make_numbers(2000, seed=1)
NUMBER_SCHEMA = infer_schema(NUMBERS, label_column="label", timestamp_column="ts",
                             task="regression")


def _numbers(n=300, seed=2):
    frame = make_numbers(n, seed=seed)
    frame[SOURCE_FILE_COLUMN] = "batch.csv"
    return frame.astype({"label": object})


def test_a_regression_schema_records_the_labels_range_and_task():
    """Check that a regression label is recorded by its task and range, with no classes."""
    label = NUMBER_SCHEMA["label"]
    assert (label["task"], label["classes"]) == ("regression", [])
    assert label["min"] == NUMBERS["label"].min() and label["max"] == NUMBERS["label"].max()
    assert _check(_numbers(), schema=NUMBER_SCHEMA).findings == []


@pytest.mark.parametrize("damage, check, text", [
    (lambda f: f.__setitem__("label", f["label"].where(f.index > 3, "n/a")), "type",
     "4 value(s) are not numbers, e.g. 'n/a'"),
    (lambda f: f.__setitem__("label", f["label"].where(f.index > 1, np.inf)), "type",
     "2 infinite value(s)"),
    (lambda f: f.__setitem__("label", 42.0), "constant_label",
     "every labelled new row has the label 42; a regressor needs at least two distinct values"),
], ids=["text", "infinite", "constant"])
def test_a_regression_label_that_cannot_be_learned_is_invalid_naming_it(damage, check, text):
    """Check that text or an infinity in a regression label, or a label that never varies,
    is an error naming the label column and the values."""
    frame = _numbers()
    damage(frame)
    report = _check(frame, schema=NUMBER_SCHEMA)
    [finding] = [f for f in report.errors if f.check == check]
    assert finding.column == "label"
    assert text in finding.problem
    assert "label" in report.summary()


def test_a_label_that_turns_from_numbers_to_words_is_invalid_for_a_regression_champion():
    """Check that words in the label of a regression champion's data are invalid-data with
    examples, not a silent switch to classes."""
    frame = _numbers()
    frame["label"] = np.where(frame.index % 2 == 0, "high", "low")
    report = _check(frame, schema=NUMBER_SCHEMA)
    assert {f.check for f in report.errors} == {"type", "row_count"}
    [finding] = [f for f in report.errors if f.check == "type"]
    assert finding.column == "label"
    assert "300 value(s) are not numbers, e.g. 'high'" in finding.problem


def test_a_task_other_than_the_champions_is_invalid_data():
    """Check that asking for classification of a regression champion's label is an error
    naming the column: a model's task never changes silently."""
    report = _check(_numbers(), schema=NUMBER_SCHEMA, task="classification")
    [finding] = report.errors
    assert (finding.check, finding.column) == ("task", "label")
    assert "the task is 'classification', but the schema's label is for regression" \
        in finding.problem


def test_a_regression_label_beyond_its_training_range_is_drift():
    """Check that labels above the champion's range are a drift warning, as a feature's are."""
    frame = _numbers()
    frame.loc[:99, "label"] = NUMBERS["label"].max() * 3
    report = _check(frame, schema=NUMBER_SCHEMA)
    assert report.valid
    [finding] = report.warnings
    assert (finding.check, finding.column) == ("beyond_training_range", "label")


@pytest.mark.parametrize("values, task, why", [
    (["yes", "no"] * 50, "classification", "holds text, e.g. 'yes'"),
    ([0, 1, 2, 3, 4] * 20, "classification", "holds 5 distinct whole numbers (at most 20)"),
    (list(range(100)), "regression", "more than 20 distinct whole numbers"),
    ([1.5, 2.0, 3.25] * 30, "regression", "numbers that are not whole, e.g. 1.5"),
    # A price's example keeps its cents: six significant digits showed 150232.44 as 150232.
    ([150232.44, 277308.0] * 30, "regression", "numbers that are not whole, e.g. 150232.44:"),
    ([True, False] * 30, "classification", "holds text"),
], ids=["text", "few-whole", "many-whole", "fractions", "price", "bool"])
def test_task_auto_reads_the_label(values, task, why):
    """Check the documented rule of task=auto, and that it says why."""
    import pandas as pd

    from components.data.schema import MAX_AUTO_CLASSES, infer_task

    found, reason = infer_task(pd.DataFrame({"y": values}), "y")
    assert found == task
    assert why in reason
    assert MAX_AUTO_CLASSES == 20  # as the parameter table's description says
