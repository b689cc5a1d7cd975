"""The compiled spec is the product: it parses strictly, the committed YAML is current, and what
it is compiled for (image, cluster options) comes from arguments only."""

import json

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from components.params import PARAMETERS
from pipelines.cluster import DEFAULT_IMAGE, ClusterOptions
from pipelines.retrain_pipeline import COMPILED_PIPELINE, compile_pipeline

KFP_TYPES = {str: "STRING", int: "NUMBER_INTEGER", float: "NUMBER_DOUBLE", dict: "STRUCT"}
SECRET_VALUE = "https://hooks.slack.example/services/T000/B000/very-secret-path"


def load_spec(path) -> pipeline_spec_pb2.PipelineSpec:
    """Parse compiled YAML into the PipelineSpec protobuf, refusing unknown fields."""
    with open(path) as handle:
        documents = list(yaml.safe_load_all(handle))
    assert len(documents) == 1
    return json_format.ParseDict(documents[0], pipeline_spec_pb2.PipelineSpec(),
                                 ignore_unknown_fields=False)


def _tasks(spec) -> dict:
    """Every task of every DAG in the spec, by task name (nested conditions included)."""
    tasks = {}
    for component in [spec.root, *spec.components.values()]:
        if component.HasField("dag"):
            tasks.update(component.dag.tasks)
    return tasks


def test_committed_yaml_is_up_to_date(tmp_path):
    """Check that compiling now gives exactly the committed YAML (run `make compile` if not)."""
    fresh = compile_pipeline(tmp_path / "pipeline.yaml")
    assert fresh.read_text() == COMPILED_PIPELINE.read_text(), (
        "pipelines/retrain_pipeline.yaml is stale: run `make compile` and commit it")


def test_compile_is_deterministic(tmp_path):
    """Check that two compiles give the same bytes."""
    first = compile_pipeline(tmp_path / "a.yaml").read_bytes()
    assert compile_pipeline(tmp_path / "b.yaml").read_bytes() == first


def test_the_environment_is_not_an_input(tmp_path, monkeypatch):
    """Check that the image comes from the argument, whatever the environment says."""
    monkeypatch.setenv("RETRAIN_IMAGE", "elsewhere/other:9.9.9")
    text = compile_pipeline(tmp_path / "a.yaml", image="reg.io/team/kfp-retrain:1.2.3").read_text()
    assert "reg.io/team/kfp-retrain:1.2.3" in text
    assert "elsewhere" not in text
    assert compile_pipeline(tmp_path / "b.yaml").read_text() == COMPILED_PIPELINE.read_text()


def test_spec_parses_strictly_with_the_expected_shape():
    """Check the stages, the project image, parameter descriptions and ingest's caching."""
    spec = load_spec(COMPILED_PIPELINE)
    executors = spec.deployment_spec["executors"]
    assert {name.removeprefix("exec-") for name in executors} >= {
        "ingest", "validate", "preprocess", "retrain", "evaluate", "deploy", "alert",
        "alert-on-failure"}
    images = {executor["container"]["image"] for executor in executors.values()}
    assert images == {DEFAULT_IMAGE}
    exit_dag = spec.components["comp-exit-handler-1"].dag
    assert exit_dag.tasks["ingest"].caching_options.enable_cache is False
    commands = " ".join(" ".join(e["container"]["command"]) for e in executors.values())
    assert "pip install" not in commands  # everything comes from the project image


def test_root_parameters_are_the_parameter_table():
    """Check the pipeline's inputs: the table's names, types, defaults and descriptions."""
    root = load_spec(COMPILED_PIPELINE).root.input_definitions.parameters
    assert set(root) == {p.name for p in PARAMETERS}
    for p in PARAMETERS:
        assert pipeline_spec_pb2.ParameterType.ParameterTypeEnum.Name(
            root[p.name].parameter_type) == KFP_TYPES[p.kind]
        assert root[p.name].description == p.description
        if not p.required:
            assert json_format.MessageToDict(root[p.name].default_value) == p.default
    assert root["threshold"].default_value.number_value == -1.0  # the metric's default


def test_every_component_input_and_output_is_described():
    """Check that the KFP UI shows a description on every task's every input and output."""
    spec = load_spec(COMPILED_PIPELINE)
    undescribed = []
    for name, component in spec.components.items():
        if not name.startswith("comp-") or component.HasField("dag"):
            continue
        for definitions in (component.input_definitions, component.output_definitions):
            for kind in (definitions.parameters, definitions.artifacts):
                undescribed += [f"{name}.{key}" for key, value in kind.items()
                                if not value.description]
    assert undescribed == []


def test_table_parameters_reach_components_with_the_table_type():
    """Check that a component input named like a pipeline parameter has the parameter's type."""
    spec = load_spec(COMPILED_PIPELINE)
    kinds = {p.name: KFP_TYPES[p.kind] for p in PARAMETERS}
    for component in spec.components.values():
        for key, value in component.input_definitions.parameters.items():
            if key in kinds:
                assert pipeline_spec_pb2.ParameterType.ParameterTypeEnum.Name(
                    value.parameter_type) == kinds[key], key


def test_conditions_compare_named_outcomes():
    """Check that branches test named outputs against the outcome vocabulary, never `Output`."""
    conditions = [task.trigger_policy.condition
                  for task in _tasks(load_spec(COMPILED_PIPELINE)).values()
                  if task.trigger_policy.condition]
    assert conditions
    assert not any("Output" in line for line in conditions)
    for outcome in ("'new-data'", "'retrain'", "'invalid-data'", "'deploy'", "'rejected'"):
        assert any(outcome in line for line in conditions), outcome


def test_ingest_and_deploy_retry_transient_failures():
    """Check the retry policy of the committed spec: ingest and deploy only."""
    tasks = _tasks(load_spec(COMPILED_PIPELINE))
    retried = {name for name, task in tasks.items() if task.retry_policy.max_retry_count}
    assert retried == {"ingest", "deploy"}
    assert tasks["deploy"].retry_policy.max_retry_count == 3
    assert tasks["deploy"].retry_policy.backoff_duration.seconds == 30


def test_cluster_options_land_in_the_spec_and_no_secret_value_does(tmp_path, monkeypatch):
    """Check image, resources, secret references and retries in a cluster compile; the secret
    value known to the compiling process appears nowhere in the YAML."""
    monkeypatch.setenv("RETRAIN_ALERT_WEBHOOK_URL", SECRET_VALUE)
    options = ClusterOptions(webhook_secret="retrain-alerts", gcs_secret="gcs-key",
                             resources={"retrain": {"cpu": "2", "memory": "4Gi"},
                                        "default": {"cpu": "500m", "memory": "1Gi"}})
    output = compile_pipeline(tmp_path / "cluster.yaml",
                              image="europe-docker.pkg.dev/acme/ml/kfp-retrain:1.4.2",
                              options=options)
    text = output.read_text()
    assert SECRET_VALUE not in text
    assert "very-secret" not in text
    spec_doc, platform_doc = yaml.safe_load_all(text)
    spec = json_format.ParseDict(spec_doc, pipeline_spec_pb2.PipelineSpec())
    platform = json_format.ParseDict(platform_doc, pipeline_spec_pb2.PlatformSpec())
    executors = spec.deployment_spec["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {
        "europe-docker.pkg.dev/acme/ml/kfp-retrain:1.4.2"}
    retrain = executors["exec-retrain"]["container"]["resources"]
    assert (retrain["resourceCpuLimit"], retrain["resourceMemoryLimit"]) == ("2", "4Gi")
    assert (retrain["resourceCpuRequest"], retrain["resourceMemoryRequest"]) == ("2", "4Gi")
    assert executors["exec-ingest"]["container"]["resources"]["resourceCpuLimit"] == "500m"
    assert {"name": "GOOGLE_APPLICATION_CREDENTIALS", "value": "/var/secrets/gcs/key.json"} in \
        executors["exec-deploy"]["container"]["env"]
    configs = json_format.MessageToDict(platform.platforms["kubernetes"].deployment_spec)["executors"]
    alert = configs["exec-alert"]
    assert alert["secretAsEnv"][0]["secretName"] == "retrain-alerts"
    assert alert["secretAsEnv"][0]["keyToEnv"] == [
        {"secretKey": "webhook-url", "envVar": "RETRAIN_ALERT_WEBHOOK_URL"}]
    assert "secretAsEnv" not in configs["exec-retrain"]  # only alerts see the webhook
    assert configs["exec-retrain"]["secretAsVolume"][0]["secretName"] == "gcs-key"
    assert _tasks(spec)["ingest"].caching_options.enable_cache is False


def test_resources_for_an_unknown_stage_are_refused():
    """Check that a misspelt stage in the resources is refused, naming the stages."""
    from components.params import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="names stage 'retrian'; use one of default, "
                                                    "serving, ingest"):
        ClusterOptions(resources={"retrian": {"cpu": "1", "memory": "1Gi"}})


def test_local_runs_drop_the_cluster_retry_policy():
    """Check that the spec run by kfp.local has no retry policy left, and nothing else lost."""
    from app.local_runner import load_pipeline, parse_spec, without_retries

    text = COMPILED_PIPELINE.read_text()
    documents = parse_spec(text)
    stripped = without_retries(documents)
    assert "retryPolicy" in text
    assert "retryPolicy" not in json.dumps(stripped)
    assert stripped[0]["deploymentSpec"] == yaml.safe_load(text)["deploymentSpec"]
    assert stripped[1:] == documents[1:]
    pipeline = load_pipeline(stripped, text)
    assert "retryPolicy" not in json.dumps(json_format.MessageToDict(pipeline.pipeline_spec))
    assert pipeline.pipeline_spec.root == load_spec(COMPILED_PIPELINE).root
