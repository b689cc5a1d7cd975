"""Column roles and types shared by validate, preprocess, retrain and evaluate.

A feature is either ``numeric`` or ``categorical``. The champion's kinds are recorded in its
metadata; without a champion they are inferred from the data, where a column counts as numeric
when almost all of its values parse as numbers (so a few typos are reported, not silently turned
into categories). The label is a class (classification) or a number (regression): the task, set
by the ``task`` parameter or inferred from the label (:func:`infer_task`), and recorded with the
schema, so a champion's task travels with it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from components.data.chunks import as_table, replace_columns
from components.outcomes import Task

# Ingest adds this column so later stages can name the file a bad value came from.
SOURCE_FILE_COLUMN = "__source_file__"
NUMERIC = "numeric"
CATEGORICAL = "categorical"
# Share of non-empty values that must parse as numbers for a column to be inferred numeric.
NUMERIC_INFERENCE_SHARE = 0.95


def feature_columns(table, label_column: str, timestamp_column: str) -> list[str]:
    """Every column of a frame or Table but the label, timestamp and provenance, in order."""
    reserved = {label_column, timestamp_column, SOURCE_FILE_COLUMN}
    return [column for column in table.columns if column not in reserved]


def parse_numbers(values: pd.Series) -> pd.Series:
    """Parse values as floats; anything that is not a number becomes NaN."""
    if pd.api.types.is_bool_dtype(values):
        return values.astype(float)
    if pd.api.types.is_numeric_dtype(values):
        return values.astype(float)
    return pd.to_numeric(values.astype("object").map(_strip), errors="coerce").astype(float)


def _strip(value: object) -> object:
    return value.strip() if isinstance(value, str) else value


def infer_kind(values: pd.Series) -> str:
    """``numeric`` when nearly every non-empty value parses as a number, else ``categorical``."""
    return _KindTally().add(values).kind()


class _KindTally:
    """What a column's kind is decided on, added up over chunks: its dtype and how many of its
    present values parse as numbers."""

    def __init__(self):
        self.dtype_kind: str | None = None
        self.present = 0
        self.parsed = 0

    def add(self, values: pd.Series) -> _KindTally:
        if pd.api.types.is_bool_dtype(values):
            self.dtype_kind = self.dtype_kind or CATEGORICAL
        elif pd.api.types.is_numeric_dtype(values):
            self.dtype_kind = self.dtype_kind or NUMERIC
        else:
            present = values.dropna()
            self.present += len(present)
            self.parsed += int(parse_numbers(present).notna().sum())
        return self

    def kind(self) -> str:
        if not self.present:  # numbers only, or nothing present: the dtype decides
            return self.dtype_kind or NUMERIC
        if self.dtype_kind == CATEGORICAL:
            return CATEGORICAL
        return NUMERIC if self.parsed / self.present >= NUMERIC_INFERENCE_SHARE else CATEGORICAL


def infer_feature_kinds(data, label_column: str, timestamp_column: str) -> dict[str, str]:
    """Map each feature column to ``numeric`` or ``categorical``, over every row.

    ``data``: a DataFrame, or a Parquet path or :class:`components.data.chunks.Table`.
    """
    table = as_table(data)
    tallies = {column: _KindTally()
               for column in feature_columns(table, label_column, timestamp_column)}
    for chunk in table.chunks(columns=list(tallies)):
        for column, tally in tallies.items():
            if column in chunk:
                tally.add(chunk[column])
    return {column: tally.kind() for column, tally in tallies.items()}


def coerce_features(frame: pd.DataFrame, feature_kinds: dict[str, str]) -> pd.DataFrame:
    """Return a copy whose numeric features are floats and categorical ones strings (NaN kept)."""
    return replace_columns(frame, {
        column: parse_numbers(frame[column]) if kind == NUMERIC else
        as_category_strings(frame[column])
        for column, kind in feature_kinds.items() if column in frame})


def coerce_rows(frame: pd.DataFrame, feature_kinds: dict[str, str], label_column: str,
                task: str = Task.CLASSIFICATION) -> pd.DataFrame:
    """:func:`coerce_features`, and the label as the task reads it (:func:`label_as`)."""
    coerced = coerce_features(frame, feature_kinds)
    if label_column in coerced:
        coerced = replace_columns(coerced, {label_column: label_as(coerced[label_column], task)})
    return coerced


def label_as(values: pd.Series, task: str) -> pd.Series:
    """Labels as the task reads them: the classes they hold (:func:`label_values`), or numbers
    (floats; text and infinities as missing, which validate reports as errors first)."""
    if task == Task.REGRESSION:
        numbers = parse_numbers(values)
        return numbers.where(np.isfinite(numbers.to_numpy(dtype=float, na_value=np.nan)))
    return label_values(values)


# -- the task ----------------------------------------------------------------------------------
# More distinct whole numbers than this in a label make ``task=auto`` read it as a number to
# predict (a count, a price in whole units), not as classes (a rating, a category code).
MAX_AUTO_CLASSES = 20


class _LabelTally:
    """What ``task=auto`` decides on, added up over chunks: how many present labels parse as
    numbers, whether any is not whole, and the distinct values (up to one past the limit)."""

    def __init__(self):
        self.present = self.parsed = 0
        self.boolean = False
        self.fraction: float | None = None  # a value that is not whole
        self.text: object = None  # a value that is not a number
        self.distinct: set = set()

    def add(self, values: pd.Series) -> None:
        present = values.dropna()
        if pd.api.types.is_bool_dtype(values):
            self.boolean = True
        numbers = parse_numbers(present)
        self.present += len(present)
        self.parsed += int(numbers.notna().sum())
        if self.text is None and numbers.isna().any():
            self.text = present[numbers.isna().to_numpy()].iloc[0]
        whole = numbers.dropna()
        finite = whole[np.isfinite(whole.to_numpy())]
        if self.fraction is None and (finite != np.floor(finite)).any():
            self.fraction = float(finite[finite != np.floor(finite)].iloc[0])
        if len(self.distinct) <= MAX_AUTO_CLASSES:
            self.distinct.update(finite.unique().tolist()[:MAX_AUTO_CLASSES + 1])

    def decide(self, label_column: str) -> tuple[str, str]:
        shown = repr(label_column)
        if not self.present:
            return Task.CLASSIFICATION, f"the label {shown} holds no values: classification"
        if self.boolean or self.parsed / self.present < NUMERIC_INFERENCE_SHARE:
            example = "" if self.text is None else f", e.g. {self.text!r}"
            return Task.CLASSIFICATION, f"the label {shown} holds text{example}: classification"
        if self.fraction is not None:
            return Task.REGRESSION, (f"the label {shown} holds numbers that are not whole, e.g. "
                                     f"{self.fraction:.12g}: regression")
        if len(self.distinct) > MAX_AUTO_CLASSES:
            return Task.REGRESSION, (f"the label {shown} holds more than {MAX_AUTO_CLASSES} "
                                     "distinct whole numbers: regression")
        return Task.CLASSIFICATION, (f"the label {shown} holds {len(self.distinct)} distinct "
                                     f"whole numbers (at most {MAX_AUTO_CLASSES}): "
                                     "classification")


def infer_task(data, label_column: str) -> tuple[str, str]:
    """The task a label implies, and the sentence that says why (``task=auto``): text (or true
    and false) is classification; numbers that are not all whole, or more than
    :data:`MAX_AUTO_CLASSES` distinct whole numbers, regression; a few whole numbers (a rating,
    a code) classification."""
    tally = _LabelTally()
    table = as_table(data)
    if label_column in table.columns:
        for chunk in table.chunks(columns=[label_column]):
            tally.add(chunk[label_column])
    return tally.decide(label_column)


def schema_task(schema: dict) -> str:
    """The task a schema's label is for (schemas written before regression: classification)."""
    return schema["label"].get("task") or Task.CLASSIFICATION


def label_values(values: pd.Series) -> pd.Series:
    """Labels as the classes they hold. An integer label with missing values is stored as floats
    (``1.0``, ``0.0``: pandas and Parquet have no missing integers), which would not match the
    classes ``1`` and ``0``: a float column whose present values are all whole numbers becomes
    integers again (nullable where values are missing)."""
    if not pd.api.types.is_float_dtype(values):
        return values
    present = values.dropna()
    if not len(present) or not np.isfinite(present).all() or \
            not (present == np.floor(present)).all():
        return values
    return values.astype("Int64") if len(present) < len(values) else values.astype("int64")


def as_category_strings(values: pd.Series) -> pd.Series:
    """Categorical values as Python strings, missing values as NaN (one dtype for Parquet)."""
    text = values.astype(str).astype("object")  # vectorised str() of every value
    return text.where(values.notna(), np.nan)


# -- the data contract: schema.json ----------------------------------------------------------
# A categorical column with more distinct values than this is treated as free text: its domain
# is not recorded (and so not checked), as TFDV does for high-cardinality strings.
MAX_DOMAIN_SIZE = 1000


class SchemaError(ValueError):
    """A schema file is malformed."""


def infer_schema(
    data,
    *,
    label_column: str,
    timestamp_column: str,
    feature_kinds: dict[str, str] | None = None,
    task: str = Task.CLASSIFICATION,
) -> dict:
    """The contract new data is checked against, inferred from (coerced or raw) training rows.

    ``data``: a DataFrame, or a Parquet path or :class:`components.data.chunks.Table` read chunk by
    chunk. Feature kinds, when not given, are inferred from every row (a pass of its own).

    Returns ``{"label": {"name", "task", "classes"}, "timestamp": name, "rows": n,
    "columns": [...]}`` where each column has ``name``, ``type`` (numeric/categorical),
    ``nullable`` and, when the rows show them, ``min``/``max`` (numeric) or ``domain``
    (categorical); a regression label has ``min``/``max`` in place of classes.
    """
    table = as_table(data)
    kinds = feature_kinds or infer_feature_kinds(table, label_column, timestamp_column)
    tallied = dict(kinds)
    if task == Task.REGRESSION:  # a number to predict: its range, as a numeric feature's
        tallied[label_column] = NUMERIC
    seen: dict[str, dict] = {}
    classes: set = set()
    for chunk in table.chunks():
        for name, kind in tallied.items():
            if name in chunk:
                _tally_column(seen.setdefault(name, {"nullable": False}), chunk[name], kind)
        if label_column in chunk and task != Task.REGRESSION:
            classes.update(plain_value(v)
                           for v in label_values(chunk[label_column]).dropna().unique())
    columns = []
    for name, kind in kinds.items():
        entry = {"name": name, "type": kind, "nullable": True}
        if name in seen:
            entry["nullable"] = seen[name]["nullable"]
            if "min" in seen[name]:
                entry["min"], entry["max"] = seen[name]["min"], seen[name]["max"]
            if seen[name].get("domain") is not None:
                entry["domain"] = sorted(seen[name]["domain"])
        columns.append(entry)
    label = {"name": label_column, "task": task, "classes": sorted(classes, key=str)}
    if "min" in seen.get(label_column, {}) and task == Task.REGRESSION:
        label["min"], label["max"] = seen[label_column]["min"], seen[label_column]["max"]
    return {"label": label, "timestamp": timestamp_column, "rows": int(table.rows),
            "columns": columns}


def _tally_column(entry: dict, values: pd.Series, kind: str) -> None:
    """Add a chunk's values of a column to what the schema records of it: whether any is
    missing, and its range (numeric) or its categories (up to :data:`MAX_DOMAIN_SIZE`)."""
    entry["nullable"] = entry["nullable"] or bool(values.isna().any())
    if kind == NUMERIC:
        numbers = parse_numbers(values)
        if numbers.notna().any():
            low, high = float(numbers.min()), float(numbers.max())
            entry["min"] = min(entry.get("min", low), low)
            entry["max"] = max(entry.get("max", high), high)
    elif entry.get("domain", set()) is not None:
        domain = entry.setdefault("domain", set())
        domain.update(as_category_strings(values).dropna().unique())
        if len(domain) > MAX_DOMAIN_SIZE:
            entry["domain"] = None


def plain_value(value: object) -> object:
    """numpy scalars to Python ones, for JSON."""
    return value.item() if hasattr(value, "item") else value


def check_schema(schema: object, source: str) -> dict:
    """Raise :class:`SchemaError` naming ``source`` and the field unless ``schema`` is usable."""
    def fail(problem: str):
        raise SchemaError(f"schema {source}: {problem}")

    if not isinstance(schema, dict):
        fail("must be a JSON object with 'label' and 'columns'")
    label = schema.get("label")
    if not isinstance(label, dict) or not isinstance(label.get("name"), str):
        fail("'label' must be an object with a 'name' (and optionally 'task' and 'classes')")
    if label.get("task", Task.CLASSIFICATION) not in Task.KNOWN:
        fail(f"the label's 'task' must be 'classification' or 'regression', got "
             f"{label.get('task')!r}")
    if not isinstance(schema.get("columns"), list) or not schema["columns"]:
        fail("'columns' must be a non-empty list of {name, type, ...}")
    for index, column in enumerate(schema["columns"]):
        where = f"columns[{index}]"
        if not isinstance(column, dict) or not isinstance(column.get("name"), str):
            fail(f"{where} needs a 'name'")
        if column.get("type") not in (NUMERIC, CATEGORICAL):
            fail(f"{where} ({column['name']!r}): 'type' must be 'numeric' or 'categorical', "
                 f"got {column.get('type')!r}")
        for bound in ("min", "max"):
            if bound in column and not isinstance(column[bound], int | float):
                fail(f"{where} ({column['name']!r}): {bound!r} must be a number")
        if "domain" in column and not isinstance(column["domain"], list):
            fail(f"{where} ({column['name']!r}): 'domain' must be a list")
        if "required" in column and not isinstance(column["required"], bool):
            fail(f"{where} ({column['name']!r}): 'required' must be true or false")
    return schema


def starting_contract(inferred: dict) -> dict:
    """A schema to edit into a contract (``retrain schema``): every column required, with its
    type, and what the rows showed kept apart under ``observed``, which is never enforced. A
    range or a category set seen in training is a statistic, not a contract: copy ``min``,
    ``max`` or ``domain`` out of ``observed`` only where they are rules of the data."""
    columns = []
    for column in inferred["columns"]:
        observed = {key: column[key] for key in ("min", "max", "domain") if key in column}
        columns.append({"name": column["name"], "type": column["type"],
                        "nullable": column["nullable"], "required": True,
                        "observed": observed})
    return {**inferred, "columns": columns,
            "note": "A contract: 'min', 'max' and 'domain' on a column are enforced (a breach is "
                    "invalid-data); 'observed' is what the rows showed, never enforced; a "
                    "column with 'required': false may be missing."}


def schema_feature_kinds(schema: dict) -> dict[str, str]:
    """Feature name -> numeric/categorical, in the schema's order."""
    return {column["name"]: column["type"] for column in schema["columns"]}


def merge_schemas(older: dict, newer: dict) -> dict:
    """The union of two schemas of the same columns: widest ranges, all domains and classes.

    A fine-tuned model still knows what its parent was trained on, so its schema keeps that too.
    """
    previous = {column["name"]: column for column in older["columns"]}
    columns = []
    for column in newer["columns"]:
        merged = dict(column)
        old = previous.get(column["name"])
        if old is not None and old.get("type") == column["type"]:
            merged["nullable"] = bool(column.get("nullable") or old.get("nullable"))
            if "min" in old and "min" in column:
                merged["min"] = min(old["min"], column["min"])
                merged["max"] = max(old["max"], column["max"])
            if old.get("domain") is not None and column.get("domain") is not None:
                domain = sorted(set(old["domain"]) | set(column["domain"]))
                merged["domain"] = domain if len(domain) <= MAX_DOMAIN_SIZE else None
        columns.append(merged)
    classes = sorted({*older["label"].get("classes", []), *newer["label"].get("classes", [])},
                     key=str)
    label = dict(newer["label"], classes=classes)
    if "min" in older["label"] and "min" in label:
        label["min"] = min(older["label"]["min"], label["min"])
        label["max"] = max(older["label"]["max"], label["max"])
    return dict(newer, columns=columns, label=label,
                rows=older.get("rows", 0) + newer.get("rows", 0))
