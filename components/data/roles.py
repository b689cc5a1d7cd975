"""Which rows are evaluation-only, and when a run needs any.

Below :data:`CROSS_FIT_LIMIT` new rows and :data:`REFIT_LIMIT` rows to fit on, retrain answers
every new row by a fit that did not see it (cross-fitting), so the gate has honest evidence on
all of them and the model deployed learns from all of them: such a run holds no row out. A
larger run holds out its holdout rows: those whose 64-bit hash of their values (features, label
and event time, as the schema reads them), mixed with a hash of the model's name, falls in the
lowest ``holdout_fraction`` of the range. The same row gets the same role whichever file it is
read from, so a rejected run's rows are held out alike next month; another model name draws
another set. A promoted run's holdout rows join the rolling holdout in the registry, and no
version trains on a row while it is there: those are the earlier rows later gates judge on.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from components.data.chunks import row_hashes

_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)
# A rolling-holdout row's mark: the version whose promotion it judged (a champion is never judged
# on the rows that chose it). Deploy sets it; evaluate reads it.
PROMOTED_VERSION_COLUMN = "__promoted_version"

# Above this many new rows cross-fitting (three more fits) is not worth its time: the run holds
# out a holdout_fraction of them, which at the default 0.2 is max_evaluation_rows (5,000) rows.
CROSS_FIT_LIMIT = 20_000
# Below this many rows to fit on, the chosen candidate is refitted with the selection rows and
# cross-fitted; above it each fit is costly enough that the run holds out rows instead.
REFIT_LIMIT = 100_000


def cross_fittable(new_rows: int, fit_rows: int) -> bool:
    """Whether a run with ``new_rows`` new rows (training and selection rows), whose fits learn
    from at most ``fit_rows`` rows, is small enough to be cross-fitted: then it needs no
    holdout rows."""
    return new_rows <= CROSS_FIT_LIMIT and fit_rows < REFIT_LIMIT


def model_salt(model_name: str) -> np.uint64:
    """A 64-bit number of the model's name."""
    return np.uint64(int.from_bytes(hashlib.sha256(model_name.encode()).digest()[:8], "big"))


def _mix(values: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads every input bit over the output (so the low hashes of
    similar rows do not fall together)."""
    with np.errstate(over="ignore"):
        z = values + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def role_columns(frame_columns, feature_kinds: dict[str, str], label_column: str,
                 timestamp_column: str) -> list[str]:
    """The columns a row's role is drawn from, in a fixed order: what the schema reads (extra
    columns come and go between files, and must not change a row's role)."""
    wanted = sorted(feature_kinds) + [label_column] + ([timestamp_column] if timestamp_column
                                                       else [])
    return [column for column in wanted if column in frame_columns]


def holdout_mask(frame: pd.DataFrame, columns: list[str], salt: np.uint64,
                 holdout_fraction: float) -> np.ndarray:
    """True for the rows of ``frame`` (coerced as the schema reads them) that are holdout."""
    if not len(frame):
        return np.zeros(0, dtype=bool)
    mixed = _mix(row_hashes(frame, columns) ^ salt)
    return (mixed >> np.uint64(11)).astype(np.float64) / float(1 << 53) < holdout_fraction


def content_hashes(frame: pd.DataFrame, feature_kinds: dict[str, str], label_column: str,
                   timestamp_column: str) -> np.ndarray:
    """A hash of each row's content as the schema reads it: the same row, the same hash, in
    whichever frame (and with whichever extra columns) it is met."""
    columns = role_columns(frame.columns, feature_kinds, label_column, timestamp_column)
    if not len(frame):
        return np.zeros(0, dtype=np.uint64)
    return row_hashes(frame, columns)
