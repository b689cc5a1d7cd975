"""Stage 6, deploy: publish the challenger as a new version and move the champion pointer.

The version is stored whole before the pointer moves (see :mod:`components.registry`), and the
pointer moves only if it still names the champion this run compared against. If another run
promoted in between, this run changes nothing and ends as ``rejected``.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

from components.registry import ChampionPointer, Registry, utc_now_iso

CHAMPION_CHANGED = "champion changed during the run"


@dataclass(frozen=True)
class DeployResult:
    """What deploy did: ``deployed`` with the new version, or ``rejected`` with the reason."""

    status: str
    reason: str
    version: str


def library_versions() -> dict[str, str]:
    """Versions of the libraries a loader of the model file needs to match.

    Read from the installed packages' metadata: importing scikit-learn only to ask its version
    would cost this stage two seconds.
    """
    from importlib.metadata import version

    return {"python": platform.python_version(),
            **{name: version(name) for name in ("scikit-learn", "numpy", "pandas", "joblib")}}


def deploy(registry: Registry, *, model_file: str | Path, decision_record: dict,
           run_id: str, extra_files: dict[str, bytes] | None = None) -> DeployResult:
    """Publish the challenger and promote it over ``decision_record['champion']['version']``.

    ``extra_files`` (``schema.json``, ``statistics.json``) are stored with the version.
    """
    champion_version = (decision_record.get("champion") or {}).get("version") or None
    challenger = decision_record["challenger"]
    data = decision_record["data"]
    metadata = {
        "model_name": registry.model_name,
        "run_id": run_id,
        "created_at": utc_now_iso(),
        "parent_version": champion_version,
        "metrics": challenger["metrics"],
        "champion_metrics_at_deploy": (decision_record.get("champion") or {}).get("metrics"),
        "decision_reason": decision_record["reason"],
        "data_window": data,
        "params": decision_record["params"],
        "strategy": challenger["strategy"],
        "model_type": challenger["model_type"],
        "feature_kinds": challenger["feature_kinds"],
        "classes": challenger["classes"],
        "label_column": decision_record["params"]["label_column"],
        "timestamp_column": decision_record["params"]["timestamp_column"],
        "libraries": library_versions(),
    }
    version = registry.publish(Path(model_file).read_bytes(), metadata, extra_files)
    pointer = ChampionPointer(
        version=version,
        watermark=data.get("new_watermark"),
        consumed_files=data.get("consumed_files") or {},
        previous=champion_version,
        updated_at=utc_now_iso(),
        reason=f"deploy {version} by run {run_id}",
    )
    if not registry.move_champion(pointer, expected_version=champion_version):
        return DeployResult("rejected", CHAMPION_CHANGED, version)
    return DeployResult("deployed", decision_record["reason"], version)
