"""Stage 2, validate: decide whether the new rows are fit to train on, and whether to retrain.

The new rows are checked against a schema (``schema.json``: the champion's, a user's file, or on
a cold start one inferred from the rows themselves): missing and extra columns, values that are
not numbers, values outside the numeric range, unseen categories, missing-value and duplicate
shares, label classes and their balance, row count. Range, domain and label-class checks are a
pandera schema built from ``schema.json``; its failure cases say which rows failed, so each
finding names the files, the column and example values. Each finding is an ``error`` (the run ends
as ``invalid-data``) or a ``warning`` (reported only); the ratio thresholds are parameters
(:data:`components.params.DEFAULT_THRESHOLDS`).

Which schema applies is decided here too (:func:`resolve_schema`): the user's file, else the
champion's, else one inferred from the new rows; it travels on to training. Whether valid data is
worth a retrain is the trigger policy's call (:func:`components.policies.trigger_decision`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from components.data.chunks import Table, as_table, first_occurrences, row_hashes
from components.data.schema import (
    NUMERIC,
    SOURCE_FILE_COLUMN,
    SchemaError,
    as_category_strings,
    check_schema,
    infer_schema,
    infer_task,
    label_values,
    parse_numbers,
    plain_value,
    schema_feature_kinds,
    schema_task,
)
from components.outcomes import Severity, Task
from components.records import BEYOND_TRAINING_CHECKS, Finding, ValidationReport
from components.registry import SCHEMA_FILE, Registry

ERROR, WARNING = Severity.ERROR, Severity.WARNING
# How many example values and files a finding quotes.
EXAMPLES = 3


def validate(
    new_data,
    *,
    schema: dict,
    timestamp_column: str,
    min_rows: int,
    thresholds: dict,
    file_columns: dict[str, list[str]] | None = None,
    ingest_problems: list[str] | None = None,
    too_few_rows: str = ERROR,
    label_column: str = "",
    contract: bool = False,
    task: str = Task.AUTO,
) -> ValidationReport:
    """Check new rows against ``schema``, a chunk of rows at a time.

    Args:
        new_data: Rows from ingest, with the provenance column naming each row's file: a
            DataFrame, or a Parquet path or :class:`components.data.chunks.Table`.
        schema: The contract (see :func:`components.data.schema.infer_schema`).
        timestamp_column: The event-time column, or empty in batch mode.
        min_rows: Fewest labelled new rows worth retraining on.
        thresholds: Ratio thresholds (all of :data:`components.params.DEFAULT_THRESHOLDS`).
        file_columns: Columns each file had, from ingest, to name files lacking a column.
        ingest_problems: Problems ingest found placing rows; each becomes an error.
        too_few_rows: Severity of having fewer than ``min_rows`` labelled rows (a warning when
            the trigger policy waits for rows rather than failing the run).
        label_column: The run's label column, when it may differ from the schema's (a
            champion trained on another label): an error, and the run's column is checked.
        contract: Whether the schema is the user's (a breach is an error) rather than the
            champion's (values beyond it are drift).
        task: The ``task`` parameter: another task than the schema's (the champion's) is an
            error, since a model's task never changes silently.

    Returns:
        The findings.
    """
    table = as_table(new_data)
    findings = [Finding(ERROR, problem, check="ingest") for problem in (ingest_problems or [])]
    schema, label_findings = _label_of(schema, label_column, task)
    findings += label_findings
    label_column = schema["label"]["name"]
    kinds = schema_feature_kinds(schema)
    kinds.pop(label_column, None)  # the label is never also a feature
    optional = {c["name"] for c in schema["columns"] if c.get("required", True) is False}
    findings += _column_findings(table.columns, kinds, label_column, timestamp_column,
                                 file_columns or {}, optional)
    tally = _Tally(schema_task(schema))
    for chunk in table.chunks():
        tally.add(chunk, schema, kinds, label_column)
    findings += _tally_findings(tally, schema, kinds, label_column, thresholds, contract)
    labelled = tally.labelled()
    if labelled < min_rows:
        findings.append(Finding(too_few_rows, f"only {labelled} labelled new row(s); at least "
                                f"{min_rows} are needed to retrain (min_rows)",
                                check="row_count"))
    return ValidationReport(findings=findings, rows=tally.rows, labelled_rows=labelled)


def _label_of(schema: dict, label_column: str, task: str) -> tuple[dict, list[Finding]]:
    """The schema with the run's label, and the errors of a label or a task other than the
    schema's (the champion's): a model's label and task never change silently."""
    findings, label = [], schema["label"]
    if label_column and label_column != label["name"]:
        findings.append(Finding(ERROR, f"the label_column is {label_column!r}, but the schema's "
                                       f"label is {label['name']!r}", "", label_column,
                                "label_column"))
        schema = {**schema, "label": {"name": label_column, "task": schema_task(schema),
                                      "classes": []}}
    if task in Task.KNOWN and task != schema_task(schema):
        findings.append(Finding(ERROR, f"the task is {task!r}, but the schema's label is for "
                                       f"{schema_task(schema)} (the champion's task); a model's "
                                       "task never changes: train another model_name for it",
                                "", schema["label"]["name"], "task"))
    return schema, findings


def _tally_findings(tally: _Tally, schema: dict, kinds: dict[str, str], label_column: str,
                    thresholds: dict, contract: bool) -> list[Finding]:
    """What the added-up rows show: types, missing values, values outside the schema,
    duplicates, and the label's classes."""
    findings = []
    for column in kinds:
        if column in tally.missing:
            findings += tally.type_findings(column)
            findings += _missing_findings(tally.missing[column], tally.rows, column, schema,
                                          thresholds, sorted(tally.missing_files.get(column, ())))
    findings += tally.schema_value_findings(schema, thresholds, contract)
    findings += _duplicate_findings(tally.duplicates(), tally.rows, thresholds)
    if tally.task == Task.REGRESSION:
        findings += tally.type_findings(label_column)
        findings += _numeric_label_findings(tally, label_column)
    elif tally.labels is not None:
        findings += _label_findings(tally.labels, tally.missing_labels, label_column, schema,
                                    thresholds)
    return findings


class _Tally:
    """What the checks need, added up chunk by chunk: counts, the first examples, the files
    they came from, and one 64-bit hash per row to count duplicates."""

    def __init__(self, task: str = Task.CLASSIFICATION):
        self.task = task
        self.rows = 0
        self.missing: dict[str, int] = {}
        self.missing_files: dict[str, set[str]] = {}  # column -> files with a missing value
        self.present: dict[str, int] = {}
        self.not_numbers: dict[str, dict[str, list]] = {}  # column -> file -> [count, example]
        self.infinite: dict[str, dict[str, int]] = {}
        self.failures: dict[str, dict] = {}  # column -> rows, examples, files
        self.row_hashes: list[np.ndarray] = []
        self.labels: pd.Series | None = None  # count of each present label
        self.missing_labels = 0
        # A regression label: how many are numbers, their smallest and largest.
        self.label_numbers = 0
        self.label_range: list[float] | None = None

    def labelled(self) -> int:
        """Rows with a usable label: a class, or a finite number."""
        if self.task == Task.REGRESSION:
            return self.label_numbers
        return int(self.labels.sum()) if self.labels is not None else 0

    def add(self, chunk: pd.DataFrame, schema: dict, kinds: dict[str, str],
            label_column: str) -> None:
        chunk = chunk.reset_index(drop=True)
        files = (chunk[SOURCE_FILE_COLUMN].astype(str).to_numpy()
                 if SOURCE_FILE_COLUMN in chunk else np.full(len(chunk), "", dtype=object))
        # Coerce once: numeric features to floats (values that are not numbers are errors),
        # categorical ones and the label to text, which is how the schema records domains.
        columns = {}
        for column, kind in kinds.items():
            if column not in chunk:
                continue
            values = chunk[column]
            if kind == NUMERIC:
                numbers = parse_numbers(values)
                self._count_bad_numbers(values, numbers, files, column)
                columns[column] = numbers.replace([np.inf, -np.inf], np.nan)
            else:
                columns[column] = as_category_strings(values)
            absent = values.isna().to_numpy()
            self.missing[column] = self.missing.get(column, 0) + int(absent.sum())
            if absent.any():
                self.missing_files.setdefault(column, set()).update(files[absent].tolist())
        if label_column in chunk and self.task == Task.REGRESSION:
            columns[label_column] = self._numeric_label(chunk[label_column], files, label_column)
        elif label_column in chunk:
            columns[label_column] = as_category_strings(label_values(chunk[label_column]))
        checked = pd.DataFrame(columns, index=pd.RangeIndex(len(chunk)))
        if label_column in chunk and self.task == Task.REGRESSION:
            self.missing_labels += int(chunk[label_column].isna().sum())
        elif label_column in chunk:
            labels = checked[label_column]
            self.missing_labels += int(labels.isna().sum())
            counts = labels.value_counts()
            self.labels = counts if self.labels is None else self.labels.add(counts,
                                                                             fill_value=0)
        for column in checked.columns:
            self.present[column] = self.present.get(column, 0) + int(checked[column].notna().sum())
        self._collect_failures(checked, schema, files)
        content = [c for c in chunk.columns if c != SOURCE_FILE_COLUMN]
        if content and len(chunk):
            self.row_hashes.append(row_hashes(chunk, content))
        self.rows += len(chunk)

    def _numeric_label(self, values: pd.Series, files, label_column: str) -> pd.Series:
        """A regression label as numbers: text and infinities counted as type errors, the
        present values' range kept (a constant label cannot be learned)."""
        numbers = parse_numbers(values)
        self._count_bad_numbers(values, numbers, files, label_column)
        numbers = numbers.replace([np.inf, -np.inf], np.nan)
        present = numbers.dropna()
        self.label_numbers += len(present)
        if len(present):
            low, high = float(present.min()), float(present.max())
            self.label_range = ([low, high] if self.label_range is None else
                                [min(self.label_range[0], low), max(self.label_range[1], high)])
        return numbers

    def _count_bad_numbers(self, values, numbers, files, column) -> None:
        unparsed = (numbers.isna() & values.notna()).to_numpy()
        per_file = self.not_numbers.setdefault(column, {})
        for file in set(files[unparsed]):
            bad = values[unparsed & (files == file)]
            entry = per_file.setdefault(str(file), [0, bad.iloc[0]])
            entry[0] += len(bad)
        infinite = np.isinf(numbers.to_numpy(dtype=float, na_value=np.nan))
        per_file = self.infinite.setdefault(column, {})
        for file in set(files[infinite]):
            per_file[str(file)] = per_file.get(str(file), 0) + int((infinite & (files == file))
                                                                   .sum())

    def _collect_failures(self, checked: pd.DataFrame, schema: dict, files: np.ndarray) -> None:
        import pandera.errors

        try:
            _pandera_schema(schema, set(checked.columns)).validate(checked, lazy=True)
            return
        except pandera.errors.SchemaErrors as errors:
            failures = errors.failure_cases
        failures = failures[failures["index"].notna()]
        for column, cases in failures.groupby("column", sort=True):
            rows = cases["index"].astype(int).to_numpy()
            entry = self.failures.setdefault(str(column), {"rows": 0, "examples": [],
                                                          "files": set()})
            entry["rows"] += len(rows)
            for value in pd.unique(cases["failure_case"]):
                if len(entry["examples"]) >= EXAMPLES:
                    break
                if plain_value(value) not in entry["examples"]:
                    entry["examples"].append(plain_value(value))
            entry["files"].update(files[rows].tolist())

    def type_findings(self, column: str) -> list[Finding]:
        findings = []
        for file, (count, example) in sorted(self.not_numbers.get(column, {}).items()):
            findings.append(Finding(ERROR, f"{count} value(s) are not numbers, e.g. {example!r}",
                                    file, column, "type"))
        for file, count in sorted(self.infinite.get(column, {}).items()):
            findings.append(Finding(ERROR, f"{count} infinite value(s)", file, column, "type"))
        return findings

    def schema_value_findings(self, schema: dict, thresholds: dict,
                              contract: bool) -> list[Finding]:
        """Labels outside the known classes (an error); numbers outside the schema's range and
        unknown categories: a breach of a ``contract`` (the user's schema), else drift beyond
        what the champion was trained on, never an error by itself."""
        findings = []
        kinds = schema_feature_kinds(schema)
        if self.task == Task.REGRESSION:  # a numeric label's range is checked as a feature's
            kinds[schema["label"]["name"]] = NUMERIC
        for column, entry in sorted(self.failures.items()):
            count = entry["rows"]
            ratio = count / max(self.present.get(column, 0), 1)
            examples = ", ".join(repr(value) for value in entry["examples"])
            in_files = ", ".join(sorted(entry["files"])[:EXAMPLES]) or "-"
            spec = next((c for c in schema["columns"] if c["name"] == column),
                        schema["label"] if column == schema["label"]["name"] else {})
            # One check per column, so its kind says which it was.
            check = {NUMERIC: "out_of_range", None: "unknown_class"}.get(kinds.get(column),
                                                                          "unseen_category")
            if check == "unknown_class":
                severity = ERROR
                problem = (f"{count} label(s) outside the known classes "
                           f"{[str(c) for c in schema['label']['classes']]}: {examples}")
            elif check == "out_of_range":
                severity = _severity(ratio, thresholds, "out_of_range")
                where = (f"outside [{spec.get('min'):g}, {spec.get('max'):g}]" if contract else
                         f"outside the range seen in training [{spec.get('min'):g}, "
                         f"{spec.get('max'):g}]")
                problem = (f"{share(ratio, _limit(severity, thresholds, check))} of the values "
                           f"({count}) are {where}, e.g. {examples}")
            else:
                severity = _severity(ratio, thresholds, "unseen_category")
                known = "the schema does not know" if contract else "unseen in training"
                problem = (f"{share(ratio, _limit(severity, thresholds, check))} of the values "
                           f"({count}) are categories {known}, e.g. {examples}")
            if not contract and check != "unknown_class":
                # A range or a category set seen in training describes the champion's world,
                # not what data may be: beyond it is drift (retrain_when=drift reads it).
                check = BEYOND_TRAINING[check]
                severity = WARNING if severity else None
                problem += " (drift, not an error: pass a schema with --schema-uri to enforce it)"
            if severity:
                file = in_files if len(entry["files"]) == 1 else ""
                problem += "" if file else f" (in {in_files})"
                findings.append(Finding(severity, problem, file, column, check))
        return findings

    def duplicates(self) -> int:
        """Rows that repeat an earlier row exactly (equal 64-bit hashes of every column)."""
        if not self.row_hashes:
            return 0
        hashes = np.concatenate(self.row_hashes)
        self.row_hashes = []
        return len(hashes) - int(first_occurrences(hashes).sum())


def _column_findings(columns, kinds, label_column, timestamp_column, file_columns, optional):
    findings = []
    required = [label_column, *([timestamp_column] if timestamp_column else []),
                *(kind for kind in kinds if kind not in optional)]
    for name, file_cols in file_columns.items():
        for column in required:
            if column not in file_cols:
                findings.append(Finding(ERROR, "required column is missing", name, column,
                                        "missing_column"))
    for column in required:
        if column not in columns and not file_columns:
            findings.append(Finding(ERROR, "required column is missing", "", column,
                                    "missing_column"))
    for column in columns:
        if column not in set(required) | set(optional) | {SOURCE_FILE_COLUMN}:
            findings.append(Finding(WARNING, "column is not in the schema; ignored", "", column,
                                    "extra_column"))
    return findings


def _missing_findings(missing: int, rows: int, column: str, schema: dict, thresholds: dict,
                      files: list[str]) -> list[Finding]:
    ratio = missing / rows if rows else 0.0
    nullable = next((c.get("nullable", True) for c in schema["columns"]
                     if c["name"] == column), True)
    file = files[0] if len(files) == 1 else ""
    where = f" (in {', '.join(files[:EXAMPLES])})" if len(files) > 1 else ""
    if ratio > thresholds["missing_error"] or (rows and ratio == 1.0):
        limit = thresholds["missing_error"]
        return [Finding(ERROR, f"{share(ratio, limit)} of the values are missing (error above "
                               f"{percent(limit)}){where}", file, column, "missing_values")]
    if ratio > thresholds["missing_warn"]:
        limit = thresholds["missing_warn"]
        return [Finding(WARNING, f"{share(ratio, limit)} of the values are missing (warning "
                                 f"above {percent(limit)}){where}", file, column,
                        "missing_values")]
    if ratio > 0 and not nullable:
        return [Finding(WARNING, f"{share(ratio, 0.0)} of the values are missing; the schema "
                                 f"says it is never missing{where}", file, column,
                        "missing_values")]
    return []


def _pandera_schema(schema: dict, present: set[str]):
    """Range, domain and label-class checks of ``schema`` as a pandera DataFrameSchema."""
    import pandera.pandas as pa

    columns = {}
    for column in schema["columns"]:
        name = column["name"]
        if name not in present:
            continue
        checks = []
        if column["type"] == NUMERIC and "min" in column and "max" in column:
            checks.append(pa.Check.in_range(column["min"], column["max"]))
        elif column["type"] != NUMERIC and column.get("domain") is not None:
            checks.append(pa.Check.isin([str(v) for v in column["domain"]]))
        columns[name] = pa.Column(nullable=True, checks=checks)
    label = schema["label"]
    if label["name"] in present and schema_task(schema) == Task.REGRESSION:
        if "min" in label and "max" in label:
            columns[label["name"]] = pa.Column(nullable=True, checks=[
                pa.Check.in_range(label["min"], label["max"])])
    elif label["name"] in present and label.get("classes"):
        columns[label["name"]] = pa.Column(nullable=True, checks=[
            pa.Check.isin([str(v) for v in label["classes"]])])
    return pa.DataFrameSchema(columns, strict=False)


# The checks of values beyond what the champion saw in training, when the schema is its own.
BEYOND_TRAINING = dict(zip(("out_of_range", "unseen_category"), BEYOND_TRAINING_CHECKS,
                           strict=True))


def share(ratio: float, limit: float) -> str:
    """A share as a percentage, with as many decimals as it takes never to read as on the other
    side of (or at) the ``limit`` it was judged against: 0.96% under a 1% limit reads 0.96%,
    not 1.0%."""
    for digits in (1, 2, 3, 4):
        text = f"{ratio:.{digits}%}"
        shown = float(text.rstrip("%")) / 100
        if (ratio > limit) == (shown > limit) and shown != limit:
            return text
    return f"{ratio:.6%}"


def percent(limit: float) -> str:
    """A threshold as a percentage, exactly: 0.015 reads 1.5%."""
    return f"{limit * 100:g}%"


def _limit(severity: str | None, thresholds: dict, check: str) -> float:
    """The threshold a share was judged against: the error one for an error, else the warning
    one."""
    return thresholds[f"{check}_{'error' if severity == ERROR else 'warn'}"]


def _severity(ratio: float, thresholds: dict, check: str) -> str | None:
    if ratio > thresholds[f"{check}_error"]:
        return ERROR
    if ratio > thresholds[f"{check}_warn"]:
        return WARNING
    return None


def _duplicate_findings(duplicates: int, rows: int, thresholds: dict) -> list[Finding]:
    if not rows:
        return []
    severity = _severity(duplicates / rows, thresholds, "duplicate")
    if not severity:
        return []
    ratio = duplicates / rows
    return [Finding(severity, f"{share(ratio, _limit(severity, thresholds, 'duplicate'))} of "
                              "the new rows repeat an earlier row exactly (preprocess drops "
                              "them)", check="duplicates")]


def _numeric_label_findings(tally: _Tally, column: str) -> list[Finding]:
    """A regression label's own checks: rows without one (dropped), and a label that never
    varies (nothing to learn). Values that are not numbers are the type check's."""
    findings = []
    if tally.missing_labels:
        findings.append(Finding(WARNING, f"{tally.missing_labels} row(s) have no label; they are "
                                         "dropped", "", column, "missing_label"))
    if tally.label_range is not None and tally.label_range[0] == tally.label_range[1]:
        findings.append(Finding(ERROR, f"every labelled new row has the label "
                                       f"{tally.label_range[0]:g}; a regressor needs at least "
                                       "two distinct values", "", column, "constant_label"))
    return findings


def _label_findings(counts: pd.Series, missing: int, column: str, schema: dict,
                    thresholds: dict) -> list[Finding]:
    """``counts``: how many rows hold each present label (as text)."""
    findings = []
    if missing:
        findings.append(Finding(WARNING, f"{missing} row(s) have no label; they are dropped", "",
                                column, "missing_label"))
    counts = counts[counts > 0]
    if not len(counts):
        return findings
    shares = counts / counts.sum()
    if len(shares) < 2:
        findings.append(Finding(ERROR, f"only one class ({shares.index[0]!r}) in the new rows; "
                                       "a classifier needs at least two", "", column,
                                "class_balance"))
        return findings
    limit = thresholds["min_class_share"]
    for cls in schema["label"].get("classes") or []:
        ratio = float(shares.get(str(cls), 0.0))
        if ratio < limit:
            findings.append(Finding(
                WARNING, f"class {str(cls)!r} is {share(ratio, limit)} of the new labelled rows "
                         f"(warning below {percent(limit)})", "", column, "class_balance"))
    return findings


def resolve_schema(registry: Registry, champion_version: str, schema_uri: str,
                   new_data: Table | pd.DataFrame, label_column: str,
                   timestamp_column: str, task: str = Task.AUTO) -> tuple[dict, str]:
    """The schema new data must meet, and where it came from.

    A user's file wins; else the champion's ``schema.json``; else (a cold start, or a champion
    stored before schemas were) one inferred from the new rows, with the champion's feature
    kinds and classes when it has them. The label's task is the schema's (a champion's never
    changes), else the ``task`` parameter, else inferred from the new rows
    (:func:`components.data.schema.infer_task`); the reason is in ``label.task_reason``.
    """
    if schema_uri:
        schema, source = read_schema_file(schema_uri, label_column), schema_uri
    elif champion_version and registry.version_json(champion_version, SCHEMA_FILE) is not None:
        schema = registry.version_json(champion_version, SCHEMA_FILE)
        source = f"champion {champion_version}"
    elif champion_version:
        meta = registry.metadata(champion_version)
        inferred = infer_schema(new_data, label_column=label_column,
                                timestamp_column=timestamp_column,
                                feature_kinds=meta.feature_kinds or None,
                                task=meta.task or Task.CLASSIFICATION)
        inferred["label"]["classes"] = meta.classes or inferred["label"]["classes"]
        inferred["label"]["task_reason"] = f"the champion {champion_version}'s task"
        return inferred, f"inferred from the new rows (champion {champion_version} has none)"
    else:
        chosen, why = _task_for(new_data, label_column, task)
        schema = infer_schema(new_data, label_column=label_column,
                              timestamp_column=timestamp_column, task=chosen)
        schema["label"]["task_reason"] = why
        return schema, "inferred from the new rows (no champion yet)"
    if "task" not in schema["label"]:  # a user's file, or one written before regression
        chosen, why = (_task_for(new_data, label_column, task) if schema_uri else
                       (Task.CLASSIFICATION, "written before regression: classification"))
        schema = {**schema, "label": {**schema["label"], "task": chosen, "task_reason": why}}
    return schema, source


def _task_for(new_data, label_column: str, task: str) -> tuple[str, str]:
    """The ``task`` parameter when it names one, else the task the label implies."""
    if task in Task.KNOWN:
        return task, f"task={task}"
    chosen, why = infer_task(new_data, label_column)
    return chosen, f"task=auto: {why}"


def read_schema_file(schema_uri: str, label_column: str) -> dict:
    """A user's ``schema.json``, checked; errors name the file and the field."""
    import json

    from components.storage import storage_for

    try:
        schema = json.loads(storage_for(schema_uri).read_bytes(schema_uri))
    except FileNotFoundError as error:
        raise SchemaError(f"schema {schema_uri}: file not found") from error
    except json.JSONDecodeError as error:
        raise SchemaError(f"schema {schema_uri}: not valid JSON ({error})") from error
    check_schema(schema, schema_uri)
    if schema["label"]["name"] != label_column:
        raise SchemaError(f"schema {schema_uri}: its label {schema['label']['name']!r} is "
                          f"not the label_column {label_column!r}")
    return schema
