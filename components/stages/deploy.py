"""Stage 6, deploy: publish the challenger as a new version and move the champion pointer.

The version is stored whole before the pointer moves (see :mod:`components.registry`), and the
pointer moves only if it still names the champion this run compared against. If another run
promoted in between, this run changes nothing and ends as ``rejected``. A deploy retried after a
failure (KFP retries this stage) is idempotent: the version an earlier attempt published is
reused, and a pointer it already moved counts as this run's promotion.
"""

from __future__ import annotations

from dataclasses import dataclass

from components.outcomes import DeployResult
from components.records import DecisionRecord, utc_now_iso
from components.registry import ChampionPointer, Registry
from components.storage import sha256_bytes

CHAMPION_CHANGED = "champion changed during the run"


@dataclass(frozen=True)
class Deployment:
    """What deploy did: ``deployed`` with the new version, or ``rejected`` with the reason (the
    version is then published but not promoted)."""

    result: str
    reason: str
    version: str


def version_metadata(record: DecisionRecord, *, model_name: str, run_id: str, label_column: str,
                     timestamp_column: str) -> dict:
    """What ``metadata.json`` says of the version (the registry adds its number and digest)."""
    challenger = record.challenger
    return {
        "model_name": model_name,
        "run_id": run_id,
        "created_at": utc_now_iso(),
        "parent_version": record.champion.version if record.champion else None,
        "metrics": challenger.metrics,
        "champion_metrics_at_deploy": record.champion.metrics if record.champion else None,
        "decision_reason": record.reason,
        "data_window": record.data,
        "params": record.params,
        "strategy": challenger.strategy,
        "model_type": challenger.model_type,
        "feature_kinds": challenger.feature_kinds,
        "classes": challenger.classes,
        "label_column": label_column,
        "timestamp_column": timestamp_column,
        "libraries": challenger.libraries,
    }


def deploy(registry: Registry, *, model: bytes, record: DecisionRecord, run_id: str,
           label_column: str, timestamp_column: str,
           extra_files: dict[str, bytes] | None = None) -> Deployment:
    """Publish the challenger's model file and promote it over the champion the gate compared.

    ``extra_files`` (``schema.json``, ``statistics.json``) are stored with the version.
    """
    champion_version = record.champion.version if record.champion else None
    digest = sha256_bytes(model)
    version = registry.published_by(run_id, digest)  # a retried deploy publishes nothing twice
    if version is None:
        metadata = version_metadata(record, model_name=registry.model_name, run_id=run_id,
                                    label_column=label_column, timestamp_column=timestamp_column)
        version = registry.publish(model, metadata, extra_files)
        registry.record_publication(run_id, version, digest)
    current = registry.champion()
    if current is not None and current.version == version:  # an earlier attempt promoted it
        return Deployment(DeployResult.DEPLOYED, record.reason, version)
    pointer = ChampionPointer(
        version=version,
        watermark=record.data.get("new_watermark"),
        consumed_files=record.data.get("consumed_files") or {},
        previous=champion_version,
        updated_at=utc_now_iso(),
        reason=f"deploy {version} by run {run_id}",
    )
    if not registry.move_champion(pointer, expected_version=champion_version):
        return Deployment(DeployResult.REJECTED, CHAMPION_CHANGED, version)
    return Deployment(DeployResult.DEPLOYED, record.reason, version)
