"""Validate and drift on 1M rows x 10 columns: how long the checks and statistics take.

    python -m bench.bench_validate [--rows 1000000] [--repeats 3]

Prints min/median/max seconds of each part over the repeats (the machine is noisy).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd

from app import demo_data
from components.data.drift import detect_drift, reference_statistics
from components.data.schema import SOURCE_FILE_COLUMN, infer_schema
from components.params import DEFAULT_THRESHOLDS
from components.stages.validate import validate


def customers(rows: int, drift: float, seed: int) -> pd.DataFrame:
    """Demo customers (8 features, label, event time): 10 columns."""
    frame = demo_data.customers(rows, demo_data.month_start(0), demo_data.month_start(3), drift,
                                np.random.default_rng(seed))
    frame[SOURCE_FILE_COLUMN] = "big.parquet"
    return frame


def timed(function, repeats: int) -> tuple[list[float], object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return times, result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    label, timestamp = demo_data.LABEL_COLUMN, demo_data.TIMESTAMP_COLUMN
    reference, new = customers(args.rows, 0.0, 1), customers(args.rows, 0.5, 2)
    schema = infer_schema(reference, label_column=label, timestamp_column=timestamp)
    parts = {
        "reference statistics (at deploy)": lambda: reference_statistics(reference, schema),
        "validate (schema checks)": lambda: validate(
            new, schema=schema, timestamp_column=timestamp, min_rows=100,
            thresholds=DEFAULT_THRESHOLDS),
    }
    stats = reference_statistics(reference, schema)
    parts["drift (PSI/JS/KS)"] = lambda: detect_drift(new, stats, DEFAULT_THRESHOLDS)
    print(f"{args.rows:,} rows x {new.shape[1] - 1} columns, {args.repeats} repeats")
    for name, function in parts.items():
        times, _ = timed(function, args.repeats)
        print(f"{name:36s} min {min(times):6.2f} s  median {statistics.median(times):6.2f} s  "
              f"max {max(times):6.2f} s")


if __name__ == "__main__":
    main()
