"""How many threads a fit or a prediction uses, so that a busy machine slows it down gracefully.

scikit-learn's HistGradientBoosting runs OpenMP threads, one per core by default. When another
process holds a core, OpenMP's threads spin waiting for a sibling that is not scheduled: on two
cores with one busy, a 200-row fit took 0.62 s instead of 0.07 s, a 1M-row fit 22 s instead of
3.7 s. So:

- small data gets one thread (below :data:`SMALL_CELLS` values, rows x features), where threads
  cost more than they bring;
- larger data gets one thread per CPU that is idle right now (sampled from ``/proc/stat`` over
  a tenth of a second), never more than the CPUs the process may use (its affinity, and its
  cgroup's CPU quota);
- a thread waiting for its siblings spins only briefly before it sleeps (``GOMP_SPINCOUNT``,
  which OpenMP reads when it loads: ``retrain run`` sets it for its processes, the image in its
  environment), for a core that becomes busy during the fit. Sleeping at once
  (``OMP_WAIT_POLICY=passive``) made an idle 1M-row fit 1.8x slower.
"""

from __future__ import annotations

import contextlib
import math
import os

SMALL_CELLS = 500_000  # e.g. 50,000 rows of 10 features
# Spins before a waiting OpenMP thread sleeps (libgomp's default is 300,000). With 1,000, a
# 1M-row fit took 4.6 s idle and 8.9 s with a core busy from the start of the fit.
SPIN_COUNT = "1000"
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


def _cpu_times() -> dict[str, tuple[int, int]]:
    """Per CPU: (idle ticks, all ticks) since boot."""
    times = {}
    with open("/proc/stat") as handle:
        for line in handle:
            name, *fields = line.split()
            if name.startswith("cpu") and name != "cpu":
                values = [int(v) for v in fields[:8]]
                times[name] = (values[3] + values[4], sum(values))
    return times


def idle_cpus(sample_seconds: float = 0.1) -> int:
    """How many of the CPUs this process may use are idle now (at least half idle over the
    sample); all of them where /proc/stat cannot be read."""
    import time

    allowed = (os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity")
               else range(os.cpu_count() or 1))
    try:
        before = _cpu_times()
        time.sleep(sample_seconds)
        after = _cpu_times()
    except OSError:
        return available_cpus()
    idle = 0
    for cpu in allowed:
        name = f"cpu{cpu}"
        if name in before and name in after:
            spent = after[name][1] - before[name][1]
            idle += spent > 0 and (after[name][0] - before[name][0]) / spent >= 0.5
    return max(1, idle)


def threads_for(rows: int, features: int = 10) -> int:
    """Threads for work over ``rows`` rows of ``features`` features."""
    if rows * max(features, 1) < SMALL_CELLS:
        return 1
    return max(1, min(available_cpus(), idle_cpus()))


_limits: list[int] = []  # the limits of the blocks this process is in, innermost last


@contextlib.contextmanager
def limited_threads(rows: int, features: int = 10):
    """Limit OpenMP and BLAS threads to :func:`threads_for` within the block."""
    from threadpoolctl import threadpool_limits

    threads = threads_for(rows, features)
    with threadpool_limits(limits=threads):
        _limits.append(threads)
        try:
            yield
        finally:
            _limits.pop()


def single_threaded() -> bool:
    """Whether this code runs in a :func:`limited_threads` block of one thread."""
    return bool(_limits) and _limits[-1] == 1
