"""The pipeline's stages called in one process, for simulations and as the bench's floor.

The product is the compiled YAML (``retrain run`` runs it through kfp.local); this calls the same
step functions the components call, in the pipeline's order and on its conditions, without a
process per stage: what a year of monthly runs over a ground-truth stream needs to be cheap
(:mod:`app.concept_streams`, ``make bench`` part 8). A test checks that both give the same
decisions. No alert is sent: the outcome that would alert is returned.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from pathlib import Path

from components.outcomes import DeployResult, GateDecision, IngestOutcome, ValidateDecision
from components.params import PARAMETERS

ARTIFACTS = ("new", "history", "ingest.json", "validation.json", "validation.md", "drift.html",
             "schema.json", "train", "validation", "evaluation", "clean_history", "model",
             "trace.md", "decision.json", "comparison.md", "prediction_sample")


@dataclass
class StageRun:
    """Where one run's artifacts are, what each stage returned, and how the run ended."""

    paths: dict[str, str]
    outcomes: dict[str, dict] = field(default_factory=dict)
    status: str = ""
    reason: str = ""
    version: str = ""


def parameters(**given) -> dict:
    """The pipeline's parameters: the table's defaults, with ``given`` ones in their place."""
    unknown = set(given) - {p.name for p in PARAMETERS}
    if unknown:
        raise TypeError(f"not pipeline parameters: {', '.join(sorted(unknown))}")
    return {p.name: given.get(p.name, p.default) for p in PARAMETERS}


def run_stages(params: dict, work: str | Path, run_id: str, *, deploy: bool = True,
               infra_validation: bool = False, quiet: bool = True) -> StageRun:
    """One run of the pipeline's stages over ``params`` (see :func:`parameters`), artifacts in
    ``work``. ``deploy=False`` stops after evaluate; ``infra_validation`` starts the model
    server on the published version as deploy does in the pipeline (about a second)."""
    output = contextlib.ExitStack()
    if quiet:
        output.enter_context(contextlib.redirect_stdout(io.StringIO()))
        output.enter_context(contextlib.redirect_stderr(io.StringIO()))
    with output:
        return _run(params, Path(work), run_id, deploy, infra_validation)


def _run(p: dict, work: Path, run_id: str, deploy: bool, infra_validation: bool) -> StageRun:
    from components import steps

    work.mkdir(parents=True, exist_ok=True)
    run = StageRun({name: str(work / name) for name in ARTIFACTS})
    path = run.paths
    common = dict(registry_uri=p["registry_uri"], model_name=p["model_name"], run_id=run_id)
    columns = dict(label_column=p["label_column"], timestamp_column=p["timestamp_column"])
    ingest = run.outcomes["ingest"] = steps.ingest_step(
        source_uri=p["source_uri"], timestamp_column=p["timestamp_column"], cutoff=p["cutoff"],
        scheduled_time="", strategy=p["strategy"], window_days=p["window_days"],
        new_data_path=path["new"], history_path=path["history"],
        report_path=path["ingest.json"], **common)
    if ingest["outcome"] != IngestOutcome.NEW_DATA:
        run.status = ingest["outcome"]
        return run
    champion = ingest["champion_version"]
    validate = run.outcomes["validate"] = steps.validate_step(
        new_data_path=path["new"], ingest_report_path=path["ingest.json"],
        champion_version=champion, min_rows=p["min_rows"], retrain_when=p["retrain_when"],
        schema_uri=p["schema_uri"], validation_thresholds=p["validation_thresholds"],
        report_path=path["validation.json"], markdown_path=path["validation.md"],
        html_path=path["drift.html"], schema_path=path["schema.json"], **columns, **common)
    if validate["decision"] != ValidateDecision.RETRAIN:
        run.status, run.reason = validate["decision"], validate["reason"]
        return run
    counts = run.outcomes["preprocess"] = steps.preprocess_step(
        new_data_path=path["new"], history_path=path["history"],
        schema_path=path["schema.json"], ingest_report_path=path["ingest.json"],
        validation_fraction=p["validation_fraction"], holdout_fraction=p["holdout_fraction"],
        train_path=path["train"], validation_path=path["validation"],
        evaluation_path=path["evaluation"], history_out_path=path["clean_history"], **columns,
        **common)
    run.outcomes["retrain"] = steps.retrain_step(
        train_path=path["train"], validation_path=path["validation"],
        history_path=path["clean_history"], schema_path=path["schema.json"],
        champion_version=champion, strategy=p["strategy"], model_type=p["model_type"],
        metric=p["metric"], epochs=p["epochs"], window_days=p["window_days"],
        window_files=p["window_files"], decision_threshold=p["decision_threshold"],
        seed=counts["seed"], model_dir=path["model"], trace_markdown_path=path["trace.md"],
        **columns, **common)
    evaluation = run.outcomes["evaluate"] = steps.evaluate_step(
        challenger_dir=path["model"], evaluation_path=path["evaluation"],
        ingest_report_path=path["ingest.json"], validation_report_path=path["validation.json"],
        preprocess_counts=counts, champion_version=champion, strategy=p["strategy"],
        model_type=p["model_type"], metric=p["metric"], threshold=p["threshold"],
        min_improvement=p["min_improvement"], confidence=p["confidence"],
        min_evaluation_rows=p["min_evaluation_rows"],
        max_evaluation_rows=p["max_evaluation_rows"], decision_record_path=path["decision.json"],
        comparison_path=path["comparison.md"], prediction_sample_path=path["prediction_sample"],
        **columns, **common)
    run.reason = evaluation["reason"]
    if evaluation["decision"] != GateDecision.DEPLOY:
        run.status = DeployResult.REJECTED
        return run
    if not deploy:
        run.status = GateDecision.DEPLOY
        return run
    result = run.outcomes["deploy"] = steps.deploy_step(
        challenger_dir=path["model"], decision_record_path=path["decision.json"],
        prediction_sample_path=path["prediction_sample"] if infra_validation else "",
        evaluation_path=path["evaluation"], max_evaluation_rows=p["max_evaluation_rows"],
        registry_uri=p["registry_uri"], model_name=p["model_name"], run_id=run_id, **columns)
    run.status, run.reason, run.version = result["result"], result["reason"], result["version"]
    return run
