"""A team's own estimator: a factory in an installed distribution, imported by name, refused
clearly when it cannot make the task's estimator, trusted only for the types it declares."""

import numpy as np
import pandas as pd
import pytest

from components.ml.estimators import (
    FactoryError,
    continuation,
    declared_types,
    factory_problem,
    import_factory,
    new_estimator,
)
from components.params import InvalidParameterError, check_parameters
from tests.helpers import install_package, make_numbers, make_rows

KINDS = {"x1": "numeric", "x2": "numeric", "color": "categorical"}
FOREST_TYPES = ("numpy.int64", "sklearn.ensemble._forest.RandomForestClassifier",
                "sklearn.ensemble._forest.RandomForestRegressor",
                "sklearn.tree._classes.DecisionTreeClassifier",
                "sklearn.tree._classes.DecisionTreeRegressor", "sklearn.tree._tree.Tree")
RAW_TYPES = ("functools.partial", "sklearn.preprocessing._encoders.OrdinalEncoder",
             "sklearn.preprocessing._function_transformer.FunctionTransformer",
             "sklearn.utils.validation.check_array")
TEAM_MODELS = f'''
TRUSTED_TYPES = {FOREST_TYPES + RAW_TYPES!r}


def forest(*, task, feature_kinds, n_estimators=20):
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    kind = RandomForestRegressor if task == "regression" else RandomForestClassifier
    return kind(n_estimators=n_estimators, max_depth=6)


def strict(*, task, feature_kinds):
    from sklearn.linear_model import Ridge

    return Ridge()


def raising(*, task, feature_kinds, **config):
    raise ValueError("no GPU on this node")


def not_an_estimator(*, task, feature_kinds):
    return "a model, honestly"


def regressor(*, task, feature_kinds):
    from sklearn.linear_model import Ridge

    return Ridge()


def no_probabilities(*, task, feature_kinds):
    from sklearn.svm import LinearSVC

    return LinearSVC()


def raw(*, task, feature_kinds):
    from sklearn.compose import make_column_transformer
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OrdinalEncoder

    categorical = [c for c, kind in feature_kinds.items() if kind == "categorical"]
    numeric = [c for c in feature_kinds if c not in categorical]
    encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1,
                             encoded_missing_value=-1)
    return make_pipeline(make_column_transformer((encoder, categorical), ("passthrough", numeric)),
                         HistGradientBoostingRegressor(categorical_features=[0], max_iter=30))


raw.raw_columns = True


def neighbours(*, task, feature_kinds):
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

    return KNeighborsRegressor() if task == "regression" else KNeighborsClassifier()
'''


@pytest.fixture
def team_models(tmp_path, monkeypatch):
    """``team_models``, a distribution installed in a folder of the test's own."""
    install_package(tmp_path / "site", "team_models", TEAM_MODELS, monkeypatch)
    return "team_models"


@pytest.mark.parametrize("path, problem", [
    ("/home/me/model.py:make", "not an import path"),
    ("https://example.com/model.py", "not an import path"),
    ("lightgbm_model", "not an import path"),
    ("no_such_package_here:make", "'no_such_package_here' does not import here"),
    ("tests.helpers:make_rows", "'tests.helpers' is not part of an installed distribution"),
    ("lightgbm_model:no_such_factory", "'lightgbm_model' has no callable 'no_such_factory'"),
], ids=["file-path", "url", "no-colon", "not-installed", "not-a-distribution", "no-attribute"])
def test_a_factory_path_that_cannot_be_imported_is_refused_saying_why(path, problem):
    """Check that only an import path into an installed distribution is imported."""
    with pytest.raises(FactoryError, match=problem):
        import_factory(path)
    with pytest.raises(InvalidParameterError, match=f"The 'model_type' parameter of retrain run "
                                                    f"must be .* Got '{path}' instead: "):
        check_parameters({"model_type": path}, "retrain run")


def test_the_example_factory_imports_and_declares_its_types():
    """Check that the LightGBM example is an installed distribution with its types declared."""
    assert callable(import_factory("lightgbm_model:make_model"))
    assert "lightgbm.sklearn.LGBMRegressor" in declared_types("lightgbm_model:make_model")
    assert declared_types("hgb") == ()


@pytest.mark.parametrize("factory, problem", [
    ("raising", "calling it raised ValueError: no GPU on this node"),
    ("not_an_estimator", "it returned a str, which is not a scikit-learn-compatible estimator"),
    ("regressor", r"it returned a regressor \(Ridge\) for a classification task"),
], ids=["raises", "not-an-estimator", "wrong-task"])
def test_a_factory_that_cannot_make_the_tasks_estimator_is_refused(team_models, factory,
                                                                     problem):
    """Check that a factory that raises, or returns what is not the task's estimator, is
    refused with what went wrong."""
    with pytest.raises(FactoryError, match=problem):
        new_estimator(f"{team_models}:{factory}", task="classification", feature_kinds=KINDS)


def test_model_config_is_checked_against_the_factorys_signature(team_models):
    """Check that model_config keys the factory does not take are refused before any run,
    and that the built-in models take none."""
    assert factory_problem(f"{team_models}:forest", {"n_estimators": 5}) is None
    good = {"model_type": f"{team_models}:forest", "model_config": {"n_estimators": 5}}
    check_parameters(good, "retrain run")
    with pytest.raises(InvalidParameterError, match=r"The 'model_config' parameter of retrain "
                                                    r"run must be keyword arguments that "
                                                    r"team_models:forest takes\. Got "
                                                    r"\{'max_leaves': 8\} instead: .*"
                                                    r"max_leaves"):
        check_parameters({**good, "model_config": {"max_leaves": 8}}, "retrain run")
    with pytest.raises(InvalidParameterError, match="must be empty for the built-in model_type "
                                                    "'hgb'"):
        check_parameters({"model_type": "hgb", "model_config": {"max_iter": 5}}, "retrain run")


def test_the_factory_gets_the_task_features_and_config_and_a_seed(team_models):
    """Check that the factory is called with the task and model_config, and that an estimator
    that leaves random_state unset gets the run's seed."""
    estimator = new_estimator(f"{team_models}:forest", task="regression", feature_kinds=KINDS,
                              model_config={"n_estimators": 7}, random_state=42)
    assert type(estimator).__name__ == "RandomForestRegressor"
    assert estimator.get_params()["n_estimators"] == 7
    assert estimator.get_params()["random_state"] == 42


@pytest.mark.parametrize("factory, expected", [
    ("forest", "warm_start"), ("neighbours", None)], ids=["warm-start", "none"])
def test_how_an_estimator_continues_is_read_from_it(team_models, factory, expected):
    """Check that fine-tuning finds warm_start with more estimators, or that there is none."""
    estimator = new_estimator(f"{team_models}:{factory}", task="regression", feature_kinds=KINDS)
    assert continuation(estimator, f"{team_models}:{factory}") == expected


def test_the_example_continues_by_its_modules_hook():
    """Check that the LightGBM example continues by its continue_fit hook: more trees."""
    from components.ml.estimators import continue_fitting

    path = "lightgbm_model:make_model"
    rows = make_numbers(300, seed=1)
    X, y = rows[["x1", "x2"]].to_numpy(), rows["label"].to_numpy()
    estimator = new_estimator(path, task="regression", feature_kinds=KINDS,
                              model_config={"n_estimators": 20}).fit(X, y)
    assert continuation(estimator, path) == "hook"
    continued = continue_fitting(estimator, path, X[:100], y[:100], task="regression")
    assert continued.booster_.num_trees() == 20 + 30


def _retrain(model_type, strategy="auto", champion=None, meta=None, task="classification",
             **params):
    from components.stages.retrain import retrain

    rows = make_numbers(400, seed=2) if task == "regression" else make_rows(400, seed=2)
    rows["ts"] = pd.to_datetime(rows["ts"], utc=True)
    return retrain(strategy=strategy, model_type=model_type, train=rows[:300],
                   history=rows.iloc[:0], validation=rows[300:], label_column="label",
                   timestamp_column="ts", feature_kinds=KINDS,
                   metric=params.pop("metric", "rmse" if task == "regression" else "accuracy"),
                   epochs=3, window_days=90, window_files=3, champion=champion,
                   champion_meta=meta, task=task, **params)


def test_an_explicit_finetune_of_an_estimator_that_cannot_continue_is_refused(team_models):
    """Check that strategy=finetune with an estimator that cannot continue is refused as a
    parameter before any fit, and that auto skips finetune saying why."""
    with pytest.raises(InvalidParameterError, match=r"The 'strategy' parameter of the retrain "
                                                    r"stage must be .* Got 'finetune' instead: "
                                                    r"a KNeighborsClassifier cannot continue"):
        _retrain(f"{team_models}:neighbours", strategy="finetune")
    result = _retrain(f"{team_models}:neighbours")
    assert result.model_type == f"{team_models}:neighbours"
    champion_meta = _meta(result, f"{team_models}:neighbours")
    again = _retrain(f"{team_models}:neighbours", champion=result.model, meta=champion_meta)
    finetune = next(c for c in again.candidates if c.strategy == "finetune")
    assert finetune.status == "skipped"
    assert "cannot continue on new rows" in finetune.note


def _meta(result, model_type):
    from components.records import VersionMetadata

    return VersionMetadata(model_type=model_type, feature_kinds=KINDS, task=result.task)


@pytest.mark.parametrize("params, name", [
    ({"metric": "roc_auc"}, "metric"), ({"decision_threshold": "tuned"}, "decision_threshold")],
    ids=["roc-auc", "decision-threshold"])
def test_a_model_without_probabilities_is_refused_where_they_are_needed(team_models, params,
                                                                        name):
    """Check that a classifier without predict_proba is refused for ROC AUC and a decision
    threshold, naming the estimator, before any fit."""
    with pytest.raises(InvalidParameterError, match=f"The '{name}' parameter of the retrain "
                                                    "stage must be .* a LinearSVC gives no "
                                                    "class probabilities"):
        _retrain(f"{team_models}:no_probabilities", **params)


def test_a_model_without_probabilities_is_scored_on_its_classes(team_models):
    """Check that a classifier without predict_proba still trains and is scored on accuracy."""
    result = _retrain(f"{team_models}:no_probabilities", strategy="full")
    assert result.candidates[0].metrics["accuracy"] > 0.7


def test_a_team_forest_finetunes_by_warm_start_and_saves_within_its_declared_types(team_models):
    """Check that a factory's warm-start estimator is fine-tuned with more trees, and that its
    model file names only the pinned types and those its module declares."""
    from components.ml.models import TRUSTED_TYPES, UntrustedModelError, model_bytes, model_types

    path = f"{team_models}:forest"
    first = _retrain(path, task="regression", strategy="full")
    again = _retrain(path, task="regression", strategy="finetune", champion=first.model,
                     meta=_meta(first, path))
    assert again.strategy == "finetune"
    forest = again.model.steps[-1][1]
    assert forest.get_params()["n_estimators"] == 20 + 30
    data = model_bytes(again.model, path)
    assert model_types(data, "m") <= set(TRUSTED_TYPES) | set(FOREST_TYPES)
    with pytest.raises(UntrustedModelError, match="RandomForestRegressor"):
        model_bytes(again.model)  # as a built-in's file: nothing else widens the list
    assert np.isfinite(again.candidates[0].metrics["rmse"])


def test_a_factory_that_takes_raw_columns_gets_them_without_our_transforms(team_models):
    """Check that raw_columns = True puts no transforms of ours in front: the estimator gets the
    feature columns as they are, and its model file round-trips within its declared types."""
    from components.ml.models import feature_step, load_model_bytes, model_bytes
    from components.stages.retrain import fit_fresh

    path = f"{team_models}:raw"
    rows = make_numbers(300, seed=4)
    model, trace = fit_fresh(rows, rows.tail(50), label_column="label", feature_kinds=KINDS,
                             model_type=path, epochs=3, task="regression")
    assert feature_step(model) is None
    assert [name for name, _ in model.steps] == ["regressor"]
    assert len(trace) == 1 and trace[0]["validation_r2"] > 0.5
    features = rows[list(KINDS)]
    loaded = load_model_bytes(model_bytes(model, path), "m", model_type=path)
    assert (loaded.predict(features) == model.predict(features)).all()
