"""Ground-truth streams: monthly files whose concept is known, so every model's true accuracy (or,
for a number to predict, its true RMSE) can be measured on a big fresh sample of the month it
serves.

A concept is a linear score over six numeric features and one categorical one: for
classification a row's label is 1 with probability ``sigmoid(scale * (w . x + segment effect +
bias))``; for regression it is ``50 + 10 * (w . x + segment effect + bias) + a bend`` plus noise
of standard deviation :data:`NOISE` (the best possible RMSE). A stream is an initial file (five
months of rows) and one file per month after it, each month with its own concept:

- ``stationary``: one concept all year;
- ``abrupt``: a different concept from :data:`CHANGE_MONTH` on;
- ``gradual``: the weights move from the first concept to the second over months 3 to 9;
- ``label_noise``: stationary, but :data:`CHANGE_MONTH`'s file has 30% of its labels flipped
  (the concept does not change: true accuracy is measured against clean labels).

Used by the tests of the deploy gate and by ``make bench`` part 8 (:mod:`bench.decisions`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

LABEL_COLUMN, TIMESTAMP_COLUMN = "label", "event_time"
NUMERIC = [f"x{i}" for i in range(1, 7)]
SEGMENTS = ["a", "b", "c"]
FEATURE_KINDS = {**dict.fromkeys(NUMERIC, "numeric"), "segment": "categorical"}
KINDS = ("stationary", "abrupt", "gradual", "label_noise")
REGRESSION_KINDS = ("stationary", "abrupt", "gradual")
NOISE = 5.0  # a regression label's noise: the best RMSE any model can have
MONTHS = 12  # monthly runs after the initial file
INITIAL_MONTHS = 5
CHANGE_MONTH = 6  # the abrupt change, and the month of flipped labels
GRADUAL_MONTHS = (3, 9)
FLIPPED_SHARE = 0.3
TRUE_ROWS = 20_000
START = pd.Timestamp("2025-01-01", tz="UTC")

# The two concepts: weights of x1..x6, the segments' effects, the bias. The second one leans on
# other features, so a model of the first is about 0.6 accurate on it.
FIRST = (np.array([1.5, -1.0, 0.8, 0.0, 0.5, 0.0]), np.array([0.5, 0.0, -0.5]), 0.0)
SECOND = (np.array([-0.4, 0.6, 0.8, 1.5, 0.0, -1.2]), np.array([-0.6, 0.4, 0.2]), 0.3)
SCALE = 2.0  # sharpness: the best possible accuracy is about 0.87


@dataclass(frozen=True)
class Concept:
    """One month's true relation between features and label."""

    weights: np.ndarray
    segment_effects: np.ndarray
    bias: float

    @staticmethod
    def between(share: float) -> Concept:
        """The concept ``share`` of the way from the first to the second."""
        mix = [(1 - share) * a + share * b for a, b in zip(FIRST, SECOND, strict=True)]
        return Concept(mix[0], mix[1], float(mix[2]))

    def rows(self, count: int, rng: np.random.Generator, start: pd.Timestamp,
             end: pd.Timestamp, task: str = "classification") -> pd.DataFrame:
        """``count`` labelled rows with event times in [start, end)."""
        features = rng.normal(size=(count, len(NUMERIC)))
        segment = rng.integers(0, len(SEGMENTS), count)
        score = features @ self.weights + self.segment_effects[segment] + self.bias
        if task == "regression":  # a bend, so a tree model and a linear one differ
            label = np.round(50 + 10 * score + 4 * np.abs(features[:, 0])
                             + NOISE * rng.normal(size=count), 3)
        else:
            label = (rng.random(count) < 1 / (1 + np.exp(-SCALE * score))).astype(int)
        seconds = np.sort(rng.uniform(0, (end - start).total_seconds(), count))
        frame = pd.DataFrame(np.round(features, 4), columns=NUMERIC)
        frame["segment"] = np.asarray(SEGMENTS)[segment]
        frame[LABEL_COLUMN] = label
        frame[TIMESTAMP_COLUMN] = (start + pd.to_timedelta(seconds, unit="s")).strftime(
            "%Y-%m-%dT%H:%M:%SZ")
        return frame


def month_start(index: int) -> pd.Timestamp:
    """The first instant of month ``index`` (0 = the stream's first month)."""
    return START + pd.DateOffset(months=index)


@dataclass(frozen=True)
class Stream:
    """A stream of ``kind`` with ``batch_rows`` rows a month, reproducible from ``seed``.

    Month ``m`` (1..12) is the m-th month after the initial file; ``m = 0`` is the initial file's
    last month. Run ``m`` reads everything up to the end of month ``m``; its champion serves
    month ``m + 1``.
    """

    kind: str
    batch_rows: int
    seed: int = 0
    task: str = "classification"
    _true_samples: dict[int, pd.DataFrame] = field(default_factory=dict, init=False,
                                                   repr=False, compare=False)

    def __post_init__(self):
        kinds = REGRESSION_KINDS if self.regression else KINDS
        if self.kind not in kinds:
            raise ValueError(f"unknown {self.task} stream kind {self.kind!r}; one of "
                             f"{', '.join(kinds)}")

    @property
    def regression(self) -> bool:
        return self.task == "regression"

    def concept(self, month: int) -> Concept:
        if self.kind == "abrupt":
            return Concept.between(1.0 if month >= CHANGE_MONTH else 0.0)
        if self.kind == "gradual":
            first, last = GRADUAL_MONTHS
            return Concept.between(float(np.clip((month - first) / (last - first), 0, 1)))
        return Concept.between(0.0)

    def flipped_share(self, month: int) -> float:
        return FLIPPED_SHARE if self.kind == "label_noise" and month == CHANGE_MONTH else 0.0

    def _rng(self, month: int, purpose: int) -> np.random.Generator:
        # A regression stream draws apart; a classification stream's draws are as they were.
        return np.random.default_rng([self.seed, KINDS.index(self.kind), self.batch_rows,
                                      month + 100, purpose, *([1] if self.regression else [])])

    def initial(self) -> pd.DataFrame:
        """The initial file: ``INITIAL_MONTHS`` months of rows under month 0's concept."""
        return self.concept(0).rows(self.batch_rows * INITIAL_MONTHS, self._rng(0, 0),
                                    month_start(-INITIAL_MONTHS + 1), month_start(1), self.task)

    def month(self, month: int) -> pd.DataFrame:
        """Month ``month``'s file, as it arrives (labels flipped in a noisy month)."""
        frame = self.concept(month).rows(self.batch_rows, self._rng(month, 0),
                                         month_start(month), month_start(month + 1), self.task)
        flip = self._rng(month, 1).random(len(frame)) < self.flipped_share(month)
        frame.loc[flip, LABEL_COLUMN] = 1 - frame.loc[flip, LABEL_COLUMN]
        return frame

    def file_name(self, month: int) -> str:
        return ("initial.csv" if month == 0
                else f"month_{month_start(month).strftime('%Y-%m')}.csv")

    def write(self, folder: str | Path, through: int = MONTHS) -> list[Path]:
        """The initial file and months 1..``through`` as CSV files in ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for month in range(through + 1):
            path = folder / self.file_name(month)
            (self.initial() if month == 0 else self.month(month)).to_csv(path, index=False)
            written.append(path)
        return written

    def cutoff(self, month: int) -> str:
        """The cutoff of run ``month``: the last second of that month."""
        return (month_start(month + 1) - pd.Timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def true_rows(self, month: int) -> pd.DataFrame:
        """A big fresh sample of month ``month``'s concept with clean labels."""
        if month not in self._true_samples:
            self._true_samples[month] = self.concept(month).rows(
                TRUE_ROWS, self._rng(month, 2), month_start(month), month_start(month + 1),
                self.task)
        return self._true_samples[month]

    def no_model_accuracy(self, month: int) -> float:
        """What a month with no model served counts as: always answering the majority class
        (for regression: the labels' mean, whose RMSE is their standard deviation)."""
        labels = self.true_rows(month)[LABEL_COLUMN]
        if self.regression:
            return float(labels.std(ddof=0))
        share = float(labels.mean())
        return max(share, 1 - share)

    def true_accuracy(self, model, month: int) -> float:
        """A model's accuracy on month ``month``'s concept (20,000 fresh rows, clean labels);
        for regression its RMSE."""
        rows = self.true_rows(month)
        features = rows.drop(columns=[LABEL_COLUMN, TIMESTAMP_COLUMN])
        labels = rows[LABEL_COLUMN].to_numpy()
        if self.regression:
            return float(np.sqrt(np.mean((model.predict(features) - labels) ** 2)))
        return float(np.mean(model.predict(features) == labels))


# -- replaying the pipeline over a stream --------------------------------------------------------
@dataclass(frozen=True)
class MonthResult:
    """One monthly run over a stream, and the true accuracy (on the month served next) of the
    champion before it, the challenger it trained, and the champion after it."""

    month: int
    status: str
    reason: str
    champion_before: float | None
    challenger: float | None
    served: float | None
    gate: dict | None
    regression: bool = False  # the scores are RMSEs: lower is better

    @property
    def deployed(self) -> bool:
        return self.status == "deployed"

    def _gain(self) -> float:
        """How much truly better the challenger is: points of accuracy, or the share of the
        champion's RMSE it takes off."""
        if self.regression:
            return (self.champion_before - self.challenger) / self.champion_before
        return self.challenger - self.champion_before

    @property
    def harmful(self) -> bool:
        """A deploy truly worse than the champion it replaced by more than a point (of
        accuracy, or 1% of the champion's RMSE)."""
        return (self.deployed and self.champion_before is not None
                and self._gain() < -0.01)

    @property
    def better_rejected(self) -> bool:
        """A challenger truly better than the champion by more than two points (2% of its
        RMSE), not deployed."""
        return (not self.deployed and self.challenger is not None
                and self.champion_before is not None and self._gain() > 0.02)


class _TrueScores:
    """Each model file's true score on a month, the file loaded and scored once: a kept champion
    is the same file month after month, and a deployed challenger the file just scored."""

    def __init__(self, stream: Stream):
        self.stream = stream
        self.models: dict[str, object] = {}
        self.scores: dict[tuple[str, int], float] = {}

    def score(self, data: bytes, source: str, month: int, model_type: str = "") -> float:
        from components.ml.models import load_model_bytes

        key = hashlib.sha256(data).hexdigest()
        if (key, month) not in self.scores:
            if key not in self.models:
                self.models[key] = load_model_bytes(data, source, model_type=model_type)
            self.scores[key, month] = self.stream.true_accuracy(self.models[key], month)
        return self.scores[key, month]

    def of_version(self, registry, version: str, month: int) -> float:
        from components.ml.models import MODEL_FILE

        uri = registry.version_uri(version, MODEL_FILE)
        return self.score(registry.storage.read_bytes(uri), uri, month,
                          registry.metadata(version).model_type)


def replay(stream: Stream, root: str | Path, *, months: int = MONTHS,
           **params) -> list[MonthResult]:
    """Run the pipeline's stages (:mod:`components.runtime.inprocess`) once a month over ``stream``: run 0 is
    the cold start on the initial file, run ``m`` reads month ``m``'s file, which arrives just
    before it. ``params`` are pipeline parameters (the table's defaults otherwise)."""
    from components.registry import Registry
    from components.runtime.inprocess import parameters, run_stages

    root = Path(root)
    source, registry_uri = root / "source", str(root / "registry")
    source.mkdir(parents=True, exist_ok=True)
    registry = Registry(registry_uri, "stream")
    truth = _TrueScores(stream)
    results = []
    for month in range(months + 1):
        frame = stream.initial() if month == 0 else stream.month(month)
        frame.to_csv(source / stream.file_name(month), index=False)
        pointer = registry.champion()
        before = truth.of_version(registry, pointer.version, month + 1) if pointer else None
        run = run_stages(parameters(
            source_uri=str(source), registry_uri=registry_uri, model_name="stream",
            label_column=LABEL_COLUMN, timestamp_column=TIMESTAMP_COLUMN,
            cutoff=stream.cutoff(month), **params), root / "runs" / f"{month:02d}",
            f"run-{month:02d}")
        challenger_file = Path(run.paths["challenger"]) / "model.skops"
        challenger = (truth.score(challenger_file.read_bytes(), str(challenger_file), month + 1)
                      if challenger_file.exists() else None)
        after = registry.champion()
        served = truth.of_version(registry, after.version, month + 1) if after else None
        decision = Path(run.paths["decision_record"])
        gate = json.loads(decision.read_text())["gate"] if decision.exists() else None
        results.append(MonthResult(month, run.status, run.reason, before, challenger, served,
                                   gate, stream.regression))
    return results
