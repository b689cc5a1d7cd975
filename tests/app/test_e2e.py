"""End to end: the compiled YAML runs under kfp.local through `retrain run --json`.

Two states are built once per module, as a user would reach them: the bootstrap (v0001 on the
initial quarter) and, from it, a drifted season retrained into v0002. Every test works on its own
copy of one of them, so the tests pass in any order and alone.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from app import demo_data
from tests.helpers import WebhookReceiver, outcome, retrain_cli

pytestmark = pytest.mark.slow
CUTOFFS = demo_data.demo_cutoffs()
INITIAL = "customers_2025-01_initial.csv"
DRIFTED_MONTHS = ("2025-04", "2025-05", "2025-06", "2025-07", "2025-08")


@pytest.fixture(scope="module")
def webhook():
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


class World:
    """A source folder, a registry and a pipeline root under one folder."""

    def __init__(self, root: Path, demo: Path, webhook: WebhookReceiver):
        self.root, self.demo, self.webhook = root, demo, webhook
        self.source, self.registry = root / "source", root / "registry"
        self.source.mkdir(parents=True, exist_ok=True)

    def add_month(self, month: str, transform=None) -> None:
        frame = pd.read_csv(self.demo / f"customers_{month}.csv")
        (transform(frame) if transform else frame).to_csv(
            self.source / f"customers_{month}.csv", index=False)

    def run(self, cutoff: str, *extra, source=None, webhook_url=None, env=None):
        return retrain_cli(source or self.source, self.registry, self.root, cutoff, *extra,
                           webhook_url=self.webhook.url if webhook_url is None else webhook_url,
                           env=env)

    def pointer_bytes(self) -> bytes:
        return (self.registry / "customers" / "champion.json").read_bytes()

    def copy(self, root: Path) -> "World":
        shutil.copytree(self.source, root / "source")
        shutil.copytree(self.registry, root / "registry")
        return World(root, self.demo, self.webhook)


@pytest.fixture(scope="module")
def bootstrapped(tmp_path_factory, demo_folder, webhook):
    """The first run: v0001 trained on the initial quarter (cold start)."""
    world = World(tmp_path_factory.mktemp("bootstrap"), demo_folder, webhook)
    shutil.copy(demo_folder / INITIAL, world.source)
    result = outcome(world.run(CUTOFFS[0]))
    return world, result


@pytest.fixture(scope="module")
def retrained(tmp_path_factory, bootstrapped):
    """From the bootstrap, five drifted months and a run that retrains them into v0002."""
    world = bootstrapped[0].copy(tmp_path_factory.mktemp("retrained"))
    for month in DRIFTED_MONTHS:
        world.add_month(month)
    return world, outcome(world.run(CUTOFFS[5]))


@pytest.fixture
def after_bootstrap(bootstrapped, tmp_path, webhook):
    """A copy of the bootstrapped world for one test, with no alerts received yet."""
    webhook.bodies.clear()
    return bootstrapped[0].copy(tmp_path)


def test_bootstrap_deploys_v1(bootstrapped, webhook):
    """Check that the first run trains on the initial quarter and deploys v0001 (cold start)."""
    world, result = bootstrapped
    assert result["status"] == "deployed"
    assert result["challenger"]["version"] == "v0001"
    assert result["reason"].startswith("cold start")
    assert result["new_rows"] == 1000
    assert result["challenger"]["metrics"]["accuracy"] >= 0.80
    model_dir = world.registry / "customers" / "versions" / "v0001"
    assert {"model.skops", "metadata.json", "schema.json", "statistics.json"} <= {
        p.name for p in model_dir.iterdir()}
    assert result["drift"] == []
    assert result["findings"] == []
    assert not [body for body in webhook.bodies if body["run_id"] == result["run_id"]]
    artifacts = Path(result["artifacts"])  # where the run's artifacts are, said by the run
    assert artifacts.parent == world.root / "pipeline_root"
    assert (artifacts / "evaluate" / "decision_record").exists()


def test_drift_then_retrain_deploys_better_model(retrained):
    """Check that after five drifted months the retrained challenger beats the stale champion."""
    world, result = retrained
    champion, challenger = result["champion"], result["challenger"]
    assert result["status"] == "deployed", result["reason"]
    assert (champion["version"], challenger["version"]) == ("v0001", "v0002")
    assert challenger["metrics"]["accuracy"] > champion["metrics"]["accuracy"]
    assert champion["metrics"]["accuracy"] < 0.80 <= challenger["metrics"]["accuracy"]
    assert result["new_rows"] == 1000
    assert "web_visits_last_month" in result["drift"]  # the demo's web activity grows
    metadata = json.loads((world.registry / "customers" / "versions" / "v0002" /
                           "metadata.json").read_text())
    assert metadata["parent_version"] == "v0001"
    assert metadata["data_window"]["new_watermark"].startswith("2025-08-31")


def test_rerun_with_no_new_data(after_bootstrap):
    """Check that running the same cutoff again finds nothing new and changes nothing."""
    world = after_bootstrap
    before = world.pointer_bytes()
    result = outcome(world.run(CUTOFFS[0]))
    assert (result["status"], result["new_rows"]) == ("no-new-data", 0)
    assert world.pointer_bytes() == before
    assert world.webhook.bodies == []


def test_shuffled_labels_are_rejected_and_alerted(after_bootstrap):
    """Check that a month of shuffled labels is rejected, alerts, and leaves the champion
    (with every stage run cold, in its own process)."""
    world = after_bootstrap
    before = world.pointer_bytes()

    def shuffle(frame):
        frame["will_buy"] = np.random.default_rng(0).permutation(frame["will_buy"].to_numpy())
        return frame

    world.add_month("2025-04", shuffle)
    # Each stage wholly in its own process, as on a cluster (no warm worker).
    result = outcome(world.run(CUTOFFS[1], "--no-warm-worker"))
    assert result["status"] == "rejected"
    log = Path(result["log"]).read_text()
    assert "warm worker" not in log
    assert "stage evaluate_step:" in log
    assert "stage alert_step:" in log
    # Shuffled labels leave the challenger far below the 0.8 threshold (about 0.5).
    assert result["reason"].endswith(": the challenger is below the threshold 0.800")
    assert world.pointer_bytes() == before
    [body] = world.webhook.bodies
    assert body["status"] == "rejected"
    assert body["model_name"] == "customers"
    assert body["text"].startswith("[retrain] customers: rejected:")


def test_bad_file_is_invalid_data_naming_it(after_bootstrap):
    """Check that a file with text in a numeric column ends as invalid-data, naming it, and
    that `--fail-on invalid-data` makes it exit 4 with the record still printed."""
    world = after_bootstrap
    before = world.pointer_bytes()

    def typo(frame):
        frame["income"] = frame["income"].astype(object)
        frame.loc[7, "income"] = "lots"
        return frame

    world.add_month("2025-04", typo)
    completed = world.run(CUTOFFS[1], "--min-rows", "10", "--fail-on", "invalid-data,rejected")
    assert completed.returncode == 4
    assert "error: the run ended invalid-data (--fail-on invalid-data,rejected)" in \
        completed.stderr
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["status"] == "invalid-data"
    assert "file customers_2025-04.csv, column 'income'" in result["reason"]
    assert "'lots'" in result["reason"]
    assert {"severity": "error", "check": "type", "file": "customers_2025-04.csv",
            "column": "income", "problem": "1 value(s) are not numbers, e.g. 'lots'"} \
        in result["findings"]
    assert world.pointer_bytes() == before
    assert [body["status"] for body in world.webhook.bodies] == ["invalid-data"]


def test_crashed_run_exits_non_zero_and_the_alert_names_the_stage_and_cause(after_bootstrap):
    """Check that a run that fails outright exits 1 with one line naming the stage and the
    error, and that the failure alert says the same (not KFP's 'Task exit-handler-1 failed')."""
    world = after_bootstrap
    missing = world.root / "missing"
    completed = world.run(CUTOFFS[1], source=missing)
    assert completed.returncode == 1
    [line] = completed.stderr.strip().splitlines()
    cause = f"ingest failed: ObjectNotFoundError: {missing} is neither a file nor a folder"
    assert cause in line
    printed = json.loads(completed.stdout.strip().splitlines()[-1])  # --json on every outcome
    assert printed["status"] == "failed"
    assert printed["stage"] == "ingest"
    assert printed["cause"] == f"ObjectNotFoundError: {missing} is neither a file nor a folder"
    assert printed["reason"] == cause
    assert Path(printed["log"]).exists()
    [body] = world.webhook.bodies
    assert body["status"] == "failed"
    assert cause in body["text"]
    failure = body["failure"]
    assert (failure["stage"], failure["error_type"], failure["concerns"]) == (
        "ingest", "ObjectNotFoundError", str(missing))
    assert "exit-handler" not in body["text"]


def test_registry_commands(retrained, tmp_path, capsys):
    """Check registry list/show and a rollback that restores v0001."""
    from app.cli import main

    world = retrained[0].copy(tmp_path)
    args = ["--registry-uri", str(world.registry), "--model-name", "customers"]
    assert main(["registry", "list", "--json", *args]) == 0
    listing = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [(v["version"], v["champion"]) for v in listing["versions"]] == [
        ("v0001", False), ("v0002", True)]
    assert main(["registry", "rollback", *args]) == 0
    assert main(["registry", "show", "--json", *args]) == 0
    shown = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert shown["champion"]["version"] == "v0001"
    assert shown["champion"]["previous"] == "v0002"


def test_finetune_reads_no_history(after_bootstrap):
    """Check a fine-tune continues the champion on the new rows and reads no history at all."""
    world = after_bootstrap
    world.add_month("2025-04")
    result = outcome(world.run(CUTOFFS[1], "--strategy", "finetune"))
    assert result["status"] in ("deployed", "rejected")
    assert result["challenger"]["strategy"] == "finetune"
    [report] = (world.root / "pipeline_root").rglob("ingest_report")
    latest = json.loads(report.read_text())
    assert latest["history_read"] == "none"
    assert latest["history_rows"] == 0
    assert latest["new_rows"] == result["new_rows"] == 200


def test_the_webhook_token_is_in_no_file_and_no_output(after_bootstrap, tmp_path):
    """Check that a run whose alert goes to a URL with a secret path writes that path nowhere:
    not in any file under the pipeline root or the registry, nor on stdout or stderr; and that
    the run leaves no temporary folder behind."""
    world = after_bootstrap
    token = "T0KEN-5ecret-b1e2c3d4"
    world.add_month("2025-04", lambda frame: frame.assign(
        will_buy=np.random.default_rng(1).permutation(frame["will_buy"].to_numpy())))
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    completed = world.run(CUTOFFS[1], webhook_url=f"{world.webhook.url}/services/{token}",
                          env={"TMPDIR": str(temporary)})
    result = outcome(completed)
    assert result["status"] == "rejected"
    assert result["alert_delivery"] == "delivered"
    assert [body["status"] for body in world.webhook.bodies] == ["rejected"]
    assert token not in completed.stdout + completed.stderr
    files = [p for folder in (world.root / "pipeline_root", world.registry)
             for p in folder.rglob("*") if p.is_file()]
    assert len(files) > 20
    assert [p for p in files if token.encode() in p.read_bytes()] == []
    assert list(temporary.iterdir()) == []  # kfp's per-task folders and ours, all removed


def test_an_alert_that_cannot_be_delivered_is_loud_but_changes_nothing(after_bootstrap):
    """Check that a webhook answering 500 leaves the decision and the champion as they were,
    and makes `retrain run` exit 3 saying so on stderr, with alert_delivery in the JSON."""
    world = after_bootstrap
    before = world.pointer_bytes()
    failing = WebhookReceiver(status=500)
    try:
        world.add_month("2025-04")  # a calm month; no challenger beats the champion by 0.5
        completed = world.run(CUTOFFS[1], "--min-improvement", "0.5", webhook_url=failing.url)
    finally:
        failing.close()
    assert completed.returncode == 3, completed.stdout[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert (result["status"], result["alert_delivery"]) == ("rejected", "failed")
    assert "HTTP 500" in result["alert_delivery_reason"]
    assert "but its alert was not delivered" in completed.stderr
    assert world.pointer_bytes() == before


def test_a_label_column_the_champion_lacks_is_invalid_data_naming_it(after_bootstrap):
    """Check that a run asking for a label column the data does not have, once a champion
    exists, ends invalid-data naming the column (it used to crash in preprocess)."""
    world = after_bootstrap
    world.add_month("2025-04")
    result = outcome(world.run(CUTOFFS[1], "--label-column", "nosuchcol"))
    assert result["status"] == "invalid-data"
    assert "column 'nosuchcol': required column is missing" in result["reason"]
    assert [body["status"] for body in world.webhook.bodies] == ["invalid-data"]


def test_a_hostile_file_is_invalid_data_naming_the_file_and_the_limit(after_bootstrap):
    """Check that a 50 MB CSV of one line of commas ends the run invalid-data at once."""
    world = after_bootstrap
    (world.source / "commas.csv").write_bytes(b"," * 50_000_000)
    result = outcome(world.run(CUTOFFS[1]))
    assert result["status"] == "invalid-data"
    assert "file commas.csv: not read: its first line (the header) is longer than" in \
        result["reason"]
