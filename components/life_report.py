"""The model's life on one page: every run, decision, version and drift, from the registry.

One self-contained HTML file (``retrain report``, and the exit handler's ``model_report``
artifact in the KFP UI): the charts are SVG drawn by matplotlib (the plotting library every
Python data team has, kept current, and able to write static SVG with no script and no font or
image fetched), embedded inline; no script, no stylesheet or font from another host, so it reads
the same air-gapped, in the KFP UI's sandboxed frame and with scripts disabled. Everything that
comes from the registry is escaped. What a run or a version lacks (older releases wrote fewer
fields) is shown as missing; a record that cannot be read is named and skipped.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import datetime

from components.registry import POINTER_FILE, Registry, RegistryError, parsed_json
from components.reports import chart_svg, new_figure
from components.storage import join_uri

STATUS_COLORS = {"deployed": "#1a7f37", "rejected": "#cf222e", "invalid-data": "#bf8700",
                 "skipped": "#8c959f", "no-new-data": "#d0d7de", "failed": "#6e40c9"}
CHART_WIDTH = 9.5  # inches at 96 dpi: about 900 px
TRACED_VERSIONS = 8  # the newest versions whose training trace is drawn


@dataclass
class Life:
    """What the registry holds of one model, read tolerantly."""

    model_name: str
    registry_uri: str
    runs: list[dict] = field(default_factory=list)  # oldest first
    stages: dict[str, dict[str, dict]] = field(default_factory=dict)  # run -> stage -> entry
    moves: list[dict] = field(default_factory=list)
    versions: dict[str, dict] = field(default_factory=dict)  # version -> metadata
    traces: dict[str, list[dict]] = field(default_factory=dict)  # version -> epoch rows
    champion: dict | None = None
    unreadable: list[str] = field(default_factory=list)  # "<uri>: what is wrong"


def read_life(registry: Registry, last: int | None = None) -> Life:
    """Every run record (the newest ``last``), stage journal, pointer move and version of
    ``registry``'s model. A file that cannot be read is noted in ``unreadable`` and left out."""
    life = Life(registry.model_name, registry.registry_uri)
    run_files = _files(registry, "runs")  # records and stage journals, listed once
    for info in run_files:
        if "/" not in info.relative_path and info.relative_path.endswith(".json"):
            record = _json(registry, info.uri, life)
            if record is not None and record.get("run_id"):
                life.runs.append(record)
    life.runs.sort(key=lambda run: str(run.get("finished_at") or ""))
    if last:
        life.runs = life.runs[-last:]
    kept = {run["run_id"] for run in life.runs}
    for info in run_files:
        parts = info.relative_path.split("/")
        if len(parts) == 3 and parts[1] == "stages" and parts[0] in kept:
            entry = _json(registry, info.uri, life)
            if entry is not None:
                life.stages.setdefault(parts[0], {})[parts[2].removesuffix(".json")] = entry
    life.moves = sorted((move for info in _files(registry, "history")
                         if (move := _json(registry, info.uri, life)) is not None),
                        key=lambda move: str(move.get("time") or ""))
    for info in _files(registry, "versions"):
        version, _, name = info.relative_path.partition("/")
        if name in ("metadata.json", "training.json"):
            payload = _json(registry, info.uri, life)
            if payload is not None and name == "metadata.json":
                life.versions[version] = payload
            elif payload is not None:
                life.traces[version] = list(payload.get("trace") or [])
    life.champion = _json(registry, join_uri(registry.root, POINTER_FILE), life)
    return life


def _files(registry: Registry, folder: str):
    prefix = join_uri(registry.root, folder)
    try:
        return registry.storage.list_files(prefix) if registry.storage.exists(prefix) else []
    except Exception:  # noqa: BLE001 - an unreadable folder: the page shows what it can
        return []


def _json(registry: Registry, uri: str, life: Life) -> dict | None:
    """The JSON object at ``uri``; None when it is absent, or unreadable (then noted)."""
    try:
        data = registry.storage.read_bytes(uri)
    except FileNotFoundError:
        return None
    except Exception as error:  # noqa: BLE001 - named on the page, never a crash
        life.unreadable.append(f"{uri}: {type(error).__name__}: {error}")
        return None
    try:
        return parsed_json(data, uri, "")
    except RegistryError as error:
        life.unreadable.append(str(error).split("; to go on:")[0])
        return None


# -- charts ------------------------------------------------------------------------------------
def _svg(figure) -> str:
    return chart_svg(figure)


def _figure(height: float, rows: int = 1):
    return new_figure(CHART_WIDTH, height, rows, sharex=rows > 1)


def _runs_axis(axis) -> None:
    """Runs are counted: whole numbers on the axis."""
    from matplotlib.ticker import MaxNLocator

    axis.xaxis.set_major_locator(MaxNLocator(integer=True))


def _when(run: dict) -> datetime | None:
    try:
        return datetime.fromisoformat(str(run.get("finished_at")).replace("Z", "+00:00"))
    except ValueError:
        return None


def _version_number(version) -> float:
    return float(str(version)[1:]) if str(version).startswith("v") and \
        str(version)[1:].isdigit() else float("nan")


def timeline_chart(life: Life) -> str:
    """Runs by time, coloured by status (alert delivery failures ringed); the served version
    as a band, stepping at each pointer move; rollbacks marked."""
    figure, axis = _figure(2.6)
    runs = [(run, when) for run in life.runs if (when := _when(run)) is not None]
    for status, color in STATUS_COLORS.items():
        mine = [(when, _version_number((run.get("champion") or {}).get("version")
                                       or (run.get("challenger") or {}).get("version")))
                for run, when in runs if run.get("status") == status]
        if mine:
            axis.scatter([w for w, _ in mine], [max(v, 0) if v == v else 0 for _, v in mine],
                         s=18, color=color, label=status, zorder=3)
    undelivered = [(when, run) for run, when in runs if run.get("alert_delivery") == "failed"]
    if undelivered:
        axis.scatter([w for w, _ in undelivered], [0] * len(undelivered), s=60,
                     facecolors="none", edgecolors="#cf222e", label="alert not delivered",
                     zorder=4)
    moves = [(datetime.fromisoformat(str(m["time"]).replace("Z", "+00:00")),
              _version_number(m.get("to")), m.get("action")) for m in life.moves
             if m.get("time")]
    if moves:
        axis.step([t for t, _, _ in moves], [v for _, v, _ in moves], where="post",
                  color="#0969da", alpha=0.35, linewidth=6, label="served version")
        rollbacks = [(t, v) for t, v, action in moves if action == "rollback"]
        if rollbacks:
            axis.scatter([t for t, _ in rollbacks], [v for _, v in rollbacks], marker="v",
                         s=50, color="#0969da", label="rollback", zorder=4)
    axis.set_ylabel("version")
    axis.set_title("Runs and the served version")
    if axis.get_legend_handles_labels()[0]:
        axis.legend(loc="upper left", fontsize=7, ncol=4, frameon=False)
    figure.autofmt_xdate()
    return _svg(figure)


def gate_chart(life: Life) -> str:
    """Per run the gate compared: challenger minus champion with its confidence interval."""
    figure, axis = _figure(2.4)
    gated = [(index, run["gate"]) for index, run in enumerate(life.runs)
             if isinstance(run.get("gate"), dict) and run["gate"].get("delta") is not None]
    if gated:
        xs = [i for i, _ in gated]
        deltas = [g["delta"] for _, g in gated]
        low = [g["delta"] - (g.get("ci_low") if g.get("ci_low") is not None else g["delta"])
               for _, g in gated]
        high = [(g.get("ci_high") if g.get("ci_high") is not None else g["delta"]) - g["delta"]
                for _, g in gated]
        colors = [STATUS_COLORS.get(life.runs[i].get("status"), "#57606a") for i in xs]
        axis.errorbar(xs, deltas, yerr=[low, high], fmt="none", ecolor="#8c959f")
        axis.scatter(xs, deltas, color=colors, s=16, zorder=3)
    axis.axhline(0, color="#57606a", linewidth=0.8)
    axis.set_xlabel("run (oldest first)")
    _runs_axis(axis)
    axis.set_ylabel("challenger − champion")
    lower = any(g.get("better") == "lower" for _, g in gated)
    axis.set_title("The gate: the difference and its confidence interval"
                   + (" (an error: below 0 is better)" if lower else ""))
    return _svg(figure)


def drift_chart(life: Life) -> str:
    """A heat map of each feature's drift statistic over runs (PSI or JS), flagged cells
    marked."""
    import numpy as np

    features = sorted({name for run in life.runs for name in
                       (run.get("drift_statistics") or {})})
    figure, axis = _figure(max(1.6, 0.22 * len(features) + 0.9))
    if features:
        grid = np.full((len(features), len(life.runs)), np.nan)
        for column, run in enumerate(life.runs):
            for row, name in enumerate(features):
                value = ((run.get("drift_statistics") or {}).get(name) or {}).get("statistic")
                if isinstance(value, int | float):
                    grid[row, column] = value
        image = axis.imshow(grid, aspect="auto", cmap="Oranges", vmin=0,
                            vmax=max(0.3, float(np.nanmax(grid)) if np.isfinite(grid).any()
                                     else 0.3), interpolation="nearest")
        flagged = [(column, row) for column, run in enumerate(life.runs)
                   for row, name in enumerate(features) if name in (run.get("drift") or [])]
        if flagged:
            axis.scatter([c for c, _ in flagged], [r for _, r in flagged], marker="x", s=14,
                         color="#24292f", linewidths=0.8)
        axis.set_yticks(range(len(features)), labels=features)
        figure.colorbar(image, ax=axis, pad=0.01, label="PSI / JS distance")
    axis.set_xlabel("run (oldest first); x: drift flagged")
    _runs_axis(axis)
    axis.set_title("Drift per feature")
    return _svg(figure)


def trace_chart(life: Life) -> str:
    """The training trace (validation loss by epoch) of the newest versions."""
    figure, axis = _figure(2.4)
    for version in sorted(life.traces, key=_version_number)[-TRACED_VERSIONS:]:
        rows = [r for r in life.traces[version] if r.get("validation_loss") is not None]
        if rows:
            axis.plot([r["epoch"] for r in rows], [r["validation_loss"] for r in rows],
                      marker="o", markersize=3, label=version)
    axis.set_xlabel("epoch")
    _runs_axis(axis)
    axis.set_ylabel("loss on the selection rows")
    axis.set_title("Training traces of the newest versions")
    if life.traces:
        axis.legend(fontsize=7, frameon=False, ncol=4)
    return _svg(figure)


def stage_chart(life: Life) -> str:
    """Each stage's seconds and the run's peak memory, per run, so a slowing run shows."""
    figure, (seconds_axis, memory_axis) = _figure(3.4, rows=2)
    stages = sorted({stage for entries in life.stages.values() for stage in entries})
    index = {run["run_id"]: i for i, run in enumerate(life.runs)}
    for stage in stages:
        seconds = sorted((index[run_id], entries[stage]["seconds"])
                         for run_id, entries in life.stages.items()
                         if run_id in index and isinstance((entries.get(stage) or {})
                                                           .get("seconds"), int | float))
        if seconds:
            seconds_axis.plot(*zip(*seconds, strict=True), marker=".", label=stage)
    peaks = sorted((index[run_id], max((e.get("peak_rss_mib") or 0) for e in entries.values()))
                   for run_id, entries in life.stages.items() if run_id in index)
    if peaks:
        memory_axis.plot(*zip(*peaks, strict=True), color="#6e40c9", marker=".")
    seconds_axis.set_ylabel("seconds")
    seconds_axis.set_title("Stages: time, and the run's largest peak memory")
    if stages:
        seconds_axis.legend(fontsize=7, frameon=False, ncol=4)
    memory_axis.set_ylabel("peak MiB")
    memory_axis.set_xlabel("run (oldest first)")
    _runs_axis(memory_axis)
    return _svg(figure)


# -- the page ----------------------------------------------------------------------------------
STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px;color:#24292f;
max-width:1100px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.muted{color:#57606a}.card{border:1px solid #d0d7de;border-radius:6px;padding:12px 16px;
display:grid;grid-template-columns:max-content 1fr;gap:4px 16px}
.card dt{color:#57606a}.card dd{margin:0}
table{border-collapse:collapse;font-size:12px;width:100%}
th,td{border-bottom:1px solid #d0d7de;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f6f8fa;position:sticky;top:0}
.status{font-weight:600}td.reason{max-width:30em}.warn{background:#fff8c5;padding:6px 10px;border-radius:6px}
svg{max-width:100%;height:auto}
"""


def _e(value) -> str:
    """Registry text, escaped for HTML (a feature named ``<script>`` is shown, never run)."""
    return html.escape("" if value is None else str(value), quote=True)


def _number(value, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "-"


def page(life: Life, *, generated_at: str = "") -> str:
    """The whole page, one string of HTML."""
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8>"
             f"<meta name=viewport content='width=device-width'>"
             f"<title>{_e(life.model_name)}: the model's life</title>"
             f"<style>{STYLE}</style></head><body>",
             f"<h1>{_e(life.model_name)}: the model's life</h1>",
             f"<p class=muted>Registry {_e(life.registry_uri)}; {len(life.runs)} run(s), "
             f"{len(life.versions)} version(s), {len(life.moves)} pointer move(s)"
             f"{'; generated ' + _e(generated_at) if generated_at else ''}.</p>"]
    if life.unreadable:
        parts.append("<div class=warn id=unreadable><b>Left out, unreadable:</b><ul>"
                     + "".join(f"<li>{_e(item)}</li>" for item in life.unreadable)
                     + "</ul></div>")
    parts += [_champion_card(life),
              "<h2>Timeline</h2>", timeline_chart(life),
              "<h2>The gate</h2>", gate_chart(life),
              "<h2>Drift</h2>", drift_chart(life), _label_mix(life),
              "<h2>Training</h2>", trace_chart(life), _windows(life),
              "<h2>Stages</h2>", stage_chart(life),
              "<h2>Runs</h2>", _run_table(life), "</body></html>"]
    return "\n".join(parts)


def _champion_card(life: Life) -> str:
    pointer = life.champion
    if not pointer:
        return "<h2>Champion</h2><p id=champion>No champion yet.</p>"
    version = pointer.get("version")
    meta = life.versions.get(version) or {}
    window = meta.get("data_window") or {}
    rows = [("version", version), ("champion since", pointer.get("updated_at")),
            ("why", pointer.get("reason")), ("watermark", pointer.get("watermark")),
            ("trained by", f"{meta.get('strategy') or '-'} ({meta.get('model_type') or '-'}), "
                           f"run {meta.get('run_id') or '-'}"),
            ("trained on", f"{window.get('train_rows', '-')} training rows, "
                           f"{window.get('history_rows', '-')} history rows, data up to "
                           f"{window.get('new_watermark') or '-'}"),
            ("metrics", ", ".join(f"{k} {_number(v)}" for k, v in
                                  (meta.get("metrics") or {}).items()) or "-"),
            ("libraries", ", ".join(f"{k} {v}" for k, v in
                                    (meta.get("libraries") or {}).items()) or "-")]
    return ("<h2>Champion</h2><dl class=card id=champion>"
            + "".join(f"<dt>{_e(k)}</dt><dd data-field='{_e(k)}'>{_e(v)}</dd>" for k, v in rows)
            + "</dl>")


def _label_mix(life: Life) -> str:
    """The label's share of each class in the new rows of the newest runs that measured it."""
    measured = [run for run in life.runs if run.get("label_shares")][-12:]
    if not measured:
        return ""
    classes = sorted({c for run in measured for c in run["label_shares"]}, key=str)
    head = "".join(f"<th>{_e(c)}</th>" for c in classes)
    body = "".join(
        f"<tr><td>{_e(run.get('run_id'))}</td>" + "".join(
            f"<td>{_number(run['label_shares'].get(c), 3)}</td>" for c in classes) + "</tr>"
        for run in measured)
    return (f"<p class=muted>The label's mix in the new rows (newest {len(measured)} runs that "
            f"measured it)</p><table id=label-mix><tr><th>run</th>{head}</tr>{body}</table>")


def _windows(life: Life) -> str:
    """Each version's data window and how it was made, newest first."""
    rows = []
    for version in sorted(life.versions, key=_version_number, reverse=True)[:30]:
        meta, window = life.versions[version], life.versions[version].get("data_window") or {}
        rows.append(f"<tr><td>{_e(version)}</td><td>{_e(meta.get('created_at'))}</td>"
                    f"<td>{_e(meta.get('strategy'))}</td><td>{_e(window.get('train_rows'))}</td>"
                    f"<td>{_e(window.get('watermark_before'))}</td>"
                    f"<td>{_e(window.get('new_watermark'))}</td></tr>")
    if not rows:
        return ""
    return ("<table id=versions><tr><th>version</th><th>published</th><th>strategy</th>"
            "<th>training rows</th><th>data after</th><th>data up to</th></tr>"
            + "".join(rows) + "</table>")


def _run_table(life: Life) -> str:
    head = ("<tr><th>finished</th><th>run</th><th>status</th><th>reason</th><th>strategy</th>"
            "<th>metric</th><th>champion</th><th>challenger</th><th>difference [CI]</th>"
            "<th>threshold</th><th>evaluation rows</th><th>new rows</th><th>drift</th>"
            "<th>alert</th><th>seconds</th><th>peak MiB</th></tr>")
    rows = []
    for run in reversed(life.runs):
        gate = run.get("gate") if isinstance(run.get("gate"), dict) else {}
        metric = run.get("metric")
        champion = ((run.get("champion") or {}).get("metrics") or {}).get(metric)
        challenger = ((run.get("challenger") or {}).get("metrics") or {}).get(metric)
        entries = life.stages.get(run["run_id"], {}).values()
        seconds = sum(e.get("seconds") or 0 for e in entries)
        peak = max((e.get("peak_rss_mib") or 0 for e in entries), default=0)
        interval = (f"{_number(gate.get('delta'))} [{_number(gate.get('ci_low'))}, "
                    f"{_number(gate.get('ci_high'))}]" if gate.get("delta") is not None else "-")
        record = join_uri(life.registry_uri, life.model_name, "runs", f"{run['run_id']}.json")
        status = run.get("status")
        rows.append(
            f"<tr id='run-{_e(run['run_id'])}' data-status='{_e(status)}'>"
            f"<td>{_e(run.get('finished_at'))}</td>"
            f"<td><a href='{_e(record)}'>{_e(run['run_id'])}</a></td>"
            f"<td class=status style='color:{STATUS_COLORS.get(status, '#24292f')}'>"
            f"{_e(status)}</td><td class=reason>{_e(run.get('reason'))}</td>"
            f"<td>{_e((run.get('challenger') or {}).get('strategy'))}</td><td>{_e(metric)}</td>"
            f"<td data-champion='{_e(champion)}'>{_number(champion)}</td>"
            f"<td data-challenger='{_e(challenger)}'>{_number(challenger)}</td>"
            f"<td data-delta='{_e(gate.get('delta'))}'>{interval}</td>"
            f"<td>{_number(run.get('threshold'))}</td><td>{_e(gate.get('rows'))}</td>"
            f"<td>{_e(run.get('new_rows'))}</td><td>{_e(', '.join(run.get('drift') or []))}</td>"
            f"<td>{_e(run.get('alert_delivery'))}</td><td>{_number(seconds, 1)}</td>"
            f"<td>{_e(peak)}</td></tr>")
    return f"<table id=runs>{head}{''.join(rows)}</table>"


def write_report(registry: Registry, path, *, last: int | None = None,
                 generated_at: str = "") -> int:
    """Write the page for ``registry``'s model to ``path``; returns its size in bytes."""
    from pathlib import Path

    text = page(read_life(registry, last), generated_at=generated_at)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text, encoding="utf-8")
    return len(text.encode())


