"""The deploy gate on ground-truth streams: every model's true accuracy is known (20,000 fresh
rows of the month it serves), so "worse" and "better" are facts, not estimates.

A year of monthly runs of the pipeline's stages (:func:`app.concept_streams.replay`, default
parameters) per stream; ``make bench`` part 8 measures more streams and batch sizes.
"""

from pathlib import Path

import numpy as np
import pytest

from app.concept_streams import CHANGE_MONTH, LABEL_COLUMN, Stream, replay
from components.ml.comparison import percent
from components.ml.models import load_model
from components.params import BY_NAME
from components.stages.evaluate import nested_pair_level, shared_level

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stationary(tmp_path_factory):
    return replay(Stream("stationary", 200), tmp_path_factory.mktemp("stationary"))


@pytest.fixture(scope="module")
def abrupt(tmp_path_factory):
    root = tmp_path_factory.mktemp("abrupt")
    return root, replay(Stream("abrupt", 200), root, months=CHANGE_MONTH + 2)


def test_on_a_stationary_stream_no_deploy_is_worse_than_what_it_replaced(stationary):
    """Check 200-row months of one concept: the cold start deploys, and no later deploy is truly
    worse than the champion it replaced: by any margin when it was shown better, and by no more
    than ``freshness_margin`` when the freshness rule deployed it (a refit of the same world
    that the rows rule out being worse by more than that; truly 0.1 point worse in month 2)."""
    margin = BY_NAME["freshness_margin"].default
    assert stationary[0].status == "deployed"
    assert stationary[0].served > 0.8
    for month in stationary[1:]:
        assert month.status in ("deployed", "rejected"), month.reason
        if month.deployed:
            allowed = margin if "the freshness rule" in month.reason else 0.0
            assert month.challenger >= month.champion_before - allowed, month
    assert not any(m.harmful for m in stationary)


def test_every_gate_reason_names_its_rows_and_interval(stationary):
    """Check the reasons read 'challenger accuracy X vs champion vN Y on N rows: +d (95% CI a to
    b)' (after a concept-change cut, at 95% shared among the boundaries it was chosen from; with
    the newest batch also judged alone, the level the two tests share for its share of the rows
    where exactly one model is right: half of that after a cut), and that the gate judges on
    every new row: a run of this size holds no row out, so every new row is answered by a fit
    of the challenger's procedure without it (cross-fitted), and no earlier row is needed."""
    for month in stationary[1:]:
        gate = month.gate
        evaluation = gate["evaluation"]
        cut = evaluation["cut_chosen_among"]
        if not evaluation["newest_batch"]:
            level = shared_level(0.95, cut)
        elif cut:
            level = shared_level(shared_level(0.95, cut), 2)
        else:
            assert evaluation["newest_batch_share_of"] in (
                "the rows where exactly one model is right", "the rows")
            assert 0 <= evaluation["newest_batch_share"] <= 1
            level = nested_pair_level(0.95, evaluation["newest_batch_share"])
        assert gate["confidence"] == level
        assert ("newest_batch" in gate) == bool(evaluation["newest_batch"])
        assert f"on {gate['rows']} rows: {gate['delta']:+.3f} ({percent(gate['confidence'])} CI " \
               f"{gate['ci_low']:+.3f} to {gate['ci_high']:+.3f})" in month.reason
        assert evaluation["rows"] == gate["rows"] == evaluation["cross_fitted_rows"]
        assert (evaluation["new_rows"], evaluation["earlier_rows"]) == (0, 0)
        assert evaluation["predictions"].startswith("cross-fitted answers on ")
        if not evaluation["concept_change"]:
            assert evaluation["rows"] >= 195  # a month of 200 rows (a few repeat and are dropped)


def test_after_an_abrupt_change_the_pipeline_deploys_within_two_runs(abrupt):
    """Check that a champion made useless by a new concept is replaced within two runs of the
    change's first month, by a truly better model, and that the gate left the older rows out."""
    _, months = abrupt
    before = months[CHANGE_MONTH - 1]
    assert before.champion_before is not None
    assert before.champion_before < 0.55
    deploys = [m for m in months[CHANGE_MONTH:CHANGE_MONTH + 2] if m.deployed]
    assert deploys, [m.reason for m in months[CHANGE_MONTH:]]
    first = deploys[0]
    assert first.challenger > first.champion_before + 0.05
    assert "concept change" in first.gate["evaluation"]["note"]
    assert not any(m.harmful for m in months)


def test_a_month_of_flipped_labels_does_not_get_a_worse_model_deployed(tmp_path):
    """Check a stationary stream whose sixth month has 30% of its labels flipped: no run from that
    month on deploys a model truly worse than the champion."""
    months = replay(Stream("label_noise", 200), tmp_path, months=CHANGE_MONTH + 2)
    for month in months[CHANGE_MONTH:]:
        assert not (month.deployed and month.challenger < month.champion_before), month
    assert months[-1].served > 0.83


def test_the_same_stream_twice_gives_the_same_decisions(abrupt, tmp_path):
    """Check reproducibility: the same data, parameters and registry state give the same
    challengers, scores, intervals and decisions (seeds come from the data and the cutoff)."""
    root, first = abrupt
    second = replay(Stream("abrupt", 200), tmp_path, months=CHANGE_MONTH + 2)
    assert [(m.status, m.reason, m.gate) for m in first] == \
        [(m.status, m.reason, m.gate) for m in second]
    assert [m.challenger for m in first] == [m.challenger for m in second]
    rows = Stream("abrupt", 200).true_rows(CHANGE_MONTH).drop(columns=[LABEL_COLUMN]).head(2000)
    for month in range(len(first)):
        model = Path("runs") / f"{month:02d}" / "challenger" / "model.skops"
        assert np.array_equal(load_model(root / model).predict_proba(rows),
                              load_model(tmp_path / model).predict_proba(rows))


def test_the_stages_in_one_process_decide_as_the_compiled_pipeline(tmp_path):
    """Check the simulation against the product: the same two months through `retrain run`
    (the compiled YAML under kfp.local) give the same statuses and the same gate statistics."""
    import json
    import subprocess
    import sys

    stream = Stream("stationary", 200, seed=3)
    simulated = replay(stream, tmp_path / "simulated", months=1)
    source = tmp_path / "cli" / "source"
    source.mkdir(parents=True)
    for month in (0, 1):
        frame = stream.initial() if month == 0 else stream.month(month)
        frame.to_csv(source / stream.file_name(month), index=False)
        completed = subprocess.run(
            [sys.executable, "-m", "app.cli", "run", "--json", "--source-uri", str(source),
             "--registry-uri", str(tmp_path / "cli" / "registry"), "--model-name", "stream",
             "--label-column", "label", "--timestamp-column", "event_time",
             "--cutoff", stream.cutoff(month),
             "--pipeline-root", str(tmp_path / "cli" / "root")],
            capture_output=True, text=True, timeout=300)
        assert completed.returncode == 0, completed.stderr
        record = json.loads(completed.stdout.strip().splitlines()[-1])
        assert record["status"] == simulated[month].status
        expected = simulated[month].gate
        assert {k: record["gate"][k] for k in expected} == expected
