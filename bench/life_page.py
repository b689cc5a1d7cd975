"""Part 9 of `make bench`: the model's life page at scale.

A registry of 1,000 recorded runs (every status, a gate's statistics on the rejected and
deployed ones, drift statistics over ten features, stage journals) and 100 versions with their
training traces; the page is written three times, and its time and size reported against the
targets (about 2 s, about 2 MB).
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import numpy as np

RUNS, VERSIONS, FEATURES = 1000, 100, 10
STATUSES = ("deployed", "rejected", "invalid-data", "skipped", "no-new-data")


def _registry(root: Path):
    from components.records import JournalEntry, RunRecord, VersionMetadata
    from components.registry import ChampionPointer, Registry

    rng = np.random.default_rng(0)
    store = Registry(str(root / "registry"), "bench")
    for number in range(1, VERSIONS + 1):
        trace = [{"epoch": e, "validation_loss": float(0.5 - e * 0.02 + rng.normal(0, 0.01))}
                 for e in range(1, 6)]
        store.publish(b"model", VersionMetadata(
            run_id=f"run-{number * 10:04d}", created_at=f"2026-01-01T00:00:{number % 60:02d}Z",
            strategy="full", model_type="hgb", metrics={"accuracy": 0.8},
            data_window={"train_rows": 1000}), {"training.json": json.dumps(
                {"trace": trace}).encode()})
        store.append_history(action="deploy", from_version=None, to_version=f"v{number:04d}",
                             reason="deploy")
    store.move_champion(ChampionPointer(f"v{VERSIONS:04d}"), None)
    for number in range(RUNS):
        run_id = f"run-{number:04d}"
        status = STATUSES[number % len(STATUSES)]
        delta = float(rng.normal(0.01, 0.02))
        record = RunRecord.of(status=status, reason=f"run {number}", run_id=run_id,
                              model_name="bench", new_rows=200)
        record.finished_at = f"2026-{1 + number // 90:02d}-{1 + number % 28:02d}T00:00:00Z"
        record.metric = "accuracy"
        if status in ("deployed", "rejected"):
            record.gate = {"delta": delta, "ci_low": delta - 0.03, "ci_high": delta + 0.03,
                           "rows": 300}
        record.drift_statistics = {f"feature_{f}": {"test": "psi",
                                                    "statistic": float(rng.gamma(1, 0.05)),
                                                    "drift": 0.25, "verdict": "ok"}
                                   for f in range(FEATURES)}
        store.write_run_record(run_id, record)
        for stage in ("ingest", "validate", "preprocess", "retrain", "evaluate"):
            store.write_stage_entry(run_id, JournalEntry(
                stage, "succeeded", record.finished_at, seconds=float(rng.gamma(2, 0.3)),
                peak_rss_mib=int(rng.integers(200, 400))))
    return store


def run(scratch: Path, repeats: int) -> dict:
    from components.life_report import write_report

    store = _registry(scratch / "life")
    seconds, size = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        size = write_report(store, scratch / "life" / "page.html")
        seconds.append(time.perf_counter() - start)
    return {"runs": RUNS, "versions": VERSIONS, "features": FEATURES,
            "seconds": {"median": statistics.median(seconds), "min": min(seconds),
                        "max": max(seconds)}, "bytes": size}


def report_lines(results: dict, date: str) -> list[str]:
    seconds = results["seconds"]
    return ["", f"## 9. The model's life page at scale ({date})", "",
            f"`retrain report` on {results['runs']:,} recorded runs (stage journals included), "
            f"{results['versions']} versions with training traces, {results['features']} "
            "features' drift: "
            f"{seconds['median']:.2f} s ({seconds['min']:.2f}–{seconds['max']:.2f}), "
            f"{results['bytes'] / 2**20:.2f} MB (targets: about 2 s, about 2 MB)."]
