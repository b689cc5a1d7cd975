"""The prediction plan: exactly the model's probabilities, or not used at all."""

import numpy as np
import pandas as pd
import pytest

from components.ml.estimators import new_estimator
from components.ml.features import build_feature_transformer
from components.serving.plan import compile_plan
from tests.helpers import make_rows

KIND_SETS = {"both": {"x1": "numeric", "x2": "numeric", "color": "categorical"},
             "numeric": {"x1": "numeric", "x2": "numeric"}, "categorical": {"color": "categorical"}}


def _model(kinds, model_type, labels=(0, 1)):
    from sklearn.pipeline import Pipeline

    frame = make_rows(400, seed=3, labels=labels)
    frame.loc[::17, "x1"] = np.nan
    frame.loc[::13, "color"] = np.nan
    model = Pipeline([("features", build_feature_transformer(kinds)),
                      ("classifier", new_estimator(model_type, task="classification", feature_kinds={}))])
    return model.fit(frame[list(kinds)], frame["label"])


@pytest.mark.parametrize("labels", [(0, 1), ("low", "mid", "high")], ids=["binary", "3-class"])
@pytest.mark.parametrize("kinds", KIND_SETS, ids=list(KIND_SETS))
@pytest.mark.parametrize("model_type", ["hgb", "sgd"])
def test_the_plan_gives_the_models_own_probabilities(model_type, kinds, labels):
    """Check, on fresh rows with missing values and unseen categories, bit-identical
    probabilities to the model's own."""
    kinds = KIND_SETS[kinds]
    model = _model(kinds, model_type, labels)
    plan = compile_plan(model, kinds)
    assert plan is not None
    rows = make_rows(300, seed=8)
    rows.loc[::4, "x2"] = np.nan
    rows.loc[1::6, "color"] = "ultraviolet"
    rows.loc[2::6, "color"] = np.nan
    columns = {c: [None if isinstance(v, float) and np.isnan(v) else v for v in rows[c]]
               for c in kinds}
    frame = pd.DataFrame({c: rows[c].astype(float) if k == "numeric" else rows[c].astype(object)
                          for c, k in kinds.items()})
    assert np.array_equal(plan.output(columns), model.predict_proba(frame))


def test_a_model_of_another_shape_gets_no_plan():
    """Check that a transform the plan does not know (an imputer adding indicators) is served
    through scikit-learn, not approximated."""
    model = _model(KIND_SETS["numeric"], "hgb")
    model.named_steps["features"].transformers_[0][1].steps[0][1].add_indicator = True
    assert compile_plan(model, KIND_SETS["numeric"]) is None
