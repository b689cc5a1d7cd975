"""The models this project trains, and the one way a model file is written and read.

Every model is one scikit-learn ``Pipeline``: this project's feature transforms, then the
estimator (:mod:`components.ml.estimators`: ``hgb``, ``sgd`` or a team's own factory), named
``classifier`` or ``regressor`` by the task; an estimator that takes the raw feature columns
has no transforms in front of it. ``sgd`` regression learns a standardised target (the scaler
and the regressor inside a ``TransformedTargetRegressor``), so its steps suit any label's units.
A binary classifier with a decision threshold other than argmax has its estimator wrapped in a
``FixedThresholdClassifier`` around the fitted (frozen) one, so the threshold is in the model
file and whoever loads it applies it.

A model file is a ``skops`` file (``model.skops``), never a pickle: loading a pickle runs whatever
code it names, and anyone who can write the registry could plant one (a SHA-256 in
``metadata.json`` does not help: the same writer can update it). A skops file is a zip of a JSON
tree and ``.npy`` arrays; :func:`load_model_bytes` reads the tree first and refuses any type that
is not in :data:`TRUSTED_TYPES` (every type our pipelines' models are made of, pinned here) or
declared by the installed factory that trained the version (its module's ``TRUSTED_TYPES``), and
refuses a model saved by another scikit-learn major.minor version. Nothing else in the project
serialises or loads a model.
"""

from __future__ import annotations

import io
import json
import platform
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from components.ml.estimators import FactoryError, declared_types
from components.outcomes import Task

if TYPE_CHECKING:
    import numpy as np

MODEL_FILE = "model.skops"
# What versions saved before model files were skops files hold (a pickle): never loaded.
LEGACY_MODEL_FILE = "model.joblib"

# Every type (and function) a model file may name: what the models built by this project are made
# of, for both built-in model types and both tasks, numeric and categorical features, binary and
# multiclass labels of numbers or strings, with and without a decision threshold.
# tests/components/ml/test_models.py fails when a model we build names a type outside it, so the
# list grows only by an explicit, reviewed change.
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
    "sklearn._loss._loss.CyHalfSquaredError",
    "sklearn._loss.link.IdentityLink",
    "sklearn._loss.link.Interval",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.MultinomialLogit",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.loss.HalfMultinomialLoss",
    "sklearn._loss.loss.HalfSquaredError",
    "sklearn.compose._column_transformer.ColumnTransformer",
    "sklearn.compose._target.TransformedTargetRegressor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingRegressor",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.frozen._frozen.FrozenEstimator",
    "sklearn.impute._base.SimpleImputer",
    "sklearn.linear_model._stochastic_gradient.SGDClassifier",
    "sklearn.linear_model._stochastic_gradient.SGDRegressor",
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


FEATURES_STEP = "features"
FINAL_STEP = {Task.CLASSIFICATION: "classifier", Task.REGRESSION: "regressor"}


def assemble(transformer, estimator, task: str):
    """The model: ``transformer`` (None: the estimator takes the raw columns), then
    ``estimator``, as one Pipeline."""
    from sklearn.pipeline import Pipeline

    steps = [(FEATURES_STEP, transformer)] if transformer is not None else []
    return Pipeline([*steps, (FINAL_STEP[task], estimator)])


def feature_step(model):
    """The fitted feature transforms of a model built here, or None (raw columns)."""
    return model.named_steps.get(FEATURES_STEP)


def final_step(model):
    """The model's last step: its estimator, or the threshold wrapper around it."""
    return model.steps[-1][1]


def base_estimator(model):
    """The fitted estimator of a Pipeline built here, inside any threshold wrapper."""
    estimator = final_step(model)
    while type(estimator).__name__ in ("FixedThresholdClassifier", "FrozenEstimator"):
        estimator = estimator.estimator
    return estimator


def task_of(model) -> str:
    """``classification`` for a fitted model with classes, else ``regression``."""
    return Task.CLASSIFICATION if hasattr(model, "classes_") else Task.REGRESSION


def model_type_of(model) -> str:
    """``hgb`` or ``sgd`` for a Pipeline with a built-in estimator (a version's metadata says
    which factory made any other)."""
    name = type(base_estimator(model)).__name__
    return "hgb" if name.startswith("HistGradientBoosting") else "sgd"


def decision_threshold_of(model) -> float | None:
    """The probability of the second class from which it is predicted, when the model sets one
    (None: the most probable class is predicted)."""
    last = final_step(model)
    return float(last.threshold) if type(last).__name__ == "FixedThresholdClassifier" else None


def with_decision_threshold(model, threshold: float | None):
    """A copy of a fitted binary Pipeline predicting its second class from ``threshold`` on
    (None: plain argmax). The classifier is frozen inside the wrapper: nothing is refitted."""
    import numpy as np
    from sklearn.frozen import FrozenEstimator
    from sklearn.model_selection import FixedThresholdClassifier

    classifier = base_estimator(model)
    if threshold is not None:
        classifier = FixedThresholdClassifier(FrozenEstimator(classifier), threshold=threshold,
                                              response_method="predict_proba")
        # Fitting the wrapper sets classes_; the frozen classifier is not refitted.
        classifier.fit(np.zeros((2, base_estimator(model).n_features_in_)),
                       base_estimator(model).classes_)
    return assemble(feature_step(model), classifier, Task.CLASSIFICATION)


def predicted_classes(model, probabilities: np.ndarray) -> np.ndarray:
    """The classes a model predicts for these probabilities: the second class from its decision
    threshold on, else the most probable one (as ``model.predict`` would)."""
    import numpy as np

    classes = np.asarray(model.classes_)
    threshold = decision_threshold_of(model)
    if threshold is None:
        return classes[probabilities.argmax(axis=1)]
    return classes[(probabilities[:, 1] >= threshold).astype(int)]


def trusted_types(model_type: str = "") -> frozenset[str]:
    """What a model file of ``model_type`` may name: the pinned list, plus what the installed
    factory that makes such models declares (:func:`components.ml.estimators.declared_types`).
    A factory that is not installed here is refused, naming it."""
    try:
        return frozenset(TRUSTED_TYPES) | set(declared_types(model_type or "hgb"))
    except FactoryError as error:
        raise ModelFileError(f"the model was made by the factory {model_type!r}, which is not "
                             f"installed here ({error}); install its distribution to load "
                             "it") from None


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


def model_bytes(model, model_type: str = "") -> bytes:
    """The bytes of a model file (skops). Refuses to write one it would refuse to load."""
    import skops.io as sio

    data = sio.dumps(model)
    untrusted = model_types(data, "the new model") - trusted_types(model_type)
    if untrusted:
        declared = (f" or declared by {model_type.partition(':')[0]}.TRUSTED_TYPES"
                    if model_type and ":" in model_type else "")
        raise UntrustedModelError(f"the new model holds type(s) outside TRUSTED_TYPES"
                                  f"{declared}: {sorted(untrusted)}")
    return data


def load_model_bytes(data: bytes, source: str, *, libraries: dict | None = None,
                     allow_version_skew: bool = False, model_type: str = ""):
    """The model in a model file's bytes; ``source`` names the file in errors.

    Checks the type allow-list (the pinned list, and what the factory ``model_type`` that
    trained it declares) before anything is built, and ``libraries`` (the versions the file was
    saved with) against the running ones. A digest, where there is one, is checked by the
    caller before this.
    """
    import skops.io as sio
    from skops.io.exceptions import UntrustedTypesFoundException

    try:
        trusted = trusted_types(model_type)
    except ModelFileError as error:
        raise ModelFileError(f"{source}: {error}") from None
    named = model_types(data, source)
    untrusted = named - trusted
    if untrusted:
        raise UntrustedModelError(f"{source} names type(s) outside the allow-list: "
                                  f"{', '.join(sorted(untrusted))}; refusing to load it")
    check_library_versions(libraries, source, allow_version_skew=allow_version_skew)
    # skops trusts exactly what was checked above, not its own second reading of the tree (a
    # quarter of a load's time), and its audit refuses anything else it meets while building.
    try:
        return sio.loads(data, trusted=sorted(named))
    except UntrustedTypesFoundException as error:
        raise UntrustedModelError(f"{source}: {error}; refusing to load it") from None


def save_model(model, path: str | Path, model_type: str = "") -> None:
    """Write a model file."""
    Path(path).write_bytes(model_bytes(model, model_type))


def load_model(path: str | Path, *, libraries: dict | None = None, model_type: str = ""):
    """Read a model file (``model_type``: what trained it, when a factory did)."""
    return load_model_bytes(Path(path).read_bytes(), str(path), libraries=libraries,
                            model_type=model_type)
