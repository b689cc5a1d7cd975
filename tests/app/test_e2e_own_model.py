"""End to end: a team's own estimator. The LightGBM example (``examples/lightgbm_model``, an
installed distribution) goes through the compiled YAML under kfp.local over several months, for
a class and for a number; everything else (validation, the gate, the registry, serving) works
for it unchanged, and a factory that cannot make a model is refused as a parameter."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app import demo_data
from tests.helpers import install_package

pytestmark = pytest.mark.slow
CUTOFFS = demo_data.demo_cutoffs()
FACTORY = "lightgbm_model:make_model"
TASKS = {"classification": ("customers", demo_data.LABEL_COLUMN),
         "regression": ("spend", demo_data.REGRESSION_LABEL_COLUMN)}


def retrain(root: Path, task: str, cutoff: str, *extra: str, env=None):
    """``retrain run --json`` with the LightGBM factory on the demo data of ``task``."""
    import os

    name, label = TASKS[task]
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "run", "--json", "--source-uri", str(root / "source"),
         "--registry-uri", str(root / "registry"), "--model-name", name,
         "--label-column", label, "--timestamp-column", demo_data.TIMESTAMP_COLUMN,
         "--cutoff", cutoff, "--pipeline-root", str(root / "pipeline_root"),
         "--model-type", FACTORY, "--model-config", '{"num_leaves": 15}', *extra],
        capture_output=True, text=True, timeout=300, env={**os.environ, **(env or {})})


def record_of(completed) -> dict:
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _months(tmp_path_factory, task: str, runs: int = 2):
    root = tmp_path_factory.mktemp(f"lightgbm-{task}")
    demo = root / "demo"
    demo_data.write_demo_data(demo, months=runs, task=task)
    (root / "source").mkdir()
    records = []
    for month, path in enumerate(sorted(demo.glob("*.csv"))[:runs]):
        (root / "source" / path.name).write_bytes(path.read_bytes())
        records.append(record_of(retrain(root, task, CUTOFFS[month])))
    return root, records


@pytest.fixture(scope="module", params=list(TASKS))
def lightgbm(request, tmp_path_factory):
    """The cold start and one month with LightGBM, for a class and for a number: the second run
    has a champion to fine-tune and to judge against."""
    return request.param, *_months(tmp_path_factory, request.param)


def test_a_teams_own_estimator_trains_is_gated_and_registered(lightgbm):
    """Check that the factory's model is the challenger every month, judged by the gate as a
    built-in would be, and that its version records the factory, its config and its library."""
    task, root, records = lightgbm
    name, _ = TASKS[task]
    assert records[0]["status"] == "deployed", records[0]["reason"]
    metric = "rmse" if task == "regression" else "accuracy"
    for record in records:
        assert record["challenger"]["model_type"] == FACTORY
        assert record["metric"] == metric
    for record in records[1:]:
        assert record["status"] in ("deployed", "rejected")
        assert record["reason"].startswith(f"challenger {metric} "), record["reason"]
    metadata = json.loads((root / "registry" / name / "versions" / "v0001" /
                           "metadata.json").read_text())
    assert (metadata["model_type"], metadata["task"]) == (FACTORY, task)
    assert metadata["model_config"] == {"num_leaves": 15}
    assert metadata["libraries"]["lightgbm-model"] == "0.1.0"


def test_the_factorys_model_is_fine_tuned_through_its_hook(lightgbm):
    """Check that auto fits a fine-tune of the LightGBM champion (its continue_fit hook) among
    the candidates once there is a champion."""
    task, root, _ = lightgbm
    name, _ = TASKS[task]
    [run] = sorted((root / "pipeline_root").glob("retrain-pipeline-*"))[-1:]
    training = json.loads((run / "retrain" / "challenger" / "training.json").read_text())
    finetune = next(c for c in training["candidates"] if c["strategy"] == "finetune")
    assert finetune["status"] == "fitted", finetune["note"]


def test_retrain_serve_answers_with_the_registry_models_own_predictions(lightgbm):
    """Check that `retrain serve` serves the LightGBM champion, trusted by its factory's
    declared types, and answers tritonclient with the registry model's own predictions."""
    import tritonclient.http as http

    from components.registry import Registry
    from tests.components.serving.helpers import start_server

    task, root, _ = lightgbm
    name, label = TASKS[task]
    registry = Registry(str(root / "registry"), name)
    version = registry.champion().version
    model, kinds = registry.load_model(version), registry.metadata(version).feature_kinds
    rows = pd.read_csv(sorted((root / "source").glob("*.csv"))[-1]).head(20)
    process, url = start_server(registry, root)
    try:
        client = http.InferenceServerClient(url=url.removeprefix("http://"))
        inputs = []
        for column, kind in kinds.items():
            values = (np.array([str(v).encode() for v in rows[column].fillna("")], dtype=object)
                      if kind == "categorical" else rows[column].to_numpy(dtype=float))
            tensor = http.InferInput(column, [len(rows)], "BYTES" if kind == "categorical"
                                     else "FP64")
            tensor.set_data_from_numpy(values, binary_data=True)
            inputs.append(tensor)
        result = client.infer(name, inputs)
    finally:
        process.terminate()
        process.wait(timeout=10)
    frame = rows[list(kinds)].copy()
    for column, kind in kinds.items():
        if kind == "categorical":
            frame[column] = frame[column].fillna("").astype(str).astype(object)
    expected = model.predict(frame)
    served = result.as_numpy("predict")
    if task == "regression":
        np.testing.assert_allclose(served, expected, rtol=1e-12)
    else:
        assert served.tolist() == expected.tolist()


RAISING = '''
def make(*, task, feature_kinds, **config):
    raise RuntimeError("the licence server is down")
'''


def test_a_factory_that_raises_fails_the_run_fast_as_a_parameter(tmp_path, monkeypatch):
    """Check that a factory that raises fails retrain before any fit with the parameter
    message naming the path and the error, and leaves no version."""
    install_package(tmp_path / "site", "team_raising", RAISING, monkeypatch)
    demo_data.write_demo_data(tmp_path / "source", months=0)
    completed = subprocess.run(
        [sys.executable, "-m", "app.cli", "run", "--json", "--source-uri",
         str(tmp_path / "source"), "--registry-uri", str(tmp_path / "registry"),
         "--model-name", "customers", "--label-column", demo_data.LABEL_COLUMN,
         "--timestamp-column", demo_data.TIMESTAMP_COLUMN, "--cutoff", CUTOFFS[0],
         "--pipeline-root", str(tmp_path / "root"), "--model-type", "team_raising:make"],
        capture_output=True, text=True, timeout=300)
    assert completed.returncode == 1, completed.stderr
    record = json.loads(completed.stdout.strip().splitlines()[-1])
    assert (record["status"], record["stage"]) == ("failed", "retrain")
    assert "InvalidParameterError" in record["cause"]
    assert ("The 'model_type' parameter of the retrain stage must be the import path of a "
            "factory") in record["cause"]
    assert "calling it raised RuntimeError: the licence server is down" in record["cause"]
    assert not (tmp_path / "registry" / "customers" / "versions").exists()


def test_a_factory_path_that_does_not_import_exits_2_before_running(tmp_path):
    """Check that the CLI refuses a factory path that does not import, naming it, exit 2."""
    completed = retrain(tmp_path, "classification", CUTOFFS[0], "--model-type",
                        "lightgbm_modle:make_model")
    assert completed.returncode == 2
    assert "The 'model_type' parameter of retrain run must be" in completed.stderr
    assert "Got 'lightgbm_modle:make_model' instead: 'lightgbm_modle' does not import" in \
        completed.stderr
    assert not (tmp_path / "registry").exists()
