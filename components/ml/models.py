"""The models this project trains, and the one way a model file is written and read.

Every model is one scikit-learn ``Pipeline(features -> classifier)``. ``hgb`` is a
HistGradientBoostingClassifier, ``sgd`` a logistic-loss SGDClassifier trained epoch by epoch with
``partial_fit``. Every model file is saved by :func:`model_bytes` and loaded by
:func:`load_model_bytes`, so the file format is decided here and nowhere else.
"""

from __future__ import annotations

import io
from pathlib import Path

HGB_ITERATIONS = 100
HGB_FINETUNE_ITERATIONS = 30
HGB_LEARNING_RATE = 0.1
SGD_ALPHA = 1e-4
RANDOM_STATE = 0


def new_classifier(model_type: str):
    """An unfitted classifier of the given type with this project's fixed settings."""
    if model_type == "hgb":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(
            max_iter=HGB_ITERATIONS, learning_rate=HGB_LEARNING_RATE, early_stopping=False,
            random_state=RANDOM_STATE)
    from sklearn.linear_model import SGDClassifier

    return SGDClassifier(loss="log_loss", alpha=SGD_ALPHA, random_state=RANDOM_STATE)


def model_type_of(model) -> str:
    """``hgb`` or ``sgd`` for a Pipeline built here."""
    name = type(model.named_steps["classifier"]).__name__
    return "hgb" if name.startswith("HistGradientBoosting") else "sgd"


def model_bytes(model) -> bytes:
    """The bytes of a model file."""
    import joblib

    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue()


def load_model_bytes(data: bytes, source: str):
    """The model in a model file's bytes; ``source`` names the file in errors."""
    import joblib

    return joblib.load(io.BytesIO(data))


def save_model(model, path: str | Path) -> None:
    """Write a model file."""
    Path(path).write_bytes(model_bytes(model))


def load_model(path: str | Path):
    """Read a model file."""
    return load_model_bytes(Path(path).read_bytes(), str(path))
