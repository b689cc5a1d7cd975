"""The estimators a challenger is made of: the built-in ones, and a team's own.

``model_type`` is ``hgb`` (HistGradientBoosting), ``sgd`` (SGD, epochs of ``partial_fit``), or
the import path ``package.module:factory`` of a factory in an installed distribution: never a
file path or a URL, so what runs on a cluster is what the image installed (TFX imports a
``module_file`` at run time, which breaks on clusters). The factory is called as

    factory(task="classification" | "regression", feature_kinds={column: kind}, **model_config)

and returns an unfitted scikit-learn-compatible estimator. Its module may declare:

- ``TRUSTED_TYPES``: the types (``module.Class``) its fitted models are made of beyond this
  project's pinned list; a model file of its versions may name these and nothing else
  (:mod:`components.ml.models`);
- ``continue_fit(estimator, X, y, *, task)``: how a fitted estimator continues on new rows, for
  one with neither ``partial_fit`` nor ``warm_start`` (fine-tuning);

and the factory may carry ``raw_columns = True``: its estimator takes the feature columns as they
are (numbers as floats, categories as text, missing values as NaN) instead of behind this
project's feature transforms.
"""

from __future__ import annotations

import importlib
import inspect
import re

from components.outcomes import Task

HGB, SGD = "hgb", "sgd"
BUILT_IN = (HGB, SGD)
HGB_ITERATIONS = 100
HGB_FINETUNE_ITERATIONS = 30  # boosting stages (or estimators) a fine-tune adds
HGB_LEARNING_RATE = 0.1
SGD_ALPHA = 1e-4
RANDOM_STATE = 0
# What a factory path looks like: dotted module names, a colon, the factory's name.
_FACTORY_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"
                           r":[A-Za-z_][A-Za-z0-9_]*$")
CONTINUE_HOOK = "continue_fit"
DECLARED_TYPES = "TRUSTED_TYPES"


class FactoryError(ValueError):
    """A factory path that does not import, a factory that raises, or what it returned is not
    an estimator for the task. The message says what went wrong (the caller names the path)."""


def is_factory(model_type: str) -> bool:
    """Whether ``model_type`` names a team's own factory rather than a built-in estimator."""
    return model_type not in BUILT_IN


def _distribution_of(module_name: str) -> str | None:
    """The installed distribution that holds the top-level package of ``module_name``."""
    from importlib.metadata import packages_distributions

    names = packages_distributions().get(module_name.partition(".")[0])
    return names[0] if names else None


def import_factory(path: str):
    """The factory a path names, imported; :class:`FactoryError` says why not."""
    if not isinstance(path, str) or not _FACTORY_PATH.match(path):
        raise FactoryError("it is not an import path 'package.module:factory' (a file path or "
                           "a URL is never imported)")
    module_name, _, attribute = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise FactoryError(f"{module_name!r} does not import here ({type(error).__name__}: "
                           f"{error}); install its distribution in the image") from None
    except Exception as error:  # noqa: BLE001 - a module whose import fails, however it fails
        raise FactoryError(f"importing {module_name!r} raised {type(error).__name__}: "
                           f"{error}") from None
    if _distribution_of(module_name) is None:
        raise FactoryError(f"{module_name!r} is not part of an installed distribution (pip "
                           "install the package that holds it, as the image will)")
    factory = getattr(module, attribute, None)
    if not callable(factory):
        raise FactoryError(f"{module_name!r} has no callable {attribute!r}")
    return factory


def factory_problem(path: str, model_config: dict) -> str | None:
    """Why ``path`` with ``model_config`` cannot make estimators, as far as can be told without
    calling it: it does not import, or its signature does not take the keyword arguments it
    would be called with. None when it can."""
    try:
        factory = import_factory(path)
    except FactoryError as error:
        return str(error)
    try:
        inspect.signature(factory).bind(task=Task.CLASSIFICATION, feature_kinds={},
                                        **model_config)
    except TypeError as error:
        return f"it cannot be called with task, feature_kinds and model_config: {error}"
    except ValueError:  # no signature to read (a builtin): calling it will tell
        pass
    return None


def declared_types(model_type: str) -> tuple[str, ...]:
    """The types a factory's module declares its models are made of (none for a built-in).
    :class:`FactoryError` when the factory is not installed here."""
    if not is_factory(model_type):
        return ()
    import_factory(model_type)  # installed here, or FactoryError
    module = importlib.import_module(model_type.partition(":")[0])
    declared = getattr(module, DECLARED_TYPES, ())
    if not isinstance(declared, tuple | list) or not all(isinstance(t, str) for t in declared):
        raise FactoryError(f"{module.__name__}.{DECLARED_TYPES} must be a tuple of type names "
                           "('module.Class')")
    return tuple(declared)


def takes_raw_columns(model_type: str) -> bool:
    """Whether the factory's estimator takes the raw feature columns (no transforms of ours)."""
    return is_factory(model_type) and bool(getattr(import_factory(model_type), "raw_columns",
                                                   False))


def factory_distribution(model_type: str) -> dict[str, str]:
    """``{distribution: version}`` of the package a factory comes from, for the version's
    metadata (nothing for a built-in)."""
    if not is_factory(model_type):
        return {}
    from importlib.metadata import version

    name = _distribution_of(model_type.partition(":")[0])
    return {name: version(name)} if name else {}


def new_estimator(model_type: str, *, task: str, feature_kinds: dict[str, str],
                  model_config: dict | None = None, random_state: int = RANDOM_STATE):
    """An unfitted estimator of ``model_type`` for ``task``: a built-in with this project's fixed
    settings, or what the factory returns (given ``random_state`` where it left none)."""
    if model_type == HGB:
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        kind = (HistGradientBoostingRegressor if task == Task.REGRESSION
                else HistGradientBoostingClassifier)
        return kind(max_iter=HGB_ITERATIONS, learning_rate=HGB_LEARNING_RATE,
                    early_stopping=False, random_state=random_state)
    if model_type == SGD:
        from sklearn.linear_model import SGDClassifier, SGDRegressor

        if task == Task.REGRESSION:
            return SGDRegressor(alpha=SGD_ALPHA, random_state=random_state)
        return SGDClassifier(loss="log_loss", alpha=SGD_ALPHA, random_state=random_state)
    factory = import_factory(model_type)
    try:
        estimator = factory(task=task, feature_kinds=dict(feature_kinds), **(model_config or {}))
    except Exception as error:  # noqa: BLE001 - the user's code, however it fails
        raise FactoryError(f"calling it raised {type(error).__name__}: {error}") from None
    problem = estimator_problem(estimator, task)
    if problem:
        raise FactoryError(problem)
    params = estimator.get_params(deep=False)
    if "random_state" in params and params["random_state"] is None:
        estimator.set_params(random_state=random_state)
    return estimator


def estimator_problem(estimator, task: str) -> str | None:
    """Why what a factory returned cannot be the task's estimator, or None."""
    from sklearn.base import is_classifier, is_regressor

    kind = type(estimator).__name__
    missing = [name for name in ("fit", "predict", "get_params", "set_params")
               if not callable(getattr(estimator, name, None))]
    if missing:
        return (f"it returned a {kind}, which is not a scikit-learn-compatible estimator (no "
                f"{', '.join(missing)})")
    if task == Task.CLASSIFICATION and is_regressor(estimator):
        return f"it returned a regressor ({kind}) for a classification task"
    if task == Task.REGRESSION and is_classifier(estimator):
        return f"it returned a classifier ({kind}) for a regression task"
    return None


def can_give_probabilities(estimator) -> bool:
    """Whether a classifier answers class probabilities (``predict_proba``)."""
    try:
        return callable(getattr(estimator, "predict_proba", None))
    except AttributeError:  # available_if hides it: e.g. an SVC without probability=True
        return False


def continuation(estimator, model_type: str) -> str | None:
    """How a fitted estimator of ``model_type`` continues on new rows (``hook``,
    ``partial_fit`` or ``warm_start``), or None when it cannot."""
    if is_factory(model_type):
        module = importlib.import_module(model_type.partition(":")[0])
        if callable(getattr(module, CONTINUE_HOOK, None)):
            return "hook"
    if callable(getattr(estimator, "partial_fit", None)):
        return "partial_fit"
    params = estimator.get_params(deep=False)
    if "warm_start" in params and ("n_estimators" in params or "max_iter" in params):
        return "warm_start"
    return None


def no_continuation_reason(estimator, model_type: str) -> str:
    return (f"a {type(estimator).__name__} cannot continue on new rows: it has neither "
            f"partial_fit nor warm_start with more estimators, and "
            f"{model_type.partition(':')[0]!r} defines no {CONTINUE_HOOK}(estimator, X, y, *, "
            "task)")


def continue_fitting(estimator, model_type: str, X, y, *, task: str):
    """Continue a fitted estimator (or a copy the hook returns) on ``X, y``; returns it. SGD
    epochs are :mod:`components.stages.retrain`'s, not this."""
    how = continuation(estimator, model_type)
    if how == "hook":
        module = importlib.import_module(model_type.partition(":")[0])
        return getattr(module, CONTINUE_HOOK)(estimator, X, y, task=task)
    if how == "warm_start":
        params = estimator.get_params(deep=False)
        count = "n_estimators" if "n_estimators" in params else "max_iter"
        already = getattr(estimator, "n_iter_", None) or params[count]
        estimator.set_params(warm_start=True, **{count: int(already) + HGB_FINETUNE_ITERATIONS})
        estimator.fit(X, y)
        estimator.set_params(warm_start=False)
        return estimator
    if how == "partial_fit":
        estimator.partial_fit(X, y)
        return estimator
    raise FactoryError(no_continuation_reason(estimator, model_type))
