"""What the CLI prints for people: short summaries of a run record and of the registry."""

from __future__ import annotations

from components.outcomes import Severity
from components.records import number


def run_lines(record: dict) -> list[str]:
    """A short human summary of a run record."""
    champion, challenger = record.get("champion") or {}, record.get("challenger") or {}
    metric = record.get("metric") or "accuracy"
    lines = [f"status: {record['status']}", f"reason: {record['reason']}",
             f"new rows: {record.get('new_rows', 0)}"]
    if record.get("task"):
        reason = record.get("task_reason")
        lines.append(f"task: {record['task']}" + (f" ({reason})" if reason else ""))
    before = (champion.get("metrics") or {}).get(metric)
    after = (challenger.get("metrics") or {}).get(metric)
    if before is not None or after is not None:
        lines.append(f"{metric}: champion {champion.get('version') or '(none)'} "
                     f"{number(before)} -> challenger ({challenger.get('strategy')}) "
                     f"{number(after)}")
    if record.get("drift"):
        lines.append(f"drift: {', '.join(record['drift'])}")
    findings = record.get("findings") or []
    errors = [f for f in findings if f.get("severity") == Severity.ERROR]
    warnings = [f for f in findings if f.get("severity") == Severity.WARNING]
    if errors or warnings:
        lines.append(f"findings: {len(errors)} error(s), {len(warnings)} warning(s)")
    if challenger.get("version"):
        lines.append(f"new champion: {challenger['version']}")
    elif champion.get("version"):
        lines.append(f"champion stays: {champion['version']}")
    for warning in record.get("warnings") or []:
        lines.append(f"warning: {warning}")
    if record.get("log"):
        lines.append(f"log: {record['log']}")
    if record.get("artifacts"):
        lines.append(f"artifacts: {record['artifacts']}")
    return lines


def champion_lines(model_name: str, pointer, metadata, runs=()) -> list[str]:
    """``retrain registry show``; without a champion, how many runs there were and how the last
    one ended."""
    if pointer is None:
        if not runs:
            return [f"{model_name}: no champion yet, and no run recorded"]
        last = runs[-1]
        return [f"{model_name}: no champion yet; {len(runs)} run(s) recorded, the last "
                f"({last.run_id}, {last.finished_at}) ended {last.status}: {last.reason}"]
    return [f"{model_name}: champion {pointer.version} "
            f"(previous {pointer.previous or 'none'}), watermark {pointer.watermark}",
            f"  strategy {metadata.strategy}, model {metadata.model_type}, "
            f"metrics {_metric_list(metadata.metrics)}"]


def _metric_list(metrics: dict) -> str:
    """``accuracy 0.8810, f1 0.8804``, as every summary shows a score (``--json`` has them
    whole)."""
    return ", ".join(f"{name} {number(value)}" for name, value in metrics.items()) or "none"


def history_lines(moves: list[dict]) -> list[str]:
    """``retrain registry history``: one line per pointer move, oldest first."""
    return [f"{move['time']}  {move['action']:<8} {move['from'] or '(none)'} -> {move['to']}  "
            f"{move['reason']}" + (f"  (run {move['run_id']})" if move.get("run_id") else "")
            for move in moves]


def version_lines(versions: list[dict]) -> list[str]:
    """``retrain registry list``: one line per version, the champion starred."""
    return [f"{'*' if row['champion'] else ' '} {row['version']}  {row['created_at']}  "
            f"{row['strategy']:<8} {_headline(row['metrics'])}" for row in versions]


def _headline(metrics: dict) -> str:
    """A version's main score: RMSE for a regressor, accuracy for a classifier."""
    name = "rmse" if "rmse" in metrics else "accuracy"
    return f"{name} {number(metrics.get(name))}"
