"""Evaluate's choice of rows: the newest holdout rows, cut where the champion's world changed."""

import numpy as np
import pandas as pd

from components.data.schema import SOURCE_FILE_COLUMN
from components.stages.evaluate import (
    NEW_ROW,
    candidate_rows,
    newest_batches,
    since_concept_change,
)


def _months(*sizes):
    """Rows of consecutive calendar months, ``sizes[i]`` rows in month i (one file)."""
    frames = [pd.DataFrame({"event_time": pd.date_range(f"2025-{i + 1:02d}-02", periods=n,
                                                        freq="h", tz="UTC"),
                            SOURCE_FILE_COLUMN: "export.csv"}) for i, n in enumerate(sizes)]
    return pd.concat(frames, ignore_index=True)


def test_a_batch_where_the_champion_was_far_better_is_where_the_rows_stop():
    """Check the walk back: three months where the champion is right 90% of the time, then two
    where it is right half the time: the rows start at the fourth month, and the note says why."""
    frame = _months(60, 60, 60, 40, 40)
    right = np.concatenate([np.arange(180) % 10 != 0, np.arange(80) % 2 == 0])
    start, note = since_concept_change(frame, right, right, confidence=0.95,
                                       timestamp_column="event_time")
    assert start == 180
    assert note.startswith("concept change: the champion is right on 0.500 of the 80 rows from "
                           "export.csv 2025-04 on and on 0.900 of the 180 older rows (Fisher's "
                           "exact test p=")
    assert "below 0.05 over 8 tests" in note


def test_a_slow_change_no_two_months_show_is_still_found():
    """Check a gradual decay, 90% right falling by 6 points a month: no month differs
    significantly from the one before it, but the newest rows differ from all the older ones."""
    from scipy.stats import fisher_exact

    rates = [0.9, 0.84, 0.78, 0.72, 0.66, 0.60]
    frame = _months(*[50] * len(rates))
    right = np.concatenate([np.arange(50) < round(rate * 50) for rate in rates])
    for before, after in zip(rates, rates[1:], strict=False):
        table = [[round(after * 50), 50 - round(after * 50)],
                 [round(before * 50), 50 - round(before * 50)]]
        assert fisher_exact(table).pvalue > 0.3
    start, note = since_concept_change(frame, right, right, confidence=0.95,
                                       timestamp_column="event_time")
    assert 0 < start < 300
    assert "concept change" in note


def test_a_champion_as_right_before_as_after_is_cut_when_the_comparison_flips():
    """Check the second story: the champion is right on 70% of every month, but where one model
    alone is right, the older months side with the champion and the newer with the challenger
    (a champion trained on both worlds against one trained on the new): cut at the flip."""
    frame = _months(100, 100, 100, 100)
    months = np.repeat(np.arange(4), 100)
    champion_right = (np.arange(400) % 10) < 7
    position = np.arange(400) % 10
    challenger_right = np.where(months < 2, position < 5, position < 9)
    start, note = since_concept_change(frame, champion_right, challenger_right, confidence=0.95,
                                       timestamp_column="event_time")
    assert start == 200
    assert "the challenger is on 40 of 40 from export.csv 2025-03 on and on 0 of 40" in note


def test_batches_that_agree_are_all_kept():
    """Check that the same rate of right answers in every month cuts nothing."""
    frame = _months(50, 50, 50, 50)
    right = np.arange(200) % 5 != 0
    assert since_concept_change(frame, right, ~right, confidence=0.95,
                                timestamp_column="event_time") == (0, "")


def test_the_rows_reach_back_whole_batches_until_min_rows():
    """Check that the newest whole months are taken until there are min_rows of them, not more,
    and never from before a cut."""
    frame = _months(40, 40, 40, 40, 40)
    assert newest_batches(frame, start=0, min_rows=100, timestamp_column="event_time") == 80
    assert newest_batches(frame, start=0, min_rows=120, timestamp_column="event_time") == 80
    assert newest_batches(frame, start=0, min_rows=121, timestamp_column="event_time") == 40
    assert newest_batches(frame, start=120, min_rows=300, timestamp_column="event_time") == 120
    assert newest_batches(frame, start=0, min_rows=30, timestamp_column="event_time") == 160


def test_candidates_are_the_newest_rows_of_both_sources_oldest_first():
    """Check that the rolling holdout and this run's holdout rows merge by event time and that
    only the newest max_rows are kept."""
    pool, new = _months(30, 30), _months(0, 0, 20)
    frame = candidate_rows(new, pool, max_rows=50, timestamp_column="event_time")
    assert len(frame) == 50
    assert frame["event_time"].is_monotonic_increasing
    assert int(frame[NEW_ROW].sum()) == 20
    assert not frame[NEW_ROW].iloc[:30].any()
