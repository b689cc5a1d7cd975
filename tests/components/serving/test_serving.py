"""The model server, a real process on a loopback port, driven by a published V2 client
(tritonclient) and by plain HTTP for V1 and for the requests a careless client sends."""

import dataclasses
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from components.ml.features import build_feature_transformer
from components.ml.models import library_versions, model_bytes, new_classifier
from components.records import VersionMetadata
from components.registry import ChampionPointer, Registry
from tests.helpers import make_rows

KINDS = {"x1": "numeric", "x2": "numeric", "color": "categorical"}
NAME = "shop"


def _fit(seed: int, model_type: str):
    from sklearn.pipeline import Pipeline

    frame = make_rows(300, seed=seed, shift=float(seed % 2))
    model = Pipeline([("features", build_feature_transformer(KINDS)),
                      ("classifier", new_classifier(model_type))])
    return model.fit(frame[list(KINDS)], frame["label"].astype(int))


def _publish(registry: Registry, model, **overrides) -> str:
    metadata = VersionMetadata(run_id="test", created_at="now", feature_kinds=KINDS,
                               libraries=library_versions(), strategy="full", model_type="hgb")
    return registry.publish(model_bytes(model), dataclasses.replace(metadata, **overrides))


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """v0001 (champion) and v0002, two different models of the same features."""
    store = Registry(str(tmp_path_factory.mktemp("serving") / "registry"), NAME)
    models = {_publish(store, _fit(1, "hgb")): _fit(1, "hgb"),
              _publish(store, _fit(2, "sgd")): _fit(2, "sgd")}
    store.move_champion(ChampionPointer("v0001", reason="test"), None)
    return store, models


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


@pytest.fixture(scope="module")
def server(registry, tmp_path_factory):
    store, _ = registry
    process, url = start_server(store, tmp_path_factory.mktemp("server"), "--reload-seconds",
                                "0.2", "--max-batch-rows", "50", "--max-request-mb", "0.05")
    yield url
    process.terminate()
    process.wait(timeout=10)


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


ROWS = make_rows(7, seed=9)
ROWS.loc[2, "x1"] = np.nan
ROWS.loc[4, "color"] = None


def _triton_inputs(client_module, binary: bool):
    inputs = []
    for column, kind in KINDS.items():
        values = ROWS[column].to_numpy(dtype=object if kind == "categorical" else float)
        if kind == "categorical":
            values = np.array([b"" if v is None else str(v).encode() for v in values],
                              dtype=object)
        tensor = client_module.InferInput(column, [len(ROWS)],
                                          "BYTES" if kind == "categorical" else "FP64")
        tensor.set_data_from_numpy(values, binary_data=binary)
        inputs.append(tensor)
    return inputs


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary-tensors"])
def test_v2_with_a_published_client(server, registry, binary):
    """Check the V2 routes through tritonclient: health, metadata naming each feature with its
    datatype, and predictions equal to the model's own, with the request id and version."""
    import tritonclient.http as http

    store, models = registry
    client = http.InferenceServerClient(url=server.removeprefix("http://"))
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(NAME)
    metadata = client.get_model_metadata(NAME)
    assert metadata["versions"] == ["v0001"]
    assert metadata["platform"] == "scikit-learn"
    assert [(i["name"], i["datatype"], i["shape"]) for i in metadata["inputs"]] == [
        ("x1", "FP64", [-1]), ("x2", "FP64", [-1]), ("color", "BYTES", [-1])]
    assert [o["name"] for o in metadata["outputs"]] == ["predict", "predict_proba"]
    result = client.infer(NAME, _triton_inputs(http, binary), request_id="req-7",
                          outputs=[http.InferRequestedOutput("predict", binary_data=binary),
                                   http.InferRequestedOutput("predict_proba",
                                                             binary_data=binary)])
    frame = ROWS[list(KINDS)].copy()
    frame.loc[4, "color"] = ""  # a BYTES tensor from numpy carries no missing value
    expected = models["v0001"].predict_proba(frame.assign(color=frame["color"].astype(object)))
    response = result.get_response()
    assert (response["model_name"], response["model_version"], response["id"]) == (
        NAME, "v0001", "req-7")
    assert result.as_numpy("predict").tolist() == models["v0001"].classes_[
        expected.argmax(axis=1)].tolist()
    np.testing.assert_allclose(result.as_numpy("predict_proba"), expected, rtol=0, atol=1e-12)


def test_v2_honours_the_outputs_asked_for(server):
    """Check that asking for one output returns only that output."""
    from components.serving.inference import v2_request

    status, body = call(server, f"/v2/models/{NAME}/infer",
                        v2_request(ROWS, KINDS, outputs=["predict"]))
    assert status == 200
    assert [o["name"] for o in body["outputs"]] == ["predict"]
    assert body["outputs"][0]["datatype"] == "INT64"


def test_v1_routes_take_objects_and_lists(server, registry):
    """Check V1: the model list, its readiness, and predictions from objects and from lists in
    the model's column order."""
    _, models = registry
    assert call(server, "/v1/models") == (200, {"models": [NAME]})
    assert call(server, f"/v1/models/{NAME}") == (200, {"name": NAME, "ready": True})
    objects = [{"x1": None if np.isnan(r.x1) else r.x1, "x2": r.x2, "color": r.color}
               for r in ROWS.itertuples()]
    lists = [[o["x1"], o["x2"], o["color"]] for o in objects]
    expected = models["v0001"].predict(ROWS[list(KINDS)].astype({"color": object})).tolist()
    for instances in (objects, lists):
        assert call(server, f"/v1/models/{NAME}:predict", {"instances": instances}) == (
            200, {"predictions": expected})


BAD = {
    "malformed-json": (f"/v2/models/{NAME}/infer", b"{not json", 400, "not valid JSON"),
    "unknown-model": ("/v2/models/nope/infer", {"inputs": []}, 404, "no model named 'nope'"),
    "unknown-column": (f"/v2/models/{NAME}/infer", {"inputs": [
        {"name": "zz", "shape": [1], "datatype": "FP64", "data": [1]}]}, 400,
        "input 'zz' is not a feature of model 'shop'; its features: x1, x2, color"),
    "missing-column": (f"/v2/models/{NAME}/infer", {"inputs": [
        {"name": "x1", "shape": [1], "datatype": "FP64", "data": [1]}]}, 400,
        "missing input(s) 'x2', 'color'"),
    "wrong-type": (f"/v2/models/{NAME}/infer", {"inputs": [
        {"name": "x1", "shape": [1], "datatype": "BYTES", "data": ["a"]},
        {"name": "x2", "shape": [1], "datatype": "FP64", "data": [1]},
        {"name": "color", "shape": [1], "datatype": "BYTES", "data": ["red"]}]}, 400,
        "input 'x1' is numeric: datatype FP64"),
    "text-in-a-number": (f"/v1/models/{NAME}:predict", {"instances": [
        {"x1": "lots", "x2": 1, "color": "red"}]}, 400, "input 'x1' holds 'lots'"),
    "bad-shape": (f"/v2/models/{NAME}/infer", {"inputs": [
        {"name": c, "shape": [3], "datatype": "FP64", "data": [1, 2]} for c in KINDS]}, 400,
        "shape [3] does not hold its 2 value(s)"),
    "too-many-rows": (f"/v1/models/{NAME}:predict", {"instances": [[1, 2, "red"]] * 51}, 413,
                      "51 rows are more than this server takes in one request "
                      "(--max-batch-rows 50)"),
    "body-too-large": (f"/v1/models/{NAME}:predict", b" " * 60_000, 413,
                       "at most 52428 are taken (--max-request-mb 0.05)"),
    "unknown-output": (f"/v2/models/{NAME}/infer", {"inputs": [], "outputs": [{"name": "x"}]},
                       400, "output 'x' is not one of predict, predict_proba"),
    "not-an-object": (f"/v1/models/{NAME}:predict", [1, 2], 400, "'instances' list"),
    "unknown-route": ("/v3/anything", None, 404, "no such route: GET /v3/anything"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_requests_get_a_4xx_naming_the_problem_and_hurt_nothing(server, case):
    """Check each careless request: a 4xx with a JSON error naming the column or the limit; the
    server answers the next good request as before."""
    from components.serving.inference import v2_request

    path, body, status, message = BAD[case]
    raw = body if isinstance(body, bytes) else None
    got, answer = call(server, path, None if raw is not None else body, raw=raw)
    assert got == status and message in answer["error"], answer
    assert call(server, f"/v2/models/{NAME}/infer", v2_request(ROWS, KINDS))[0] == 200


def _served_version(url: str) -> str:
    return call(url, f"/v2/models/{NAME}")[1]["versions"][0]


def _wait_for_version(url: str, version: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while _served_version(url) != version:
        assert time.monotonic() < deadline, f"still serving {_served_version(url)}"
        time.sleep(0.1)


def test_the_server_follows_deploys_and_rollbacks_without_a_restart(registry, tmp_path):
    """Check that a deploy (pointer to v0002) and a rollback (back to v0001) are served within
    a reload period, every request in between answered by one model or the other, and that a
    version that fails to load leaves the served one serving, counted in /metrics."""
    from components.serving.inference import v2_outputs, v2_request

    store, models = registry
    process, url = start_server(store, tmp_path, "--reload-seconds", "0.2")
    try:
        assert _served_version(url) == "v0001"
        expected = {v: models[v].predict(ROWS[list(KINDS)].astype({"color": object})).tolist()
                    for v in models}
        store.move_champion(ChampionPointer("v0002", previous="v0001", reason="deploy"), "v0001")
        seen = set()
        deadline = time.monotonic() + 10
        while "v0002" not in seen:
            assert time.monotonic() < deadline
            status, body = call(url, f"/v2/models/{NAME}/infer", v2_request(ROWS, KINDS))
            assert status == 200
            seen.add(body["model_version"])
            assert v2_outputs(body)["predict"] == expected[body["model_version"]]
        store.rollback()  # back to v0001
        _wait_for_version(url, "v0001")
        broken = _publish(store, models["v0001"])
        store.storage.write_bytes(store.version_uri(broken, "model.skops"), b"torn")
        store.move_champion(ChampionPointer(broken, previous="v0001", reason="bad"), "v0001")
        skewed = _publish(store, models["v0001"],
                          libraries={**library_versions(), "scikit-learn": "1.5.2"})
        time.sleep(1.0)
        assert _served_version(url) == "v0001"  # the torn version did not replace it
        store.move_champion(ChampionPointer(skewed, previous=broken, reason="old sklearn"),
                            broken)
        time.sleep(1.0)
        assert _served_version(url) == "v0001"
        metrics = urllib.request.urlopen(url + "/metrics").read().decode()
        for version in (broken, skewed):
            assert (f'retrain_serving_model_load_failures_total{{model="{NAME}",'
                    f'version="{version}"}} 1.0') in metrics
        assert f'retrain_serving_model_info{{model="{NAME}",version="v0001"}} 1.0' in metrics
        assert ('retrain_serving_requests_total{code="200",route="/v2/models/{name}/infer"'
                in metrics)
        assert "retrain_serving_request_seconds_bucket" in metrics
    finally:
        store.move_champion(ChampionPointer("v0001", reason="reset"),
                            store.champion().version)
        process.terminate()
        output, _ = process.communicate(timeout=10)
    assert "was saved with scikit-learn 1.5.2" in output
    assert "has SHA-256" in output


def test_a_pinned_version_that_cannot_load_stops_the_server_with_the_reason(registry, tmp_path):
    """Check that `retrain serve --version` of a model from another scikit-learn minor exits
    non-zero naming both versions, and that --allow-version-skew serves it."""
    store, models = registry
    skewed = _publish(store, models["v0001"],
                      libraries={**library_versions(), "scikit-learn": "1.5.2"})
    completed = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve", "--registry-uri", store.registry_uri,
         "--model-name", NAME, "--version", skewed, "--port", "0"],
        capture_output=True, text=True, timeout=60)
    assert completed.returncode != 0
    assert "saved with scikit-learn 1.5.2" in completed.stdout + completed.stderr
    process, url = start_server(store, tmp_path, "--version", skewed, "--allow-version-skew")
    try:
        assert _served_version(url) == skewed
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_the_server_listens_on_loopback_by_default():
    """Check the default host: a laptop's server is not reachable from the network."""
    from app.cli import build_parser

    args = build_parser().parse_args(["serve", "--registry-uri", "r", "--model-name", "m"])
    assert (args.host, args.port, args.reload_seconds) == ("127.0.0.1", 8080, 5.0)
