"""A team's own estimator for kfp-retrain: LightGBM's classifier and regressor.

Installed in an image built on kfp-retrain's (``Dockerfile`` beside this package), it is named
by its import path::

    retrain run ... --model-type lightgbm_model:make_model --model-config '{"num_leaves": 15}'

What kfp-retrain reads of this module: the factory, the types its fitted models are made of
(``TRUSTED_TYPES``: model files are skops files, and loading trusts kfp-retrain's pinned list plus
these), and ``continue_fit`` (how a fitted model continues on new rows: LightGBM grows more trees
on top of its booster, which neither ``partial_fit`` nor ``warm_start`` offers).
"""

from __future__ import annotations

# The types a fitted LGBMClassifier or LGBMRegressor is made of in a skops file.
TRUSTED_TYPES = (
    "collections.OrderedDict",
    "collections.defaultdict",
    "lightgbm.basic.Booster",
    "lightgbm.sklearn.LGBMClassifier",
    "lightgbm.sklearn.LGBMRegressor",
    "numpy.int64",  # a classifier's class labels, as numpy keeps them
)
# Trees a fine-tune adds on the new rows.
FINETUNE_ESTIMATORS = 30


def make_model(*, task: str, feature_kinds: dict[str, str], n_estimators: int = 100,
               learning_rate: float = 0.1, num_leaves: int = 31, **options):
    """An unfitted LightGBM estimator for ``task`` (``classification`` or ``regression``).

    ``feature_kinds`` (column -> ``numeric`` or ``categorical``) is not needed here: the
    pipeline's own feature transforms go in front (imputation, scaling, one-hot encoding).
    ``options`` are any other LightGBM keyword arguments (``model_config``).
    """
    from lightgbm import LGBMClassifier, LGBMRegressor

    kind = LGBMRegressor if task == "regression" else LGBMClassifier
    return kind(n_estimators=n_estimators, learning_rate=learning_rate, num_leaves=num_leaves,
                verbose=-1, **options)


def continue_fit(estimator, X, y, *, task: str):
    """The fitted ``estimator`` continued on ``X, y``: :data:`FINETUNE_ESTIMATORS` more trees
    fitted on top of its booster (LightGBM's ``init_model``); returns the continued model."""
    from lightgbm import Booster
    from sklearn.base import clone

    continued = clone(estimator).set_params(n_estimators=FINETUNE_ESTIMATORS)
    continued.fit(X, y, init_model=estimator.booster_)
    # The continued booster keeps a predictor of the one it started from, a type a model file
    # need not name: the same trees, read back from their text, without it.
    continued._Booster = Booster(model_str=continued.booster_.model_to_string())
    return continued
