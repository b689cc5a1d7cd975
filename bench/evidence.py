"""Which of the gate's rows tell a challenger's true gain: the selection rows or the others.

    python -m bench.evidence --seeds 0-8   # the four 200-row streams: about 17 minutes here

Each month of a replayed year (:func:`app.concept_streams.replay`, default parameters) the gate
compares the champion with the challenger's cross-fitted answers on the new rows since the
champion's. Those rows are of two kinds: the selection rows (the newest, on which ``auto`` chose
the challenger's procedure) and the others. Per stream, and by whether ``auto`` kept ``full`` or
chose another candidate, the mean error of the gain measured on each kind, on all of them, and
on the rows the gate judged (after a concept-change cut, those since the change), against the
challenger's true gain over the champion on the month it would serve (20,000 fresh rows). A
choice's optimism (the winner's curse) shows as a positive error on the selection rows where
the world stands still; drift, as a negative error on the older rows. Classification streams
only (the gain is in accuracy).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from app.concept_streams import KINDS, LABEL_COLUMN, Stream, replay
from bench.decisions import one_thread_workers, seed_list, spread_cell, standard_error
from components.ml.metrics import CROSS_FIT_CLASS
from components.outcomes import Strategy

KEPT_FULL, CHOSE_ANOTHER = "kept full", "chose another"
# The rows a gain is measured on: the selection rows, the other new rows, all the new rows, and
# those the gate judged.
PARTS = ("selection", "other", "all", "gate")


def month_evidence(root: Path, months: list) -> list[dict]:
    """Per month of the replay in ``root`` whose challenger met a champion: the challenger's
    (cross-fitted) gain in accuracy over the champion on the selection rows, the other new rows,
    all of them and the rows the gate judged (its delta), and its true gain (from ``months``,
    the replay's results)."""
    from components.registry import Registry

    registry, rows = Registry(str(root / "registry"), "stream"), []
    for result in months:
        run = root / "runs" / f"{result.month:02d}"
        record_file, answers_file = run / "decision_record", run / "cross_fitted"
        if result.champion_before is None or result.challenger is None or \
                not record_file.exists() or not answers_file.exists():
            continue
        record = json.loads(record_file.read_text())
        champion = record["champion"]["version"]
        training = json.loads((run / "challenger" / "training.json").read_text())
        answers = pd.read_parquet(answers_file)  # the training rows, then the selection rows
        selection = len(pd.read_parquet(run / "validation_data"))
        features = answers.drop(columns=[LABEL_COLUMN, *(
            column for column in answers.columns if column.startswith("__"))])
        labels = answers[LABEL_COLUMN].to_numpy()
        champion_right = registry.load_model(champion).predict(features) == labels
        challenger_right = np.asarray(training["classes"])[answers[CROSS_FIT_CLASS]] == labels
        gain = challenger_right.astype(float) - champion_right
        older = len(answers) - selection
        rows.append({"month": result.month, "choice": KEPT_FULL
                     if training["strategy"] == Strategy.FULL else CHOSE_ANOTHER,
                     "selection_rows": selection, "other_rows": older,
                     "selection_gain": float(gain[older:].mean()),
                     "other_gain": float(gain[:older].mean()) if older else None,
                     "all_gain": float(gain.mean()), "gate_gain": record["gate"]["delta"],
                     "true_gain": result.challenger - result.champion_before})
    return rows


def stream_evidence(kind: str, batch_rows: int, seed: int) -> list[dict]:
    """:func:`month_evidence` of one replayed year, each month named by its stream."""
    with tempfile.TemporaryDirectory(prefix="bench-evidence-") as root:
        months = replay(Stream(kind, batch_rows, seed), root)
        return [{"kind": kind, "seed": seed, **month}
                for month in month_evidence(Path(root), months)]


def summary(rows: list[dict]) -> pd.DataFrame:
    """Per stream kind and choice: the months, the mean true gain, and the mean error (measured
    minus true gain) on each of :data:`PARTS`, each with its standard error; in points."""
    frame = pd.DataFrame(rows)
    for part in PARTS:
        frame[part] = (frame[f"{part}_gain"] - frame["true_gain"]) * 100
    frame["true"] = frame["true_gain"] * 100
    groups = frame.groupby(["kind", "choice"])
    table = groups.size().rename("months").to_frame()
    table["true gain"] = groups["true"].mean()
    for part in PARTS:
        table[f"{part} error"] = groups[part].mean()
        table[f"{part} SE"] = groups[part].agg(standard_error)
    return table.reset_index()


def markdown(table: pd.DataFrame) -> list[str]:
    """:func:`summary` as a table, errors in points (standard errors in brackets)."""
    lines = ["| stream | auto | months | true gain | error on the selection rows | on the "
             "other new rows | on all | on the gate's rows |", "|---|---|---|---|---|---|---|---|"]
    for row in table.to_dict("records"):
        errors = " | ".join(f"{row[f'{part} error']:+.2f} ({spread_cell(row[f'{part} SE'])})"
                            for part in PARTS)
        lines.append(f"| {row['kind']} | {row['choice']} | {row['months']} | "
                     f"{row['true gain']:+.2f} | {errors} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--seeds", type=seed_list, default="0", help="e.g. 0, 0,3 or 0-8")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    streams = [(kind, args.batches, seed) for seed in args.seeds
               for kind in args.kinds.split(",")]
    with one_thread_workers(args.workers) as pool:
        years = pool.map(stream_evidence, *zip(*streams, strict=True))
        rows = [month for year in years for month in year]
    print("\n".join(markdown(summary(rows))))


if __name__ == "__main__":
    main()
