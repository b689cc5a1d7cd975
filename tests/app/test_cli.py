"""The CLI: flags are the parameter table, refused parameters exit 2 before anything runs."""

import json

import pytest

from app.cli import build_parser, main, pipeline_arguments
from components.data.schema import check_schema
from components.params import PARAMETERS

RUN = ["run", "--source-uri", "data", "--registry-uri", "reg", "--model-name", "m",
       "--label-column", "y"]


def test_run_flags_are_the_parameter_table():
    """Check that `retrain run` with only the required flags gives every table default."""
    arguments = pipeline_arguments(build_parser().parse_args(RUN))
    assert arguments == {p.name: p.default for p in PARAMETERS} | {
        "source_uri": "data", "registry_uri": "reg", "model_name": "m", "label_column": "y"}


def test_repeated_threshold_flags_make_one_dict():
    """Check that --validation-threshold NAME=VALUE flags become validation_thresholds."""
    args = build_parser().parse_args([*RUN, "--validation-threshold", "psi_drift=0.3",
                                      "--validation-threshold", "js_drift=0.2"])
    assert pipeline_arguments(args)["validation_thresholds"] == {"psi_drift": 0.3,
                                                                 "js_drift": 0.2}


@pytest.mark.parametrize("flags, message", [
    (["--threshold", "-0.1"], "The 'threshold' parameter of retrain run must be a float in the "
                              "range [0, 1]. Got -0.1 instead."),
    (["--cutoff", "soon"], "The 'cutoff' parameter of retrain run must be an ISO 8601 "
                           "timestamp (or empty). Got 'soon' instead."),
    (["--validation-threshold", "psi_drfit=0.3"], "'psi_drift'"),
    (["--window-files", "0"], "The 'window_files' parameter of retrain run must be an int"),
], ids=["threshold", "cutoff", "threshold-name", "window-files"])
def test_refused_parameters_exit_2_before_running(tmp_path, capsys, flags, message):
    """Check that a refused parameter exits 2 with the message and never creates the registry."""
    code = main(["run", "--source-uri", str(tmp_path), "--registry-uri", str(tmp_path / "reg"),
                 "--model-name", "m", "--label-column", "y",
                 "--pipeline-root", str(tmp_path / "root"), *flags])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "reg").exists() and not (tmp_path / "root").exists()


def test_schema_command_prints_an_editable_schema(demo_folder, capsys):
    """Check that `retrain schema` infers the contract from a source folder."""

    assert main(["schema", "--source-uri", str(demo_folder), "--label-column", "will_buy",
                 "--timestamp-column", "event_time"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert check_schema(schema, "stdout") is schema
    assert schema["label"] == {"name": "will_buy", "classes": [0, 1]}
    assert {c["name"] for c in schema["columns"]} == {
        "age", "income", "purchases_last_year", "days_since_last_purchase", "avg_basket_value",
        "web_visits_last_month", "region", "membership"}


