"""Artifact I/O around each stage: read the input files, call the stage, write the output files.

The KFP components in :mod:`components.kfp_components` are one call into a function here, so what
a component does can be run and tested with plain paths, without KFP. Data travels between stages
as Parquet; reports and records as JSON and Markdown.

Every step runs in :func:`components.stage_runner.stage_step`: it checks the pipeline parameters
it is given before anything else (so a run started from the KFP UI fails as fast as the CLI
would, with the same message), and journals the step's start, end or failure in the registry.
Stage modules (and pandas, sklearn, pandera, scipy) are imported inside the step that needs them:
each stage runs in its own process, and imports are most of a small run's time. Locally, a step
runs in a worker that imported them once (:mod:`app.warm_worker`).
"""

from __future__ import annotations

import json
from pathlib import Path

from components.ml.models import MODEL_FILE
from components.outcomes import DeployResult, IngestOutcome, RunStatus, ValidateDecision
from components.params import thresholds_with
from components.records import (
    DecisionRecord,
    IngestReport,
    RunRecord,
    TrainingSummary,
    ValidationSummary,
)
from components.registry import SCHEMA_FILE, STATISTICS_FILE, Registry
from components.stage_runner import stage_step

TRAINING_FILE = "training.json"


def write_json(path: str | Path, payload: dict, *, compact: bool = False) -> None:
    """``compact`` for large payloads: an indented dump is made by the pure-Python encoder,
    several seconds for a thousand columns' statistics."""
    write_text(path, json.dumps(payload, indent=None if compact else 2, sort_keys=True,
                                default=str))


def read_json(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


def write_text(path: str | Path, text: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text)


def validation_summary(validation_report_path: str) -> ValidationSummary:
    """The ``drift`` and ``findings`` a validation report passes on to the run record."""
    return ValidationSummary.from_dict(read_json(validation_report_path))


def _champion(registry: Registry, champion_version: str):
    """The champion model and metadata this run started from, or (None, {})."""
    if not champion_version:
        return None, {}
    return registry.load_model(champion_version), registry.metadata(champion_version)


# -- 1. ingest ---------------------------------------------------------------------------------
@stage_step
def ingest_step(*, source_uri: str, registry_uri: str, model_name: str, timestamp_column: str,
                cutoff: str, scheduled_time: str, run_id: str, strategy: str, window_days: int,
                new_data_path: str, history_path: str, report_path: str) -> dict:
    """Split the source into new rows and the history the strategy needs; a run with nothing
    new ends here."""
    from components.stages import ingest as ingest_stage

    registry = Registry(registry_uri, model_name)
    pointer = registry.champion()
    history_days = ingest_stage.history_days_needed(strategy, window_days)
    result = ingest_stage.ingest(
        source_uri,
        timestamp_column=timestamp_column,
        cutoff=ingest_stage.resolve_cutoff(cutoff, scheduled_time),
        watermark=pointer.watermark if pointer else None,
        consumed_files=pointer.consumed_files if pointer else None,
        history_days=history_days,
        new_data_path=new_data_path,
        history_path=history_path,
    )
    champion_version = pointer.version if pointer else ""
    write_json(report_path, result.report(
        champion_version=champion_version, source_uri=source_uri,
        history_read=ingest_stage.history_read(history_days)).to_dict())
    if result.outcome == IngestOutcome.NO_NEW_DATA:
        reason = ingest_stage.no_new_data_reason(result, timestamp_column)
        registry.write_run_record(run_id, RunRecord.of(
            status=RunStatus.NO_NEW_DATA, reason=reason, run_id=run_id, model_name=model_name,
            new_rows=0, champion_version=champion_version))
        print(f"{RunStatus.NO_NEW_DATA}: {reason}")
    return {"outcome": result.outcome, "new_rows": result.new_rows,
            "champion_version": champion_version}


# -- 2. validate -------------------------------------------------------------------------------
@stage_step(scientific=lambda champion_version, **_: bool(champion_version))  # drift: scipy
def validate_step(*, new_data_path: str, ingest_report_path: str, registry_uri: str,
                  model_name: str, champion_version: str, label_column: str,
                  timestamp_column: str, min_rows: int, retrain_when: str, schema_uri: str,
                  validation_thresholds: dict, run_id: str, report_path: str,
                  markdown_path: str, html_path: str, schema_path: str) -> dict:
    """Check the new rows and measure drift; returns the ``decision`` and its ``reason``.

    The decision is ``retrain``, ``invalid-data`` or ``skipped``; a skipped run is recorded here,
    since no later stage runs. The schema the rows were checked against goes to ``schema_path``
    for training.
    """
    from components import reports
    from components.data.chunks import Table
    from components.data.drift import detect_drift
    from components.policies import trigger_decision
    from components.stages import validate as validate_stage

    thresholds = thresholds_with(validation_thresholds, "the validate stage")
    ingest_report = IngestReport.from_dict(read_json(ingest_report_path))
    registry = Registry(registry_uri, model_name)
    new_data = Table(new_data_path)  # read a chunk at a time by each check
    schema, schema_source = validate_stage.resolve_schema(
        registry, champion_version, schema_uri, new_data, label_column, timestamp_column)
    report = validate_stage.validate(
        new_data, schema=schema, timestamp_column=timestamp_column, min_rows=min_rows,
        thresholds=thresholds, file_columns=ingest_report.file_columns,
        ingest_problems=ingest_report.problems, label_column=label_column,
        too_few_rows="warning" if retrain_when == "min_rows" else "error")
    statistics = (registry.version_json(champion_version, STATISTICS_FILE)
                  if champion_version else None)
    drift = (detect_drift(new_data, statistics, thresholds, timestamp_column)
             if statistics else None)
    decision, reason = trigger_decision(report, drift, retrain_when=retrain_when,
                                        min_rows=min_rows)
    validation = ValidationSummary(drift.drifted if drift else [], report.findings_list())
    write_json(report_path, {**report.to_dict(), "drift": validation.drift,
                             "findings": validation.findings, "decision": decision,
                             "reason": reason, "schema_source": schema_source,
                             "drift_details": drift.to_dict() if drift else None})
    write_json(schema_path, schema)
    write_text(markdown_path, reports.validate_markdown(
        report, drift, schema_source=schema_source, decision=decision, reason=reason,
        ks_alpha=thresholds["ks_alpha"]))
    write_text(html_path, reports.drift_html(drift))
    if decision == ValidateDecision.SKIPPED:
        registry.write_run_record(run_id, RunRecord.of(
            status=RunStatus.SKIPPED, reason=reason, run_id=run_id, model_name=model_name,
            new_rows=new_data.rows, champion_version=champion_version, validation=validation))
    print(f"{decision}: {reason}")
    if drift:
        print(f"drift: {', '.join(drift.drifted) or 'none'} ({drift.strongest()})")
    return {"decision": decision, "reason": reason, "errors": len(report.errors),
            "warnings": len(report.warnings), "drift": validation.drift}


# -- 3. preprocess -----------------------------------------------------------------------------
@stage_step
def preprocess_step(*, new_data_path: str, history_path: str, schema_path: str,
                    ingest_report_path: str, label_column: str, timestamp_column: str,
                    validation_fraction: float, holdout_fraction: float, train_path: str,
                    validation_path: str, evaluation_path: str, history_out_path: str,
                    registry_uri: str, model_name: str, run_id: str = "") -> dict:
    """Clean, set the holdout rows apart, and split, with the feature kinds of the schema
    validate used; returns row counts and the run's seed."""
    from components.data.chunks import Table
    from components.data.schema import schema_feature_kinds
    from components.stages import preprocess as preprocess_stage

    result = preprocess_stage.preprocess(
        Table(new_data_path), Table(history_path), label_column=label_column,
        timestamp_column=timestamp_column,
        feature_kinds=schema_feature_kinds(read_json(schema_path)),
        validation_fraction=validation_fraction, train_path=train_path,
        validation_path=validation_path, history_path=history_out_path,
        evaluation_path=evaluation_path, model_name=model_name,
        holdout_fraction=holdout_fraction,
        cutoff=IngestReport.from_dict(read_json(ingest_report_path)).cutoff)
    counts = result.counts()
    print(json.dumps(counts))
    return counts


# -- 4. retrain --------------------------------------------------------------------------------
@stage_step(scientific=True)
def retrain_step(*, train_path: str, validation_path: str, history_path: str, schema_path: str,
                 registry_uri: str, model_name: str, champion_version: str, label_column: str,
                 timestamp_column: str, strategy: str, model_type: str, metric: str,
                 epochs: int, window_days: int, window_files: int, model_dir: str,
                 trace_markdown_path: str, run_id: str = "", seed: int = 0,
                 decision_threshold: str = "0.5") -> dict:
    """Fit the challenger and save it as ``<model_dir>/model.skops`` with ``training.json``,
    and the schema and statistics of the rows it learned from."""
    from components import reports
    from components.data.chunks import Table
    from components.data.drift import reference_statistics
    from components.data.schema import (
        infer_schema,
        merge_schemas,
        plain_value,
        schema_feature_kinds,
    )
    from components.ml.models import library_versions, save_model
    from components.stages import retrain as retrain_stage

    registry = Registry(registry_uri, model_name)
    feature_kinds = schema_feature_kinds(read_json(schema_path))
    champion, meta = _champion(registry, champion_version)
    result = retrain_stage.retrain(
        strategy=strategy, model_type=model_type, train=Table(train_path),
        history=Table(history_path), validation=Table(validation_path),
        label_column=label_column, timestamp_column=timestamp_column,
        feature_kinds=feature_kinds, metric=metric, epochs=epochs, window_days=window_days,
        window_files=window_files, champion=champion, champion_meta=meta, seed=seed,
        decision_threshold=decision_threshold)
    Path(model_dir).mkdir(parents=True, exist_ok=True)
    save_model(result.model, Path(model_dir) / MODEL_FILE)
    training = result.summary(feature_kinds, [plain_value(c) for c in result.model.classes_],
                              library_versions())
    write_json(Path(model_dir) / TRAINING_FILE, training.to_dict())
    schema = infer_schema(result.training_data, label_column=label_column,
                          timestamp_column=timestamp_column, feature_kinds=feature_kinds)
    write_json(Path(model_dir) / STATISTICS_FILE,
               reference_statistics(result.training_data, schema), compact=True)
    parent_schema = (registry.version_json(champion_version, SCHEMA_FILE)
                     if result.strategy == "finetune" else None)
    write_json(Path(model_dir) / SCHEMA_FILE,
               merge_schemas(parent_schema, schema) if parent_schema else schema)
    markdown = reports.trace_markdown(training)
    write_text(trace_markdown_path, markdown)
    print(markdown)
    return training.to_dict()


# -- 5. evaluate -------------------------------------------------------------------------------
@stage_step(scientific=True)
def evaluate_step(*, challenger_dir: str, evaluation_path: str, ingest_report_path: str,
                  validation_report_path: str, preprocess_counts: dict, registry_uri: str,
                  model_name: str, champion_version: str, label_column: str,
                  timestamp_column: str, strategy: str, model_type: str, metric: str,
                  threshold: float, min_improvement: float, confidence: float,
                  min_evaluation_rows: int, max_evaluation_rows: int, run_id: str,
                  decision_record_path: str, comparison_path: str,
                  prediction_sample_path: str = "") -> dict:
    """Compare both models on the same holdout rows (this run's, then the newest earlier ones),
    decide, and write the decision record."""

    from components import reports
    from components.data.chunks import Table
    from components.ml.models import load_model
    from components.records import ChallengerScores, ChampionScores
    from components.stages.evaluate import evaluate

    registry = Registry(registry_uri, model_name)
    champion, _ = _champion(registry, champion_version)
    pool = registry.holdout_pool()
    training = TrainingSummary.from_dict(read_json(Path(challenger_dir) / TRAINING_FILE))
    preprocess_counts = {key: int(value) for key, value in preprocess_counts.items()}
    evaluation = evaluate(
        load_model(Path(challenger_dir) / MODEL_FILE, libraries=training.libraries), champion,
        Table(evaluation_path), Table(pool) if pool else None,
        label_column=label_column, timestamp_column=timestamp_column, metric=metric,
        threshold=threshold, min_improvement=min_improvement,
        min_rows=min_evaluation_rows, max_rows=max_evaluation_rows, confidence=confidence,
        seed=preprocess_counts.get("seed", 0), champion_version=champion_version)
    ingest_report = IngestReport.from_dict(read_json(ingest_report_path))
    verdict = evaluation.verdict
    record = DecisionRecord(
        run_id=run_id, model_name=model_name, decision=verdict.decision, reason=verdict.reason,
        cold_start=verdict.cold_start, metric=metric, threshold=threshold,
        min_improvement=min_improvement,
        params=dict(label_column=label_column, timestamp_column=timestamp_column,
                    strategy=strategy, model_type=model_type, metric=metric,
                    threshold=threshold, min_improvement=min_improvement,
                    confidence=confidence, min_evaluation_rows=min_evaluation_rows,
                    max_evaluation_rows=max_evaluation_rows),
        champion=(ChampionScores(champion_version, evaluation.champion_scores)
                  if champion is not None else None),
        challenger=ChallengerScores.of(training, evaluation.challenger_scores),
        data={**ingest_report.data_window(), **preprocess_counts,
              "evaluation_rows": len(evaluation.rows.frame)},
        validation=validation_summary(validation_report_path), gate=evaluation.gate())
    write_json(decision_record_path, record.to_dict())
    write_text(comparison_path, reports.comparison_markdown(record))
    if prediction_sample_path:
        from components.infra_validation import SAMPLE_ROWS, prediction_sample

        predictions = evaluation.challenger
        head = evaluation.rows.frame.head(SAMPLE_ROWS)
        write_json(prediction_sample_path, prediction_sample(
            head, training.feature_kinds, predictions.predicted[:len(head)],
            predictions.probabilities[:len(head)]), compact=True)
    print(f"decision: {verdict.decision}: {verdict.reason}")
    labels, matrix = evaluation.challenger.confusion()
    return {"decision": verdict.decision, "reason": verdict.reason,
            "challenger": evaluation.challenger_scores,
            "champion": evaluation.champion_scores or {},
            "confusion_labels": labels, "confusion_matrix": matrix,
            "roc": evaluation.challenger.roc_points()}


# -- 6. deploy ---------------------------------------------------------------------------------
@stage_step(scientific=True)  # infra validation forks the server from scikit-learn's tier
def deploy_step(*, registry_uri: str, model_name: str, challenger_dir: str,
                decision_record_path: str, run_id: str, label_column: str,
                timestamp_column: str, prediction_sample_path: str = "",
                evaluation_path: str = "", max_evaluation_rows: int = 5000,
                serving_namespace: str = "", canary_traffic_percent: int = 100,
                serving_timeout_seconds: int = 600, serving_image: str = "",
                serving_service_account: str = "", serving_resources: str = "") -> dict:
    """Publish, check the published version serves evaluate's predictions, serve it on the
    cluster when a namespace is set, and promote; a failure or a lost race ends as ``rejected``
    (the alert step then reports it)."""
    from components.infra_validation import validate_serving
    from components.stages.deploy import deploy

    record = DecisionRecord.from_dict(read_json(decision_record_path))
    registry = Registry(registry_uri, model_name)
    extra_files = {name: (Path(challenger_dir) / name).read_bytes()
                   for name in (SCHEMA_FILE, STATISTICS_FILE)
                   if (Path(challenger_dir) / name).exists()}
    sample = read_json(prediction_sample_path) if prediction_sample_path else None
    target = _serving_target(serving_namespace, canary_traffic_percent, serving_timeout_seconds,
                             serving_image, serving_service_account, serving_resources)
    deployment = deploy(
        registry, model=(Path(challenger_dir) / MODEL_FILE).read_bytes(), record=record,
        run_id=run_id, label_column=label_column, timestamp_column=timestamp_column,
        extra_files=extra_files,
        check_serving=(lambda version: validate_serving(
            registry_uri=registry_uri, model_name=model_name, version=version,
            sample=sample)) if sample else None,
        serve_on_cluster=(lambda version: serve_on_cluster(registry, version, target))
        if target else None,
        new_holdout=evaluation_path or None, holdout_rows=max_evaluation_rows)
    for name, detail in deployment.details.items():
        print(f"{name}: {json.dumps(detail)}")
    if deployment.result == DeployResult.DEPLOYED:
        registry.write_run_record(run_id, RunRecord.of(
            status=RunStatus.DEPLOYED, reason=deployment.reason, run_id=run_id,
            model_name=model_name, new_rows=record.data["new_rows"], decision=record,
            deployed_version=deployment.version))
        print(f"deployed {model_name} {deployment.version}: {deployment.reason}")
    else:
        print(f"not deployed: {deployment.reason} ({deployment.version} stays unpromoted)")
    return {"result": deployment.result, "reason": deployment.reason,
            "version": deployment.version}


def _serving_target(namespace: str, canary: int, timeout: int, image: str,
                    service_account: str, resources: str):
    """Where deploy serves the champion on the cluster, or None (the registry only)."""
    if not namespace:
        return None
    from components.kserve import ServingTarget

    return ServingTarget.with_resources(resources, namespace=namespace, image=image,
                                        canary_traffic_percent=canary,
                                        service_account=service_account,
                                        timeout_seconds=timeout)


def serve_on_cluster(registry: Registry, version: str, target) -> dict:
    """Put ``version`` on the cluster (Ready), and note where, for a later rollback."""
    from dataclasses import asdict

    from components.kserve import serve_version

    served = serve_version(registry_uri=registry.registry_uri, model_name=registry.model_name,
                           version=version, target=target)
    registry.write_model_json("serving.json", {**asdict(target), "name": served["name"]})
    return served


# -- 7. alert ----------------------------------------------------------------------------------
@stage_step
def alert_step(*, status: str, reason: str, registry_uri: str, model_name: str, run_id: str,
               alert_webhook_url: str, new_rows: int, decision_record_path: str | None,
               markdown_path: str, validation_report_path: str | None = None,
               unpromoted_version: str = "") -> dict:
    """Log, write and (if a webhook is set) POST the alert, then record the run's outcome with
    what became of the alert. A delivery failure is recorded, never raised."""
    from components import reports
    from components.stages import alert as alert_stage

    record = (DecisionRecord.from_dict(read_json(decision_record_path))
              if decision_record_path else None)
    run_record = RunRecord.of(
        status=status, reason=reason, run_id=run_id, model_name=model_name, new_rows=new_rows,
        decision=record, unpromoted_version=unpromoted_version,
        validation=validation_summary(validation_report_path) if validation_report_path else None)
    payload = alert_stage.build_alert(
        status=status, reason=reason, model_name=model_name, run_id=run_id,
        details={"champion": run_record.champion, "challenger": run_record.challenger,
                 "new_rows": new_rows, "drift": run_record.drift,
                 "errors": [f for f in run_record.findings if f["severity"] == "error"]})
    delivery = alert_stage.send_alert(payload, alert_webhook_url)
    write_text(markdown_path, reports.alert_markdown(payload))
    run_record.alert_delivery, run_record.alert_delivery_reason = delivery.status, delivery.reason
    Registry(registry_uri, model_name).write_run_record(run_id, run_record)
    return {"alert_delivery": delivery.status}


@stage_step
def failure_alert_step(*, state: str, error_message: str, registry_uri: str, model_name: str,
                       run_id: str, alert_webhook_url: str, markdown_path: str) -> dict:
    """Exit handler: alert when the run failed outright, naming the stage and the cause from the
    run's journal; a finished run stays quiet."""
    from components import reports
    from components.stages import alert as alert_stage

    if state in ("SUCCEEDED", ""):
        write_text(markdown_path, f"Run {run_id} finished: {state or 'unknown'}; no alert.\n")
        return {"alert_delivery": "none"}
    failure = run_failure(registry_uri, model_name, run_id, kfp_state=state,
                          kfp_message=error_message)
    payload = alert_stage.build_alert(status=RunStatus.FAILED, reason=failure["reason"],
                                      model_name=model_name, run_id=run_id,
                                      details={"failure": failure})
    delivery = alert_stage.send_alert(payload, alert_webhook_url)
    write_text(markdown_path, reports.alert_markdown(payload))
    return {"alert_delivery": delivery.status}


def run_failure(registry_uri: str, model_name: str, run_id: str, *, kfp_state: str = "",
                kfp_message: str = "") -> dict:
    """Why a run failed, from its journal: the stage, the exception and what it concerns, or
    the stage that was killed without a traceback; KFP's own words when the journal is silent."""
    from components.stage_runner import StageState

    try:
        entries = Registry(registry_uri, model_name).stage_entries(run_id)
    except Exception as error:  # noqa: BLE001 - the registry may be what failed
        entries, unreadable = {}, f"{type(error).__name__}: {error}"
    else:
        unreadable = ""
    failed = sorted((e for e in entries.values() if e.get("state") == StageState.FAILED),
                    key=lambda e: e.get("finished_at", ""))
    running = [e for e in entries.values() if e.get("state") == StageState.RUNNING]
    if failed:
        first = failed[0]
        concerns = first.get("concerns") or ""
        where = f" ({concerns})" if concerns and concerns not in first["message"] else ""
        reason = f"{first['stage']} failed: {first['error_type']}: {first['message']}{where}"
        return {**first, "reason": reason}
    if running:
        stage = running[0]
        from datetime import datetime

        started = datetime.fromisoformat(stage["started_at"].replace("Z", "+00:00"))
        seconds = (datetime.now(started.tzinfo) - started).total_seconds()
        return {**stage, "seconds": round(seconds, 1),
                "reason": f"{stage['stage']} was killed without a traceback after about "
                          f"{seconds:.0f} s (out of memory, or a signal)"}
    reason = f"the run ended {kfp_state or 'FAILED'}: {kfp_message or 'no stage said why'}"
    if unreadable:
        reason += f" (the run's journal could not be read: {unreadable})"
    return {"reason": reason}


# -- outside the pipeline ----------------------------------------------------------------------
def source_schema(*, source_uri: str, label_column: str, timestamp_column: str) -> dict:
    """The schema inferred from every row of a source (``retrain schema``), to edit and pass as
    ``schema_uri``."""
    import tempfile

    import pandas as pd

    from components.data.schema import infer_schema
    from components.stages.ingest import ingest

    with tempfile.TemporaryDirectory(prefix="retrain-schema-") as folder:
        result = ingest(source_uri, timestamp_column=timestamp_column,
                        cutoff=pd.Timestamp.max.tz_localize("UTC"), watermark=None,
                        new_data_path=f"{folder}/new.parquet",
                        history_path=f"{folder}/history.parquet")
        return infer_schema(result.new_data_path, label_column=label_column,
                            timestamp_column=timestamp_column)
