"""A `retrain run` killed with SIGKILL at any point leaves no process running and, by the next run
at the latest, no temporary folder behind."""

import os
import signal
import subprocess
import time

import pytest

from app import demo_data
from components.runtime.lifeline import OWNER_ENV, alive, end_with_owner, owner_token
from tests.helpers import outcome, retrain_cli, retrain_command

CUTOFFS = demo_data.demo_cutoffs()


def processes_of_run(token: str) -> list[int]:
    """Every live process whose environment names ``token`` as its run's owner."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as handle:
                environ = handle.read()
            with open(f"/proc/{entry}/stat") as handle:
                state = handle.read().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if f"{OWNER_ENV}={token}".encode() in environ.split(b"\0") and state != "Z":
            found.append(int(entry))
    return found


def test_a_process_ends_once_its_owner_is_gone(tmp_path):
    """Check the lifeline itself: a watcher ends its process within a second of the owner."""
    owner = subprocess.Popen(["sleep", "30"])
    token = owner_token(owner.pid)
    assert alive(token)
    watcher = subprocess.Popen(
        [os.sys.executable, "-c", "import time\nfrom components.runtime.lifeline import end_with_owner,"
         f" exit_now\nend_with_owner(exit_now, token={token!r})\ntime.sleep(60)"])
    time.sleep(0.5)
    assert watcher.poll() is None
    owner.kill()
    owner.wait()
    assert not alive(token)
    assert watcher.wait(timeout=5) == 137
    assert end_with_owner(lambda: None, token="") is False  # nothing announced: nothing watched


@pytest.fixture
def world(tmp_path, demo_folder):
    source = tmp_path / "source"
    source.mkdir()
    (source / "initial.csv").write_bytes((demo_folder / "customers_2025-01_initial.csv")
                                         .read_bytes())
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    return {"root": tmp_path, "source": source, "registry": tmp_path / "registry",
            "tmp": temporary}


@pytest.mark.slow
@pytest.mark.parametrize("after", [0.4, 1.5, 2.6], ids=["starting", "early-stages", "training"])
def test_a_killed_run_leaves_no_process_and_its_pipe_closes(world, after):
    """Check that after `kill -9` of `retrain run` every process of the run ends within a few
    seconds (so a pipe into `tail` returns), and the next run removes what it left in TMPDIR."""
    run = subprocess.Popen(
        retrain_command(world["source"], world["registry"], world["root"], CUTOFFS[0]),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        env={**os.environ, "TMPDIR": str(world["tmp"])})
    token = owner_token(run.pid)
    time.sleep(after)
    run.send_signal(signal.SIGKILL)
    run.wait()
    deadline = time.monotonic() + 5
    while processes_of_run(token) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_of_run(token) == []
    start = time.monotonic()
    run.stdout.read()  # EOF only once nothing holds the pipe open
    assert time.monotonic() - start < 5
    result = outcome(retrain_cli(world["source"], world["registry"], world["root"], CUTOFFS[0],
                                 env={"TMPDIR": str(world["tmp"])}))
    assert result["status"] in ("deployed", "no-new-data")
    assert list(world["tmp"].iterdir()) == []
