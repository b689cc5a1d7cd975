"""The model's life page: what it reads back from the registry, what it never runs or fetches,
what it does with damaged and old records, and how Chromium renders it with the network off."""

import json
from html.parser import HTMLParser
from pathlib import Path

import pytest

from components.life_report import page, read_life, write_report
from components.records import RunRecord, VersionMetadata
from components.registry import ChampionPointer, Registry
from tests.helpers import screenshot_offline

HOSTILE = "<script>alert(1)</script>"


def _record(number: int, status: str, **fields) -> RunRecord:
    record = RunRecord.of(status=status, reason=f"reason {number} <b>bold</b>",
                          run_id=f"run-{number:03d}", model_name="m", new_rows=100 + number)
    record.finished_at = f"2026-01-{number:02d}T00:00:00.000000Z"
    for name, value in fields.items():
        setattr(record, name, value)
    return record


@pytest.fixture
def registry(tmp_path):
    """Four runs of a model (deployed, rejected with a gate, invalid-data, skipped), two
    versions with traces, a pointer move and a rollback; a feature named like a script."""
    store = Registry(str(tmp_path / "registry"), "m")
    for number in (1, 2):
        version = store.publish(b"model", VersionMetadata(
            run_id=f"run-{number:03d}", created_at=f"2026-01-0{number}T00:00:00Z",
            strategy="full", model_type="hgb", metrics={"accuracy": 0.8 + number / 100},
            data_window={"train_rows": 500 * number, "new_watermark": "2025-03-31"},
            libraries={"scikit-learn": "1.9.1"}), {"training.json": json.dumps({"trace": [
                {"epoch": e, "validation_loss": 0.5 - e / 20 * number} for e in (1, 2, 3)]})
            .encode()})
        store.append_history(action="deploy", from_version=None, to_version=version,
                             reason="deploy", run_id=f"run-{number:03d}")
    store.move_champion(ChampionPointer("v0002", previous="v0001", reason="deploy v0002",
                                        updated_at="2026-01-02T00:00:00Z"), None)
    gate = {"delta": 0.031, "ci_low": -0.004, "ci_high": 0.066, "rows": 300,
            "method": "paired bootstrap"}
    drift = {"x1": {"test": "psi", "statistic": 0.31, "drift": 0.25, "verdict": "drift"},
             HOSTILE: {"test": "js", "statistic": 0.02, "drift": 0.1, "verdict": "ok"}}
    for record in (
            _record(1, "deployed", metric="accuracy",
                    challenger={"version": "v0001", "metrics": {"accuracy": 0.81}}),
            _record(2, "rejected", metric="accuracy", gate=gate, drift=["x1"],
                    drift_statistics=drift, label_shares={"0": 0.6, "1": 0.4},
                    champion={"version": "v0001", "metrics": {"accuracy": 0.81}},
                    challenger={"version": None, "metrics": {"accuracy": 0.841}},
                    alert_delivery="failed"),
            _record(3, "invalid-data"), _record(4, "skipped")):
        store.write_run_record(record.run_id, record)
    return store


class _Table(HTMLParser):
    """The rows of the page's run table: each row's id, status and data- attributes."""

    def __init__(self):
        super().__init__()
        self.rows, self.tags = {}, []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag == "tr" and (attrs.get("id") or "").startswith("run-"):
            self.current = self.rows.setdefault(attrs["id"].removeprefix("run-"),
                                                {"status": attrs["data-status"]})
        elif tag == "td" and any(key.startswith("data-") for key in attrs):
            self.current.update({k.removeprefix("data-"): v for k, v in attrs.items()})


def test_the_page_reads_back_every_run_as_recorded(registry):
    """Check that each run record is in the run table with its status, scores and the gate's
    difference exactly as recorded."""
    parser = _Table()
    parser.feed(page(read_life(registry)))
    assert sorted(parser.rows) == ["run-001", "run-002", "run-003", "run-004"]
    for record in registry.run_records():
        row = parser.rows[record.run_id]
        assert row["status"] == record.status
        gate = record.gate or {}
        assert row["delta"] == ("" if gate.get("delta") is None else str(gate["delta"]))
        challenger = (record.challenger.get("metrics") or {}).get(record.metric)
        assert row["challenger"] == ("" if challenger is None else str(challenger))


def test_the_page_is_one_file_that_fetches_and_runs_nothing(registry):
    """Check that the page holds no script, no reference to another host or file, and shows
    registry text escaped (a feature named like a script tag, HTML in a reason)."""
    text = page(read_life(registry))
    assert "<script" not in text.lower()
    for reference in ("src=", "href='http", 'href="http', "@import", "url(http", "<link"):
        assert reference not in text, reference
    assert html_escaped(HOSTILE) in text
    assert "reason 2 &lt;b&gt;bold&lt;/b&gt;" in text
    assert text.count("<svg") == 5  # timeline, gate, drift, traces, stages


def html_escaped(text: str) -> str:
    import html

    return html.escape(text, quote=True)


def test_damaged_and_old_records_are_named_or_shown_never_a_crash(registry):
    """Check that a run record that is not JSON is named in the page and skipped, and a record
    an earlier release wrote (few fields) is shown with what it has."""
    runs = Path(registry.root) / "runs"
    (runs / "broken.json").write_text('{"status": "deployed", "reas')
    (runs / "old.json").write_text(json.dumps({"run_id": "old", "status": "rejected",
                                               "reason": "from 0.1"}))
    life = read_life(registry)
    assert [item.split(" is damaged")[0] for item in life.unreadable] == [
        str(runs / "broken.json")]
    text = page(life)
    assert f"{runs / 'broken.json'} is damaged: it is cut short" in text
    assert "id='run-old' data-status='rejected'" in text


def test_last_keeps_the_newest_runs(registry):
    """Check that ``last`` keeps only the newest runs."""
    assert [run["run_id"] for run in read_life(registry, last=2).runs] == ["run-003", "run-004"]


def test_chromium_renders_the_page_offline_without_errors(registry, tmp_path, chromium):
    """Check the page in headless Chromium with every network request refused: it renders a
    screenshot of the whole page, and the browser logs no console error and no failed load."""
    output = tmp_path / "life.html"
    write_report(registry, output)
    shot = tmp_path / "life.png"
    completed = screenshot_offline(chromium, output, shot, tmp_path / "profile", "1100,2400")
    assert shot.exists(), completed.stderr[-2000:]
    assert shot.stat().st_size > 50_000  # a page of charts, not a blank one
    log = completed.stderr
    assert "CONSOLE" not in log, log[-2000:]
    assert "net::ERR" not in log, log[-2000:]
