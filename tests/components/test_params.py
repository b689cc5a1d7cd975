"""Parameters: one table, scikit-learn-style messages, the same checks in the CLI and the steps."""

import json
import re
from pathlib import Path

import pytest

from components.params import (
    BY_NAME,
    PARAMETERS,
    REQUIRED,
    InvalidParameterError,
    check_parameters,
    markdown_table,
    pipeline_signature,
    thresholds_with,
)

GOOD = {p.name: p.default for p in PARAMETERS if not p.required} | {
    "source_uri": "data", "registry_uri": "reg"}
README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.parametrize(
    "override, message",
    [
        ({"strategy": "fulll"}, "The 'strategy' parameter of retrain run must be one of "
                                "{'auto', 'finetune', 'full', 'window'}. Got 'fulll' instead."),
        ({"threshold": 1.5, "metric": "accuracy"}, "The 'threshold' parameter of retrain run "
                                                   "must be in the range [0, 1] for accuracy "
                                                   "(or -1, its default). Got 1.5 instead."),
        ({"model_name": "../etc"}, "The 'model_name' parameter of retrain run must be a name of "
                                   "letters, digits"),
        ({"model_type": "xgb"}, "The 'model_type' parameter of retrain run must be one of "
                                "{'hgb', 'sgd'} or the import path 'package.module:factory' of "
                                "a factory in an installed distribution. Got 'xgb' instead: it "
                                "is not an import path"),
        ({"validation_fraction": 1.0}, "must be a float in the range (0, 1). Got 1.0 instead."),
        ({"epochs": 0}, "The 'epochs' parameter of retrain run must be an int in the range "
                        "[1, 10000]. Got 0 instead."),
        ({"window_days": 2.5}, "The 'window_days' parameter of retrain run must be an int"),
        ({"min_rows": True}, "The 'min_rows' parameter of retrain run must be an int"),
        ({"retrain_when": "sometimes"}, "The 'retrain_when' parameter of retrain run must be one "
                                        "of {'always', 'drift', 'min_rows'}. Got 'sometimes'"),
        ({"validation_thresholds": {"js_drift": -1}}, "The 'js_drift' parameter of retrain run "
                                                      "must be a float in the range [0, 1]"),
        ({"validation_thresholds": {"psi_drfit": 0.3}}, "The 'validation_thresholds' parameter "
                                                        "of retrain run must be one of {"),
        ({"cutoff": "the day after tomorrow"}, "The 'cutoff' parameter of retrain run must be "
                                               "an ISO 8601 timestamp (or empty)."),
        ({"source_uri": "  "}, "The 'source_uri' parameter of retrain run must be a non-empty "
                               "str. Got '  ' instead."),
    ],
    ids=["strategy", "threshold", "model-name", "model-type", "validation-fraction", "epochs",
         "window-days-fraction", "min-rows-bool", "retrain-when", "threshold-value",
         "threshold-name", "cutoff", "source-uri"],
)
def test_bad_parameters_are_refused(override, message):
    """Check that each constrained parameter is refused with a message naming it."""
    with pytest.raises(InvalidParameterError) as error:
        check_parameters({**GOOD, **override}, "retrain run")
    assert message in str(error.value)


@pytest.mark.parametrize("cutoff", ["", "2025-06-30T23:59:59Z", "2025-06-30", "06/30/2025"],
                         ids=["empty", "iso-z", "date", "us-date"])
def test_good_parameters_pass(cutoff):
    """Check that the table's defaults pass, with any cutoff pandas reads."""
    check_parameters({**GOOD, "cutoff": cutoff}, "retrain run")


def test_every_parameter_is_described_and_typed_once():
    """Check that names are unique and each row has a description, a type and a valid default."""
    assert len(BY_NAME) == len(PARAMETERS)
    for p in PARAMETERS:
        assert p.description.strip()
        assert p.kind in (str, int, float, dict)
        if p.default is not REQUIRED:
            p.check(p.default, "the table")
            assert isinstance(p.default, p.kind)


def test_pipeline_signature_follows_the_table():
    """Check the pipeline's parameters: the table's names, types and defaults, in its order."""
    signature = pipeline_signature()
    assert list(signature.parameters) == [p.name for p in PARAMETERS]
    assert [(q.annotation, q.default) for q in signature.parameters.values()] == [
        (p.kind, p.default) for p in PARAMETERS]


def test_readme_table_is_the_parameter_table():
    """Check that the README's parameter table is exactly what the table renders
    (`python -m components.params` prints it)."""
    text = README.read_text()
    found = re.search(r"\| parameter \| CLI flag \| default \| meaning \|\n(?:\|.*\|\n)+", text)
    assert found, "the README has no parameter table"
    assert found.group(0) == markdown_table()


def test_thresholds_with_overrides():
    """Check that overrides replace only the named defaults, and bad ones are refused."""
    thresholds = thresholds_with({"psi_drift": 0.3}, "the validate stage")
    assert thresholds["psi_drift"] == 0.3
    assert thresholds["js_drift"] == 0.10
    with pytest.raises(InvalidParameterError, match="of the validate stage must be one of"):
        thresholds_with({"psi_drfit": 0.3}, "the validate stage")


def test_a_step_refuses_a_bad_parameter_before_it_reads_anything(tmp_path):
    """Check that a run started from the KFP UI fails at the first step taking the parameter,
    with the CLI's message, before any storage is touched."""
    from components.steps import ingest_step

    with pytest.raises(InvalidParameterError) as error:
        ingest_step(source_uri=str(tmp_path / "nowhere"), registry_uri=str(tmp_path / "reg"),
                    model_name="m", timestamp_column="ts", cutoff="", scheduled_time="",
                    run_id="r", strategy="window", window_days=0,
                    new_data=str(tmp_path / "n"), history=str(tmp_path / "h"),
                    ingest_report=str(tmp_path / "r.json"))
    assert str(error.value) == ("The 'window_days' parameter of the ingest stage must be an int "
                                "in the range [1, 100000]. Got 0 instead.")
    assert not (tmp_path / "r.json").exists()
    # All the registry holds is the journal entry the failure alert will read.
    files = sorted(p.relative_to(tmp_path / "reg").as_posix()
                   for p in (tmp_path / "reg").rglob("*") if p.is_file())
    assert files == ["m/runs/r/stages/ingest.json"]
    entry = json.loads((tmp_path / "reg/m/runs/r/stages/ingest.json").read_text())
    assert (entry["state"], entry["error_type"]) == ("failed", "InvalidParameterError")
    assert entry["message"] == str(error.value)


@pytest.mark.parametrize("step, name, value", [
    ("retrain_step", "epochs", 0), ("validate_step", "min_rows", 1),
    ("evaluate_step", "threshold", -2.0), ("preprocess_step", "validation_fraction", 0.0)],
    ids=["retrain-epochs", "validate-min-rows", "evaluate-threshold", "preprocess-fraction"])
def test_each_step_checks_the_parameters_it_takes(step, name, value):
    """Check that every step refuses a bad value of a parameter it takes, naming its stage."""
    import inspect

    from components import steps

    function = getattr(steps, step)
    names = inspect.signature(inspect.unwrap(function)).parameters
    assert name in names
    kwargs = {n: GOOD.get(n, "") for n in names} | {name: value}
    stage = step.removesuffix("_step")
    with pytest.raises(InvalidParameterError, match=f"The '{name}' parameter of the {stage} "
                                                    "stage must be"):
        function(**kwargs)
