"""Stage 2, validate: decide whether the new rows are fit to train on.

Errors block the run (it ends as ``invalid-data`` and alerts); warnings are reported only. Each
finding names the file, the column and the problem. The expected columns, types and classes come
from the champion's metadata; before the first deploy they are inferred from the new data.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from components.schema import (
    NUMERIC,
    SOURCE_FILE_COLUMN,
    infer_feature_kinds,
    parse_numbers,
)

ERROR = "error"
WARNING = "warning"


@dataclass(frozen=True)
class Finding:
    """One problem found in the new data."""

    severity: str
    problem: str
    file: str = ""
    column: str = ""

    def message(self) -> str:
        where = ", ".join(
            part for part in (f"file {self.file}" if self.file else "",
                              f"column {self.column!r}" if self.column else "") if part
        )
        return f"{where}: {self.problem}" if where else self.problem


@dataclass
class ValidationReport:
    """All findings; the data is valid when none is an error."""

    findings: list[Finding]
    rows: int

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == WARNING]

    @property
    def valid(self) -> bool:
        return not self.errors

    def summary(self, limit: int = 5) -> str:
        """One line naming the first errors (or ``ok``), for alerts and the run record."""
        if self.valid:
            return f"ok: {self.rows} new rows passed validation ({len(self.warnings)} warning(s))"
        shown = "; ".join(f.message() for f in self.errors[:limit])
        more = len(self.errors) - limit
        return f"invalid data: {shown}" + (f"; and {more} more" if more > 0 else "")

    def to_markdown(self) -> str:
        lines = ["# Data validation", "", f"New rows: {self.rows}. "
                 f"Errors: {len(self.errors)}. Warnings: {len(self.warnings)}.", ""]
        if self.findings:
            lines += ["| severity | file | column | problem |", "|---|---|---|---|"]
            lines += [f"| {f.severity} | {f.file or '-'} | {f.column or '-'} | "
                      f"{f.problem.replace('|', '/')} |" for f in self.findings]
        else:
            lines.append("No problems found.")
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict:
        return {"valid": self.valid, "rows": self.rows,
                "findings": [asdict(f) for f in self.findings]}


def validate(
    new_data: pd.DataFrame,
    *,
    label_column: str,
    timestamp_column: str,
    min_rows: int,
    expected_feature_kinds: dict[str, str] | None = None,
    known_classes: list | None = None,
    file_columns: dict[str, list[str]] | None = None,
    ingest_problems: list[str] | None = None,
) -> ValidationReport:
    """Check new rows against the expected schema.

    Args:
        new_data: Rows from ingest, with the provenance column naming each row's file.
        label_column: The target column.
        timestamp_column: The event-time column, or empty in batch mode.
        min_rows: Fewest labelled new rows worth retraining on.
        expected_feature_kinds: The champion's features (name -> numeric/categorical); None on a
            cold start, when they are inferred from ``new_data``.
        known_classes: The champion's label classes; None on a cold start.
        file_columns: Columns each file had, from ingest, to name files lacking a column.
        ingest_problems: Problems ingest found placing rows; each becomes an error.

    Returns:
        The findings.
    """
    findings = [Finding(ERROR, problem) for problem in (ingest_problems or [])]
    file_columns = file_columns or {}
    kinds = expected_feature_kinds or infer_feature_kinds(new_data, label_column, timestamp_column)
    required = [label_column, *([timestamp_column] if timestamp_column else []), *kinds]

    for name, columns in file_columns.items():
        for column in required:
            if column not in columns:
                findings.append(Finding(ERROR, "required column is missing", name, column))
    for column in required:
        if column not in new_data and not file_columns:
            findings.append(Finding(ERROR, "required column is missing", "", column))
    if expected_feature_kinds:
        extra = [c for c in new_data.columns if c not in set(required) | {SOURCE_FILE_COLUMN}]
        for column in extra:
            findings.append(Finding(WARNING, "column is not a feature of the champion; ignored",
                                    "", column))

    files = (new_data[SOURCE_FILE_COLUMN] if SOURCE_FILE_COLUMN in new_data
             else pd.Series("", index=new_data.index))
    for column, kind in kinds.items():
        if column not in new_data:
            continue
        values = new_data[column]
        if values.isna().all():
            findings.append(Finding(ERROR, "column is empty in every new row", "", column))
            continue
        if kind == NUMERIC:
            findings += _numeric_findings(values, files, column)

    if label_column in new_data:
        findings += _label_findings(new_data[label_column], files, label_column, known_classes)
        labelled = int(new_data[label_column].notna().sum())
    else:
        labelled = 0
    if labelled < min_rows:
        findings.append(Finding(ERROR, f"only {labelled} labelled new row(s); at least "
                                       f"{min_rows} are needed to retrain (min_rows)"))
    return ValidationReport(findings=findings, rows=int(len(new_data)))


def _numeric_findings(values: pd.Series, files: pd.Series, column: str) -> list[Finding]:
    findings = []
    parsed = parse_numbers(values)
    unparsed = parsed.isna() & values.notna()
    for file, bad in values[unparsed].groupby(files[unparsed], sort=True):
        findings.append(Finding(
            ERROR, f"{len(bad)} value(s) are not numbers, e.g. {bad.iloc[0]!r}", str(file), column))
    infinite = np.isinf(parsed.to_numpy(dtype=float, na_value=np.nan))
    if infinite.any():
        for file, count in pd.Series(infinite, index=values.index)[infinite].groupby(
                files[infinite]).size().items():
            findings.append(Finding(ERROR, f"{count} infinite value(s)", str(file), column))
    return findings


def _label_findings(
    labels: pd.Series, files: pd.Series, column: str, known_classes: list | None
) -> list[Finding]:
    findings = []
    missing = labels.isna()
    if missing.any():
        findings.append(Finding(WARNING, f"{int(missing.sum())} row(s) have no label; they are "
                                         "dropped", "", column))
    present = labels[~missing]
    if known_classes is not None and len(present):
        known = {str(c) for c in known_classes}
        unknown = ~present.astype(str).isin(known)
        for file, bad in present[unknown].groupby(files[~missing][unknown], sort=True):
            values = sorted({str(v) for v in bad})[:5]
            findings.append(Finding(
                ERROR, f"{len(bad)} label(s) outside the known classes "
                       f"{sorted(known)}: {', '.join(values)}", str(file), column))
    if present.nunique() < 2 and len(present):
        findings.append(Finding(ERROR, f"only one class ({present.iloc[0]!r}) in the new rows; "
                                       "a classifier needs at least two", "", column))
    return findings
