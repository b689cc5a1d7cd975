"""Fixtures of the model server's tests: a registry with two versions, a running server."""

import json

import pytest

from components.data.schema import infer_schema
from components.registry import ChampionPointer, Registry
from tests.components.serving.helpers import NAME, fit, publish, start_server
from tests.helpers import make_rows


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """v0001 (champion) and v0002, two different models of the same features."""
    store = Registry(str(tmp_path_factory.mktemp("serving") / "registry"), NAME)
    models = {publish(store, fit(1, "hgb")): fit(1, "hgb"),
              publish(store, fit(2, "sgd")): fit(2, "sgd")}
    # v0001's schema: what it saw in training, against which request values are unfamiliar.
    seen = infer_schema(make_rows(300, seed=1), label_column="label", timestamp_column="ts")
    store.storage.write_bytes(store.version_uri("v0001", "schema.json"),
                              json.dumps(seen).encode())
    store.move_champion(ChampionPointer("v0001", reason="test"), None)
    return store, models


@pytest.fixture(scope="module")
def server(registry, tmp_path_factory):
    store, _ = registry
    process, url = start_server(store, tmp_path_factory.mktemp("server"), "--reload-seconds",
                                "0.2", "--max-batch-rows", "50", "--max-request-mb", "0.05")
    yield url
    process.terminate()
    process.wait(timeout=10)
