"""End to end: a feature that grows every month (a budget, a price) keeps the pipeline
retraining. The ranges the champion saw are statistics, not a contract: values beyond them are
drift, never invalid-data by themselves; a user's schema file is a contract whose breach is."""

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app import demo_data
from tests.helpers import outcome, retrain_cli

pytestmark = pytest.mark.slow
MONTHS = 3


def _month(index: int, rows: int = 240) -> pd.DataFrame:
    """Demo customers whose income grows 40% a month: every month is above the last one's
    range."""
    frame = demo_data.customers(rows, demo_data.month_start(index),
                                demo_data.month_start(index + 1), 0.0,
                                np.random.default_rng(index))
    frame["income"] = frame["income"] * 1.4 ** index + 200_000 * index
    return frame


@pytest.fixture(scope="module")
def grown(tmp_path_factory):
    """The bootstrap on a quarter, then three months each beyond the range seen before."""
    root = tmp_path_factory.mktemp("growth")
    source = root / "source"
    source.mkdir()
    pd.concat([_month(0, 400), _month(1, 400), _month(2, 400)]).to_csv(
        source / "initial.csv", index=False)
    results = [outcome(retrain_cli(source, root / "registry", root, demo_data.demo_cutoffs()[0],
                                   "--threshold", "0.6"))]
    for month in range(1, MONTHS + 1):
        _month(2 + month).to_csv(source / f"month_{month}.csv", index=False)
        results.append(outcome(retrain_cli(source, root / "registry", root,
                                           demo_data.demo_cutoffs()[month], "--threshold",
                                           "0.6")))
    return {"root": root, "source": source, "results": results}


def test_a_growing_feature_keeps_retraining(grown):
    """Check that every month's run validates, retrains and is decided by the gate (deployed
    or rejected), with the growth reported as drift in income, never invalid-data."""
    for result in grown["results"][1:]:
        assert result["status"] in ("deployed", "rejected"), result["reason"]
        assert "income" in result["drift"]
        [finding] = [f for f in result["findings"] if f["column"] == "income"]
        assert finding["check"] == "beyond_training_range"
        assert finding["severity"] == "warning"
        assert "outside the range seen in training" in finding["problem"]


def test_a_users_contract_is_enforced(grown, tmp_path):
    """Check that the same growth breaks a contract the user wrote (`retrain schema` on the
    first quarter, its observed income range copied into min and max): the next month is
    invalid-data, naming the column."""
    from app.cli import main

    schema_path = tmp_path / "schema.json"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["schema", "--source-uri", str(grown["source"] / "initial.csv"),
                     "--label-column", demo_data.LABEL_COLUMN, "--timestamp-column",
                     demo_data.TIMESTAMP_COLUMN]) == 0
    contract = json.loads(out.getvalue())
    income = next(c for c in contract["columns"] if c["name"] == "income")
    income.update(min=income["observed"]["min"], max=income["observed"]["max"])
    schema_path.write_text(json.dumps(contract))
    shutil.copytree(grown["source"], tmp_path / "source")
    shutil.copytree(grown["root"] / "registry", tmp_path / "registry")
    _month(3 + MONTHS).to_csv(tmp_path / "source" / "month_next.csv", index=False)
    result = outcome(retrain_cli(tmp_path / "source", tmp_path / "registry", tmp_path,
                                 demo_data.demo_cutoffs()[MONTHS + 1], "--schema-uri",
                                 str(schema_path)))
    assert result["status"] == "invalid-data"
    assert "column 'income'" in result["reason"]
    assert "outside [" in result["reason"]


def test_every_run_leaves_the_models_life_page_in_its_artifacts(grown):
    """Check that the exit handler wrote the model's life page as the run's HTML artifact (what
    the KFP UI shows), every run so far in it, this one included."""
    last = grown["results"][-1]
    text = (Path(last["artifacts"]) / "alert-on-failure" / "model_report").read_text()
    assert text.startswith("<!doctype html>")
    for result in grown["results"]:
        assert f"id='run-{result['run_id']}' data-status='{result['status']}'" in text
