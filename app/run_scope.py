"""What a local run sets up around kfp.local, and takes down however the run ends.

- **Its own temporary root**: kfp.local's lightweight-component command makes a ``mktemp -d``
  folder per task and never removes it. The run's processes get ``TMPDIR`` pointing at a folder
  of the run's own (and kfp.local's workspace in this process goes there too), removed when the
  run ends; a run killed before it could remove it leaves an
  ``owner`` file, and the next run removes every root whose owner is gone.
- **An owner to end with**: ``RETRAIN_RUN_OWNER`` names this process, so the warm worker and the
  stage processes end as soon as it is gone (:mod:`components.runtime.lifeline`).
- **Secrets outside the task inputs**: kfp.local logs every task's inputs, so a secret parameter
  (the webhook URL) reaches the stages in its environment variable instead, and the log is
  written through a filter that blanks the secret wherever it would appear anyway.
- **OpenMP threads that yield**: ``GOMP_SPINCOUNT``, so a fit's threads spin only briefly for a
  sibling the machine has not scheduled before they sleep (see :mod:`components.ml.threads`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from components.ml.threads import SPIN_COUNT
from components.params import BY_NAME, SECRET_PARAMETERS, redacted_url
from components.runtime.lifeline import OWNER_ENV, alive, owner_token

ROOT_PREFIX = "retrain-run-"
# How many runs' artifact folders and logs a local pipeline root keeps by default (about 1.3 MB
# a run on the demo): `retrain run --keep-runs`.
DEFAULT_KEEP_RUNS = 20
OWNER_FILE = "owner"
WAIT_POLICY = {"GOMP_SPINCOUNT": SPIN_COUNT}


def remove_abandoned_roots(parent: str | None = None) -> list[str]:
    """Remove the temporary roots of runs whose owner process is gone; returns them."""
    parent = Path(parent or tempfile.gettempdir())
    removed = []
    for root in parent.glob(f"{ROOT_PREFIX}*"):
        try:
            token = (root / OWNER_FILE).read_text().strip()
        except OSError:
            token = ""
        if not token or not alive(token):
            shutil.rmtree(root, ignore_errors=True)
            removed.append(str(root))
    return removed


@contextlib.contextmanager
def environment(values: dict[str, str]):
    """``values`` set in the process environment for the block, the old ones back after."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def run_scope(arguments: dict, *, parent: str | None = None):
    """Set up a local run; yields ``(temporary root, the arguments the pipeline is given,
    the secret values to keep out of the log)``."""
    remove_abandoned_roots(parent)
    root = tempfile.mkdtemp(prefix=ROOT_PREFIX, dir=parent)
    (Path(root) / OWNER_FILE).write_text(owner_token())
    secrets = {name: arguments[name] for name in SECRET_PARAMETERS if arguments.get(name)}
    run_environment = {"TMPDIR": root, OWNER_ENV: owner_token(), **WAIT_POLICY,
                       **{BY_NAME[name].env: value for name, value in secrets.items()}}
    given = {**arguments, **dict.fromkeys(secrets, "")}
    previous_tempdir, tempfile.tempdir = tempfile.tempdir, root  # kfp.local's own workspace too
    try:
        with environment(run_environment):
            yield root, given, list(secrets.values())
    finally:
        tempfile.tempdir = previous_tempdir
        shutil.rmtree(root, ignore_errors=True)


class Redacting:
    """A text stream that blanks secret values (keeping a URL's scheme and host) on their way
    to ``target``."""

    def __init__(self, target, secrets: list[str]):
        self.target = target
        self.secrets = [(secret, redacted_url(secret).strip("'")) for secret in secrets]

    def write(self, text: str) -> int:
        for secret, shown in self.secrets:
            text = text.replace(secret, shown)
        self.target.write(text)
        return len(text)

    def flush(self) -> None:
        self.target.flush()
