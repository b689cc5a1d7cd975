"""``retrain serve``: the champion (or a pinned version) behind KServe's protocols.

A Starlette app on uvicorn (what KServe's own model server runs on):

- Open Inference Protocol (V2): ``/v2``, ``/v2/health/live``, ``/v2/health/ready``,
  ``/v2/models/<name>`` (metadata), ``/v2/models/<name>/ready``, ``/v2/models/<name>/infer``
  (also under ``/versions/<version>``);
- KServe V1: ``/v1/models``, ``/v1/models/<name>``, ``/v1/models/<name>:predict``;
- ``/metrics`` in Prometheus text format: requests and errors by route, a latency histogram,
  the served version, and models that failed to load.

Without ``--version`` it follows the champion: every ``--reload-seconds`` it reads the pointer,
and a new champion (a deploy or a rollback) is loaded beside the served one (digest, allow-list,
library versions checked), then swapped in with one assignment; requests in flight finish on the
model they started with. A version that fails to load leaves the old one serving, is logged, and
counted in ``/metrics``. Bad requests are answered 4xx with ``{"error": ...}``; the server keeps
serving. It listens on 127.0.0.1 unless told otherwise (a pod passes ``--host 0.0.0.0``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from components.serving.model import ServedModel
from components.serving.protocol import (
    BINARY_HEADER,
    RequestError,
    parse_json,
    requested_outputs,
    v1_columns,
    v1_response,
    v2_body,
    v2_columns,
    v2_response,
)

logger = logging.getLogger("retrain.serve")
SERVER_NAME = "kfp-retrain"


@dataclass(frozen=True)
class ServeOptions:
    """What ``retrain serve`` was asked for."""

    registry_uri: str
    model_name: str
    version: str = ""  # empty: follow the champion
    host: str = "127.0.0.1"
    port: int = 8080
    reload_seconds: float = 5.0
    allow_version_skew: bool = False
    max_request_mb: float = 16.0
    max_batch_rows: int = 10_000
    ready_file: str = ""  # written with the port once serving (infra validation reads it)
    batch_threads: int = 1  # threads predicting large requests (the fast lane has its own)
    v1_predict_proba: bool = False  # V1 predictions are class probabilities (KServe's PREDICT_PROBA)
    max_queued_batches: int = 8  # large requests waiting beyond those: more are answered 503


# A request body up to this size (about 100 rows of ten features) is predicted on the event loop
# itself: a millisecond or two, which a hop to a thread would double, and never behind a batch.
# Larger bodies take the batch lane's threads.
FAST_LANE_BYTES = 64 * 1024
RETRY_AFTER_SECONDS = 1


class Lane:
    """Prediction work apart from the event loop: a pool of threads and a bounded queue.

    The event loop only reads bodies and answers health, readiness, metadata and /metrics, so
    they answer in milliseconds whatever is being predicted. Work beyond the threads and the
    queue is refused at once (503 with ``Retry-After``), never left to wait without end.
    """

    def __init__(self, name: str, threads: int, queued: int):
        from concurrent.futures import ThreadPoolExecutor

        self.name = name
        # No threads: the work runs on the event loop, at once (small requests).
        self.executor = ThreadPoolExecutor(max_workers=threads, initializer=_one_thread_each,
                                           thread_name_prefix=f"predict-{name}") \
            if threads else None
        self.capacity = threads + queued
        self.admitted = 0  # read and changed on the event loop only: no lock

    async def run(self, work):
        """``work()`` on one of the lane's threads, once there is room for it (on the event
        loop, for a lane without threads)."""
        import asyncio

        if self.executor is None:
            return work()
        if self.admitted >= self.capacity:
            raise RequestError(503, f"the server is busy: {self.admitted} {self.name} requests "
                                    f"are being predicted or waiting, the most it takes; retry "
                                    f"in {RETRY_AFTER_SECONDS} s",
                               {"Retry-After": str(RETRY_AFTER_SECONDS)})
        self.admitted += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, work)
        finally:
            self.admitted -= 1

    def stop(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)


def _one_thread_each() -> None:
    """One BLAS/OpenMP thread per prediction, set in each lane thread (OpenMP's thread count is
    per calling thread): requests are small, more threads cost more than they bring, and two
    lanes spinning up OpenMP teams on 2 cores slow each other down."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)


class Metrics:
    """The server's Prometheus metrics, in a registry of its own."""

    def __init__(self, model_name: str):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("retrain_serving_requests", "Requests by route, HTTP status "
                                "and served version.", ["route", "code", "version"],
                                registry=self.registry)
        self.errors = Counter("retrain_serving_errors", "Requests answered with an error, by "
                              "route and HTTP status.", ["route", "code"],
                              registry=self.registry)
        self.latency = Histogram("retrain_serving_request_seconds", "Time to answer, by route.",
                                 ["route"], registry=self.registry,
                                 buckets=(.0005, .001, .002, .005, .01, .02, .05, .1, .25, .5,
                                          1, 2.5))
        self.served = Gauge("retrain_serving_model_info", "1 for the version being served.",
                            ["model", "version"], registry=self.registry)
        self.load_failures = Counter("retrain_serving_model_load_failures", "Versions that "
                                     "failed to load (the served one kept serving).",
                                     ["model", "version"], registry=self.registry)
        self.unfamiliar = Counter("retrain_serving_unfamiliar_values", "Request values beyond "
                                  "what the served version saw in training, by feature: numbers "
                                  "out of its range, categories it never saw.",
                                  ["model", "feature", "kind"], registry=self.registry)
        self.ignored = Counter("retrain_serving_ignored_fields", "Request fields that are not "
                               "features (V1 instance keys, V2 inputs), ignored.",
                               ["model", "field"], registry=self.registry)
        self._ignored_names: set[str] = set()
        self.model_name = model_name

    def noted(self, unfamiliar: dict[str, dict[str, int]], ignored: list[str]) -> dict:
        """Count a request's unfamiliar values by feature and its ignored fields; returns the
        unfamiliar values, for the response."""
        for feature, kinds in unfamiliar.items():
            for kind, count in kinds.items():
                self.unfamiliar.labels(self.model_name, feature, kind).inc(count)
        for name in ignored:
            # A client's field names are not bounded: past the first 50, they count as one.
            label = name[:80] if name in self._ignored_names or len(self._ignored_names) < 50 \
                else "(other)"
            self._ignored_names.add(label)
            self.ignored.labels(self.model_name, label).inc()
        return unfamiliar

    def now_serving(self, old: str | None, new: str) -> None:
        if old:
            self.served.remove(self.model_name, old)
        self.served.labels(self.model_name, new).set(1)


class ModelHolder:
    """The served model, and the thread that follows the champion."""

    def __init__(self, options: ServeOptions, metrics: Metrics):
        from components.registry import Registry

        self.options = options
        self.metrics = metrics
        self.registry = Registry(options.registry_uri, options.model_name)
        self.current: ServedModel | None = None
        self.failed: set[str] = set()
        self.last_error = ""
        self._stop = threading.Event()

    def load(self, version: str) -> bool:
        """Load ``version`` beside the served one and swap it in; False (logged, counted) if it
        cannot be loaded."""
        try:
            loaded = ServedModel.load(self.registry, version,
                                      allow_version_skew=self.options.allow_version_skew)
        except Exception as error:  # noqa: BLE001 - any load failure keeps the old model
            self.failed.add(version)
            self.last_error = f"{type(error).__name__}: {error}"
            self.metrics.load_failures.labels(self.options.model_name, version).inc()
            logger.error("version %s of %s not loaded, %s keeps serving: %s: %s", version,
                         self.options.model_name, self.current.version if self.current else
                         "nothing", type(error).__name__, error)
            return False
        old, self.current = self.current, loaded  # one assignment: requests see one or other
        self.metrics.now_serving(old.version if old else None, loaded.version)
        logger.info("serving %s %s", self.options.model_name, loaded.version)
        return True

    def wanted_version(self) -> str | None:
        if self.options.version:
            return self.options.version
        pointer = self.registry.champion()
        return pointer.version if pointer else None

    def refresh(self) -> None:
        """Load the champion if it is not what is served (and has not already failed)."""
        try:
            wanted = self.wanted_version()
        except Exception as error:  # noqa: BLE001 - an unreachable registry: keep serving
            logger.error("champion pointer not read: %s: %s", type(error).__name__, error)
            return
        if wanted and wanted not in self.failed and (
                self.current is None or self.current.version != wanted):
            self.load(wanted)

    def follow(self) -> None:
        """Poll the pointer until stopped (a daemon thread: requests never wait for it)."""
        while not self._stop.wait(self.options.reload_seconds):
            self.refresh()

    def stop(self) -> None:
        self._stop.set()


def _json(payload, status: int = 200, headers: dict | None = None):
    from starlette.responses import Response

    return Response(json.dumps(payload, separators=(",", ":")), status_code=status,
                    media_type="application/json", headers=headers)


class Routes:
    """The routes of both protocols around a holder's model, one small handler each."""

    def __init__(self, holder: ModelHolder, options: ServeOptions):
        self.holder, self.options, self.metrics = holder, options, holder.metrics
        self.max_bytes = int(options.max_request_mb * 2**20)
        self.fast = Lane("small", 0, 0)
        self.batch = Lane("large", options.batch_threads, options.max_queued_batches)

    def lane_for(self, body: bytes) -> Lane:
        return self.fast if len(body) <= FAST_LANE_BYTES else self.batch

    def model_for(self, name: str, version: str = "") -> ServedModel:
        """The served model, if it is the one asked for (404), and loaded (503)."""
        served = self.holder.current
        if name != self.options.model_name:
            raise RequestError(404, f"no model named {name!r} here; this server serves "
                                    f"{self.options.model_name!r}")
        if served is None:
            raise RequestError(503, f"model {name!r} is not loaded yet")
        if version and version != served.version:
            raise RequestError(404, f"version {version!r} of {name!r} is not served; "
                                    f"{served.version} is")
        return served

    def _requested_model(self, request) -> ServedModel:
        return self.model_for(request.path_params["name"], request.path_params.get("version", ""))

    async def body_of(self, request) -> bytes:
        """The request's body, refused (413) past ``--max-request-mb`` before it is all read."""
        limit = f"(--max-request-mb {self.options.max_request_mb:g})"
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            raise RequestError(413, f"the body has {int(declared)} bytes; at most "
                                    f"{self.max_bytes} are taken {limit}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_bytes:
                raise RequestError(413, f"the body is over {self.max_bytes} bytes {limit}")
            chunks.append(chunk)
        return b"".join(chunks)

    def counted(self, route: str, handler):
        """``handler`` answering a RequestError with its status, every answer counted and
        timed in /metrics under ``route``."""
        async def run(request):
            start = time.perf_counter()
            try:
                response = await handler(request)
            except RequestError as error:
                response = _json({"error": str(error)}, error.status, error.headers)
            served, code = self.holder.current, str(response.status_code)
            self.metrics.requests.labels(route, code, served.version if served else "").inc()
            if response.status_code >= 400:
                self.metrics.errors.labels(route, code).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)
            return response
        return run

    # -- Open Inference Protocol (V2) -----------------------------------------------------------
    async def live(self, request):
        return _json({"live": True})

    async def ready(self, request):
        loaded = self.holder.current is not None
        return _json({"ready": loaded}, 200 if loaded else 503)

    async def server_metadata(self, request):
        from importlib.metadata import version

        return _json({"name": SERVER_NAME, "version": version("kfp-retrain"),
                      "extensions": ["binary_tensor_data"]})

    async def model_metadata(self, request):
        return _json(self._requested_model(request).v2_metadata())

    async def model_ready(self, request):
        name = request.path_params["name"]
        try:
            self._requested_model(request)
        except RequestError as error:
            if error.status != 503:
                raise
            return _json({"name": name, "ready": False}, 503)
        return _json({"name": name, "ready": True})

    async def infer(self, request):
        from starlette.responses import Response

        served = self._requested_model(request)
        data, header = await self.body_of(request), request.headers.get(BINARY_HEADER)
        content, header_length = await self.lane_for(data).run(
            lambda: self._infer(served, data, header))
        if header_length is None:
            return Response(content, media_type="application/json")
        return Response(content, media_type="application/octet-stream",
                        headers={BINARY_HEADER: str(header_length)})

    def _infer(self, served: ServedModel, data: bytes, header: str | None):
        """Parse, check, predict and encode a V2 request: on a lane's thread."""
        body, binary = v2_body(data, header)
        outputs = requested_outputs(body, served)
        columns, ignored = v2_columns(body, binary, served, self.options.max_batch_rows)
        predicted, probabilities = served.predict(columns)
        unfamiliar = self.metrics.noted(served.unfamiliar(columns), ignored)
        return v2_response(served, predicted, probabilities, outputs, body.get("id"),
                           unfamiliar, ignored)

    # -- KServe V1 ------------------------------------------------------------------------------
    async def v1_models(self, request):
        return _json({"models": [self.options.model_name]})

    async def v1_model(self, request):
        """``GET /v1/models/<name>`` (ready or not) and ``POST /v1/models/<name>:predict``."""
        target = request.path_params["target"]
        name, _, verb = target.partition(":")
        if request.method == "GET" and not verb:
            return self._v1_ready(name)
        if request.method != "POST" or verb != "predict":
            raise RequestError(404 if request.method == "POST" else 405,
                               f"no such V1 route: {request.method} /v1/models/{target}")
        return await self._v1_predict(name, request)

    def _v1_ready(self, name: str):
        try:
            self.model_for(name)
        except RequestError as error:
            if error.status != 503:
                raise
            return _json({"name": name, "ready": False})
        return _json({"name": name, "ready": True})

    async def _v1_predict(self, name: str, request):
        from starlette.responses import Response

        served = self.model_for(name)
        data = await self.body_of(request)
        if self.options.v1_predict_proba and served.regression:
            raise RequestError(400, f"model {name!r} is a regression model: it predicts numbers "
                                    "and has no class probabilities to answer (PREDICT_PROBA is "
                                    "for classifiers)")

        def predict() -> bytes:  # on a lane's thread
            columns, ignored = v1_columns(parse_json(data), served, self.options.max_batch_rows)
            predicted, probabilities = served.predict(columns)
            unfamiliar = self.metrics.noted(served.unfamiliar(columns), ignored)
            return v1_response(predicted,
                               probabilities if self.options.v1_predict_proba else None,
                               unfamiliar, ignored)

        return Response(await self.lane_for(data).run(predict), media_type="application/json")

    # -- the rest -------------------------------------------------------------------------------
    async def prometheus(self, request):
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
        from starlette.responses import Response

        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def not_found(self, request, exc):
        return _json({"error": f"no such route: {request.method} {request.url.path}"},
                     exc.status_code)


def create_app(holder: ModelHolder, options: ServeOptions):
    """The ASGI app: the routes of both protocols around ``holder``'s model."""
    from starlette.applications import Starlette
    from starlette.routing import Route

    routes = Routes(holder, options)
    post = ["POST"]

    def route(path: str, handler, counted_as: str = "", methods=None) -> Route:
        return Route(path, routes.counted(counted_as or path, handler), methods=methods)

    model, version = "/v2/models/{name}", "/v2/models/{name}/versions/{version}"
    return Starlette(routes=[
        route("/v2/health/live", routes.live), route("/v2/health/ready", routes.ready),
        route("/v2", routes.server_metadata),
        route(model, routes.model_metadata), route(version, routes.model_metadata, model),
        route(f"{model}/ready", routes.model_ready),
        route(f"{version}/ready", routes.model_ready, f"{model}/ready"),
        route(f"{model}/infer", routes.infer, methods=post),
        route(f"{version}/infer", routes.infer, f"{model}/infer", methods=post),
        route("/v1/models", routes.v1_models),
        route("/v1/models/{target}", routes.v1_model, methods=["GET", "POST"]),
        Route("/metrics", routes.prometheus),
    ], exception_handlers={404: routes.not_found, 405: routes.not_found})


def write_ready_file(path: Path, port: int) -> None:
    """Write the port whole or not at all (the local storage's write: a temporary file renamed
    into place): a reader polling for the file must never read it created but still empty (it
    would then wait on a wrong address)."""
    from components.storage.local import LocalStorage

    LocalStorage().write_bytes(str(path), str(port).encode())


def serve(options: ServeOptions) -> None:
    """Load the model, then serve until stopped (SIGINT / SIGTERM)."""
    import socket

    import uvicorn

    from components.runtime.lifeline import end_with_owner, exit_now

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    end_with_owner(exit_now)  # started by a run (infra validation): it ends with the run
    metrics = Metrics(options.model_name)
    holder = ModelHolder(options, metrics)
    wanted = holder.wanted_version()
    if options.version and not holder.load(options.version):
        raise SystemExit(f"error: version {options.version} of {options.model_name!r} could "
                         f"not be loaded: {holder.last_error}")
    if not options.version and wanted:
        holder.load(wanted)  # a champion that fails to load: not ready, keep polling
    if not options.version and options.reload_seconds > 0:
        threading.Thread(target=holder.follow, name="follow-champion", daemon=True).start()
    listener = socket.create_server((options.host, options.port))
    port = listener.getsockname()[1]
    if options.ready_file:
        write_ready_file(Path(options.ready_file), port)
    logger.info("serving %s on http://%s:%d", options.model_name, options.host, port)
    config = uvicorn.Config(create_app(holder, options), log_level="warning", access_log=False,
                            loop="auto", http="auto", lifespan="off")
    from threadpoolctl import threadpool_limits

    # One thread per prediction: requests are small, threads cost more than they bring, and a
    # server forked from a process whose OpenMP pool ran (infra validation) must not wait on it.
    with threadpool_limits(limits=1):
        try:
            uvicorn.Server(config).run(sockets=[listener])
        finally:
            holder.stop()
