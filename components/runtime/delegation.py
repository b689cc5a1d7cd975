"""How a step runs: in a warm worker when one is announced, else in this process.

Under ``kfp.local`` every stage is a fresh Python process, and importing pandas, scikit-learn,
scipy and pandera costs 1-3 s in each. ``retrain run`` therefore starts a warm worker
(:mod:`components.runtime.warm_worker`) that imports them once, and announces its Unix sockets in
``RETRAIN_WARM_WORKER``. A step decorated with :func:`delegated` sends its call there with this
process's stdout and stderr, and gets back the step's return value or its exception. Without the
variable (on a cluster, or a step called directly) the step runs here: the same function either
way. Every step ends with a ``stage <name>: <s> s, peak RSS <MiB>`` line on stderr, measured in
the process that did the work.
"""

from __future__ import annotations

import functools
import os
import pickle
import re
import resource
import socket
import struct
import sys
import time

SOCKET_ENV = "RETRAIN_WARM_WORKER"
# The worker's two tiers: the light stages, and those that need scipy and scikit-learn.
LIGHT, FULL = "light", "full"
HEADER = struct.Struct("!Q")
# True in a child the warm worker forked for a step: a fresh process from a tier that imported
# the libraries and never ran a step itself (no OpenMP pool, no other thread), so it may fork.
IN_WORKER_CHILD = False


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
            address = socket_path(folder, FULL if full else LIGHT)
            connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                connection.connect(address)
            except OSError as error:  # worker gone: the stage still runs, just cold
                connection.close()
                print(f"warm worker at {address} unreachable ({error}); running here",
                      file=sys.stderr)
            else:
                with connection:
                    result, seconds, rss = call_in_worker(connection, folder, step.__module__,
                                                          step.__name__, kwargs)
                log_stage(step.__name__, seconds, max(rss, peak_rss_mib()),
                          waited=time.perf_counter() - start - seconds)
                return result
        result = step(**kwargs)
        log_stage(step.__name__, time.perf_counter() - start, peak_rss_mib())
        return result

    run.__delegated__ = step  # what the worker's child runs
    return run


def call_in_worker(connection: socket.socket, folder: str, module: str, name: str, kwargs: dict):
    """Send one step call with our stdout/stderr; return (result, the child's seconds and peak
    RSS), or raise the step's exception. A child that dies without a reply is reported with the
    signal that ended it, how long it ran and its peak memory as last seen."""
    sys.stdout.flush()
    sys.stderr.flush()
    payload = pickle.dumps((module, name, kwargs, dict(os.environ), os.getcwd(), sys.path))
    message = HEADER.pack(len(payload)) + payload
    sent = socket.send_fds(connection, [message], [sys.stdout.fileno(), sys.stderr.fileno()])
    connection.sendall(message[sent:])
    started = time.monotonic()
    announced = receive(connection)
    pid = pickle.loads(announced) if announced is not None else None
    reply, peak = _reply_watching(connection, pid)
    if reply is None:
        error = WarmWorkerError(f"{_death(folder, pid, time.monotonic() - started, peak)}; "
                                "`retrain run --no-warm-worker` runs each stage in its own "
                                "process")
        error.peak_rss_mib = peak
        raise error
    outcome, value, seconds, rss, remote_traceback = pickle.loads(reply)
    if outcome == "error":
        raise value from RemoteTraceback(remote_traceback)
    return value, seconds, rss


def receive(connection: socket.socket, first: bytes = b"") -> bytes | None:
    """One length-prefixed message, or None when the peer closed first. Reads no byte past the
    message: the child's announcement and its reply can arrive together, and the reply is the
    next call's to read."""
    data = bytearray(first)
    while True:
        needed = HEADER.size + (HEADER.unpack_from(data)[0] if len(data) >= HEADER.size else 0)
        if len(data) >= needed and len(data) >= HEADER.size:
            return bytes(data[HEADER.size:needed])
        chunk = connection.recv(min(needed - len(data), 1 << 16))
        if not chunk:
            return None
        data += chunk


def _reply_watching(connection: socket.socket, pid: int | None) -> tuple[bytes | None, float]:
    """The child's reply (None if it died first), and its peak RSS (MiB) as last sampled."""
    import select

    peak = 0.0
    while pid is not None and not select.select([connection], [], [], 0.25)[0]:
        peak = max(peak, _peak_of(pid))
    return (receive(connection) if pid is not None else None), peak


def _peak_of(pid: int) -> float:
    """A live process's peak resident memory in MiB (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def exit_status_path(folder: str, pid: int) -> str:
    """Where the worker records how its child ``pid`` ended."""
    return os.path.join(folder, f"exit-{pid}")


def _death(folder: str, pid: int | None, seconds: float, peak: float) -> str:
    """What is known of how the worker's child ended."""
    import signal

    if pid is None:
        return "the warm worker's child ended before it started the step"
    path, code = exit_status_path(folder, pid), None
    deadline = time.monotonic() + 2
    while code is None and time.monotonic() < deadline:
        try:
            with open(path) as handle:
                code = int(handle.read())
        except (OSError, ValueError):
            time.sleep(0.02)
    how = ("ended without a reply" if code is None else
           f"was killed by signal {-code} ({signal.Signals(-code).name})" if code < 0 else
           f"exited with code {code} without a reply")
    memory = f", peak RSS {peak:.0f} MiB" if peak else ""
    return f"the warm worker's child (pid {pid}) {how} after {seconds:.1f} s{memory}"


def socket_path(folder: str, tier: str) -> str:
    """The address the worker of ``tier`` listens on: a Linux abstract socket named after the
    announced folder (no file, so no path-length limit and nothing left behind)."""
    import hashlib

    return f"\0retrain-{hashlib.sha256(folder.encode()).hexdigest()[:24]}-{tier}"


def ready_path(folder: str) -> str:
    """The file the worker writes once both tiers listen."""
    return os.path.join(folder, "ready")
