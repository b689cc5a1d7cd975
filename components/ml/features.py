"""The features a model reads: which columns, and the transforms fitted inside the model.

The column transforms (imputation, scaling, one-hot encoding) are fitted inside the saved model,
so serving applies exactly what training learned.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from components.data.schema import CATEGORICAL, NUMERIC, SOURCE_FILE_COLUMN


def split_features(frame: pd.DataFrame, label_column: str) -> tuple[pd.DataFrame, pd.Series]:
    """Features (everything but the label and provenance) and labels of a frame."""
    features = frame.drop(columns=[label_column, SOURCE_FILE_COLUMN], errors="ignore")
    return features, frame[label_column]


def features_and_labels(frame: pd.DataFrame, label_column: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Features as a frame and labels as a numpy array, as scikit-learn's ``fit`` takes them."""
    features, labels = split_features(frame, label_column)
    return features, labels.to_numpy()


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
