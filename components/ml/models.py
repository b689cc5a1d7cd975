"""The models this project trains, and the one way a model file is written and read.

Every model is one scikit-learn ``Pipeline(features -> classifier)``. ``hgb`` is a
HistGradientBoostingClassifier, ``sgd`` a logistic-loss SGDClassifier trained epoch by epoch with
``partial_fit``. A binary model with a decision threshold other than argmax has its classifier
wrapped in a ``FixedThresholdClassifier`` around the fitted (frozen) one, so the threshold is in
the model file and whoever loads it applies it.

A model file is a ``skops`` file (``model.skops``), never a pickle: loading a pickle runs whatever
code it names, and anyone who can write the registry could plant one (a SHA-256 in
``metadata.json`` does not help: the same writer can update it). A skops file is a zip of a JSON
tree and ``.npy`` arrays; :func:`load_model_bytes` reads the tree first and refuses any type that
is not in :data:`TRUSTED_TYPES` (every type our pipelines' models are made of, pinned here), and
refuses a model saved by another scikit-learn major.minor version. Nothing else in the project
serialises or loads a model.
"""

from __future__ import annotations

import io
import json
import platform
import zipfile
from pathlib import Path

import numpy as np

HGB_ITERATIONS = 100
HGB_FINETUNE_ITERATIONS = 30
HGB_LEARNING_RATE = 0.1
SGD_ALPHA = 1e-4
RANDOM_STATE = 0
MODEL_FILE = "model.skops"
# What versions saved before model files were skops files hold (a pickle): never loaded.
LEGACY_MODEL_FILE = "model.joblib"

# Every type (and function) a model file may name: what the models built by this project are made
# of, for both model types, numeric and categorical features, binary and multiclass labels of
# numbers or strings, with and without a decision threshold. tests/components/ml/test_models.py
# fails when a model we build names a type outside it, so the list grows only by an explicit,
# reviewed change.
TRUSTED_TYPES = (
    "builtins.dict",
    "builtins.list",
    "builtins.slice",
    "builtins.str",
    "builtins.tuple",
    "numpy.dtype",
    "numpy.float64",
    "numpy.ndarray",
    "numpy.random._generator.Generator",
    "numpy.uint64",
    "sklearn._loss._loss.CyHalfBinomialLoss",
    "sklearn._loss._loss.CyHalfMultinomialLoss",
    "sklearn._loss.link.Interval",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.MultinomialLogit",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.loss.HalfMultinomialLoss",
    "sklearn.compose._column_transformer.ColumnTransformer",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.frozen._frozen.FrozenEstimator",
    "sklearn.impute._base.SimpleImputer",
    "sklearn.linear_model._stochastic_gradient.SGDClassifier",
    "sklearn.model_selection._classification_threshold.FixedThresholdClassifier",
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.StandardScaler",
    "sklearn.preprocessing._encoders.OneHotEncoder",
    "sklearn.preprocessing._label.LabelEncoder",
)
# The libraries whose versions a model file is saved with and checked against when loaded.
RECORDED_LIBRARIES = ("scikit-learn", "numpy", "scipy", "skops")


class ModelFileError(Exception):
    """A model file cannot be loaded: not a skops file, an untrusted type, or version skew."""


class UntrustedModelError(ModelFileError):
    """A model file names a type outside :data:`TRUSTED_TYPES`."""


class LibrarySkewError(ModelFileError):
    """A model file was saved by another scikit-learn major.minor version than this one."""


def new_classifier(model_type: str, random_state: int = RANDOM_STATE):
    """An unfitted classifier of the given type with this project's fixed settings."""
    if model_type == "hgb":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(
            max_iter=HGB_ITERATIONS, learning_rate=HGB_LEARNING_RATE, early_stopping=False,
            random_state=random_state)
    from sklearn.linear_model import SGDClassifier

    return SGDClassifier(loss="log_loss", alpha=SGD_ALPHA, random_state=random_state)


def base_classifier(model):
    """The fitted HistGradientBoosting or SGD classifier of a Pipeline built here, inside any
    threshold wrapper."""
    classifier = model.named_steps["classifier"]
    while hasattr(classifier, "estimator"):  # FixedThresholdClassifier, FrozenEstimator
        classifier = classifier.estimator
    return classifier


def model_type_of(model) -> str:
    """``hgb`` or ``sgd`` for a Pipeline built here."""
    name = type(base_classifier(model)).__name__
    return "hgb" if name.startswith("HistGradientBoosting") else "sgd"


def decision_threshold_of(model) -> float | None:
    """The probability of the second class from which it is predicted, when the model sets one
    (None: the most probable class is predicted)."""
    classifier = model.named_steps["classifier"]
    return float(classifier.threshold) if hasattr(classifier, "threshold") else None


def with_decision_threshold(model, threshold: float | None):
    """A copy of a fitted binary Pipeline predicting its second class from ``threshold`` on
    (None: plain argmax). The classifier is frozen inside the wrapper: nothing is refitted."""
    from sklearn.frozen import FrozenEstimator
    from sklearn.model_selection import FixedThresholdClassifier
    from sklearn.pipeline import Pipeline

    transformer, classifier = model.named_steps["features"], base_classifier(model)
    if threshold is None:
        return Pipeline([("features", transformer), ("classifier", classifier)])
    wrapped = FixedThresholdClassifier(FrozenEstimator(classifier), threshold=threshold,
                                       response_method="predict_proba")
    wrapped.fit(np.zeros((2, classifier.n_features_in_)), classifier.classes_)  # sets classes_
    return Pipeline([("features", transformer), ("classifier", wrapped)])


def predicted_classes(model, probabilities: np.ndarray) -> np.ndarray:
    """The classes a model predicts for these probabilities: the second class from its decision
    threshold on, else the most probable one (as ``model.predict`` would)."""
    classes = np.asarray(model.classes_)
    threshold = decision_threshold_of(model)
    if threshold is None:
        return classes[probabilities.argmax(axis=1)]
    return classes[(probabilities[:, 1] >= threshold).astype(int)]


def library_versions() -> dict[str, str]:
    """The running versions of the libraries a model file depends on, from package metadata
    (without importing scikit-learn only to ask its version)."""
    from importlib.metadata import version

    return {"python": platform.python_version(),
            **{name: version(name) for name in RECORDED_LIBRARIES}}


def model_types(data: bytes, source: str) -> set[str]:
    """Every type and function a skops file names, read from its JSON tree without loading it."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            tree = json.loads(archive.read("schema.json"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelFileError(
            f"{source} is not a skops model file ({type(error).__name__}); model files are "
            "never loaded any other way (a pickle could run code)") from None
    found: set[str] = set()
    pending = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            if "__module__" in node and "__class__" in node:
                found.add(f"{node['__module__']}.{node['__class__']}")
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return found


def check_library_versions(recorded: dict | None, source: str, *,
                           allow_version_skew: bool = False) -> None:
    """Refuse a model saved by another scikit-learn major.minor than the running one."""
    saved = (recorded or {}).get("scikit-learn")
    running = library_versions()["scikit-learn"]
    if allow_version_skew or saved is None:
        return
    if saved.split(".")[:2] != running.split(".")[:2]:
        raise LibrarySkewError(
            f"{source} was saved with scikit-learn {saved}, but this is scikit-learn {running}: "
            "a model is only loaded by the scikit-learn minor version that trained it "
            "(retrain it, or allow the skew explicitly)")


def model_bytes(model) -> bytes:
    """The bytes of a model file (skops). Refuses to write one it would refuse to load."""
    import skops.io as sio

    data = sio.dumps(model)
    untrusted = model_types(data, "the new model") - set(TRUSTED_TYPES)
    if untrusted:
        raise UntrustedModelError(f"the new model holds type(s) outside TRUSTED_TYPES: "
                                  f"{sorted(untrusted)}")
    return data


def load_model_bytes(data: bytes, source: str, *, libraries: dict | None = None,
                     allow_version_skew: bool = False):
    """The model in a model file's bytes; ``source`` names the file in errors.

    Checks the type allow-list before anything is built, and ``libraries`` (the versions the
    file was saved with) against the running ones. A digest, where there is one, is checked by
    the caller before this.
    """
    import skops.io as sio

    untrusted = model_types(data, source) - set(TRUSTED_TYPES)
    if untrusted:
        raise UntrustedModelError(f"{source} names type(s) outside the allow-list: "
                                  f"{', '.join(sorted(untrusted))}; refusing to load it")
    check_library_versions(libraries, source, allow_version_skew=allow_version_skew)
    return sio.loads(data, trusted=sio.get_untrusted_types(data=data))


def save_model(model, path: str | Path) -> None:
    """Write a model file."""
    Path(path).write_bytes(model_bytes(model))


def load_model(path: str | Path, *, libraries: dict | None = None):
    """Read a model file."""
    return load_model_bytes(Path(path).read_bytes(), str(path), libraries=libraries)
