"""Infra validation before promotion (TFX's InfraValidator, for scikit-learn).

The version deploy just published is served from the registry copy by the real server
(:func:`components.serving.server.serve`, what ``retrain serve --version vNNNN`` runs), in a
fresh process on a loopback port; a sample of the
evaluation rows goes through V2, and the answers must be exactly evaluate's predictions. A model
that cannot be loaded where it will be served (a torn upload, a type off the allow-list,
library skew) or that serves other answers than the ones the gate judged never becomes champion.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request
from dataclasses import asdict
from pathlib import Path

from components.data.schema import plain_value
from components.runtime import delegation
from components.serving.inference import v2_outputs, v2_request
from components.serving.server import ServeOptions, serve

SAMPLE_ROWS = 50
START_SECONDS = 60.0
# A regressor's served prediction may differ from evaluate's by this much, relative to it or
# absolute (the same model and rows: only floating-point order differs, when it does at all).
PREDICTION_TOLERANCE = 1e-9
PROBABILITY_TOLERANCE = 1e-9


class InfraValidationError(Exception):
    """The published version did not serve evaluate's predictions."""


def prediction_sample(frame, feature_kinds: dict[str, str], predicted, probabilities) -> dict:
    """What evaluate hands deploy: a V2 request for the first rows, and its expected answer
    (``probabilities`` None: a regressor's, which has only ``predict``)."""
    rows = frame.head(SAMPLE_ROWS)
    sample = {"request": v2_request(rows, feature_kinds, request_id="infra-validation"),
              "predict": [plain_value(value) for value in predicted[:len(rows)]]}
    if probabilities is None:
        sample["request"]["outputs"] = [{"name": "predict"}]
        return sample
    sample["predict_proba"] = [[float(p) for p in row] for row in probabilities[:len(rows)]]
    return sample


class _Forked:
    """A forked server process, with the part of ``subprocess.Popen`` used here."""

    def __init__(self, pid: int):
        self.pid, self.returncode = pid, None

    def poll(self):
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def terminate(self):
        if self.poll() is None:
            os.kill(self.pid, signal.SIGTERM)

    def kill(self):
        if self.poll() is None:
            os.kill(self.pid, signal.SIGKILL)

    def wait(self, timeout=None):
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout)
            time.sleep(0.02)
        return self.returncode


def _options(registry_uri: str, model_name: str, version: str, folder: str) -> ServeOptions:
    """The server pinned to ``version`` on a free loopback port, never following the champion;
    it writes its port to a file once it listens."""
    return ServeOptions(registry_uri=registry_uri, model_name=model_name, version=version,
                        host="127.0.0.1", port=0, reload_seconds=0,
                        ready_file=str(Path(folder) / "port"))


def _start(options: ServeOptions, folder: str):
    """The server in a fresh process: forked when this is a warm worker's child of the
    scikit-learn tier (it starts in a fraction of a second), else a new interpreter running this
    module. Either way the model is loaded anew from the registry."""
    log = open(Path(folder) / "server.log", "w+")  # noqa: SIM115 (closed by the caller)
    # Fork only a warm worker's child: elsewhere a lock another thread holds at the fork (the
    # import lock, OpenMP's pool after a fit) would never be released in the child.
    if not delegation.IN_WORKER_CHILD or "sklearn.ensemble" not in sys.modules:
        process = subprocess.Popen([sys.executable, "-m", __name__, json.dumps(asdict(options))],
                                   stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=dict(os.environ))
        return process, log
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the same server, without a new interpreter's imports
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        sys.stdout = sys.stderr = log  # whatever they were (a test's capture, say)
        os._exit(_serve_here(options, log))
    return _Forked(pid), log


def _serve_here(options: ServeOptions, log) -> int:
    """Serve until terminated; the exit status, with any error written to ``log``."""
    status = 1
    try:
        serve(options)
        status = 0
    except SystemExit as exit_:
        if isinstance(exit_.code, str):
            print(exit_.code, file=log)
        status = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:  # noqa: BLE001 - reported in the log the parent reads
        traceback.print_exc(file=log)
    finally:
        log.flush()
    return status


def _last_line(log) -> str:
    log.flush()
    log.seek(0)
    lines = [line.strip() for line in log.read().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def _written_port(ready: Path) -> str:
    """The port in the server's ready file, or "" while there is none yet."""
    try:
        port = ready.read_text().strip()
    except FileNotFoundError:
        return ""
    return port if port.isdigit() else ""


def _wait_ready(process, ready: Path, log, deadline: float) -> str:
    while not (port := _written_port(ready)):
        if process.poll() is not None:
            raise InfraValidationError(f"the server exited ({process.returncode}): "
                                       f"{_last_line(log)}")
        if time.monotonic() > deadline:
            raise InfraValidationError(f"the server did not start in {START_SECONDS:g} s: "
                                       f"{_last_line(log)}")
        time.sleep(0.02)
    url = f"http://127.0.0.1:{port}"
    while True:
        try:
            with urllib.request.urlopen(url + "/v2/health/ready", timeout=2):
                return url
        except (urllib.error.URLError, OSError) as error:
            if process.poll() is not None or time.monotonic() > deadline:
                raise InfraValidationError(f"the server never became ready at {url} (the last "
                                           f"probe: {getattr(error, 'reason', error)}): "
                                           f"{_last_line(log)}") from None
            time.sleep(0.02)


def compare(sample: dict, response: dict) -> None:
    """Raise unless the response holds exactly the sample's predictions (a regressor's within
    :data:`PREDICTION_TOLERANCE`)."""
    outputs = v2_outputs(response)
    served, expected = outputs.get("predict"), sample["predict"]
    if "predict_proba" not in sample:
        _compare_values(served, expected)
        return
    if served != expected:
        wrong = next(i for i, (a, b) in enumerate(zip(served or [], expected, strict=False))
                     if a != b) if served and len(served) == len(expected) else None
        raise InfraValidationError(
            f"row {wrong}: served {served[wrong]!r}, evaluate predicted {expected[wrong]!r}"
            if wrong is not None else
            f"served {len(served or [])} predictions for {len(expected)} rows")
    for index, (got, want) in enumerate(zip(outputs["predict_proba"], sample["predict_proba"],
                                            strict=True)):
        if len(got) != len(want) or any(not math.isclose(g, w, rel_tol=0,
                                                         abs_tol=PROBABILITY_TOLERANCE)
                                        for g, w in zip(got, want, strict=True)):
            raise InfraValidationError(f"row {index}: served probabilities {got}, evaluate's "
                                       f"{want}")


def _compare_values(served, expected) -> None:
    """A regressor's served predictions against evaluate's, within the tolerance."""
    if served is None or len(served) != len(expected):
        raise InfraValidationError(f"served {len(served or [])} predictions for "
                                   f"{len(expected)} rows")
    for index, (got, want) in enumerate(zip(served, expected, strict=True)):
        if got is None or not math.isclose(got, want, rel_tol=PREDICTION_TOLERANCE,
                                           abs_tol=PREDICTION_TOLERANCE):
            raise InfraValidationError(f"row {index}: served {got!r}, evaluate predicted "
                                       f"{want!r} (tolerance {PREDICTION_TOLERANCE:g}, "
                                       "relative or absolute)")


def validate_serving(*, registry_uri: str, model_name: str, version: str,
                     sample: dict) -> dict:
    """Serve ``version`` from the registry in a fresh process and check its answers."""
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="retrain-infra-") as folder:
        options = _options(registry_uri, model_name, version, folder)
        process, log = _start(options, folder)
        try:
            url = _wait_ready(process, Path(options.ready_file), log, start + START_SECONDS)
            status, response = _post(f"{url}/v2/models/{model_name}/infer", sample["request"])
            if status != 200:
                raise InfraValidationError(f"the server answered {status}: "
                                           f"{response.get('error', response)}")
            if response.get("model_version") != version:
                raise InfraValidationError(f"the server answered as version "
                                           f"{response.get('model_version')!r}, not {version}")
            compare(sample, response)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.close()
    return {"rows": len(sample["predict"]), "seconds": round(time.monotonic() - start, 2)}


if __name__ == "__main__":  # the new-interpreter server of _start
    sys.exit(_serve_here(ServeOptions(**json.loads(sys.argv[1])), sys.stderr))
