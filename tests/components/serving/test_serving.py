"""The model server, a real process on a loopback port, driven by a published V2 client
(tritonclient) and by plain HTTP for V1 and for the requests a careless client sends."""

import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

from components.ml.models import library_versions
from components.registry import ChampionPointer
from tests.components.serving.helpers import KINDS, NAME, call, publish, start_server
from tests.helpers import make_rows

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
    "only-unknown-columns": (f"/v2/models/{NAME}/infer", {"inputs": [
        {"name": "zz", "shape": [1], "datatype": "FP64", "data": [1]}]}, 400,
        "missing input(s) 'x1', 'x2', 'color'"),
    "repeated-column": (f"/v2/models/{NAME}/infer", {"inputs": [
        {"name": "zz", "shape": [1], "datatype": "FP64", "data": [1]},
        {"name": "zz", "shape": [1], "datatype": "FP64", "data": [1]}]}, 400,
        "input 'zz' is given twice"),
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
        broken = publish(store, models["v0001"])
        store.storage.write_bytes(store.version_uri(broken, "model.skops"), b"torn")
        store.move_champion(ChampionPointer(broken, previous="v0001", reason="bad"), "v0001")
        skewed = publish(store, models["v0001"],
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
    skewed = publish(store, models["v0001"],
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


def test_unfamiliar_values_are_flagged_and_extra_fields_ignored_and_counted(server):
    """Check that values beyond what the served version saw in training (a number out of its
    range, a category it never saw) are answered, flagged in the response by feature and
    counted in /metrics; and that fields that are not features (an id, the label) are ignored
    and counted, in both protocols, the same way."""
    counters = (
        f'retrain_serving_unfamiliar_values_total{{feature="x1",kind="out_of_range",'
        f'model="{NAME}"}}',
        f'retrain_serving_unfamiliar_values_total{{feature="color",kind="unseen_category",'
        f'model="{NAME}"}}',
        f'retrain_serving_ignored_fields_total{{field="id",model="{NAME}"}}')
    before = _counted(server, counters)
    instance = {"x1": 1000.0, "x2": 0.1, "color": "purple", "id": 7, "label": 1}
    status, v1 = call(server, f"/v1/models/{NAME}:predict", {"instances": [instance]})
    assert status == 200
    assert len(v1["predictions"]) == 1
    assert v1["unfamiliar_values"] == {"x1": {"out_of_range": 1},
                                       "color": {"unseen_category": 1}}
    assert v1["ignored_inputs"] == ["id", "label"]
    inputs = [{"name": name, "shape": [1], "datatype": "BYTES" if name == "color" else "FP64",
               "data": [value]} for name, value in instance.items()]
    status, v2 = call(server, f"/v2/models/{NAME}/infer", {"inputs": inputs})
    assert status == 200
    assert v2["parameters"] == {"unfamiliar_values": v1["unfamiliar_values"],
                                "ignored_inputs": ["id", "label"]}
    familiar = call(server, f"/v1/models/{NAME}:predict",
                    {"instances": [{"x1": 0.1, "x2": 0.1, "color": "red"}]})[1]
    assert familiar == {"predictions": familiar["predictions"]}  # nothing else to say
    after = _counted(server, counters)
    assert [after[name] - before[name] for name in counters] == [2.0, 2.0, 2.0]


def _counted(url: str, names) -> dict[str, float]:
    """The value of each named counter in /metrics (0 when it has not counted yet)."""
    lines = urllib.request.urlopen(url + "/metrics").read().decode().splitlines()
    values = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in lines
              if line and not line.startswith("#")}
    return {name: values.get(name, 0.0) for name in names}


def test_v1_returns_probabilities_when_asked_as_kserve_does(registry, tmp_path):
    """Check that with --v1-predict-proba (or PREDICT_PROBA=true, KServe's sklearn server's
    switch) V1 predictions are each row's class probabilities, those V2 gives."""
    from components.serving.inference import v2_outputs, v2_request

    store, _ = registry
    process, url = start_server(store, tmp_path, "--v1-predict-proba")
    try:
        objects = [{c: (None if v != v else v) for c, v in row.items()}
                   for row in ROWS[list(KINDS)].to_dict("records")]
        status, v1 = call(url, f"/v1/models/{NAME}:predict", {"instances": objects})
        expected = v2_outputs(call(url, f"/v2/models/{NAME}/infer",
                                   v2_request(ROWS, KINDS))[1])["predict_proba"]
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert status == 200
    assert v1["predictions"] == expected



# -- a regressor: a team's own LightGBM model --------------------------------------------------
FACTORY = "lightgbm_model:make_model"


@pytest.fixture(scope="module")
def regressor(tmp_path_factory):
    """A registry whose champion is a LightGBM regressor made by the example factory, and a
    server of it started with V1 class probabilities asked for."""
    from components.registry import Registry
    from components.stages.retrain import fit_fresh
    from tests.helpers import make_numbers

    rows = make_numbers(400, seed=3)
    model, _ = fit_fresh(rows, rows.tail(50), label_column="label", feature_kinds=KINDS,
                         model_type=FACTORY, epochs=1, task="regression",
                         model_config={"n_estimators": 30})
    store = Registry(str(tmp_path_factory.mktemp("regression") / "registry"), "prices")
    version = publish(store, model, model_type=FACTORY, task="regression")
    store.move_champion(ChampionPointer(version, reason="test"), None)
    process, url = start_server(store, tmp_path_factory.mktemp("server"))
    yield url, model
    process.terminate()
    process.wait(timeout=10)


def test_a_regressor_answers_a_published_client_with_its_own_predictions(regressor):
    """Check that a served LightGBM regressor answers tritonclient in FP64 with exactly the
    registry model's predictions, and that its metadata names the task and the factory."""
    import tritonclient.http as http

    url, model = regressor
    client = http.InferenceServerClient(url=url.removeprefix("http://"))
    metadata = client.get_model_metadata("prices")
    assert [(o["name"], o["datatype"]) for o in metadata["outputs"]] == [("predict", "FP64")]
    assert metadata["parameters"]["task"] == "regression"
    assert metadata["parameters"]["model_type"] == FACTORY
    rows = make_rows(7, seed=9)
    inputs = []
    for column, kind in KINDS.items():
        values = (np.array([str(v).encode() for v in rows[column]], dtype=object)
                  if kind == "categorical" else rows[column].to_numpy(dtype=float))
        tensor = http.InferInput(column, [len(rows)], "BYTES" if kind == "categorical" else
                                 "FP64")
        tensor.set_data_from_numpy(values, binary_data=True)
        inputs.append(tensor)
    result = client.infer("prices", inputs)
    np.testing.assert_allclose(result.as_numpy("predict"), model.predict(rows[list(KINDS)]),
                               rtol=1e-12)


def test_class_probabilities_from_a_regressor_are_a_4xx_naming_the_task(regressor):
    """Check that predict_proba asked of a regressor is a 400 saying it is a regression model,
    and that V1 answers numbers."""
    from components.serving.inference import v2_request

    url, model = regressor
    rows = make_rows(3, seed=4)
    status, body = call(url, "/v2/models/prices/infer",
                        v2_request(rows, KINDS, outputs=["predict_proba"]))
    assert status == 400
    assert "it is a regression model, which predicts numbers" in body["error"]
    status, body = call(url, "/v1/models/prices:predict",
                        {"instances": rows[list(KINDS)].to_dict("records")})
    assert status == 200
    np.testing.assert_allclose(body["predictions"], model.predict(rows[list(KINDS)]),
                               rtol=1e-12)


def test_infra_validation_compares_a_regressors_predictions_within_a_stated_tolerance():
    """Check that a regressor's served predictions pass within the tolerance and fail beyond
    it, naming the row and the tolerance."""
    from components.serving.infra_validation import (
        PREDICTION_TOLERANCE,
        InfraValidationError,
        compare,
        prediction_sample,
    )

    rows = make_rows(3, seed=1)
    sample = prediction_sample(rows, KINDS, np.array([10.0, 20.0, 30.0]), None)
    assert "predict_proba" not in sample
    assert sample["request"]["outputs"] == [{"name": "predict"}]
    served = {"outputs": [{"name": "predict", "shape": [3], "datatype": "FP64",
                           "data": [10.0, 20.0 * (1 + PREDICTION_TOLERANCE / 10), 30.0]}]}
    compare(sample, served)
    served["outputs"][0]["data"][2] = 30.001
    with pytest.raises(InfraValidationError, match=r"row 2: served 30.001, evaluate predicted "
                                                   r"30.0 \(tolerance 1e-09"):
        compare(sample, served)


def test_infra_validation_waits_for_the_whole_port_in_the_ready_file(tmp_path):
    """Check that a ready file seen created but not yet written does not send the readiness
    probe to a wrong address for good: the wait reads the port again until it is whole. (CI
    once saw a deploy rejected with "the server never became ready" that way.)"""
    import http.server
    import threading

    from components.serving.infra_validation import _wait_ready
    from components.serving.server import write_ready_file

    class Ready(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/v2/health/ready" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ready)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ready = tmp_path / "port"
    ready.write_text("")  # created, not yet written: what a reader can see mid-write
    writer = threading.Timer(0.3, write_ready_file, (ready, server.server_address[1]))
    writer.start()
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with (tmp_path / "log").open("w+") as log:
            url = _wait_ready(running, ready, log, time.monotonic() + 5)
        assert url == f"http://127.0.0.1:{server.server_address[1]}"
        assert sorted(path.name for path in tmp_path.iterdir()) == ["log", "port"]  # no partial
    finally:
        running.kill()
        writer.join()
        server.shutdown()


def test_a_server_that_never_answers_is_reported_with_its_address_and_the_last_probe(tmp_path):
    """Check that when nothing answers the readiness probe until the deadline, the error names
    the address probed and what the probe got, so a wrong address and a silent server differ."""
    import socket

    from components.serving.infra_validation import InfraValidationError, _wait_ready

    with socket.socket() as unused:  # a port nothing listens on once it is closed
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    (tmp_path / "port").write_text(str(port))
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with (tmp_path / "log").open("w+") as log, pytest.raises(
                InfraValidationError, match=rf"never became ready at http://127\.0\.0\.1:{port} "
                                            r"\(the last probe: .*refused\)"):
            _wait_ready(running, tmp_path / "port", log, time.monotonic() + 0.5)
    finally:
        running.kill()
