"""The KFP components: one thin typed wrapper per stage, on the project's own image.

Each body imports this package (installed in the image) and makes one call into
:mod:`components.steps`, so the code shown in the KFP UI stays short and the logic stays testable
without KFP. They are lightweight components (not ``target_image`` containerized ones) because
``kfp.local``'s SubprocessRunner runs only those, and local runs of the compiled YAML are the
default way to run this pipeline. The functions here are plain until :func:`make_components`
makes them components on a given image; their input and output descriptions come from
:mod:`components.params`.
"""

import inspect
from types import SimpleNamespace
from typing import NamedTuple

from kfp import dsl
from kfp.dsl import (
    HTML,
    Artifact,
    ClassificationMetrics,
    Dataset,
    Input,
    Markdown,
    Metrics,
    Model,
    Output,
    PipelineTaskFinalStatus,
)
from kfp.dsl.types.type_annotations import is_artifact_wrapped_in_Output

from components.params import docstring


def ingest(
    source_uri: str,
    registry_uri: str,
    model_name: str,
    timestamp_column: str,
    cutoff: str,
    scheduled_time: str,
    run_id: str,
    strategy: str,
    window_days: int,
    new_data: Output[Dataset],
    history: Output[Dataset],
    ingest_report: Output[Artifact],
) -> NamedTuple("IngestOutputs", outcome=str, new_rows=int, champion_version=str):
    """Reads the new rows after the champion's watermark, and the history the strategy needs."""
    from components.steps import ingest_step

    result = ingest_step(
        source_uri=source_uri, registry_uri=registry_uri, model_name=model_name,
        timestamp_column=timestamp_column, cutoff=cutoff, scheduled_time=scheduled_time,
        run_id=run_id, strategy=strategy, window_days=window_days, new_data_path=new_data.path,
        history_path=history.path, report_path=ingest_report.path)
    new_data.metadata["rows"] = result["new_rows"]
    return (result["outcome"], result["new_rows"], result["champion_version"])


def validate(
    new_data: Input[Dataset],
    ingest_report: Input[Artifact],
    registry_uri: str,
    model_name: str,
    champion_version: str,
    label_column: str,
    timestamp_column: str,
    min_rows: int,
    retrain_when: str,
    schema_uri: str,
    validation_thresholds: dict,
    run_id: str,
    validation_report: Output[Artifact],
    report: Output[Markdown],
    drift_report: Output[HTML],
    schema: Output[Artifact],
) -> NamedTuple("ValidateOutputs", decision=str, summary=str):
    """Checks the new rows against the schema, measures drift, and decides whether to retrain."""
    from components.steps import validate_step

    result = validate_step(
        new_data_path=new_data.path, ingest_report_path=ingest_report.path,
        registry_uri=registry_uri, model_name=model_name, champion_version=champion_version,
        label_column=label_column, timestamp_column=timestamp_column, min_rows=min_rows,
        retrain_when=retrain_when, schema_uri=schema_uri,
        validation_thresholds=validation_thresholds, run_id=run_id,
        report_path=validation_report.path, markdown_path=report.path,
        html_path=drift_report.path, schema_path=schema.path)
    validation_report.metadata.update(errors=result["errors"], warnings=result["warnings"],
                                      drift=result["drift"][:50])
    return (result["decision"], result["reason"])


def preprocess(
    new_data: Input[Dataset],
    history: Input[Dataset],
    schema: Input[Artifact],
    ingest_report: Input[Artifact],
    registry_uri: str,
    model_name: str,
    run_id: str,
    label_column: str,
    timestamp_column: str,
    validation_fraction: float,
    holdout_fraction: float,
    train_data: Output[Dataset],
    validation_data: Output[Dataset],
    evaluation_data: Output[Dataset],
    clean_history: Output[Dataset],
) -> NamedTuple("PreprocessOutputs", counts=dict, seed=int):
    """Cleans rows, sets the holdout rows apart, and holds out the newest training rows."""
    from components.steps import preprocess_step

    counts = preprocess_step(
        new_data_path=new_data.path, history_path=history.path, schema_path=schema.path,
        ingest_report_path=ingest_report.path, label_column=label_column,
        timestamp_column=timestamp_column, validation_fraction=validation_fraction,
        holdout_fraction=holdout_fraction, train_path=train_data.path,
        validation_path=validation_data.path, evaluation_path=evaluation_data.path,
        history_out_path=clean_history.path, registry_uri=registry_uri,
        model_name=model_name, run_id=run_id)
    for artifact, key in ((train_data, "train_rows"), (validation_data, "validation_rows"),
                          (evaluation_data, "holdout_rows")):
        artifact.metadata["rows"] = counts[key]
    return (counts, counts["seed"])


def retrain(
    train_data: Input[Dataset],
    validation_data: Input[Dataset],
    clean_history: Input[Dataset],
    schema: Input[Artifact],
    registry_uri: str,
    model_name: str,
    champion_version: str,
    label_column: str,
    timestamp_column: str,
    strategy: str,
    model_type: str,
    metric: str,
    epochs: int,
    window_days: int,
    window_files: int,
    decision_threshold: str,
    seed: int,
    run_id: str,
    challenger: Output[Model],
    training_metrics: Output[Metrics],
    training_trace: Output[Markdown],
):
    """Fits the challenger (finetune, full, window, or auto: the best of them) and logs its trace."""
    from components.steps import retrain_step

    training = retrain_step(
        train_path=train_data.path, validation_path=validation_data.path,
        history_path=clean_history.path, schema_path=schema.path, registry_uri=registry_uri,
        model_name=model_name, champion_version=champion_version, label_column=label_column,
        timestamp_column=timestamp_column, strategy=strategy, model_type=model_type,
        metric=metric, epochs=epochs, window_days=window_days, window_files=window_files,
        model_dir=challenger.path, trace_markdown_path=training_trace.path, run_id=run_id,
        seed=seed, decision_threshold=decision_threshold)
    challenger.metadata.update(framework="scikit-learn", strategy=training["strategy"],
                               model_type=model_type)
    for row in training["trace"]:
        for key in ("train_loss", "train_accuracy", "validation_loss", "validation_accuracy"):
            if row[key] is not None:
                training_metrics.log_metric(f"epoch_{row['epoch']}_{key}", row[key])


def evaluate(
    challenger: Input[Model],
    evaluation_data: Input[Dataset],
    ingest_report: Input[Artifact],
    validation_report: Input[Artifact],
    preprocess_counts: dict,
    registry_uri: str,
    model_name: str,
    champion_version: str,
    label_column: str,
    timestamp_column: str,
    strategy: str,
    model_type: str,
    metric: str,
    threshold: float,
    min_improvement: float,
    confidence: float,
    min_evaluation_rows: int,
    max_evaluation_rows: int,
    run_id: str,
    metrics: Output[Metrics],
    classification_metrics: Output[ClassificationMetrics],
    comparison: Output[Markdown],
    decision_record: Output[Artifact],
    prediction_sample: Output[Artifact],
) -> NamedTuple("EvaluateOutputs", decision=str, reason=str):
    """Compares champion and challenger on the same holdout rows; the deploy gate decides."""
    from components.steps import evaluate_step

    result = evaluate_step(
        challenger_dir=challenger.path, evaluation_path=evaluation_data.path,
        ingest_report_path=ingest_report.path, validation_report_path=validation_report.path,
        preprocess_counts=preprocess_counts, registry_uri=registry_uri, model_name=model_name,
        champion_version=champion_version, label_column=label_column,
        timestamp_column=timestamp_column, strategy=strategy, model_type=model_type,
        metric=metric, threshold=threshold, min_improvement=min_improvement,
        confidence=confidence, min_evaluation_rows=min_evaluation_rows,
        max_evaluation_rows=max_evaluation_rows, run_id=run_id,
        decision_record_path=decision_record.path, comparison_path=comparison.path,
        prediction_sample_path=prediction_sample.path)
    for role in ("challenger", "champion"):
        for name, value in result[role].items():
            if value is not None:
                metrics.log_metric(f"{role}_{name}", value)
    classification_metrics.log_confusion_matrix(result["confusion_labels"],
                                                result["confusion_matrix"])
    if result["roc"]:
        classification_metrics.log_roc_curve(*result["roc"])
    return (result["decision"], result["reason"])


def deploy(
    challenger: Input[Model],
    decision_record: Input[Artifact],
    prediction_sample: Input[Artifact],
    evaluation_data: Input[Dataset],
    max_evaluation_rows: int,
    registry_uri: str,
    model_name: str,
    run_id: str,
    label_column: str,
    timestamp_column: str,
    serving_namespace: str,
    canary_traffic_percent: int,
    serving_timeout_seconds: int,
    serving_image: str,
    serving_service_account: str,
    serving_resources: str,
) -> NamedTuple("DeployOutputs", result=str, reason=str, version=str):
    """Publishes vNNNN, checks it serves evaluate's predictions, serves it, moves the pointer."""
    from components.steps import deploy_step

    result = deploy_step(
        registry_uri=registry_uri, model_name=model_name, challenger_dir=challenger.path,
        decision_record_path=decision_record.path, run_id=run_id, label_column=label_column,
        timestamp_column=timestamp_column, prediction_sample_path=prediction_sample.path,
        evaluation_path=evaluation_data.path, max_evaluation_rows=max_evaluation_rows,
        serving_namespace=serving_namespace, canary_traffic_percent=canary_traffic_percent,
        serving_timeout_seconds=serving_timeout_seconds, serving_image=serving_image,
        serving_service_account=serving_service_account, serving_resources=serving_resources)
    return (result["result"], result["reason"], result["version"])


def alert(
    status: str,
    reason: str,
    registry_uri: str,
    model_name: str,
    run_id: str,
    alert_webhook_url: str,
    new_rows: int,
    alert_report: Output[Markdown],
    decision_record: Input[Artifact] = None,
    validation_report: Input[Artifact] = None,
    unpromoted_version: str = "",
):
    """Records the outcome and alerts the team: logged, written as Markdown, POSTed if a URL is set."""
    from components.steps import alert_step

    alert_step(status=status, reason=reason, registry_uri=registry_uri, model_name=model_name,
               run_id=run_id, alert_webhook_url=alert_webhook_url, new_rows=new_rows,
               decision_record_path=decision_record.path if decision_record else None,
               validation_report_path=validation_report.path if validation_report else None,
               markdown_path=alert_report.path, unpromoted_version=unpromoted_version)


def alert_on_failure(
    registry_uri: str,
    model_name: str,
    run_id: str,
    alert_webhook_url: str,
    run_status: PipelineTaskFinalStatus,
    failure_report: Output[Markdown],
):
    """Exit handler: alerts when any stage failed outright, naming the stage and the cause."""
    from components.steps import failure_alert_step

    failure_alert_step(state=run_status.state, error_message=run_status.error_message or "",
                       registry_uri=registry_uri, model_name=model_name, run_id=run_id,
                       alert_webhook_url=alert_webhook_url, markdown_path=failure_report.path)


STAGE_FUNCTIONS = (ingest, validate, preprocess, retrain, evaluate, deploy, alert,
                   alert_on_failure)


def interface(function) -> tuple[list[str], list[str]]:
    """A stage function's input names and output names (artifacts it writes, values it returns)."""
    signature = inspect.signature(function)
    outputs = [name for name, parameter in signature.parameters.items()
               if is_artifact_wrapped_in_Output(parameter.annotation)]
    inputs = [name for name in signature.parameters if name not in outputs]
    returned = getattr(signature.return_annotation, "_fields", ())
    return inputs, outputs + list(returned)


def _describe(function) -> None:
    """Extend a stage function's one-line docstring with a description of every input and output
    (KFP reads the component's descriptions from it)."""
    inputs, outputs = interface(function)
    function.__doc__ = docstring(inspect.getdoc(function).splitlines()[0], inputs, outputs)


for _function in STAGE_FUNCTIONS:
    _describe(_function)


def make_components(image: str) -> SimpleNamespace:
    """Every stage as a KFP component on ``image``: ``components.ingest``, ``.validate``, ..."""
    return SimpleNamespace(**{
        function.__name__: dsl.component(base_image=image, install_kfp_package=False)(function)
        for function in STAGE_FUNCTIONS})
