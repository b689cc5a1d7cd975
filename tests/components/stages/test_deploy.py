"""Deploy's rolling holdout: the newest rows of everything consumed, each once."""

import io

import numpy as np
import pandas as pd

from components.data.roles import PROMOTED_VERSION_COLUMN
from components.data.schema import SOURCE_FILE_COLUMN


def _holdout_with_repeats(rows: int, seed: int) -> pd.DataFrame:
    """Holdout rows over 40 days (many share an event time), with a third of them repeats of
    rows from the newest week, shuffled, as a month's rows sent twice would be."""
    rng = np.random.default_rng(seed)
    distinct = rows - rows // 3
    frame = pd.DataFrame({
        "event_time": pd.Timestamp("2025-01-01", tz="UTC")
        + pd.to_timedelta(rng.integers(0, 40, distinct), unit="D"),
        "x": rng.normal(size=distinct), "segment": rng.choice(["a", "b", None], distinct),
        "count": np.where(rng.random(distinct) < 0.05, np.nan,
                          rng.integers(0, 9, distinct).astype(float)),
        "label": rng.integers(0, 2, distinct)})
    newest_week = frame[frame["event_time"] >= frame["event_time"].max() - pd.Timedelta(days=7)]
    repeats = newest_week.sample(rows - distinct, replace=True, random_state=seed)
    frame = pd.concat([frame, repeats]).sample(frac=1, random_state=seed)
    return frame.assign(**{SOURCE_FILE_COLUMN: "month.parquet"}).reset_index(drop=True)


def _rolled_by_whole_read(pool: pd.DataFrame, holdout: pd.DataFrame, max_rows: int):
    """What the rolling holdout must be, from every row read whole (pandas' own duplicated)."""
    frame = pd.concat([pool, holdout], ignore_index=True)
    content = [c for c in frame.columns if c not in (SOURCE_FILE_COLUMN, PROMOTED_VERSION_COLUMN)]
    frame = frame[~frame.duplicated(content)].sort_values("event_time", kind="stable")
    return frame.tail(max_rows).reset_index(drop=True)


def test_a_large_holdout_rolls_in_exactly_as_a_whole_read_without_being_read_whole(
        tmp_path, monkeypatch):
    """Check that deploy reads only the newest rows of a holdout larger than the rolling
    holdout keeps, reading further back when repeats among them leave too few distinct rows,
    and that the pool it writes is exactly the one every row read whole gives: the same rows,
    order, columns and dtypes, each row once (repeats within the holdout, and of pool rows)."""
    from components.data.chunks import Table
    from components.stages import deploy

    holdout = _holdout_with_repeats(2_000, seed=5)
    path = tmp_path / "holdout.parquet"
    holdout.to_parquet(path, index=False)
    pool = pd.concat([holdout.sample(100, random_state=1),  # rows consumed before, again
                      _holdout_with_repeats(300, seed=6).assign(
                          event_time=lambda f: f["event_time"] - pd.Timedelta(days=30))])
    pool = pool.assign(**{SOURCE_FILE_COLUMN: "earlier.parquet",
                          PROMOTED_VERSION_COLUMN: np.where(np.arange(len(pool)) % 2, "v0001",
                                                            None)}).reset_index(drop=True)
    pool_bytes = io.BytesIO()
    pool.to_parquet(pool_bytes, index=False)

    whole_reads, wanted = [], []
    read, newest = Table.read, deploy.rows_since_newest
    monkeypatch.setattr(Table, "read", lambda self, columns=None: (
        whole_reads.append(columns is None), read(self, columns))[1])
    monkeypatch.setattr(deploy, "rows_since_newest", lambda data, rows, column: (
        wanted.append(rows), newest(data, rows, column))[1])
    monkeypatch.setenv("RETRAIN_CHUNK_ROWS", "170")  # many chunks, split across ties
    for max_rows in (50, 400, 1_000, 1_999, 2_500):
        whole_reads.clear()
        wanted.clear()
        rolled = pd.read_parquet(io.BytesIO(deploy.rolled_holdout(
            pool_bytes.getvalue(), Table(path), max_rows=max_rows,
            timestamp_column="event_time")))
        pd.testing.assert_frame_equal(rolled, _rolled_by_whole_read(pool, holdout, max_rows))
        if max_rows < 1_000:
            assert not any(whole_reads), max_rows  # only the event times, then the newest rows
        if max_rows == 400:
            assert wanted[-1] > max_rows  # the newest 400 held too many repeats: read further
