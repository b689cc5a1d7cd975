"""Threads: one for small data, never more than the CPUs the process may use."""

import pytest

from components.ml import threads


def test_small_data_gets_one_thread_and_large_data_every_allowed_cpu(monkeypatch):
    """Check the thread count on each side of SMALL_CELLS."""
    monkeypatch.setattr(threads, "available_cpus", lambda: 6)
    monkeypatch.setattr(threads, "idle_cpus", lambda: 6)
    assert threads.threads_for(200) == 1
    assert threads.threads_for(threads.SMALL_CELLS // 10) == 6
    assert threads.threads_for(800, features=3000) == 6  # few rows, many features


@pytest.mark.parametrize("cpu_max, expected", [("max 100000", 4), ("150000 100000", 1),
                                               ("250000 100000", 2), ("50000 100000", 1)],
                         ids=["no-quota", "one-and-a-half", "two-and-a-half", "half"])
def test_a_cgroup_quota_caps_the_cpus(tmp_path, monkeypatch, cpu_max, expected):
    """Check that a container's CPU quota (cgroup v2 cpu.max) caps the affinity's count."""
    quota = tmp_path / "cpu.max"
    quota.write_text(cpu_max + "\n")
    monkeypatch.setattr(threads, "CGROUP_CPU_MAX", str(quota))
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert threads.available_cpus() == expected


def test_a_busy_cpu_takes_a_thread_away(monkeypatch):
    """Check that large data gets one thread per idle CPU, at least one."""
    monkeypatch.setattr(threads, "available_cpus", lambda: 4)
    monkeypatch.setattr(threads, "idle_cpus", lambda: 1)
    assert threads.threads_for(10**6) == 1


def test_idle_cpus_sees_a_busy_core():
    """Check the sampling itself: a process spinning on this CPU makes it count as busy."""
    import os
    import subprocess
    import sys
    import time

    allowed = sorted(os.sched_getaffinity(0))
    hog = subprocess.Popen([sys.executable, "-c", "import os\nos.sched_setaffinity(0, "
                            f"{{{allowed[0]}}})\nwhile True: pass"])
    try:
        time.sleep(0.5)
        assert threads.idle_cpus(0.3) <= max(1, len(allowed) - 1)
    finally:
        hog.kill()
        hog.wait()


def test_the_limit_reaches_openmp_inside_the_block():
    """Check that scikit-learn's OpenMP pool is limited within the block, and freed after."""
    import sklearn.ensemble  # noqa: F401 (loads the OpenMP runtime)
    from threadpoolctl import threadpool_info

    def openmp_threads():
        return {pool["num_threads"] for pool in threadpool_info()
                if pool["user_api"] == "openmp"}

    before = openmp_threads()
    with threads.limited_threads(10):
        assert openmp_threads() == {1}
    assert openmp_threads() == before
