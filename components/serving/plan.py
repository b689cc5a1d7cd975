"""A prediction plan: the fitted feature transforms of a model as a few numpy operations.

scikit-learn's ``ColumnTransformer`` spends about 4.5 ms on one row of a DataFrame (column
selection, validation, a sub-frame per transformer), five times what the 100 trees of the
estimator take. The pipelines this project builds are always the same shape (numeric: median
imputation, then standard scaling; categorical: most-frequent imputation, then one-hot encoding
that ignores unknown categories; everything else dropped), so their fitted parameters are
applied here directly, with the same floating-point operations in the same order, and the
result goes to the fitted estimator (classifier or regressor) as scikit-learn would pass it.

A plan is only used after it has given exactly (bit for bit) the same probabilities as the
model itself on probe rows that include missing values and unseen categories; any other shape of
model, or any difference, and the model is served through scikit-learn as it is.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

logger = logging.getLogger("retrain.serve")


class PredictionPlan:
    """The model's transforms as numpy operations, then its estimator."""

    def __init__(self, numeric: list[str], medians, means, scales, categorical: list[str],
                 most_frequent, categories, estimator):
        self.numeric, self.categorical = numeric, categorical
        self.medians, self.means, self.scales = medians, means, scales
        self.most_frequent = most_frequent
        self.lookups = [{value: index for index, value in enumerate(values)}
                        for values in categories]
        self.widths = [len(values) for values in categories]
        self.estimator = estimator

    def features(self, columns: dict[str, list]) -> np.ndarray:
        rows = len(columns[(self.numeric or self.categorical)[0]])
        blocks = []
        if self.numeric:
            X = np.array([[np.nan if v is None else v for v in columns[c]] for c in self.numeric],
                         dtype=float).T
            missing = np.isnan(X)
            if missing.any():
                X[missing] = np.broadcast_to(self.medians, X.shape)[missing]
            X -= self.means
            X /= self.scales
            blocks.append(X)
        if self.categorical:
            encoded = np.zeros((rows, sum(self.widths)))
            offset = 0
            for column, lookup, default, width in zip(self.categorical, self.lookups,
                                                      self.most_frequent, self.widths,
                                                      strict=True):
                for row, value in enumerate(columns[column]):
                    missing = value is None or (isinstance(value, float) and np.isnan(value))
                    index = lookup.get(default if missing else str(value))
                    if index is not None:
                        encoded[row, offset + index] = 1.0
                offset += width
            blocks.append(encoded)
        return blocks[0] if len(blocks) == 1 else np.hstack(blocks)

    def output(self, columns: dict[str, list]) -> np.ndarray:
        """What the model answers (:func:`components.ml.metrics.model_output`): a classifier's
        probabilities, a regressor's predictions."""
        from components.ml.metrics import model_output

        return model_output(self.estimator, self.features(columns))


def compile_plan(model, feature_kinds: dict[str, str]) -> PredictionPlan | None:
    """The plan of a model built by this project, checked against the model; else None."""
    try:
        plan = _plan(model)
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
    if plan is None or not _agrees(plan, model, feature_kinds):
        return None
    return plan


def _plan(model) -> PredictionPlan | None:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    from components.ml.models import feature_step, final_step

    transformer, estimator = feature_step(model), final_step(model)
    if not isinstance(transformer, ColumnTransformer) or transformer.sparse_output_:
        return None
    numeric = categorical = None
    parts = {}
    for name, pipeline, columns in transformer.transformers_:
        if name == "remainder":
            if pipeline != "drop":
                return None
            continue
        steps = [step for _, step in pipeline.steps]
        if name == "numeric" and len(steps) == 2 and isinstance(steps[0], SimpleImputer) \
                and isinstance(steps[1], StandardScaler) and steps[0].strategy == "median" \
                and not steps[0].add_indicator and steps[1].with_mean and steps[1].with_std:
            numeric = list(columns)
            parts["numeric"] = (steps[0].statistics_, steps[1].mean_, steps[1].scale_)
        elif name == "categorical" and len(steps) == 2 and isinstance(steps[0], SimpleImputer) \
                and isinstance(steps[1], OneHotEncoder) and steps[0].strategy == "most_frequent" \
                and not steps[0].add_indicator and steps[1].handle_unknown == "ignore" \
                and steps[1].drop is None and steps[1].dtype in (np.float64, float) \
                and steps[1].min_frequency is None and steps[1].max_categories is None:
            categorical = list(columns)
            parts["categorical"] = (steps[0].statistics_, steps[1].categories_)
        else:
            return None
    medians, means, scales = parts.get("numeric", (None, None, None))
    most_frequent, categories = parts.get("categorical", ([], []))
    return PredictionPlan(numeric or [], medians, means, scales, categorical or [],
                          [str(v) for v in most_frequent],
                          [[str(v) for v in values] for values in categories], estimator)


def _agrees(plan: PredictionPlan, model, feature_kinds: dict[str, str]) -> bool:
    """Whether the plan gives bit-identical probabilities on probe rows: each numeric feature
    around its mean and missing, each category, an unseen one, and a missing one."""
    rng = np.random.default_rng(0)
    rows = 64
    columns = {}
    for index, column in enumerate(plan.numeric):
        values = plan.means[index] + plan.scales[index] * rng.normal(size=rows) * 2
        columns[column] = [None if i % 7 == 0 else float(v) for i, v in enumerate(values)]
    for column, lookup in zip(plan.categorical, plan.lookups, strict=True):
        known = list(lookup) or ["?"]
        columns[column] = [None if i % 5 == 0 else "never-seen" if i % 11 == 0 else
                           known[i % len(known)] for i in range(rows)]
    if set(columns) != set(feature_kinds):
        return False
    frame = pd.DataFrame({c: (np.array([np.nan if v is None else v for v in values], dtype=float)
                              if c in plan.numeric else
                              pd.Series([np.nan if v is None else v for v in values],
                                        dtype=object))
                          for c, values in columns.items()})
    from components.ml.metrics import model_output

    same = np.array_equal(plan.output(columns), model_output(model, frame))
    if not same:
        logger.warning("the prediction plan differs from the model: serving through "
                       "scikit-learn as it is")
    return same
