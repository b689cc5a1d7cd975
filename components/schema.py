"""Column roles and types shared by validate, preprocess, retrain and evaluate.

A feature is either ``numeric`` or ``categorical``. The champion's kinds are recorded in its
metadata; without a champion they are inferred from the data, where a column counts as numeric
when almost all of its values parse as numbers (so a few typos are reported, not silently turned
into categories).
"""

from __future__ import annotations

import pandas as pd

# Ingest adds this column so later stages can name the file a bad value came from.
SOURCE_FILE_COLUMN = "__source_file__"
NUMERIC = "numeric"
CATEGORICAL = "categorical"
# Share of non-empty values that must parse as numbers for a column to be inferred numeric.
NUMERIC_INFERENCE_SHARE = 0.95


def feature_columns(frame: pd.DataFrame, label_column: str, timestamp_column: str) -> list[str]:
    """Every column except the label, the timestamp and the provenance column, in frame order."""
    reserved = {label_column, timestamp_column, SOURCE_FILE_COLUMN}
    return [column for column in frame.columns if column not in reserved]


def parse_numbers(values: pd.Series) -> pd.Series:
    """Parse values as floats; anything that is not a number becomes NaN."""
    if pd.api.types.is_bool_dtype(values):
        return values.astype(float)
    if pd.api.types.is_numeric_dtype(values):
        return values.astype(float)
    return pd.to_numeric(values.astype("object").map(_strip), errors="coerce").astype(float)


def _strip(value: object) -> object:
    return value.strip() if isinstance(value, str) else value


def infer_kind(values: pd.Series) -> str:
    """``numeric`` when nearly every non-empty value parses as a number, else ``categorical``."""
    present = values.dropna()
    if pd.api.types.is_bool_dtype(values):
        return CATEGORICAL
    if pd.api.types.is_numeric_dtype(values):
        return NUMERIC
    if present.empty:
        return NUMERIC
    parsed_share = parse_numbers(present).notna().mean()
    return NUMERIC if parsed_share >= NUMERIC_INFERENCE_SHARE else CATEGORICAL


def infer_feature_kinds(
    frame: pd.DataFrame, label_column: str, timestamp_column: str
) -> dict[str, str]:
    """Map each feature column of ``frame`` to ``numeric`` or ``categorical``."""
    return {
        column: infer_kind(frame[column])
        for column in feature_columns(frame, label_column, timestamp_column)
    }


def coerce_features(frame: pd.DataFrame, feature_kinds: dict[str, str]) -> pd.DataFrame:
    """Return a copy whose numeric features are floats and categorical ones strings (NaN kept)."""
    coerced = frame.copy()
    for column, kind in feature_kinds.items():
        if column not in coerced:
            continue
        if kind == NUMERIC:
            coerced[column] = parse_numbers(coerced[column])
        else:
            coerced[column] = as_category_strings(coerced[column])
    return coerced


def as_category_strings(values: pd.Series) -> pd.Series:
    """Categorical values as Python strings, missing values as NaN (one dtype for Parquet)."""
    return values.astype("object").map(lambda v: v if pd.isna(v) else str(v)).astype("object")
