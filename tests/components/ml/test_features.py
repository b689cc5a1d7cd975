"""Features: the transforms fitted inside every model."""

import numpy as np

from components.ml.features import build_feature_transformer
from tests.helpers import make_rows

KINDS = {"x1": "numeric", "x2": "numeric", "color": "categorical"}


def test_transformer_imputes_scales_and_encodes():
    """Check that missing values are imputed, numbers scaled and unseen categories ignored."""
    frame = make_rows(50)
    frame.loc[0, "x1"] = np.nan
    frame.loc[1, "color"] = None
    transformer = build_feature_transformer(KINDS)
    out = transformer.fit_transform(frame)
    assert out.shape == (50, 5)
    assert not np.isnan(out).any()
    assert abs(out[:, 0].mean()) < 1e-9
    unseen = make_rows(1)
    unseen.loc[0, "color"] = "purple"
    assert transformer.transform(unseen)[0, 2:].sum() == 0
