"""Parts 3 and 4 of ``make bench``: cost against history size, and data beyond memory.

3. History grows by 100k rows a month (timestamps stored as Parquet timestamps, one file per
   month); every run adds the same 10k new rows after it. ``finetune`` should stay flat,
   ``window`` (90 days: three months) follow the window, ``full`` grow with the history.
4. 10M new rows x 10 columns in one Parquet file: ``finetune`` with ``sgd``, and ``full`` with
   ``hgb``; the peak RSS of each stage, as each stage process reports it in the run's log.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from app import demo_data
from components.runtime.delegation import stage_figures

MONTHLY_ROWS = 100_000
NEW_ROWS = 10_000
WINDOW_DAYS = 90
FIRST_MONTH = pd.Timestamp("2020-01-01", tz="UTC")


def month(index: int) -> pd.Timestamp:
    return FIRST_MONTH + pd.DateOffset(months=index)


def write_month(path: Path, index: int, rows: int, seed: int) -> None:
    """``rows`` demo customers spread over month ``index``, event time as a Parquet timestamp."""
    frame = demo_data.customers(rows, month(index), month(index + 1), 0.0,
                                np.random.default_rng(seed))
    frame[demo_data.TIMESTAMP_COLUMN] = pd.to_datetime(frame[demo_data.TIMESTAMP_COLUMN],
                                                       utc=True)
    frame.to_parquet(path, index=False, row_group_size=MONTHLY_ROWS // 4)


def history_scaling(sizes: list[int], repeats: int, scratch: Path, pipeline_run, bare_run,
                    spread) -> dict:
    """Run time of each strategy against history size (rows), 10k new rows each time."""
    months = max(sizes) // MONTHLY_ROWS
    library = scratch / "months"
    library.mkdir(parents=True, exist_ok=True)
    for index in range(months + 1):  # the last month holds the new rows
        rows = NEW_ROWS if index == months else MONTHLY_ROWS
        write_month(library / f"m{index:03d}.parquet", index, rows, seed=100 + index)
    cutoff = (month(months + 1) - pd.Timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")

    # The champion: fitted on the newest history month, so its watermark is where history ends.
    seed_source = scratch / "champion-source"
    seed_source.mkdir(exist_ok=True)
    shutil.copy(library / f"m{months - 1:03d}.parquet", seed_source)
    champion_registry = scratch / "champion-registry"
    bare_run(seed_source, champion_registry, scratch / "champion-work", demo_data.LABEL_COLUMN,
             demo_data.TIMESTAMP_COLUMN)

    results = {"sizes": sizes, "strategies": {}, "new_rows": NEW_ROWS,
               "window_days": WINDOW_DAYS, "monthly_rows": MONTHLY_ROWS}
    for size in sizes:
        source = scratch / f"history-{size}"
        source.mkdir(exist_ok=True)
        for index in range(months - size // MONTHLY_ROWS, months + 1):
            target = source / f"m{index:03d}.parquet"
            if not target.exists():
                target.symlink_to(library / target.name)
        for repeat in range(repeats):
            for strategy in ("finetune", "window", "full"):
                work = scratch / f"scaling-{size}-{strategy}-{repeat}"
                registry = work / "registry"
                shutil.copytree(champion_registry, registry)
                record = pipeline_run(
                    source, registry, work / "root", demo_data.LABEL_COLUMN,
                    demo_data.TIMESTAMP_COLUMN, "--strategy", strategy,
                    "--window-days", str(WINDOW_DAYS), cutoff=cutoff)
                assert record["challenger"]["strategy"] == strategy, record
                stages = stage_figures(Path(record["log"]).read_text())
                entry = results["strategies"].setdefault(strategy, {}).setdefault(
                    str(size), {"seconds": [], "retrain_seconds": [], "stage_seconds": []})
                entry["seconds"].append(record["seconds"])
                entry["retrain_seconds"].append(stages["retrain"]["seconds"])
                entry["stage_seconds"].append(sum(s["seconds"] for s in stages.values()))
                shutil.rmtree(work)
        for strategy, by_size in results["strategies"].items():
            entry = by_size[str(size)]
            print(f"history {size:>9,} rows, {strategy:>8}: run "
                  f"{spread(entry['seconds'])['median']:.1f} s, stage work "
                  f"{spread(entry['stage_seconds'])['median']:.1f} s", flush=True)
    for by_size in results["strategies"].values():
        for entry in by_size.values():
            for key in ("seconds", "retrain_seconds", "stage_seconds"):
                entry[key] = spread(entry[key])
    return results


def beyond_memory(rows: int, scratch: Path, pipeline_run, bare_run) -> dict:
    """Whole runs on ``rows`` new rows in one Parquet file: per-stage time and peak RSS."""
    source = scratch / "big"
    source.mkdir(exist_ok=True)
    chunk = 1_000_000
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    for part in range(0, rows, chunk):  # written a million rows at a time
        frame = demo_data.customers(min(chunk, rows - part), month(1), month(2), 0.0,
                                    np.random.default_rng(500 + part // chunk))
        frame[demo_data.TIMESTAMP_COLUMN] = pd.to_datetime(frame[demo_data.TIMESTAMP_COLUMN],
                                                           utc=True)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        writer = writer or pq.ParquetWriter(source / "big.parquet", table.schema)
        writer.write_table(table, row_group_size=chunk)
    writer.close()
    file_mib = (source / "big.parquet").stat().st_size / 2**20
    cutoff = (month(2) - pd.Timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")

    seed_source = scratch / "big-champion-source"
    seed_source.mkdir(exist_ok=True)
    write_month(seed_source / "m000.parquet", 0, MONTHLY_ROWS, seed=499)
    results = {"rows": rows, "file_mib": file_mib, "runs": {}}
    for strategy, model_type in (("finetune", "sgd"), ("full", "hgb")):
        registry = scratch / f"big-registry-{strategy}"
        bare_run(seed_source, registry, scratch / f"big-champion-{strategy}",
                 demo_data.LABEL_COLUMN, demo_data.TIMESTAMP_COLUMN, model_type="sgd")
        try:
            record = pipeline_run(
                source, registry, scratch / f"big-root-{strategy}", demo_data.LABEL_COLUMN,
                demo_data.TIMESTAMP_COLUMN, "--strategy", strategy, "--model-type", model_type,
                cutoff=cutoff, watch_memory=True)
        except RuntimeError as error:
            results["runs"][f"{strategy} {model_type}"] = {"error": str(error)[-500:]}
            print(f"{rows:,} rows {strategy} {model_type}: FAILED {error}", flush=True)
            continue
        stages = stage_figures(Path(record["log"]).read_text())
        results["runs"][f"{strategy} {model_type}"] = {
            "seconds": record["seconds"], "status": record["status"], "stages": stages,
            "peak_total_pss_mib": record["peak_total_pss_mib"],
            "accuracy": (record.get("challenger") or {}).get("metrics", {}).get("accuracy")}
        print(f"{rows:,} rows {strategy} {model_type}: {record['seconds']:.0f} s, stage peaks "
              + ", ".join(f"{name} {s['peak_rss_mib']} MiB" for name, s in stages.items()),
              flush=True)
        shutil.rmtree(scratch / f"big-root-{strategy}", ignore_errors=True)
    return results
