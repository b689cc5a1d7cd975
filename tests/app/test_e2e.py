"""End to end: the compiled YAML runs under kfp.local through `retrain run --json`, month by month.

One registry lives through the whole module, as it would for a user: bootstrap, drift and a
retrain that deploys, a rerun with nothing new, a month with shuffled labels, a bad file, a crash.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app import demo_data
from tests.conftest import WebhookReceiver, outcome, retrain_cli

pytestmark = pytest.mark.slow
CUTOFFS = demo_data.demo_cutoffs()


@pytest.fixture(scope="module")
def world(tmp_path_factory, demo_folder):
    """A source folder that grows month by month, a registry, and a webhook receiver."""
    root = tmp_path_factory.mktemp("e2e")
    source = root / "source"
    source.mkdir()
    receiver = WebhookReceiver()
    yield {"root": root, "source": source, "demo": demo_folder, "webhook": receiver,
           "registry": root / "registry"}
    receiver.close()


def add_month(world, name, transform=None):
    frame = pd.read_csv(world["demo"] / name)
    if transform is not None:
        frame = transform(frame)
    frame.to_csv(world["source"] / name, index=False)


def retrain_run(world, cutoff, *extra, source=None):
    return retrain_cli(source or world["source"], world["registry"], world["root"], cutoff,
                       *extra, webhook_url=world["webhook"].url)


def pointer_bytes(world) -> bytes:
    return (world["registry"] / "customers" / "champion.json").read_bytes()


def test_1_bootstrap_deploys_v1(world):
    """Check that the first run trains on the initial quarter and deploys v0001 (cold start)."""
    shutil.copy(world["demo"] / "customers_2025-01_initial.csv", world["source"])
    result = outcome(retrain_run(world, CUTOFFS[0]))
    assert result["status"] == "deployed"
    assert result["challenger"]["version"] == "v0001"
    assert result["reason"].startswith("cold start")
    assert result["new_rows"] == 1000
    assert result["challenger"]["metrics"]["accuracy"] >= 0.80
    model_dir = world["registry"] / "customers" / "versions" / "v0001"
    assert {"model.joblib", "metadata.json", "schema.json", "statistics.json"} <= {
        p.name for p in model_dir.iterdir()}
    assert result["drift"] == [] and result["findings"] == []  # nothing to compare with yet
    assert world["webhook"].bodies == []  # a deploy alerts nobody


def test_2_drift_then_retrain_deploys_better_model(world):
    """Check that after five drifted months the retrained challenger beats the stale champion."""
    for month in ("2025-04", "2025-05", "2025-06", "2025-07", "2025-08"):
        add_month(world, f"customers_{month}.csv")
    result = outcome(retrain_run(world, CUTOFFS[5]))
    champion, challenger = result["champion"], result["challenger"]
    assert result["status"] == "deployed", result["reason"]
    assert (champion["version"], challenger["version"]) == ("v0001", "v0002")
    assert challenger["metrics"]["accuracy"] > champion["metrics"]["accuracy"]
    assert champion["metrics"]["accuracy"] < 0.80 <= challenger["metrics"]["accuracy"]
    assert result["new_rows"] == 1000
    assert "web_visits_last_month" in result["drift"]  # the demo's web activity grows
    metadata = json.loads((world["registry"] / "customers" / "versions" / "v0002" /
                           "metadata.json").read_text())
    assert metadata["parent_version"] == "v0001"
    assert metadata["data_window"]["new_watermark"].startswith("2025-08-31")


def test_3_rerun_with_no_new_data(world):
    """Check that running the same cutoff again finds nothing new and changes nothing."""
    before = pointer_bytes(world)
    result = outcome(retrain_run(world, CUTOFFS[5]))
    assert (result["status"], result["new_rows"]) == ("no-new-data", 0)
    assert pointer_bytes(world) == before


def test_4_shuffled_labels_are_rejected_and_alerted(world):
    """Check that a month of shuffled labels is rejected, alerts, and leaves the champion
    (with every stage run cold, in its own process)."""
    before = pointer_bytes(world)

    def shuffle(frame):
        frame["will_buy"] = np.random.default_rng(0).permutation(frame["will_buy"].to_numpy())
        return frame

    add_month(world, "customers_2025-09.csv", shuffle)
    # Each stage wholly in its own process, as on a cluster (no warm worker).
    result = outcome(retrain_run(world, CUTOFFS[6], "--no-warm-worker"))
    assert result["status"] == "rejected"
    log = Path(result["log"]).read_text()
    assert "warm worker" not in log and "stage evaluate_step:" in log and "stage alert_step:" in log
    assert "below the threshold" in result["reason"] or "does not beat" in result["reason"]
    assert pointer_bytes(world) == before
    [body] = world["webhook"].bodies
    assert body["status"] == "rejected" and body["model_name"] == "customers"
    assert body["text"].startswith("[retrain] customers: rejected:")


def test_5_bad_file_is_invalid_data_naming_it(world):
    """Check that a file with text in a numeric column ends as invalid-data, naming it."""
    world["webhook"].bodies.clear()
    before = pointer_bytes(world)
    bad_source = world["root"] / "bad_source"
    shutil.copytree(world["source"], bad_source)

    def typo(frame):
        frame["income"] = frame["income"].astype(object)
        frame.loc[7, "income"] = "lots"
        return frame

    frame = typo(pd.read_csv(world["demo"] / "customers_2025-10.csv"))
    frame.to_csv(bad_source / "customers_2025-10.csv", index=False)
    (bad_source / "customers_2025-09.csv").unlink()  # only the bad month is new
    result = outcome(retrain_run(world, CUTOFFS[7], "--min-rows", "10", source=bad_source))
    assert result["status"] == "invalid-data"
    assert "file customers_2025-10.csv, column 'income'" in result["reason"]
    assert "'lots'" in result["reason"]
    assert {"severity": "error", "check": "type", "file": "customers_2025-10.csv",
            "column": "income", "problem": "1 value(s) are not numbers, e.g. 'lots'"} \
        in result["findings"]
    assert pointer_bytes(world) == before
    assert [body["status"] for body in world["webhook"].bodies] == ["invalid-data"]


def test_6_crashed_run_exits_non_zero_with_one_line(world):
    """Check that a run that fails outright exits 1 with one line and alerts the team."""
    world["webhook"].bodies.clear()
    completed = retrain_run(world, CUTOFFS[7], source=world["root"] / "missing")
    assert completed.returncode == 1
    [line] = completed.stderr.strip().splitlines()
    assert "failed" in line and "missing" in line
    assert [body["status"] for body in world["webhook"].bodies] == ["failed"]


def test_7_registry_commands(world, capsys):
    """Check registry list/show and a rollback that restores v0001."""
    from app.cli import main

    args = ["--registry-uri", str(world["registry"]), "--model-name", "customers"]
    assert main(["registry", "list", "--json", *args]) == 0
    listing = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [v["version"] for v in listing["versions"]] == ["v0001", "v0002"]
    assert main(["registry", "rollback", *args]) == 0
    assert main(["registry", "show", "--json", *args]) == 0
    shown = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert shown["champion"]["version"] == "v0001"
    assert shown["champion"]["previous"] == "v0002"


def test_8_finetune_reads_no_history(world):
    """Check a fine-tune continues the champion on the new rows and reads no history at all."""
    add_month(world, "customers_2025-10.csv")
    result = outcome(retrain_run(world, CUTOFFS[7], "--strategy", "finetune"))
    assert result["status"] in ("deployed", "rejected")
    assert result["challenger"]["strategy"] == "finetune"
    newest = max((world["root"] / "pipeline_root").rglob("ingest_report"),
                 key=lambda path: path.stat().st_mtime)
    latest = json.loads(newest.read_text())
    assert latest["history_read"] == "none" and latest["history_rows"] == 0
    assert latest["new_rows"] == result["new_rows"] > 0
