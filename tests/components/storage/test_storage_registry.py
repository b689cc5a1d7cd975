"""Local storage and the registry: atomic writes, exclusive claims, compare-and-swap, integrity."""

import json

import pytest

from components.records import VersionMetadata
from components.registry import ChampionPointer, ModelIntegrityError, Registry, RegistryError
from components.storage import LocalStorage
from tests.helpers import promote_concurrently


def test_write_bytes_replaces_atomically_and_leaves_no_temporaries(tmp_path):
    """Check that a write replaces the file whole and leaves no temporary files behind."""
    storage, target = LocalStorage(), str(tmp_path / "a" / "file.json")
    storage.write_bytes(target, b"one")
    storage.write_bytes(target, b"two")
    assert storage.read_bytes(target) == b"two"
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["file.json"]


def test_create_exclusive_only_once(tmp_path):
    """Check that a second exclusive create of the same object fails."""
    storage = LocalStorage()
    assert storage.create_exclusive(str(tmp_path / "claim"), b"a")
    assert not storage.create_exclusive(str(tmp_path / "claim"), b"b")
    assert storage.read_bytes(str(tmp_path / "claim")) == b"a"


def test_compare_and_swap_refuses_stale_token(tmp_path):
    """Check that compare-and-swap fails, changing nothing, when the content moved on."""
    storage, uri = LocalStorage(), str(tmp_path / "pointer")
    assert storage.compare_and_swap(uri, b"v1", None)
    _, token = storage.read_with_token(uri)
    assert storage.compare_and_swap(uri, b"v2", token)
    assert not storage.compare_and_swap(uri, b"v3", token)
    assert storage.read_bytes(uri) == b"v2"


def test_list_files_skips_hidden_temporaries(tmp_path):
    """Check that listing ignores hidden files (locks, unfinished writes)."""
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.csv").write_text("x")
    (tmp_path / "d" / ".a.csv.tmp").write_text("partial")
    assert [f.relative_path for f in LocalStorage().list_files(str(tmp_path / "d"))] == ["a.csv"]


@pytest.fixture
def registry(tmp_path):
    return Registry(str(tmp_path / "registry"), "m")


def _publish(registry, payload=b"model-bytes"):
    return registry.publish(payload, VersionMetadata(run_id="r", created_at="now"))


def test_publish_numbers_versions_and_writes_metadata_last(registry):
    """Check that versions are numbered v0001, v0002 and carry the model's SHA-256."""
    assert _publish(registry) == "v0001"
    assert _publish(registry, b"other") == "v0002"
    assert registry.versions() == ["v0001", "v0002"]
    assert len(registry.metadata("v0002").model_sha256) == 64


def test_claimed_version_without_metadata_is_invisible(registry):
    """Check that a crash between claim and metadata leaves a version no reader sees."""
    registry.storage.create_exclusive(registry.version_uri("v0001", ".claim"), b"crashed")
    registry.storage.write_bytes(registry.version_uri("v0001", "model.skops"), b"half")
    assert registry.versions() == []
    assert _publish(registry) == "v0002"


def test_tampered_model_is_refused(registry):
    """Check that a model whose bytes do not match its recorded SHA-256 is not unpickled."""
    _publish(registry)
    registry.storage.write_bytes(registry.version_uri("v0001", "model.skops"), b"evil")
    with pytest.raises(ModelIntegrityError, match="v0001/model.skops has SHA-256"):
        registry.load_model("v0001")


def test_move_champion_requires_expected_version(registry):
    """Check that the pointer moves only from the version the caller started from."""
    assert registry.move_champion(ChampionPointer("v0001"), expected_version=None)
    assert not registry.move_champion(ChampionPointer("v0002"), expected_version=None)
    assert registry.move_champion(ChampionPointer("v0002", previous="v0001"), "v0001")
    assert registry.champion().version == "v0002"


def test_concurrent_promotions_have_exactly_one_winner(registry):
    """Check that of many threads promoting from the same champion exactly one wins."""
    _publish(registry)
    registry.move_champion(ChampionPointer("v0001"), None)
    results = promote_concurrently(registry, 8)
    assert sorted(results) == [False] * 7 + [True]
    assert len(set(registry.versions())) == 9  # version numbers never collide


def test_rollback_restores_previous_and_keeps_watermark(registry):
    """Check that rollback points at the previous version and keeps the data watermark."""
    _publish(registry), _publish(registry)
    registry.move_champion(ChampionPointer("v0001", watermark="2025-01-01T00:00:00Z"), None)
    registry.move_champion(ChampionPointer("v0002", watermark="2025-02-01T00:00:00Z",
                                           previous="v0001"), "v0001")
    pointer = registry.rollback()
    assert (pointer.version, pointer.previous) == ("v0001", "v0002")
    assert pointer.watermark == "2025-02-01T00:00:00Z"
    stored = json.loads(registry.storage.read_bytes(f"{registry.root}/champion.json"))
    assert stored["version"] == "v0001"


def test_rollback_without_champion_is_refused(registry):
    """Check that rolling back an empty registry names the problem."""
    with pytest.raises(RegistryError, match="no champion to roll back"):
        registry.rollback()


@pytest.mark.parametrize("name", ["a/b", "..", "a..b", "", "/abs"], ids=str)
def test_unsafe_model_names_are_refused(tmp_path, name):
    """Check that model names that could escape the registry folder are refused."""
    with pytest.raises(ValueError, match="'model_name' parameter"):
        Registry(str(tmp_path), name)


def _promote_in_process(root, index, start, results):
    registry = Registry(root, "m")
    version = _publish(registry, f"process-{index}".encode())
    start.wait()
    results.put(registry.move_champion(ChampionPointer(version, previous="v0001"), "v0001"))


@pytest.mark.parametrize("round_", range(3))
def test_concurrent_promotions_across_processes_have_exactly_one_winner(tmp_path, round_):
    """Check the local race for real: separate processes (flock + rename), one winner each time."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    root = str(tmp_path / "registry")
    registry = Registry(root, "m")
    _publish(registry)
    registry.move_champion(ChampionPointer("v0001"), None)
    start, results = context.Barrier(6), context.Queue()
    processes = [context.Process(target=_promote_in_process, args=(root, i, start, results))
                 for i in range(6)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
    outcomes = sorted(results.get(timeout=5) for _ in processes)
    assert outcomes == [False] * 5 + [True]
    assert registry.versions() == [f"v{n:04d}" for n in range(1, 8)]
    assert registry.champion().version != "v0001"
