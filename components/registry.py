"""The model registry: versioned models and a champion pointer, on any :mod:`storage` backend.

Layout under ``<registry_uri>/<model_name>/``::

    versions/v0001/model.skops     the sklearn Pipeline as a skops file (never a pickle)
    versions/v0001/metadata.json   metrics, data window, params, parent, run id, SHA-256, libraries
    versions/v0001/schema.json     the data contract inferred from its training rows (validate)
    versions/v0001/statistics.json its training rows' distributions, the drift reference
    versions/v0001/training.json   how it was trained: strategy, candidates, the epoch trace
    versions/v0001/judged_rows.parquet  the rows its promotion was judged on, and how it did on
                                   each (its honest answers): where a change in its world is
                                   sought from, when later runs have no older unseen rows
    versions/v0001/.claim          written first, exclusively: two runs never get the same number
    champion.json                  the pointer: champion version, data watermark, consumed files
    runs/<run_id>.json             one record per pipeline run: status, reason, metrics
    runs/<run_id>/stages/*.json    each stage's journal entry: running, succeeded, or failed and why
    history/*.json                 every move of the pointer: time, from, to, reason, run id
    serving.json                   where the champion is served on a cluster (namespace, name)
    holdout.parquet                the rolling holdout: the newest evaluation-only rows consumed

A version is complete once its ``metadata.json`` exists (it is written last), so a crash
mid-publish leaves a claimed number without metadata, which every reader ignores. The pointer
changes only by compare-and-swap against the version the run started from.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from components.ml.models import LEGACY_MODEL_FILE, MODEL_FILE, ModelFileError, load_model_bytes
from components.params import BY_NAME
from components.records import JournalEntry, RunRecord, VersionMetadata, utc_now_iso
from components.storage import Storage, join_uri, sha256_bytes, storage_for

METADATA_FILE = "metadata.json"
POINTER_FILE = "champion.json"
SCHEMA_FILE = "schema.json"
STATISTICS_FILE = "statistics.json"
HOLDOUT_FILE = "holdout.parquet"
JUDGED_FILE = "judged_rows.parquet"


class RegistryError(Exception):
    """The registry is missing something or holds something inconsistent."""


RESTORE = "restore it from a backup or from the bucket's object versioning"
# What to do when a registry object cannot be read, by what it is.
WAY_OUT = {
    POINTER_FILE: f"{RESTORE}, or point the champion at a version again with `retrain registry "
                  "rollback --to vNNNN` (the newest entry of history/ names the version it "
                  "pointed at)",
    METADATA_FILE: f"{RESTORE}; while it is damaged the version cannot be loaded or served (if it "
                   "is the champion, `retrain registry rollback --to` another version)",
    "version": f"{RESTORE}, or `retrain registry rollback --to` another version if this one is "
               "the champion",
    "run": "it records one past run and nothing depends on it: delete it, or " + RESTORE,
    "model": f"{RESTORE}, or delete it (it is rewritten by the next deploy)",
    "history": "it records one past move of the pointer and nothing depends on it: delete it "
               "(the move drops out of `retrain registry history`), or " + RESTORE,
}


class RegistryDamageError(RegistryError):
    """A registry object exists but cannot be read: the message names it, what is wrong with
    it, and the way out; ``uri`` holds it."""

    def __init__(self, uri: str, problem: str, way_out: str):
        super().__init__(f"{uri} is damaged: {problem}; to go on: {way_out}")
        self.uri = uri

    def __reduce__(self):  # keep ``uri`` across pickling (the warm worker sends errors back)
        return (_damage_from_message, (str(self), self.uri))


def _damage_from_message(message: str, uri: str) -> RegistryDamageError:
    error = RegistryDamageError.__new__(RegistryDamageError)
    RegistryError.__init__(error, message)
    error.uri = uri
    return error


def parsed_json(data: bytes, uri: str, way_out: str, expected: type = dict):
    """``data`` (the bytes of ``uri``) as JSON of the ``expected`` type, or a
    :class:`RegistryDamageError` saying what is wrong: not text, cut short, not JSON."""
    try:
        value = json.loads(data)
    except UnicodeDecodeError:
        raise RegistryDamageError(uri, "it is not text (not UTF-8)", way_out) from None
    except json.JSONDecodeError as error:
        if error.pos >= len(error.doc.rstrip()) or error.msg.startswith("Unterminated"):
            problem = f"it is cut short ({len(data)} bytes, the JSON never closes)"
        else:
            problem = f"it is not JSON ({error.msg} at line {error.lineno} column {error.colno})"
        raise RegistryDamageError(uri, problem, way_out) from None
    if not isinstance(value, expected):
        raise RegistryDamageError(uri, f"it holds a JSON {_json_kind(type(value))}, not a JSON "
                                       f"{_json_kind(expected)}", way_out)
    return value


def _json_kind(kind: type) -> str:
    return {dict: "object", list: "array", str: "string", int: "number", float: "number",
            bool: "boolean", type(None): "null"}.get(kind, kind.__name__)


def parsed_record(cls, data: bytes, uri: str, way_out: str):
    """A record dataclass read from ``data``, with damage named as by :func:`parsed_json`."""
    payload = parsed_json(data, uri, way_out)
    try:
        return cls.from_dict(payload)
    except (TypeError, KeyError, ValueError) as error:
        raise RegistryDamageError(uri, f"its fields are not those of a {cls.__name__} "
                                       f"({error})", way_out) from None


class ModelIntegrityError(RegistryError):
    """A model file does not match the SHA-256 recorded in its metadata."""


@dataclass
class ChampionPointer:
    """What ``champion.json`` holds.

    Attributes:
        version: The champion version, e.g. ``v0003``.
        watermark: Latest event timestamp (ISO 8601, UTC) the champion line has consumed, or None.
        consumed_files: Files consumed in batch mode (no timestamp column): name -> size, sha256.
        previous: The version that was champion before this one, for rollback.
        updated_at: When the pointer last moved.
        reason: Why it moved (``deploy vNNNN by run ...``, ``rollback ...``).
    """

    version: str
    watermark: str | None = None
    consumed_files: dict[str, dict] = field(default_factory=dict)
    previous: str | None = None
    updated_at: str = ""
    reason: str = ""

    def to_json(self) -> bytes:
        return json.dumps(self.__dict__, indent=2, sort_keys=True).encode()

    @classmethod
    def from_dict(cls, payload: dict) -> ChampionPointer:
        return cls(**payload)


def version_name(number: int) -> str:
    """``7`` -> ``v0007``."""
    return f"v{number:04d}"


def version_number(name: str) -> int:
    """``v0007`` -> ``7``; raises for anything else."""
    if not (name.startswith("v") and name[1:].isdigit()):
        raise RegistryError(f"{name!r} is not a version name like 'v0001'")
    return int(name[1:])


@dataclass(frozen=True)
class DerivedParquet:
    """A derived Parquet file's bytes (the rolling holdout, a version's judged rows; None when
    there is none, or it cannot be read), and a warning when it could not be read."""

    data: bytes | None
    warning: str = ""


class Registry:
    """Versions and the champion pointer of one model in one registry."""

    def __init__(self, registry_uri: str, model_name: str, storage: Storage | None = None):
        BY_NAME["model_name"].check(model_name, "Registry")
        self.registry_uri = registry_uri
        self.model_name = model_name
        self.root = join_uri(registry_uri, model_name)
        self.storage = storage or storage_for(registry_uri)

    # -- reading -------------------------------------------------------------------------------
    def require_model(self) -> None:
        """Raise, naming what does exist, unless the registry holds this model (a typo in a
        registry URI or a model name must not read as an empty registry)."""
        storage = self.storage
        if not storage.exists(self.registry_uri):
            raise RegistryError(f"there is no registry at {self.registry_uri} (nothing is "
                                "there)")
        if storage.exists(self.root):
            return
        models = sorted({info.relative_path.split("/")[0]
                         for info in storage.list_files(self.registry_uri)
                         if "/" in info.relative_path})
        raise RegistryError(f"the registry {self.registry_uri} has no model "
                            f"{self.model_name!r}; it has: {', '.join(models) or 'none'}")

    def run_records(self) -> list[RunRecord]:
        """Every run record (not the stage journals), oldest first."""
        prefix = join_uri(self.root, "runs")
        if not self.storage.exists(prefix):
            return []
        records = [parsed_record(RunRecord, self.storage.read_bytes(info.uri), info.uri,
                                 WAY_OUT["run"])
                   for info in self.storage.list_files(prefix)
                   if "/" not in info.relative_path and info.relative_path.endswith(".json")]
        return sorted(records, key=lambda record: record.finished_at)

    def version_uri(self, version: str, filename: str = "") -> str:
        parts = ["versions", version] + ([filename] if filename else [])
        return join_uri(self.root, *parts)

    def champion(self) -> ChampionPointer | None:
        """The current champion pointer, or None before the first deploy."""
        pointer, _ = self.champion_with_token()
        return pointer

    def champion_with_token(self) -> tuple[ChampionPointer | None, str | None]:
        """The pointer and the token a later compare-and-swap must present."""
        uri = join_uri(self.root, POINTER_FILE)
        data, token = self.storage.read_with_token(uri)
        if data is None:
            return None, None
        return parsed_record(ChampionPointer, data, uri, WAY_OUT[POINTER_FILE]), token

    def metadata(self, version: str) -> VersionMetadata:
        """The ``metadata.json`` of a complete version."""
        version_number(version)
        try:
            uri = self.version_uri(version, METADATA_FILE)
            return parsed_record(VersionMetadata, self.storage.read_bytes(uri), uri,
                                 WAY_OUT[METADATA_FILE])
        except FileNotFoundError as error:
            raise RegistryError(
                f"version {version} of model {self.model_name!r} does not exist in "
                f"{self.registry_uri} (no {METADATA_FILE})"
            ) from error

    def version_json(self, version: str, filename: str) -> dict | None:
        """A JSON file stored with a version (e.g. ``schema.json``), or None if it has none."""
        uri = self.version_uri(version, filename)
        data, _ = self.storage.read_with_token(uri)
        return parsed_json(data, uri, WAY_OUT["version"]) if data is not None else None

    def versions(self) -> list[str]:
        """Complete versions, oldest first."""
        prefix = join_uri(self.root, "versions")
        if not self.storage.exists(prefix):
            return []
        complete = set()
        for info in self.storage.list_files(prefix):
            parts = info.relative_path.split("/")
            if len(parts) == 2 and parts[1] == METADATA_FILE:
                complete.add(parts[0])
        return sorted(complete, key=version_number)

    def version_list(self) -> list[dict]:
        """Every complete version with what ``retrain registry list`` shows of it, oldest first."""
        pointer = self.champion()
        listed = []
        for version in self.versions():
            meta = self.metadata(version)
            listed.append({"version": version,
                           "champion": bool(pointer and pointer.version == version),
                           "created_at": meta.created_at, "strategy": meta.strategy,
                           "model_type": meta.model_type, "metrics": meta.metrics,
                           "parent_version": meta.parent_version, "run_id": meta.run_id})
        return listed

    def load_model(self, version: str, *, allow_version_skew: bool = False):
        """Load a version's model: its SHA-256 is checked against its metadata before a byte is
        parsed, then the file's types against the allow-list (:mod:`components.ml.models`)."""
        metadata = self.metadata(version)
        uri = self.version_uri(version, MODEL_FILE)
        try:
            data = self.storage.read_bytes(uri)
        except FileNotFoundError:
            if self.storage.exists(self.version_uri(version, LEGACY_MODEL_FILE)):
                raise ModelFileError(
                    f"version {version} of {self.model_name!r} holds only {LEGACY_MODEL_FILE}, a "
                    "pickle, which is never loaded (it could run code): retrain to make a "
                    f"{MODEL_FILE} version") from None
            raise
        actual = sha256_bytes(data)
        if actual != metadata.model_sha256:
            raise ModelIntegrityError(
                f"{uri} has SHA-256 {actual}, but its {METADATA_FILE} records "
                f"{metadata.model_sha256}: refusing to load a torn or altered model")
        return load_model_bytes(data, uri, libraries=metadata.libraries,
                                allow_version_skew=allow_version_skew,
                                model_type=metadata.model_type)

    # -- writing -------------------------------------------------------------------------------
    def publish(self, model_bytes: bytes, metadata: VersionMetadata,
                extra_files: dict | None = None) -> str:
        """Store a new version and return its name; the pointer is not touched.

        The version number is claimed with an exclusive create, the model and extra files are
        written next, and ``metadata.json`` last, so the version only becomes visible when whole.
        """
        existing = [version_number(v) for v in self.versions()]
        number = max(existing, default=0) + 1
        claim = f"{metadata.run_id} {uuid.uuid4().hex}".encode()  # unique per claim
        while not self.storage.create_exclusive(self.version_uri(version_name(number), ".claim"),
                                                claim):
            number += 1
        version = version_name(number)
        self.storage.write_bytes(self.version_uri(version, MODEL_FILE), model_bytes)
        for name, data in (extra_files or {}).items():
            self.storage.write_bytes(self.version_uri(version, name), data)
        complete = dataclasses.replace(metadata, version=version,
                                       model_sha256=sha256_bytes(model_bytes))
        self.storage.write_bytes(
            self.version_uri(version, METADATA_FILE),
            json.dumps(complete.to_dict(), indent=2, sort_keys=True, default=str).encode(),
        )
        return version

    def move_champion(
        self, new_pointer: ChampionPointer, expected_version: str | None
    ) -> bool:
        """Point the champion at ``new_pointer.version`` if it is still ``expected_version``.

        Returns False, changing nothing, when another run moved the pointer in between.
        """
        current, token = self.champion_with_token()
        current_version = current.version if current else None
        if current_version != expected_version:
            return False
        return self.storage.compare_and_swap(
            join_uri(self.root, POINTER_FILE), new_pointer.to_json(), token
        )

    def rollback(self, to_version: str | None = None, *,
                 before_move: Callable[[str], None] | None = None) -> ChampionPointer:
        """Make ``to_version`` (default: the previous champion) the champion again.

        The watermark and consumed files stay: rows the newer version consumed are not read as
        new again (a ``full`` retrain still sees them as history). ``before_move(version)`` runs
        once the target is known and before the pointer moves (the cluster is moved first); if
        it raises, nothing changes.
        """
        try:
            current, token = self.champion_with_token()
        except RegistryDamageError:
            if not to_version:
                raise
            return self._repair_pointer(to_version, before_move)
        if current is None:
            raise RegistryError(f"model {self.model_name!r} has no champion to roll back")
        target = to_version or current.previous
        if not target:
            raise RegistryError(
                f"champion {current.version} of model {self.model_name!r} has no previous "
                "version; name one with --to"
            )
        self.metadata(target)  # must exist and be complete
        if target == current.version:
            raise RegistryError(f"{target} is already the champion of {self.model_name!r}")
        if before_move:
            before_move(target)
        pointer = ChampionPointer(
            version=target,
            watermark=current.watermark,
            consumed_files=current.consumed_files,
            previous=current.version,
            updated_at=utc_now_iso(),
            reason=f"rollback from {current.version} to {target}",
        )
        if not self.storage.compare_and_swap(join_uri(self.root, POINTER_FILE),
                                             pointer.to_json(), token):
            raise RegistryError("the champion changed during the rollback; nothing was changed")
        self.append_history(action="rollback", from_version=current.version, to_version=target,
                            reason=pointer.reason)
        return pointer

    def _repair_pointer(self, target: str,
                        before_move: Callable[[str], None] | None) -> ChampionPointer:
        """Replace a damaged pointer with one at ``target``: its watermark and consumed files
        are those the version was trained up to (its metadata's data window)."""
        uri = join_uri(self.root, POINTER_FILE)
        _, token = self.storage.read_with_token(uri)
        window = self.metadata(target).data_window or {}
        if before_move:
            before_move(target)
        pointer = ChampionPointer(
            version=target, watermark=window.get("new_watermark"),
            consumed_files=window.get("consumed_files") or {}, updated_at=utc_now_iso(),
            reason=f"rollback to {target}, replacing a damaged {POINTER_FILE}")
        if not self.storage.compare_and_swap(uri, pointer.to_json(), token):
            raise RegistryError("the champion changed during the rollback; nothing was changed")
        self.append_history(action="rollback", from_version=None, to_version=target,
                            reason=pointer.reason)
        return pointer

    # -- run records ---------------------------------------------------------------------------
    def write_run_record(self, run_id: str, record: RunRecord) -> str:
        """Store the record of one pipeline run; returns its URI."""
        uri = join_uri(self.root, "runs", f"{run_id}.json")
        self.storage.write_bytes(uri, json.dumps(record.to_dict(), indent=2, sort_keys=True,
                                                 default=str).encode())
        return uri

    def write_stage_entry(self, run_id: str, entry: JournalEntry) -> None:
        """Store where one stage of a run is (its journal entry)."""
        self.storage.write_bytes(
            join_uri(self.root, "runs", run_id, "stages", f"{entry.stage}.json"),
            json.dumps(entry.to_dict(), indent=2, sort_keys=True).encode())

    def stage_entries(self, run_id: str) -> dict[str, JournalEntry]:
        """Every stage's journal entry of a run, by stage (empty when there are none)."""
        prefix = join_uri(self.root, "runs", run_id, "stages")
        if not self.storage.exists(prefix):
            return {}
        return {info.relative_path.removesuffix(".json"):
                parsed_record(JournalEntry, self.storage.read_bytes(info.uri), info.uri,
                              WAY_OUT["run"])
                for info in self.storage.list_files(prefix) if info.relative_path.endswith(".json")}

    def record_publication(self, run_id: str, version: str, model_sha256: str) -> None:
        """Note which version a run published, so a retried deploy reuses it."""
        self.storage.write_bytes(join_uri(self.root, "runs", run_id, "published.json"),
                                 json.dumps({"version": version,
                                             "model_sha256": model_sha256}).encode())

    def published_by(self, run_id: str, model_sha256: str) -> str | None:
        """The complete version an earlier attempt of this run published with these model
        bytes, or None."""
        uri = join_uri(self.root, "runs", run_id, "published.json")
        data, _ = self.storage.read_with_token(uri)
        if data is None:
            return None
        noted = parsed_json(data, uri, WAY_OUT["run"])
        if noted.get("model_sha256") != model_sha256 or noted.get("version") not in \
                self.versions():
            return None
        return noted["version"]

    def append_history(self, *, action: str, from_version: str | None, to_version: str,
                       reason: str, run_id: str = "") -> None:
        """Note one move of the champion pointer (a deploy or a rollback): one object per move,
        so concurrent writers never overwrite each other."""
        time = utc_now_iso()
        entry = {"time": time, "action": action, "from": from_version, "to": to_version,
                 "reason": reason, "run_id": run_id}
        self.storage.write_bytes(join_uri(self.root, "history",
                                          f"{time.replace(':', '')}-{uuid.uuid4().hex[:6]}.json"),
                                 json.dumps(entry, sort_keys=True).encode())

    def history(self) -> list[dict]:
        """Every pointer move, oldest first."""
        prefix = join_uri(self.root, "history")
        if not self.storage.exists(prefix):
            return []
        entries = [parsed_json(self.storage.read_bytes(info.uri), info.uri, WAY_OUT["history"])
                   for info in self.storage.list_files(prefix)]
        return sorted(entries, key=lambda entry: entry["time"])

    def holdout_pool(self) -> DerivedParquet:
        """The rolling holdout (Parquet): the newest holdout rows of the data consumed so far.

        It is derived (every row in it was a run's holdout row), so one that cannot be read
        never stops a run: it is left out with a warning, and the next deploy writes it anew
        from that run's holdout rows.
        """
        uri = join_uri(self.root, HOLDOUT_FILE)
        data, problem = self._derived_parquet(uri)
        if problem:
            return DerivedParquet(None, f"the rolling holdout {uri} cannot be read ({problem}): the "
                                     "gate compared on this run's rows only, and the next "
                                     "deploy writes it anew")
        return DerivedParquet(data)

    def judged_rows(self, version: str) -> DerivedParquet:
        """The rows a version's promotion was judged on, with its honest answers on them
        (Parquet; None for a version promoted before they were kept). Derived, so one that
        cannot be read is left out with a warning: a change in the version's world is then
        sought on the rows it has not seen alone."""
        uri = self.version_uri(version, JUDGED_FILE)
        data, problem = self._derived_parquet(uri)
        if problem:
            return DerivedParquet(None, f"{uri} cannot be read ({problem}): a change in the "
                                     f"world of {version} is sought on the rows it has not seen "
                                     "alone")
        return DerivedParquet(data)

    def _derived_parquet(self, uri: str) -> tuple[bytes | None, str]:
        """A small derived Parquet file read whole (None when absent), or why it cannot be."""
        data, _ = self.storage.read_with_token(uri)
        if data is None:
            return None, ""
        import io

        import pyarrow.parquet as pq

        try:
            pq.read_table(io.BytesIO(data))  # at most max_evaluation_rows rows: read it all
        except Exception as error:  # noqa: BLE001 - any reason it cannot be read
            return None, f"{type(error).__name__}: {str(error)[:200]}"
        return data, ""

    def write_holdout_pool(self, data: bytes) -> None:
        self.storage.write_bytes(join_uri(self.root, HOLDOUT_FILE), data)

    def write_model_json(self, filename: str, payload: dict) -> None:
        """A JSON file about the model as a whole (e.g. ``serving.json``)."""
        self.storage.write_bytes(join_uri(self.root, filename),
                                 json.dumps(payload, indent=2, sort_keys=True).encode())

    def model_json(self, filename: str) -> dict | None:
        uri = join_uri(self.root, filename)
        data, _ = self.storage.read_with_token(uri)
        return parsed_json(data, uri, WAY_OUT["model"]) if data is not None else None

    def run_record(self, run_id: str) -> RunRecord | None:
        """The record a run left, or None if it left none (it crashed or is still running)."""
        uri = join_uri(self.root, "runs", f"{run_id}.json")
        data, _ = self.storage.read_with_token(uri)
        return parsed_record(RunRecord, data, uri, WAY_OUT["run"]) if data is not None else None
