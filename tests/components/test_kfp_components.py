"""The component bodies, called through ``python_func`` with real artifacts on tmp_path (what the
KFP executor does in a pod): each reads and writes exactly the artifacts its signature names."""

import json
import shutil

import pytest

from app import demo_data
from components.kfp_components import ARTIFACT_KINDS, STAGE_FUNCTIONS, interface, make_components
from components.outcomes import DeployResult, GateDecision, IngestOutcome, ValidateDecision
from components.registry import Registry
from components.runtime.inprocess import parameters, run_stages

COLUMNS = dict(label_column=demo_data.LABEL_COLUMN, timestamp_column=demo_data.TIMESTAMP_COLUMN)


@pytest.fixture(scope="module")
def stages():
    return make_components("kfp-retrain:test")


class ComponentCalls:
    """Runs each stage as KFP's executor would: its component's ``python_func`` with real
    artifacts at the paths the walk gives; keeps every artifact to check its metadata."""

    def __init__(self, stages):
        self.stages, self.artifacts = stages, {}

    def artifact(self, kind: str, name: str, path: str):
        return self.artifacts.setdefault(name, ARTIFACT_KINDS[kind](name=name, uri=path,
                                                                    metadata={}))

    def __call__(self, contract, inputs, paths):
        arguments = dict(inputs)
        for name, kind in contract.reads.items():
            if name in inputs:
                arguments[name] = self.artifact(kind, name, inputs[name])
        for name, kind in {**contract.writes, **contract.logs}.items():
            arguments[name] = self.artifact(kind, name, paths[name])
        return getattr(self.stages, contract.name).python_func(**arguments)


@pytest.fixture(scope="module")
def chain(tmp_path_factory, demo_folder, stages):
    """One cold-start run through every component body, walked along the pipeline's graph,
    each output artifact a real file."""
    root = tmp_path_factory.mktemp("components")
    source = root / "source"
    source.mkdir()
    shutil.copy(demo_folder / "customers_2025-01_initial.csv", source)
    calls = ComponentCalls(stages)
    run = run_stages(parameters(
        source_uri=str(source), registry_uri=str(root / "registry"), model_name="customers",
        cutoff=demo_data.demo_cutoffs()[0], min_rows=100, epochs=3, **COLUMNS),
        root / "work", "run-1", infra_validation=True, quiet=False, call=calls)
    return {"artifacts": calls.artifacts, "root": root / "work", "registry": root / "registry",
            "run": run, **run.outcomes}


def test_ingest_returns_its_named_outcome_and_writes_its_datasets(chain):
    """Check ingest's outputs: the outcome, the row count, no champion; both Parquet files."""
    outcome, new_rows, champion_version = chain["ingest"]
    assert (outcome, new_rows, champion_version) == (IngestOutcome.NEW_DATA, 1000, "")
    assert chain["artifacts"]["new_data"].metadata["rows"] == 1000
    report = json.loads((chain["root"] / "ingest_report").read_text())
    assert report["new_rows"] == 1000
    assert report["history_read"] == "all"


def test_validate_passes_the_schema_it_checked_against(chain):
    """Check validate's decision and that the schema artifact holds the columns it checked."""
    decision, summary = chain["validate"]
    assert decision == ValidateDecision.RETRAIN
    assert summary.startswith("ok: 1000 new rows")
    schema = json.loads((chain["root"] / "schema").read_text())
    assert schema["label"] == {"name": "will_buy", "task": "classification", "classes": [0, 1],
                               "task_reason": "task=auto: the label 'will_buy' holds 2 distinct "
                                              "whole numbers (at most 20): classification"}
    assert len(schema["columns"]) == 8
    assert chain["artifacts"]["validation_report"].metadata == {"errors": 0, "warnings": 0,
                                                               "drift": []}
    assert "<!doctype html>" in (chain["root"] / "drift_report").read_text()


def test_preprocess_counts_add_up(chain):
    """Check that a run this small holds no row out (retrain cross-fits every one), splits the
    rows 80/20 into training and selection rows, and that the seed comes with the counts."""
    counts, seed = chain["preprocess"]
    assert counts["train_rows"] + counts["validation_rows"] == 1000
    assert counts["holdout_rows"] == 0
    assert counts["validation_rows"] == 200
    for name, key in (("train_data", "train_rows"), ("validation_data", "validation_rows"),
                      ("evaluation_data", "holdout_rows")):
        assert chain["artifacts"][name].metadata["rows"] == counts[key]
    assert seed == counts["seed"]
    assert isinstance(seed, int)


def test_retrain_writes_the_model_folder_and_logs_the_trace(chain):
    """Check the challenger folder and one metric per epoch and trace column."""
    folder = chain["root"] / "challenger"
    assert {p.name for p in folder.iterdir()} == {"model.skops", "training.json",
                                                  "schema.json", "statistics.json"}
    assert chain["artifacts"]["challenger"].metadata["framework"] == "scikit-learn"
    logged = chain["artifacts"]["training_metrics"].metadata
    assert {f"epoch_{e}_validation_accuracy" for e in (1, 2, 3)} <= set(logged)
    assert "# Training trace:" in (chain["root"] / "training_trace").read_text()


def test_evaluate_logs_metrics_and_decides_a_cold_start(chain):
    """Check evaluate's decision, its logged metrics and its confusion matrix, over every new
    row: the holdout rows and the training rows with their cross-fitted predictions."""
    decision, reason = chain["evaluate"]
    assert decision == GateDecision.DEPLOY
    assert reason.startswith("cold start")
    assert chain["artifacts"]["metrics"].metadata["challenger_accuracy"] >= 0.8
    matrix = chain["artifacts"]["classification_metrics"].metadata["confusionMatrix"]
    counts = chain["preprocess"][0]
    assert sum(sum(row["row"]) for row in matrix["rows"]) == (
        counts["holdout_rows"] + counts["train_rows"] + counts["validation_rows"])


def test_deploy_promotes_v0001(chain):
    """Check that deploy publishes v0001, checks it serves evaluate's predictions, moves the
    pointer, records the run and the pointer's history."""
    sample = json.loads((chain["root"] / "prediction_sample").read_text())
    assert len(sample["predict"]) == 50
    assert len(sample["request"]["inputs"]) == 8
    assert tuple(chain["deploy"]) == (DeployResult.DEPLOYED, chain["evaluate"][1], "v0001")
    model = chain["registry"] / "customers"
    assert json.loads((model / "champion.json").read_text())["version"] == "v0001"
    record = json.loads((model / "runs" / "run-1.json").read_text())
    assert (record["status"], record["challenger"]["version"]) == ("deployed", "v0001")
    metadata = json.loads((model / "versions" / "v0001" / "metadata.json").read_text())
    assert (metadata["label_column"], metadata["timestamp_column"]) == ("will_buy", "event_time")
    [move] = Registry(str(chain["registry"]), "customers").history()
    assert (move["action"], move["from"], move["to"], move["run_id"]) == (
        "deploy", None, "v0001", "run-1")


@pytest.mark.parametrize("function", STAGE_FUNCTIONS, ids=lambda f: f.__name__)
def test_every_input_and_output_is_described(function):
    """Check that each component's docstring describes each of its inputs and outputs."""
    inputs, outputs = interface(function)
    for name in inputs + outputs:
        assert f"\n    {name}: " in function.__doc__, name


def test_a_stage_process_hands_its_step_over_without_importing_the_data_libraries():
    """Check that what a stage's own process imports to run its component (under kfp.local, a
    new interpreter per stage, which then hands the step to the warm worker) pulls in neither
    numpy, pandas, scipy nor scikit-learn: each would cost every stage that import again."""
    import os
    import subprocess
    import sys

    heavy = ("numpy", "pandas", "scipy", "sklearn", "pyarrow")
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys; import components.kfp_components; "
         f"print(','.join(m for m in {heavy!r} if m in sys.modules))"],
        env={**os.environ, "_KFP_RUNTIME": "true"}, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == ""
