"""Drift: how far the new rows have moved from the champion's training data, feature by feature.

The reference is summarised once, when a version is trained (``statistics.json`` next to the
model), so a run never re-reads the champion's training data:

- numeric features: the reference's decile edges and the share of rows in each bin, plus a
  quantile sketch of the distribution; drift is the population stability index (PSI) of the new
  rows over those bins, with a two-sample Kolmogorov-Smirnov p-value (new rows against the sketch)
  reported alongside;
- categorical features and the label: the share of each value; drift is the Jensen-Shannon
  distance (base 2, 0..1) between reference and new shares, values unseen in the reference
  pooled as one bucket.

Missing values are left out here (validate checks their share). Every statistic is one vectorised
pass per column: bin counts with ``searchsorted`` + ``bincount``, shares with ``value_counts``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from components.data.chunks import as_table
from components.data.schema import NUMERIC, label_values, parse_numbers

BINS = 10
SKETCH_POINTS = 500
# Values per numeric column behind the reference's bins and sketch, and behind a KS test.
SAMPLE_SIZE = 100_000
# Floor for an empty bin's share, so PSI stays finite (the usual choice in PSI practice).
EMPTY_BIN_SHARE = 1e-4
UNSEEN = "(unseen)"
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
        if label in chunk:
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
    bins: list[str] = field(default_factory=list)
    reference: list[float] = field(default_factory=list)
    new: list[float] = field(default_factory=list)


@dataclass
class DriftReport:
    """Per-feature drift of the new rows against the reference; ``drifted`` names what moved."""

    features: list[FeatureDrift]
    reference_rows: int
    new_rows: int

    @property
    def drifted(self) -> list[str]:
        return [f.feature for f in self.features if f.verdict == DRIFT]

    @property
    def warned(self) -> list[str]:
        return [f.feature for f in self.features if f.verdict == WARN]

    def strongest(self) -> str:
        """The largest statistic of each test, for a one-line reason."""
        parts = []
        for test in ("psi", "js"):
            scored = [f for f in self.features if f.test == test and f.statistic is not None]
            if scored:
                top = max(scored, key=lambda f: f.statistic)
                parts.append(f"largest {test.upper()} {top.statistic:.3f} ({top.feature}, "
                             f"drift at {top.drift:g})")
        return "; ".join(parts) or "nothing to compare"

    def to_dict(self) -> dict:
        return {"drifted": self.drifted, "warned": self.warned,
                "reference_rows": self.reference_rows, "new_rows": self.new_rows,
                "features": [asdict(f) for f in self.features]}


def _verdict(statistic: float, warn: float, drift: float) -> str:
    if statistic >= drift:
        return DRIFT
    return WARN if statistic >= warn else OK


def population_stability_index(reference: np.ndarray, new: np.ndarray) -> float:
    """PSI between two share vectors over the same bins: sum((new - ref) * ln(new / ref))."""
    ref = np.clip(reference, EMPTY_BIN_SHARE, None)
    cur = np.clip(new, EMPTY_BIN_SHARE, None)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def _numeric_drift(name: str, counts: np.ndarray, sample: np.ndarray, ref: dict,
                   thresholds: dict) -> FeatureDrift:
    """PSI of the new rows' counts in the reference's bins; KS of their sample against its
    sketch."""
    from scipy.stats import ks_2samp

    warn, drift = thresholds["psi_warn"], thresholds["psi_drift"]
    bins = _bin_labels(np.asarray(ref["edges"], dtype=float))
    if not counts.sum():
        return FeatureDrift(name, NUMERIC, "psi", None, warn, drift, NO_DATA, bins=bins,
                            reference=ref["shares"], new=[0.0] * len(bins))
    shares = counts / counts.sum()
    psi = population_stability_index(np.asarray(ref["shares"]), shares)
    p_value = float(ks_2samp(sample, np.asarray(ref["sketch"])).pvalue)
    return FeatureDrift(name, NUMERIC, "psi", psi, warn, drift, _verdict(psi, warn, drift),
                        ks_pvalue=p_value, bins=bins, reference=list(ref["shares"]),
                        new=shares.tolist())


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


def detect_drift(new_data, statistics: dict, thresholds: dict) -> DriftReport:
    """Compare each feature and the label of the new rows with the reference ``statistics``.

    ``new_data``: a DataFrame, or a Parquet path or Table read chunk by chunk. Bin counts and
    category counts cover every row; the KS test uses a uniform sample of up to 100k values.
    """
    table = as_table(new_data)
    label = statistics["label"]
    features = {name: ref for name, ref in statistics["features"].items()
                if name in table.columns}  # validate reports a missing column
    edges = {name: np.asarray(ref["edges"], dtype=float) for name, ref in features.items()
             if ref["kind"] == NUMERIC}
    bin_counts = {name: np.zeros(len(e) + 1, dtype=np.int64) for name, e in edges.items()}
    samples = {name: Sample() for name in edges}
    counts: dict[str, pd.Series | None] = dict.fromkeys(
        [*features, *([label["name"]] if label["name"] in table.columns else [])])
    for chunk in table.chunks(columns=list(counts)):
        for name in counts:
            if name in edges:
                present = numeric_values(chunk[name])
                bin_counts[name] += np.bincount(np.searchsorted(edges[name], present),
                                                minlength=len(edges[name]) + 1)
                samples[name].add(present)
            else:
                values = label_values(chunk[name]) if name == label["name"] else chunk[name]
                counts[name] = _add_counts(counts[name], values)
    results = []
    for name, ref in features.items():
        if name in edges:
            results.append(_numeric_drift(name, bin_counts[name], samples[name].values, ref,
                                          thresholds))
        else:
            results.append(_categorical_drift(name, ref["kind"], counts[name], ref["shares"],
                                              thresholds))
    if label["name"] in table.columns and label["shares"]:
        results.append(_categorical_drift(label["name"], "label", counts[label["name"]],
                                          label["shares"], thresholds, is_label=True))
    return DriftReport(results, reference_rows=int(statistics["rows"]),
                       new_rows=int(table.rows))
