"""Stage 3, preprocess: clean the rows, set any holdout rows apart, split off the selection rows.

Cleaning here is row-level (types, duplicates, rows without a label). A run small enough to be
cross-fitted (:func:`components.data.roles.cross_fittable`) holds no row out: the gate judges
every new row by a fit that did not see it, and the model learns from all of them. A larger run
sets its holdout rows apart (drawn from each row's content and the model name), the gate's own
evaluation rows. History rows are all training rows but those in the registry's rolling holdout,
which later gates still judge on. Of the new training rows, the newest ``validation_fraction``
are the selection rows retrain chooses and tunes on. The column transforms
(imputation, scaling, one-hot encoding) are fitted inside the saved model
(:func:`components.ml.features.build_feature_transformer`), so serving applies exactly what
training learned.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from components.data.chunks import ChunkWriter, FrameTable, as_table, first_occurrences, row_hashes
from components.data.roles import (
    content_hashes,
    cross_fittable,
    holdout_mask,
    model_salt,
    role_columns,
)
from components.data.schema import (
    SOURCE_FILE_COLUMN,
    coerce_rows,
)
from components.outcomes import Task


@dataclass
class PreprocessResult:
    """How many rows went to training, validation, evaluation (holdout) and cleaned history,
    how many were dropped, and the run's seed."""

    train_rows: int
    validation_rows: int
    history_rows: int
    dropped_duplicates: int
    dropped_unlabelled: int
    holdout_rows: int = 0  # new rows set apart as holdout: evaluation only
    history_holdout_rows: int = 0  # history rows left out of training: in the rolling holdout
    seed: int = 0

    def counts(self) -> dict[str, int]:
        from dataclasses import asdict

        return {key: int(value) for key, value in asdict(self).items()}


def clean(
    frame: pd.DataFrame, *, label_column: str, feature_kinds: dict[str, str],
    task: str = Task.CLASSIFICATION,
) -> tuple[pd.DataFrame, int, int]:
    """Coerce types, drop exact duplicates and rows without a label.

    Returns:
        The cleaned frame, the number of duplicates dropped and of unlabelled rows dropped.
    """
    if frame.empty:
        return frame, 0, 0
    plan = _clean_plan(FrameTable(frame), label_column=label_column,
                       feature_kinds=feature_kinds, order_column="", task=task)
    cleaned = coerce_rows(frame, feature_kinds, label_column, task)[plan.keep] \
        .reset_index(drop=True)
    return cleaned, plan.duplicates, plan.unlabelled


def newest_rows(order: np.ndarray, validation_fraction: float) -> np.ndarray:
    """A mask of the newest ``validation_fraction`` of rows by ``order`` (ties: row order).

    Validation is always the most recent data: the rows the next months will look most like.
    """
    n_validation = max(1, round(len(order) * validation_fraction))
    if n_validation >= len(order):
        raise ValueError(
            f"validation_fraction={validation_fraction} leaves no training rows out of "
            f"{len(order)} new rows"
        )
    newest = np.zeros(len(order), dtype=bool)
    newest[np.argsort(order, kind="stable")[len(order) - n_validation:]] = True
    return newest


def split_by_time(
    frame: pd.DataFrame, *, timestamp_column: str, validation_fraction: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The newest ``validation_fraction`` of rows is validation, the rest training.

    Rows are ordered by timestamp, or in batch mode by file name and row order.
    """
    is_validation = newest_rows(_order_key(frame, timestamp_column or SOURCE_FILE_COLUMN),
                                validation_fraction)
    frame = frame.reset_index(drop=True)
    return frame[~is_validation].reset_index(drop=True), frame[is_validation].reset_index(drop=True)


def _order_key(frame: pd.DataFrame, column: str) -> np.ndarray:
    if column not in frame:
        return np.zeros(len(frame))
    values = frame[column]
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_localize(None)  # plain datetime64: sorts without objects
    return values.to_numpy()


def preprocess(
    new_data,
    history,
    *,
    label_column: str,
    timestamp_column: str,
    feature_kinds: dict[str, str],
    validation_fraction: float,
    train_path: str | Path,
    validation_path: str | Path,
    history_path: str | Path,
    evaluation_path: str | Path | None = None,
    model_name: str = "",
    holdout_fraction: float = 0.0,
    cutoff: str = "",
    task: str = Task.CLASSIFICATION,
    rolling_holdout=None,
) -> PreprocessResult:
    """Clean new rows and history alike; set any holdout rows apart; split the rest of the new
    rows into train and validation.

    A run too large to be cross-fitted (:func:`components.data.roles.cross_fittable`: its new
    rows, and the history and new rows a fit may learn from) sets its holdout rows
    (:mod:`components.data.roles`, ``holdout_fraction``) apart to ``evaluation_path``; a smaller
    one holds no row out. History rows held in ``rolling_holdout`` (the registry's, or None) are
    left out of training: later gates judge on them. Of the other new rows, the newest
    ``validation_fraction`` are validation. Does what :func:`clean` and :func:`split_by_time` do,
    a chunk of rows at a time: a first pass finds the rows to keep (labelled, not a repeat:
    64-bit row hashes), their roles and where the time cut falls; a second pass writes each kept
    row to its file, in the input's order. ``new_data``, ``history`` and ``rolling_holdout``
    are DataFrames, Parquet paths or :class:`components.data.chunks.Table` objects; the label is
    read as ``task`` reads it (a regression label as numbers). The seed is drawn from the kept
    rows' hashes and ``cutoff``: the same data gives the same seed, run after run.
    """
    new_table, history_table = as_table(new_data), as_table(history)
    common = dict(label_column=label_column, feature_kinds=feature_kinds, task=task)
    history_plan = _clean_plan(history_table, order_column="", roles=(
        np.uint64(0), 0.0, timestamp_column), held=_held_hashes(rolling_holdout, **common,
                                                                timestamp_column=timestamp_column),
                               **common)
    history_training = history_plan.keep & ~history_plan.holdout
    plan = _clean_plan(new_table, order_column=timestamp_column or SOURCE_FILE_COLUMN,
                       roles=(model_salt(model_name), holdout_fraction, timestamp_column),
                       **common)
    new_rows = int(plan.keep.sum())
    if cross_fittable(new_rows, new_rows + int(history_training.sum())):
        plan.holdout[:] = False  # every new row is cross-fitted: none needs holding out
    routes = _routes(plan, validation_fraction)
    paths = {"train": train_path, "validation": validation_path,
             "evaluation": evaluation_path or Path(train_path).with_name("evaluation.parquet")}
    rows = _write_clean(new_table, feature_kinds, label_column, routes, paths, task)
    history_rows = _write_clean(history_table, feature_kinds, label_column,
                                {"history": history_training}, {"history": history_path}, task)
    return PreprocessResult(
        rows["train"], rows["validation"], history_rows["history"], plan.duplicates,
        plan.unlabelled, holdout_rows=rows["evaluation"],
        history_holdout_rows=int((history_plan.keep & history_plan.holdout).sum()),
        seed=run_seed(plan.digest, cutoff))


def _routes(plan: _CleanPlan, validation_fraction: float) -> dict[str, np.ndarray]:
    """Where each new row goes: ``train``, ``validation`` (the newest ``validation_fraction``
    of the kept rows not held out) or ``evaluation`` (the holdout rows)."""
    training = plan.keep & ~plan.holdout
    is_validation = np.zeros(len(plan.keep), dtype=bool)
    is_validation[training] = newest_rows(plan.order[~plan.holdout[plan.keep]],
                                          validation_fraction)
    return {"train": training & ~is_validation, "validation": is_validation,
            "evaluation": plan.keep & plan.holdout}


def _held_hashes(rolling_holdout, *, label_column: str, feature_kinds: dict[str, str],
                 task: str, timestamp_column: str) -> np.ndarray | None:
    """The content hashes of the rolling holdout's rows, coerced as history rows are (so the
    same row hashes alike), or None when there is none."""
    if rolling_holdout is None:
        return None
    hashes = [content_hashes(coerce_rows(chunk, feature_kinds, label_column, task),
                             feature_kinds, label_column, timestamp_column)
              for chunk in as_table(rolling_holdout).chunks()]
    return np.concatenate(hashes) if hashes else None


def run_seed(digest: int, cutoff: str) -> int:
    """A 32-bit seed from the data's digest and the run's cutoff."""
    import hashlib

    return int.from_bytes(hashlib.sha256(f"{digest}:{cutoff}".encode()).digest()[:4], "big")


@dataclass
class _CleanPlan:
    keep: np.ndarray  # per input row
    order: np.ndarray  # the sort key of each kept row
    duplicates: int
    unlabelled: int
    holdout: np.ndarray  # per input row: evaluation-only
    digest: int = 0  # of the kept rows' hashes: what the run's seed is drawn from


def _clean_plan(table, *, label_column: str, feature_kinds: dict[str, str],
                order_column: str, roles: tuple = (np.uint64(0), 0.0, ""),
                task: str = Task.CLASSIFICATION, held: np.ndarray | None = None) -> _CleanPlan:
    """Which rows :func:`clean` keeps, their roles, and the kept rows' ``order_column`` values
    as a key. ``roles``: the model's salt, the holdout fraction and the timestamp column; a row
    whose content hash is among ``held`` is a holdout row too.

    Per row it keeps 18 bytes (a hash, a timestamp, two flags), in arrays sized once up front.
    """
    salt, holdout_fraction, timestamp_column = roles
    rows = table.rows
    labelled = np.zeros(rows, dtype=bool)
    holdout = np.zeros(rows, dtype=bool)
    hashes = np.zeros(rows, dtype=np.uint64)
    keys = None
    offset = 0
    for chunk in table.chunks():
        coerced = coerce_rows(chunk, feature_kinds, label_column, task)
        end = offset + len(coerced)
        if label_column in coerced:
            labelled[offset:end] = coerced[label_column].notna().to_numpy()
        content = [c for c in coerced.columns if c != SOURCE_FILE_COLUMN]
        hashes[offset:end] = row_hashes(coerced, content)
        columns = role_columns(coerced.columns, feature_kinds, label_column, timestamp_column)
        if holdout_fraction:
            holdout[offset:end] = holdout_mask(coerced, columns, salt, holdout_fraction)
        if held is not None and len(coerced):
            holdout[offset:end] |= np.isin(row_hashes(coerced, columns), held)
        if order_column:
            key = _order_key(coerced, order_column)
            if keys is None:
                keys = np.empty(rows, dtype=key.dtype)
            keys[offset:end] = key
        offset = end
    labelled_rows = np.flatnonzero(labelled)
    labelled_hashes = hashes[labelled_rows]
    del hashes
    is_first = first_occurrences(labelled_hashes)
    digest = int(np.bitwise_xor.reduce(labelled_hashes[is_first])) if is_first.any() else 0
    del labelled_hashes
    keep = np.zeros(rows, dtype=bool)
    keep[labelled_rows] = is_first
    order = keys[keep] if keys is not None else np.zeros(int(keep.sum()))
    return _CleanPlan(keep, order, duplicates=len(labelled_rows) - int(is_first.sum()),
                      unlabelled=rows - len(labelled_rows), holdout=holdout, digest=digest)


def _write_clean(table, feature_kinds: dict[str, str], label_column: str,
                 routes: dict[str, np.ndarray], paths: dict[str, str | Path],
                 task: str = Task.CLASSIFICATION) -> dict[str, int]:
    """Coerce each chunk again and write the rows each route's mask selects to its path."""
    writers = {name: ChunkWriter(path) for name, path in paths.items()}
    try:
        offset = 0
        for chunk in table.chunks():
            coerced = coerce_rows(chunk, feature_kinds, label_column, task).reset_index(drop=True)
            for name, mask in routes.items():
                selected = mask[offset:offset + len(coerced)]
                if selected.any():
                    writers[name].write(coerced[selected])
            offset += len(coerced)
    except BaseException:
        for writer in writers.values():
            writer.discard()
        raise
    for writer in writers.values():
        writer.close()
    return {name: writer.rows for name, writer in writers.items()}
