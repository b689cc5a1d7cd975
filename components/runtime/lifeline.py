"""Processes of a local run end with the run: nothing outlives a killed ``retrain run``.

``retrain run`` announces itself as the run's owner in ``RETRAIN_RUN_OWNER`` (its pid and start
time, so a reused pid is not mistaken for it). The warm worker and every stage process watch the
owner from a thread and end as soon as it is gone, however it ended (``kill -9`` included, which
no signal handler sees). On a cluster nothing is announced and nothing is watched.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

OWNER_ENV = "RETRAIN_RUN_OWNER"
CHECK_SECONDS = 0.25


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return None


def owner_token(pid: int | None = None) -> str:
    """``<pid>:<start time>`` of a process (this one by default)."""
    pid = pid or os.getpid()
    return f"{pid}:{_start_time(pid)}"


def alive(token: str) -> bool:
    """Whether the process a token names is still running (and is the same process)."""
    pid, _, started = token.partition(":")
    try:
        return _start_time(int(pid)) == started
    except ValueError:
        return False


def end_with_owner(on_gone: Callable[[], None], *, token: str | None = None) -> bool:
    """Call ``on_gone`` (which should end this process) once the run's owner is gone.

    Checks at once, then every :data:`CHECK_SECONDS` from a daemon thread. Returns False, doing
    nothing, when no owner is announced.
    """
    token = token or os.environ.get(OWNER_ENV, "")
    if not token:
        return False
    if not alive(token):
        on_gone()

    def watch():
        while alive(token):
            time.sleep(CHECK_SECONDS)
        on_gone()

    threading.Thread(target=watch, name="retrain-lifeline", daemon=True).start()
    return True


def exit_now() -> None:
    """End this process at once: its run is gone, so its work is for nobody."""
    os._exit(137)
