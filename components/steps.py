"""Artifact I/O around each stage: read the input files, call the stage, write the output files.

The KFP components in :mod:`components.kfp_components` are one call into a function here, so what
a component does can be run and tested with plain paths, without KFP. Data travels between stages
as Parquet; reports and records as JSON and Markdown.

Every step runs in :func:`components.runtime.stage_runner.stage_step`: it checks the pipeline parameters
it is given before anything else (so a run started from the KFP UI fails as fast as the CLI
would, with the same message), and journals the step's start, end or failure in the registry.
Stage modules (and pandas, sklearn, pandera, scipy) are imported inside the step that needs them:
each stage runs in its own process, and imports are most of a small run's time. Locally, a step
runs in a worker that imported them once (:data:`WARM_IMPORTS`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from components.ml.models import MODEL_FILE
from components.outcomes import (
    AlertDelivery,
    DeployResult,
    IngestOutcome,
    RetrainWhen,
    RunStatus,
    Severity,
    Strategy,
    ValidateDecision,
)
from components.params import thresholds_with
from components.records import (
    DecisionRecord,
    IngestReport,
    RunRecord,
    StepResult,
    TrainingSummary,
    ValidationSummary,
    named_output,
)
from components.registry import JUDGED_FILE, SCHEMA_FILE, STATISTICS_FILE, Registry
from components.runtime.delegation import FULL, LIGHT
from components.runtime.stage_runner import stage_step
from components.storage.base import write_failure

TRAINING_FILE = "training.json"
# What a warm worker imports once (:mod:`components.runtime.warm_worker`): these modules before
# its two tiers part, then each tier's, in the order its steps need them. The stages needing
# scipy and scikit-learn (slow to import) are apart, so they never hold up the others; the full
# tier leaves pandera to a validate that comes its way, so its import never competes with
# retrain's OpenMP threads, nor delays scikit-learn's import before the two part.
WARM_IMPORTS = {
    "shared": (__name__,),
    LIGHT: ("components.stages.ingest", "pandera.pandas", "components.stages.validate",
            "components.data.drift", "components.policies", "components.reports",
            "components.stages.preprocess", "components.stages.deploy", "components.stages.alert",
            "matplotlib.pyplot", "components.life_report"),
    FULL: ("skops.io", "sklearn.ensemble", "sklearn.linear_model", "sklearn.compose",
           "sklearn.impute", "sklearn.preprocessing", "sklearn.pipeline", "sklearn.metrics",
           "components.data.drift", "components.stages.retrain", "components.stages.evaluate",
           "components.reports", "scipy.stats", "scipy.spatial.distance"),
}


def write_json(path: str | Path, payload: dict, *, compact: bool = False) -> None:
    """``compact`` for large payloads: an indented dump is made by the pure-Python encoder,
    several seconds for a thousand columns' statistics."""
    write_text(path, json.dumps(payload, indent=None if compact else 2, sort_keys=True,
                                default=str))


def read_json(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


def write_text(path: str | Path, text: str) -> None:
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
    except OSError as error:  # a full disk, a permission: name the artifact
        raise write_failure(str(path), error) from error


def validation_summary(validation_report_path: str) -> ValidationSummary:
    """The ``drift`` and ``findings`` a validation report passes on to the run record."""
    return ValidationSummary.from_dict(read_json(validation_report_path))


def _champion(registry: Registry, champion_version: str):
    """The champion model and metadata this run started from, or (None, None)."""
    if not champion_version:
        return None, None
    return registry.load_model(champion_version), registry.metadata(champion_version)


# -- 1. ingest ---------------------------------------------------------------------------------
@dataclass
class IngestOutputs(StepResult):
    outcome: str = named_output()
    new_rows: int = named_output()
    champion_version: str = named_output()

    def artifact_metadata(self) -> dict[str, dict]:
        return {"new_data": {"rows": self.new_rows}}


@stage_step
def ingest_step(*, source_uri: str, registry_uri: str, model_name: str, timestamp_column: str,
                cutoff: str, scheduled_time: str, run_id: str, strategy: str, window_days: int,
                new_data: str, history: str, ingest_report: str) -> IngestOutputs:
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
        new_data_path=new_data,
        history_path=history,
    )
    champion_version = pointer.version if pointer else ""
    report = dataclasses.replace(result.report, champion_version=champion_version,
                                 source_uri=source_uri,
                                 history_read=ingest_stage.history_read(history_days))
    write_json(ingest_report, report.to_dict())
    if report.outcome == IngestOutcome.NO_NEW_DATA:
        reason = ingest_stage.no_new_data_reason(report, timestamp_column)
        registry.write_run_record(run_id, RunRecord.of(
            status=RunStatus.NO_NEW_DATA, reason=reason, run_id=run_id, model_name=model_name,
            new_rows=0, champion_version=champion_version))
        print(f"{RunStatus.NO_NEW_DATA}: {reason}")
    return IngestOutputs(report.outcome, report.new_rows, champion_version)


# -- 2. validate -------------------------------------------------------------------------------
@dataclass
class ValidateOutputs(StepResult):
    decision: str = named_output()
    summary: str = named_output()  # the reason for the decision
    errors: int = 0
    warnings: int = 0
    drift: list[str] = field(default_factory=list)

    @property
    def reason(self) -> str:
        return self.summary

    def artifact_metadata(self) -> dict[str, dict]:
        return {"validation_report": {"errors": self.errors, "warnings": self.warnings,
                                      "drift": self.drift[:50]}}


@stage_step(scientific=lambda champion_version, **_: bool(champion_version))  # drift: scipy
def validate_step(*, new_data: str, ingest_report: str, registry_uri: str, model_name: str,
                  champion_version: str, label_column: str, timestamp_column: str, task: str,
                  min_rows: int, retrain_when: str, schema_uri: str, validation_thresholds: dict,
                  run_id: str, validation_report: str, report: str, drift_report: str,
                  schema: str) -> ValidateOutputs:
    """Check the new rows and measure drift; returns the ``decision`` and its ``reason``.

    The decision is ``retrain``, ``invalid-data`` or ``skipped``; a skipped run is recorded here,
    since no later stage runs. The schema the rows were checked against goes to ``schema_path``
    for training, with the task it decided (``task=auto``: inferred from the label).
    """
    from components import reports
    from components.data.chunks import Table
    from components.data.drift import detect_drift
    from components.policies import trigger_decision
    from components.stages import validate as validate_stage

    thresholds = thresholds_with(validation_thresholds, "the validate stage")
    ingested = IngestReport.from_dict(read_json(ingest_report))
    registry = Registry(registry_uri, model_name)
    rows = Table(new_data)  # read a chunk at a time by each check
    resolved, schema_source = validate_stage.resolve_schema(
        registry, champion_version, schema_uri, rows, label_column, timestamp_column, task)
    print(f"task: {resolved['label']['task']} ({resolved['label'].get('task_reason') or ''})")
    checked = validate_stage.validate(
        rows, schema=resolved, timestamp_column=timestamp_column, min_rows=min_rows,
        thresholds=thresholds, file_columns=ingested.file_columns,
        ingest_problems=ingested.problems, label_column=label_column,
        too_few_rows=Severity.WARNING if retrain_when == RetrainWhen.MIN_ROWS else Severity.ERROR,
        contract=bool(schema_uri),  # the user's schema is a contract; the champion's, statistics
        task=task)
    statistics = (registry.version_json(champion_version, STATISTICS_FILE)
                  if champion_version else None)
    drift = (detect_drift(rows, statistics, thresholds, timestamp_column)
             if statistics else None)
    decision, reason = trigger_decision(checked, drift, retrain_when=retrain_when,
                                        min_rows=min_rows)
    validation = _validation_of(checked, drift, resolved["label"])
    # Every field of the summary, as ValidationSummary.from_dict reads it back.
    write_json(validation_report, {**checked.to_dict(), **dataclasses.asdict(validation),
                                   "decision": decision, "reason": reason,
                                   "schema_source": schema_source,
                                   "drift_details": drift.to_dict() if drift else None})
    write_json(schema, resolved)
    write_text(report, reports.validate_markdown(
        checked, drift, schema_source=schema_source, decision=decision, reason=reason,
        ks_alpha=thresholds["ks_alpha"]))
    write_text(drift_report, reports.drift_html(drift))
    if decision == ValidateDecision.SKIPPED:
        registry.write_run_record(run_id, RunRecord.of(
            status=RunStatus.SKIPPED, reason=reason, run_id=run_id, model_name=model_name,
            new_rows=rows.rows, champion_version=champion_version, validation=validation))
    print(f"{decision}: {reason}")
    if drift:
        print(f"drift: {', '.join(drift.drifted) or 'none'} ({drift.strongest()})")
    return ValidateOutputs(decision, reason, errors=len(checked.errors),
                           warnings=len(checked.warnings), drift=validation.drift)


def _validation_of(checked, drift, label: dict) -> ValidationSummary:
    """What drifted (the features beyond the champion's training data among them), the
    findings, the drift figures, and the task the schema's ``label`` decided (and why)."""
    drifted = list(dict.fromkeys([*(drift.drifted if drift else []),
                                  *checked.beyond_training()]))
    return ValidationSummary(drifted, checked.findings_list(),
                             *_drift_figures(drift) if drift else ({}, {}),
                             task=label["task"], task_reason=label.get("task_reason") or "")


def _drift_figures(drift) -> tuple[dict, dict]:
    """Each feature's pooled drift statistic, and the label's share of each class, for the
    run record (what the model's life page draws)."""
    statistics = {f.feature: {"test": f.test, "statistic": f.statistic, "drift": f.drift,
                              "verdict": f.verdict} for f in drift.features}
    label = next((f for f in drift.features if f.is_label), None)
    shares = dict(zip(label.bins, label.new, strict=False)) if label else {}
    return statistics, shares


# -- 3. preprocess -----------------------------------------------------------------------------
@dataclass
class PreprocessOutputs(StepResult):
    counts: dict = named_output()  # rows for training, selection, holdout and history; the seed
    seed: int = named_output()

    def artifact_metadata(self) -> dict[str, dict]:
        return {artifact: {"rows": self.counts[key]} for artifact, key in (
            ("train_data", "train_rows"), ("validation_data", "validation_rows"),
            ("evaluation_data", "holdout_rows"))}


@stage_step
def preprocess_step(*, new_data: str, history: str, schema: str, ingest_report: str,
                    label_column: str, timestamp_column: str, validation_fraction: float,
                    holdout_fraction: float, train_data: str, validation_data: str,
                    evaluation_data: str, clean_history: str, registry_uri: str,
                    model_name: str, run_id: str) -> PreprocessOutputs:
    """Clean, set any holdout rows apart (none in a run small enough to be cross-fitted; history
    rows in the rolling holdout), and split, with the feature kinds of the schema validate used;
    returns row counts and the run's seed."""
    from components.data.chunks import Table
    from components.data.schema import schema_feature_kinds, schema_task
    from components.stages import preprocess as preprocess_stage

    resolved = read_json(schema)
    pool = Registry(registry_uri, model_name).holdout_pool()
    result = preprocess_stage.preprocess(
        Table(new_data), Table(history), label_column=label_column,
        timestamp_column=timestamp_column, task=schema_task(resolved),
        feature_kinds=schema_feature_kinds(resolved),
        validation_fraction=validation_fraction, train_path=train_data,
        validation_path=validation_data, history_path=clean_history,
        evaluation_path=evaluation_data, model_name=model_name,
        holdout_fraction=holdout_fraction,
        cutoff=IngestReport.from_dict(read_json(ingest_report)).cutoff,
        rolling_holdout=Table(pool.data) if pool.data else None)
    counts = result.counts()
    print(json.dumps(counts))
    return PreprocessOutputs(counts, counts["seed"])


# -- 4. retrain --------------------------------------------------------------------------------
def trace_metrics(task: str) -> tuple[str, ...]:
    """The trace's columns a Metrics artifact logs per epoch: loss, and accuracy or R²."""
    from components.ml.metrics import TRACE_SCORE

    score = TRACE_SCORE[task]
    return ("train_loss", f"train_{score}", "validation_loss", f"validation_{score}")


@dataclass
class RetrainOutputs(StepResult):
    training: TrainingSummary

    def artifact_metadata(self) -> dict[str, dict]:
        logged = {f"epoch_{row['epoch']}_{key}": row[key] for row in self.training.trace
                  for key in trace_metrics(self.training.task) if row.get(key) is not None}
        return {"challenger": {"framework": "scikit-learn", "strategy": self.training.strategy,
                               "model_type": self.training.model_type,
                               "task": self.training.task},
                "training_metrics": logged}


@stage_step(scientific=True)
def retrain_step(*, train_data: str, validation_data: str, clean_history: str, schema: str,
                 registry_uri: str, model_name: str, champion_version: str, label_column: str,
                 timestamp_column: str, strategy: str, model_type: str, model_config: dict,
                 metric: str, epochs: int, window_days: int, window_files: int,
                 decision_threshold: str, confidence: float, seed: int, run_id: str,
                 challenger: str, training_trace: str, cross_fitted: str) -> RetrainOutputs:
    """Fit the challenger and save it as ``<model_dir>/model.skops`` with ``training.json``,
    and the schema and statistics of the rows it learned from; and the new training rows with
    the chosen procedure's cross-fitted predictions (none when the holdout rows are plenty)."""
    import pandas as pd

    from components import reports
    from components.data.chunks import Table
    from components.data.schema import plain_value, schema_feature_kinds, schema_task
    from components.ml.estimators import factory_distribution
    from components.ml.models import library_versions, save_model
    from components.outcomes import GateMetric
    from components.params import check_task_parameters, whole_numbers
    from components.stages import retrain as retrain_stage

    registry = Registry(registry_uri, model_name)
    resolved = read_json(schema)
    feature_kinds, task = schema_feature_kinds(resolved), schema_task(resolved)
    check_task_parameters({"metric": metric, "decision_threshold": decision_threshold}, task,
                          "the retrain stage")
    champion, meta = _champion(registry, champion_version)
    change = (_concept_change(registry, champion_version, champion, train_data,
                              validation_data, label_column, timestamp_column, confidence,
                              feature_kinds)
              if champion is not None and strategy == Strategy.AUTO else None)
    result = retrain_stage.retrain(
        strategy=strategy, model_type=model_type, train=Table(train_data),
        history=Table(clean_history), validation=Table(validation_data),
        label_column=label_column, timestamp_column=timestamp_column,
        feature_kinds=feature_kinds, metric=GateMetric.resolved(metric, task), epochs=epochs,
        window_days=window_days, window_files=window_files, champion=champion,
        champion_meta=meta, seed=seed, decision_threshold=decision_threshold, change=change,
        task=task, model_config=whole_numbers(model_config))
    folder = Path(challenger)
    folder.mkdir(parents=True, exist_ok=True)
    save_model(result.model, folder / MODEL_FILE, model_type)
    training = result.summary(
        feature_kinds, [plain_value(c) for c in getattr(result.model, "classes_", [])],
        {**library_versions(), **factory_distribution(model_type)})
    write_json(folder / TRAINING_FILE, training.to_dict())
    _write_learned(folder, result, resolved, label_column, timestamp_column,
                   registry.version_json(champion_version, SCHEMA_FILE)
                   if result.strategy == Strategy.FINETUNE else None)
    (result.cross_fitted if result.cross_fitted is not None else pd.DataFrame()).to_parquet(
        cross_fitted, index=False)
    markdown = reports.trace_markdown(training)
    write_text(training_trace, markdown)
    print(markdown)
    return RetrainOutputs(training)


def _write_learned(folder: Path, result, resolved: dict, label_column: str,
                   timestamp_column: str, parent_schema: dict | None) -> None:
    """The schema and statistics of the rows the challenger learned from, beside it (a
    fine-tune's schema keeps its parent's too)."""
    from components.data.drift import reference_statistics
    from components.data.schema import (
        infer_schema,
        merge_schemas,
        schema_feature_kinds,
        schema_task,
    )

    learned = infer_schema(result.training_data, label_column=label_column,
                           timestamp_column=timestamp_column,
                           feature_kinds=schema_feature_kinds(resolved), task=schema_task(resolved))
    write_json(folder / STATISTICS_FILE, reference_statistics(result.training_data, learned),
               compact=True)
    learned["label"]["task_reason"] = resolved["label"].get("task_reason", "")
    write_json(folder / SCHEMA_FILE,
               merge_schemas(parent_schema, learned) if parent_schema else learned)


def _concept_change(registry: Registry, champion_version: str, champion, train_data: str,
                    validation_data: str, label_column: str, timestamp_column: str,
                    confidence: float, feature_kinds: dict[str, str]):
    """Where the champion's world changed, seen on its unseen rows (the rolling holdout and the
    new training rows) after the rows its promotion was judged on, or None."""
    from components.data.chunks import Table
    from components.data.roles import CROSS_FIT_LIMIT
    from components.stages.retrain import concept_change, thinned

    pool, judged = registry.holdout_pool(), registry.judged_rows(champion_version)
    for warning in (pool.warning, judged.warning):
        if warning:
            print(f"warning: {warning}")
    return concept_change(champion, Table(pool.data) if pool.data else None,
                          thinned([Table(train_data), Table(validation_data)], CROSS_FIT_LIMIT),
                          label_column=label_column, timestamp_column=timestamp_column,
                          confidence=confidence,
                          judged=Table(judged.data).read() if judged.data else None,
                          feature_kinds=feature_kinds)


# -- 5. evaluate -------------------------------------------------------------------------------
@dataclass
class EvaluateOutputs(StepResult):
    decision: str = named_output()
    reason: str = named_output()
    challenger: dict = field(default_factory=dict)  # the challenger's scores by metric
    champion: dict = field(default_factory=dict)
    confusion_labels: list = field(default_factory=list)  # none for a regressor
    confusion_matrix: list = field(default_factory=list)
    roc: tuple | None = None  # (fpr, tpr, thresholds) of a binary challenger

    def artifact_metadata(self) -> dict[str, dict]:
        scores = {f"{role}_{name}": value
                  for role, metrics in (("challenger", self.challenger),
                                        ("champion", self.champion))
                  for name, value in metrics.items() if value is not None}
        return {"metrics": scores,
                "classification_metrics": {"confusion_matrix": (self.confusion_labels,
                                                                self.confusion_matrix),
                                           "roc": self.roc}}


@stage_step(scientific=True)
def evaluate_step(*, challenger: str, evaluation_data: str, cross_fitted: str,
                  ingest_report: str, validation_report: str, preprocess_counts: dict,
                  registry_uri: str, model_name: str, champion_version: str, label_column: str,
                  timestamp_column: str, metric: str, threshold: float, min_improvement: float,
                  confidence: float, freshness_margin: float, freshness_confidence: float,
                  min_evaluation_rows: int, max_evaluation_rows: int, run_id: str,
                  decision_record: str, comparison: str, prediction_sample: str,
                  judged_rows: str, evaluation_report: str) -> EvaluateOutputs:
    """Compare both models on the same rows (this run's holdout rows, its cross-fitted training
    rows, then the newest earlier holdout rows), decide, and write the decision record. The
    metric and its threshold are the task's (``auto``, ``-1``: its defaults)."""
    from components.data.chunks import Table
    from components.ml.models import load_model
    from components.records import ChallengerScores, ChampionScores
    from components.stages.evaluate import Freshness, evaluate, refits_the_champions_rows

    registry = Registry(registry_uri, model_name)
    (champion, champion_meta), pool = _champion(registry, champion_version), registry.holdout_pool()
    training = TrainingSummary.from_dict(read_json(Path(challenger) / TRAINING_FILE))
    metric, threshold = _gate_terms(metric, threshold, training.task)
    preprocess_counts = {key: int(value) for key, value in preprocess_counts.items()}
    model = load_model(Path(challenger) / MODEL_FILE, libraries=training.libraries,
                       model_type=training.model_type)
    evaluation = evaluate(
        model, champion, Table(evaluation_data), Table(pool.data) if pool.data else None,
        label_column=label_column, timestamp_column=timestamp_column, metric=metric,
        threshold=threshold, min_improvement=min_improvement,
        min_rows=min_evaluation_rows, max_rows=max_evaluation_rows, confidence=confidence,
        seed=preprocess_counts.get("seed", 0), champion_version=champion_version,
        cross_fitted=Table(cross_fitted) if cross_fitted else None,
        fresh_refit=refits_the_champions_rows(training.strategy, training.training_batches, champion_meta),
        freshness=Freshness(freshness_margin, freshness_confidence))
    ingested, verdict = IngestReport.from_dict(read_json(ingest_report)), evaluation.verdict
    record = DecisionRecord(
        run_id=run_id, model_name=model_name, decision=verdict.decision, reason=verdict.reason,
        cold_start=verdict.cold_start, metric=metric, threshold=threshold,
        min_improvement=min_improvement,
        params=dict(label_column=label_column, timestamp_column=timestamp_column,
                    task=training.task, strategy=training.requested_strategy,
                    model_type=training.model_type, model_config=training.model_config,
                    metric=metric, threshold=threshold, min_improvement=min_improvement,
                    confidence=confidence, min_evaluation_rows=min_evaluation_rows,
                    max_evaluation_rows=max_evaluation_rows, freshness_margin=freshness_margin,
                    freshness_confidence=freshness_confidence),
        champion=(ChampionScores(champion_version, evaluation.champion_scores)
                  if champion is not None else None),
        challenger=ChallengerScores(training, evaluation.challenger_scores),
        data={**ingested.data_window(), **preprocess_counts,
              "evaluation_rows": len(evaluation.rows.frame)},
        validation=validation_summary(validation_report), gate=evaluation.gate(),
        warnings=[pool.warning] if pool.warning else [])
    _write_decision(record, evaluation, decision_record=decision_record, comparison=comparison,
                    evaluation_report=evaluation_report)
    _write_deploy_inputs(prediction_sample, judged_rows, model, evaluation,
                         training.feature_kinds, label_column, timestamp_column)
    labels, matrix = evaluation.challenger.confusion()
    return EvaluateOutputs(verdict.decision, verdict.reason,
                           challenger=evaluation.challenger_scores,
                           champion=evaluation.champion_scores or {}, confusion_labels=labels,
                           confusion_matrix=matrix, roc=evaluation.challenger.roc_points())


def _gate_terms(metric: str, threshold: float, task: str) -> tuple[str, float | None]:
    """The gate metric and the bar it is held to, for the task (``auto`` and ``-1``: the
    task's defaults), once the task's rules are checked."""
    from components.outcomes import GateMetric
    from components.params import check_task_parameters, gate_threshold

    check_task_parameters({"metric": metric, "threshold": threshold}, task, "the evaluate stage")
    metric = GateMetric.resolved(metric, task)
    return metric, gate_threshold(threshold, metric)


def _write_decision(record: DecisionRecord, evaluation, *, decision_record: str,
                    comparison: str, evaluation_report: str) -> None:
    """The decision record, the comparison (Markdown) and the evaluation report (HTML)."""
    from components import reports

    for warning in record.warnings:
        print(f"warning: {warning}")
    write_json(decision_record, record.to_dict())
    write_text(comparison, reports.comparison_markdown(record))
    write_text(evaluation_report, reports.evaluation_html(record, evaluation.challenger,
                                                          evaluation.champion))
    print(f"decision: {record.decision}: {record.reason}")


def _write_deploy_inputs(prediction_sample: str, judged_rows: str, model, evaluation,
                         feature_kinds: dict, label_column: str, timestamp_column: str) -> None:
    """What deploy needs of the evaluation: the prediction sample for infra validation, and the
    rows judged on (their content hashes, so the version is never judged on them again; when
    each arrived and how the challenger did on it, kept with the version)."""
    import pandas as pd

    from components.data.roles import content_hashes
    from components.ml.concept_change import judged_columns

    _write_prediction_sample(prediction_sample, model, evaluation, feature_kinds, label_column)
    frame = evaluation.rows.frame
    hashes = content_hashes(frame, feature_kinds, label_column, timestamp_column)
    pd.DataFrame({"row_hash": hashes, **judged_columns(frame, evaluation.challenger,
                                                       timestamp_column)}).to_parquet(
        judged_rows, index=False)


def _write_prediction_sample(path: str, model, evaluation, feature_kinds: dict,
                             label_column: str) -> None:
    """The first evaluation rows as a V2 request with the challenger's predictions: what infra
    validation requires the published version to answer (the model's own answers, never the
    cross-fitted ones the gate may have judged these rows by)."""
    from components.ml.metrics import predict
    from components.serving.infra_validation import SAMPLE_ROWS, prediction_sample

    head = evaluation.rows.frame.head(SAMPLE_ROWS)
    predictions = predict(model, head, label_column)
    write_json(path, prediction_sample(head, feature_kinds, predictions.predicted[:len(head)],
                                       None if predictions.regression else
                                       predictions.probabilities[:len(head)]), compact=True)


# -- 6. deploy ---------------------------------------------------------------------------------
@dataclass
class DeployOutputs(StepResult):
    result: str = named_output()
    reason: str = named_output()
    version: str = named_output()


@stage_step(scientific=True)  # infra validation forks the server from scikit-learn's tier
def deploy_step(*, registry_uri: str, model_name: str, challenger: str, decision_record: str,
                run_id: str, label_column: str, timestamp_column: str, prediction_sample: str,
                evaluation_data: str, judged_rows: str, max_evaluation_rows: int,
                serving_namespace: str,
                canary_traffic_percent: int, serving_timeout_seconds: int, serving_image: str,
                serving_service_account: str, serving_resources: str) -> DeployOutputs:
    """Publish, check the published version serves evaluate's predictions, serve it on the
    cluster when a namespace is set, and promote; a failure or a lost race ends as ``rejected``
    (the alert step then reports it). An empty ``prediction_sample`` skips infra validation."""
    from components.serving.infra_validation import validate_serving
    from components.serving.kserve import serve_on_cluster
    from components.stages.deploy import deploy

    record = DecisionRecord.from_dict(read_json(decision_record))
    registry = Registry(registry_uri, model_name)
    folder = Path(challenger)
    extra_files = {name: (folder / name).read_bytes()
                   for name in (SCHEMA_FILE, STATISTICS_FILE, TRAINING_FILE)
                   if (folder / name).exists()}
    if judged_rows and Path(judged_rows).exists():
        extra_files[JUDGED_FILE] = Path(judged_rows).read_bytes()
    sample = read_json(prediction_sample) if prediction_sample else None
    target = _serving_target(serving_namespace, canary_traffic_percent, serving_timeout_seconds,
                             serving_image, serving_service_account, serving_resources)
    deployment = deploy(
        registry, model=(folder / MODEL_FILE).read_bytes(), record=record,
        run_id=run_id, label_column=label_column, timestamp_column=timestamp_column,
        extra_files=extra_files,
        check_serving=(lambda version: validate_serving(
            registry_uri=registry_uri, model_name=model_name, version=version,
            sample=sample)) if sample else None,
        serve_on_cluster=(lambda version: serve_on_cluster(registry, version, target))
        if target else None,
        new_holdout=evaluation_data or None, holdout_rows=max_evaluation_rows,
        judged_rows=_judged_hashes(judged_rows))
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
    return DeployOutputs(deployment.result, deployment.reason, deployment.version)


def _judged_hashes(path: str):
    """The content hashes evaluate wrote, or None (an older run's, or none given)."""
    if not path or not Path(path).exists():
        return None
    from components.data.chunks import Table

    return Table(path).read()["row_hash"].to_numpy()


def _serving_target(namespace: str, canary: int, timeout: int, image: str,
                    service_account: str, resources: str):
    """Where deploy serves the champion on the cluster, or None (the registry only)."""
    if not namespace:
        return None
    from components.serving.kserve import ServingTarget

    return ServingTarget.with_resources(resources, namespace=namespace, image=image,
                                        canary_traffic_percent=canary,
                                        service_account=service_account,
                                        timeout_seconds=timeout)


def _write_life_page(registry_uri: str, model_name: str, path: str) -> None:
    """The model's life page, for the KFP UI; a registry it cannot read gives a page saying
    so, never a failed exit handler."""
    from components.life_report import write_report
    from components.records import utc_now_iso

    try:
        write_report(Registry(registry_uri, model_name), path, generated_at=utc_now_iso())
    except Exception as error:  # noqa: BLE001 - the page must not fail the run's last task
        import html

        write_text(path, f"<!doctype html><meta charset=utf-8><p>The model's life page could "
                         f"not be made: {html.escape(f'{type(error).__name__}: {error}')}</p>")


# -- 7. alert ----------------------------------------------------------------------------------
@dataclass
class AlertOutputs(StepResult):
    alert_delivery: str


@stage_step
def alert_step(*, status: str, reason: str, registry_uri: str, model_name: str, run_id: str,
               alert_webhook_url: str, new_rows: int, alert_report: str,
               decision_record: str | None = None, validation_report: str | None = None,
               unpromoted_version: str = "") -> AlertOutputs:
    """Log, write and (if a webhook is set) POST the alert, then record the run's outcome with
    what became of the alert. A delivery failure is recorded, never raised."""
    from components import reports
    from components.stages import alert as alert_stage

    record = DecisionRecord.from_dict(read_json(decision_record)) if decision_record else None
    run_record = RunRecord.of(
        status=status, reason=reason, run_id=run_id, model_name=model_name, new_rows=new_rows,
        decision=record, unpromoted_version=unpromoted_version,
        validation=validation_summary(validation_report) if validation_report else None)
    payload = alert_stage.build_alert(
        status=status, reason=reason, model_name=model_name, run_id=run_id,
        details={"champion": run_record.champion, "challenger": run_record.challenger,
                 "new_rows": new_rows, "drift": run_record.drift,
                 "errors": [f for f in run_record.findings if f["severity"] == Severity.ERROR],
                 "warnings": run_record.warnings})
    delivery = alert_stage.send_alert(payload, alert_webhook_url)
    write_text(alert_report, reports.alert_markdown(payload))
    run_record.alert_delivery, run_record.alert_delivery_reason = delivery.status, delivery.reason
    Registry(registry_uri, model_name).write_run_record(run_id, run_record)
    return AlertOutputs(delivery.status)


@stage_step
def failure_alert_step(*, run_status: dict, registry_uri: str, model_name: str, run_id: str,
                       alert_webhook_url: str, failure_report: str,
                       model_report: str) -> AlertOutputs:
    """Exit handler: alert when the run failed outright, naming the stage and the cause from the
    run's journal; a finished run stays quiet. Either way, write the model's life page
    (``model_report``), this run included. ``run_status`` is KFP's final status of the run as
    ``state`` and ``error_message``."""
    _write_life_page(registry_uri, model_name, model_report)
    from components import reports
    from components.runtime.stage_runner import run_failure
    from components.stages import alert as alert_stage

    state = run_status.get("state") or ""
    if state in ("SUCCEEDED", ""):
        write_text(failure_report, f"Run {run_id} finished: {state or 'unknown'}; no alert.\n")
        return AlertOutputs(AlertDelivery.NONE)
    failure = run_failure(registry_uri, model_name, run_id, kfp_state=state,
                          kfp_message=run_status.get("error_message") or "")
    payload = alert_stage.build_alert(status=RunStatus.FAILED, reason=failure["reason"],
                                      model_name=model_name, run_id=run_id,
                                      details={"failure": failure})
    delivery = alert_stage.send_alert(payload, alert_webhook_url)
    write_text(failure_report, reports.alert_markdown(payload))
    return AlertOutputs(delivery.status)
