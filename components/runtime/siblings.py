"""Independent pieces of a step's work shared with a sibling process of the warm worker.

A step in the warm worker's child runs on one core; the machine's other cores wait until the
next stage. Work made of independent, single-threaded pieces (the fits of a cross-fit) can give
every other piece to a sibling: a new child of the worker's scikit-learn tier, which never ran a
step, so it is safe where forking this process would not be (forking a process whose OpenMP pool
has run leaves the copy hanging at its next parallel region). The sibling gets its pieces'
arguments pickled, runs them one after another on one thread while this process runs the rest,
and sends the answers back. Pieces are deterministic functions of their arguments, so the
answers are the same whoever computed them. Without a worker (a cluster's stage process, a
step called directly), or on one core, every piece runs here in turn; if the sibling fails in
any way its pieces run here too, so a failure is raised as itself.
"""

from __future__ import annotations

import importlib
import socket
import sys
import threading
from collections.abc import Callable, Iterable

from components.runtime import delegation

# The warm worker's folder, in a child it forked for a stage (where the step's own environment
# no longer names it, so that the step never forwards itself again); None elsewhere.
WORKER_FOLDER: str | None = None


def can_share() -> bool:
    """Whether a sibling is at hand: in a warm worker's child, on more than one CPU."""
    from components.ml.threads import available_cpus

    return delegation.IN_WORKER_CHILD and WORKER_FOLDER is not None and available_cpus() > 1


def shared_with_a_sibling(function: Callable, arguments: Callable[[object], dict],
                          items: Iterable, *, share: bool = True) -> list:
    """``[function(**arguments(item)) for item in items]``, every other item computed by a
    sibling process at the same time when ``share`` and :func:`can_share`. ``function`` must
    be a module-level function; its pieces run on one thread in the sibling, so share only work
    this process also runs on one thread."""
    items = list(items)
    theirs = items[1::2] if share and len(items) > 1 and can_share() else []
    answers: dict = {}
    asked = _ask_sibling(function, [arguments(item) for item in theirs]) if theirs else None
    for index, item in enumerate(items):
        if not theirs or index % 2 == 0:
            answers[index] = function(**arguments(item))
    if asked is not None:
        asked.join()
        theirs_answered = asked.answers
        if theirs_answered is None:  # the sibling failed: its pieces run here, errors as such
            print(f"a sibling process could not share the work ({asked.error}); running it here",
                  file=sys.stderr, flush=True)
            theirs_answered = [function(**arguments(item)) for item in theirs]
        answers.update(zip(range(1, len(items), 2), theirs_answered, strict=True))
    return [answers[index] for index in range(len(items))]


class _Asked(threading.Thread):
    """A call to a sibling, waited on in a thread: its ``answers``, or the ``error`` it met."""

    def __init__(self, function: Callable, calls: list[dict]):
        super().__init__(daemon=True)
        self.request = {"module": function.__module__, "name": function.__name__,
                        "calls": calls}
        self.answers: list | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            with connection:
                connection.connect(delegation.socket_path(WORKER_FOLDER, delegation.FULL))
                self.answers, _, _ = delegation.call_in_worker(
                    connection, WORKER_FOLDER, __name__, run_pieces.__name__, self.request)
        except BaseException as error:  # noqa: BLE001 - any failure: the pieces run at home
            self.error = error


def _ask_sibling(function: Callable, calls: list[dict]) -> _Asked:
    asked = _Asked(function, calls)
    asked.start()
    return asked


@delegation.delegated(scientific=True)
def run_pieces(*, module: str, name: str, calls: list[dict]) -> list:
    """The sibling's side: each call of ``module.name`` in turn, on one thread."""
    from threadpoolctl import threadpool_limits

    function = getattr(importlib.import_module(module), name)
    with threadpool_limits(limits=1):
        return [function(**arguments) for arguments in calls]
