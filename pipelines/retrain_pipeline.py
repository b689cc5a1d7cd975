"""The retraining pipeline: it only wires the stages of :mod:`components.kfp_components` together.

ingest -> validate -> preprocess -> retrain -> evaluate -> deploy (if the gate passes) or alert.
Every branch is a condition on an outcome a stage returns (:mod:`components.outcomes`); an exit
handler alerts when a stage fails. The pipeline's parameters are those of
:data:`components.params.PARAMETERS`, and what it is compiled for (the image, cluster options)
is passed to :func:`build_pipeline`: nothing is read from the environment.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from kfp import compiler, dsl

from components import params
from components.kfp_components import make_components
from components.outcomes import DeployResult, GateDecision, IngestOutcome, ValidateDecision
from pipelines import COMPILED_PIPELINE
from pipelines.cluster import DEFAULT_IMAGE, ClusterOptions

PIPELINE_NAME = "retrain-pipeline"
DESCRIPTION = ("Retrains a tabular scikit-learn model on new data and deploys it only when it "
               "beats the champion; otherwise alerts the team.")
SUMMARY = "Retrain, evaluate against the champion, deploy or alert."

__all__ = ["COMPILED_PIPELINE", "build_pipeline", "compile_pipeline"]


class _Wiring:
    """The components on one image, the cluster options, and the pipeline's parameter channels."""

    def __init__(self, image: str, options: ClusterOptions, parameters: SimpleNamespace):
        self.image = image
        self.stages = make_components(image)
        self.options = options
        self.p = parameters
        self.run_id = dsl.PIPELINE_JOB_ID_PLACEHOLDER

    def task(self, stage: str, **inputs):
        """A task of ``stage`` with the cluster options applied."""
        return self.options.apply(getattr(self.stages, stage)(**inputs), stage)

    def alert_team(self, ingest, status: str, reason, decision_record=None,
                   validation_report=None, unpromoted_version=None):
        extra = {name: value for name, value in (
            ("decision_record", decision_record), ("validation_report", validation_report),
            ("unpromoted_version", unpromoted_version)) if value is not None}
        return self.task("alert", status=status, reason=reason, registry_uri=self.p.registry_uri,
                         model_name=self.p.model_name, run_id=self.run_id,
                         alert_webhook_url=self.p.alert_webhook_url,
                         new_rows=ingest.outputs["new_rows"], **extra)


def _wire(w: _Wiring) -> None:
    p = w.p
    on_failure = w.task("alert_on_failure", registry_uri=p.registry_uri,
                        model_name=p.model_name, run_id=w.run_id,
                        alert_webhook_url=p.alert_webhook_url)
    with dsl.ExitHandler(on_failure):
        ingest = w.task(
            "ingest", source_uri=p.source_uri, registry_uri=p.registry_uri,
            model_name=p.model_name, timestamp_column=p.timestamp_column, cutoff=p.cutoff,
            scheduled_time=dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER, run_id=w.run_id,
            strategy=p.strategy, window_days=p.window_days)
        ingest.set_caching_options(False)  # new data must be read, never replayed
        with dsl.If(ingest.outputs["outcome"] == IngestOutcome.NEW_DATA, name="new-data"):
            _validate_then_train(w, ingest)


def _validate_then_train(w: _Wiring, ingest) -> None:
    p = w.p
    validate = w.task(
        "validate", new_data=ingest.outputs["new_data"],
        ingest_report=ingest.outputs["ingest_report"], registry_uri=p.registry_uri,
        model_name=p.model_name, champion_version=ingest.outputs["champion_version"],
        label_column=p.label_column, timestamp_column=p.timestamp_column, min_rows=p.min_rows,
        retrain_when=p.retrain_when, schema_uri=p.schema_uri,
        validation_thresholds=p.validation_thresholds, run_id=w.run_id)
    # "skipped" (the retrain_when policy said no) takes neither branch: validate has recorded
    # the run, and nobody is alerted.
    with dsl.If(validate.outputs["decision"] == ValidateDecision.RETRAIN, name="retrain"):
        _train_evaluate_deploy(w, ingest, validate)
    with dsl.Elif(validate.outputs["decision"] == ValidateDecision.INVALID_DATA,
                  name="invalid-data"):
        w.alert_team(ingest, ValidateDecision.INVALID_DATA, validate.outputs["summary"],
                     validation_report=validate.outputs["validation_report"])


def _train_evaluate_deploy(w: _Wiring, ingest, validate) -> None:
    p = w.p
    champion_version = ingest.outputs["champion_version"]
    preprocess = w.task(
        "preprocess", new_data=ingest.outputs["new_data"], history=ingest.outputs["history"],
        schema=validate.outputs["schema"], ingest_report=ingest.outputs["ingest_report"],
        registry_uri=p.registry_uri, model_name=p.model_name, run_id=w.run_id,
        label_column=p.label_column, timestamp_column=p.timestamp_column,
        validation_fraction=p.validation_fraction, holdout_fraction=p.holdout_fraction)
    retrain = w.task(
        "retrain", train_data=preprocess.outputs["train_data"],
        validation_data=preprocess.outputs["validation_data"],
        clean_history=preprocess.outputs["clean_history"], schema=validate.outputs["schema"],
        registry_uri=p.registry_uri, model_name=p.model_name, champion_version=champion_version,
        label_column=p.label_column, timestamp_column=p.timestamp_column, strategy=p.strategy,
        model_type=p.model_type, metric=p.metric, epochs=p.epochs, window_days=p.window_days,
        window_files=p.window_files, decision_threshold=p.decision_threshold,
        seed=preprocess.outputs["seed"], run_id=w.run_id)
    evaluate = w.task(
        "evaluate", challenger=retrain.outputs["challenger"],
        evaluation_data=preprocess.outputs["evaluation_data"],
        ingest_report=ingest.outputs["ingest_report"],
        validation_report=validate.outputs["validation_report"],
        preprocess_counts=preprocess.outputs["counts"], registry_uri=p.registry_uri,
        model_name=p.model_name, champion_version=champion_version, label_column=p.label_column,
        timestamp_column=p.timestamp_column, strategy=p.strategy, model_type=p.model_type,
        metric=p.metric, threshold=p.threshold, min_improvement=p.min_improvement,
        confidence=p.confidence, min_evaluation_rows=p.min_evaluation_rows,
        max_evaluation_rows=p.max_evaluation_rows, run_id=w.run_id)
    decision_record = evaluate.outputs["decision_record"]
    with dsl.If(evaluate.outputs["decision"] == GateDecision.DEPLOY, name="deploy"):
        serving = w.options.resources.get("serving") or {}
        deploy = w.task(
            "deploy", challenger=retrain.outputs["challenger"], decision_record=decision_record,
            prediction_sample=evaluate.outputs["prediction_sample"],
            evaluation_data=preprocess.outputs["evaluation_data"],
            max_evaluation_rows=p.max_evaluation_rows,
            registry_uri=p.registry_uri, model_name=p.model_name, run_id=w.run_id,
            label_column=p.label_column, timestamp_column=p.timestamp_column,
            serving_namespace=p.serving_namespace,
            canary_traffic_percent=p.canary_traffic_percent,
            serving_timeout_seconds=p.serving_timeout_seconds, serving_image=w.image,
            serving_service_account=w.options.serving_service_account,
            serving_resources=",".join(filter(None, (serving.get("cpu"), serving.get("memory")))))
        with dsl.If(deploy.outputs["result"] == DeployResult.REJECTED, name="champion-changed"):
            w.alert_team(ingest, DeployResult.REJECTED, deploy.outputs["reason"],
                         decision_record, unpromoted_version=deploy.outputs["version"])
    with dsl.Else(name="reject"):
        w.alert_team(ingest, DeployResult.REJECTED, evaluate.outputs["reason"], decision_record)


def build_pipeline(image: str = DEFAULT_IMAGE, options: ClusterOptions | None = None):
    """The pipeline with its components on ``image`` and ``options`` applied."""
    options = options or ClusterOptions()
    names = [parameter.name for parameter in params.PARAMETERS]

    def retrain_pipeline(*channels):  # KFP passes one channel per parameter, in order
        _wire(_Wiring(image, options, SimpleNamespace(**dict(zip(names, channels, strict=True)))))

    retrain_pipeline.__signature__ = params.pipeline_signature()
    retrain_pipeline.__doc__ = params.docstring(SUMMARY, names)
    return dsl.pipeline(name=PIPELINE_NAME, description=DESCRIPTION)(retrain_pipeline)


def compile_pipeline(output_path: str | Path = COMPILED_PIPELINE, *, image: str = DEFAULT_IMAGE,
                     options: ClusterOptions | None = None) -> Path:
    """Compile the pipeline to YAML (deterministic: the same arguments give the same bytes)."""
    compiler.Compiler().compile(build_pipeline(image, options), package_path=str(output_path))
    return Path(output_path)
