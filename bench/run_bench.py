"""``make bench``: measure the pipeline side by side with its floor and a peer; write the results.

    python -m bench.run_bench [--sizes 1000,100000,1000000] [--repeats 3] [--out bench]

Writes ``<out>/results.md`` (tables, machine, date) and ``<out>/results.png``. Every figure is
measured in the same run, min/median/max over ``--repeats``, and compared as ratios, because this
machine is noisy. Parts:

1. Overhead: the same cold-start work (ingest, validate, preprocess, retrain, evaluate, deploy,
   the life page) done by a bare script calling the stage functions in one process, against
   ``retrain run`` (the compiled YAML under kfp.local), at each size of 10-column demo data.
2. Peer: the whole run on ``../shared/data/penguins.csv`` (label ``species``, batch mode): wall
   time and the largest peak RSS of a stage (as the process that did its work reports it).
3. and 4. are in :mod:`bench.scaling`: cost against history size; 10M rows.
5. Data handling: ingest and validate throughput for CSV and Parquet; artifact sizes.
6. and 7. are in :mod:`bench.reliability` and :mod:`bench.serving`, 8. in
:mod:`bench.decisions`, 9. in :mod:`bench.life_page`.
8. Decision quality, in :mod:`bench.decisions`: the deploy gate on ground-truth streams.
10. The same for regression streams (:mod:`bench.decisions`, ``task="regression"``).
11. A team's own model: the LightGBM example against ``hgb`` on 1M rows (:mod:`bench.own_model`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from app import demo_data

ROOT = Path(__file__).resolve().parent.parent
PENGUINS = ROOT.parent / "shared" / "data" / "penguins.csv"
LABEL, TIME = demo_data.LABEL_COLUMN, demo_data.TIMESTAMP_COLUMN
CUTOFF = "2025-12-31T23:59:59Z"


def customers(rows: int, seed: int = 0) -> pd.DataFrame:
    """``rows`` demo customers over one quarter: 8 features, the label, the event time."""
    return demo_data.customers(rows, demo_data.month_start(0), demo_data.month_start(3), 0.0,
                               np.random.default_rng(seed))


def spread(values: list[float]) -> dict:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def fmt(stats: dict, unit: str = "s") -> str:
    return f"{stats['median']:.2f} {unit} ({stats['min']:.2f}–{stats['max']:.2f})"


# -- 1. overhead against the floor ---------------------------------------------------------------
def bare_run(source: Path, registry: Path, work: Path, label: str, timestamp: str,
             model_type: str = "hgb") -> str:
    """The pipeline's work in one process: the stage functions called exactly as the
    components call them (:mod:`components.runtime.inprocess`), and the exit handler's life
    page. Not deploy's check of the model server: in one process it starts a new interpreter
    (seconds), where the pipeline forks it from the warm worker (about half a second)."""
    from components.runtime.inprocess import parameters, run_stages
    from components.steps import failure_alert_step

    run = run_stages(parameters(source_uri=str(source), registry_uri=str(registry),
                                model_name="bench", label_column=label,
                                timestamp_column=timestamp, cutoff=CUTOFF if timestamp else "",
                                model_type=model_type, threshold=0.0), work, "bare")
    assert run.status == "deployed", run.reason
    failure_alert_step(run_status={"state": "SUCCEEDED"}, registry_uri=str(registry),
                       model_name="bench", run_id="bare", alert_webhook_url="",
                       failure_report=str(work / "failure_report.md"),
                       model_report=str(work / "model_report.html"))
    return run.status


def pipeline_run(source: Path, registry: Path, root: Path, label: str, timestamp: str,
                 *extra: str, cutoff: str = CUTOFF, watch_memory: bool = False) -> dict:
    """``retrain run --json`` in a subprocess; its record, plus ``seconds`` of wall time and,
    when watched (which costs some CPU, so not in timed runs), ``peak_total_pss_mib``."""
    command = [sys.executable, "-m", "app.cli", "run", "--json", "--source-uri",
               str(source), "--registry-uri", str(registry), "--model-name", "bench",
               "--label-column", label, "--threshold", "0", "--pipeline-root", str(root),
               *extra]
    if timestamp:
        command += ["--timestamp-column", timestamp, "--cutoff", cutoff]
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True, cwd=ROOT)
        peak_pss = _watch_memory(process) if watch_memory else None
        process.wait()
        seconds = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if process.returncode != 0:
        raise RuntimeError(f"retrain run failed: {stderr.strip()}")
    record = json.loads(stdout.strip().splitlines()[-1])
    return dict(record, seconds=seconds, peak_total_pss_mib=peak_pss)


def _watch_memory(process: subprocess.Popen, interval: float = 0.2) -> float:
    """Wait for ``process``; return the peak (MiB) of the summed PSS of it and its descendants.

    PSS splits shared pages among the processes sharing them, so the sum is the run's real
    footprint (the CLI, kfp.local's stage processes, the warm workers and their children).
    """
    peak = 0.0
    while process.poll() is None:
        peak = max(peak, sum(_pss_kib(pid) for pid in _descendants(process.pid)) / 1024)
        time.sleep(interval)
    return peak


def _descendants(root: int) -> list[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1]
                                               .split()[1])
            except (OSError, IndexError, ValueError):
                continue
    family, grew = {root}, True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in family and pid not in family:
                family.add(pid)
                grew = True
    return sorted(family)


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass  # the process ended meanwhile
    return 0


def timed(function, *args, **kwargs) -> float:
    start = time.perf_counter()
    function(*args, **kwargs)
    return time.perf_counter() - start


def overhead(sizes: list[int], repeats: int, scratch: Path) -> list[dict]:
    rows = []
    for size in sizes:
        source = scratch / f"source-{size}"
        source.mkdir(parents=True, exist_ok=True)
        customers(size).to_parquet(source / "customers.parquet", index=False)
        bare, piped = [], []
        for repeat in range(repeats):  # interleaved, so both see the same machine state
            work = scratch / f"run-{size}-{repeat}"
            bare.append(timed(bare_run, source, work / "bare-registry", work / "bare", LABEL,
                              TIME))
            piped.append(timed(pipeline_run, source, work / "registry", work / "root", LABEL,
                               TIME))
        ratios = [p / b for p, b in zip(piped, bare, strict=True)]
        rows.append({"rows": size, "bare": spread(bare), "pipeline": spread(piped),
                     "ratio": spread(ratios)})
        print(f"overhead {size:>9,} rows: bare {fmt(rows[-1]['bare'])}, pipeline "
              f"{fmt(rows[-1]['pipeline'])}, ratio {rows[-1]['ratio']['median']:.2f}x",
              flush=True)
    return rows


# -- 2. peer: penguins ---------------------------------------------------------------------------
def penguins(repeats: int, scratch: Path) -> dict:
    from components.runtime.delegation import stage_figures

    source = scratch / "penguins"
    source.mkdir(parents=True, exist_ok=True)
    (source / "penguins.csv").write_bytes(PENGUINS.read_bytes())
    times, peaks, totals, record = [], [], [], {}
    for repeat in range(repeats):
        work = scratch / f"penguins-{repeat}"
        record = pipeline_run(source, work / "registry", work / "root", "species", "")
        times.append(record["seconds"])
        totals.append(pipeline_run(source, work / "registry-watched", work / "root-watched",
                                   "species", "", watch_memory=True)["peak_total_pss_mib"])
        stages = stage_figures(Path(record["log"]).read_text())
        peaks.append(max(stage["peak_rss_mib"] for stage in stages.values()))
    return {"time": spread(times), "status": record.get("status"),
            "accuracy": (record.get("challenger") or {}).get("metrics", {}).get("accuracy"),
            "peak_rss_mib": max(peaks), "peak_total_pss_mib": max(totals)}


# -- 5. data handling ----------------------------------------------------------------------------
def throughput(rows: int, repeats: int, scratch: Path) -> dict:
    from components.data.schema import infer_schema
    from components.params import DEFAULT_THRESHOLDS
    from components.stages.ingest import ingest
    from components.stages.validate import validate

    frame = customers(rows, seed=3)
    # Into the scratch folder: without paths ingest makes a folder of its own, the caller's to
    # remove.
    outputs = {"new_data_path": scratch / "ingested" / "new.parquet",
               "history_path": scratch / "ingested" / "history.parquet"}
    results = {}
    for fmt_name, writer in (("csv", lambda f, p: f.to_csv(p, index=False)),
                             ("parquet", lambda f, p: f.to_parquet(p, index=False))):
        folder = scratch / f"throughput-{fmt_name}"
        folder.mkdir(parents=True, exist_ok=True)
        writer(frame, folder / f"customers.{fmt_name}")
        seconds = [timed(ingest, str(folder), timestamp_column=TIME,
                         cutoff=pd.Timestamp(CUTOFF), watermark=None, **outputs)
                   for _ in range(repeats)]
        results[f"ingest {fmt_name}"] = {"rows_per_s": rows / statistics.median(seconds),
                                         "seconds": spread(seconds),
                                         "file_mib": (folder / f"customers.{fmt_name}")
                                         .stat().st_size / 2**20}
    loaded = ingest(str(scratch / "throughput-parquet"), timestamp_column=TIME,
                    cutoff=pd.Timestamp(CUTOFF), watermark=None, **outputs).new_data
    schema = infer_schema(loaded, label_column=LABEL, timestamp_column=TIME)
    seconds = [timed(validate, loaded, schema=schema, timestamp_column=TIME, min_rows=100,
                     thresholds=DEFAULT_THRESHOLDS) for _ in range(repeats)]
    results["validate"] = {"rows_per_s": rows / statistics.median(seconds),
                           "seconds": spread(seconds)}
    return results


def artifact_sizes(root: Path) -> dict[str, float]:
    """Sizes (KiB) of the Dataset/Model artifacts one pipeline run passed between stages."""
    sizes: dict[str, float] = {}
    for path in root.rglob("*"):
        if path.is_file() and "logs" not in path.parts:
            name = f"{path.parent.name}/{path.name}" if path.name in (
                "model.skops", "statistics.json", "schema.json", "training.json") else \
                f"{path.parent.name}.{path.name}"
            sizes[name] = max(sizes.get(name, 0.0), path.stat().st_size / 1024)
    return dict(sorted(sizes.items(), key=lambda item: -item[1])[:12])


# -- report --------------------------------------------------------------------------------------
def machine() -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} CPUs, "
            f"{memory:.0f} GiB RAM")


def write_report(out: Path, results: dict) -> None:
    lines = ["# Benchmarks", "", f"On {results['machine']}; median (min–max) of "
             f"{results['repeats']} repetitions unless a part says otherwise. Written by "
             "`make bench` (`bench/run_bench.py`).", ""]
    if "overhead" in results:
        lines += [f"## 1. Overhead against a bare script ({results['dates']['1']})", "",
                  "Cold start on 10-column demo data (ingest, validate, preprocess, retrain with "
                  "`auto`, evaluate, deploy, the life page). Bare: the same stage functions in "
                  "one process, without deploy's check of the model server (in one process it "
                  "would start a new interpreter). Pipeline: `retrain run`, the compiled YAML "
                  "under kfp.local, one process per stage.", "",
                  "| rows | bare script | pipeline | pipeline / bare |", "|---|---|---|---|"]
        for row in results["overhead"]:
            lines.append(f"| {row['rows']:,} | {fmt(row['bare'])} | {fmt(row['pipeline'])} | "
                         f"{row['ratio']['median']:.2f}x ({row['ratio']['min']:.2f}–"
                         f"{row['ratio']['max']:.2f}) |")
    if "penguins" in results:
        peer = results["penguins"]
        lines += ["", f"## 2. Peer: penguins (334 rows, 3 classes, batch mode) "
                  f"({results['dates']['2']})", "",
                  "| | this pipeline | TFX sklearn example (reference) |", "|---|---|---|",
                  f"| wall time | {fmt(peer['time'])} | 21.5 s median |",
                  f"| peak RSS of the largest stage process | {peer['peak_rss_mib']:.0f} MiB | "
                  "~980 MiB |",
                  f"| peak memory of all the run's processes together (summed PSS) | "
                  f"{peer['peak_total_pss_mib']:.0f} MiB | |",
                  f"| evaluation and deploy gate | yes ({peer['status']}, accuracy "
                  f"{peer['accuracy']:.3f}) | no Evaluator |"]
    if "scaling" in results:
        lines += _scaling_lines(results["scaling"], results["dates"]["3"])
    if "beyond_memory" in results:
        lines += _beyond_memory_lines(results["beyond_memory"], results["dates"]["4"])
    if "throughput" in results:
        lines += ["", f"## 5. Data handling ({results['dates']['5']})", "",
                  "| step | rows/s | median time | file |", "|---|---|---|---|"]
        for name, item in results["throughput"].items():
            size = f"{item['file_mib']:.1f} MiB" if "file_mib" in item else "-"
            lines.append(f"| {name} | {item['rows_per_s']:,.0f} | {fmt(item['seconds'])} | "
                         f"{size} |")
        lines += ["", f"Artifacts passed between stages in one {results['artifact_rows']:,}-row "
                  "pipeline run (KiB):", "", "| artifact | KiB |", "|---|---|"]
        lines += [f"| {name} | {kib:,.1f} |" for name, kib in results["artifacts"].items()]
    if "reliability" in results:
        from bench import reliability

        lines += reliability.report_lines(results["reliability"], results["dates"]["6"])
    if "serving" in results:
        from bench import serving

        lines += serving.report_lines(results["serving"], results["dates"]["7"])
    if "decisions" in results:
        from bench import decisions

        lines += ["", *decisions.markdown(results["decisions"], results["dates"]["8"])]
    if "life_page" in results:
        from bench import life_page

        lines += life_page.report_lines(results["life_page"], results["dates"]["9"])
    if "regression_decisions" in results:
        from bench import decisions

        lines += ["", *decisions.regression_markdown(results["regression_decisions"],
                                                     results["dates"]["10"])]
    if "own_model" in results:
        from bench import own_model

        lines += own_model.report_lines(results["own_model"], results["dates"]["11"])
    (out / "results.md").write_text("\n".join(lines) + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=2))
    _plot(out / "results.png", results)


def _scaling_lines(scaling: dict, date: str) -> list[str]:
    sizes, strategies = scaling["sizes"], scaling["strategies"]
    lines = ["", f"## 3. Cost against history size ({date})", "",
             f"History grows by {scaling['monthly_rows']:,} rows a month (Parquet, timestamps "
             f"as timestamps); each run adds the same {scaling['new_rows']:,} new rows to a "
             f"champion fitted on the newest history month (`hgb`); window = "
             f"{scaling['window_days']} days. Whole `retrain run`, and the stages' own work "
             "(the sum of the `stage ...` times the stages log: no process start or kfp.local).",
             "", "| history rows | " + " | ".join(
                 f"{name} run | {name} stage work" for name in strategies) + " |",
             "|---|" + "---|---|" * len(strategies)]
    for size in sizes:
        cells = [f"{fmt(strategies[name][str(size)]['seconds'])} | "
                 f"{fmt(strategies[name][str(size)]['stage_seconds'])}" for name in strategies]
        lines.append(f"| {size:,} | " + " | ".join(cells) + " |")
    if "1000000" in strategies.get("full", {}):
        full, tune = strategies["full"]["1000000"], strategies["finetune"]["1000000"]
        lines += ["", "At 1M rows of history, full / finetune: whole run "
                  f"{full['seconds']['median'] / tune['seconds']['median']:.1f}x, stage work "
                  f"{full['stage_seconds']['median'] / tune['stage_seconds']['median']:.1f}x, "
                  f"retrain stage alone "
                  f"{full['retrain_seconds']['median'] / tune['retrain_seconds']['median']:.1f}x."]
    return lines


def _beyond_memory_lines(big: dict, date: str) -> list[str]:
    lines = ["", f"## 4. Beyond memory: {big['rows']:,} new rows x 10 columns "
             f"({big['file_mib']:.0f} MiB of Parquet) ({date}, one run each)", "",
             "Peak RSS of each stage as the process that did its work reports it "
             "(`stage <name>: <s> s, peak RSS <MiB>` in the run's log).", "",
             "| run | status | wall time | all processes (summed PSS) | " + " | ".join(
                 f"{stage}" for stage in ("ingest", "validate", "preprocess", "retrain",
                                          "evaluate", "deploy")) + " |",
             "|---|---|---|---|" + "---|" * 6]
    for name, run in big["runs"].items():
        if "error" in run:
            lines.append(f"| {name} | failed: {run['error'][-200:]} | | | | | | | | |")
            continue
        cells = [f"{run['stages'][stage]['seconds']:.0f} s, "
                 f"{run['stages'][stage]['peak_rss_mib']:,} MiB" if stage in run["stages"]
                 else "-" for stage in ("ingest", "validate", "preprocess", "retrain",
                                        "evaluate", "deploy")]
        lines.append(f"| {name} | {run['status']} | {run['seconds']:.0f} s | "
                     f"{run['peak_total_pss_mib']:,.0f} MiB | " + " | ".join(cells) + " |")
    return lines


def _plot(path: Path, results: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(15, 4))
    if "overhead" in results:
        rows = [r["rows"] for r in results["overhead"]]
        positions = np.arange(len(rows))
        for offset, key, label in ((-0.2, "bare", "bare script"), (0.2, "pipeline", "pipeline")):
            medians = [r[key]["median"] for r in results["overhead"]]
            errors = [[r[key]["median"] - r[key]["min"] for r in results["overhead"]],
                      [r[key]["max"] - r[key]["median"] for r in results["overhead"]]]
            left.bar(positions + offset, medians, 0.4, yerr=errors, label=label, capsize=3)
        left.set_xticks(positions, [f"{n:,}" for n in rows])
        left.set_xlabel("rows")
        left.set_ylabel("seconds (median, min–max)")
        left.set_title("1. Overhead: pipeline vs bare script")
        left.legend()
    if "scaling" in results:
        sizes = results["scaling"]["sizes"]
        for name, by_size in results["scaling"]["strategies"].items():
            medians = [by_size[str(n)]["seconds"]["median"] for n in sizes]
            errors = [[by_size[str(n)]["seconds"]["median"] - by_size[str(n)]["seconds"]["min"]
                       for n in sizes],
                      [by_size[str(n)]["seconds"]["max"] - by_size[str(n)]["seconds"]["median"]
                       for n in sizes]]
            middle.errorbar([n / 1e6 for n in sizes], medians, yerr=errors, marker="o",
                            capsize=3, label=name)
        middle.set_xlabel("history (million rows), 10k new rows")
        middle.set_ylabel("seconds per run")
        middle.set_title("3. Run time against history size")
        middle.legend()
    if "penguins" in results:
        right.bar(["this pipeline", "TFX (reference)"],
                  [results["penguins"]["time"]["median"], 21.5])
        right.set_ylabel("seconds")
        right.set_title("2. Penguins: whole run")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


ALL_PARTS = ("1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11")


def main() -> None:
    from bench import decisions, life_page, own_model, reliability, scaling, serving

    parser = argparse.ArgumentParser()
    parser.add_argument("--parts", default=",".join(ALL_PARTS),
                        help="which parts to run; the others keep their previous results")
    parser.add_argument("--sizes", default="1000,100000,1000000")
    parser.add_argument("--history-sizes", default="100000,1000000,2000000,5000000")
    parser.add_argument("--big-rows", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--throughput-rows", type=int, default=1_000_000)
    parser.add_argument("--own-model-rows", type=int, default=1_000_000)
    parser.add_argument("--out", default=str(ROOT / "bench"))
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    sizes = [int(size) for size in args.sizes.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    previous = out / "results.json"
    results = json.loads(previous.read_text()) if previous.exists() and \
        parts != set(ALL_PARTS) else {}
    results.update(machine=machine(), repeats=args.repeats)
    results.setdefault("dates", {})
    with tempfile.TemporaryDirectory(prefix="retrain-bench-") as tmp:
        scratch = Path(tmp)
        for part in sorted(parts, key=int):
            results["dates"][part] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
            if part == "1":
                results["overhead"] = overhead(sizes, args.repeats, scratch)
                results["artifact_rows"] = sizes[-1]
                results["artifacts"] = artifact_sizes(scratch / f"run-{sizes[-1]}-0" / "root")
            elif part == "2":
                results["penguins"] = penguins(args.repeats, scratch)
                print(f"penguins: {fmt(results['penguins']['time'])}, peak "
                      f"{results['penguins']['peak_rss_mib']:.0f} MiB", flush=True)
            elif part == "3":
                results["scaling"] = scaling.history_scaling(
                    [int(n) for n in args.history_sizes.split(",")], args.repeats,
                    scratch, pipeline_run, bare_run, spread)
            elif part == "4":
                results["beyond_memory"] = scaling.beyond_memory(args.big_rows, scratch,
                                                                 pipeline_run, bare_run)
            elif part == "5":
                results["throughput"] = throughput(args.throughput_rows, args.repeats, scratch)
            elif part == "6":
                results["reliability"] = reliability.run(scratch, args.repeats, pipeline_run)
            elif part == "7":
                results["serving"] = serving.run(scratch, args.repeats, pipeline_run)
            elif part == "8":
                results["decisions"] = decisions.decision_quality()
            elif part == "9":
                results["life_page"] = life_page.run(scratch, args.repeats)
            elif part == "10":
                results["regression_decisions"] = decisions.decision_quality(
                    decisions.REGRESSION_KINDS, task="regression")
            elif part == "11":
                results["own_model"] = own_model.run(scratch, args.repeats, pipeline_run,
                                                     args.own_model_rows)
            write_report(out, results)  # after each part, so a long run shows progress
    print(f"wrote {out / 'results.md'} and {out / 'results.png'}")


if __name__ == "__main__":
    main()
