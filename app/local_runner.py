"""Run the compiled pipeline YAML on this machine with ``kfp.local``'s SubprocessRunner.

This runs the very file a user uploads to the KFP UI. Two values a KFP backend fills in at run
time are filled in here first, because ``kfp.local`` 2.17.0 cannot: the run's scheduled time
(``kfp.local`` raises ``IndexError`` on that placeholder) and the job id, which we choose so we
know where the run's record lands in the registry.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
import uuid
import warnings
from datetime import datetime, timezone
from pathlib import Path

from app.warm_worker import running_worker
from components.registry import Registry
from components.storage import StorageError

SCHEDULE_TIME_PLACEHOLDER = "{{$.pipeline_job_schedule_time_utc}}"
JOB_ID_PLACEHOLDER = "{{$.pipeline_job_uuid}}"
# The last line of a Python traceback in a stage's log, e.g. "ValueError: ...".
_ERROR_LINE = re.compile(r"^\s*(?:[\w.]+\.)?([A-Z]\w*(?:Error|Exception)):\s*(.+)$")


class PipelineRunError(RuntimeError):
    """The pipeline run failed outright (a stage crashed); the message is one line."""


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
    """The YAML documents of a compiled spec, parsed with libyaml (kfp's pure-Python parse of
    our spec takes over a second, twice)."""
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
            (:mod:`app.warm_worker`); False runs each stage wholly in its own process.

    Returns:
        The run record (``status``, ``reason``, ``new_rows``, champion and challenger, ...).

    Raises:
        PipelineRunError: A stage failed; the message names the error.
    """
    run_id = run_id or new_run_id()
    scheduled_time = scheduled_time or datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if str(pipeline_root).startswith("gs://"):
        # kfp.local writes artifacts to local paths only: run in a scratch folder, then copy
        # the artifacts and the log up to the gs:// root (also when the run failed).
        remote_root = str(pipeline_root)
        with tempfile.TemporaryDirectory(prefix="retrain-root-") as scratch:
            try:
                record = run_compiled_pipeline(
                    pipeline_path, arguments, pipeline_root=scratch, run_id=run_id,
                    scheduled_time=scheduled_time, stream_logs=stream_logs,
                    warm_worker=warm_worker)
            except PipelineRunError as error:
                upload_tree(scratch, remote_root)
                raise PipelineRunError(str(error).replace(scratch, remote_root)) from error
            upload_tree(scratch, remote_root)
        record["log"] = record["log"].replace(scratch, remote_root)
        return record
    pipeline_root = Path(pipeline_root).absolute()
    log_path = Path(log_path or pipeline_root / "logs" / f"{run_id}.log")
    log_path.parent.mkdir(parents=True, exist_ok=True)

    with running_worker(warm_worker):  # first: it imports while kfp.local starts
        from kfp import local

        spec_text = fill_runtime_placeholders(Path(pipeline_path).read_text(), run_id=run_id,
                                              scheduled_time=scheduled_time)
        pipeline = load_pipeline(without_retries(parse_spec(spec_text)), spec_text)
        local.init(runner=local.SubprocessRunner(use_venv=False),
                   pipeline_root=str(pipeline_root), raise_on_error=False)
        with open(log_path, "w") as log, warnings.catch_warnings():
            # kfp.local warns when an image name lacks "python"; ours is the project image.
            warnings.simplefilter("ignore", RuntimeWarning)
            sink = _Tee(log) if stream_logs else log
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                pipeline(**arguments)

    try:
        record = Registry(arguments["registry_uri"], arguments["model_name"]).run_record(run_id)
    except StorageError:  # the registry is unreachable: the stage's own error says more
        record = None
    if record is None:
        error = last_error(log_path.read_text()) or "a stage failed"
        raise PipelineRunError(f"run {run_id} failed: {error} (log: {log_path})")
    record["log"] = str(log_path)
    return record


def upload_tree(folder: str | Path, target_uri: str) -> int:
    """Copy every file under ``folder`` to ``target_uri`` (any storage); returns the count."""
    from components.storage import join_uri, storage_for

    storage, count = storage_for(target_uri), 0
    for path in sorted(Path(folder).rglob("*")):
        if path.is_file():
            storage.write_bytes(join_uri(target_uri, path.relative_to(folder).as_posix()),
                                path.read_bytes())
            count += 1
    return count


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
