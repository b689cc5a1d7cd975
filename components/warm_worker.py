"""A warm worker for local runs: stage work forked from one process that imported the libraries once.

Under ``kfp.local`` every stage is a fresh Python process, and importing pandas, scikit-learn,
scipy and pandera costs 1-3 s in each: most of a small run's time. ``retrain run`` starts this
worker first (it imports them while kfp.local starts up). A stage process that finds
``RETRAIN_WARM_WORKER`` in its environment sends its step call over that Unix socket together
with its own stdout and stderr; the worker forks a child that runs the step with those as its
output (so the logs land where they always did) and with the stage's environment and working
directory (and import path), and replies with the step's return value or its exception.

Without the variable (on a cluster, or a step called directly) a step runs in its own process as
before: the same function either way. Every step ends with a ``stage <name>: <s> s, peak RSS <MiB>``
line on stderr, measured in the process that did the work.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import pickle
import resource
import signal
import socket
import struct
import sys
import time
import traceback

SOCKET_ENV = "RETRAIN_WARM_WORKER"
# What the stages import, in the order they need it (ingest first); the worker imports it once.
PRELOAD = (
    "pandas", "pyarrow.parquet", "components.steps", "components.ingest",
    "pandera.pandas", "components.validate", "components.drift", "components.preprocess",
    "joblib", "sklearn.ensemble", "sklearn.linear_model", "sklearn.compose", "sklearn.impute",
    "sklearn.preprocessing", "sklearn.pipeline", "sklearn.metrics", "scipy.stats",
    "scipy.spatial.distance", "components.retrain", "components.evaluate", "components.deploy",
    "components.alert",
)
_HEADER = struct.Struct("!Q")


class WarmWorkerError(RuntimeError):
    """The worker took a step but its child ended without a reply (killed, out of memory)."""


class RemoteTraceback(Exception):
    """The traceback of an exception raised in the worker's child, shown as its cause."""

    def __str__(self) -> str:
        return self.args[0]


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def log_stage(name: str, seconds: float, rss_mib: float, waited: float = 0.0) -> None:
    """The stage's closing line: time its work took, peak memory, any wait for the worker."""
    wait = f" (waited {waited:.2f} s for the warm worker's imports)" if waited >= 0.1 else ""
    print(f"stage {name}: {seconds:.2f} s, peak RSS {rss_mib:.0f} MiB{wait}", file=sys.stderr,
          flush=True)


def delegated(step):
    """Run ``step`` in the warm worker when one is announced, else here; log time and memory."""

    @functools.wraps(step)
    def run(**kwargs):
        start = time.perf_counter()
        address = os.environ.get(SOCKET_ENV)
        if address:
            try:
                connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                connection.connect(address)
            except OSError as error:  # worker gone: the stage still runs, just cold
                print(f"warm worker at {address} unreachable ({error}); running here",
                      file=sys.stderr)
            else:
                with connection:
                    result, seconds, rss = _call(connection, step.__module__, step.__name__,
                                                 kwargs)
                log_stage(step.__name__, seconds, max(rss, peak_rss_mib()),
                          waited=time.perf_counter() - start - seconds)
                return result
        result = step(**kwargs)
        log_stage(step.__name__, time.perf_counter() - start, peak_rss_mib())
        return result

    return run


def _call(connection: socket.socket, module: str, name: str, kwargs: dict):
    """Send one step call with our stdout/stderr; return (result, the child's seconds and peak
    RSS), or raise the step's exception."""
    sys.stdout.flush()
    sys.stderr.flush()
    payload = pickle.dumps((module, name, kwargs, dict(os.environ), os.getcwd(), sys.path))
    message = _HEADER.pack(len(payload)) + payload
    sent = socket.send_fds(connection, [message], [sys.stdout.fileno(), sys.stderr.fileno()])
    connection.sendall(message[sent:])
    reply = _receive(connection)
    if reply is None:
        raise WarmWorkerError(f"{name}: the warm worker's child ended without a reply "
                              "(killed or out of memory?); `retrain run --no-warm-worker` "
                              "runs each stage in its own process")
    outcome, value, seconds, rss, remote_traceback = pickle.loads(reply)
    if outcome == "error":
        raise value from RemoteTraceback(remote_traceback)
    return value, seconds, rss


def _receive(connection: socket.socket, first: bytes = b"") -> bytes | None:
    """One length-prefixed message, or None when the peer closed first."""
    data = bytearray(first)
    while len(data) < _HEADER.size or len(data) < _HEADER.size + _HEADER.unpack_from(data)[0]:
        chunk = connection.recv(1 << 16)
        if not chunk:
            return None
        data += chunk
    return bytes(data[_HEADER.size:])


@contextlib.contextmanager
def running_worker(enabled: bool = True):
    """Start a worker for the steps this process's children run; stop it afterwards.

    It starts importing at once, so its imports overlap with kfp.local's own start-up.
    """
    if not enabled:
        yield None
        return
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory(prefix="retrain-warm-") as folder:
        address = os.path.join(folder, "worker.sock")
        worker = subprocess.Popen([sys.executable, "-m", "components.warm_worker", address],
                                  stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not os.path.exists(address):  # bound at once, before its imports
            if worker.poll() is not None or time.monotonic() > deadline:
                raise WarmWorkerError(f"the warm worker did not start (exit code {worker.poll()})")
            time.sleep(0.01)
        previous = os.environ.get(SOCKET_ENV)
        os.environ[SOCKET_ENV] = address
        try:
            yield worker
        finally:
            if previous is None:
                os.environ.pop(SOCKET_ENV, None)
            else:
                os.environ[SOCKET_ENV] = previous
            worker.terminate()
            worker.wait()


# -- the worker ----------------------------------------------------------------------------------
def serve(address: str) -> None:
    """Bind ``address``, import everything, and fork a child per step call until SIGTERM.

    Calls that arrive while the imports are still going are served between two imports, so the
    first stage (ingest: pandas only) need not wait for scikit-learn.
    """
    import select

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(address)
    listener.listen(16)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # stop at once: no teardown of the imports
    os.environ.pop(SOCKET_ENV, None)  # the children run steps here, never forward them again
    for module in PRELOAD:
        importlib.import_module(module)
        while select.select([listener], [], [], 0)[0]:
            _fork_for(listener)
    while True:
        _fork_for(listener)


def _fork_for(listener: socket.socket) -> None:
    """Accept one step call and hand it to a forked child."""
    connection, _ = listener.accept()
    _reap()
    sys.stdout.flush()
    sys.stderr.flush()
    if os.fork() == 0:
        listener.close()
        _child(connection)  # never returns
    connection.close()


def _reap() -> None:
    """Collect the children that have finished."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _child(connection: socket.socket) -> None:
    """Run one step call with the caller's output, environment and directory; reply; exit."""
    status = 0
    try:
        first, fds, _, _ = socket.recv_fds(connection, 1 << 16, 2)
        request = _receive(connection, first)
        os.dup2(fds[0], 1)
        os.dup2(fds[1], 2)
        for fd in fds:
            os.close(fd)
        module, name, kwargs, environ, cwd, path = pickle.loads(request)
        os.environ.clear()
        os.environ.update(environ)
        os.environ.pop(SOCKET_ENV, None)
        os.chdir(cwd)
        sys.path[:0] = [entry for entry in path if entry not in sys.path]
        start = time.perf_counter()
        step = getattr(importlib.import_module(module), name).__wrapped__
        try:
            result = step(**kwargs)
            reply = ("ok", result, time.perf_counter() - start, peak_rss_mib(), "")
        except BaseException as error:  # noqa: BLE001 - every failure goes back to the stage
            reply = ("error", _picklable(error), time.perf_counter() - start, peak_rss_mib(),
                     traceback.format_exc())
        sys.stdout.flush()
        sys.stderr.flush()
        payload = pickle.dumps(reply)
        connection.sendall(_HEADER.pack(len(payload)) + payload)
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
    serve(sys.argv[1])
