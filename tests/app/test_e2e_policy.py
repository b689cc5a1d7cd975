"""End to end under ``--retrain-when drift``: a calm month is skipped, and its rows are not lost.

The compiled YAML runs under kfp.local: bootstrap, a month drawn from the champion's own
distribution (skipped: no alert, champion untouched), then a drifted month, whose run must see the
skipped month's rows again as well as its own.
"""

import json

import numpy as np
import pytest

from app import demo_data
from tests.conftest import WebhookReceiver, outcome, retrain_cli

pytestmark = pytest.mark.slow
CUTOFFS = demo_data.demo_cutoffs()
APRIL, MAY = 3, 4  # demo month indices counted from January 2025


@pytest.fixture(scope="module")
def world(tmp_path_factory, demo_folder):
    root = tmp_path_factory.mktemp("policy")
    source = root / "source"
    source.mkdir()
    (source / "initial.csv").write_bytes(
        (demo_folder / "customers_2025-01_initial.csv").read_bytes())
    receiver = WebhookReceiver()
    yield {"root": root, "source": source, "registry": root / "registry", "webhook": receiver}
    receiver.close()


def add_month(world, index: int, rows: int, drift: float, seed: int) -> None:
    frame = demo_data.customers(rows, demo_data.month_start(index),
                                demo_data.month_start(index + 1), drift,
                                np.random.default_rng(seed))
    frame.to_csv(world["source"] / f"month_{index}.csv", index=False)


def run(world, cutoff):
    return outcome(retrain_cli(world["source"], world["registry"], world["root"], cutoff,
                               "--retrain-when", "drift", webhook_url=world["webhook"].url))


def pointer(world) -> bytes:
    return (world["registry"] / "customers" / "champion.json").read_bytes()


def test_1_cold_start_retrains_without_a_reference(world):
    """Check that with no champion (no statistics) the drift policy still trains v0001."""
    result = run(world, CUTOFFS[0])
    assert (result["status"], result["challenger"]["version"]) == ("deployed", "v0001")


def test_2_undrifted_month_is_skipped_quietly(world):
    """Check that a month from the champion's distribution ends skipped, alerting nobody."""
    before = pointer(world)
    add_month(world, APRIL, rows=1000, drift=0.0, seed=101)
    result = run(world, CUTOFFS[1])
    assert result["status"] == "skipped", result["reason"]
    assert result["reason"].startswith("no drift detected (retrain_when=drift): largest PSI")
    assert result["drift"] == [] and result["new_rows"] == 1000
    assert pointer(world) == before  # the watermark did not move: the rows stay unconsumed
    assert world["webhook"].bodies == []
    records = [json.loads(path.read_text())
               for path in (world["registry"] / "customers" / "runs").glob("*.json")]
    assert [r["status"] for r in records].count("skipped") == 1
    drift_pages = sorted((world["root"] / "pipeline_root").rglob("drift_report"))
    assert drift_pages and "<svg" in drift_pages[-1].read_text()


def test_3_drifted_month_retrains_on_both_months(world):
    """Check that the next run sees the skipped month's rows again, and retrains on drift."""
    add_month(world, MAY, rows=1000, drift=1.0, seed=102)
    result = run(world, CUTOFFS[2])
    assert result["new_rows"] == 2000  # April's 1000 skipped rows + May's 1000
    assert "web_visits_last_month" in result["drift"]
    assert result["status"] in ("deployed", "rejected"), result["reason"]
    assert result["challenger"]["metrics"] is not None
