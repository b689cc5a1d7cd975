"""The warm worker runs a step exactly as the stage process would have: same result, output,
environment, directory and errors; and a stage still runs when the worker is gone."""

import os
import signal
import time

import pytest

from components.runtime.delegation import SOCKET_ENV, RemoteTraceback, WarmWorkerError, delegated
from components.runtime.warm_worker import running_worker


@delegated
def report_where(*, word: str) -> dict:
    print(f"stdout says {word}")
    print(f"stderr says {word}", file=__import__("sys").stderr)
    return {"pid": os.getpid(), "cwd": os.getcwd(), "variable": os.environ.get("WARM_TEST"),
            "forwarded": os.environ.get(SOCKET_ENV)}


@delegated(scientific=lambda tier: tier == "full")
def parent_pid(*, tier: str) -> int:
    return os.getppid()


@delegated
def refuse(*, value: str) -> None:
    raise ValueError(f"file data.csv, column 'income': {value!r} is not a number")


@delegated
def die(**_) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.fixture(scope="module")
def worker():
    with running_worker() as process:
        yield process


def test_a_step_runs_in_the_worker_with_the_callers_output_env_and_directory(
        worker, tmp_path, monkeypatch, capfd):
    """Check the result comes back and prints land in the caller's own stdout and stderr."""
    monkeypatch.setenv("WARM_TEST", "from the stage")
    monkeypatch.chdir(tmp_path)
    result = report_where(word="hello")
    out, err = capfd.readouterr()
    assert result["pid"] not in (os.getpid(), worker.pid)  # a forked child did the work
    assert result["cwd"] == str(tmp_path)
    assert result["variable"] == "from the stage"
    assert result["forwarded"] is None  # the child never forwards a step again
    assert "stdout says hello" in out
    assert "stderr says hello" in err
    assert "stage report_where:" in err
    assert "peak RSS" in err


def test_scientific_steps_go_to_the_worker_that_imports_scikit_learn(worker):
    """Check a step marked scientific (for these arguments) runs in the second worker's child."""
    assert parent_pid(tier="light") == worker.pid
    full_tier = parent_pid(tier="full")
    assert full_tier not in (os.getpid(), worker.pid)
    assert os.getpgid(full_tier) == worker.pid  # in the worker's own session, stopped with it


def test_an_error_in_the_worker_is_raised_in_the_stage_with_its_traceback(worker):
    """Check the stage raises the step's own exception, the worker's traceback as its cause."""
    with pytest.raises(ValueError, match="column 'income': 'lots'") as raised:
        refuse(value="lots")
    assert isinstance(raised.value.__cause__, RemoteTraceback)
    assert "in refuse" in str(raised.value.__cause__)


def test_a_killed_child_is_a_clear_error_and_the_worker_keeps_serving(worker):
    """Check a child that dies without a reply fails the stage saying how (the signal, after how
    long), not silently."""
    with pytest.raises(WarmWorkerError, match=r"the warm worker's child \(pid \d+\) was killed by "
                                              r"signal 9 \(SIGKILL\) after \d+\.\d s"):
        die()
    assert report_where(word="again")["pid"] != os.getpid()


def test_without_a_worker_the_step_runs_in_its_own_process(tmp_path, monkeypatch, capfd):
    """Check an unreachable worker (or none announced) still runs the step, here."""
    monkeypatch.setenv(SOCKET_ENV, str(tmp_path / "gone.sock"))
    assert report_where(word="cold")["pid"] == os.getpid()
    assert "unreachable" in capfd.readouterr().err
    monkeypatch.delenv(SOCKET_ENV)
    assert report_where(word="cold")["pid"] == os.getpid()


def test_the_worker_stops_with_its_context(tmp_path):
    """Check leaving the context stops both workers and withdraws the announcement."""
    before = os.environ.get(SOCKET_ENV)
    with running_worker() as process:
        assert os.environ[SOCKET_ENV] != before
    assert os.environ.get(SOCKET_ENV) == before
    assert process.returncode is not None
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the scikit-learn worker goes too
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("a worker process outlived the context")


def test_stage_lines_read_back_as_written(capsys):
    """Check the benchmark's reader of stage lines understands what log_stage writes."""
    from components.runtime.delegation import log_stage, stage_figures

    log_stage("retrain_step", 1.234, 456.7, waited=0.5)
    log_stage("deploy_step", 0.02, 74.0)
    assert stage_figures(capsys.readouterr().err) == {
        "retrain": {"seconds": 1.23, "peak_rss_mib": 457},
        "deploy": {"seconds": 0.02, "peak_rss_mib": 74}}


def test_an_announcement_and_a_reply_that_arrive_together_are_both_read():
    """Check that reading the child's announcement leaves its reply, sent straight after (a step
    that ends at once, a caller slow to read), for the next read: it was once discarded, and
    the stage failed as if the child had died."""
    import pickle
    import socket

    from components.runtime.delegation import HEADER, receive

    caller, child = socket.socketpair()
    with caller, child:
        messages = [pickle.dumps(4242), pickle.dumps(("ok", {"rows": 1}, 0.1, 80.0, ""))]
        child.sendall(b"".join(HEADER.pack(len(m)) + m for m in messages))
        child.close()
        assert [pickle.loads(receive(caller)) for _ in messages] == [
            4242, ("ok", {"rows": 1}, 0.1, 80.0, "")]
        assert receive(caller) is None
