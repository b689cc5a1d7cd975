"""How many threads a fit or a prediction uses, so that a busy machine slows it down gracefully.

scikit-learn's HistGradientBoosting runs OpenMP threads, one per core by default. When another
process holds a core, OpenMP's threads spin waiting for a sibling that is not scheduled: on two
cores with one busy, a 200-row fit took 0.55 s instead of 0.06 s, a 1M-row fit 18.5 s instead of
3.5 s. Two things fix it:

- ``OMP_WAIT_POLICY=passive`` (threads sleep instead of spinning), which OpenMP reads when it is
  loaded: ``retrain run`` sets it for its processes (:mod:`app.run_scope`), the image sets it in
  its environment. With it the 1M-row fit took 6.3 s with a core busy (1.8x its idle time).
- Fewer threads for small data, where threads cost more than they bring: one thread below
  :data:`SMALL_CELLS` values (rows x features; 0.05 s for 200 rows with a core busy), and never
  more than the CPUs this process may use (its affinity, and its cgroup's CPU quota).
"""

from __future__ import annotations

import contextlib
import math
import os

SMALL_CELLS = 500_000  # e.g. 50,000 rows of 10 features
CGROUP_CPU_MAX = "/sys/fs/cgroup/cpu.max"


def available_cpus() -> int:
    """CPUs this process may use: its affinity, capped by a cgroup v2 CPU quota if one is set."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        with open(CGROUP_CPU_MAX) as handle:
            quota, period = handle.read().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.floor(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus or 1)


def threads_for(rows: int, features: int = 10) -> int:
    """Threads for work over ``rows`` rows of ``features`` features."""
    return 1 if rows * max(features, 1) < SMALL_CELLS else available_cpus()


@contextlib.contextmanager
def limited_threads(rows: int, features: int = 10):
    """Limit OpenMP and BLAS threads to :func:`threads_for` within the block."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads_for(rows, features)):
        yield
