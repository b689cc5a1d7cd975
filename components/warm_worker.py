"""A warm worker for local runs: stage work forked from processes that imported the libraries once.

Under ``kfp.local`` every stage is a fresh Python process, and importing pandas, scikit-learn,
scipy and pandera costs 1-3 s in each: most of a small run's time. ``retrain run`` starts this
worker first, so it imports them while kfp.local starts up. After pandas it splits in two: one
process imports what ingest, validate, preprocess, deploy and the alerts need; the other adds
scipy and scikit-learn for retrain, evaluate and a validate that measures drift. So the light
stages never wait for scikit-learn. ``RETRAIN_WARM_WORKER`` names the folder of their Unix sockets.

A stage process that finds it sends its step call there, with its own stdout and stderr. The
worker forks a child that runs the step with those as its output (so the logs land where they
always did), with the stage's environment, working directory and import path, and replies with the
step's return value or its exception.

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
import re
import resource
import signal
import socket
import struct
import sys
import time
import traceback

SOCKET_ENV = "RETRAIN_WARM_WORKER"
# Two workers, so that the stages needing scipy and scikit-learn (2 s to import, in one piece) do
# not hold up the others: each imports what its stages need, in the order they come. The second
# leaves pandera to a validate that comes its way: importing it while retrain's OpenMP threads
# run doubled retrain's time on two cores. Nor is it imported before they part: that puts 0.45 s
# before scikit-learn's import, and a small run's retrain waited for it.
LIGHT, FULL = "light", "full"
SHARED = ("pandas", "pyarrow.parquet", "components.steps")  # imported once, before they part
PRELOAD = {
    LIGHT: ("components.ingest", "pandera.pandas", "components.validate", "components.drift",
            "components.preprocess", "components.deploy", "components.alert"),
    FULL: ("joblib", "sklearn.ensemble", "sklearn.linear_model", "sklearn.compose",
           "sklearn.impute", "sklearn.preprocessing", "sklearn.pipeline", "sklearn.metrics",
           "components.drift", "components.retrain", "components.evaluate", "scipy.stats",
           "scipy.spatial.distance"),
}
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


_STAGE_LINE = re.compile(r"stage (\w+)_step: ([\d.]+) s, peak RSS (\d+) MiB")


def stage_figures(log_text: str) -> dict[str, dict]:
    """Seconds and peak RSS (MiB) of each stage, read back from the lines ``log_stage`` wrote."""
    return {name: {"seconds": float(seconds), "peak_rss_mib": int(rss)}
            for name, seconds, rss in _STAGE_LINE.findall(log_text)}


def log_stage(name: str, seconds: float, rss_mib: float, waited: float = 0.0) -> None:
    """The stage's closing line: time its work took, peak memory, any wait for the worker."""
    wait = f" (waited {waited:.2f} s for the warm worker's imports)" if waited >= 0.1 else ""
    print(f"stage {name}: {seconds:.2f} s, peak RSS {rss_mib:.0f} MiB{wait}", file=sys.stderr,
          flush=True)


def delegated(step=None, *, scientific=False):
    """Run ``step`` in the warm worker when one is announced, else here; log time and memory.

    ``scientific`` (True, or a function of the step's arguments) says the step imports scipy or
    scikit-learn, so it goes to the worker that has them.
    """
    if step is None:
        return functools.partial(delegated, scientific=scientific)

    @functools.wraps(step)
    def run(**kwargs):
        start = time.perf_counter()
        folder = os.environ.get(SOCKET_ENV)
        if folder:
            full = scientific(**kwargs) if callable(scientific) else scientific
            address = _socket_path(folder, FULL if full else LIGHT)
            connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                connection.connect(address)
            except OSError as error:  # worker gone: the stage still runs, just cold
                connection.close()
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
        # Its own session, so that stopping it stops both workers and anything they forked.
        worker = subprocess.Popen([sys.executable, "-m", "components.warm_worker", folder],
                                  stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 30
        while not all(os.path.exists(_socket_path(folder, tier)) for tier in PRELOAD):
            if worker.poll() is not None or time.monotonic() > deadline:  # bound before imports
                raise WarmWorkerError(f"the warm worker did not start (exit code {worker.poll()})")
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


# -- the worker ----------------------------------------------------------------------------------
def _socket_path(folder: str, tier: str) -> str:
    return os.path.join(folder, f"{tier}.sock")


def serve(folder: str) -> None:
    """Bind both workers' sockets in ``folder``, then fork: each tier imports its modules and
    forks a child per step call, until SIGTERM.

    Calls that arrive while a tier is still importing are served between two imports.
    """
    import select

    listeners = {}
    for tier in PRELOAD:
        listeners[tier] = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listeners[tier].bind(_socket_path(folder, tier))
        listeners[tier].listen(16)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # stop at once: no teardown of the imports
    os.environ.pop(SOCKET_ENV, None)  # the children run steps here, never forward them again
    for module in SHARED:  # a call arriving meanwhile waits in its socket's backlog
        importlib.import_module(module)
    tier = FULL if os.fork() == 0 else LIGHT
    listener = listeners.pop(tier)
    for other in listeners.values():
        other.close()
    for module in PRELOAD[tier]:
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
