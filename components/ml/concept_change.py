"""Where a model's world changed: the batch boundary after which its rows tell another story.

Used by evaluate, to judge on the rows after a change, and by retrain, to add a candidate fitted
only on them. Batches are :func:`components.data.drift.batch_names`' (a file, or a file's
calendar month). A version keeps how it did on the rows its promotion was judged on
(:func:`judged_columns`: its honest answers, cross-fitted or held out), so a later run can tell
a change in its world at the very first of the rows it has not seen.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from components.data.drift import batch_names

# How a version did on each row its promotion was judged on (the registry's judged_rows.parquet).
JUDGED_RIGHT = "__right"  # a classifier's: whether its answer was the label
JUDGED_ERROR = "__error"  # a regressor's: its prediction minus the label


def judged_columns(frame: pd.DataFrame, predictions, timestamp_column: str) -> dict:
    """The columns a version's judged rows keep: when each row arrived (its file, and event
    time), and how the version did on it."""
    from components.data.schema import SOURCE_FILE_COLUMN

    when = {column: frame[column].to_numpy() for column in (SOURCE_FILE_COLUMN, timestamp_column)
            if column and column in frame}
    if predictions.regression:
        return {**when, JUDGED_ERROR: predictions.errors()}
    return {**when, JUDGED_RIGHT: predictions.right()}


def champion_right(unseen_answers, judged: pd.DataFrame | None) -> tuple[np.ndarray, np.ndarray]:
    """Whether the champion was right on each of its judged rows, then on each row it has not
    seen (``unseen_answers``: its predictions there). A regressor is right within its median
    absolute error over all of them (as :func:`components.ml.metrics.right_answers` has it)."""
    if not unseen_answers.regression:
        known = (judged[JUDGED_RIGHT].to_numpy(dtype=bool) if judged is not None
                 else np.zeros(0, dtype=bool))
        return known, unseen_answers.right()
    known = judged[JUDGED_ERROR].to_numpy(dtype=float) if judged is not None else np.zeros(0)
    errors = unseen_answers.errors()
    tolerance = float(np.median(np.abs(np.concatenate([known, errors])))) if len(errors) else 0.0
    return np.abs(known) <= tolerance, np.abs(errors) <= tolerance


def batch_starts(frame: pd.DataFrame, timestamp_column: str) -> tuple[list, list[int]]:
    names = batch_names(frame, timestamp_column)
    return names, [i for i in range(1, len(names)) if names[i] != names[i - 1]]


def batch_rows(rows, timestamp_column: str) -> dict[str, int]:
    """How many of ``rows`` (a frame or a Table, read a chunk at a time, only the columns that
    name a batch) each batch holds."""
    from components.data.chunks import as_table
    from components.data.schema import SOURCE_FILE_COLUMN

    counts: dict[str, int] = {}
    naming = [column for column in (SOURCE_FILE_COLUMN, timestamp_column) if column]
    for chunk in as_table(rows).chunks(columns=naming):
        names, sizes = np.unique(batch_names(chunk, timestamp_column).astype(str),
                                 return_counts=True)
        for name, size in zip(names.tolist(), sizes.tolist(), strict=True):
            counts[name] = counts.get(name, 0) + size
    return dict(sorted(counts.items()))


def learned_every_row_of(batches: dict[str, int], champion_batches: dict[str, int]) -> bool:
    """Whether a model that learned ``batches`` (:func:`batch_rows` of its training rows)
    learned every row its champion did: at least as many rows of each of the champion's
    batches. A strategy takes every row of a batch it uses (less the rolling holdout's, which no
    version learns from), so counts tell; unknown (empty) champion batches never do."""
    return bool(champion_batches) and all(batches.get(name, 0) >= rows
                                          for name, rows in champion_batches.items())


def _two_by_two(newer_yes: int, newer_no: int, older_yes: int, older_no: int) -> float:
    from scipy.stats import fisher_exact

    if min(newer_yes + newer_no, older_yes + older_no) == 0:
        return 1.0
    return float(fisher_exact([[newer_yes, newer_no], [older_yes, older_no]]).pvalue)


def since_concept_change(frame: pd.DataFrame, champion_right: np.ndarray,
                         challenger_right: np.ndarray, *, confidence: float,
                         timestamp_column: str) -> tuple[int, str]:
    """Where the rows worth judging on start: after the batch boundary at which the older rows
    tell the most different story from the newer ones, if that difference is significant, and
    the note that says so (0 and "" when no boundary's is).

    Two stories, each by Fisher's exact test on all the rows before a boundary against all the
    rows after it (so a change spread over several batches, too small between any two, is still
    found): the rate at which the champion is right (its world changed), and, among the rows where
    exactly one model is right, the share where it is the challenger (the comparison itself
    changed: e.g. a champion trained on both worlds is as right before as after, while a
    challenger trained on the new one is not). The gate's level is shared among the tests
    (Bonferroni), so a stable stream loses its older rows in at most that share of runs."""
    names, boundaries = batch_starts(frame, timestamp_column)
    if not boundaries:
        return 0, ""
    tests = 2 * len(boundaries)
    only_challenger = challenger_right & ~champion_right
    only_champion = champion_right & ~challenger_right

    def counts(story: str, end: int) -> list[int]:
        """After the boundary (yes, no), then before it (yes, no)."""
        if story == "champion":
            yes, no = champion_right, ~champion_right
        else:
            yes, no = only_challenger, only_champion
        return [int(yes[end:].sum()), int(no[end:].sum()), int(yes[:end].sum()),
                int(no[:end].sum())]

    p_value, end, story = min(((_two_by_two(*counts(story, end)), end, story)
                               for end in boundaries for story in ("champion", "comparison")),
                              key=lambda found: (found[0], -found[1]))
    if p_value >= (1 - confidence) / tests:
        return 0, ""
    newer_yes, newer_no, older_yes, older_no = counts(story, end)
    if story == "champion":
        said = (f"the champion is right on {newer_yes / (newer_yes + newer_no):.3f} of the "
                f"{newer_yes + newer_no} rows from {names[end]} on and on "
                f"{older_yes / (older_yes + older_no):.3f} of the {older_yes + older_no} "
                f"older rows")
    else:
        said = (f"of the rows where one model alone is right, the challenger is on {newer_yes} "
                f"of {newer_yes + newer_no} from {names[end]} on and on {older_yes} of "
                f"{older_yes + older_no} of the {end} older rows")
    return end, (f"concept change: {said} (Fisher's exact test p={p_value:.2g}, below "
                 f"{1 - confidence:g} over {tests} tests)")


def in_time_order(frame: pd.DataFrame, timestamp_column: str, this_run: np.ndarray) -> pd.DataFrame:
    """``frame``'s rows oldest first: by event time (rows without one last, as pandas sorts
    them), or in batch mode earlier runs' rows (``this_run`` False) first, then this run's in
    the order its files came in. Rows that tie keep their order."""
    from components.data.schema import SOURCE_FILE_COLUMN

    if timestamp_column and timestamp_column in frame:
        # As nanoseconds since the epoch: a tz-aware column's own array holds Timestamp
        # objects, which sort 60 times slower (12 s for 2M rows) and leave NaT anywhere.
        stamps = pd.to_datetime(frame[timestamp_column], utc=True).dt.tz_convert(None)
        key = stamps.to_numpy("datetime64[ns]").view(np.int64).copy()
        key[stamps.isna().to_numpy()] = np.iinfo(np.int64).max
    else:
        files = (pd.factorize(frame[SOURCE_FILE_COLUMN])[0] if SOURCE_FILE_COLUMN in frame
                 else np.zeros(len(frame), dtype=int))
        key = np.asarray(this_run, dtype=int) * (1 + len(frame)) + files
    return frame.iloc[np.argsort(key, kind="stable")]
