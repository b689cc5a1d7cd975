"""The bench's study of the gate's evidence: which rows tell a challenger's true gain."""

import numpy as np
import pytest

from bench.evidence import CHOSE_ANOTHER, KEPT_FULL, markdown, month_evidence, summary


def test_a_months_gains_are_read_from_the_runs_answers(tmp_path):
    """Check one replayed month against its own decision: judged on every new row (a run of
    200 rows holds none out), the gain on all of them is the gate's delta, and the selection
    rows are the run's validation rows."""
    import pandas as pd

    from app.concept_streams import Stream, replay

    months = replay(Stream("stationary", 200), tmp_path, months=1)
    [month] = month_evidence(tmp_path, months)
    gate = months[1].gate
    assert month["month"] == 1
    run = tmp_path / "runs" / "01"
    selection, answers = (pd.read_parquet(run / name) for name in ("validation_data",
                                                                   "cross_fitted"))
    assert month["selection_rows"] == len(selection)
    # The answers hold the selection rows last, as month_evidence reads them.
    assert answers["event_time"].tail(len(selection)).tolist() == \
        selection["event_time"].tolist()
    assert month["selection_rows"] + month["other_rows"] == gate["rows"]
    assert month["all_gain"] == pytest.approx(gate["delta"]) == month["gate_gain"]
    shares = np.array([month["other_rows"], month["selection_rows"]]) / gate["rows"]
    assert shares @ [month["other_gain"], month["selection_gain"]] == \
        pytest.approx(month["all_gain"])
    assert month["true_gain"] == pytest.approx(months[1].challenger - months[1].champion_before)


def test_errors_are_measured_minus_true_gain_per_stream_and_choice():
    """Check the summary's errors and standard errors against numpy, in points."""
    def month(choice, selection, other, true):
        return {"kind": "gradual", "choice": choice, "selection_gain": selection,
                "other_gain": other, "all_gain": (selection + 4 * other) / 5,
                "gate_gain": selection, "true_gain": true}

    rows = [month(CHOSE_ANOTHER, 0.06, 0.01, 0.05), month(CHOSE_ANOTHER, 0.02, -0.02, 0.04),
            month(KEPT_FULL, 0.0, 0.005, 0.0)]
    table = summary(rows).set_index("choice")
    other_errors = np.array([0.01 - 0.05, -0.02 - 0.04]) * 100
    chose = table.loc[CHOSE_ANOTHER]
    assert chose["months"] == 2
    assert chose["true gain"] == pytest.approx(4.5)
    assert chose["selection error"] == pytest.approx(-0.5)
    assert chose["other error"] == pytest.approx(other_errors.mean())
    assert chose["other SE"] == pytest.approx(other_errors.std(ddof=1) / np.sqrt(2))
    assert markdown(summary(rows))[2] == \
        "| gradual | chose another | 2 | +4.50 | -0.50 (1.50) | -5.00 (1.00) | -4.10 (1.10) | " \
        "-0.50 (1.50) |"
    assert markdown(summary(rows))[3].endswith("| +0.50 (-) | +0.40 (-) | +0.00 (-) |")
