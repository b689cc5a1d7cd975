"""What the model server's tests share: a small model's features, publishing it, a server
process on a loopback port, and a plain HTTP call."""

import dataclasses
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

from components.ml.estimators import new_estimator
from components.ml.features import build_feature_transformer
from components.ml.models import library_versions, model_bytes
from components.records import VersionMetadata
from components.registry import Registry
from tests.helpers import make_rows

KINDS = {"x1": "numeric", "x2": "numeric", "color": "categorical"}


NAME = "shop"


def fit(seed: int, model_type: str):
    from sklearn.pipeline import Pipeline

    frame = make_rows(300, seed=seed, shift=float(seed % 2))
    model = Pipeline([("features", build_feature_transformer(KINDS)),
                      ("classifier", new_estimator(model_type, task="classification", feature_kinds={}))])
    return model.fit(frame[list(KINDS)], frame["label"].astype(int))


def publish(registry: Registry, model, **overrides) -> str:
    metadata = dataclasses.replace(
        VersionMetadata(run_id="test", created_at="now", feature_kinds=KINDS,
                        libraries=library_versions(), strategy="full", model_type="hgb"),
        **overrides)
    return registry.publish(model_bytes(model, metadata.model_type), metadata)


def start_server(registry: Registry, tmp_path, *flags):
    ready = tmp_path / f"ready-{time.monotonic_ns()}"
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--registry-uri", registry.registry_uri,
         "--model-name", registry.model_name, "--port", "0", "--ready-file", str(ready), *flags],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    url = f"http://127.0.0.1:{ready.read_text()}"
    while True:
        try:
            urllib.request.urlopen(url + "/v2/health/live", timeout=1)
            break
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    return process, url


def call(url: str, path: str, body=None, *, raw: bytes | None = None):
    """(status, parsed JSON) of a GET (no body) or a POST."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(url + path, data=data, method="GET" if data is None
                                     else "POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
