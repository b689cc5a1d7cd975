"""``make bench`` part 8, decision quality: the deploy gate on streams whose concept is known.

    python -m bench.decisions [--kinds stationary,abrupt] [--batches 200,2000] [--seeds 0]
    python -m bench.decisions --batches 200 --seeds 0-8 --once   # one draw is not a claim

For each ground-truth stream (:mod:`app.concept_streams`: stationary, abrupt, gradual, label
noise) and monthly batch size, a year of monthly runs of the pipeline's stages
(:func:`app.concept_streams.replay`, default parameters), and in the same run three naive
schedules with the same model type and no gate: never retrain; refit on all rows each month; refit
on the last three months each month. Every model's accuracy is its true accuracy on 20,000 fresh
rows of the month it serves (a month with no model served counts as always answering the
majority class). Counted: deploys; harmful deploys (truly worse than the champion
they replaced by more than 1 point); better challengers rejected (truly better by more than 2
points); the served model's mean true accuracy over the year against each schedule's.
Targets: no harmful deploy; served accuracy at least the best naive schedule's minus 0.25 point;
the same decisions when each year is replayed a second time.
Both views of the naive schedules: without a threshold, and under the gate's cold-start threshold
rule (:func:`under_threshold_rule`).

One seed is one draw of each stream. With several (``--seeds 0-8``), :func:`over_seeds` adds
what a claim about the gate needs: per stream, served minus the best naive schedule on each seed,
its mean and standard error, and the harmful deploys among all the runs. ``--once`` replays each
year a single time (the determinism check is part 8's, on seed 0), which halves the time.

With ``--task regression`` (``make bench`` part 10) the streams' label is a number (stationary,
abrupt, gradual) and every model is scored by its true RMSE on the same 20,000 fresh rows;
harmful and better-rejected deploys are 1% and 2% of the champion's RMSE, and the target is a
served RMSE at most the best naive schedule's plus 0.25%.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from app.concept_streams import (
    FEATURE_KINDS,
    KINDS,
    LABEL_COLUMN,
    MONTHS,
    REGRESSION_KINDS,
    TIMESTAMP_COLUMN,
    Stream,
    replay,
)

NAIVE = ("never", "refit_all", "refit_last_3")
TARGET_MARGIN = 0.0025  # served at least the best naive schedule's minus this
COLD_START_THRESHOLD = 0.80  # the gate's default threshold
CHECK_FOLDS = 5


def cross_validated_accuracy(fit, frames: list[pd.DataFrame], seed: int = 0) -> float:
    """The accuracy of ``fit``'s procedure on ``frames``' rows, each row predicted by a fit without
    it (5 folds): the evidence the gate's cold start now judges a model on."""
    rows = pd.concat(frames, ignore_index=True)
    folds = np.random.default_rng(seed).permutation(len(rows)) % CHECK_FOLDS
    right = 0
    for fold in range(CHECK_FOLDS):
        model = fit([rows[folds != fold]])
        held = rows[folds == fold]
        right += int(np.sum(model.predict(held.drop(columns=[LABEL_COLUMN, TIMESTAMP_COLUMN]))
                            == held[LABEL_COLUMN].to_numpy()))
    return right / len(rows)


def under_threshold_rule(stream: Stream, fitted_rows: dict, served: dict, fit) -> dict:
    """Each schedule judged as the gate judges a cold start: a month's model is served only once
    the schedule's model has passed :data:`COLD_START_THRESHOLD` (cross-validated on the rows it
    was fitted on); before, the month counts as answering the majority class. ``never`` keeps
    the first model that passes. A regression run has no threshold by default: every schedule
    serves at once."""
    if stream.regression:
        return {name: list(months) for name, months in served.items()}
    gated = {}
    for name in NAIVE:
        months, passed = [], False
        for month, accuracy in enumerate(served[name]):
            if not passed and cross_validated_accuracy(
                    fit, fitted_rows[name][month]) >= COLD_START_THRESHOLD:
                passed = True
            months.append(accuracy if passed else stream.no_model_accuracy(month + 1))
        gated[name] = months
    return gated


def naive_schedules(stream: Stream, model_type: str = "hgb",
                    months: int = MONTHS) -> tuple[dict, dict]:
    """Each naive schedule's served true accuracy per month (index m: the model after run m),
    without a gate and under the cold-start threshold rule."""
    from components.stages.retrain import fit_fresh

    def fit(frames: list[pd.DataFrame]):
        rows = pd.concat(frames, ignore_index=True)
        rows[TIMESTAMP_COLUMN] = pd.to_datetime(rows[TIMESTAMP_COLUMN], utc=True)
        model, _ = fit_fresh(rows, rows.tail(50), label_column=LABEL_COLUMN,
                             feature_kinds=FEATURE_KINDS, model_type=model_type, epochs=5,
                             traced=False, task=stream.task)
        return model

    initial = stream.initial()
    monthly = [initial] + [stream.month(m) for m in range(1, months + 1)]
    first = fit([initial])
    served = {name: [] for name in NAIVE}
    fitted_rows = {name: [] for name in NAIVE}  # what each month's model was fitted on
    for month in range(months + 1):
        served["never"].append(stream.true_accuracy(first, month + 1))
        fitted_rows["never"].append([initial] if month == 0 else monthly[:month + 1])
        if month == 0:
            for name in ("refit_all", "refit_last_3"):
                served[name].append(served["never"][0])
                fitted_rows[name].append([initial])
            continue
        served["refit_all"].append(stream.true_accuracy(fit(monthly[:month + 1]), month + 1))
        fitted_rows["refit_all"].append(monthly[:month + 1])
        recent = monthly[max(1, month - 2):month + 1]
        if month < 3:  # fewer than three months since the initial file: its newest ones too
            recent = [initial.tail(stream.batch_rows * (3 - month)), *recent]
        served["refit_last_3"].append(stream.true_accuracy(fit(recent), month + 1))
        fitted_rows["refit_last_3"].append(recent)
    return served, under_threshold_rule(stream, fitted_rows, served, fit)


def measure(kind: str, batch_rows: int, seed: int = 0, repeat: bool = True,
            task: str = "classification") -> dict:
    """One stream: the pipeline's year against the naive schedules'; with ``repeat``, the year
    replayed a second time from scratch, which must decide the same way."""
    stream = Stream(kind, batch_rows, seed, task)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-decisions-") as root:
        months = replay(stream, root)
    seconds = time.perf_counter() - start
    same = None
    if repeat:
        with tempfile.TemporaryDirectory(prefix="bench-decisions-") as root:
            again = replay(Stream(kind, batch_rows, seed, task), root)
        same = ([(m.status, m.reason, m.gate) for m in months]
                == [(m.status, m.reason, m.gate) for m in again])
    naive, naive_gated = naive_schedules(stream)
    # A month with no model served (a cold start the gate refused) answers the majority class.
    served = [m.served if m.served is not None else stream.no_model_accuracy(m.month + 1)
              for m in months]
    result = {
        "kind": kind, "batch_rows": batch_rows, "seed": seed, "seconds": seconds, "task": task,
        "same_decisions_twice": same,
        "deploys": sum(m.deployed for m in months),
        "harmful": sum(m.harmful for m in months),
        "better_rejected": sum(m.better_rejected for m in months),
        "served": float(np.mean(served)),
        "naive": {name: float(np.mean(values)) for name, values in naive.items()},
        "naive_months": naive,
        "naive_threshold_rule": {name: float(np.mean(v)) for name, v in naive_gated.items()},
        "months": [{"month": m.month, "status": m.status, "champion_before": m.champion_before,
                    "challenger": m.challenger, "served": m.served,
                    "rows": (m.gate or {}).get("rows"), "ci_low": (m.gate or {}).get("ci_low"),
                    "harmful": m.harmful, "better_rejected": m.better_rejected}
                   for m in months],
    }
    if stream.regression:  # RMSE: lower is better, the margin a share of it
        best = min(result["naive"], key=result["naive"].get)
        result["best_naive_threshold_rule"] = min(result["naive_threshold_rule"].values())
        close_enough = result["served"] <= result["naive"][best] * (1 + TARGET_MARGIN)
    else:
        best = max(result["naive"], key=result["naive"].get)
        result["best_naive_threshold_rule"] = max(result["naive_threshold_rule"].values())
        close_enough = result["served"] >= result["naive"][best] - TARGET_MARGIN
    result["best_naive"] = best
    result["meets_target"] = result["harmful"] == 0 and same is not False and close_enough
    return result


def decision_quality(kinds=KINDS, batches=(200, 2000), seeds=(0,), workers: int = 2,
                     task: str = "classification", repeat: bool = True) -> list[dict]:
    """Every stream, ``workers`` at a time (:func:`one_thread_workers`). The decisions do not
    depend on it."""
    streams = [(kind, batch, seed) for kind in kinds for batch in batches for seed in seeds]
    longest_first = sorted(streams, key=lambda stream: -stream[1])  # so no worker ends alone
    with one_thread_workers(workers) as pool:
        columns = [*zip(*longest_first, strict=True)]
        results = dict(zip(longest_first, pool.map(
            measure, *columns, [repeat] * len(streams), [task] * len(streams)), strict=True))
    return [results[stream] for stream in streams]


ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


@contextlib.contextmanager
def one_thread_workers(workers: int):
    """A pool of ``workers`` fresh interpreters, each held to one thread: two replays then use
    this machine's two cores (left to their OpenMP defaults, each process's threads wait on the
    other's, and two streams ran 2.5 times slower than one after the other)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from app.run_scope import environment

    # The workers' libraries read ONE_THREAD from the environment as they load.
    with environment(ONE_THREAD), ProcessPoolExecutor(
            max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


def markdown(results: list[dict], date: str = "") -> list[str]:
    """The part's table for ``bench/results.md``."""
    lines = [f"## 8. Decision quality{f' ({date})' if date else ''}", "",
             f"A year of monthly runs ({MONTHS} after the cold start) over ground-truth streams "
             "(`app/concept_streams.py`), default parameters; true accuracy on 20,000 fresh "
             "rows of the month each model serves (no model served: the majority class). "
             "Naive schedules, same model type, no gate: "
             "never retrain; refit on all rows monthly; refit on the last three months monthly. "
             "Harmful: a deploy truly worse than the champion it replaced by > 1 point. Better "
             "rejected: a challenger truly better by > 2 points not deployed. Target: no harmful "
             "deploy, served accuracy >= best naive - 0.25 point (naive without a threshold), "
             "the same decisions when the year is replayed a second time from scratch. "
             "Under the threshold rule, each schedule serves only once its model's "
             "cross-validated accuracy on the rows it was fitted on reaches the gate's cold-start "
             f"threshold {COLD_START_THRESHOLD:.2f} (the majority class before).", "",
             "| stream | rows/month | deploys | harmful | better rejected | served accuracy | "
             "never | refit all | refit last 3 | served - best naive | best naive, threshold "
             "rule | served - it | same decisions twice | target |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        naive = r["naive"]
        gap = r["served"] - naive[r["best_naive"]]
        gated = r.get("best_naive_threshold_rule")
        gated_cells = (f"{gated:.4f} | {(r['served'] - gated) * 100:+.2f} pt"
                       if gated is not None else "- | -")
        lines.append(
            f"| {_stream(r)} | {r['batch_rows']} | {r['deploys']} | {r['harmful']} | "
            f"{r['better_rejected']} | {r['served']:.4f} | {naive['never']:.4f} | "
            f"{naive['refit_all']:.4f} | {naive['refit_last_3']:.4f} | {gap * 100:+.2f} pt | "
            f"{gated_cells} | {_twice(r.get('same_decisions_twice'))} | "
            f"{'met' if r['meets_target'] else 'MISSED'} |")
    return lines


def regression_markdown(results: list[dict], date: str = "") -> list[str]:
    """Part 10's table: the regression streams, scored by true RMSE (lower is better)."""
    lines = [f"## 10. Decision quality, regression{f' ({date})' if date else ''}", "",
             f"Part 8 with a number to predict: a year of monthly runs ({MONTHS} after the cold "
             "start) over ground-truth regression streams (`app/concept_streams.py`, label "
             "noise of standard deviation 5: the best possible RMSE), default parameters "
             "(task auto, metric rmse, no threshold); true RMSE on 20,000 fresh rows of the "
             "month each model serves (no model served: the labels' mean). Naive schedules as "
             "in part 8; a regression run has no default threshold, so the threshold rule "
             "changes nothing for them. Harmful: a deploy truly worse than the champion it "
             "replaced by more than 1% of its RMSE. Better rejected: a challenger truly better "
             "by more than 2%, not deployed. Target: no harmful deploy, served RMSE at most the "
             "best naive schedule's + 0.25%, the same decisions twice.", "",
             "| stream | rows/month | deploys | harmful | better rejected | served RMSE | "
             "never | refit all | refit last 3 | served / best naive - 1 | same decisions "
             "twice | target |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        naive = r["naive"]
        gap = r["served"] / naive[r["best_naive"]] - 1
        lines.append(
            f"| {_stream(r)} | {r['batch_rows']} | {r['deploys']} | {r['harmful']} | "
            f"{r['better_rejected']} | {r['served']:.3f} | {naive['never']:.3f} | "
            f"{naive['refit_all']:.3f} | {naive['refit_last_3']:.3f} | {gap * 100:+.2f}% | "
            f"{_twice(r.get('same_decisions_twice'))} | "
            f"{'met' if r['meets_target'] else 'MISSED'} |")
    return lines


def served_gap(result: dict) -> float:
    """Served against the best naive schedule, in the unit part 8 and 10 report it: points of
    accuracy (positive: the gate served better), or percent of the RMSE (negative: better)."""
    best = result["naive"][result["best_naive"]]
    if result["task"] == "regression":
        return (result["served"] / best - 1) * 100
    return (result["served"] - best) * 100


def over_seeds(results: list[dict]) -> list[dict]:
    """Per stream (kind, rows a month), over its seeds: each seed's :func:`served_gap`, their
    mean and standard error (of the mean: the sample's standard deviation over the square root
    of the seeds), and the deploys and harmful deploys of every run."""
    streams: dict[tuple, list[dict]] = {}
    for result in results:
        streams.setdefault((result["kind"], result["batch_rows"]), []).append(result)
    summary = []
    for (kind, batch_rows), runs in streams.items():
        runs = sorted(runs, key=lambda run: run["seed"])
        gaps = np.array([served_gap(run) for run in runs])
        summary.append({"kind": kind, "batch_rows": batch_rows, "task": runs[0]["task"],
                        "seeds": [run["seed"] for run in runs], "gaps": gaps.tolist(),
                        "mean_gap": float(gaps.mean()), "standard_error": standard_error(gaps),
                        "deploys": sum(run["deploys"] for run in runs),
                        "harmful": sum(run["harmful"] for run in runs)})
    return summary


def standard_error(values) -> float | None:
    """The standard error of the mean of ``values``: the sample's standard deviation over the
    square root of their number; None for one value (no spread to speak of)."""
    values = np.asarray(values, dtype=float)
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else None


def spread_cell(error: float | None) -> str:
    """A standard error in a table: ``-`` where there is none (None, or NaN in a frame)."""
    return "-" if pd.isna(error) else f"{error:.2f}"


def seeds_markdown(summary: list[dict]) -> list[str]:
    """:func:`over_seeds` as a table."""
    unit = {"classification": "pt", "regression": "%"}
    lines = ["| stream | rows/month | seeds | served - best naive, each seed | mean (standard "
             "error) | deploys | harmful |", "|---|---|---|---|---|---|---|"]
    for row in summary:
        suffix = unit[row["task"]]
        each = " ".join(f"{gap:+.2f}" for gap in row["gaps"])
        lines.append(f"| {row['kind']} | {row['batch_rows']} | {len(row['seeds'])} | {each} | "
                     f"{row['mean_gap']:+.2f} {suffix} ({spread_cell(row['standard_error'])}) | "
                     f"{row['deploys']} | {row['harmful']} |")
    return lines


def seed_list(text: str) -> list[int]:
    """``0,3,5`` or ``0-8`` (both ends included), or both: ``0-2,7``."""
    seeds = []
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        seeds += range(int(first), int(last or first) + 1)
    return seeds


def _stream(result: dict) -> str:
    """The stream's kind, and its seed where it is not part 8's (seed 0)."""
    return result["kind"] + (f" (seed {result['seed']})" if result.get("seed") else "")


def _twice(same: bool | None) -> str:
    return "-" if same is None else "yes" if same else "NO"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("classification", "regression"),
                        default="classification")
    parser.add_argument("--kinds", default="", help="default: every kind of the task")
    parser.add_argument("--batches", default="200,2000")
    parser.add_argument("--seeds", type=seed_list, default="0", help="e.g. 0, 0,3 or 0-8")
    parser.add_argument("--once", action="store_true",
                        help="replay each year once, without the second pass that checks the "
                             "decisions repeat")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    kinds = args.kinds.split(",") if args.kinds else (
        REGRESSION_KINDS if args.task == "regression" else KINDS)
    results = decision_quality(kinds, [int(b) for b in args.batches.split(",")], args.seeds,
                               args.workers, args.task, repeat=not args.once)
    table = regression_markdown if args.task == "regression" else markdown
    print("\n".join(table(results)))
    if len(args.seeds) > 1:
        print("\n".join(["", *seeds_markdown(over_seeds(results))]))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
