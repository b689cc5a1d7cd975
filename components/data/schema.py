"""Column roles and types shared by validate, preprocess, retrain and evaluate.

A feature is either ``numeric`` or ``categorical``. The champion's kinds are recorded in its
metadata; without a champion they are inferred from the data, where a column counts as numeric
when almost all of its values parse as numbers (so a few typos are reported, not silently turned
into categories).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from components.data.chunks import as_table, replace_columns

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


def coerce_rows(frame: pd.DataFrame, feature_kinds: dict[str, str],
                label_column: str) -> pd.DataFrame:
    """:func:`coerce_features`, and the label as the classes it holds (:func:`label_values`)."""
    coerced = coerce_features(frame, feature_kinds)
    if label_column in coerced:
        coerced = replace_columns(coerced, {label_column: label_values(coerced[label_column])})
    return coerced


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
) -> dict:
    """The contract new data is checked against, inferred from (coerced or raw) training rows.

    ``data``: a DataFrame, or a Parquet path or :class:`components.data.chunks.Table` read chunk by
    chunk. Feature kinds, when not given, are inferred from every row (a pass of its own).

    Returns ``{"label": {"name", "classes"}, "timestamp": name, "rows": n, "columns": [...]}``
    where each column has ``name``, ``type`` (numeric/categorical), ``nullable`` and, when the
    rows show them, ``min``/``max`` (numeric) or ``domain`` (categorical).
    """
    table = as_table(data)
    kinds = feature_kinds or infer_feature_kinds(table, label_column, timestamp_column)
    seen: dict[str, dict] = {}
    classes: set = set()
    for chunk in table.chunks():
        for name, kind in kinds.items():
            if name not in chunk:
                continue
            values, entry = chunk[name], seen.setdefault(name, {"nullable": False})
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
        if label_column in chunk:
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
    return {"label": {"name": label_column, "classes": sorted(classes, key=str)},
            "timestamp": timestamp_column, "rows": int(table.rows), "columns": columns}


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
        fail("'label' must be an object with a 'name' (and optionally 'classes')")
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
    return dict(newer, columns=columns, label=dict(newer["label"], classes=classes),
                rows=older.get("rows", 0) + newer.get("rows", 0))
