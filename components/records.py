"""The record each pipeline run leaves in the registry (``runs/<run_id>.json``).

It is what ``retrain run --json`` prints, and the audit trail of every decision: deployed,
rejected, invalid-data, no-new-data, skipped (the trigger policy said no).
``drift`` names the drifted features (the label too when its distribution moved) and
``findings`` lists validation findings; both are empty when validation did not run.
"""

from __future__ import annotations

from components.registry import utc_now_iso

STATUSES = ("deployed", "rejected", "invalid-data", "no-new-data", "skipped")


def build_run_record(
    *,
    status: str,
    reason: str,
    run_id: str,
    model_name: str,
    new_rows: int,
    decision_record: dict | None = None,
    champion_version: str = "",
    deployed_version: str = "",
    validation: dict | None = None,
) -> dict:
    """One run's outcome with the champion's and challenger's versions and metrics."""
    record = decision_record or {}
    champion = record.get("champion") or {}
    challenger = record.get("challenger") or {}
    validation = validation or record.get("validation") or {}
    return {
        "status": status,
        "reason": reason,
        "run_id": run_id,
        "model_name": model_name,
        "new_rows": int(new_rows),
        "champion": {
            "version": champion.get("version") or champion_version or None,
            "metrics": champion.get("metrics"),
        },
        "challenger": {
            "version": deployed_version or None,
            "strategy": challenger.get("strategy"),
            "model_type": challenger.get("model_type"),
            "metrics": challenger.get("metrics"),
        },
        "metric": record.get("metric"),
        "threshold": record.get("threshold"),
        "data": record.get("data"),
        "drift": list(validation.get("drift") or []),
        "findings": list(validation.get("findings") or []),
        "finished_at": utc_now_iso(),
    }
