"""submit and schedule against a local server speaking KFP's v2beta1 REST API; cron conversion."""

import re
from datetime import datetime, timezone

import pytest

from app.cli import main
from app.cron import CronError, next_run_times, to_kfp_cron
from pipelines.retrain_pipeline import COMPILED_PIPELINE
from tests.fake_kfp import FakeKfp

RUN_FLAGS = ["--source-uri", "gs://data/customers", "--registry-uri", "gs://models/registry",
             "--model-name", "customers", "--label-column", "will_buy",
             "--timestamp-column", "event_time"]


@pytest.mark.parametrize("given, expected", [
    ("0 0 * * *", "0 0 0 * * *"),
    ("*/15 9-17 * * MON-FRI", "0 */15 9-17 * * MON-FRI"),
    ("30 2 1 * *", "0 30 2 1 * *"),
    ("0 0 0 * * *", "0 0 0 * * *"),
    ("0 0 6 * * ?", "0 0 6 * * ?"),
    ("  0   0 * *  * ", "0 0 0 * * *"),
    ("@daily", "0 0 0 * * *"),
    ("@hourly", "0 0 * * * *"),
])
def test_cron_conversion(given, expected):
    """Check that 5-field, 6-field and @-shortcut forms become KFP's seconds-first 6 fields."""
    assert to_kfp_cron(given) == expected


@pytest.mark.parametrize("given, message", [
    ("0 24 * * *", "the hour field '24' is not valid (allowed: 0-23"),
    ("60 * * * *", "the minute field '60' is not valid"),
    ("0 0 32 * *", "the day of month field '32'"),
    ("0 0 1 13 *", "the month field '13'"),
    ("0 0 * * 9", "the day of week field '9'"),
    ("61 0 0 * * *", "the second field '61'"),
    ("* * *", "has 3 field(s); expected 5"),
    ("", "has 0 field(s)"),
    ("0 0 31 2 *", "never fires"),
    ("daily", "has 1 field(s)"),
])
def test_invalid_cron_is_refused_naming_the_field(given, message):
    """Check that bad expressions are refused with the offending field named."""
    with pytest.raises(CronError, match=re.escape(message)):
        to_kfp_cron(given)


def test_next_run_times():
    """Check the next three firing times of a converted daily schedule."""
    start = datetime(2026, 11, 22, 10, 0, tzinfo=timezone.utc)
    assert [t.isoformat() for t in next_run_times(to_kfp_cron("0 2 * * *"), start)] == [
        "2026-11-23T02:00:00+00:00", "2026-11-24T02:00:00+00:00", "2026-11-25T02:00:00+00:00"]


@pytest.fixture
def kfp():
    server = FakeKfp()
    yield server
    server.close()


def test_submit_uploads_creates_experiment_and_starts_a_run(kfp, capsys, monkeypatch):
    """Check the calls: new pipeline + version upload, experiment created, run with params;
    the token goes in the Authorization header and is printed nowhere."""
    monkeypatch.setenv("KFP_TOKEN", "s3cret-token")
    assert main(["submit", "--host", kfp.url, "--version-name", "v1", *RUN_FLAGS]) == 0
    out = capsys.readouterr()
    [run] = kfp.runs.values()
    assert out.out.strip() == f"run {run['run_id']} started: {kfp.url}/#/runs/details/{run['run_id']}"
    assert "s3cret" not in out.out + out.err
    [upload] = [r for r in kfp.requests if r["path"] == "/apis/v2beta1/pipelines/upload"]
    [version] = [r for r in kfp.requests if r["path"].endswith("/pipelines/upload_version")]
    assert upload["query"]["name"] == "retrain-pipeline"
    assert version["query"] == {"name": "v1", "pipelineid": next(iter(kfp.pipelines))}
    committed = COMPILED_PIPELINE.read_text()
    assert upload["upload"].strip() == version["upload"].strip() == committed.strip()
    [experiment] = kfp.experiments.values()
    assert experiment["display_name"] == "retrain"
    assert run["experiment_id"] == experiment["experiment_id"]
    assert run["pipeline_version_reference"]["pipeline_version_id"] in kfp.versions
    parameters = run["runtime_config"]["parameters"]
    assert parameters["source_uri"] == "gs://data/customers"
    assert parameters["label_column"] == "will_buy"
    assert parameters["threshold"] == -1.0  # the metric's default
    assert all(r["headers"].get("authorization") == "Bearer s3cret-token" for r in kfp.requests)


def test_submit_again_adds_a_version_and_reuses_the_experiment(kfp, capsys):
    """Check that a second submit uploads a new version of the same pipeline."""
    for version in ("v1", "v2"):
        assert main(["submit", "--host", kfp.url, "--version-name", version, *RUN_FLAGS]) == 0
    assert len(kfp.pipelines) == 1
    assert len(kfp.experiments) == 1
    assert sorted(v["display_name"] for v in kfp.versions.values()) == ["v1", "v2"]
    assert len(kfp.runs) == 2


def test_schedule_creates_a_safe_recurring_run_and_replaces_by_name(kfp, capsys):
    """Check cron conversion, max concurrency 1, no catch-up, empty cutoff, and that scheduling
    the same name again replaces the old recurring run (KFP cannot update one in place)."""
    args = ["schedule", "--host", kfp.url, "--cron", "0 2 * * *", "--name", "nightly", *RUN_FLAGS]
    assert main(args) == 0
    first_out = capsys.readouterr().out
    assert "KFP cron: '0 0 2 * * *' (seconds first); next runs (UTC): " in first_out
    [first] = kfp.recurring_runs.values()
    assert first["trigger"]["cron_schedule"]["cron"] == "0 0 2 * * *"
    assert first["max_concurrency"] in (1, "1")
    assert first["no_catchup"] is True
    assert first["runtime_config"]["parameters"]["cutoff"] == ""
    assert main(args) == 0
    [second] = kfp.recurring_runs.values()
    assert second["recurring_run_id"] != first["recurring_run_id"]
    assert kfp.calls("DELETE", f"/recurringruns/{first['recurring_run_id']}")
    assert "replaced 1 recurring run(s)" in capsys.readouterr().out


def test_schedule_list_disable_delete(kfp, capsys):
    """Check --list, --disable and --delete by name."""
    assert main(["schedule", "--host", kfp.url, "--cron", "@daily", "--name", "daily",
                 *RUN_FLAGS]) == 0
    capsys.readouterr()
    assert main(["schedule", "--host", kfp.url, "--list"]) == 0
    assert "daily  ENABLED  cron '0 0 0 * * *'" in capsys.readouterr().out
    assert main(["schedule", "--host", kfp.url, "--disable", "daily"]) == 0
    assert [r["status"] for r in kfp.recurring_runs.values()] == ["DISABLED"]
    assert main(["schedule", "--host", kfp.url, "--delete", "daily"]) == 0
    assert kfp.recurring_runs == {}
    assert main(["schedule", "--host", kfp.url, "--delete", "daily"]) == 1
    assert "no recurring run named 'daily'" in capsys.readouterr().err


def test_schedule_refuses_bad_cron_before_any_call(kfp, capsys):
    """Check that '0 24 * * *' exits 2 with the field named, and nothing reaches the server."""
    assert main(["schedule", "--host", kfp.url, "--cron", "0 24 * * *", *RUN_FLAGS]) == 2
    assert "the hour field '24' is not valid" in capsys.readouterr().err
    assert kfp.requests == []


def test_unreachable_host_is_one_clear_line(capsys):
    """Check that a host where nothing listens fails with exit 1 naming the host."""
    from tests.gcs_emulator import free_port

    host = f"http://127.0.0.1:{free_port()}"
    assert main(["submit", "--host", host, *RUN_FLAGS]) == 1
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: RemoteError: cannot reach the KFP API at {host}")


def test_an_api_error_is_one_line_naming_host_and_call(kfp):
    """Check that a status the API answers with (here 404 on an unknown call) names the host."""
    from app.remote import RemoteError, connect

    client = connect(kfp.url)
    with pytest.raises(RemoteError, match=f"the KFP API at {kfp.url} answered 404 Not Found "
                                          "to get_run"):
        client.get_run("no-such-run")
