"""The component bodies, called through ``python_func`` with real artifacts on tmp_path (what the
KFP executor does in a pod): each reads and writes exactly the artifacts its signature names."""

import json
import shutil

import pytest
from kfp.dsl import HTML, Artifact, ClassificationMetrics, Dataset, Markdown, Metrics, Model

from app import demo_data
from components.kfp_components import STAGE_FUNCTIONS, interface, make_components
from components.outcomes import DeployResult, GateDecision, IngestOutcome, ValidateDecision
from components.registry import Registry

COLUMNS = dict(label_column=demo_data.LABEL_COLUMN, timestamp_column=demo_data.TIMESTAMP_COLUMN)


@pytest.fixture(scope="module")
def stages():
    return make_components("kfp-retrain:test")


def _artifact(kind, folder, name):
    return kind(name=name, uri=str(folder / name), metadata={})


@pytest.fixture(scope="module")
def chain(tmp_path_factory, demo_folder, stages):
    """One cold-start run through every component body, each output artifact a real file."""
    root = tmp_path_factory.mktemp("components")
    source = root / "source"
    source.mkdir()
    shutil.copy(demo_folder / "customers_2025-01_initial.csv", source)
    common = dict(registry_uri=str(root / "registry"), model_name="customers")
    a = {name: _artifact(kind, root, name) for name, kind in (
        ("new_data", Dataset), ("history", Dataset), ("ingest_report", Artifact),
        ("validation_report", Artifact), ("report", Markdown), ("drift_report", HTML),
        ("schema", Artifact), ("train_data", Dataset), ("validation_data", Dataset),
        ("evaluation_data", Dataset),
        ("clean_history", Dataset), ("challenger", Model), ("training_metrics", Metrics),
        ("training_trace", Markdown), ("metrics", Metrics),
        ("classification_metrics", ClassificationMetrics), ("comparison", Markdown),
        ("decision_record", Artifact), ("prediction_sample", Artifact))}
    out = {"artifacts": a, "root": root}
    out["ingest"] = stages.ingest.python_func(
        source_uri=str(source), cutoff=demo_data.demo_cutoffs()[0], scheduled_time="",
        run_id="run-1", strategy="auto", window_days=90, new_data=a["new_data"],
        history=a["history"], ingest_report=a["ingest_report"],
        timestamp_column=COLUMNS["timestamp_column"], **common)
    out["validate"] = stages.validate.python_func(
        new_data=a["new_data"], ingest_report=a["ingest_report"], champion_version="",
        min_rows=100, retrain_when="always", schema_uri="", validation_thresholds={},
        run_id="run-1", validation_report=a["validation_report"], report=a["report"],
        drift_report=a["drift_report"], schema=a["schema"], **COLUMNS, **common)
    out["preprocess"] = stages.preprocess.python_func(
        new_data=a["new_data"], history=a["history"], schema=a["schema"],
        ingest_report=a["ingest_report"], run_id="run-1", validation_fraction=0.2,
        holdout_fraction=0.2, train_data=a["train_data"], validation_data=a["validation_data"],
        evaluation_data=a["evaluation_data"], clean_history=a["clean_history"], **COLUMNS,
        **common)
    stages.retrain.python_func(
        train_data=a["train_data"], validation_data=a["validation_data"],
        clean_history=a["clean_history"], schema=a["schema"], champion_version="",
        strategy="auto", model_type="hgb", metric="accuracy", epochs=3, window_days=90,
        window_files=3, decision_threshold="0.5", seed=out["preprocess"][1], run_id="run-1",
        challenger=a["challenger"], training_metrics=a["training_metrics"],
        training_trace=a["training_trace"], **COLUMNS, **common)
    out["evaluate"] = stages.evaluate.python_func(
        challenger=a["challenger"], evaluation_data=a["evaluation_data"],
        ingest_report=a["ingest_report"], validation_report=a["validation_report"],
        preprocess_counts=out["preprocess"][0], champion_version="", strategy="auto",
        model_type="hgb", metric="accuracy", threshold=0.8, min_improvement=0.0,
        confidence=0.95, min_evaluation_rows=300, max_evaluation_rows=5000, run_id="run-1",
        metrics=a["metrics"], classification_metrics=a["classification_metrics"],
        comparison=a["comparison"], decision_record=a["decision_record"],
        prediction_sample=a["prediction_sample"], **COLUMNS, **common)
    out["deploy"] = stages.deploy.python_func(
        challenger=a["challenger"], decision_record=a["decision_record"],
        prediction_sample=a["prediction_sample"], evaluation_data=a["evaluation_data"],
        max_evaluation_rows=5000, run_id="run-1", serving_namespace="",
        canary_traffic_percent=100, serving_timeout_seconds=600, serving_image="unused:1",
        serving_service_account="", serving_resources="", **COLUMNS, **common)
    return out


def test_ingest_returns_its_named_outcome_and_writes_its_datasets(chain):
    """Check ingest's outputs: the outcome, the row count, no champion; both Parquet files."""
    outcome, new_rows, champion_version = chain["ingest"]
    assert (outcome, new_rows, champion_version) == (IngestOutcome.NEW_DATA, 1000, "")
    assert chain["artifacts"]["new_data"].metadata["rows"] == 1000
    report = json.loads((chain["root"] / "ingest_report").read_text())
    assert report["new_rows"] == 1000 and report["history_read"] == "all"


def test_validate_passes_the_schema_it_checked_against(chain):
    """Check validate's decision and that the schema artifact holds the columns it checked."""
    decision, summary = chain["validate"]
    assert decision == ValidateDecision.RETRAIN and summary.startswith("ok: 1000 new rows")
    schema = json.loads((chain["root"] / "schema").read_text())
    assert schema["label"] == {"name": "will_buy", "classes": [0, 1]}
    assert len(schema["columns"]) == 8
    assert chain["artifacts"]["validation_report"].metadata == {"errors": 0, "warnings": 0,
                                                               "drift": []}
    assert "<!doctype html>" in (chain["root"] / "drift_report").read_text()


def test_preprocess_counts_add_up(chain):
    """Check that the new rows are split into holdout (about 20%, never trained on), then the
    rest 80/20 into training and selection rows, and that the seed comes with the counts."""
    counts, seed = chain["preprocess"]
    assert counts["train_rows"] + counts["validation_rows"] + counts["holdout_rows"] == 1000
    assert 160 <= counts["holdout_rows"] <= 240
    assert counts["validation_rows"] == round(0.2 * (1000 - counts["holdout_rows"]))
    for name, key in (("train_data", "train_rows"), ("validation_data", "validation_rows"),
                      ("evaluation_data", "holdout_rows")):
        assert chain["artifacts"][name].metadata["rows"] == counts[key]
    assert seed == counts["seed"] and isinstance(seed, int)


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
    """Check evaluate's decision, its logged metrics and its confusion matrix."""
    decision, reason = chain["evaluate"]
    assert decision == GateDecision.DEPLOY and reason.startswith("cold start")
    assert chain["artifacts"]["metrics"].metadata["challenger_accuracy"] >= 0.8
    matrix = chain["artifacts"]["classification_metrics"].metadata["confusionMatrix"]
    assert sum(sum(row["row"]) for row in matrix["rows"]) == chain["preprocess"][0][
        "holdout_rows"]


def test_deploy_promotes_v0001(chain):
    """Check that deploy publishes v0001, checks it serves evaluate's predictions, moves the
    pointer, records the run and the pointer's history."""
    sample = json.loads((chain["root"] / "prediction_sample").read_text())
    assert len(sample["predict"]) == 50 and len(sample["request"]["inputs"]) == 8
    assert tuple(chain["deploy"]) == (DeployResult.DEPLOYED, chain["evaluate"][1], "v0001")
    model = chain["root"] / "registry" / "customers"
    assert json.loads((model / "champion.json").read_text())["version"] == "v0001"
    record = json.loads((model / "runs" / "run-1.json").read_text())
    assert (record["status"], record["challenger"]["version"]) == ("deployed", "v0001")
    metadata = json.loads((model / "versions" / "v0001" / "metadata.json").read_text())
    assert (metadata["label_column"], metadata["timestamp_column"]) == ("will_buy", "event_time")
    [move] = Registry(str(chain["root"] / "registry"), "customers").history()
    assert (move["action"], move["from"], move["to"], move["run_id"]) == (
        "deploy", None, "v0001", "run-1")


@pytest.mark.parametrize("function", STAGE_FUNCTIONS, ids=lambda f: f.__name__)
def test_every_input_and_output_is_described(function):
    """Check that each component's docstring describes each of its inputs and outputs."""
    inputs, outputs = interface(function)
    for name in inputs + outputs:
        assert f"\n    {name}: " in function.__doc__, name
