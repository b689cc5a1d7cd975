"""``make bench`` part 11: a team's own model against the built-in one, on 1M rows.

A cold-start ``retrain run`` (``auto``, the whole pipeline under kfp.local) on 1M rows of the
demo's customers, once with ``hgb`` and once with the LightGBM example
(``examples/lightgbm_model``, ``--model-type lightgbm_model:make_model``), for a class
(``will_buy``) and for a number (``spend_next_month``): the retrain stage's seconds and peak RSS
as the process that did its work logs them, the whole run's seconds, and the challenger's score
on the evaluation rows.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np

from app import demo_data

MODELS = {"hgb": "hgb", "lightgbm": "lightgbm_model:make_model"}
TASKS = {"classification": (demo_data.LABEL_COLUMN, "accuracy"),
         "regression": (demo_data.REGRESSION_LABEL_COLUMN, "rmse")}


def run(scratch: Path, repeats: int, pipeline_run, rows: int = 1_000_000) -> dict:
    """Each model on each task, ``repeats`` runs interleaved; medians and extremes."""
    from components.runtime.delegation import stage_figures

    results: dict = {"rows": rows, "runs": {}}
    for task, (label, metric) in TASKS.items():
        source = scratch / f"own-model-{task}"
        source.mkdir(parents=True, exist_ok=True)
        demo_data.customers(rows, demo_data.month_start(0), demo_data.month_start(3), 0.0,
                            np.random.default_rng(5), task).to_parquet(
            source / "customers.parquet", index=False)
        found = {name: {"seconds": [], "retrain_seconds": [], "retrain_rss": [], "score": []}
                 for name in MODELS}
        for repeat in range(repeats):
            for name, model_type in MODELS.items():
                work = scratch / f"own-model-{task}-{name}-{repeat}"
                record = pipeline_run(source, work / "registry", work / "root", label,
                                      demo_data.TIMESTAMP_COLUMN, "--model-type", model_type,
                                      "--threshold", "-1")
                stages = stage_figures(Path(record["log"]).read_text())
                found[name]["seconds"].append(record["seconds"])
                found[name]["retrain_seconds"].append(stages["retrain"]["seconds"])
                found[name]["retrain_rss"].append(stages["retrain"]["peak_rss_mib"])
                found[name]["score"].append(record["challenger"]["metrics"][metric])
                print(f"own model {task} {name}: run {record['seconds']:.1f} s, retrain "
                      f"{stages['retrain']['seconds']:.1f} s, "
                      f"{stages['retrain']['peak_rss_mib']} MiB, {metric} "
                      f"{found[name]['score'][-1]:.4f}", flush=True)
        results["runs"][task] = {name: {key: {"median": statistics.median(values),
                                              "min": min(values), "max": max(values)}
                                        for key, values in figures.items()}
                                 for name, figures in found.items()}
    return results


def report_lines(results: dict, date: str) -> list[str]:
    lines = ["", f"## 11. A team's own model: LightGBM against hgb ({date})", "",
             f"A cold-start `retrain run` (`auto`) on {results['rows']:,} rows of the demo's "
             "customers, `--model-type hgb` against `--model-type lightgbm_model:make_model` "
             "(the example, LightGBM's defaults with 100 trees); the retrain stage's time and "
             "peak RSS as its process logs them. Median (min–max).", "",
             "| task | model | whole run | retrain stage | retrain peak RSS | challenger score |",
             "|---|---|---|---|---|---|"]
    for task, models in results["runs"].items():
        metric = TASKS[task][1]
        for name, figures in models.items():
            lines.append(
                f"| {task} | {name} | {_spread(figures['seconds'], 's')} | "
                f"{_spread(figures['retrain_seconds'], 's')} | "
                f"{_spread(figures['retrain_rss'], 'MiB', 0)} | {metric} "
                f"{figures['score']['median']:.4f} |")
    return lines


def _spread(stats: dict, unit: str, digits: int = 1) -> str:
    return (f"{stats['median']:.{digits}f} {unit} ({stats['min']:.{digits}f}–"
            f"{stats['max']:.{digits}f})")
