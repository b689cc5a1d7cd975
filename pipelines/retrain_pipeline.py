"""The retraining pipeline: it only wires the stages of :mod:`components.kfp_components` together.

ingest -> validate -> preprocess -> retrain -> evaluate -> deploy (if the gate passes) or alert.
Every branch decision is on a plain output of a stage; an exit handler alerts when a stage fails.
"""

from dataclasses import dataclass, field
from pathlib import Path

from kfp import compiler, dsl

from components import kfp_components as ops
from components.stages.alert import WEBHOOK_ENV

PIPELINE_NAME = "retrain-pipeline"
from pipelines import COMPILED_PIPELINE  # noqa: E402 (re-exported)

STAGES = ("ingest", "validate", "preprocess", "retrain", "evaluate", "deploy", "alert",
          "alert_on_failure")
# Stages that touch storage at their start or end: a transient failure is worth a retry.
RETRIED_STAGES = {"ingest": 3, "deploy": 3}
WEBHOOK_SECRET_KEY = "webhook-url"
GCS_KEY_MOUNT = "/var/secrets/gcs"


@dataclass(frozen=True)
class ClusterOptions:
    """Compile-time settings for a cluster; none of them holds a secret value, only names.

    Attributes:
        webhook_secret: Kubernetes secret whose key ``webhook-url`` the alert stages read when
            the ``alert_webhook_url`` parameter is empty.
        gcs_secret: Kubernetes secret with a service-account ``key.json``, mounted for every
            stage, for clusters without Workload Identity (with it, leave this empty).
        resources: Stage (or ``default``) -> ``{"cpu": "2", "memory": "4Gi"}``, set as both
            request and limit.
    """

    webhook_secret: str = ""
    gcs_secret: str = ""
    resources: dict = field(default_factory=dict)


_options = ClusterOptions()  # read while the pipeline function runs, i.e. while compiling


def _for_cluster(task, stage: str):
    """Apply retries, resources and secret references to one stage's task."""
    if stage in RETRIED_STAGES:
        task.set_retry(num_retries=RETRIED_STAGES[stage], backoff_duration="30s",
                       backoff_factor=2.0, backoff_max_duration="600s")
    resources = _options.resources.get(stage) or _options.resources.get("default") or {}
    if resources.get("cpu"):
        task.set_cpu_request(resources["cpu"]).set_cpu_limit(resources["cpu"])
    if resources.get("memory"):
        task.set_memory_request(resources["memory"]).set_memory_limit(resources["memory"])
    if _options.gcs_secret or (_options.webhook_secret and stage.startswith("alert")):
        from kfp import kubernetes

        if _options.gcs_secret:
            kubernetes.use_secret_as_volume(task, secret_name=_options.gcs_secret,
                                            mount_path=GCS_KEY_MOUNT)
            task.set_env_variable("GOOGLE_APPLICATION_CREDENTIALS", f"{GCS_KEY_MOUNT}/key.json")
        if _options.webhook_secret and stage.startswith("alert"):
            kubernetes.use_secret_as_env(task, secret_name=_options.webhook_secret,
                                         secret_key_to_env={WEBHOOK_SECRET_KEY: WEBHOOK_ENV})
    return task


DESCRIPTION = ("Retrains a tabular scikit-learn model on new data and deploys it only when it "
               "beats the champion; otherwise alerts the team.")


def pipeline_function(
    source_uri: str,
    registry_uri: str,
    model_name: str = "model",
    label_column: str = "label",
    timestamp_column: str = "",
    cutoff: str = "",
    strategy: str = "auto",
    model_type: str = "hgb",
    metric: str = "accuracy",
    threshold: float = 0.80,
    min_improvement: float = 0.0,
    validation_fraction: float = 0.2,
    window_days: int = 90,
    window_files: int = 3,
    epochs: int = 5,
    min_rows: int = 100,
    retrain_when: str = "always",
    schema_uri: str = "",
    validation_thresholds: dict = {},  # noqa: B006 (KFP reads the default; it is never mutated)
    alert_webhook_url: str = "",
):
    """Retrain, evaluate against the champion, deploy or alert.

    Args:
        source_uri: Folder of CSV/Parquet files with the training data (local path or gs://).
        registry_uri: Model registry root (local path or gs://).
        model_name: Registry name of the model (letters, digits, '_', '-', '.').
        label_column: Column holding the class to predict.
        timestamp_column: Event-time column; empty means each file is a batch.
        cutoff: Latest event time to consume (ISO 8601); empty means the scheduled time, or now.
        strategy: auto, finetune, full or window.
        model_type: hgb (HistGradientBoosting) or sgd (SGD, epochs of partial_fit).
        metric: Deploy gate metric: accuracy, f1 or roc_auc.
        threshold: The challenger's metric must be at least this (0..1).
        min_improvement: The challenger must beat the champion by more than this (0..1).
        validation_fraction: Newest share of new rows held out to compare champion and challenger.
        window_days: Days of newest data the window strategy trains on (timestamp mode).
        window_files: Newest files the window strategy trains on (batch mode).
        epochs: SGD passes over the data; rows of the training trace.
        min_rows: Fewest labelled new rows worth retraining on.
        retrain_when: always, drift (only when a feature or the label drifted) or min_rows
            (wait, as skipped, until min_rows labelled new rows have accumulated).
        schema_uri: schema.json the new data must meet; empty means the champion's own.
        validation_thresholds: Overrides of the validation and drift thresholds by name, e.g.
            {"psi_drift": 0.3}; see the README for the names and defaults.
        alert_webhook_url: Slack-compatible webhook that receives alerts; empty to only log them.
    """
    run_id = dsl.PIPELINE_JOB_ID_PLACEHOLDER
    with dsl.ExitHandler(_for_cluster(ops.alert_on_failure(
            model_name=model_name, run_id=run_id, alert_webhook_url=alert_webhook_url),
            "alert_on_failure")):
        ingest_task = _for_cluster(ops.ingest(
            source_uri=source_uri, registry_uri=registry_uri, model_name=model_name,
            timestamp_column=timestamp_column, cutoff=cutoff,
            scheduled_time=dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER, run_id=run_id,
            strategy=strategy, window_days=window_days),
            "ingest")
        ingest_task.set_caching_options(False)  # new data must be read, never replayed
        champion_version = ingest_task.outputs["champion_version"]

        def alert_team(status, reason, decision_record=None, validation_report=None):
            extra = {name: artifact for name, artifact in (
                ("decision_record", decision_record), ("validation_report", validation_report))
                if artifact is not None}
            return _for_cluster(ops.alert(
                status=status, reason=reason, registry_uri=registry_uri, model_name=model_name,
                run_id=run_id, alert_webhook_url=alert_webhook_url,
                new_rows=ingest_task.outputs["new_rows"], **extra), "alert")

        with dsl.If(ingest_task.outputs["Output"] == "new-data", name="new-data"):
            validate_task = _for_cluster(ops.validate(
                new_data=ingest_task.outputs["new_data"],
                ingest_report=ingest_task.outputs["ingest_report"],
                registry_uri=registry_uri, model_name=model_name,
                champion_version=champion_version, label_column=label_column,
                timestamp_column=timestamp_column, min_rows=min_rows,
                retrain_when=retrain_when, schema_uri=schema_uri,
                validation_thresholds=validation_thresholds, run_id=run_id), "validate")
            validation_report = validate_task.outputs["validation_report"]

            # "skipped" (the retrain_when policy said no) takes neither branch: validate has
            # recorded the run, and nobody is alerted.
            with dsl.If(validate_task.outputs["Output"] == "retrain", name="retrain"):
                preprocess_task = _for_cluster(ops.preprocess(
                    new_data=ingest_task.outputs["new_data"],
                    history=ingest_task.outputs["history"],
                    registry_uri=registry_uri, model_name=model_name,
                    champion_version=champion_version, label_column=label_column,
                    timestamp_column=timestamp_column, validation_fraction=validation_fraction), "preprocess")
                retrain_task = _for_cluster(ops.retrain(
                    train_data=preprocess_task.outputs["train_data"],
                    validation_data=preprocess_task.outputs["validation_data"],
                    clean_history=preprocess_task.outputs["clean_history"],
                    registry_uri=registry_uri, model_name=model_name,
                    champion_version=champion_version, label_column=label_column,
                    timestamp_column=timestamp_column,
                    feature_kinds=preprocess_task.outputs["feature_kinds"], strategy=strategy,
                    model_type=model_type, metric=metric, epochs=epochs,
                    window_days=window_days, window_files=window_files), "retrain")
                evaluate_task = _for_cluster(ops.evaluate(
                    challenger=retrain_task.outputs["challenger"],
                    validation_data=preprocess_task.outputs["validation_data"],
                    ingest_report=ingest_task.outputs["ingest_report"],
                    validation_report=validation_report,
                    preprocess_counts=preprocess_task.outputs["counts"],
                    registry_uri=registry_uri, model_name=model_name,
                    champion_version=champion_version, label_column=label_column,
                    timestamp_column=timestamp_column, strategy=strategy,
                    model_type=model_type, metric=metric, threshold=threshold,
                    min_improvement=min_improvement, run_id=run_id), "evaluate")

                with dsl.If(evaluate_task.outputs["Output"] == "deploy", name="deploy"):
                    deploy_task = _for_cluster(ops.deploy(
                        challenger=retrain_task.outputs["challenger"],
                        decision_record=evaluate_task.outputs["decision_record"],
                        registry_uri=registry_uri, model_name=model_name, run_id=run_id), "deploy")
                    with dsl.If(deploy_task.outputs["Output"] == "rejected",
                                name="champion-changed"):
                        alert_team("rejected", deploy_task.outputs["reason"],
                                   evaluate_task.outputs["decision_record"])
                with dsl.Else(name="reject"):
                    alert_team("rejected", evaluate_task.outputs["reason"],
                               evaluate_task.outputs["decision_record"])

            with dsl.Elif(validate_task.outputs["Output"] == "invalid-data", name="invalid-data"):
                alert_team("invalid-data", validate_task.outputs["summary"],
                           validation_report=validation_report)


def build_pipeline(options: ClusterOptions | None = None):
    """The pipeline with ``options`` applied (KFP builds the graph when the decorator runs)."""
    global _options
    previous, _options = _options, options or ClusterOptions()
    try:
        return dsl.pipeline(name=PIPELINE_NAME, description=DESCRIPTION)(pipeline_function)
    finally:
        _options = previous


retrain_pipeline = build_pipeline()


def compile_pipeline(output_path: str | Path = COMPILED_PIPELINE,
                     options: ClusterOptions | None = None) -> Path:
    """Compile the pipeline to YAML (deterministic: the same code gives the same bytes).

    The image is the one :func:`components.image.component_image` names at import time
    (``RETRAIN_IMAGE``); ``options`` add cluster settings (see :class:`ClusterOptions`).
    """
    pipeline = build_pipeline(options) if options else retrain_pipeline
    compiler.Compiler().compile(pipeline, package_path=str(output_path))
    return Path(output_path)
