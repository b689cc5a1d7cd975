"""The warm worker for local runs: stage work forked from processes that imported the libraries once.

``retrain run`` starts it first, so it imports pandas, scikit-learn, scipy and pandera while
kfp.local starts up. After pandas it splits in two: one process imports what ingest, validate,
preprocess, deploy and the alerts need; the other adds scipy and scikit-learn for retrain,
evaluate and a validate that measures drift. So the light stages never wait for scikit-learn.
Steps reach it through :func:`components.runtime.delegation.delegated`.

For each call the worker forks a child that runs the step with the stage's stdout and stderr (so
the logs land where they always did), its environment, working directory and import path, and
replies with the step's return value or its exception.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import pickle
import signal
import socket
import sys
import time
import traceback

from components.runtime import delegation, siblings
from components.runtime.delegation import (
    FULL,
    HEADER,
    LIGHT,
    SOCKET_ENV,
    WarmWorkerError,
    exit_status_path,
    peak_rss_mib,
    ready_path,
    receive,
    socket_path,
)
from components.runtime.lifeline import OWNER_ENV, end_with_owner, owner_token

# What a worker imports before its tiers part, by default: each tier then imports the modules
# its callers name (:data:`components.steps.WARM_IMPORTS` for a pipeline run).
SHARED = ("pandas", "pyarrow.parquet")


@contextlib.contextmanager
def running_worker(enabled: bool = True, *, under: str | None = None,
                   imports: dict[str, tuple[str, ...]] | None = None):
    """Start a worker for the steps this process's children run; stop it afterwards.

    ``imports`` names the modules to import once: ``shared`` before the two tiers part, then
    each tier's (``light``, ``full``) in the order its steps need them.

    It starts importing at once, so its imports overlap with kfp.local's own start-up. Its
    folder goes under ``under`` (the run's temporary root); it watches this process and ends
    with it (:mod:`components.runtime.lifeline`), however this process ends.
    """
    if not enabled:
        yield None
        return
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="retrain-warm-", dir=under) as folder:
        errors = open(os.path.join(folder, "worker.err"), "w")  # noqa: SIM115 (closed below)
        # Its own session, so that stopping it stops both workers and anything they forked.
        worker = subprocess.Popen([sys.executable, "-m", __name__, folder,
                                   json.dumps(imports or {})],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=errors, start_new_session=True,
                                  env={**os.environ, OWNER_ENV: owner_token()})
        errors.close()
        deadline = time.monotonic() + 30
        while not os.path.exists(ready_path(folder)):
            if worker.poll() is not None or time.monotonic() > deadline:  # bound before imports
                with open(os.path.join(folder, "worker.err")) as log:
                    last = (log.read().strip().splitlines() or [""])[-1]
                raise WarmWorkerError(f"the warm worker did not start (exit code "
                                      f"{worker.poll()}): {last}")
            time.sleep(0.01)
        previous = os.environ.get(SOCKET_ENV)
        os.environ[SOCKET_ENV] = folder
        try:
            yield worker
        finally:
            if previous is None:
                os.environ.pop(SOCKET_ENV, None)
            else:
                os.environ[SOCKET_ENV] = previous
            with contextlib.suppress(ProcessLookupError):
                os.killpg(worker.pid, signal.SIGTERM)
            worker.wait()


# -- the worker -----------------------------------------------------------------------------------
def serve(folder: str, imports: dict[str, list[str]]) -> None:
    """Bind both workers' sockets in ``folder``, then fork: each tier imports its modules and
    forks a child per step call, until SIGTERM.

    Calls that arrive while a tier is still importing are served between two imports.
    """
    import select

    listeners = {}
    for tier in (LIGHT, FULL):
        listeners[tier] = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listeners[tier].bind(socket_path(folder, tier))
        listeners[tier].listen(16)
    with open(ready_path(folder), "w"):
        pass
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # stop at once: no teardown of the imports
    os.environ.pop(SOCKET_ENV, None)  # the children run steps here, never forward them again
    for module in (*SHARED, *imports.get("shared", ())):  # a call arriving meanwhile waits

        importlib.import_module(module)
    tier = FULL if os.fork() == 0 else LIGHT
    signal.signal(signal.SIGCHLD, lambda *_: _reap(folder))
    # Once the run that started us is gone, stop both tiers and every child at once.
    end_with_owner(lambda: os.killpg(0, signal.SIGKILL))
    listener = listeners.pop(tier)
    for other in listeners.values():
        other.close()
    for module in imports.get(tier, ()):
        importlib.import_module(module)
        while select.select([listener], [], [], 0)[0]:
            _fork_for(listener)
    while True:
        _fork_for(listener)


def _fork_for(listener: socket.socket) -> None:
    """Accept one step call and hand it to a forked child."""
    connection, _ = listener.accept()
    sys.stdout.flush()
    sys.stderr.flush()
    if os.fork() == 0:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        listener.close()
        _child(connection)  # never returns
    connection.close()


def _reap(folder: str) -> None:
    """Collect the children that have finished, and say how each ended (a stage whose child
    died without a reply reads it)."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        with contextlib.suppress(OSError):
            with open(exit_status_path(folder, pid), "w") as handle:
                handle.write(str(os.waitstatus_to_exitcode(status)))


def _child(connection: socket.socket) -> None:
    """Run one step call with the caller's output, environment and directory; reply; exit."""
    status = 0
    try:
        first, fds, _, _ = socket.recv_fds(connection, 1 << 16, 2)
        request = receive(connection, first)
        os.dup2(fds[0], 1)
        os.dup2(fds[1], 2)
        for fd in fds:
            os.close(fd)
        module, name, kwargs, environ, cwd, path = pickle.loads(request)
        announcement = pickle.dumps(os.getpid())
        connection.sendall(HEADER.pack(len(announcement)) + announcement)
        os.environ.clear()
        os.environ.update(environ)
        siblings.WORKER_FOLDER = os.environ.pop(SOCKET_ENV, None)
        os.chdir(cwd)
        sys.path[:0] = [entry for entry in path if entry not in sys.path]
        start = time.perf_counter()
        step = getattr(importlib.import_module(module), name).__delegated__
        delegation.IN_WORKER_CHILD = True
        try:
            result = step(**kwargs)
            reply = ("ok", result, time.perf_counter() - start, peak_rss_mib(), "")
        except BaseException as error:  # noqa: BLE001 - every failure goes back to the stage
            reply = ("error", _picklable(error), time.perf_counter() - start, peak_rss_mib(),
                     traceback.format_exc())
        sys.stdout.flush()
        sys.stderr.flush()
        payload = pickle.dumps(reply)
        connection.sendall(HEADER.pack(len(payload)) + payload)
    except BaseException:  # noqa: BLE001 - the worker's own failure: the stage sees no reply
        traceback.print_exc()
        status = 1
    finally:
        os._exit(status)


def _picklable(error: BaseException) -> BaseException:
    """The exception itself if it survives pickling, else a RuntimeError naming it."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:  # noqa: BLE001 - any pickling failure
        return RuntimeError(f"{type(error).__name__}: {error}")


if __name__ == "__main__":
    serve(sys.argv[1], json.loads(sys.argv[2]))
