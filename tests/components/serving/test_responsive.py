"""The model server stays responsive: prediction runs apart from the event loop in bounded lanes,
and no request body, however malformed, gets a 5xx."""

import asyncio
import json
import socket
import threading
import urllib.error
import urllib.request

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from components.serving.model import ServedModel
from components.serving.protocol import RequestError
from components.serving.server import (
    FAST_LANE_BYTES,
    Lane,
    Metrics,
    ModelHolder,
    ServeOptions,
    create_app,
)
from tests.components.serving.helpers import KINDS, NAME, call


def test_a_full_lane_refuses_at_once_with_retry_after():
    """Check that work beyond a lane's threads and queue is a 503 with Retry-After, and that
    the lane takes work again once there is room."""
    lane, release = Lane("large", threads=1, queued=0), threading.Event()

    async def scenario():
        running = asyncio.ensure_future(lane.run(release.wait))
        await asyncio.sleep(0.05)
        with pytest.raises(RequestError) as refused:
            await lane.run(lambda: "second")
        release.set()
        await running
        return refused.value, await lane.run(lambda: "after")

    refused, after = asyncio.run(scenario())
    lane.stop()
    assert refused.status == 503
    assert refused.headers == {"Retry-After": "1"}
    assert "1 large requests are being predicted or waiting" in str(refused)
    assert after == "after"


@pytest.fixture
def blocked_server(registry, monkeypatch):
    """The server in this process, whose model blocks on any prediction of more than 100 rows
    until the test releases it."""
    store, _ = registry
    release, started = threading.Event(), threading.Event()
    predict = ServedModel.predict

    def blocking_predict(self, columns):
        if len(next(iter(columns.values()))) > 100:
            started.set()
            assert release.wait(30)
        return predict(self, columns)

    monkeypatch.setattr(ServedModel, "predict", blocking_predict)
    import uvicorn

    options = ServeOptions(registry_uri=store.registry_uri, model_name=NAME, reload_seconds=0)
    holder = ModelHolder(options, Metrics(NAME))
    assert holder.load("v0001")
    listener = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(holder, options), log_level="error",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    yield url, release, started
    release.set()
    server.should_exit = True
    thread.join(10)


def _v2_body(rows: int) -> dict:
    return {"inputs": [{"name": column, "shape": [rows],
                        "datatype": "FP64" if kind == "numeric" else "BYTES",
                        "data": [0.5] * rows if kind == "numeric" else ["red"] * rows}
                       for column, kind in KINDS.items()]}


def test_health_and_a_single_row_are_answered_while_a_batch_is_predicted(blocked_server):
    """Check that while a large request is being predicted (blocked here), readiness,
    liveness, metadata and /metrics answer, and a one-row request is predicted."""
    url, release, started = blocked_server
    batch = _v2_body(5000)
    assert len(json.dumps(batch)) > FAST_LANE_BYTES
    answers = {}
    thread = threading.Thread(target=lambda: answers.update(
        batch=call(url, f"/v2/models/{NAME}/infer", batch)))
    thread.start()
    assert started.wait(10)
    for path in ("/v2/health/ready", "/v2/health/live", f"/v2/models/{NAME}", "/v2"):
        status, _ = call(url, path)
        assert status == 200, path
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        assert response.status == 200
    status, one = call(url, f"/v2/models/{NAME}/infer", _v2_body(1))
    assert status == 200
    assert one["outputs"][0]["shape"] == [1]
    assert thread.is_alive()  # the batch is still waiting
    release.set()
    thread.join(30)
    assert answers["batch"][0] == 200


# -- fuzzing: no body is a 5xx -------------------------------------------------------------------
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6),
                                                                      children, max_size=4),
    max_leaves=20)
FEATURE_NAMES = st.sampled_from([*KINDS, "id", "label", ""])
V2_TENSORS = st.fixed_dictionaries({
    "name": FEATURE_NAMES | JSON_VALUES,
    "shape": st.lists(st.integers(-2, 4), max_size=3) | JSON_VALUES,
    "datatype": st.sampled_from(["FP64", "FP32", "INT64", "BYTES", "BOOL", "UINT8", "X"]),
    "data": st.lists(JSON_VALUES, max_size=4) | JSON_VALUES,
}, optional={"parameters": st.dictionaries(st.sampled_from(["binary_data_size", "x"]),
                                           JSON_VALUES, max_size=2)})
V2_BODIES = st.fixed_dictionaries({"inputs": st.lists(V2_TENSORS, max_size=4) | JSON_VALUES},
                                  optional={"outputs": JSON_VALUES, "id": JSON_VALUES,
                                            "parameters": JSON_VALUES})
V1_BODIES = st.fixed_dictionaries({"instances": st.lists(
    st.dictionaries(FEATURE_NAMES, JSON_VALUES, max_size=5) | st.lists(JSON_VALUES, max_size=4),
    max_size=3) | JSON_VALUES})
RAW_BODIES = st.binary(max_size=64) | st.sampled_from([
    # within the module server's 0.05 MB body limit, so that the parser, not the limit, meets them
    b"[" * 50_000, b"{\"inputs\": [" * 4_000, b"[1e999999]", b"[" + b"9" * 40_000 + b"]",
    b"{\"instances\": [{\"x1\": NaN}]}", b"{\"instances\": [{\"x1\": Infinity}]}",
    b"{\"inputs\": -Infinity}", b"\xff\xfe", b"null"])


def _status(url: str, path: str, data: bytes, headers: dict | None = None) -> int:
    request = urllib.request.Request(url + path, data=data, method="POST",
                                     headers={"Content-Type": "application/json",
                                              **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


FUZZ = settings(max_examples=700, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@FUZZ
@given(body=V2_BODIES)
def test_random_v2_bodies_are_never_a_5xx(server, body):
    """Check that a random V2 request (structured around the protocol's fields) is a 2xx or a
    4xx."""
    assert _status(server, f"/v2/models/{NAME}/infer", json.dumps(body).encode()) < 500


@FUZZ
@given(body=V1_BODIES)
def test_random_v1_bodies_are_never_a_5xx(server, body):
    """Check that a random V1 request is a 2xx or a 4xx."""
    assert _status(server, f"/v1/models/{NAME}:predict", json.dumps(body).encode()) < 500


@FUZZ
@given(body=RAW_BODIES, header=st.none() | st.sampled_from(["0", "3", "-1", "x", "99999"]))
def test_random_bytes_are_never_a_5xx(server, body, header):
    """Check that any bytes (deep nesting, huge numbers, NaN and Infinity literals, binary
    headers that do not fit) are a 4xx on both protocols."""
    headers = {"Inference-Header-Content-Length": header} if header is not None else {}
    assert _status(server, f"/v2/models/{NAME}/infer", body, headers) < 500
    assert _status(server, f"/v1/models/{NAME}:predict", body) < 500
