"""gs:// storage and the registry on a real local GCS (gcp-storage-emulator behind a proxy that
enforces generation preconditions as GCS does)."""

import threading
import time

import pytest

from components.records import VersionMetadata
from components.registry import ChampionPointer, ModelIntegrityError, Registry
from components.storage import ObjectNotFoundError, StorageError, storage_for
from components.storage.gcs import GCSStorage
from tests.helpers import decision_record, promote_concurrently


def test_gs_uris_get_the_gcs_backend(gs_prefix):
    """Check that storage_for serves gs:// with GCS and reads back what it wrote."""
    storage = storage_for(f"{gs_prefix}/a.txt")
    assert isinstance(storage, GCSStorage)
    storage.write_bytes(f"{gs_prefix}/a.txt", b"hello")
    storage.write_bytes(f"{gs_prefix}/sub/b.csv", b"x,y\n")
    storage.write_bytes(f"{gs_prefix}/sub/.claim", b"hidden")
    assert storage.read_bytes(f"{gs_prefix}/a.txt") == b"hello"
    assert [(f.relative_path, f.size) for f in storage.list_files(gs_prefix)] == [
        ("a.txt", 5), ("sub/b.csv", 4)]
    assert storage.exists(f"{gs_prefix}/sub")
    assert not storage.exists(f"{gs_prefix}/nope")


def test_exclusive_create_and_compare_and_swap_carry_preconditions(gcs, gs_prefix):
    """Check ifGenerationMatch on every conditional write, and that a stale one is refused."""
    storage, uri = GCSStorage(), f"{gs_prefix}/champion.json"
    assert storage.create_exclusive(uri, b"v1")
    assert not storage.create_exclusive(uri, b"v1-again")
    data, token = storage.read_with_token(uri)
    assert data == b"v1"
    assert token.isdigit()
    assert storage.compare_and_swap(uri, b"v2", token)
    assert not storage.compare_and_swap(uri, b"v3", token)  # 412: the generation moved on
    assert storage.read_bytes(uri) == b"v2"
    writes = gcs["proxy"].writes_to("champion.json")
    assert [w["query"].get("ifGenerationMatch") for w in writes] == ["0", "0", token, token]


def test_missing_object_and_forbidden_fail_fast_naming_the_object(gcs, gs_prefix):
    """Check that 404 and 403 are not retried and name the bucket and object."""
    storage = GCSStorage()
    with pytest.raises(ObjectNotFoundError, match=f"{gs_prefix}/missing.csv: not found \\(404\\)"):
        storage.read_bytes(f"{gs_prefix}/missing.csv")
    gcs["proxy"].requests.clear()
    gcs["proxy"].fail_next[:] = [403]
    started = time.monotonic()
    with pytest.raises(StorageError, match=f"{gs_prefix}/x.csv: permission denied \\(403\\)"):
        storage.read_bytes(f"{gs_prefix}/x.csv")
    downloads = [r for r in gcs["proxy"].requests if r["path"].startswith("/download/")]
    assert time.monotonic() - started < 1
    assert len(downloads) == 1


def test_transient_errors_are_retried_with_backoff(gcs, gs_prefix):
    """Check that 503 and 429 answers are retried until the call succeeds."""
    storage = GCSStorage()
    storage.write_bytes(f"{gs_prefix}/a.txt", b"data")
    gcs["proxy"].requests.clear()
    gcs["proxy"].fail_next[:] = [503, 429, 503]
    assert storage.read_bytes(f"{gs_prefix}/a.txt") == b"data"
    assert len(gcs["proxy"].requests) == 4
    gcs["proxy"].fail_next[:] = [503]
    _, token = storage.read_with_token(f"{gs_prefix}/a.txt")
    gcs["proxy"].fail_next[:] = [500]
    assert storage.compare_and_swap(f"{gs_prefix}/a.txt", b"new", token)


def test_ingest_downloads_gcs_sources_to_disk_through_transient_errors(gcs, gs_prefix,
                                                                      tmp_path, monkeypatch):
    """Check that ingest reads gs:// source files downloaded to a file (never whole in memory),
    retrying 503s, with the same rows and fingerprints as from local disk, and leaves no
    download behind."""
    import pandas as pd

    from components.stages.ingest import ingest, to_utc_timestamp
    from tests.helpers import make_rows

    local = tmp_path / "source"
    local.mkdir()
    make_rows(300, start="2025-01-01").to_csv(local / "jan.csv", index=False)
    make_rows(300, start="2025-02-01", seed=1).to_parquet(local / "feb.parquet")
    storage = GCSStorage()
    for path in local.iterdir():
        storage.write_bytes(f"{gs_prefix}/source/{path.name}", path.read_bytes())

    def whole_read(self, uri):
        raise AssertionError(f"{uri} read whole")

    monkeypatch.setattr(GCSStorage, "read_bytes", whole_read)
    gcs["proxy"].fail_next[:] = [503, 503]
    runs = {}
    for name, source in (("gcs", f"{gs_prefix}/source"), ("local", str(local))):
        out = tmp_path / name
        runs[name] = ingest(source, timestamp_column="ts", watermark=None,
                            cutoff=to_utc_timestamp("2030-01-01"),
                            new_data_path=out / "new.parquet", history_path=out / "history.parquet")
    assert not gcs["proxy"].fail_next  # both faults were met and retried
    assert runs["gcs"].report.new_files == runs["local"].report.new_files
    pd.testing.assert_frame_equal(runs["gcs"].new_data, runs["local"].new_data)
    # Nothing left beside the outputs (the download and the parts are gone), as from disk.
    assert sorted(p.name for p in (tmp_path / "gcs").iterdir()) == sorted(
        p.name for p in (tmp_path / "local").iterdir())


def test_a_retried_conditional_write_is_judged_by_the_object(gcs, gs_prefix):
    """Check a conditional write retried after a 503: its 412 means 'won' only if the object
    holds its own bytes; without a retry a 412 is always a loss, even for equal bytes."""
    storage, uri = GCSStorage(), f"{gs_prefix}/claim"
    storage.write_bytes(uri, b"mine")  # as if the first attempt landed and its answer was lost
    gcs["proxy"].fail_next[:] = [503]
    assert storage.create_exclusive(uri, b"mine") is True
    gcs["proxy"].fail_next[:] = [503]
    assert storage.create_exclusive(uri, b"theirs") is False
    assert storage.create_exclusive(uri, b"mine") is False  # no retry: plainly taken


def _registry(prefix):
    return Registry(f"{prefix}/registry", "m")


def _publish(registry, payload=b"model-bytes"):
    return registry.publish(payload, VersionMetadata(run_id="r", created_at="now"),
                            {"schema.json": b"{}"})


@pytest.mark.parametrize("round_", range(3))
def test_concurrent_promotions_have_exactly_one_winner(gcs, gs_prefix, round_):
    """Check that of many threads promoting from one champion exactly one wins, each round."""
    registry = _registry(gs_prefix)
    _publish(registry)
    assert registry.move_champion(ChampionPointer("v0001"), None)
    results = promote_concurrently(registry, 6)
    assert sorted(results) == [False] * 5 + [True]
    assert registry.versions() == [f"v{n:04d}" for n in range(1, 8)]  # no number collided
    pointer_writes = gcs["proxy"].writes_to("/champion.json")
    assert pointer_writes
    assert all("ifGenerationMatch" in w["query"] for w in pointer_writes)
    claims = gcs["proxy"].writes_to("/.claim")
    assert claims
    assert all(w["query"].get("ifGenerationMatch") == "0" for w in claims)


def test_corrupted_model_object_is_refused(gs_prefix):
    """Check that a model object altered in the bucket is not unpickled."""
    registry = _registry(gs_prefix)
    _publish(registry)
    registry.storage.write_bytes(registry.version_uri("v0001", "model.skops"), b"torn")
    with pytest.raises(ModelIntegrityError, match="v0001/model.skops has SHA-256"):
        registry.load_model("v0001")


@pytest.mark.parametrize("requests_before_stop", [1, 2, 3, 4, 5])
def test_server_stopping_mid_deploy_fails_clearly_and_keeps_the_registry(gcs, gs_prefix,
                                                                        requests_before_stop):
    """Check that GCS going silent at any point of publish+promote fails with a clear error,
    and that afterwards no half-written version is visible and the champion is unchanged."""
    registry = _registry(gs_prefix)
    _publish(registry)
    registry.move_champion(ChampionPointer("v0001"), None)
    before = registry.storage.read_bytes(f"{registry.root}/champion.json")
    proxy = gcs["proxy"]
    proxy.requests.clear()
    stop_after = requests_before_stop

    def stop_when_counted():
        while len(proxy.requests) < stop_after:
            time.sleep(0.001)
        proxy.silent = True

    watcher = threading.Thread(target=stop_when_counted, daemon=True)
    watcher.start()
    with pytest.raises(StorageError, match=f"{gs_prefix}/registry/m/.*GCS"):
        version = _publish(registry, b"new-model")
        registry.move_champion(ChampionPointer(version, previous="v0001"), "v0001")
    proxy.silent = False
    assert registry.storage.read_bytes(f"{registry.root}/champion.json") == before
    assert registry.versions() == ["v0001"]


@pytest.mark.slow
def test_whole_pipeline_with_data_registry_and_root_in_gcs(gcs, gs_prefix, demo_folder):
    """Check two kfp.local runs with CSV and Parquet sources, the registry and the pipeline
    root all in the emulator; every pointer and claim write carries its precondition."""
    import io

    import pandas as pd

    from app import demo_data
    from tests.helpers import outcome, retrain_cli

    storage = GCSStorage()
    source, registry, root = f"{gs_prefix}/source", f"{gs_prefix}/registry", f"{gs_prefix}/root"
    initial = "customers_2025-01_initial.csv"
    storage.write_bytes(f"{source}/{initial}", (demo_folder / initial).read_bytes())
    cutoffs = demo_data.demo_cutoffs()

    first = outcome(retrain_cli(source, registry, _GsPath(root), cutoffs[0]))
    assert (first["status"], first["challenger"]["version"]) == ("deployed", "v0001")

    parquet = io.BytesIO()
    pd.read_csv(demo_folder / "customers_2025-04.csv").to_parquet(parquet, index=False)
    storage.write_bytes(f"{source}/customers_2025-04.parquet", parquet.getvalue())
    second = outcome(retrain_cli(source, registry, _GsPath(root), cutoffs[1]))
    assert second["new_rows"] == 200
    assert second["status"] in ("deployed", "rejected")

    champion = Registry(registry, "customers").champion()
    assert champion.version == ("v0002" if second["status"] == "deployed" else "v0001")
    pipeline_root = f"{root}/pipeline_root"  # where retrain_cli points --pipeline-root
    assert second["log"].startswith(f"{pipeline_root}/logs/")
    stored = [f.relative_path for f in storage.list_files(pipeline_root)]
    assert any(path.endswith("/validate/drift_report") for path in stored)
    proxy = gcs["proxy"]
    assert proxy.writes_to("/champion.json")
    assert all( "ifGenerationMatch" in w["query"] for w in proxy.writes_to("/champion.json"))
    assert all(w["query"].get("ifGenerationMatch") == "0" for w in proxy.writes_to("/.claim"))


class _GsPath(str):
    """A gs:// root that ``retrain_cli`` can join ``pipeline_root`` onto like a Path."""

    def __truediv__(self, name):
        return f"{self}/{name}"


@pytest.mark.parametrize("backend", ["local", "gcs"])
def test_two_runs_deploying_at_once_one_is_rejected(tmp_path, gs_prefix, backend):
    """Check two concurrent deploys from the same champion: one deploys, the other ends
    rejected with 'champion changed during the run', and their version numbers differ."""
    from components.stages.deploy import CHAMPION_CHANGED, deploy

    root = f"{gs_prefix}/registry" if backend == "gcs" else str(tmp_path / "registry")
    registry = Registry(root, "m")
    _publish(registry)
    registry.move_champion(ChampionPointer("v0001"), None)
    results, barrier = [], threading.Barrier(2)

    def run(index):
        barrier.wait()
        results.append(deploy(Registry(root, "m"), model=f"challenger {index}".encode(),
                              record=decision_record("v0001"), run_id=f"run-{index}",
                              label_column="y", timestamp_column=""))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted((r.result, r.reason) for r in results)
    assert statuses == [("deployed", "challenger beats champion"),
                        ("rejected", CHAMPION_CHANGED)]
    assert {r.version for r in results} == {"v0002", "v0003"}
    winner = next(r for r in results if r.result == "deployed")
    assert registry.champion().version == winner.version


@pytest.mark.slow
def test_run_against_a_stopped_server_exits_1_naming_the_object(tmp_path):
    """Check that a run whose GCS is down fails with one line naming the gs:// object."""
    import os
    import subprocess
    import sys

    from tests.gcs_emulator import free_port

    env = dict(os.environ, STORAGE_EMULATOR_HOST=f"http://127.0.0.1:{free_port()}",
               RETRAIN_GCS_RETRY_SECONDS="2")
    completed = subprocess.run(
        [sys.executable, "-m", "app.cli", "run", "--source-uri", "gs://down/source",
         "--registry-uri", "gs://down/registry", "--model-name", "m", "--label-column", "y",
         "--pipeline-root", str(tmp_path / "root")],
        capture_output=True, text=True, timeout=300, env=env)
    assert completed.returncode == 1
    [line] = completed.stderr.strip().splitlines()
    assert "gs://down/registry/m/champion.json: GCS did not answer" in line, line
