"""Artifact I/O around each stage: read input files, call the stage, write output files.

The KFP components in :mod:`components.kfp_components` are one call into a function here, so what a
component does can be run and tested with plain paths, without KFP. Data travels between stages
as Parquet; reports as JSON and Markdown.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from components.chunks import Table

from components.delegation import delegated
from components.params import (
    GATE_METRICS,
    MODEL_TYPES,
    RETRAIN_POLICIES,
    STRATEGIES,
    check_choice,
    check_range,
    check_thresholds,
)
from components.records import build_run_record
from components.registry import MODEL_FILE, SCHEMA_FILE, STATISTICS_FILE, Registry

# Stage modules (and pandas, sklearn, pandera, scipy) are imported inside the step that needs
# them: each stage runs in its own process, and imports are most of a small run's time. Locally,
# @delegated runs the step in a worker that imported them once (see app.warm_worker).

TRAINING_FILE = "training.json"


def write_json(path: str | Path, payload: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(payload, indent=2, sort_keys=True, default=str))


def write_outputs(values: dict) -> None:
    """Write output parameters declared as ``OutputPath``: path -> value."""
    for path, value in values.items():
        write_text(path, str(value))


def read_json(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


def write_text(path: str | Path, text: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text)


def validation_summary(validation_report_path: str) -> dict:
    """The ``drift`` and ``findings`` a validation report passes on to the run record."""
    report = read_json(validation_report_path)
    return {"drift": report.get("drift", []), "findings": report.get("findings", [])}


def _champion(registry: Registry, champion_version: str):
    """The champion model and metadata this run started from, or (None, {})."""
    if not champion_version:
        return None, {}
    return registry.load_model(champion_version), registry.metadata(champion_version)


# -- 1. ingest ---------------------------------------------------------------------------------
def history_days_needed(strategy: str, window_days: int) -> float | None:
    """How much history a strategy reads: none to fine-tune, the window for ``window``, else all.

    A fine-tune whose champion turns out not to fit falls back to ``full`` on the new rows only.
    """
    return {"finetune": 0, "window": window_days}.get(strategy)


@delegated
def ingest_step(*, source_uri: str, registry_uri: str, model_name: str, timestamp_column: str,
                cutoff: str, scheduled_time: str, run_id: str, new_data_path: str,
                history_path: str, report_path: str, strategy: str,
                window_days: int) -> dict:
    """Split the source into new rows and the history the strategy needs; a run with nothing
    new ends here."""
    from components.stages import ingest as ingest_stage

    check_choice("strategy", strategy, STRATEGIES, "ingest")
    registry = Registry(registry_uri, model_name)
    pointer = registry.champion()
    history_days = history_days_needed(strategy, window_days)
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
    report = dict(result.report(), champion_version=champion_version, source_uri=source_uri,
                  history_read="all" if history_days is None else
                  "none" if history_days == 0 else f"the {history_days} days before the watermark")
    write_json(report_path, report)
    if result.outcome == "no-new-data":
        reason = (f"no rows after the watermark {result.watermark_before} up to the cutoff "
                  f"{result.cutoff}" if timestamp_column else
                  "no files that the champion has not consumed")
        registry.write_run_record(run_id, build_run_record(
            status="no-new-data", reason=reason, run_id=run_id, model_name=model_name,
            new_rows=0, champion_version=champion_version))
        print(f"no-new-data: {reason}")
    return {"outcome": result.outcome, "new_rows": result.new_rows,
            "champion_version": champion_version}


# -- 2. validate -------------------------------------------------------------------------------
def load_schema(registry: Registry, champion_version: str, schema_uri: str,
                new_data: Table | pd.DataFrame, label_column: str,
                timestamp_column: str) -> tuple[dict, str]:
    """The schema new data must meet, and where it came from.

    A user's file wins; else the champion's ``schema.json``; else (a cold start, or a champion
    stored before schemas were) one inferred from the new rows, with the champion's feature
    kinds and classes when it has them.
    """
    from components.schema import SchemaError, check_schema, infer_schema

    if schema_uri:
        from components.storage import storage_for

        try:
            schema = json.loads(storage_for(schema_uri).read_bytes(schema_uri))
        except FileNotFoundError as error:
            raise SchemaError(f"schema {schema_uri}: file not found") from error
        except json.JSONDecodeError as error:
            raise SchemaError(f"schema {schema_uri}: not valid JSON ({error})") from error
        check_schema(schema, schema_uri)
        if schema["label"]["name"] != label_column:
            raise SchemaError(f"schema {schema_uri}: its label {schema['label']['name']!r} is "
                              f"not the label_column {label_column!r}")
        return schema, schema_uri
    if champion_version:
        stored = registry.version_json(champion_version, SCHEMA_FILE)
        if stored is not None:
            return stored, f"champion {champion_version}"
        meta = registry.metadata(champion_version)
        inferred = infer_schema(new_data, label_column=label_column,
                                timestamp_column=timestamp_column,
                                feature_kinds=meta.get("feature_kinds"))
        inferred["label"]["classes"] = meta.get("classes") or inferred["label"]["classes"]
        return inferred, f"inferred from the new rows (champion {champion_version} has none)"
    return (infer_schema(new_data, label_column=label_column, timestamp_column=timestamp_column),
            "inferred from the new rows (no champion yet)")


@delegated(scientific=lambda champion_version, **_: bool(champion_version))  # drift: scipy
def validate_step(*, new_data_path: str, ingest_report_path: str, registry_uri: str,
                  model_name: str, champion_version: str, label_column: str,
                  timestamp_column: str, min_rows: int, retrain_when: str, schema_uri: str,
                  validation_thresholds: dict, run_id: str, report_path: str,
                  markdown_path: str, html_path: str) -> dict:
    """Check the new rows and measure drift; returns the ``decision`` and its ``reason``.

    The decision is ``retrain``, ``invalid-data`` or ``skipped``; a skipped run is recorded here,
    since no later stage runs.
    """
    from components.chunks import Table
    from components.drift import detect_drift
    from components.stages import validate as validate_stage

    check_choice("retrain_when", retrain_when, RETRAIN_POLICIES, "validate")
    thresholds = check_thresholds(validation_thresholds or {}, "validate")
    ingest_report = read_json(ingest_report_path)
    registry = Registry(registry_uri, model_name)
    new_data = Table(new_data_path)  # read a chunk at a time by each check
    schema, schema_source = load_schema(registry, champion_version, schema_uri, new_data,
                                        label_column, timestamp_column)
    report = validate_stage.validate(
        new_data, schema=schema, timestamp_column=timestamp_column, min_rows=min_rows,
        thresholds=thresholds, file_columns=ingest_report.get("file_columns"),
        ingest_problems=ingest_report.get("problems"),
        too_few_rows="warning" if retrain_when == "min_rows" else "error")
    statistics = (registry.version_json(champion_version, STATISTICS_FILE)
                  if champion_version else None)
    drift = detect_drift(new_data, statistics, thresholds) if statistics else None
    decision, reason = validate_stage.decide(report, drift, retrain_when=retrain_when,
                                             min_rows=min_rows)
    validation = {"drift": drift.drifted if drift else [], "findings": report.findings_list()}
    write_json(report_path, {**report.to_dict(), **validation, "decision": decision,
                             "reason": reason, "schema_source": schema_source,
                             "drift_details": drift.to_dict() if drift else None})
    markdown = report.to_markdown() + f"\nSchema: {schema_source}. Decision: **{decision}**: " \
        f"{reason}\n\n"
    markdown += (drift.to_markdown(thresholds["ks_alpha"]) if drift else
                 "No drift reference yet: the champion's training statistics are stored at its "
                 "first deploy.\n")
    write_text(markdown_path, markdown)
    write_text(html_path, drift.to_html() if drift else
               "<!doctype html><p>No drift reference yet (no champion statistics).</p>\n")
    if decision == validate_stage.SKIPPED:
        registry.write_run_record(run_id, build_run_record(
            status="skipped", reason=reason, run_id=run_id, model_name=model_name,
            new_rows=new_data.rows, champion_version=champion_version, validation=validation))
    print(f"{decision}: {reason}")
    if drift:
        print(f"drift: {', '.join(drift.drifted) or 'none'} ({drift.strongest()})")
    return {"decision": decision, "reason": reason, "errors": len(report.errors),
            "warnings": len(report.warnings), "drift": validation["drift"]}


# -- 3. preprocess -----------------------------------------------------------------------------
@delegated
def preprocess_step(*, new_data_path: str, history_path: str, registry_uri: str,
                    model_name: str, champion_version: str, label_column: str,
                    timestamp_column: str, validation_fraction: float, train_path: str,
                    validation_path: str, history_out_path: str) -> dict:
    """Clean and split; returns the feature kinds and row counts."""
    from components.chunks import Table
    from components.schema import infer_feature_kinds
    from components.stages import preprocess as preprocess_stage

    check_range("validation_fraction", validation_fraction, 0, 1, "preprocess", closed="neither")
    new_data = Table(new_data_path)
    meta = Registry(registry_uri, model_name).metadata(champion_version) if champion_version else {}
    kinds = meta.get("feature_kinds") or infer_feature_kinds(new_data, label_column,
                                                             timestamp_column)
    result = preprocess_stage.preprocess(
        new_data, Table(history_path), label_column=label_column,
        timestamp_column=timestamp_column, feature_kinds=kinds,
        validation_fraction=validation_fraction, train_path=train_path,
        validation_path=validation_path, history_path=history_out_path)
    counts = {"train_rows": result.train_rows, "validation_rows": result.validation_rows,
              "history_rows": result.history_rows,
              "dropped_duplicates": result.dropped_duplicates,
              "dropped_unlabelled": result.dropped_unlabelled}
    print(json.dumps(counts))
    return {"feature_kinds": kinds, **counts}


# -- 4. retrain --------------------------------------------------------------------------------
@delegated(scientific=True)
def retrain_step(*, train_path: str, validation_path: str, history_path: str,
                 registry_uri: str, model_name: str, champion_version: str, label_column: str,
                 timestamp_column: str, feature_kinds: dict, strategy: str, model_type: str,
                 metric: str, epochs: int, window_days: int, window_files: int, model_dir: str,
                 trace_markdown_path: str) -> dict:
    """Fit the challenger and save it as ``<model_dir>/model.joblib`` with ``training.json``."""
    import joblib

    from components.chunks import Table
    from components.drift import reference_statistics
    from components.schema import infer_schema, merge_schemas, plain_value
    from components.stages import retrain as retrain_stage

    check_choice("strategy", strategy, STRATEGIES, "retrain")
    check_choice("model_type", model_type, MODEL_TYPES, "retrain")
    check_choice("metric", metric, GATE_METRICS, "retrain")
    champion, meta = _champion(Registry(registry_uri, model_name), champion_version)
    result = retrain_stage.retrain(
        strategy=strategy, model_type=model_type, train=Table(train_path),
        history=Table(history_path), validation=Table(validation_path),
        label_column=label_column, timestamp_column=timestamp_column,
        feature_kinds=feature_kinds, metric=metric, epochs=epochs, window_days=window_days,
        window_files=window_files, champion=champion, champion_meta=meta)
    Path(model_dir).mkdir(parents=True, exist_ok=True)
    joblib.dump(result.model, Path(model_dir) / MODEL_FILE)
    training = dict(result.summary(), feature_kinds=feature_kinds,
                    classes=[plain_value(c) for c in result.model.classes_])
    write_json(Path(model_dir) / TRAINING_FILE, training)
    schema = infer_schema(result.training_data, label_column=label_column,
                          timestamp_column=timestamp_column, feature_kinds=feature_kinds)
    write_json(Path(model_dir) / STATISTICS_FILE,
               reference_statistics(result.training_data, schema))
    parent_schema = (Registry(registry_uri, model_name).version_json(champion_version, SCHEMA_FILE)
                     if result.strategy == "finetune" else None)
    write_json(Path(model_dir) / SCHEMA_FILE,
               merge_schemas(parent_schema, schema) if parent_schema else schema)
    markdown = retrain_stage.trace_markdown(result)
    write_text(trace_markdown_path, markdown)
    print(markdown)
    return training


# -- 5. evaluate -------------------------------------------------------------------------------
@delegated(scientific=True)
def evaluate_step(*, challenger_dir: str, validation_path: str, ingest_report_path: str,
                  validation_report_path: str, preprocess_counts: dict, registry_uri: str, model_name: str,
                  champion_version: str, params: dict, run_id: str, decision_record_path: str,
                  comparison_path: str) -> dict:
    """Score both models on the shared validation rows, decide, and write the decision record."""
    import joblib

    from components.chunks import Table
    from components.stages import evaluate as evaluate_stage

    metric, threshold = params["metric"], params["threshold"]
    check_choice("metric", metric, GATE_METRICS, "evaluate")
    check_range("threshold", threshold, 0, 1, "evaluate")
    check_range("min_improvement", params["min_improvement"], 0, 1, "evaluate")
    label_column = params["label_column"]
    validation = Table(validation_path)  # scored a chunk at a time
    challenger = joblib.load(Path(challenger_dir) / MODEL_FILE)
    training = read_json(Path(challenger_dir) / TRAINING_FILE)
    champion, _ = _champion(Registry(registry_uri, model_name), champion_version)
    challenger_predictions = evaluate_stage.predict(challenger, validation, label_column)
    challenger_scores = challenger_predictions.scores()
    champion_scores = (evaluate_stage.score_model(champion, validation, label_column)
                       if champion is not None else None)
    decision = evaluate_stage.decide(
        challenger_scores, champion_scores, metric=metric, threshold=threshold,
        min_improvement=params["min_improvement"], champion_version=champion_version)
    ingest_report = read_json(ingest_report_path)
    record = {
        "run_id": run_id,
        "model_name": model_name,
        "decision": decision.decision,
        "reason": decision.reason,
        "cold_start": decision.cold_start,
        "metric": metric,
        "threshold": threshold,
        "min_improvement": params["min_improvement"],
        "params": params,
        "champion": ({"version": champion_version, "metrics": champion_scores}
                     if champion is not None else None),
        "challenger": {**training, "metrics": challenger_scores},
        "data": {**{k: v for k, v in ingest_report.items() if k != "file_columns"},
                 **preprocess_counts},
        "validation": validation_summary(validation_report_path),
    }
    record["challenger"].pop("trace", None)
    write_json(decision_record_path, record)
    write_text(comparison_path, evaluate_stage.comparison_markdown(record))
    print(f"decision: {decision.decision}: {decision.reason}")
    labels, matrix = challenger_predictions.confusion()
    return {"decision": decision.decision, "reason": decision.reason,
            "challenger": challenger_scores, "champion": champion_scores or {},
            "confusion_labels": labels, "confusion_matrix": matrix,
            "roc": challenger_predictions.roc_points()}


# -- 6. deploy ---------------------------------------------------------------------------------
@delegated
def deploy_step(*, registry_uri: str, model_name: str, challenger_dir: str,
                decision_record_path: str, run_id: str) -> dict:
    """Publish and promote; a lost race ends as ``rejected`` (the alert step then reports it)."""
    from components.stages import deploy as deploy_stage

    record = read_json(decision_record_path)
    registry = Registry(registry_uri, model_name)
    extra_files = {name: (Path(challenger_dir) / name).read_bytes()
                   for name in (SCHEMA_FILE, STATISTICS_FILE)
                   if (Path(challenger_dir) / name).exists()}
    result = deploy_stage.deploy(registry, model_file=Path(challenger_dir) / MODEL_FILE,
                                 decision_record=record, run_id=run_id, extra_files=extra_files)
    if result.status == "deployed":
        registry.write_run_record(run_id, build_run_record(
            status="deployed", reason=result.reason, run_id=run_id, model_name=model_name,
            new_rows=record["data"]["new_rows"], decision_record=record,
            deployed_version=result.version))
        print(f"deployed {model_name} {result.version}: {result.reason}")
    else:
        print(f"not deployed: {result.reason} ({result.version} stays unpromoted)")
    return {"status": result.status, "reason": result.reason, "version": result.version}


# -- 7. alert ----------------------------------------------------------------------------------
@delegated
def alert_step(*, status: str, reason: str, registry_uri: str, model_name: str, run_id: str,
               alert_webhook_url: str, new_rows: int, decision_record_path: str | None,
               markdown_path: str, validation_report_path: str | None = None) -> None:
    """Record the run's outcome, then log, write and (if a webhook is set) POST the alert."""
    from components.stages import alert as alert_stage

    record = read_json(decision_record_path) if decision_record_path else None
    run_record = build_run_record(
        status=status, reason=reason, run_id=run_id, model_name=model_name, new_rows=new_rows,
        decision_record=record,
        validation=validation_summary(validation_report_path) if validation_report_path else None)
    Registry(registry_uri, model_name).write_run_record(run_id, run_record)
    payload = alert_stage.build_alert(
        status=status, reason=reason, model_name=model_name, run_id=run_id,
        details={"champion": run_record["champion"], "challenger": run_record["challenger"],
                 "new_rows": new_rows, "drift": run_record["drift"],
                 "errors": [f for f in run_record["findings"] if f["severity"] == "error"]})
    write_text(markdown_path, alert_stage.send_alert(payload, alert_webhook_url))


@delegated
def failure_alert_step(*, state: str, error_message: str, model_name: str, run_id: str,
                       alert_webhook_url: str, markdown_path: str) -> None:
    """Exit handler: alert when the run failed outright; a finished run stays quiet."""
    from components.stages import alert as alert_stage

    if state in ("SUCCEEDED", ""):
        write_text(markdown_path, f"Run {run_id} finished: {state or 'unknown'}; no alert.\n")
        return
    payload = alert_stage.build_alert(
        status="failed", reason=f"the run ended {state}: {error_message}",
        model_name=model_name, run_id=run_id)
    write_text(markdown_path, alert_stage.send_alert(payload, alert_webhook_url))
