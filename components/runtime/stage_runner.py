"""The one wrapper every step runs in: :func:`stage_step`.

It checks the pipeline parameters the step takes (:mod:`components.params`), journals the step in
the registry (``runs/<run_id>/stages/<stage>.json``: running, then succeeded or failed with the
exception's type, message and the file or object it concerns), and runs the step here or in the
warm worker (:mod:`components.runtime.delegation`). The exit handler reads the journal, so a failure alert
names the stage and the cause, on a cluster as locally; a stage still marked running was killed
without a traceback. In a local run the step also ends with the run (:mod:`components.runtime.lifeline`).
"""

from __future__ import annotations

import functools
import time

from components.params import SECRET_PARAMETERS, checks_parameters, redacted_url
from components.records import JournalEntry, bounded, utc_now_iso
from components.runtime.delegation import delegated, peak_rss_mib
from components.runtime.lifeline import end_with_owner, exit_now

MESSAGE_LIMIT = 1000  # characters of an exception message kept in the journal and the alert


class StageState:
    """Where a stage is, as its journal entry says."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


def describe_failure(error: BaseException, secrets: list[str]) -> dict:
    """The exception's type, first line (bounded, secrets redacted) and what it concerns."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    for secret in secrets:
        text = text.replace(secret, redacted_url(secret))
    text = bounded(text, MESSAGE_LIMIT)
    concerns = getattr(error, "uri", None) or getattr(error, "filename", None) or ""
    return {"error_type": type(error).__name__, "message": text, "concerns": str(concerns)}


class StageJournal:
    """One stage's entry in the run's journal; writing it never fails the stage."""

    def __init__(self, registry, run_id: str, stage: str):
        self.registry, self.run_id, self.stage = registry, run_id, stage
        self.started_at = utc_now_iso()
        self.clock = time.monotonic()

    @classmethod
    def of(cls, stage: str, kwargs: dict) -> StageJournal | None:
        """The journal of a step that knows its registry and run, else None."""
        if not all(kwargs.get(key) for key in ("registry_uri", "model_name", "run_id")):
            return None
        from components.registry import Registry

        try:
            registry = Registry(kwargs["registry_uri"], kwargs["model_name"])
        except ValueError:  # a bad name: the parameter check reports it
            return None
        return cls(registry, kwargs["run_id"], stage)

    def _write(self, state: str, **details) -> None:
        entry = JournalEntry(self.stage, state, self.started_at, **details)
        try:
            self.registry.write_stage_entry(self.run_id, entry)
        except Exception as error:  # noqa: BLE001 - the journal must not fail the stage
            print(f"stage journal not written ({type(error).__name__}: {error})", flush=True)

    def running(self) -> None:
        self._write(StageState.RUNNING)

    def ended(self, error: BaseException | None, secrets: list[str]) -> None:
        seconds = round(time.monotonic() - self.clock, 2)
        finished = {"finished_at": utc_now_iso(), "seconds": seconds,
                    "peak_rss_mib": round(max(peak_rss_mib(), getattr(error, "peak_rss_mib", 0)))}
        if error is None:
            self._write(StageState.SUCCEEDED, **finished)
        else:
            self._write(StageState.FAILED, **finished, **describe_failure(error, secrets))


def stage_step(step=None, *, scientific=False):
    """Wrap a step: parameter checks, the journal, the warm worker, the run's lifeline.

    ``scientific`` is :func:`components.runtime.delegation.delegated`'s: the step needs scipy or
    scikit-learn.
    """
    if step is None:
        return functools.partial(stage_step, scientific=scientific)
    runner = delegated(checks_parameters(step), scientific=scientific)
    stage = step.__name__.removesuffix("_step")

    @functools.wraps(step)
    def run(**kwargs):
        end_with_owner(exit_now)
        journal = StageJournal.of(stage, kwargs)
        if journal:
            journal.running()
        secrets = [kwargs[name] for name in SECRET_PARAMETERS if kwargs.get(name)]
        try:
            result = runner(**kwargs)
        except BaseException as error:
            if journal:
                journal.ended(error, secrets)
            raise
        if journal:
            journal.ended(None, secrets)
        return result

    run.__delegated__ = runner.__delegated__  # what the warm worker's child runs
    return run


def run_failure(registry_uri: str, model_name: str, run_id: str, *, kfp_state: str = "",
                kfp_message: str = "") -> dict:
    """Why a run failed, from its journal: the stage, the exception and what it concerns, or
    the stage that was killed without a traceback; KFP's own words when the journal is silent."""
    try:
        from components.registry import Registry

        entries = Registry(registry_uri, model_name).stage_entries(run_id)
    except Exception as error:  # noqa: BLE001 - the registry may be what failed
        entries, unreadable = {}, f"{type(error).__name__}: {error}"
    else:
        unreadable = ""
    failed = sorted((e for e in entries.values() if e.state == StageState.FAILED),
                    key=lambda e: e.finished_at or "")
    running = [e for e in entries.values() if e.state == StageState.RUNNING]
    if failed:
        first = failed[0]
        concerns = first.concerns or ""
        where = f" ({concerns})" if concerns and concerns not in first.message else ""
        reason = f"{first.stage} failed: {first.error_type}: {first.message}{where}"
        return {**first.to_dict(), "reason": reason}
    if running:
        stage = running[0]
        from datetime import datetime

        started = datetime.fromisoformat(stage.started_at.replace("Z", "+00:00"))
        seconds = (datetime.now(started.tzinfo) - started).total_seconds()
        return {**stage.to_dict(), "seconds": round(seconds, 1),
                "reason": f"{stage.stage} was killed without a traceback after about "
                          f"{seconds:.0f} s (out of memory, or a signal)"}
    reason = f"the run ended {kfp_state or 'FAILED'}: {kfp_message or 'no stage said why'}"
    if unreadable:
        reason += f" (the run's journal could not be read: {unreadable})"
    return {"reason": reason}
