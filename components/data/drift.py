"""Drift: how far the new rows have moved from the champion's training data, feature by feature.

The reference is summarised once, when a version is trained (``statistics.json`` next to the
model), so a run never re-reads the champion's training data:

- numeric features: the reference's decile edges and the share of rows in each bin, plus a
  quantile sketch of the distribution; drift is the population stability index (PSI) of the new
  rows over those bins, with a two-sample Kolmogorov-Smirnov p-value (new rows against the sketch)
  reported alongside;
- categorical features and a classifier's label: the share of each value; drift is the
  Jensen-Shannon distance (base 2, 0..1) between reference and new shares, values unseen in the
  reference pooled as one bucket; a regressor's label is a numeric column like the others.

Drift is measured pooled over all the new rows and for each batch among them (each source file;
in timestamp mode each file's calendar month): a shift in one batch can hide in the pool, for
instance when a calm month left pending by a skipped run is pooled with a drifted one. A feature
drifts when the pool or any batch of at least :data:`MIN_BATCH_ROWS` rows drifts.

Missing values are left out here (validate checks their share). Every statistic is one vectorised
pass per column: bin counts with ``searchsorted`` + ``bincount``, shares with ``value_counts``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from components.data.chunks import as_table
from components.data.schema import (
    NUMERIC,
    SOURCE_FILE_COLUMN,
    label_values,
    parse_numbers,
    schema_task,
)
from components.outcomes import Task

BINS = 10
SKETCH_POINTS = 500
# Values per numeric column behind the reference's bins and sketch, and behind a KS test.
SAMPLE_SIZE = 100_000
# Floor for an empty bin's share, so PSI stays finite (the usual choice in PSI practice).
EMPTY_BIN_SHARE = 1e-4
UNSEEN = "(unseen)"
# A batch's own verdict: from this many rows, and only when its counts are also unlikely under
# the reference's shares (chi-square goodness of fit, p below BATCH_CHANCE_P). Small batches
# reach the PSI and JS thresholds by chance alone: of 150 calm 100-row batches of the demo's
# data, 35% drifted somewhere on the thresholds alone, 4% with the chance check (200 rows: 3%
# and none).
MIN_BATCH_ROWS = 100
BATCH_CHANCE_P = 0.001
OK, WARN, DRIFT, NO_DATA = "ok", "warn", "drift", "no data"


# -- reference statistics ----------------------------------------------------------------------
def numeric_values(values: pd.Series) -> np.ndarray:
    """The present (non-missing, finite) values of a numeric column as floats."""
    numbers = parse_numbers(values).to_numpy(dtype=float, na_value=np.nan)
    return numbers[np.isfinite(numbers)]


class Sample:
    """A uniform random sample of at most ``size`` values from values that arrive in chunks.

    Each value gets a random key and the ``size`` smallest keys are kept (a reservoir), so the
    sample does not depend on how the values were chunked, and up to ``size`` values it is
    simply all of them: small data gets exact quantiles and KS tests.
    """

    def __init__(self, size: int = SAMPLE_SIZE, seed: int = 0):
        self.size = size
        self._rng = np.random.default_rng(seed)
        self._keys = np.empty(0)
        self.values = np.empty(0)

    def add(self, values: np.ndarray) -> None:
        keys = np.concatenate([self._keys, self._rng.random(len(values))])
        kept = np.concatenate([self.values, values])
        if len(kept) > self.size:
            chosen = np.argpartition(keys, self.size)[:self.size]
            keys, kept = keys[chosen], kept[chosen]
        self._keys, self.values = keys, kept


def reference_statistics(data, schema: dict) -> dict:
    """Summarise the rows a model was trained on, for later drift checks (``statistics.json``).

    ``data``: a DataFrame, or a Parquet path or Table read chunk by chunk. Bin edges, shares
    and the sketch come from a uniform sample of up to 100k values per column (all of them
    below that); missing ratios and category shares count every row.
    """
    table = as_table(data)
    label = schema["label"]["name"]
    kinds = {column["name"]: column["type"] for column in schema["columns"]}
    numeric_label = schema_task(schema) == Task.REGRESSION
    if numeric_label:  # summarised as a numeric feature is, then set apart as the label
        kinds[label] = NUMERIC
    missing = dict.fromkeys(kinds, 0)
    samples = {name: Sample() for name, kind in kinds.items() if kind == NUMERIC}
    counts: dict[str, pd.Series] = {}
    present: set[str] = set()
    for chunk in table.chunks():
        for name, kind in kinds.items():
            if name not in chunk:
                continue
            present.add(name)
            missing[name] += int(chunk[name].isna().sum())
            if kind == NUMERIC:
                samples[name].add(numeric_values(chunk[name]))
            else:
                counts[name] = _add_counts(counts.get(name), chunk[name])
        if label in chunk and not numeric_label:
            counts[label] = _add_counts(counts.get(label), label_values(chunk[label]))
    rows = int(table.rows)
    features = {}
    for name, kind in kinds.items():
        if name not in present:
            continue
        missing_ratio = missing[name] / rows if rows else 0.0
        if kind == NUMERIC:
            values = samples[name].values
            if not len(values):
                continue
            edges = np.unique(np.quantile(values, np.linspace(0, 1, BINS + 1)[1:-1]))
            binned = np.bincount(np.searchsorted(edges, values), minlength=len(edges) + 1)
            sketch = np.quantile(values, (np.arange(SKETCH_POINTS) + 0.5) / SKETCH_POINTS)
            features[name] = {"kind": NUMERIC, "missing_ratio": missing_ratio,
                              "edges": edges.tolist(),
                              "shares": (binned / binned.sum()).tolist(),
                              "sketch": sketch.tolist()}
        else:
            features[name] = {"kind": kind, "missing_ratio": missing_ratio,
                              "shares": shares_of(counts.get(name))}
    if numeric_label:
        summary = features.pop(label, {"kind": NUMERIC, "edges": [], "shares": [1.0],
                                       "sketch": []})
        return {"rows": rows, "features": features, "label": {"name": label, **summary}}
    return {"rows": rows, "features": features,
            "label": {"name": label, "shares": shares_of(counts.get(label))}}


def _add_counts(total: pd.Series | None, values: pd.Series) -> pd.Series:
    """Running count of each present value, keyed by its text (so 1 and "1" are one value)."""
    counts = values.value_counts(dropna=True)
    counts = counts.groupby(counts.index.map(str)).sum()
    return counts if total is None else total.add(counts, fill_value=0)


def shares_of(counts: pd.Series | None) -> dict[str, float]:
    if counts is None or not counts.sum():
        return {}
    return {str(key): float(count) for key, count in (counts / counts.sum()).items()}


# -- comparing new rows with the reference -----------------------------------------------------
@dataclass
class FeatureDrift:
    """One feature's (or the label's) drift statistic, verdict, and histogram for the report."""

    feature: str
    kind: str
    test: str  # "psi" or "js"
    statistic: float | None
    warn: float
    drift: float
    verdict: str
    ks_pvalue: float | None = None
    is_label: bool = False
    chance_pvalue: float | None = None  # batches: chi-square of the counts, reference shares
    bins: list[str] = field(default_factory=list)
    reference: list[float] = field(default_factory=list)
    new: list[float] = field(default_factory=list)


@dataclass
class BatchDrift:
    """One batch's drift: its name (file, or file and month), rows, and per-feature verdicts.

    ``judged`` is False below :data:`MIN_BATCH_ROWS`; such a batch is shown, not counted.
    """

    batch: str
    rows: int
    features: list[FeatureDrift]
    judged: bool

    @property
    def drifted(self) -> list[str]:
        return [f.feature for f in self.features if f.verdict == DRIFT] if self.judged else []

    def to_dict(self) -> dict:
        return {"batch": self.batch, "rows": self.rows, "judged": self.judged,
                "drifted": self.drifted,
                "statistics": {f.feature: f.statistic for f in self.features}}


@dataclass
class DriftReport:
    """Per-feature drift of the new rows against the reference, pooled and per batch;
    ``drifted`` names what moved in either."""

    features: list[FeatureDrift]
    reference_rows: int
    new_rows: int
    batches: list[BatchDrift] = field(default_factory=list)

    @property
    def drifted(self) -> list[str]:
        found = {f.feature for f in self.features if f.verdict == DRIFT}
        found.update(name for batch in self.batches for name in batch.drifted)
        return [f.feature for f in self.features if f.feature in found]

    @property
    def warned(self) -> list[str]:
        drifted = set(self.drifted)
        return [f.feature for f in self.features if f.verdict == WARN
                and f.feature not in drifted]

    def drifted_batches(self, feature: str) -> list[str]:
        return [b.batch for b in self.batches if feature in b.drifted]

    def drifted_text(self) -> str:
        """``salary (in b.csv 2025-06), age``: what drifted, and where when not pooled."""
        pooled = {f.feature for f in self.features if f.verdict == DRIFT}
        parts = []
        for feature in self.drifted:
            where = [] if feature in pooled else self.drifted_batches(feature)
            parts.append(f"{feature} (in {', '.join(where)})" if where else feature)
        return ", ".join(parts)

    def strongest(self) -> str:
        """The largest statistic of each test, pooled and in a batch, for a one-line reason."""
        parts = []
        for test in ("psi", "js"):
            scored = [(f, "") for f in self.features if f.test == test
                      and f.statistic is not None]
            scored += [(f, f" in {b.batch}") for b in self.batches if b.judged
                       for f in b.features if f.test == test and f.statistic is not None]
            if scored:
                top, where = max(scored, key=lambda pair: pair[0].statistic)
                parts.append(f"largest {test.upper()} {top.statistic:.3f} ({top.feature}"
                             f"{where}, drift at {top.drift:g})")
        return "; ".join(parts) or "nothing to compare"

    def to_dict(self) -> dict:
        return {"drifted": self.drifted, "warned": self.warned,
                "reference_rows": self.reference_rows, "new_rows": self.new_rows,
                "features": [asdict(f) for f in self.features],
                "batches": [b.to_dict() for b in self.batches]}


def _verdict(statistic: float, warn: float, drift: float) -> str:
    if statistic >= drift:
        return DRIFT
    return WARN if statistic >= warn else OK


def population_stability_index(reference: np.ndarray, new: np.ndarray) -> float:
    """PSI between two share vectors over the same bins: sum((new - ref) * ln(new / ref))."""
    ref = np.clip(reference, EMPTY_BIN_SHARE, None)
    cur = np.clip(new, EMPTY_BIN_SHARE, None)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def _numeric_drift(name: str, counts: np.ndarray, sample: np.ndarray | None, ref: dict,
                   thresholds: dict, is_label: bool = False) -> FeatureDrift:
    """PSI of the new rows' counts in the reference's bins; KS of their sample against its
    sketch (none for a batch, which is judged by PSI alone)."""
    from scipy.stats import ks_2samp

    warn, drift = thresholds["psi_warn"], thresholds["psi_drift"]
    bins = _bin_labels(np.asarray(ref["edges"], dtype=float))
    if not counts.sum():
        return FeatureDrift(name, NUMERIC, "psi", None, warn, drift, NO_DATA, bins=bins,
                            reference=ref["shares"], new=[0.0] * len(bins), is_label=is_label)
    shares = counts / counts.sum()
    psi = population_stability_index(np.asarray(ref["shares"]), shares)
    p_value = (None if sample is None or not len(ref["sketch"])
               else float(ks_2samp(sample, np.asarray(ref["sketch"])).pvalue))
    return FeatureDrift(name, NUMERIC, "psi", psi, warn, drift, _verdict(psi, warn, drift),
                        ks_pvalue=p_value, is_label=is_label, bins=bins,
                        reference=list(ref["shares"]), new=shares.tolist())


def _bin_labels(edges: np.ndarray) -> list[str]:
    if not len(edges):
        return ["all"]
    inner = [f"({low:g}, {high:g}]" for low, high in zip(edges[:-1], edges[1:], strict=True)]
    return [f"<= {edges[0]:g}", *inner, f"> {edges[-1]:g}"]


def _categorical_drift(name: str, kind: str, counts: pd.Series | None,
                       reference: dict[str, float], thresholds: dict,
                       is_label: bool = False) -> FeatureDrift:
    from scipy.spatial.distance import jensenshannon

    warn, drift = thresholds["js_warn"], thresholds["js_drift"]
    new = shares_of(counts)
    bins = sorted(reference)
    unseen = sum(share for value, share in new.items() if value not in reference)
    ref_shares = [reference[b] for b in bins] + [0.0]
    new_shares = [new.get(b, 0.0) for b in bins] + [unseen]
    bins = bins + [UNSEEN]
    if not new or not reference:
        return FeatureDrift(name, kind, "js", None, warn, drift, NO_DATA, is_label=is_label,
                            bins=bins, reference=ref_shares, new=new_shares)
    distance = float(jensenshannon(ref_shares, new_shares, base=2))
    return FeatureDrift(name, kind, "js", distance, warn, drift,
                        _verdict(distance, warn, drift), is_label=is_label, bins=bins,
                        reference=ref_shares, new=new_shares)


def batch_names(chunk: pd.DataFrame, timestamp_column: str = "") -> np.ndarray:
    """Each row's batch: its source file, and in timestamp mode the file's calendar month."""
    files = (chunk[SOURCE_FILE_COLUMN].astype(str).to_numpy(dtype=object)
             if SOURCE_FILE_COLUMN in chunk else np.full(len(chunk), "new rows", dtype=object))
    if not timestamp_column or timestamp_column not in chunk:
        return files
    stamps = pd.to_datetime(chunk[timestamp_column], errors="coerce", utc=True)
    # Formatted once per distinct (file, month), not per row: a million rows of strftime and
    # string joins took most of a second.
    month_keys = (stamps.dt.year * 100 + stamps.dt.month).fillna(-1).to_numpy(dtype=np.int64)
    keys = pd.factorize(files)[0].astype(np.int64) * 1_000_000 + month_keys
    _, first_rows, which = np.unique(keys, return_index=True, return_inverse=True)
    months = stamps.iloc[first_rows].dt.strftime("%Y-%m").fillna("no time").to_numpy(dtype=object)
    return (files[first_rows] + " " + months)[which]


def _beyond_chance(feature: FeatureDrift, counts: _Counts) -> FeatureDrift:
    """A batch's verdict, kept at drift only when its counts are unlikely under the reference's
    shares (else lowered to warn)."""
    from scipy.stats import chisquare

    if feature.verdict != DRIFT:
        return feature
    name = feature.feature
    present = (counts.bins[name].sum() if name in counts.bins
               else counts.values[name].sum() if counts.values.get(name) is not None else 0)
    observed = np.asarray(feature.new, dtype=float) * present
    expected = np.clip(np.asarray(feature.reference, dtype=float), EMPTY_BIN_SHARE, None)
    expected = expected / expected.sum() * observed.sum()
    p_value = float(chisquare(observed, expected).pvalue)
    feature.chance_pvalue = p_value
    if p_value >= BATCH_CHANCE_P:
        feature.verdict = WARN
    return feature


class _Counts:
    """Bin counts (numeric) and value counts (categorical) of one group of rows."""

    def __init__(self, edges: dict[str, np.ndarray], categorical: list[str]):
        self.rows = 0
        self.bins = {name: np.zeros(len(e) + 1, dtype=np.int64) for name, e in edges.items()}
        self.values: dict[str, pd.Series | None] = dict.fromkeys(categorical)


def detect_drift(new_data, statistics: dict, thresholds: dict,
                 timestamp_column: str = "") -> DriftReport:
    """Compare each feature and the label of the new rows with the reference ``statistics``,
    pooled and per batch (:func:`batch_names`).

    ``new_data``: a DataFrame, or a Parquet path or Table read chunk by chunk. Bin counts and
    category counts cover every row; the pooled KS test uses a uniform sample of up to 100k
    values.
    """
    table = as_table(new_data)
    counts = _DriftCounts(statistics, table.columns, timestamp_column)
    for chunk in table.chunks(columns=counts.columns_read(table.columns)):
        counts.add(chunk)
    batch_reports = [] if len(counts.batches) < 2 else [
        BatchDrift(key, batch.rows,
                   [_beyond_chance(f, batch) for f in counts.verdicts(batch, None, thresholds)],
                   batch.rows >= MIN_BATCH_ROWS)
        for key, batch in counts.batches.items()]
    return DriftReport(counts.verdicts(counts.pooled, counts.samples, thresholds),
                       reference_rows=int(statistics["rows"]), new_rows=int(table.rows),
                       batches=batch_reports)


class _DriftCounts:
    """Bin and category counts of the new rows, pooled and per batch, and a sample of each
    numeric feature, added up chunk by chunk."""

    def __init__(self, statistics: dict, columns: list[str], timestamp_column: str):
        self.label = statistics["label"]
        self.features = {name: ref for name, ref in statistics["features"].items()
                         if name in columns}  # validate reports a missing column
        self.edges = {name: np.asarray(ref["edges"], dtype=float)
                      for name, ref in self.features.items() if ref["kind"] == NUMERIC}
        self.has_label = self.label["name"] in columns
        self.numeric_label = self.label.get("kind") == NUMERIC
        if self.has_label and self.numeric_label:  # a regressor's label: binned as a feature
            self.edges[self.label["name"]] = np.asarray(self.label["edges"], dtype=float)
        self.categorical = [name for name in [*self.features,
                                              *([self.label["name"]] if self.has_label else [])]
                            if name not in self.edges]
        self.timestamp_column = timestamp_column
        self.pooled = _Counts(self.edges, self.categorical)
        self.batches: dict[str, _Counts] = {}
        self.samples = {name: Sample() for name in self.edges}

    def columns_read(self, columns: list[str]) -> list[str]:
        batch_columns = [c for c in (SOURCE_FILE_COLUMN, self.timestamp_column)
                         if c and c in columns]
        return list(dict.fromkeys([*self.features, *self.edges, *self.categorical,
                                   *batch_columns]))

    def add(self, chunk: pd.DataFrame) -> None:
        names = batch_names(chunk, self.timestamp_column)
        batch_keys, first_rows, batch_of_row = np.unique(names, return_index=True,
                                                         return_inverse=True)
        for key in batch_keys[np.argsort(first_rows)]:  # batches in the order rows arrived
            self.batches.setdefault(key, _Counts(self.edges, self.categorical))
        groups = [self.batches[key] for key in batch_keys]
        self.pooled.rows += len(chunk)
        for index, group in enumerate(groups):
            group.rows += int(np.sum(batch_of_row == index))
        for name, name_edges in self.edges.items():
            numbers = parse_numbers(chunk[name]).to_numpy(dtype=float, na_value=np.nan)
            present = np.isfinite(numbers)
            self.samples[name].add(numbers[present])
            width = len(name_edges) + 1
            slots = np.bincount(batch_of_row[present] * width
                                + np.searchsorted(name_edges, numbers[present]),
                                minlength=len(groups) * width).reshape(len(groups), width)
            self.pooled.bins[name] += slots.sum(axis=0)
            for index, group in enumerate(groups):
                group.bins[name] += slots[index]
        for name in self.categorical:
            values = label_values(chunk[name]) if name == self.label["name"] else chunk[name]
            self.pooled.values[name] = _add_counts(self.pooled.values[name], values)
            for index, group in enumerate(groups):
                group.values[name] = _add_counts(group.values[name],
                                                 values[batch_of_row == index])

    def verdicts(self, counts: _Counts, pooled_samples: dict | None,
                 thresholds: dict) -> list[FeatureDrift]:
        """Each feature's drift (and the label's) in ``counts``; the KS test only with
        samples (pooled)."""
        results = []
        for name, ref in self.features.items():
            if name in self.edges:
                results.append(_numeric_drift(
                    name, counts.bins[name],
                    pooled_samples[name].values if pooled_samples else None, ref, thresholds))
            else:
                results.append(_categorical_drift(name, ref["kind"], counts.values[name],
                                                  ref["shares"], thresholds))
        if self.has_label and self.numeric_label:
            name = self.label["name"]
            results.append(_numeric_drift(
                name, counts.bins[name], pooled_samples[name].values if pooled_samples else None,
                self.label, thresholds, is_label=True))
        elif self.has_label and self.label["shares"]:
            results.append(_categorical_drift(self.label["name"], "label",
                                              counts.values[self.label["name"]],
                                              self.label["shares"], thresholds, is_label=True))
        return results
