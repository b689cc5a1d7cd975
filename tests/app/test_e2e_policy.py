"""End to end under ``--retrain-when drift``: a calm month is skipped, and its rows are not lost.

The compiled YAML runs under kfp.local: bootstrap, a month drawn from the champion's own
distribution (skipped: no alert, champion untouched), then a drifted month, whose run must see the
skipped month's rows again as well as its own. Each state is built once by a fixture and every
test reads it or works on a copy, so the tests pass in any order.
"""

import json
import shutil

import numpy as np
import pytest

from app import demo_data
from tests.helpers import WebhookReceiver, outcome, retrain_cli

pytestmark = pytest.mark.slow
CUTOFFS = demo_data.demo_cutoffs()
APRIL, MAY = 3, 4  # demo month indices counted from January 2025


class World:
    """A source folder, a registry and a pipeline root under one folder."""

    def __init__(self, root, webhook):
        self.root, self.webhook = root, webhook
        self.source, self.registry = root / "source", root / "registry"
        self.source.mkdir(parents=True, exist_ok=True)

    def add_month(self, index: int, rows: int, drift: float, seed: int) -> None:
        frame = demo_data.customers(rows, demo_data.month_start(index),
                                    demo_data.month_start(index + 1), drift,
                                    np.random.default_rng(seed))
        frame.to_csv(self.source / f"month_{index}.csv", index=False)

    def run(self, cutoff):
        return outcome(retrain_cli(self.source, self.registry, self.root, cutoff,
                                   "--retrain-when", "drift", webhook_url=self.webhook.url))

    def pointer(self) -> bytes:
        return (self.registry / "customers" / "champion.json").read_bytes()

    def copy(self, root) -> "World":
        shutil.copytree(self.source, root / "source")
        shutil.copytree(self.registry, root / "registry")
        return World(root, self.webhook)


@pytest.fixture(scope="module")
def webhook():
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def bootstrapped(tmp_path_factory, demo_folder, webhook):
    """The first run under the drift policy: no reference statistics yet."""
    world = World(tmp_path_factory.mktemp("policy"), webhook)
    (world.source / "initial.csv").write_bytes(
        (demo_folder / "customers_2025-01_initial.csv").read_bytes())
    return world, world.run(CUTOFFS[0])


@pytest.fixture(scope="module")
def after_calm_month(tmp_path_factory, bootstrapped):
    """From the bootstrap, a month drawn from the champion's own distribution, and its run."""
    world = bootstrapped[0].copy(tmp_path_factory.mktemp("calm"))
    before, alerts = world.pointer(), len(world.webhook.bodies)
    world.add_month(APRIL, rows=1000, drift=0.0, seed=101)
    return world, world.run(CUTOFFS[1]), before, world.webhook.bodies[alerts:]


def test_cold_start_retrains_without_a_reference(bootstrapped):
    """Check that with no champion (no statistics) the drift policy still trains v0001."""
    result = bootstrapped[1]
    assert (result["status"], result["challenger"]["version"]) == ("deployed", "v0001")


def test_undrifted_month_is_skipped_quietly(after_calm_month):
    """Check that a month from the champion's distribution ends skipped, alerting nobody."""
    world, result, before, alerts = after_calm_month
    assert result["status"] == "skipped", result["reason"]
    assert result["reason"].startswith("no drift detected (retrain_when=drift): largest PSI")
    assert result["drift"] == []
    assert result["new_rows"] == 1000
    assert world.pointer() == before  # the watermark did not move: the rows stay unconsumed
    assert alerts == []
    records = [json.loads(path.read_text())
               for path in (world.registry / "customers" / "runs").glob("*.json")]
    assert [r["status"] for r in records].count("skipped") == 1
    drift_pages = sorted((world.root / "pipeline_root").rglob("drift_report"))
    assert drift_pages
    assert "<svg" in drift_pages[-1].read_text()


def test_drifted_month_retrains_on_both_months(after_calm_month, tmp_path):
    """Check that the next run sees the skipped month's rows again, and retrains on drift."""
    world = after_calm_month[0].copy(tmp_path)
    world.add_month(MAY, rows=1000, drift=1.0, seed=102)
    result = world.run(CUTOFFS[2])
    assert result["new_rows"] == 2000  # April's 1000 skipped rows + May's 1000
    assert "web_visits_last_month" in result["drift"]
    assert result["status"] in ("deployed", "rejected"), result["reason"]
    assert result["challenger"]["metrics"] is not None


def test_a_drift_the_pooled_rows_hide_is_found_in_its_batch(after_calm_month, tmp_path):
    """Check the case the pooled PSI missed: a small drifted month after a skipped calm one. The
    1200 pooled rows stay under the PSI verdict (0.25); May's 200 rows alone are far over it."""
    world = after_calm_month[0].copy(tmp_path)
    world.add_month(MAY, rows=200, drift=1.0, seed=103)
    result = world.run(CUTOFFS[2])
    assert result["new_rows"] == 1200
    assert "web_visits_last_month" in result["drift"]
    [report_path] = [p for p in (world.root / "pipeline_root").rglob("validation_report")
                     if "month_4.csv" in p.read_text()]
    details = json.loads(report_path.read_text())["drift_details"]
    pooled = {f["feature"]: f for f in details["features"]}["web_visits_last_month"]
    assert 0.1 < pooled["statistic"] < 0.25
    assert pooled["verdict"] == "warn"
    may = next(b for b in details["batches"] if b["batch"].startswith("month_4.csv"))
    assert may["rows"] == 200
    assert "web_visits_last_month" in may["drifted"]
    assert may["statistics"]["web_visits_last_month"] > 0.25
    assert result["status"] in ("deployed", "rejected"), result["reason"]
