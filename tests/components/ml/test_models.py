"""Model files: skops only, an allow-list of types, no code run by a planted file, no version skew."""

import io
import json
import zipfile

import numpy as np
import pandas as pd
import pytest

from components.ml.estimators import new_estimator
from components.ml.features import build_feature_transformer
from components.ml.models import (
    TRUSTED_TYPES,
    LibrarySkewError,
    ModelFileError,
    UntrustedModelError,
    library_versions,
    load_model_bytes,
    model_bytes,
    model_types,
)
from components.records import VersionMetadata
from components.registry import ModelIntegrityError, Registry

KIND_SETS = {"numeric+categorical": {"a": "numeric", "c": "categorical"},
             "numeric": {"a": "numeric"}, "categorical": {"c": "categorical"}}
LABEL_SETS = {"binary-int": [0, 1], "multiclass-str": ["x", "y", "z"], "binary-bool": [True, False]}


def _fitted(model_type, kinds, labels, rows=90, seed=0):
    from sklearn.pipeline import Pipeline

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"a": rng.normal(size=rows), "c": rng.choice(["p", "q", "r"], rows)})
    frame.loc[3, "a"] = np.nan
    y = np.asarray((labels * rows)[:rows])
    model = Pipeline([("features", build_feature_transformer(kinds)),
                      ("classifier", new_estimator(model_type, task="classification", feature_kinds={}))])
    return model.fit(frame[list(kinds)], y), frame[list(kinds)]


@pytest.mark.parametrize("labels", LABEL_SETS, ids=list(LABEL_SETS))
@pytest.mark.parametrize("kinds", KIND_SETS, ids=list(KIND_SETS))
@pytest.mark.parametrize("model_type", ["hgb", "sgd"])
def test_every_model_we_build_is_within_the_allow_list_and_round_trips(model_type, kinds,
                                                                       labels):
    """Check that each kind of model the pipeline builds names only allow-listed types, and
    predicts the same after a save and a load."""
    model, frame = _fitted(model_type, KIND_SETS[kinds], LABEL_SETS[labels])
    data = model_bytes(model)
    assert model_types(data, "m") <= set(TRUSTED_TYPES)
    loaded = load_model_bytes(data, "m", libraries=library_versions())
    assert (loaded.predict_proba(frame) == model.predict_proba(frame)).all()
    assert list(loaded.classes_) == list(model.classes_)


class _Payload:
    """A pickle that writes a marker file when it is loaded."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _registry_with_v0001(tmp_path):
    model, _ = _fitted("sgd", KIND_SETS["numeric"], [0, 1])
    registry = Registry(str(tmp_path / "registry"), "m")
    registry.publish(model_bytes(model), VersionMetadata(run_id="r1", created_at="now",
                                                         libraries=library_versions()))
    return registry


def _replace_model(registry, data: bytes, *, update_digest: bool):
    from components.ml.models import MODEL_FILE
    from components.storage import sha256_bytes

    registry.storage.write_bytes(registry.version_uri("v0001", MODEL_FILE), data)
    if update_digest:  # what anyone who can write the registry can also do
        path = registry.version_uri("v0001", "metadata.json")
        metadata = json.loads(registry.storage.read_bytes(path))
        metadata["model_sha256"] = sha256_bytes(data)
        registry.storage.write_bytes(path, json.dumps(metadata).encode())


@pytest.mark.parametrize("update_digest", [True, False], ids=["matching-digest", "stale-digest"])
def test_a_planted_pickle_is_refused_and_runs_nothing(tmp_path, update_digest):
    """Check that a pickle in place of the model is refused, with or without a matching digest,
    and that its payload never ran."""
    import pickle

    registry = _registry_with_v0001(tmp_path)
    marker = tmp_path / "payload-ran"
    _replace_model(registry, pickle.dumps(_Payload(marker)), update_digest=update_digest)
    expected = (ModelFileError, "not a skops model file") if update_digest else (
        ModelIntegrityError, "has SHA-256")
    with pytest.raises(expected[0], match=expected[1]):
        registry.load_model("v0001")
    assert not marker.exists()


def _with_type(data: bytes, module: str, name: str) -> bytes:
    """The skops file with its top node renamed to ``module.name``."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for item in source.namelist():
            content = source.read(item)
            if item == "schema.json":
                tree = json.loads(content)
                tree["__module__"], tree["__class__"] = module, name
                content = json.dumps(tree).encode()
            target.writestr(item, content)
    return out.getvalue()


@pytest.mark.parametrize("module, name", [("os", "system"), ("builtins", "eval"),
                                          ("sklearn.tree._classes", "DecisionTreeClassifier")],
                         ids=["os-system", "eval", "sklearn-type-we-never-save"])
def test_a_skops_file_naming_an_untrusted_type_is_refused(tmp_path, module, name):
    """Check that a skops file naming a type outside the allow-list is refused with the file and
    the type named, even a scikit-learn type skops itself would trust."""
    registry = _registry_with_v0001(tmp_path)
    good = registry.storage.read_bytes(registry.version_uri("v0001", "model.skops"))
    _replace_model(registry, _with_type(good, module, name), update_digest=True)
    with pytest.raises(UntrustedModelError, match=rf"v0001/model.skops names type\(s\) outside "
                                                  rf"the allow-list: {module}.{name}"):
        registry.load_model("v0001")


def test_skops_trusts_only_the_types_the_allow_list_check_read(tmp_path, monkeypatch):
    """Check that a type the allow-list check did not read (as if its reading of the tree missed
    one) is refused by skops while building, with the file named, and not trusted blindly."""
    import components.ml.models as models

    registry = _registry_with_v0001(tmp_path)
    data = registry.storage.read_bytes(registry.version_uri("v0001", "model.skops"))
    import skops.io as sio

    missed = sio.get_untrusted_types(data=data)[0]  # one skops does not trust by default
    named = model_types(data, "model")
    monkeypatch.setattr(models, "model_types", lambda data, source: named - {missed})
    with pytest.raises(UntrustedModelError, match=rf"the-file: .*{missed}"):
        load_model_bytes(data, "the-file")


def test_a_model_from_another_scikit_learn_minor_is_refused(tmp_path):
    """Check that a model saved by another scikit-learn minor version is refused, both named."""
    registry = _registry_with_v0001(tmp_path)
    path = registry.version_uri("v0001", "metadata.json")
    metadata = json.loads(registry.storage.read_bytes(path))
    metadata["libraries"]["scikit-learn"] = "1.5.2"
    registry.storage.write_bytes(path, json.dumps(metadata).encode())
    running = library_versions()["scikit-learn"]
    with pytest.raises(LibrarySkewError, match=rf"saved with scikit-learn 1.5.2, but this is "
                                               rf"scikit-learn {running}"):
        registry.load_model("v0001")
    assert registry.load_model("v0001", allow_version_skew=True) is not None


def test_a_legacy_pickle_version_is_refused_with_what_to_do(tmp_path):
    """Check that a version saved as model.joblib by an earlier release is never loaded."""
    registry = Registry(str(tmp_path / "registry"), "m")
    version = registry.publish(b"placeholder", VersionMetadata(run_id="r", created_at="now"))
    registry.storage.write_bytes(registry.version_uri(version, "model.joblib"), b"\x80pickle")
    (tmp_path / "registry" / "m" / "versions" / version / "model.skops").unlink()
    with pytest.raises(ModelFileError, match="holds only model.joblib, a pickle, which is never "
                                             "loaded"):
        registry.load_model(version)


@pytest.mark.parametrize("model_type", ["hgb", "sgd"])
@pytest.mark.parametrize("kinds", KIND_SETS, ids=list(KIND_SETS))
def test_every_regressor_we_build_is_within_the_allow_list_and_round_trips(model_type, kinds):
    """Check that each built-in regressor names only allow-listed types and predicts the same
    after a save and a load."""
    from components.stages.retrain import fit_fresh

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=90), "c": rng.choice(["p", "q"], 90),
                          "y": rng.normal(100, 20, 90)})
    model, _ = fit_fresh(frame, frame.tail(10), label_column="y",
                         feature_kinds=KIND_SETS[kinds], model_type=model_type, epochs=2,
                         task="regression")
    data = model_bytes(model)
    assert model_types(data, "m") <= set(TRUSTED_TYPES)
    features = frame[list(KIND_SETS[kinds])]
    assert (load_model_bytes(data, "m").predict(features) == model.predict(features)).all()


def _lightgbm_version(tmp_path, model_type: str):
    """A registry whose v0001 is a LightGBM model, its metadata naming ``model_type``."""
    from components.stages.retrain import fit_fresh

    rows = pd.DataFrame({"a": np.arange(100.0), "y": np.arange(100.0) % 7})
    model, _ = fit_fresh(rows, rows.tail(10), label_column="y", feature_kinds={"a": "numeric"},
                         model_type="lightgbm_model:make_model", epochs=1, task="regression")
    registry = Registry(str(tmp_path / "registry"), "m")
    registry.publish(model_bytes(model, "lightgbm_model:make_model"), VersionMetadata(
        run_id="r1", created_at="now", libraries=library_versions(), model_type=model_type))
    return registry


def test_a_factorys_model_is_trusted_for_the_types_its_module_declares_and_no_others(tmp_path):
    """Check that a LightGBM version loads because its metadata names the installed factory
    that declares its types, and that the same file recorded as a built-in's is refused."""
    assert _lightgbm_version(tmp_path / "a", "lightgbm_model:make_model").load_model("v0001")
    with pytest.raises(UntrustedModelError, match="lightgbm.sklearn.LGBMRegressor"):
        _lightgbm_version(tmp_path / "b", "hgb").load_model("v0001")


def test_a_version_whose_factory_is_not_installed_is_refused_naming_it(tmp_path):
    """Check that a version trained by a factory this environment lacks is refused, naming
    the factory and what to install."""
    registry = _lightgbm_version(tmp_path, "team_models_gone:make_model")
    with pytest.raises(ModelFileError, match=r"made by the factory 'team_models_gone:make_model'"
                                             r", which is not installed here .*install its "
                                             r"distribution"):
        registry.load_model("v0001")
