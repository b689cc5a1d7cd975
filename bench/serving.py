"""Part 7 of `make bench`: serving latency and throughput, ours against MLServer.

MLServer's scikit-learn runtime is the V2 server KServe picks by default for scikit-learn. It
runs in its own virtualenv (``bench/.mlserver-venv``, from ``bench/requirements-mlserver.txt``:
its pins differ from ours) with the same scikit-learn, serving the same fitted model (exported
to the joblib file it loads). Both servers run on this machine in the same run, each with its
defaults; one client process sends the requests over keep-alive connections.

- Latency: sequential single-row and 100-row requests, p50 and p99.
- Throughput: 4 concurrent connections for a few seconds, requests per second.
- Under load (ours): single-row requests and readiness probes, alone and while 8 clients send
  10,000-row batches without pause.
- In process: the same prediction without HTTP, through this server's prediction path and
  through ``model.predict_proba`` on a DataFrame.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MLSERVER_VENV = ROOT / "bench" / ".mlserver-venv"
MODEL = "bench"  # the model name bench.run_bench.pipeline_run registers
BATCH_ROWS = 10_000  # the batches sent while single rows and readiness probes are measured


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_http(port: int, path: str, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", path)
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"nothing answered 200 on 127.0.0.1:{port}{path}")


def _start_ours(registry: Path, version: str) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--registry-uri",
                                str(registry), "--model-name", MODEL, "--version", version,
                                "--port", str(port), "--reload-seconds", "0"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    _wait_http(port, f"/v2/models/{MODEL}/ready")
    return process, port


def _start_mlserver(model, folder: Path) -> tuple[subprocess.Popen, int]:
    import joblib

    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, folder / "model.joblib")  # MLServer loads a pickle; ours never does
    port = _free_port()
    (folder / "model-settings.json").write_text(json.dumps({
        "name": MODEL, "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib", "version": "v0001"}}))
    (folder / "settings.json").write_text(json.dumps({
        "http_port": port, "grpc_port": _free_port(), "metrics_port": _free_port(),
        "host": "127.0.0.1"}))
    process = subprocess.Popen([str(MLSERVER_VENV / "bin" / "mlserver"), "start", str(folder)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_http(port, f"/v2/models/{MODEL}/ready")
    return process, port


def _latencies(port: int, path: str, body: bytes, count: int) -> list[float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}
    seconds = []
    for index in range(count + 20):  # the first 20 warm up
        start = time.perf_counter()
        connection.request("POST", path, body, headers)
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"{path} answered {response.status}")
        if index >= 20:
            seconds.append(time.perf_counter() - start)
    connection.close()
    return seconds


def _throughput(port: int, path: str, body: bytes, seconds: float = 4.0,
                connections: int = 4) -> float:
    done, stop = [0] * connections, threading.Event()

    def client(slot: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while not stop.is_set():
            connection.request("POST", path, body, {"Content-Type": "application/json"})
            connection.getresponse().read()
            done[slot] += 1
        connection.close()

    threads = [threading.Thread(target=client, args=(slot,)) for slot in range(connections)]
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return sum(done) / seconds


def _get_latencies(port: int, path: str, count: int) -> list[float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    seconds = []
    for _ in range(count):
        start = time.perf_counter()
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        seconds.append(time.perf_counter() - start)
    connection.close()
    return seconds


def under_load(port: int, single: bytes, batch: bytes, *, clients: int = 8,
               count: int = 300) -> dict:
    """Single-row and readiness latency (ms, p50 and p99) alone, then while ``clients`` send
    ``batch`` without pause; and what the batches were answered."""
    infer, ready = f"/v2/models/{MODEL}/infer", "/v2/health/ready"

    def measured() -> dict:
        row, probe = _latencies(port, infer, single, count), _get_latencies(port, ready, count)
        return {"single_p50_ms": 1000 * _quantile(row, 0.5),
                "single_p99_ms": 1000 * _quantile(row, 0.99),
                "ready_p50_ms": 1000 * _quantile(probe, 0.5),
                "ready_p99_ms": 1000 * _quantile(probe, 0.99)}

    alone = measured()
    statuses: list[int] = []
    stop = threading.Event()

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while not stop.is_set():
            connection.request("POST", infer, batch, {"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            statuses.append(response.status)
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(2)  # the batches are in flight
    loaded = measured()
    stop.set()
    for thread in threads:
        thread.join()
    return {"alone": alone, "loaded": loaded, "clients": clients,
            "batch_answers": {str(code): statuses.count(code) for code in sorted(set(statuses))}}


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _requests(frame, feature_kinds: dict[str, str], rows: int) -> dict[str, bytes]:
    from components.serving.inference import plain, v2_request

    head = frame.head(rows)
    ours_v2 = v2_request(head, feature_kinds)
    mlserver_v2 = dict(ours_v2, parameters={"content_type": "pd"},
                       outputs=[{"name": "predict"}, {"name": "predict_proba"}])
    instances = [{column: plain(value) for column, value in row.items()}
                 for row in head[list(feature_kinds)].to_dict("records")]
    return {"ours V2": json.dumps(ours_v2).encode(),
            "ours V1": json.dumps({"instances": instances}).encode(),
            "MLServer V2": json.dumps(mlserver_v2).encode()}


def in_process(served, frame, feature_kinds: dict[str, str], count: int = 500) -> dict:
    """Median ms of one row's prediction: through the server's path, and through sklearn."""
    import pandas as pd

    head = frame.head(1)
    columns = {c: [None if pd.isna(v) else v for v in head[c]] for c in feature_kinds}
    data = served.frame(columns)

    def median_ms(function) -> float:
        for _ in range(50):
            function()
        runs = []
        for _ in range(count):
            start = time.perf_counter()
            function()
            runs.append(time.perf_counter() - start)
        return 1000 * statistics.median(runs)

    return {"server_path_ms": median_ms(lambda: served.predict(columns)),
            "predict_proba_ms": median_ms(lambda: served.model.predict_proba(data))}


def run(scratch: Path, repeats: int, pipeline_run) -> dict:
    import numpy as np

    from app import demo_data
    from components.registry import Registry
    from components.serving.model import ServedModel

    source = scratch / "serving-source"
    source.mkdir(parents=True, exist_ok=True)
    demo_data.write_demo_data(source, months=0)
    root = scratch / "serving-run"
    pipeline_run(source, root / "registry", root, demo_data.LABEL_COLUMN,
                 demo_data.TIMESTAMP_COLUMN, cutoff=demo_data.demo_cutoffs()[0])
    registry_root = root / "registry"
    registry = Registry(str(registry_root), MODEL)
    version = registry.champion().version
    served = ServedModel.load(registry, version)
    frame = demo_data.customers(100, demo_data.month_start(3), demo_data.month_start(4), 0.3,
                                np.random.default_rng(5))
    results = {"in_process": in_process(served, frame, served.feature_kinds), "servers": []}
    ours, ours_port = _start_ours(registry_root, version)
    mlserver, mlserver_port = _start_mlserver(served.model, scratch / "mlserver-model")
    try:
        for rows in (1, 100):
            bodies = _requests(frame, served.feature_kinds, rows)
            for name, port, path in (
                    ("ours V2", ours_port, f"/v2/models/{MODEL}/infer"),
                    ("ours V1", ours_port, f"/v1/models/{MODEL}:predict"),
                    ("MLServer V2", mlserver_port, f"/v2/models/{MODEL}/infer")):
                latencies = _latencies(port, path, bodies[name], 500 if rows == 1 else 200)
                row = {"server": name, "rows": rows,
                       "p50_ms": 1000 * _quantile(latencies, 0.5),
                       "p99_ms": 1000 * _quantile(latencies, 0.99),
                       "requests_per_s": statistics.median(
                           _throughput(port, path, bodies[name]) for _ in range(repeats))}
                results["servers"].append(row)
                print(f"{name}, {rows} row(s): p50 {row['p50_ms']:.2f} ms, p99 "
                      f"{row['p99_ms']:.2f} ms, {row['requests_per_s']:.0f} req/s", flush=True)
        big = demo_data.customers(BATCH_ROWS, demo_data.month_start(3), demo_data.month_start(4),
                                  0.3, np.random.default_rng(6))
        results["under_load"] = under_load(
            ours_port, _requests(frame, served.feature_kinds, 1)["ours V2"],
            _requests(big, served.feature_kinds, BATCH_ROWS)["ours V2"])
        print(f"under load: {results['under_load']}", flush=True)
    finally:
        for process in (ours, mlserver):
            process.terminate()
            process.wait(timeout=30)
    return results


def report_lines(results: dict, date: str) -> list[str]:
    rows = {(r["server"], r["rows"]): r for r in results["servers"]}
    lines = ["", f"## 7. Serving: ours against MLServer ({date})", "",
             "The demo's bootstrap model (HistGradientBoosting, 8 features), the same fitted model "
             "in both servers; p50 and p99 of sequential requests, throughput with 4 concurrent "
             "connections. MLServer 1.7.1 with mlserver-sklearn, its defaults (one parallel "
             "inference worker), in its own virtualenv.", "",
             "| request | server | p50 | p99 | requests/s |", "|---|---|---|---|---|"]
    for (server, count), row in sorted(rows.items(), key=lambda item: (item[0][1], item[0][0])):
        lines.append(f"| {count} row{'s' if count > 1 else ''} | {server} | "
                     f"{row['p50_ms']:.2f} ms | {row['p99_ms']:.2f} ms | "
                     f"{row['requests_per_s']:.0f} |")
    inside = results["in_process"]
    lines += ["", "| ratio (ours V2 / MLServer V2) | 1 row | 100 rows |", "|---|---|---|"]
    for key, label in (("p50_ms", "p50"), ("p99_ms", "p99"),
                       ("requests_per_s", "throughput")):
        lines.append(f"| {label} | " + " | ".join(
            f"{rows[('ours V2', n)][key] / rows[('MLServer V2', n)][key]:.2f}x"
            for n in (1, 100)) + " |")
    load = results.get("under_load")
    if load:
        lines += ["", f"Ours under load: {load['clients']} clients send {BATCH_ROWS:,}-row V2 "
                  "batches without pause while single-row V2 requests and readiness probes are "
                  "timed one after another (targets: readiness p99 under 50 ms, single-row p99 "
                  "under 100 ms). Batches answered: " + ", ".join(
                      f"{count} x {code}" for code, count in load["batch_answers"].items()) + ".",
                  "", "| | single row p50 | single row p99 | readiness p50 | readiness p99 |",
                  "|---|---|---|---|---|"]
        for label, key in (("alone", "alone"), ("while the batches run", "loaded")):
            figures = load[key]
            lines.append(f"| {label} | {figures['single_p50_ms']:.2f} ms | "
                         f"{figures['single_p99_ms']:.2f} ms | {figures['ready_p50_ms']:.2f} ms "
                         f"| {figures['ready_p99_ms']:.2f} ms |")
    single = rows[("ours V2", 1)]["p50_ms"]
    lines += ["", f"One row in process, no HTTP: {inside['server_path_ms']:.2f} ms through the "
              f"server's prediction path, {inside['predict_proba_ms']:.2f} ms through "
              f"`model.predict_proba` on a DataFrame. Served (V2, HTTP, JSON): {single:.2f} ms, "
              f"{single / inside['predict_proba_ms']:.2f}x the in-process `predict_proba`, "
              f"{single / inside['server_path_ms']:.2f}x the server's own path."]
    return lines


def mlserver_available() -> bool:
    return (MLSERVER_VENV / "bin" / "mlserver").exists() and os.access(
        MLSERVER_VENV / "bin" / "mlserver", os.X_OK)
