"""Deterministic demo data: the seed's customers, with a buying pattern that drifts month by month.

Ten columns: eight features (age, income, purchase history, ...), the label ``will_buy`` and the
event time ``event_time``. The first file holds 1000 rows over the initial quarter; each further
file holds one month of 200 rows. Over the months, what makes a customer buy shifts gradually from
income and membership towards web activity, and web activity itself grows, so a model that is not
retrained loses accuracy while a retrained one wins it back.

The same story with a number to predict (``task="regression"``): the label is
``spend_next_month``, what the customer will spend, driven by the same drifting pattern.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

LABEL_COLUMN = "will_buy"
REGRESSION_LABEL_COLUMN = "spend_next_month"
TIMESTAMP_COLUMN = "event_time"
INITIAL_ROWS = 1000
MONTHLY_ROWS = 200
START = pd.Timestamp("2025-01-01", tz="UTC")
INITIAL_MONTHS = 3
# Months after the initial quarter until the drift is complete.
DRIFT_MONTHS = 6


def month_start(index: int) -> pd.Timestamp:
    """Start of month ``index`` counted from January 2025 (0)."""
    return START + pd.DateOffset(months=index)


def drift_at(months_after_initial: float) -> float:
    """How far the buying pattern has moved, from 0 (initial) to 1 (complete)."""
    return float(np.clip(months_after_initial / DRIFT_MONTHS, 0.0, 1.0))


def customers(rows: int, start: pd.Timestamp, end: pd.Timestamp, drift: float,
              rng: np.random.Generator, task: str = "classification") -> pd.DataFrame:
    """``rows`` customers with event times in [start, end) whose behaviour is at ``drift``; the
    label is whether they buy, or (``task="regression"``) what they will spend."""
    seconds = rng.uniform(0, (end - start).total_seconds(), rows)
    event_time = (start + pd.to_timedelta(np.sort(seconds), unit="s")).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    age = rng.integers(18, 80, rows)
    income = np.round(rng.lognormal(10.8, 0.4, rows), -2)
    purchases = rng.poisson(6, rows)
    days_since = rng.integers(0, 365, rows)
    basket = np.round(rng.gamma(4, 12, rows), 2)
    web_visits = rng.poisson(4 + 6 * drift, rows)
    region = rng.choice(["north", "south", "east", "west"], rows, p=[0.3, 0.3, 0.2, 0.2])
    membership = rng.choice(["none", "silver", "gold"], rows, p=[0.55, 0.3, 0.15])

    def z(values, mean, std):
        return (values - mean) / std

    old = 1.6 * z(np.log(income), 10.8, 0.4) + 1.2 * (membership == "gold") \
        + 0.6 * (membership == "silver") - 0.8 * z(age, 49, 18)
    new = 1.8 * z(web_visits, 7, 3) + 0.9 * (region == "west") - 0.9 * (region == "north") \
        + 0.8 * z(age, 49, 18)
    shared = 0.9 * z(purchases, 6, 2.4) - 0.7 * z(days_since, 182, 105)
    pattern = (1 - drift) * old + drift * new + shared
    if task == "regression":
        spend = 60 + 22 * pattern + 0.4 * (basket - 48) + rng.normal(0, 12, rows)
        label = {REGRESSION_LABEL_COLUMN: np.round(np.clip(spend, 0, None), 2)}
    else:
        logit = 3.0 * pattern - 0.3
        label = {LABEL_COLUMN: (rng.uniform(size=rows) < 1 / (1 + np.exp(-logit))).astype(int)}

    frame = pd.DataFrame({
        "age": age, "income": income, "purchases_last_year": purchases,
        "days_since_last_purchase": days_since, "avg_basket_value": basket,
        "web_visits_last_month": web_visits, "region": region, "membership": membership,
        **label, TIMESTAMP_COLUMN: event_time,
    })
    # Real exports have gaps: a few missing incomes and memberships for imputation to handle.
    frame.loc[rng.uniform(size=rows) < 0.02, "income"] = np.nan
    frame.loc[rng.uniform(size=rows) < 0.02, "membership"] = None
    return frame


def write_demo_data(folder: str | Path, months: int = 12, seed: int = 7,
                    task: str = "classification") -> list[Path]:
    """Write the initial quarter and ``months`` monthly files as CSV; returns their paths. The
    label is ``will_buy``, or with ``task="regression"`` ``spend_next_month``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = []
    initial = customers(INITIAL_ROWS, month_start(0), month_start(INITIAL_MONTHS), 0.0, rng,
                        task)
    path = folder / "customers_2025-01_initial.csv"
    initial.to_csv(path, index=False)
    written.append(path)
    for offset in range(1, months + 1):
        index = INITIAL_MONTHS + offset - 1
        batch = customers(MONTHLY_ROWS, month_start(index), month_start(index + 1),
                          drift_at(offset), rng, task)
        path = folder / f"customers_{month_start(index).strftime('%Y-%m')}.csv"
        batch.to_csv(path, index=False)
        written.append(path)
    return written


def demo_cutoffs(months: int = 12) -> list[str]:
    """The cutoff of each demo run: end of the initial quarter, then the end of each month."""
    return [
        (month_start(INITIAL_MONTHS + k) - pd.Timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        for k in range(months + 1)
    ]
