"""Stage 3, preprocess: clean the rows and split off the shared validation set by time.

Cleaning here is row-level (types, duplicates, rows without a label). The column transforms
(imputation, scaling, one-hot encoding) are built by :func:`build_feature_transformer` and fitted
inside the saved model, so serving applies exactly what training learned.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from components.schema import (
    CATEGORICAL,
    NUMERIC,
    SOURCE_FILE_COLUMN,
    coerce_features,
)


@dataclass
class PreprocessResult:
    """Training rows from the new data, the held-out validation rows, and cleaned history."""

    train: pd.DataFrame
    validation: pd.DataFrame
    history: pd.DataFrame
    dropped_duplicates: int
    dropped_unlabelled: int


def clean(
    frame: pd.DataFrame, *, label_column: str, feature_kinds: dict[str, str]
) -> tuple[pd.DataFrame, int, int]:
    """Coerce types, drop exact duplicates and rows without a label.

    Returns:
        The cleaned frame, the number of duplicates dropped and of unlabelled rows dropped.
    """
    if frame.empty:
        return frame, 0, 0
    cleaned = coerce_features(frame, feature_kinds)
    unlabelled = cleaned[label_column].isna()
    cleaned = cleaned[~unlabelled]
    content = [c for c in cleaned.columns if c != SOURCE_FILE_COLUMN]
    duplicated = cleaned.duplicated(subset=content)
    cleaned = cleaned[~duplicated].reset_index(drop=True)
    return cleaned, int(duplicated.sum()), int(unlabelled.sum())


def split_by_time(
    frame: pd.DataFrame, *, timestamp_column: str, validation_fraction: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The newest ``validation_fraction`` of rows is validation, the rest training.

    Rows are ordered by timestamp, or in batch mode by file name and row order, so validation is
    always the most recent data: the rows the next months will look most like.
    """
    if timestamp_column:
        ordered = frame.sort_values(timestamp_column, kind="stable", ignore_index=True)
    else:
        ordered = frame.sort_values(SOURCE_FILE_COLUMN, kind="stable", ignore_index=True)
    n_validation = max(1, round(len(ordered) * validation_fraction))
    if n_validation >= len(ordered):
        raise ValueError(
            f"validation_fraction={validation_fraction} leaves no training rows out of "
            f"{len(ordered)} new rows"
        )
    cut = len(ordered) - n_validation
    return ordered.iloc[:cut].reset_index(drop=True), ordered.iloc[cut:].reset_index(drop=True)


def preprocess(
    new_data: pd.DataFrame,
    history: pd.DataFrame,
    *,
    label_column: str,
    timestamp_column: str,
    feature_kinds: dict[str, str],
    validation_fraction: float,
) -> PreprocessResult:
    """Clean new rows and history alike, then split the new rows into train and validation."""
    new_clean, duplicates, unlabelled = clean(
        new_data, label_column=label_column, feature_kinds=feature_kinds)
    history_clean, _, _ = clean(history, label_column=label_column, feature_kinds=feature_kinds)
    train, validation = split_by_time(
        new_clean, timestamp_column=timestamp_column, validation_fraction=validation_fraction)
    return PreprocessResult(train, validation, history_clean, duplicates, unlabelled)


def build_feature_transformer(feature_kinds: dict[str, str]):
    """Impute (median / most frequent), scale numeric features, one-hot encode categorical ones."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    numeric = [c for c, kind in feature_kinds.items() if kind == NUMERIC]
    categorical = [c for c, kind in feature_kinds.items() if kind == CATEGORICAL]
    transformers = []
    if numeric:
        transformers.append((
            "numeric",
            make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True),
                          StandardScaler()),
            numeric,
        ))
    if categorical:
        transformers.append((
            "categorical",
            make_pipeline(
                SimpleImputer(strategy="most_frequent", keep_empty_features=True),
                OneHotEncoder(handle_unknown="ignore", sparse_output=False),
            ),
            categorical,
        ))
    return ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False)
