"""Parameter checks shared by the CLI (up front) and the stages (a run started from the KFP UI).

Every message has one shape, borrowed from scikit-learn's parameter validation:
``The 'strategy' parameter of retrain must be one of {...}. Got 'fulll' instead.``
"""

from __future__ import annotations

import re
from collections.abc import Iterable

STRATEGIES = ("auto", "finetune", "full", "window")
MODEL_TYPES = ("hgb", "sgd")
# Metrics where higher is better, so one threshold in 0..1 gates them all.
GATE_METRICS = ("accuracy", "f1", "roc_auc")
# When a run with valid new data retrains: every time, only on drift, or once enough rows wait.
RETRAIN_POLICIES = ("always", "drift", "min_rows")

# Validation and drift thresholds (``validation_thresholds`` overrides any of them). Ratios are
# shares of the new rows; a ``*_warn`` ratio reports a warning, a ``*_error`` one blocks the run.
DEFAULT_THRESHOLDS = {
    "missing_warn": 0.05,  # share of a feature's values missing
    "missing_error": 0.30,
    "out_of_range_warn": 0.01,  # share of a numeric feature outside the schema's [min, max]
    "out_of_range_error": 0.50,
    "unseen_category_warn": 0.0,  # share of a categorical feature outside the schema's domain
    "unseen_category_error": 0.10,
    "duplicate_warn": 0.01,  # share of new rows that repeat an earlier new row exactly
    "duplicate_error": 0.50,
    "min_class_share": 0.01,  # a known class rarer than this in the new rows is a warning
    "psi_warn": 0.10,  # population stability index, numeric features (reference decile bins)
    "psi_drift": 0.25,
    "js_warn": 0.05,  # Jensen-Shannon distance (base 2), categorical features and the label
    "js_drift": 0.10,
    "ks_alpha": 0.05,  # KS test p-values below this are flagged in the report; not a verdict
}

_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class InvalidParameterError(ValueError):
    """A parameter value is outside what the pipeline accepts."""


def check_choice(name: str, value: object, options: Iterable[str], caller: str) -> None:
    """Raise unless ``value`` is one of ``options``."""
    options = tuple(options)
    if value not in options:
        listed = ", ".join(repr(option) for option in options)
        raise InvalidParameterError(
            f"The {name!r} parameter of {caller} must be one of {{{listed}}}. Got {value!r} instead."
        )


def check_range(
    name: str,
    value: object,
    low: float,
    high: float,
    caller: str,
    *,
    closed: str = "both",
    integer: bool = False,
) -> None:
    """Raise unless ``value`` is a number in the interval [low, high] (``closed`` picks the ends)."""
    kind = "an int" if integer else "a float"
    left = "[" if closed in ("both", "left") else "("
    right = "]" if closed in ("both", "right") else ")"
    interval = f"{left}{low}, {high}{right}"
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if integer:
        is_number = is_number and float(value).is_integer()
    inside = False
    if is_number:
        above_low = value >= low if left == "[" else value > low
        below_high = value <= high if right == "]" else value < high
        inside = above_low and below_high
    if not inside:
        raise InvalidParameterError(
            f"The {name!r} parameter of {caller} must be {kind} in the range {interval}. "
            f"Got {value!r} instead."
        )


def check_model_name(value: object, caller: str) -> None:
    """Raise unless ``value`` is a safe registry folder name (no ``/``, no ``..``)."""
    if not isinstance(value, str) or not _MODEL_NAME.match(value) or ".." in value:
        raise InvalidParameterError(
            f"The 'model_name' parameter of {caller} must be a name of letters, digits, '_', '-' "
            f"and '.' (no '/' and no '..'), starting with a letter or digit. Got {value!r} instead."
        )


def check_non_empty(name: str, value: object, caller: str) -> None:
    """Raise unless ``value`` is a non-empty string."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidParameterError(
            f"The {name!r} parameter of {caller} must be a non-empty str. Got {value!r} instead."
        )


def check_run_parameters(
    *,
    source_uri: str,
    registry_uri: str,
    model_name: str,
    label_column: str,
    strategy: str,
    model_type: str,
    metric: str,
    threshold: float,
    min_improvement: float,
    validation_fraction: float,
    window_days: int,
    window_files: int,
    epochs: int,
    min_rows: int,
    retrain_when: str = "always",
    validation_thresholds: dict | None = None,
    caller: str = "retrain run",
) -> None:
    """Check every pipeline parameter that has a constrained domain; raise on the first bad one."""
    check_non_empty("source_uri", source_uri, caller)
    check_non_empty("registry_uri", registry_uri, caller)
    check_model_name(model_name, caller)
    check_non_empty("label_column", label_column, caller)
    check_choice("strategy", strategy, STRATEGIES, caller)
    check_choice("model_type", model_type, MODEL_TYPES, caller)
    check_choice("metric", metric, GATE_METRICS, caller)
    check_range("threshold", threshold, 0, 1, caller)
    check_range("min_improvement", min_improvement, 0, 1, caller)
    check_range("validation_fraction", validation_fraction, 0, 1, caller, closed="neither")
    check_range("window_days", window_days, 1, 100_000, caller, integer=True)
    check_range("window_files", window_files, 1, 100_000, caller, integer=True)
    check_range("epochs", epochs, 1, 10_000, caller, integer=True)
    check_range("min_rows", min_rows, 2, 10**12, caller, integer=True)
    check_choice("retrain_when", retrain_when, RETRAIN_POLICIES, caller)
    check_thresholds(validation_thresholds or {}, caller)


def check_thresholds(overrides: dict, caller: str) -> dict:
    """Return the defaults updated with ``overrides``; raise on an unknown name or a bad value."""
    for name, value in overrides.items():
        check_choice("validation_thresholds", name, DEFAULT_THRESHOLDS, caller)
        check_range(name, value, 0, 1, caller)
    return {**DEFAULT_THRESHOLDS, **overrides}
