"""Run the compiled pipeline YAML on this machine with ``kfp.local``'s SubprocessRunner.

This runs the very file a user uploads to the KFP UI. Two values a KFP backend fills in at run
time are filled in here first, because ``kfp.local`` 2.17.0 cannot: the run's scheduled time
(``kfp.local`` raises ``IndexError`` on that placeholder) and the job id, which we choose so we
know where the run's record lands in the registry.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import shutil
import tempfile
import uuid
import warnings
from datetime import datetime, timezone
from pathlib import Path

from app.run_scope import DEFAULT_KEEP_RUNS, Redacting, run_scope
from components.outcomes import RunStatus
from components.registry import Registry
from components.runtime.warm_worker import running_worker
from components.steps import WARM_IMPORTS
from components.storage import StorageError, copy_folder
from pipelines import PIPELINE_NAME

SCHEDULE_TIME_PLACEHOLDER = "{{$.pipeline_job_schedule_time_utc}}"
JOB_ID_PLACEHOLDER = "{{$.pipeline_job_uuid}}"
# The last line of a Python traceback in a stage's log, e.g. "ValueError: ...".
_ERROR_LINE = re.compile(r"^\s*(?:[\w.]+\.)?([A-Z]\w*(?:Error|Exception)):\s*(.+)$")


class PipelineRunError(RuntimeError):
    """The pipeline run failed outright (a stage crashed); the message is one line.

    ``record`` is what ``retrain run --json`` prints for it: ``status: failed``, the run id,
    the stage and the cause when the journal names them, the reason and the log.
    """

    def __init__(self, message: str, record: dict | None = None):
        super().__init__(message)
        self.record = record or {}


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus a random suffix."""
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def fill_runtime_placeholders(spec_text: str, *, run_id: str, scheduled_time: str) -> str:
    """Substitute what a KFP backend would: the scheduled time and the job id."""
    return (spec_text.replace(SCHEDULE_TIME_PLACEHOLDER, scheduled_time)
            .replace(JOB_ID_PLACEHOLDER, run_id))


def without_retries(documents: list[dict]) -> list[dict]:
    """The spec documents minus task retry policies: on a cluster ingest and deploy retry
    transient storage errors with a 30 s backoff; run by hand on a laptop, a failure should show
    at once (the storage client still retries its own calls)."""

    def strip(node):
        if isinstance(node, dict):
            return {key: strip(value) for key, value in node.items() if key != "retryPolicy"}
        if isinstance(node, list):
            return [strip(value) for value in node]
        return node

    return [strip(documents[0]), *documents[1:]]


def parse_spec(spec_text: str) -> list[dict]:
    """The YAML documents of a compiled spec, parsed with libyaml once (kfp parses it in pure
    Python, twice)."""
    import yaml

    return list(yaml.load_all(spec_text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))


def load_pipeline(documents: list[dict], spec_text: str):
    """The runnable kfp component for already parsed spec documents.

    What ``kfp.components.load_component_from_text`` returns, without parsing the text again
    (kfp re-parses it on every access of ``pipeline_spec``).
    """
    from google.protobuf import json_format
    from kfp.dsl import structures, yaml_component
    from kfp.pipeline_spec import pipeline_spec_pb2

    pipeline_dict, platform_dict = documents[0], (documents[1] if len(documents) > 1 else {})
    parsed = json_format.ParseDict(pipeline_dict, pipeline_spec_pb2.PipelineSpec())

    class ParsedYamlComponent(yaml_component.YamlComponent):
        @property
        def pipeline_spec(self):
            return parsed

    return ParsedYamlComponent(
        component_spec=structures.ComponentSpec.from_ir_dicts(pipeline_dict, platform_dict),
        component_yaml=spec_text)


def last_error(log_text: str) -> str:
    """The last exception line in a run's log, or a pointer to the log if there is none."""
    for line in reversed(log_text.splitlines()):
        match = _ERROR_LINE.match(line)
        if match:
            return f"{match.group(1)}: {match.group(2).strip()}"
    return ""


def run_compiled_pipeline(
    pipeline_path: str | Path,
    arguments: dict,
    *,
    pipeline_root: str | Path,
    run_id: str | None = None,
    scheduled_time: str | None = None,
    log_path: str | Path | None = None,
    stream_logs: bool = False,
    warm_worker: bool = True,
    keep_runs: int = DEFAULT_KEEP_RUNS,
) -> dict:
    """Run the compiled YAML locally and return the run record the pipeline left in the registry.

    Args:
        pipeline_path: The compiled pipeline YAML.
        arguments: Pipeline parameters (must include ``registry_uri`` and ``model_name``).
        pipeline_root: Folder for the run's artifacts and logs (a ``gs://`` root gets a copy
            of them after the run).
        run_id: Job id to use; a new one by default.
        scheduled_time: What a recurring run's scheduled time would be; now by default.
        log_path: Where the stages' logs go (default: ``<pipeline_root>/logs/<run_id>.log``).
        stream_logs: Also echo the logs to the terminal.
        warm_worker: Run the stages' work in a worker that imports the libraries once
            (:mod:`components.runtime.warm_worker`); False runs each stage wholly in its own
            process.
        keep_runs: How many runs' artifact folders and logs a local ``pipeline_root`` keeps,
            the newest (0: all); nothing else there, and never the registry, is touched.

    Returns:
        The run record (``status``, ``reason``, ``new_rows``, champion and challenger, ...).

    Raises:
        PipelineRunError: A stage failed; the message names the error.
    """
    run_id = run_id or new_run_id()
    scheduled_time = scheduled_time or datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if str(pipeline_root).startswith("gs://"):
        return _run_with_remote_root(pipeline_path, arguments, remote_root=str(pipeline_root),
                                     run_id=run_id, scheduled_time=scheduled_time,
                                     stream_logs=stream_logs, warm_worker=warm_worker)
    pipeline_root = Path(pipeline_root).absolute()
    log_path = Path(log_path or pipeline_root / "logs" / f"{run_id}.log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    earlier = set(run_folders(pipeline_root))
    try:
        with run_scope(arguments) as (temporary_root, given, secrets), \
                running_worker(warm_worker, under=temporary_root, imports=WARM_IMPORTS):
            # the worker imports while kfp starts
            _execute(pipeline_path, given, pipeline_root=pipeline_root, run_id=run_id,
                     scheduled_time=scheduled_time, log_path=log_path,
                     stream_logs=stream_logs, secrets=secrets)
        artifacts = _new_folder(pipeline_root, earlier)
        return _run_record(arguments, run_id, log_path, artifacts)
    finally:
        if keep_runs:
            prune_runs(pipeline_root, keep_runs)


def run_folders(pipeline_root: Path) -> list[Path]:
    """The runs' artifact folders under a local pipeline root, oldest first (kfp.local names
    each after the pipeline and the time it started)."""
    if not pipeline_root.is_dir():
        return []
    return sorted(p for p in pipeline_root.iterdir()
                  if p.is_dir() and p.name.startswith(f"{PIPELINE_NAME}-"))


def _new_folder(pipeline_root: Path, earlier: set[Path]) -> Path | None:
    made = [folder for folder in run_folders(pipeline_root) if folder not in earlier]
    return made[-1] if made else None


def prune_runs(pipeline_root: Path, keep: int) -> list[Path]:
    """Remove all but the newest ``keep`` runs' artifact folders and logs under a local
    pipeline root; returns what went. Nothing else is touched (the registry never lives in a
    run's folder)."""
    logs = sorted((pipeline_root / "logs").glob("*.log")) if (pipeline_root / "logs").is_dir() \
        else []
    gone = run_folders(pipeline_root)[:-keep] + logs[:-keep]
    for path in gone:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return gone


def resolve_named_outputs_in_conditions() -> None:
    """Let kfp.local evaluate conditions on named task outputs, as a KFP backend does.

    kfp.local 2.17.0's ``ConditionEvaluator`` resolves a condition's channel as a task output
    only when the output is called ``Output``; ``pipelinechannel--ingest-outcome`` it looks up as
    a parent input, finds nothing, and the branch never runs. A channel is ``<task>-<output>``
    and an output name has no ``-``, so the task output is tried first, then kfp's own lookup.
    """
    from kfp.local.orchestrator.enhanced_dag_orchestrator import ConditionEvaluator

    original = ConditionEvaluator._resolve_pipeline_channel
    if getattr(original, "resolves_named_outputs", False):
        return

    def resolve(channel_ref: str, io_store):
        task, _, key = channel_ref.removeprefix("pipelinechannel--").rpartition("-")
        if task and key != "Output":
            try:
                return io_store.get_task_output(task, key)
            except (ValueError, KeyError):
                pass
        return original(channel_ref, io_store)

    resolve.resolves_named_outputs = True
    ConditionEvaluator._resolve_pipeline_channel = staticmethod(resolve)


def _execute(pipeline_path, arguments: dict, *, pipeline_root: Path, run_id: str,
             scheduled_time: str, log_path: Path, stream_logs: bool, secrets: list[str]) -> None:
    """Run the spec under kfp.local with every stage's output going to ``log_path``."""
    from kfp import local

    resolve_named_outputs_in_conditions()

    spec_text = fill_runtime_placeholders(Path(pipeline_path).read_text(), run_id=run_id,
                                          scheduled_time=scheduled_time)
    pipeline = load_pipeline(without_retries(parse_spec(spec_text)), spec_text)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(pipeline_root),
               raise_on_error=False)
    with open(log_path, "w") as log, warnings.catch_warnings():
        # kfp.local warns when an image name lacks "python"; ours is the project image.
        warnings.simplefilter("ignore", RuntimeWarning)
        sink = Redacting(_Tee(log) if stream_logs else log, secrets)
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            pipeline(**arguments)


def _run_record(arguments: dict, run_id: str, log_path: Path, artifacts: Path | None) -> dict:
    """The record the run left in the registry; a run that left none failed."""
    try:
        record = Registry(arguments["registry_uri"], arguments["model_name"]).run_record(run_id)
    except StorageError:  # the registry is unreachable: the stage's own error says more
        record = None
    if record is None:
        from components.runtime.stage_runner import run_failure

        failure = run_failure(arguments["registry_uri"], arguments["model_name"], run_id,
                              kfp_message="a stage failed")
        reason = failure["reason"]
        if reason.startswith("the run ended"):  # the journal is silent: read the log
            reason = last_error(log_path.read_text()) or reason
        raise PipelineRunError(f"run {run_id} failed: {reason} (log: {log_path})", {
            "status": RunStatus.FAILED, "reason": reason, "run_id": run_id,
            "model_name": arguments["model_name"], "stage": failure.get("stage"),
            "cause": (f"{failure['error_type']}: {failure['message']}"
                      if failure.get("error_type") else None),
            "concerns": failure.get("concerns") or None, "log": str(log_path),
            "artifacts": str(artifacts) if artifacts else None})
    return dataclasses.replace(record, log=str(log_path),
                               artifacts=str(artifacts) if artifacts else None).to_dict()


def _run_with_remote_root(pipeline_path, arguments: dict, *, remote_root: str, **options) -> dict:
    """kfp.local writes artifacts to local paths only: run in a scratch folder, then copy the
    artifacts and the log up to the gs:// root (also when the run failed)."""
    with tempfile.TemporaryDirectory(prefix="retrain-root-") as scratch:
        try:
            record = run_compiled_pipeline(pipeline_path, arguments, pipeline_root=scratch,
                                           **options)
        except PipelineRunError as error:
            copy_folder(scratch, remote_root)
            moved = {key: value.replace(scratch, remote_root) if isinstance(value, str) else
                     value for key, value in error.record.items()}
            raise PipelineRunError(str(error).replace(scratch, remote_root), moved) from error
        copy_folder(scratch, remote_root)
    record["log"] = record["log"].replace(scratch, remote_root)
    return record


class _Tee:
    """Write to a log file and to the real stdout."""

    def __init__(self, log):
        import sys

        self._targets = (log, sys.__stdout__)

    def write(self, text):
        for target in self._targets:
            target.write(text)
        return len(text)

    def flush(self):
        for target in self._targets:
            target.flush()
