"""Parameter checks: scikit-learn-style messages, refused before any stage runs."""

import pytest

from app.cli import main
from components.params import InvalidParameterError, check_run_parameters

GOOD = dict(source_uri="data", registry_uri="reg", model_name="m", label_column="y",
            strategy="auto", model_type="hgb", metric="accuracy", threshold=0.8,
            min_improvement=0.0, validation_fraction=0.2, window_days=90, window_files=3,
            epochs=5, min_rows=100)


@pytest.mark.parametrize(
    "override, message",
    [
        ({"strategy": "fulll"}, "The 'strategy' parameter of retrain run must be one of "
                                "{'auto', 'finetune', 'full', 'window'}. Got 'fulll' instead."),
        ({"threshold": 1.5}, "The 'threshold' parameter of retrain run must be a float in the "
                             "range [0, 1]. Got 1.5 instead."),
        ({"model_name": "../etc"}, "The 'model_name' parameter of retrain run must be"),
        ({"model_type": "xgb"}, "The 'model_type' parameter"),
        ({"validation_fraction": 1.0}, "range (0, 1)"),
        ({"epochs": 0}, "The 'epochs' parameter of retrain run must be an int"),
        ({"retrain_when": "sometimes"}, "The 'retrain_when' parameter of retrain run must be one "
                                        "of {'always', 'drift', 'min_rows'}. Got 'sometimes'"),
        ({"validation_thresholds": {"js_drift": -1}}, "The 'js_drift' parameter of retrain run "
                                                      "must be a float in the range [0, 1]"),
    ],
    ids=["strategy", "threshold", "model-name", "model-type", "validation-fraction", "epochs",
         "retrain-when", "threshold-value"],
)
def test_bad_parameters_are_refused(override, message):
    """Check that each constrained parameter is refused with a message naming it."""
    with pytest.raises(InvalidParameterError) as error:
        check_run_parameters(**{**GOOD, **override})
    assert message in str(error.value)


def test_good_parameters_pass():
    """Check that the defaults pass."""
    check_run_parameters(**GOOD)


def test_cli_refuses_before_running(tmp_path, capsys):
    """Check that the CLI exits 2 with the message and never creates the registry."""
    code = main(["run", "--source-uri", str(tmp_path), "--registry-uri", str(tmp_path / "reg"),
                 "--model-name", "m", "--label-column", "y", "--threshold", "-0.1"])
    assert code == 2
    assert "The 'threshold' parameter of retrain run" in capsys.readouterr().err
    assert not (tmp_path / "reg").exists()
