"""Stage 5, evaluate: score champion and challenger on the same validation rows and decide.

The scores come from :mod:`components.ml.metrics`, the decision from the deploy gate in
:mod:`components.policies`.
"""

from __future__ import annotations

from dataclasses import dataclass

from components.data.chunks import as_table
from components.ml.metrics import Predictions, predict, score_model
from components.ml.threads import limited_threads
from components.policies import GateVerdict, gate_decision


@dataclass(frozen=True)
class Evaluation:
    """Both models' scores on the validation rows, and the gate's verdict."""

    challenger: Predictions
    challenger_scores: dict
    champion_scores: dict | None
    verdict: GateVerdict


def evaluate(challenger, champion, validation, *, label_column: str, metric: str,
             threshold: float, min_improvement: float, champion_version: str) -> Evaluation:
    """Score the challenger (and the champion, if there is one) on ``validation`` and decide.

    ``validation``: a DataFrame, Parquet path or Table, scored a chunk at a time.
    """
    with limited_threads(as_table(validation).rows):
        predictions = predict(challenger, validation, label_column)
        champion_scores = (score_model(champion, validation, label_column)
                           if champion is not None else None)
    challenger_scores = predictions.scores()
    verdict = gate_decision(challenger_scores, champion_scores, metric=metric,
                            threshold=threshold, min_improvement=min_improvement,
                            champion_version=champion_version)
    return Evaluation(predictions, challenger_scores, champion_scores, verdict)
