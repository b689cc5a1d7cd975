"""A model being served: one registry version, loaded the one safe way, and what its requests
must look like.

Loading goes through :meth:`components.registry.Registry.load_model`: the SHA-256 against
``metadata.json``, the skops allow-list, and the scikit-learn version the model was saved with
(refused when its major.minor differs from the running one, unless skew is allowed).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from components.data.schema import NUMERIC, plain_value
from components.ml.metrics import model_output
from components.ml.models import predicted_classes, task_of
from components.outcomes import Task
from components.registry import SCHEMA_FILE
from components.serving.inference import (
    FEATURE_DATATYPES,
    OUTPUTS,
    PREDICT,
    label_datatype,
)
from components.serving.plan import PredictionPlan, compile_plan


@dataclass(frozen=True)
class ServedModel:
    """One loaded version and its contract."""

    model_name: str
    version: str
    model: object  # the scikit-learn Pipeline
    feature_kinds: dict[str, str]  # in the order the model was fitted on
    classes: list  # none for a regressor
    label_datatype: str
    task: str = Task.CLASSIFICATION
    model_type: str = ""  # hgb, sgd, or the factory that made it
    plan: PredictionPlan | None = None  # the transforms as numpy operations, when exact
    # What the version saw in training (its schema.json): a numeric feature's [min, max], a
    # categorical one's categories. Values beyond them are served, counted and flagged.
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    categories: dict[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def load(cls, registry, version: str, *, allow_version_skew: bool = False) -> ServedModel:
        metadata = registry.metadata(version)
        model = registry.load_model(version, allow_version_skew=allow_version_skew)
        task = task_of(model)
        classes = [plain_value(c) for c in getattr(model, "classes_", [])]
        kinds = metadata.feature_kinds
        # The model's own column order (what it was fitted on), which a V1 list instance follows.
        order = [str(c) for c in getattr(model, "feature_names_in_", kinds)]
        feature_kinds = {column: kinds[column] for column in order if column in kinds}
        seen = registry.version_json(version, SCHEMA_FILE) or {"columns": []}
        columns = {c["name"]: c for c in seen["columns"] if c["name"] in feature_kinds}
        return cls(model_name=registry.model_name, version=version, model=model,
                   feature_kinds=feature_kinds, classes=classes,
                   label_datatype="FP64" if task == Task.REGRESSION else label_datatype(classes),
                   task=task, model_type=metadata.model_type,
                   plan=compile_plan(model, feature_kinds),
                   ranges={name: (c["min"], c["max"]) for name, c in columns.items()
                           if "min" in c and "max" in c},
                   categories={name: frozenset(map(str, c["domain"]))
                               for name, c in columns.items() if c.get("domain") is not None})

    @property
    def regression(self) -> bool:
        return self.task == Task.REGRESSION

    @property
    def outputs(self) -> tuple[str, ...]:
        """The V2 outputs this model answers: a regressor has no class probabilities."""
        return (PREDICT,) if self.regression else OUTPUTS

    def predict(self, columns: dict[str, list]) -> tuple[np.ndarray, np.ndarray | None]:
        """Classes and class probabilities for the rows a request holds (every feature column:
        see :mod:`components.serving.protocol`); a regressor's predicted numbers and None."""
        output = (self.plan.output(columns) if self.plan is not None
                  else model_output(self.model, self.frame(columns)))
        if self.regression:
            return output, None
        return predicted_classes(self.model, output), output

    def unfamiliar(self, columns: dict[str, list]) -> dict[str, dict[str, int]]:
        """Per feature, how many of the request's values lie beyond what the version saw in
        training: ``out_of_range`` numbers and ``unseen_category`` categories (missing values
        are not counted). Empty when every value is familiar."""
        found = {}
        for name, (low, high) in self.ranges.items():
            outside = sum(1 for v in columns[name] if v is not None and v == v and
                          not low <= v <= high)
            if outside:
                found[name] = {"out_of_range": outside}
        for name, known in self.categories.items():
            unseen = sum(1 for v in columns[name]  # NaN (v != v) is missing, like None
                         if v is not None and v == v and str(v) not in known)
            if unseen:
                found[name] = {"unseen_category": unseen}
        return found

    def v2_metadata(self) -> dict:
        """``GET /v2/models/<name>``: the inputs (one per feature) and the outputs."""
        outputs = [{"name": PREDICT, "datatype": self.label_datatype, "shape": [-1]}]
        if not self.regression:
            outputs.append({"name": "predict_proba", "datatype": "FP64",
                            "shape": [-1, len(self.classes)]})
        return {
            "name": self.model_name,
            "versions": [self.version],
            "platform": "scikit-learn",
            "inputs": [{"name": column, "datatype": FEATURE_DATATYPES[kind], "shape": [-1]}
                       for column, kind in self.feature_kinds.items()],
            "outputs": outputs,
            "parameters": {"task": self.task, "model_type": self.model_type,
                           "classes": [str(c) for c in self.classes]},
        }

    def frame(self, columns: dict[str, list]) -> pd.DataFrame:
        """The rows a request holds, as the model reads them: numeric features as floats,
        categorical ones as text (what training saw), missing values as missing."""
        data = {}
        for column, kind in self.feature_kinds.items():
            values = columns[column]
            if kind == NUMERIC:
                data[column] = np.asarray([np.nan if v is None else v for v in values],
                                          dtype=float)
            else:
                # Missing as NaN, as training saw it (scikit-learn's imputers do not take None).
                data[column] = pd.Series([np.nan if v is None else str(v) for v in values],
                                         dtype=object)
        return pd.DataFrame(data)
