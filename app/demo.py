"""``retrain demo`` (what ``make run`` runs): one more month of the built-in demo per call.

The first run bootstraps v0001 on the initial quarter; each next run moves the cutoff a month.
Where the demo is goes in ``<workdir>/demo-state.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

from app import demo_data

MODEL_NAME = "customers"


def next_demo_run(workdir: str | Path) -> tuple[dict, int, int] | None:
    """The pipeline arguments of the next demo run, its number and the number of runs; None when
    the demo has used every month. Writes the demo data on first use."""
    workdir = Path(workdir)
    data_dir = workdir / "demo-data"
    if not data_dir.exists():
        demo_data.write_demo_data(data_dir)
    runs = _state(workdir)["runs"]
    cutoffs = demo_data.demo_cutoffs()
    if runs >= len(cutoffs):
        return None
    arguments = {
        "source_uri": str(data_dir), "registry_uri": str(workdir / "registry"),
        "model_name": MODEL_NAME, "label_column": demo_data.LABEL_COLUMN,
        "timestamp_column": demo_data.TIMESTAMP_COLUMN, "cutoff": cutoffs[runs],
    }
    return arguments, runs + 1, len(cutoffs)


def record_demo_run(workdir: str | Path) -> None:
    """Count one more finished demo run."""
    state = _state(Path(workdir))
    state["runs"] += 1
    (Path(workdir) / "demo-state.json").write_text(json.dumps(state))


def _state(workdir: Path) -> dict:
    path = workdir / "demo-state.json"
    return json.loads(path.read_text()) if path.exists() else {"runs": 0}
