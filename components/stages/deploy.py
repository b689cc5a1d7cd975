"""Stage 6, deploy: publish the challenger as a new version and move the champion pointer.

The version is stored whole before the pointer moves (see :mod:`components.registry`), and the
pointer moves only if it still names the champion this run compared against. If another run
promoted in between, this run changes nothing and ends as ``rejected``. Before that, the
published version must serve evaluate's predictions from the registry copy (infra validation),
and, when a serving namespace is set, the InferenceService must be Ready with it. A deploy retried after a
failure (KFP retries this stage) is idempotent: the version an earlier attempt published is
reused, and a pointer it already moved counts as this run's promotion.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from components.data.chunks import at_or_after, rows_since_newest
from components.outcomes import DeployResult
from components.records import DecisionRecord, VersionMetadata, utc_now_iso
from components.registry import ChampionPointer, Registry
from components.serving.infra_validation import InfraValidationError
from components.serving.kserve import ServingError
from components.storage import sha256_bytes

CHAMPION_CHANGED = "champion changed during the run"


@dataclass(frozen=True)
class Deployment:
    """What deploy did: ``deployed`` with the new version, or ``rejected`` with the reason (the
    version is then published but not promoted); ``details`` of the infra validation and the
    cluster rollout."""

    result: str
    reason: str
    version: str
    details: dict = field(default_factory=dict)


def rolled_holdout(pool: bytes | None, new_holdout, *, max_rows: int,
                   timestamp_column: str, promoted: PromotedOn | None = None) -> bytes:
    """The rolling holdout with this run's holdout rows added: the newest ``max_rows`` holdout
    rows of everything consumed, each once (Parquet bytes). The rows ``promoted`` names (those
    the gate judged the promotion on) are marked with the version they promoted, so that no
    later gate judges that version on them.

    A large holdout is not read whole: only its rows from its newest ``max_rows`` on (by event
    time), then more if repeats leave fewer than ``max_rows`` distinct rows since then. Every
    row older than that is older than ``max_rows`` rows that are kept, so it could not be kept
    either, and a row's repeats share its event time, so which copy is kept does not change."""
    import io

    frames = [pd.read_parquet(io.BytesIO(pool))] if pool else []
    wanted = max_rows
    while True:
        since, new_rows = rows_since_newest(new_holdout, wanted, timestamp_column)
        frame = _each_row_once(frames + [new_rows])
        if since is None or int(at_or_after(frame[timestamp_column], since).sum()) >= max_rows:
            break
        wanted *= 4  # many repeats among the newest rows: read further back
    if len(frame):
        if timestamp_column and timestamp_column in frame:
            frame = frame.sort_values(timestamp_column, kind="stable")
        frame = frame.tail(max_rows).reset_index(drop=True)
        if promoted is not None:
            frame = promoted.marked(frame)
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def _each_row_once(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The frames one after another, each row's first occurrence only (by content: not its
    source file nor the version it promoted)."""
    from components.data.chunks import first_occurrences, row_hashes
    from components.data.roles import PROMOTED_VERSION_COLUMN
    from components.data.schema import SOURCE_FILE_COLUMN

    frames = [f for f in frames if len(f.columns)]
    if not frames:
        return pd.DataFrame()
    frame = pd.concat(frames, ignore_index=True)
    content = [c for c in frame.columns if c not in (SOURCE_FILE_COLUMN, PROMOTED_VERSION_COLUMN)]
    return frame[first_occurrences(row_hashes(frame, content))] if len(frame) else frame


@dataclass(frozen=True)
class PromotedOn:
    """The rows a promotion was judged on (their content hashes), and the version promoted."""

    hashes: np.ndarray
    version: str
    feature_kinds: dict
    label_column: str
    timestamp_column: str

    def marked(self, frame: pd.DataFrame) -> pd.DataFrame:
        from components.data.roles import PROMOTED_VERSION_COLUMN, content_hashes

        judged = np.isin(content_hashes(frame, self.feature_kinds, self.label_column,
                                        self.timestamp_column), self.hashes)
        marks = (frame[PROMOTED_VERSION_COLUMN].astype(object) if PROMOTED_VERSION_COLUMN in frame
                 else pd.Series([None] * len(frame), index=frame.index, dtype=object))
        marks[judged] = self.version
        return frame.assign(**{PROMOTED_VERSION_COLUMN: marks})


def deploy(registry: Registry, *, model: bytes, record: DecisionRecord, run_id: str,
           label_column: str, timestamp_column: str,
           extra_files: dict[str, bytes] | None = None,
           check_serving: Callable[[str], dict] | None = None,
           serve_on_cluster: Callable[[str], dict] | None = None,
           new_holdout=None, holdout_rows: int = 5000,
           judged_rows: np.ndarray | None = None) -> Deployment:
    """Publish the challenger's model file and promote it over the champion the gate compared.

    Before the pointer moves, ``check_serving(version)`` (infra validation) and then
    ``serve_on_cluster(version)`` (the InferenceService, Ready) must succeed; either failing ends
    the deploy ``rejected`` with its reason, the champion as it was. ``extra_files``
    (``schema.json``, ``statistics.json``) are stored with the version. Once promoted, this
    run's holdout rows (``new_holdout``) join the registry's rolling holdout, which keeps the
    newest ``holdout_rows``: the rows are consumed, later runs evaluate on them (but not the
    version promoted here on the rows it was judged on, ``judged_rows``' content hashes).
    """
    champion_version = record.champion.version if record.champion else None
    digest = sha256_bytes(model)
    version = registry.published_by(run_id, digest)  # a retried deploy publishes nothing twice
    if version is None:
        metadata = VersionMetadata.of(record, model_name=registry.model_name, run_id=run_id,
                                      label_column=label_column,
                                      timestamp_column=timestamp_column)
        version = registry.publish(model, metadata, extra_files)
        registry.record_publication(run_id, version, digest)
    current = registry.champion()
    promoted = None if judged_rows is None else PromotedOn(
        judged_rows, version, record.challenger.training.feature_kinds, label_column,
        timestamp_column)
    if current is not None and current.version == version:  # an earlier attempt promoted it
        _roll_holdout(registry, new_holdout, holdout_rows, timestamp_column, promoted)
        return Deployment(DeployResult.DEPLOYED, record.reason, version)
    details = {}
    try:
        if check_serving:
            details["infra_validation"] = check_serving(version)
        if serve_on_cluster:
            details["serving"] = serve_on_cluster(version)
    except InfraValidationError as error:
        return Deployment(DeployResult.REJECTED, f"infra validation failed: {error}", version)
    except ServingError as error:
        return Deployment(DeployResult.REJECTED, f"not served: {error}", version)
    pointer = ChampionPointer(
        version=version,
        watermark=record.data.get("new_watermark"),
        consumed_files=record.data.get("consumed_files") or {},
        previous=champion_version,
        updated_at=utc_now_iso(),
        reason=f"deploy {version} by run {run_id}",
    )
    if not registry.move_champion(pointer, expected_version=champion_version):
        if serve_on_cluster and registry.champion() is not None:
            _restore(serve_on_cluster, registry.champion().version)
        return Deployment(DeployResult.REJECTED, CHAMPION_CHANGED, version, details)
    registry.append_history(action="deploy", from_version=champion_version, to_version=version,
                            reason=record.reason, run_id=run_id)
    _roll_holdout(registry, new_holdout, holdout_rows, timestamp_column, promoted)
    return Deployment(DeployResult.DEPLOYED, record.reason, version, details)


def _roll_holdout(registry: Registry, new_holdout, holdout_rows: int,
                  timestamp_column: str, promoted: PromotedOn | None) -> None:
    """Add the promoted run's holdout rows to the rolling holdout (again, on a retry: each row
    is kept once)."""
    if new_holdout is not None:
        registry.write_holdout_pool(rolled_holdout(registry.holdout_pool().data, new_holdout,
                                                   max_rows=holdout_rows,
                                                   timestamp_column=timestamp_column,
                                                   promoted=promoted))


def _restore(serve_on_cluster: Callable[[str], dict], version: str) -> None:
    """Put the cluster back on the champion another run promoted meanwhile (best effort: the
    other run's deploy put it there too)."""
    try:
        serve_on_cluster(version)
    except ServingError as error:
        print(f"the InferenceService could not be put back on {version}: {error}", flush=True)
