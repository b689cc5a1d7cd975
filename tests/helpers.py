"""Helpers the tests share (fixtures are in conftest.py): generated rows, a webhook receiver,
``retrain run`` in a subprocess, concurrent promotions, a small decision record."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pandas as pd

from components.records import VersionMetadata


def make_rows(n: int, *, seed: int = 0, start: str = "2025-01-01", shift: float = 0.0,
              labels=(0, 1)) -> pd.DataFrame:
    """Small labelled rows: two numeric features, one categorical, a timestamp, a learnable label."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    color = rng.choice(["red", "green", "blue"], n)
    score = x1 + 0.5 * x2 + (color == "red") + shift * (x2 - x1) * 2
    bins = np.quantile(score, np.linspace(0, 1, len(labels) + 1)[1:-1])
    label = np.asarray(labels, dtype=object)[np.digitize(score, bins)]
    times = pd.Timestamp(start, tz="UTC") + pd.to_timedelta(np.arange(n) * 3600, unit="s")
    return pd.DataFrame({"x1": x1, "x2": x2, "color": color, "label": list(label),
                         "ts": times.strftime("%Y-%m-%dT%H:%M:%SZ")})



class WebhookReceiver:
    """A real HTTP server on a free loopback port that records the JSON bodies POSTed to it."""

    def __init__(self, fail_first: int = 0, status: int = 200):
        self.bodies: list[dict] = []
        self.fail_first = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                if receiver.fail_first > 0:
                    receiver.fail_first -= 1
                    self.send_response(503)
                else:
                    receiver.bodies.append(body)
                    self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()



def retrain_command(source, registry, workdir, cutoff, *extra, webhook_url=""):
    """``retrain run --json`` on the demo's customers, as a user would type it."""
    return [sys.executable, "-m", "app.cli", "run", "--json",
            "--source-uri", str(source), "--registry-uri", str(registry),
            "--model-name", "customers", "--label-column", "will_buy",
            "--timestamp-column", "event_time", "--cutoff", cutoff,
            "--alert-webhook-url", webhook_url,
            "--pipeline-root", str(workdir / "pipeline_root"), *extra]



def retrain_cli(source, registry, workdir, cutoff, *extra, webhook_url="", env=None):
    """Run ``retrain run --json`` in a subprocess; ``env`` adds environment variables."""
    import os

    return subprocess.run(retrain_command(source, registry, workdir, cutoff, *extra,
                                          webhook_url=webhook_url),
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})



def outcome(completed) -> dict:
    """The run record ``retrain run --json`` printed last; the run must have exited 0."""
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])



def promote_concurrently(registry, attempts: int) -> list[bool]:
    """Publish a version per thread, then have every thread promote it over v0001 at once."""
    from components.registry import ChampionPointer

    results, barrier = [], threading.Barrier(attempts)

    def attempt(index):
        version = registry.publish(f"model-{index}".encode(),
                                   VersionMetadata(run_id=f"r{index}", created_at="now"))
        barrier.wait()
        results.append(registry.move_champion(ChampionPointer(version, previous="v0001"),
                                              "v0001"))

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(attempts)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results



def decision_record(champion_version: str | None, *, reason: str = "challenger beats champion",
                    decision: str = "deploy"):
    """A small decision record, as evaluate writes it, for deploy and alert tests."""
    from components.records import (
        ChallengerScores,
        ChampionScores,
        DecisionRecord,
        TrainingSummary,
        ValidationSummary,
    )

    return DecisionRecord(
        run_id="run-0", model_name="m", decision=decision, reason=reason, cold_start=False,
        metric="accuracy", threshold=0.8, min_improvement=0.0,
        params={"label_column": "y", "timestamp_column": ""},
        champion=(ChampionScores(champion_version, {"accuracy": 0.7})
                  if champion_version else None),
        challenger=ChallengerScores(TrainingSummary(
            strategy="full", requested_strategy="auto", model_type="hgb", candidates=[],
            trace=[], notes=[], feature_kinds={"x": "numeric"}, classes=[0, 1]),
            metrics={"accuracy": 0.9}),
        data={"new_rows": 10, "new_watermark": "2025-02-01T00:00:00Z", "consumed_files": {},
              "validation_rows": 2},
        validation=ValidationSummary())



def make_numbers(n: int, *, seed: int = 0, start: str = "2025-01-01", shift: float = 0.0,
                 scale: float = 100.0) -> pd.DataFrame:
    """Small rows with a number to predict (``label``, in units of ``scale``): two numeric
    features, one categorical, a timestamp; ``shift`` moves the relation between them."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    color = rng.choice(["red", "green", "blue"], n)
    signal = x1 + 0.5 * x2 + (color == "red") + shift * (x2 - x1) * 2
    label = scale * (5 + signal + 0.3 * rng.normal(size=n))
    times = pd.Timestamp(start, tz="UTC") + pd.to_timedelta(np.arange(n) * 3600, unit="s")
    return pd.DataFrame({"x1": x1, "x2": x2, "color": color, "label": np.round(label, 3),
                         "ts": times.strftime("%Y-%m-%dT%H:%M:%SZ")})


def install_package(folder, name: str, source: str, monkeypatch) -> None:
    """Install a one-module distribution ``name`` (its ``__init__.py`` is ``source``) into
    ``folder`` as pip would (a ``.dist-info`` beside the package), and put ``folder`` on this
    process's import path and on ``PYTHONPATH`` for the processes a run starts."""
    import os
    import textwrap
    from pathlib import Path

    folder = Path(folder)
    package = folder / name
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(source))
    info = folder / f"{name}-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.0.1\n")
    (info / "top_level.txt").write_text(f"{name}\n")
    (info / "RECORD").write_text(f"{name}/__init__.py,,\n")
    monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(folder), *filter(None, [os.environ.get("PYTHONPATH", "")])]))


def screenshot_offline(chromium: str, page, shot, profile, window: str):
    """Open ``page`` in headless Chromium with every network request refused and save a
    screenshot of ``window`` (``WIDTH,HEIGHT``); returns the finished process (its stderr holds
    the browser's console and load errors)."""
    return subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}",
         "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",
         "--enable-logging=stderr", "--log-level=0", f"--window-size={window}",
         f"--screenshot={shot}", page.as_uri()],
        capture_output=True, text=True, timeout=120)
