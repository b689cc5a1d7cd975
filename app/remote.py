"""Talk to a KFP cluster: upload the compiled YAML, start runs, manage recurring runs.

Everything goes through ``kfp.Client`` (the KFP v2beta1 REST API). Authentication is what the
client supports, from the environment only: a bearer token in ``KFP_TOKEN`` (for example
``kubectl create token ...``), else the client's own lookup (in-cluster service account token,
kubeconfig credentials). Tokens are never printed or logged.
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass
from datetime import datetime, timezone

from app.cron import next_run_times, to_kfp_cron

TOKEN_ENV = "KFP_TOKEN"


class RemoteError(RuntimeError):
    """The KFP API could not be reached or refused a call; the message names the host."""


@dataclass(frozen=True)
class Uploaded:
    pipeline_id: str
    version_id: str


def connect(host: str):
    """A ``kfp.Client`` for ``host``; raises :class:`RemoteError` when nothing answers there."""
    import warnings

    from kfp import Client

    def make_client():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "only works with KFP >= 2.0.0b2"
            return Client(host=host, existing_token=os.environ.get(TOKEN_ENV) or None)

    return _Guarded(_guarded(host, "connect", make_client)(), host)


def _guarded(host: str, name: str, method):
    """``method`` with its errors turned into one-line :class:`RemoteError` messages that name
    the host (never the token), and the client's printed links silenced."""

    def call(*args, **kwargs):
        import urllib3

        try:
            with contextlib.redirect_stdout(io.StringIO()):
                return method(*args, **kwargs)
        except urllib3.exceptions.HTTPError as error:
            raise RemoteError(f"cannot reach the KFP API at {host}: "
                              f"{type(error).__name__}") from None
        except Exception as error:
            status = getattr(error, "status", None)
            if status is None:
                raise
            reason = getattr(error, "reason", "") or ""
            raise RemoteError(f"the KFP API at {host} answered {status} {reason} to "
                              f"{name}".replace("  ", " ")) from None

    return call


class _Guarded:
    """A ``kfp.Client`` whose every call goes through :func:`_guarded`."""

    def __init__(self, client, host: str):
        self.client, self.host = client, host.rstrip("/")

    def __getattr__(self, name):
        return _guarded(self.host, name, getattr(self.client, name))


def upload(client, pipeline_file: str, pipeline_name: str, version_name: str) -> Uploaded:
    """Upload the YAML as a new pipeline, or as a new version of the existing one."""
    pipeline_id = client.get_pipeline_id(pipeline_name)
    if pipeline_id is None:
        pipeline_id = client.upload_pipeline(pipeline_file, pipeline_name=pipeline_name).pipeline_id
    version = client.upload_pipeline_version(pipeline_file, pipeline_version_name=version_name,
                                             pipeline_id=pipeline_id)
    return Uploaded(pipeline_id, version.pipeline_version_id)


def experiment_id(client, name: str) -> str:
    """The id of experiment ``name``, created if missing."""
    return client.create_experiment(name).experiment_id


def default_version_name() -> str:
    return f"v{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"


def submit(host: str, *, pipeline_file: str, pipeline_name: str, experiment: str,
           run_name: str, params: dict, version_name: str | None = None) -> dict:
    """Upload, make sure the experiment exists, start one run; returns ids and the UI link."""
    client = connect(host)
    uploaded = upload(client, pipeline_file, pipeline_name, version_name or default_version_name())
    run = client.run_pipeline(experiment_id(client, experiment), run_name, params=params,
                              pipeline_id=uploaded.pipeline_id, version_id=uploaded.version_id)
    return {"run_id": run.run_id, "pipeline_id": uploaded.pipeline_id,
            "version_id": uploaded.version_id,
            "url": f"{client.host}/#/runs/details/{run.run_id}"}


def find_recurring_runs(client, experiment_name: str) -> list:
    """Every recurring run of the experiment (all pages)."""
    experiment = experiment_id(client, experiment_name)
    found, token = [], ""
    while True:
        page = client.list_recurring_runs(page_token=token, page_size=100,
                                          experiment_id=experiment)
        found += page.recurring_runs or []
        token = page.next_page_token or ""
        if not token:
            return found


def schedule(host: str, *, name: str, cron: str, pipeline_file: str, pipeline_name: str,
             experiment: str, params: dict, max_concurrency: int = 1, catchup: bool = False,
             version_name: str | None = None) -> dict:
    """Create recurring run ``name`` (replacing one of that name: KFP cannot update in place).

    Each run's ``cutoff`` stays empty, so the pipeline reads up to its scheduled time: a retried
    or re-run run takes the same rows.
    """
    kfp_cron = to_kfp_cron(cron)
    client = connect(host)
    uploaded = upload(client, pipeline_file, pipeline_name, version_name or default_version_name())
    experiment_ref = experiment_id(client, experiment)
    replaced = [r.recurring_run_id for r in find_recurring_runs(client, experiment)
                if r.display_name == name]
    for recurring_run_id in replaced:
        client.delete_recurring_run(recurring_run_id)
    created = client.create_recurring_run(
        experiment_ref, name, cron_expression=kfp_cron, max_concurrency=max_concurrency,
        no_catchup=not catchup, params={**params, "cutoff": ""},
        pipeline_id=uploaded.pipeline_id, version_id=uploaded.version_id, enabled=True)
    return {"recurring_run_id": created.recurring_run_id, "cron": kfp_cron,
            "replaced": replaced, "version_id": uploaded.version_id,
            "next_runs": [t.isoformat() for t in next_run_times(kfp_cron)],
            "url": f"{client.host}/#/recurringrun/details/{created.recurring_run_id}"}


def list_schedules(host: str, experiment: str) -> list[dict]:
    client = connect(host)
    return [{"name": r.display_name, "recurring_run_id": r.recurring_run_id,
             "status": str(r.status), "cron": _cron_of(r),
             "max_concurrency": r.max_concurrency, "no_catchup": r.no_catchup}
            for r in find_recurring_runs(client, experiment)]


def _cron_of(recurring_run) -> str | None:
    trigger = recurring_run.trigger
    return trigger.cron_schedule.cron if trigger and trigger.cron_schedule else None


def change_schedule(host: str, experiment: str, name: str, action: str) -> list[str]:
    """Disable or delete every recurring run called ``name``; returns their ids."""
    client = connect(host)
    matching = [r.recurring_run_id for r in find_recurring_runs(client, experiment)
                if r.display_name == name]
    if not matching:
        raise RemoteError(f"no recurring run named {name!r} in experiment {experiment!r} at "
                          f"{client.host}")
    for recurring_run_id in matching:
        if action == "disable":
            client.disable_recurring_run(recurring_run_id)
        else:
            client.delete_recurring_run(recurring_run_id)
    return matching
