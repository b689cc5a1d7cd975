"""The order rows are judged and cut in: oldest first."""

import numpy as np
import pandas as pd

from components.data.schema import SOURCE_FILE_COLUMN
from components.ml.concept_change import in_time_order


def test_rows_are_put_in_event_time_order_as_a_stable_sort_puts_them():
    """Check that rows come oldest first, ties in their order and rows without an event time
    last, exactly as pandas' stable sort orders them; for tz-aware times, times given with
    other offsets, and in batch mode (earlier runs' rows first, then this run's by file)."""
    rng = np.random.default_rng(0)
    stamps = pd.Series(pd.Timestamp("2025-01-01", tz="UTC")
                       + pd.to_timedelta(rng.integers(0, 30, 500), unit="D"))
    stamps[rng.random(500) < 0.1] = pd.NaT
    frame = pd.DataFrame({"event_time": stamps, "x": np.arange(500)})
    expected = frame.sort_values("event_time", kind="stable")
    ordered = in_time_order(frame, "event_time", np.ones(500, dtype=bool))
    pd.testing.assert_frame_equal(ordered, expected)

    offsets = pd.DataFrame({"event_time": ["2025-01-01T00:00:00+02:00", "2024-12-31T23:00:00Z",
                                           "2024-12-31T22:00:00Z"]})  # the first and last tie
    assert in_time_order(offsets, "event_time", np.ones(3, dtype=bool)).index.tolist() == \
        [0, 2, 1]

    batches = pd.DataFrame({SOURCE_FILE_COLUMN: ["b.csv", "a.csv", "b.csv", "old.csv"]})
    this_run = np.array([True, True, True, False])
    assert in_time_order(batches, "", this_run).index.tolist() == [3, 0, 2, 1]
