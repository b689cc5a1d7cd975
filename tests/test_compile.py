"""The compiled spec is the product: it parses strictly, and the committed YAML is current."""

import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from components.image import DEFAULT_IMAGE
from pipelines.retrain_pipeline import COMPILED_PIPELINE, compile_pipeline


def load_spec(path) -> pipeline_spec_pb2.PipelineSpec:
    """Parse compiled YAML into the PipelineSpec protobuf, refusing unknown fields."""
    with open(path) as handle:
        documents = list(yaml.safe_load_all(handle))
    assert len(documents) == 1
    return json_format.ParseDict(documents[0], pipeline_spec_pb2.PipelineSpec(),
                                 ignore_unknown_fields=False)


def test_committed_yaml_is_up_to_date(tmp_path, monkeypatch):
    """Check that compiling now gives exactly the committed YAML (run `make compile` if not)."""
    monkeypatch.delenv("RETRAIN_IMAGE", raising=False)
    fresh = compile_pipeline(tmp_path / "pipeline.yaml")
    assert fresh.read_text() == COMPILED_PIPELINE.read_text(), (
        "pipelines/retrain_pipeline.yaml is stale: run `make compile` and commit it")


def test_compile_is_deterministic(tmp_path):
    """Check that two compiles give the same bytes."""
    first = compile_pipeline(tmp_path / "a.yaml").read_bytes()
    assert compile_pipeline(tmp_path / "b.yaml").read_bytes() == first


def test_spec_parses_strictly_with_the_expected_shape():
    """Check the stages, the project image, parameter descriptions and ingest's caching."""
    spec = load_spec(COMPILED_PIPELINE)
    executors = spec.deployment_spec["executors"]
    assert {name.removeprefix("exec-") for name in executors} >= {
        "ingest", "validate", "preprocess", "retrain", "evaluate", "deploy", "alert",
        "alert-on-failure"}
    images = {executor["container"]["image"] for executor in executors.values()}
    assert images == {DEFAULT_IMAGE}
    params = spec.root.input_definitions.parameters
    assert all(params[name].description for name in params)
    assert params["threshold"].default_value.number_value == 0.8
    exit_dag = spec.components["comp-exit-handler-1"].dag
    assert exit_dag.tasks["ingest"].caching_options.enable_cache is False
    commands = " ".join(" ".join(e["container"]["command"]) for e in executors.values())
    assert "pip install" not in commands  # everything comes from the project image
