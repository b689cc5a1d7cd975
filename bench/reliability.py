"""Part 6 of `make bench`: reliability figures.

- Fits on a busy machine: a 200-row and a 1M-row HistGradientBoosting fit, idle and while another
  process holds one core, with scikit-learn's defaults and with this project's settings
  (``GOMP_SPINCOUNT``, threads by :mod:`components.ml.threads`). Target: with ours, a
  busy core costs at most about 2x the idle time.
- Hostile files through ``retrain run``: how long until the run ends (invalid-data for the
  ones that break a limit; a whole run for 3,000 extra columns).
- A killed run: seconds from ``kill -9`` of ``retrain run`` until none of its processes is left.
- Model files: loading the demo model from skops (allow-list checked) against a plain joblib
  load of the same model.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

FIT = r"""
import json, sys, time
import numpy as np
rows, ours = int(sys.argv[1]), sys.argv[2] == "ours"
rng = np.random.default_rng(0)
X = rng.normal(size=(rows, 10)); y = (X[:, 0] + rng.normal(size=rows) > 0).astype(int)
from components.ml.estimators import new_estimator
from components.ml.threads import limited_threads
model = new_estimator("hgb", task="classification", feature_kinds={})
start = time.perf_counter()
if ours:
    with limited_threads(rows, 10):
        model.fit(X, y)
else:
    model.fit(X, y)
print(json.dumps(time.perf_counter() - start))
"""


def _fit_seconds(rows: int, settings: str) -> float:
    from components.ml.threads import SPIN_COUNT

    env = {key: value for key, value in os.environ.items()
           if key not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    if settings == "ours":
        env["GOMP_SPINCOUNT"] = SPIN_COUNT
    out = subprocess.run([sys.executable, "-c", FIT, str(rows), settings], env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def busy_fits(repeats: int) -> list[dict]:
    """Median seconds per (rows, settings, idle/busy)."""
    results = []
    for rows in (200, 1_000_000):
        for settings in ("default", "ours"):
            row = {"rows": rows, "settings": settings}
            for load in ("idle", "busy"):
                hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) \
                    if load == "busy" else None
                try:
                    time.sleep(0.5 if hog else 0)
                    row[load] = statistics.median(_fit_seconds(rows, settings)
                                                  for _ in range(repeats))
                finally:
                    if hog:
                        hog.kill()
                        hog.wait()
            row["busy_over_idle"] = row["busy"] / row["idle"]
            results.append(row)
            print(f"fit {rows} rows, {settings}: idle {row['idle']:.3f} s, busy "
                  f"{row['busy']:.3f} s ({row['busy_over_idle']:.1f}x)", flush=True)
    return results


def _hostile_sources(scratch: Path) -> dict[str, Path]:
    import numpy as np
    import pandas as pd

    from app import demo_data

    frame = demo_data.customers(1000, demo_data.month_start(0), demo_data.month_start(3), 0.0,
                                np.random.default_rng(0))
    sources = {}
    for name, content in (("one line of commas, 50 MB", b"," * 50_000_000),
                          ("one line, no newline, 50 MB", b"x" * 50_000_000),
                          ("12,000 columns", ",".join(f"c{i}" for i in range(12_000)).encode()
                           + b"\n")):
        folder = scratch / f"hostile-{len(sources)}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "data.csv").write_bytes(content)
        sources[name] = folder
    wide = scratch / "hostile-wide"
    wide.mkdir(parents=True, exist_ok=True)
    extra = pd.DataFrame(np.random.default_rng(1).normal(size=(1000, 3000)),
                         columns=[f"extra_{i}" for i in range(3000)])
    pd.concat([frame, extra], axis=1).to_csv(wide / "data.csv", index=False)
    sources["3,000 extra columns, cold start"] = wide
    return sources


def hostile_files(scratch: Path, pipeline_run) -> list[dict]:
    """Seconds of a whole `retrain run` on each hostile source, and how it ended."""
    from app import demo_data

    results = []
    for name, source in _hostile_sources(scratch).items():
        root = scratch / f"run-{source.name}"
        record = pipeline_run(source, root / "registry", root, demo_data.LABEL_COLUMN,
                              demo_data.TIMESTAMP_COLUMN)
        results.append({"file": name, "seconds": record["seconds"], "status": record["status"],
                        "reason": record["reason"][:160]})
        print(f"{name}: {record['status']} in {record['seconds']:.1f} s", flush=True)
    # With a champion the extra columns are not features: what a monthly run costs.
    champion_root = scratch / "run-hostile-wide-champion"
    plain = scratch / "plain-source"
    plain.mkdir(parents=True, exist_ok=True)
    demo_data.write_demo_data(plain, months=1)
    pipeline_run(plain, champion_root / "registry", champion_root, demo_data.LABEL_COLUMN,
                 demo_data.TIMESTAMP_COLUMN, cutoff=demo_data.demo_cutoffs()[0])
    import pandas as pd

    wide = pd.read_csv(scratch / "hostile-wide" / "data.csv")
    month = pd.read_csv(next(plain.glob("customers_2025-04.csv")))
    month = pd.concat([month, wide.iloc[:len(month), -3000:].reset_index(drop=True)], axis=1)
    month.to_csv(plain / "customers_2025-04.csv", index=False)
    record = pipeline_run(plain, champion_root / "registry", champion_root,
                          demo_data.LABEL_COLUMN, demo_data.TIMESTAMP_COLUMN,
                          cutoff=demo_data.demo_cutoffs()[1])
    results.append({"file": "3,000 extra columns, with a champion", "seconds": record["seconds"],
                     "status": record["status"], "reason": record["reason"][:160]})
    print(f"3,000 extra columns with a champion: {record['status']} in "
          f"{record['seconds']:.1f} s", flush=True)
    return results


def killed_run_cleanup(scratch: Path, trials: int = 3) -> list[float]:
    """Seconds from `kill -9` of a bootstrap `retrain run` (2 s in) until none of its processes
    is left."""
    from app import demo_data
    from components.runtime.lifeline import OWNER_ENV, owner_token

    source = scratch / "kill-source"
    source.mkdir(parents=True, exist_ok=True)
    demo_data.write_demo_data(source, months=0)
    seconds = []
    for trial in range(trials):
        root = scratch / f"kill-{trial}"
        run = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "run", "--source-uri", str(source),
             "--registry-uri", str(root / "registry"), "--model-name", "bench",
             "--label-column", demo_data.LABEL_COLUMN, "--timestamp-column",
             demo_data.TIMESTAMP_COLUMN, "--cutoff", demo_data.demo_cutoffs()[0],
             "--pipeline-root", str(root)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        token = owner_token(run.pid)
        time.sleep(2.0)
        run.kill()
        run.wait()
        killed = time.monotonic()
        marker = f"{OWNER_ENV}={token}".encode()
        while any(marker in _environ(pid) for pid in _pids()) and \
                time.monotonic() - killed < 30:
            time.sleep(0.05)
        seconds.append(time.monotonic() - killed)
    return seconds


def _pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def _environ(pid: int) -> list[bytes]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            return handle.read().split(b"\0")
    except OSError:
        return []


def model_loading(scratch: Path, repeats: int) -> dict:
    """Seconds to load the demo's bootstrap model: skops with the allow-list, and joblib."""
    import io

    import joblib

    from components.ml.models import load_model_bytes, model_bytes
    from components.registry import Registry

    registry = next((scratch / "run-hostile-wide-champion" / "registry").glob("*"))
    model = Registry(str(registry.parent), registry.name).load_model("v0001")
    data = model_bytes(model)
    pickled = io.BytesIO()
    joblib.dump(model, pickled)

    def timed(load) -> float:
        runs = []
        for _ in range(repeats * 5):
            start = time.perf_counter()
            load()
            runs.append(time.perf_counter() - start)
        return statistics.median(runs)

    return {"skops_ms": 1000 * timed(lambda: load_model_bytes(data, "bench")),
            "joblib_ms": 1000 * timed(lambda: joblib.load(io.BytesIO(pickled.getvalue()))),
            "skops_kib": len(data) / 1024, "joblib_kib": len(pickled.getvalue()) / 1024}


def run(scratch: Path, repeats: int, pipeline_run) -> dict:
    results = {"busy_fits": busy_fits(repeats),
               "hostile_files": hostile_files(scratch, pipeline_run),
               "killed_run_cleanup_s": killed_run_cleanup(scratch)}
    results["model_loading"] = model_loading(scratch, repeats)
    return results


def report_lines(results: dict, date: str) -> list[str]:
    lines = ["", f"## 6. Reliability ({date})", "",
             "Fits on 2 cores, idle and while another process holds one core (median seconds). "
             "`default`: scikit-learn's threads, OpenMP's default spinning. `ours`: "
             "`GOMP_SPINCOUNT=1000` and the thread count of `components/ml/threads.py` (one "
             "per idle CPU).", "",
             "| rows | settings | idle | one core busy | busy / idle |", "|---|---|---|---|---|"]
    for row in results["busy_fits"]:
        lines.append(f"| {row['rows']:,} | {row['settings']} | {row['idle']:.3f} s | "
                     f"{row['busy']:.3f} s | {row['busy_over_idle']:.1f}x |")
    lines += ["", "Hostile files, whole `retrain run`:", "", "| file | ended | seconds |",
              "|---|---|---|"]
    lines += [f"| {row['file']} | {row['status']} | {row['seconds']:.1f} |"
              for row in results["hostile_files"]]
    cleanup = results["killed_run_cleanup_s"]
    lines += ["", f"`kill -9` of `retrain run` 2 s into a run: its last process was gone after "
              f"{', '.join(f'{s:.2f}' for s in cleanup)} s ({len(cleanup)} trials)."]
    loading = results["model_loading"]
    lines += ["", f"Loading the demo model: skops with the allow-list {loading['skops_ms']:.1f} ms "
              f"({loading['skops_kib']:.0f} KiB), a joblib pickle of it "
              f"{loading['joblib_ms']:.1f} ms ({loading['joblib_kib']:.0f} KiB)."]
    return lines
