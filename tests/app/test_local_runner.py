"""The local runner's bookkeeping: where a run's artifacts are, and a pipeline root that stays
bounded."""

from app.local_runner import prune_runs, run_folders
from app.summary import run_lines


def test_old_runs_are_pruned_and_nothing_else(tmp_path):
    """Check that pruning keeps the newest runs' artifact folders and logs, and touches no
    other file or folder under the pipeline root (a registry kept there included)."""
    for minute in range(25):
        (tmp_path / f"retrain-pipeline-2026-12-02-06-{minute:02d}-00-000000" / "x").mkdir(
            parents=True)
        (tmp_path / "logs").mkdir(exist_ok=True)
        (tmp_path / "logs" / f"20261202T06{minute:02d}00Z-abcdef12.log").write_text("log")
    (tmp_path / "registry" / "customers").mkdir(parents=True)
    (tmp_path / "registry" / "customers" / "champion.json").write_text("{}")
    (tmp_path / "notes.txt").write_text("mine")
    gone = prune_runs(tmp_path, 20)
    assert len(gone) == 10
    kept = [folder.name for folder in run_folders(tmp_path)]
    assert kept[0] == "retrain-pipeline-2026-12-02-06-05-00-000000"
    assert len(kept) == 20
    assert sorted(p.name for p in (tmp_path / "logs").iterdir())[0] == \
        "20261202T060500Z-abcdef12.log"
    assert (tmp_path / "registry" / "customers" / "champion.json").read_text() == "{}"
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_the_summary_says_where_the_log_and_artifacts_are():
    """Check that a plain `retrain run` prints the run's log and artifacts folder."""
    lines = run_lines({"status": "deployed", "reason": "cold start", "new_rows": 3,
                       "log": "/root/logs/r.log", "artifacts": "/root/retrain-pipeline-x",
                       "warnings": ["the rolling holdout x cannot be read"]})
    assert lines[-3:] == ["warning: the rolling holdout x cannot be read",
                          "log: /root/logs/r.log", "artifacts: /root/retrain-pipeline-x"]


def test_the_summary_says_what_the_model_predicts_and_why():
    """Check that a run's summary names its task and how it was decided (task=auto reads the
    label), right after the rows it saw."""
    lines = run_lines({"status": "deployed", "reason": "cold start", "new_rows": 3,
                       "task": "regression", "task_reason": "task=auto: the label 'y' holds "
                                                         "numbers that are not whole"})
    assert lines[3] == ("task: regression (task=auto: the label 'y' holds numbers that are not "
                        "whole)")
