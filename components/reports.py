"""What the KFP UI shows of a run: Markdown and HTML made from the records and statistics.

Rendering only: every number here was computed elsewhere.
"""

from __future__ import annotations

import html
import io
import json

from components.data.drift import MIN_BATCH_ROWS, DriftReport, FeatureDrift
from components.ml.comparison import percent
from components.ml.metrics import METRIC_NAMES, TRACE_SCORE
from components.outcomes import GateMetric, Task
from components.records import DecisionRecord, TrainingSummary, ValidationReport, number


# -- charts (matplotlib, inline SVG) -----------------------------------------------------------
def chart_svg(figure) -> str:
    """A figure as inline SVG: text as paths, so no font is fetched or needed."""
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight",
                   metadata={"Creator": None, "Date": None, "Format": None, "Type": None})
    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def new_figure(width: float, height: float, rows: int = 1, columns: int = 1, **options):
    """A matplotlib figure drawn without a screen, the same runs giving the same bytes."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams.update({"svg.fonttype": "path", "font.size": 9,
                                "svg.hashsalt": "retrain"})
    import matplotlib.pyplot as plt

    return plt.subplots(rows, columns, figsize=(width, height), **options)


# -- validate ----------------------------------------------------------------------------------
def validation_markdown(report: ValidationReport) -> str:
    """The findings table."""
    lines = ["# Data validation", "", f"New rows: {report.rows}. "
             f"Errors: {len(report.errors)}. Warnings: {len(report.warnings)}.", ""]
    if report.findings:
        lines += ["| severity | check | file | column | problem |", "|---|---|---|---|---|"]
        lines += [f"| {f.severity} | {f.check or '-'} | {f.file or '-'} | {f.column or '-'} "
                  f"| {f.problem.replace('|', '/')} |" for f in report.findings]
    else:
        lines.append("No problems found.")
    return "\n".join(lines) + "\n"


def drift_markdown(drift: DriftReport, ks_alpha: float) -> str:
    """The per-feature drift table: statistic, thresholds, KS p-value, verdict."""
    lines = ["## Drift against the champion's training data", "",
             f"Reference rows: {drift.reference_rows}. New rows: {drift.new_rows}. "
             f"Drifted: {', '.join(drift.drifted) or 'none'}.", "",
             "| feature | kind | test | statistic | warn / drift at | KS p-value | verdict |",
             "|---|---|---|---|---|---|---|"]
    for f in drift.features:
        p_value = "-" if f.ks_pvalue is None else (
            f"{f.ks_pvalue:.3g}" + (" (<α)" if f.ks_pvalue < ks_alpha else ""))
        statistic = "-" if f.statistic is None else f"{f.statistic:.4f}"
        name = f"{f.feature} (label)" if f.is_label else f.feature
        lines.append(f"| {name} | {f.kind} | {f.test.upper()} | {statistic} | "
                     f"{f.warn:g} / {f.drift:g} | {p_value} | {f.verdict} |")
    lines += ["", "PSI over the reference's decile bins (numeric); Jensen-Shannon distance, "
              f"base 2 (categorical, label). KS p-values (α = {ks_alpha:g}) are shown "
              "alongside; with many rows they flag even tiny shifts, so they do not decide."]
    if drift.batches:
        lines += ["", "### Per batch", "",
                  f"A feature drifts when the pooled rows or any batch of at least "
                  f"{MIN_BATCH_ROWS} rows drifts.", "",
                  "| batch | rows | drifted | largest statistic |", "|---|---|---|---|"]
        for batch in drift.batches:
            scored = [f for f in batch.features if f.statistic is not None]
            top = max(scored, key=lambda f: f.statistic / f.drift, default=None)
            largest = (f"{top.test.upper()} {top.statistic:.4f} ({top.feature})"
                       if top else "-")
            drifted = (", ".join(batch.drifted) or "none") if batch.judged else (
                f"not judged (under {MIN_BATCH_ROWS} rows)")
            lines.append(f"| {batch.batch.replace('|', '/')} | {batch.rows} | {drifted} | "
                         f"{largest} |")
    return "\n".join(lines) + "\n"


NO_DRIFT_REFERENCE = ("No drift reference yet: the champion's training statistics are stored at "
                      "its first deploy.\n")


def validate_markdown(report: ValidationReport, drift: DriftReport | None, *, schema_source: str,
                      decision: str, reason: str, ks_alpha: float) -> str:
    """The validate stage's whole Markdown report: findings, decision, drift."""
    return (validation_markdown(report)
            + f"\nSchema: {schema_source}. Decision: **{decision}**: {reason}\n\n"
            + (drift_markdown(drift, ks_alpha) if drift else NO_DRIFT_REFERENCE))


def drift_html(drift: DriftReport | None) -> str:
    """A self-contained page: one small reference-vs-new histogram per feature."""
    if drift is None:
        return "<!doctype html><p>No drift reference yet (no champion statistics).</p>\n"
    cards = "\n".join(_histogram_card(f) for f in drift.features)
    drifted = html.escape(", ".join(drift.drifted) or "none")
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Drift report</title>"
        "<style>body{font-family:sans-serif;margin:16px}.grid{display:flex;flex-wrap:wrap;"
        "gap:12px}.card{border:1px solid #ddd;border-radius:6px;padding:8px;width:300px}"
        ".drift{color:#b00020;font-weight:bold}.warn{color:#b36b00}.ok{color:#1b5e20}"
        "h3{font-size:14px;margin:0 0 4px}small{color:#555}</style></head><body>"
        f"<h2>Drift report</h2><p>Reference rows: {drift.reference_rows}; new rows: "
        f"{drift.new_rows}. Drifted: <b>{drifted}</b>.</p>"
        "<p><span style='color:#9e9e9e'>&#9632;</span> reference "
        "<span style='color:#1e88e5'>&#9632;</span> new</p>"
        f"<div class='grid'>{cards}</div></body></html>\n"
    )


def _histogram_card(f: FeatureDrift) -> str:
    width, height, top = 284, 90, 4
    bars = []
    peak = max([*f.reference, *f.new, 1e-9])
    slot = width / max(len(f.bins), 1)
    bar = max(slot / 2 - 1, 1)
    for index, label in enumerate(f.bins):
        for offset, (share, colour) in enumerate(((f.reference[index], "#9e9e9e"),
                                                  (f.new[index], "#1e88e5"))):
            h = (height - top) * share / peak
            x = index * slot + offset * bar
            bars.append(f"<rect x='{x:.1f}' y='{height - h:.1f}' width='{bar:.1f}' "
                        f"height='{h:.1f}' fill='{colour}'><title>{html.escape(label)}: "
                        f"{share:.1%}</title></rect>")
    statistic = "-" if f.statistic is None else f"{f.statistic:.3f}"
    p_value = "" if f.ks_pvalue is None else f", KS p {f.ks_pvalue:.2g}"
    verdict = f.verdict.replace(" ", "-")
    name = f"{f.feature} (label)" if f.is_label else f.feature
    return (f"<div class='card'><h3>{html.escape(name)} <span class='{verdict}'>"
            f"{html.escape(f.verdict)}</span></h3><small>{f.test.upper()} {statistic} "
            f"(warn {f.warn:g}, drift {f.drift:g}){p_value}</small>"
            f"<svg width='{width}' height='{height}' role='img' aria-label='histogram'>"
            f"{''.join(bars)}</svg></div>")


# -- retrain -----------------------------------------------------------------------------------
def trace_markdown(training: TrainingSummary) -> str:
    """The training trace as the seed shows it: one row per epoch, loss and accuracy (log loss;
    for regression the mean squared error and R²)."""
    score = TRACE_SCORE[training.task]
    shown = "R²" if score == "r2" else score
    loss = "squared error" if training.task == Task.REGRESSION else "loss"
    lines = [
        f"# Training trace: {training.strategy} ({training.model_type}, {training.task})",
        "",
        *(f"- {note}" for note in training.notes),
        "",
        f"| epoch | iterations | train {loss} | train {shown} | validation {loss} | "
        f"validation {shown} |",
        "|---|---|---|---|---|---|",
    ]
    for row in training.trace:
        lines.append(
            f"| {row['epoch']} | {row['iterations']} | {number(row['train_loss'])} | "
            f"{number(row.get(f'train_{score}'))} | {number(row['validation_loss'])} | "
            f"{number(row.get(f'validation_{score}'))} |")
    lines += ["", "| strategy | status | rows | score | note |", "|---|---|---|---|---|"]
    for c in training.candidates:
        lines.append(f"| {c['strategy']} | {c['status']} | {c['rows']} | {number(c['score'])} "
                     f"| {c['note']} |")
    return "\n".join(lines) + "\n"


# -- evaluate ----------------------------------------------------------------------------------
def comparison_markdown(record: DecisionRecord) -> str:
    """The champion-versus-challenger table shown in the KFP UI."""
    champion, challenger = record.champion, record.challenger
    champion_metrics = champion.metrics if champion else {}
    lines = [
        f"# Champion vs challenger: {record.decision.upper()}",
        "",
        f"**Reason:** {record.reason}",
        "",
        *_gate_lines(record),
        "",
        f"| metric | champion {champion.version if champion else '(none)'} | challenger "
        f"({challenger.training.strategy}, {challenger.training.model_type}) |",
        "|---|---|---|",
    ]
    for name in METRIC_NAMES[challenger.training.task]:
        lines.append(f"| {name} | {number(champion_metrics.get(name))} | "
                     f"{number(challenger.metrics.get(name))} |")
    if challenger.training.candidates:
        lines += ["", "## Candidates", "", "Fitted on the training rows and compared on the "
                  "selection rows (the newest new training rows); the gate judged the chosen "
                  "one, on those rows only through answers of fits without them.", "",
                  f"| strategy | status | rows | {record.metric} | note |",
                  "|---|---|---|---|---|"]
        for c in challenger.training.candidates:
            lines.append(f"| {c['strategy']} | {c['status']} | {c.get('rows', '-')} | "
                         f"{number(c.get('score'))} | {c.get('note', '')} |")
    return "\n".join(lines) + "\n"


def _gate_lines(record: DecisionRecord) -> list[str]:
    """How many rows the gate compared on, from which period, and with what confidence."""
    gate = record.gate or {}
    rows = gate.get("evaluation") or {}
    lower = GateMetric.lower_is_better(record.metric)
    bar = ("no threshold" if record.threshold is None else
           f"{'<=' if lower else '>='} {record.threshold}")
    lines = [f"Gate: `{record.metric}` {bar}, and better than the champion by more than "
             f"{record.min_improvement}{' of its error' if lower else ''} at the lower bound "
             f"of the {percent(record.params.get('confidence', 0.95))} confidence interval of the "
             "difference (or the champion missing the threshold and the challenger not worse)"
             f"{'; lower is better' if lower else ''}.",
             "",
             f"Evaluation rows: {rows.get('rows', 0)} ({rows.get('cross_fitted_rows', 0)} "
             f"cross-fitted and {rows.get('new_rows', 0)} holdout rows of this run, "
             f"{rows.get('earlier_rows', 0)} holdout rows of earlier runs; "
             f"{rows.get('available', 0)} available), from {rows.get('period_start') or '-'} "
             f"to {rows.get('period_end') or '-'}. The champion has seen none of them; the "
             f"challenger's answers: {rows.get('predictions') or '-'}."]
    if rows.get("note"):
        lines += ["", f"Note: {rows['note']}."]
    if gate.get("delta") is not None:
        lines += ["", f"Challenger - champion: {_difference(gate)}; {gate['method']}."]
    newest = gate.get("newest_batch") or {}
    if newest.get("delta") is not None:
        lines += ["", f"On the newest batch alone ({newest['batch']}, {newest['rows']} rows): "
                      f"{_difference(newest)}."]
    return lines


def _difference(comparison: dict) -> str:
    """``+0.0450 (97.5% CI +0.0070 to +0.0830), p = 0.0123`` from a comparison's record."""
    return (f"{comparison['delta']:+.4f} ({percent(comparison['confidence'])} CI "
            f"{comparison['ci_low']:+.4f} to {comparison['ci_high']:+.4f}), "
            f"p = {comparison['p_value']:.3g}")


# -- alert -------------------------------------------------------------------------------------
def alert_markdown(payload: dict) -> str:
    """The alert as a Markdown artifact for the KFP UI."""
    lines = [f"# Alert: {payload['status']}", "", payload["text"], "", "```json",
             json.dumps(payload, indent=2, sort_keys=True, default=str), "```"]
    return "\n".join(lines) + "\n"


# -- evaluate: the evaluation report -----------------------------------------------------------
SCATTER_POINTS = 2000  # points drawn per model (evenly chosen): a page stays small


def evaluation_html(record: DecisionRecord, challenger, champion=None) -> str:
    """Both models on the evaluation rows, as a page the KFP UI renders: for a regressor the
    predictions against the actual values and the residuals; for a classifier the confusion
    matrix. ``challenger`` and ``champion``: their :class:`components.ml.metrics.Predictions`
    on the judged rows."""
    title = f"{record.model_name}: evaluation ({record.decision})"
    parts = ["<!doctype html><html lang=en><head><meta charset=utf-8>",
             f"<title>{html.escape(title)}</title><style>body{{font:14px/1.45 system-ui,"
             "sans-serif;margin:20px;max-width:1000px;color:#24292f}table{border-collapse:"
             "collapse}td,th{border:1px solid #d0d7de;padding:3px 8px;text-align:right}"
             "th{background:#f6f8fa}svg{max-width:100%;height:auto}</style></head><body>",
             f"<h1>{html.escape(title)}</h1><p>{html.escape(record.reason)}</p>",
             _metrics_table(record)]
    if challenger.regression:
        parts += [f"<h2>Predicted against actual ({len(challenger.labels)} evaluation rows)"
                  "</h2>", _predicted_chart(challenger, champion),
                  "<h2>Residuals (predicted - actual)</h2>", _residual_chart(challenger,
                                                                              champion)]
    else:
        parts += ["<h2>Confusion matrix of the challenger</h2>", _confusion_table(challenger)]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _metrics_table(record: DecisionRecord) -> str:
    champion = record.champion.metrics if record.champion else {}
    rows = "".join(f"<tr><th>{html.escape(name)}</th><td>{number(champion.get(name))}</td>"
                   f"<td>{number(record.challenger.metrics.get(name))}</td></tr>"
                   for name in METRIC_NAMES[record.challenger.training.task])
    version = html.escape(record.champion.version) if record.champion else "(none)"
    return (f"<table id=metrics><tr><th>metric</th><th>champion {version}</th>"
            f"<th>challenger</th></tr>{rows}</table>")


def _thinned(values, points: int = SCATTER_POINTS):
    import numpy as np

    step = max(1, -(-len(values) // points))
    return np.asarray(values)[::step]


def _predicted_chart(challenger, champion) -> str:
    import numpy as np

    figure, axis = new_figure(6.5, 4.2)
    for name, predictions, colour in (("champion", champion, "#9e9e9e"),
                                      ("challenger", challenger, "#1e88e5")):
        if predictions is None:
            continue
        axis.scatter(_thinned(predictions.labels), _thinned(predictions.predicted), s=6,
                     alpha=0.5, color=colour, label=name, linewidths=0)
    values = np.concatenate([challenger.labels, challenger.predicted]) if len(
        challenger.labels) else np.array([0.0, 1.0])
    low, high = float(np.min(values)), float(np.max(values))
    axis.plot([low, high], [low, high], color="#24292f", linewidth=0.8, label="predicted = actual")
    axis.set_xlabel("actual")
    axis.set_ylabel("predicted")
    axis.legend(fontsize=8, frameon=False)
    return chart_svg(figure)


def _residual_chart(challenger, champion) -> str:
    import numpy as np

    figure, axis = new_figure(6.5, 3.0)
    residuals = [p.errors() for p in (challenger, champion) if p is not None]
    every = np.concatenate(residuals) if residuals and len(residuals[0]) else np.zeros(1)
    bins = np.histogram_bin_edges(every, bins=30)
    for name, predictions, colour in (("champion", champion, "#9e9e9e"),
                                      ("challenger", challenger, "#1e88e5")):
        if predictions is not None and len(predictions.labels):
            axis.hist(predictions.errors(), bins=bins, alpha=0.55, color=colour, label=name)
    axis.axvline(0, color="#24292f", linewidth=0.8)
    axis.set_xlabel("residual")
    axis.set_ylabel("rows")
    axis.legend(fontsize=8, frameon=False)
    return chart_svg(figure)


def _confusion_table(predictions) -> str:
    labels, matrix = predictions.confusion()
    head = "".join(f"<th>predicted {html.escape(label)}</th>" for label in labels)
    body = "".join(f"<tr><th>actual {html.escape(label)}</th>"
                   + "".join(f"<td>{count}</td>" for count in row) + "</tr>"
                   for label, row in zip(labels, matrix, strict=True))
    return f"<table id=confusion><tr><th></th>{head}</tr>{body}</table>"
