"""The pipeline's parameters, declared once: name, type, default, description, constraint, CLI flag.

Everything else is derived from :data:`PARAMETERS`: the pipeline's signature and parameter
descriptions (:mod:`pipelines.retrain_pipeline`), the ``retrain run`` flags (:mod:`app.cli`),
the checks run by the CLI and again at the start of every step that takes a parameter (so a run
started from the KFP UI fails as fast, with the same message), the descriptions of every
component input, and the README's parameter table (``python -m components.params``).

Constraints are declarative, after scikit-learn's ``_param_validation``, and one function writes
every message: ``The 'strategy' parameter of retrain run must be one of {'auto', 'finetune',
'full', 'window'}. Got 'fulll' instead.``
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass

from components.outcomes import GateMetric, RetrainWhen, Strategy, Task

STRATEGIES = Strategy.ALL
MODEL_TYPES = ("hgb", "sgd")  # built in; or a team's factory, 'package.module:factory'
GATE_METRICS = GateMetric.ALL
# ``threshold``'s default: the metric's own bar (CLASSIFICATION_THRESHOLD, or none).
DEFAULT_THRESHOLD = -1.0
# The bar a classification metric must reach by default. A regression metric has none by
# default: an error is in the label's units (no one number fits a price and a temperature), and
# an R² that beats predicting the mean with confidence is what the trivial-baseline rule asks.
CLASSIFICATION_THRESHOLD = 0.80
# When a run with valid new data retrains: every time, only on drift, or once enough rows wait.
RETRAIN_POLICIES = RetrainWhen.ALL

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


class InvalidParameterError(ValueError):
    """A parameter value is outside what the pipeline accepts."""


def refuse(name: str, caller: str, requirement: str, value: object,
           detail: str = "") -> InvalidParameterError:
    """The one message every refused parameter gets; ``detail`` says what went wrong with a
    value that has the right form (a factory that does not import)."""
    shown = redacted_url(value) if name in SECRET_PARAMETERS else repr(value)
    return InvalidParameterError(
        f"The {name!r} parameter of {caller} must be {requirement}. Got {shown} instead"
        + (f": {detail}." if detail else "."))


def redacted_url(value: object) -> str:
    """What may be shown of a URL that holds a secret: its scheme and host, never its path
    (a webhook's path is its token: Slack, Teams)."""
    from urllib.parse import urlsplit

    if not isinstance(value, str):
        return f"a {type(value).__name__}"
    parts = urlsplit(value)
    if not parts.hostname:
        return "an empty value" if not value else "a value that is not a URL"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"'{parts.scheme}://{parts.hostname}{port}/...'"


# -- constraints -------------------------------------------------------------------------------
class Constraint:
    """What a value must be; :meth:`check` raises :func:`refuse`'s error otherwise."""

    requirement = "valid"

    def accepts(self, value: object) -> bool:
        raise NotImplementedError

    def check(self, name: str, value: object, caller: str) -> None:
        if not self.accepts(value):
            raise refuse(name, caller, self.requirement, value)


@dataclass(frozen=True)
class Options(Constraint):
    """One of a fixed set of strings."""

    options: tuple[str, ...]

    @property
    def requirement(self) -> str:
        return "one of {" + ", ".join(repr(option) for option in self.options) + "}"

    def accepts(self, value: object) -> bool:
        return value in self.options


@dataclass(frozen=True)
class Interval(Constraint):
    """A number in an interval; ``closed`` says which ends belong to it."""

    kind: type
    low: float
    high: float
    closed: str = "both"  # "both", "left", "right" or "neither"

    @property
    def requirement(self) -> str:
        left = "[" if self.closed in ("both", "left") else "("
        right = "]" if self.closed in ("both", "right") else ")"
        article = "an int" if self.kind is int else "a float"
        return f"{article} in the range {left}{self.low}, {self.high}{right}"

    def accepts(self, value: object) -> bool:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return False
        if self.kind is int and not float(value).is_integer():
            return False
        above = value >= self.low if self.closed in ("both", "left") else value > self.low
        below = value <= self.high if self.closed in ("both", "right") else value < self.high
        return above and below


class NonEmpty(Constraint):
    requirement = "a non-empty str"

    def accepts(self, value: object) -> bool:
        return isinstance(value, str) and bool(value.strip())


class AnyText(Constraint):
    requirement = "a str"

    def accepts(self, value: object) -> bool:
        return isinstance(value, str)


_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


class ModelName(Constraint):
    """A safe registry folder name: it becomes a path segment (no ``/``, no ``..``)."""

    requirement = ("a name of letters, digits, '_', '-' and '.' (no '/' and no '..'), starting "
                   "with a letter or digit")

    def accepts(self, value: object) -> bool:
        return isinstance(value, str) and bool(_MODEL_NAME.match(value)) and ".." not in value


class Timestamp(Constraint):
    """Empty, or an ISO 8601 timestamp (what ``pandas.Timestamp`` reads)."""

    requirement = "an ISO 8601 timestamp (or empty)"

    def accepts(self, value: object) -> bool:
        if not isinstance(value, str):
            return False
        if not value.strip():
            return True
        from datetime import datetime

        try:  # the common forms, without importing pandas into the CLI
            datetime.fromisoformat(value.strip())
            return True
        except ValueError:
            pass
        import pandas as pd

        try:
            pd.Timestamp(value.strip())
        except ValueError:
            return False
        return True


class WebhookUrl(Constraint):
    """Empty, or an http(s) URL with a host (no ``file://``, no bare paths)."""

    requirement = "empty or an http:// or https:// URL"

    def accepts(self, value: object) -> bool:
        from urllib.parse import urlsplit

        if not isinstance(value, str):
            return False
        if not value:
            return True
        parts = urlsplit(value)
        return parts.scheme in ("http", "https") and bool(parts.hostname)


_KUBERNETES_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class KubernetesName(Constraint):
    """Empty, or a DNS-1123 label (what a Kubernetes namespace is named)."""

    requirement = "empty or a Kubernetes name (lower-case letters, digits and '-', at most 63)"

    def accepts(self, value: object) -> bool:
        return isinstance(value, str) and (not value or bool(_KUBERNETES_NAME.match(value)))


class DecisionThreshold(Constraint):
    """``tuned``, or a probability strictly between 0 and 1 (as text: a pipeline parameter)."""

    requirement = "'tuned' or a number in the range (0, 1)"

    def accepts(self, value: object) -> bool:
        if value == "tuned":
            return True
        try:
            return isinstance(value, str) and 0 < float(value) < 1
        except ValueError:
            return False


class ModelType(Constraint):
    """A built-in model type, or the import path of a factory in an installed distribution
    (:mod:`components.ml.estimators`); the factory is imported to check it."""

    requirement = ("one of {'hgb', 'sgd'} or the import path 'package.module:factory' of a "
                   "factory in an installed distribution")

    def check(self, name: str, value: object, caller: str) -> None:
        from components.ml.estimators import FactoryError, import_factory

        if value in MODEL_TYPES:
            return
        try:
            import_factory(value)
        except FactoryError as error:
            raise refuse(name, caller, self.requirement, value, detail=str(error)) from None


class GateThreshold(Constraint):
    """The metric's default bar (:data:`DEFAULT_THRESHOLD`), or a bar of at least 0 (at most 1
    for a metric in 0..1: checked with the metric, :func:`check_task_parameters`)."""

    requirement = f"{DEFAULT_THRESHOLD:g} (the metric's default) or a number of at least 0"

    def accepts(self, value: object) -> bool:
        if not isinstance(value, int | float) or isinstance(value, bool):
            return False
        return value == DEFAULT_THRESHOLD or (0 <= value < float("inf"))


class JsonObject(Constraint):
    """A JSON object with text keys (keyword arguments)."""

    requirement = "a JSON object of keyword arguments"

    def accepts(self, value: object) -> bool:
        import json

        if not isinstance(value, dict) or not all(isinstance(k, str) and k.isidentifier()
                                                  for k in value):
            return False
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            return False
        return True


class ThresholdOverrides(Constraint):
    """Names of :data:`DEFAULT_THRESHOLDS`, each with a ratio in [0, 1]."""

    requirement = "a dict of threshold names and ratios"

    def check(self, name: str, value: object, caller: str) -> None:
        if not isinstance(value, dict):
            raise refuse(name, caller, self.requirement, value)
        names = Options(tuple(DEFAULT_THRESHOLDS))
        ratio = Interval(float, 0, 1)
        for threshold, ratio_value in value.items():
            names.check(name, threshold, caller)
            ratio.check(threshold, ratio_value, caller)


# -- the table ---------------------------------------------------------------------------------
REQUIRED = inspect.Parameter.empty  # a parameter the pipeline has no default for


@dataclass(frozen=True)
class Parameter:
    """One pipeline parameter.

    Attributes:
        name: As in the pipeline, the components and the JSON of a run.
        kind: ``str``, ``int``, ``float`` or ``dict`` (a KFP parameter type).
        default: The pipeline's default, or :data:`REQUIRED`.
        description: What the KFP UI, ``--help`` and the README say of it.
        constraint: What a value must be.
        cli_required: ``retrain run`` insists on it although the pipeline has a default.
        cli_pairs: A ``dict`` given on the command line as repeated ``NAME=VALUE`` flags.
        cli_json: A ``dict`` given on the command line as one JSON object.
        secret: It may hold a credential: never logged, recorded or alerted. A local run hands
            it to the stages in the environment variable ``env``, not as a task input (kfp.local
            logs every task's inputs).
        env: The environment variable a stage reads the value from when the parameter is empty.
    """

    name: str
    kind: type
    default: object
    description: str
    constraint: Constraint
    cli_required: bool = False
    cli_pairs: bool = False
    cli_json: bool = False
    secret: bool = False
    env: str = ""

    @property
    def flag(self) -> str:
        singular = "validation_threshold" if self.cli_pairs else self.name
        return "--" + singular.replace("_", "-")

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def check(self, value: object, caller: str) -> None:
        self.constraint.check(self.name, value, caller)


PARAMETERS: tuple[Parameter, ...] = (
    Parameter("source_uri", str, REQUIRED, "Folder of CSV/Parquet files with the training data "
              "(local path or gs://).", NonEmpty()),
    Parameter("registry_uri", str, REQUIRED, "Model registry root (local path or gs://).",
              NonEmpty()),
    Parameter("model_name", str, "model", "Registry name of the model (letters, digits, '_', "
              "'-', '.').", ModelName(), cli_required=True),
    Parameter("label_column", str, "label", "Column holding what to predict: a class, or a "
              "number.", NonEmpty(), cli_required=True),
    Parameter("task", str, Task.AUTO, "classification, regression, or auto: inferred from the "
              "label (numbers that are not all whole, or more than 20 distinct whole numbers: "
              "regression; else classification); a champion's task never changes.",
              Options(Task.ALL)),
    Parameter("timestamp_column", str, "", "Event-time column; empty means each file is a "
              "batch.", AnyText()),
    Parameter("cutoff", str, "", "Latest event time to consume (ISO 8601); empty means the "
              "scheduled time, or now.", Timestamp()),
    Parameter("strategy", str, Strategy.AUTO, "auto, finetune, full or window.", Options(STRATEGIES)),
    Parameter("model_type", str, "hgb", "hgb (HistGradientBoosting), sgd (SGD, epochs of "
              "partial_fit), or your own estimator: the import path 'package.module:factory' "
              "of a factory in an installed distribution.", ModelType()),
    Parameter("model_config", dict, {}, "Keyword arguments for the model_type factory, e.g. "
              "{\"num_leaves\": 15} (a factory only).", JsonObject(), cli_json=True),
    Parameter("metric", str, GateMetric.AUTO, "Deploy gate metric: accuracy, f1 or roc_auc "
              "(classification); rmse, mae or r2 (regression); auto: accuracy, or rmse.",
              Options(GATE_METRICS)),
    Parameter("threshold", float, DEFAULT_THRESHOLD, "The challenger's metric must be at least "
              "this (accuracy, f1, roc_auc, r2: 0..1), or at most this (rmse, mae: the label's "
              "units); -1: the metric's default, 0.8 for a classification metric, none for a "
              "regression one.", GateThreshold()),
    Parameter("min_improvement", float, 0.0, "The challenger must beat the champion by more "
              "than this at the lower bound of the confidence interval of their difference "
              "(0..1; for rmse and mae a share of the champion's error).",
              Interval(float, 0, 1)),
    Parameter("confidence", float, 0.95, "Confidence of the interval of (challenger - "
              "champion) the deploy gate decides on.", Interval(float, 0.5, 1,
                                                                closed="left")),
    Parameter("freshness_margin", float, 0.01, "The freshness rule: a refit on the champion's "
              "rows and the new ones, where the rows show no concept change, is deployed when it "
              "is at least as good and worse by at most this at the lower bound of the interval "
              "at freshness_confidence (0..1; applies when min_improvement is 0).",
              Interval(float, 0, 1)),
    Parameter("freshness_confidence", float, 0.8, "Confidence of the interval the freshness "
              "rule decides on.", Interval(float, 0.5, 1, closed="left")),
    Parameter("holdout_fraction", float, 0.2, "Share of the new rows a run too large to "
              "cross-fit (over 20,000 new rows, or 100,000 to fit on) holds out for the gate, "
              "drawn per row from its content and the model name; no version trains on them "
              "while they are in the rolling holdout. A smaller run holds none out.",
              Interval(float, 0, 1, closed="neither")),
    Parameter("min_evaluation_rows", int, 300, "Fewest rows the gate compares the two models "
              "on: every new row, then the newest rows of the rolling holdout.",
              Interval(int, 1, 10**7)),
    Parameter("max_evaluation_rows", int, 5000, "Most rows the gate compares on (the newest), "
              "and the size of the rolling holdout kept in the registry.",
              Interval(int, 1, 10**7)),
    Parameter("validation_fraction", float, 0.2, "Newest share of the new training rows held out "
              "to choose among candidates (auto), tune the decision threshold and trace the "
              "training; the gate sees them only through cross-fitted predictions.",
              Interval(float, 0, 1, closed="neither")),
    Parameter("decision_threshold", str, "0.5", "Binary labels: the probability from which the "
              "positive class is predicted, or 'tuned' (on the validation rows, for the gate "
              "metric); saved in the model file, so serving applies it. Classification only.",
              DecisionThreshold()),
    Parameter("window_days", int, 90, "Days of newest data the window strategy trains on "
              "(timestamp mode).", Interval(int, 1, 100_000)),
    Parameter("window_files", int, 3, "Newest files the window strategy trains on (batch "
              "mode).", Interval(int, 1, 100_000)),
    Parameter("epochs", int, 5, "SGD passes over the data; rows of the training trace.",
              Interval(int, 1, 10_000)),
    Parameter("min_rows", int, 100, "Fewest labelled new rows worth retraining on.",
              Interval(int, 2, 10**12)),
    Parameter("retrain_when", str, RetrainWhen.ALWAYS, "always, drift (only when a feature or the label "
              "drifted) or min_rows (wait, as skipped, until min_rows labelled new rows have "
              "accumulated).", Options(RETRAIN_POLICIES)),
    Parameter("schema_uri", str, "", "schema.json the new data must meet; empty means the "
              "champion's own.", AnyText()),
    Parameter("validation_thresholds", dict, {}, "Overrides of the validation and drift "
              "thresholds by name, e.g. {\"psi_drift\": 0.3}; see the README for the names and "
              "defaults.", ThresholdOverrides(), cli_pairs=True),
    Parameter("serving_namespace", str, "", "Kubernetes namespace where deploy serves the champion "
              "as a KServe InferenceService (Ready before the pointer moves); empty: the registry "
              "only.", KubernetesName()),
    Parameter("canary_traffic_percent", int, 100, "Share of traffic the new version gets at "
              "first on the cluster (KServe Serverless mode); 100 replaces the old one.",
              Interval(int, 1, 100)),
    Parameter("serving_timeout_seconds", int, 600, "How long deploy waits for the "
              "InferenceService to be Ready before it rejects the version.",
              Interval(int, 1, 86_400)),
    Parameter("alert_webhook_url", str, "", "Slack-compatible webhook that receives alerts; "
              "empty to only log them.", WebhookUrl(), secret=True,
              env="RETRAIN_ALERT_WEBHOOK_URL"),
)
BY_NAME = {parameter.name: parameter for parameter in PARAMETERS}
SECRET_PARAMETERS = frozenset(p.name for p in PARAMETERS if p.secret)


def check_parameters(values: dict, caller: str) -> None:
    """Check each of ``values`` that is a pipeline parameter; raise on the first bad one, then
    the rules between parameters."""
    for name, value in values.items():
        if name in BY_NAME:
            BY_NAME[name].check(value, caller)
    low, high = values.get("min_evaluation_rows"), values.get("max_evaluation_rows")
    if isinstance(low, int) and isinstance(high, int) and low > high:
        raise refuse("max_evaluation_rows", caller,
                     f"at least min_evaluation_rows ({low})", high)
    _check_model_config(values, caller)
    check_task_parameters(values, values.get("task", Task.AUTO), caller)


def _check_model_config(values: dict, caller: str) -> None:
    """``model_config`` only for a factory, and only with keywords the factory takes."""
    model_type, config = values.get("model_type"), values.get("model_config")
    if model_type is None or config is None:
        return
    if model_type in MODEL_TYPES:
        if config:
            raise refuse("model_config", caller, f"empty for the built-in model_type "
                         f"{model_type!r} (it configures a factory)", config)
        return
    from components.ml.estimators import factory_problem

    problem = factory_problem(model_type, config)
    if problem:
        raise refuse("model_config", caller, f"keyword arguments that {model_type} takes",
                     config, detail=problem)


def check_task_parameters(values: dict, task: str, caller: str) -> None:
    """The rules a task sets: the gate metric one of the task's, the decision threshold only for
    classification, a threshold in 0..1 for a metric in 0..1. With ``task`` auto only what holds
    for both tasks is checked (the stages check again once the label has decided the task)."""
    metric, threshold = values.get("metric"), values.get("threshold")
    if task in Task.KNOWN and metric is not None and metric != GateMetric.AUTO and \
            metric not in GateMetric.FOR_TASK[task]:
        options = (GateMetric.AUTO, *GateMetric.FOR_TASK[task])
        raise refuse("metric", caller, f"{Options(options).requirement} for a {task} task",
                     metric)
    if task == Task.REGRESSION and values.get("decision_threshold", "0.5") != "0.5":
        raise refuse("decision_threshold", caller, "'0.5' (its default) for a regression task: "
                     "a regressor has no classes to set a threshold between",
                     values["decision_threshold"])
    if metric is None or threshold is None or threshold == DEFAULT_THRESHOLD:
        return
    resolved = GateMetric.resolved(metric, task) if task in Task.KNOWN else metric
    if resolved in GateMetric.UNIT_RANGE and threshold > 1:
        raise refuse("threshold", caller, f"in the range [0, 1] for {resolved} (or "
                     f"{DEFAULT_THRESHOLD:g}, its default)", threshold)


def whole_numbers(value):
    """``value`` with every whole float made an int again, through lists and dicts: a KFP
    ``dict`` parameter travels as a protobuf Struct, whose numbers are all doubles, so the
    ``{"num_leaves": 15}`` a user gave arrives as ``15.0``, which some libraries refuse."""
    if isinstance(value, dict):
        return {key: whole_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [whole_numbers(item) for item in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def gate_threshold(threshold: float, metric: str) -> float | None:
    """The bar the gate holds ``metric`` (resolved) to: ``threshold``, or for the default its
    metric's own (:data:`CLASSIFICATION_THRESHOLD`, none for a regression metric)."""
    if threshold != DEFAULT_THRESHOLD:
        return float(threshold)
    return None if metric in GateMetric.REGRESSION else CLASSIFICATION_THRESHOLD


def checks_parameters(step: Callable) -> Callable:
    """Check the pipeline parameters a step is given before it does anything.

    The caller named in the message is the stage (``ingest_step`` -> ``the ingest stage``).
    """
    caller = f"the {step.__name__.removesuffix('_step')} stage"

    @functools.wraps(step)
    def checked(**kwargs):
        check_parameters(kwargs, caller)
        return step(**kwargs)

    return checked


def thresholds_with(overrides: dict, caller: str) -> dict:
    """The validation and drift thresholds: the defaults updated with checked ``overrides``."""
    BY_NAME["validation_thresholds"].check(overrides, caller)
    return {**DEFAULT_THRESHOLDS, **overrides}


# -- what other places derive from the table ---------------------------------------------------
# Inputs and outputs of the components that are not pipeline parameters, described once too.
STAGE_VALUES = {
    "run_id": "The pipeline job's id: names the run's record in the registry.",
    "scheduled_time": "The run's scheduled time (UTC), which a recurring run reads up to.",
    "champion_version": "The champion version this run started from; empty before the first "
                        "deploy.",
    "new_data": "The new rows (Parquet), each with the file it came from.",
    "history": "Rows consumed by earlier versions, as far as the strategy needs them (Parquet).",
    "ingest_report": "What ingest read: cutoff, watermarks, files, row counts, problems (JSON).",
    "new_rows": "How many new rows ingest found.",
    "outcome": "new-data, or no-new-data (the run ends there).",
    "validation_report": "Validation findings, drift statistics and the decision (JSON).",
    "report": "The findings and the per-feature drift table (Markdown).",
    "drift_report": "A reference-vs-new histogram per feature (HTML).",
    "schema": "The schema the new rows were checked against, which training uses: the user's, "
              "the champion's, or one inferred (JSON).",
    "decision": "The stage's decision, on which the pipeline branches.",
    "summary": "One line naming the first errors, or saying the data passed.",
    "train_data": "Cleaned new rows to train on (Parquet).",
    "validation_data": "The newest cleaned new training rows: to choose among candidates, tune "
                       "the threshold and trace the training (Parquet).",
    "evaluation_data": "The new holdout rows of a run too large to cross-fit: evaluation-only "
                       "(Parquet; none in a smaller run).",
    "seed": "Seed of every random choice of the run, drawn from its data and cutoff.",
    "clean_history": "Cleaned history rows to train on: all but those in the rolling holdout "
                     "(Parquet).",
    "counts": "Rows for training, validation, evaluation and history, rows dropped, the seed.",
    "preprocess_counts": "Rows for training, validation, evaluation and history, rows dropped, "
                         "the seed.",
    "challenger": "The retrained model (model.skops, training.json, schema.json, "
                  "statistics.json).",
    "training_metrics": "Loss and accuracy after each epoch.",
    "training_trace": "The epoch-by-epoch training trace and the candidates (Markdown).",
    "cross_fitted": "The new training rows, each with the challenger procedure's prediction "
                    "from a fit without it: evidence for the gate (Parquet; none in a run too "
                    "large to cross-fit, whose holdout rows are the evidence).",
    "metrics": "Both models' scores on the evaluation rows.",
    "classification_metrics": "The challenger's confusion matrix and ROC curve (a "
                              "classifier's).",
    "evaluation_report": "Both models on the evaluation rows (HTML): a regressor's predictions "
                         "against the actual values and its residuals; a classifier's confusion "
                         "matrix.",
    "comparison": "Champion vs challenger and the gate's reason (Markdown).",
    "decision_record": "Everything the gate decided on (JSON): what deploy publishes.",
    "judged_rows": "The rows the gate judged on (Parquet): their content hashes (a version is "
                   "never judged again on the rows that promoted it), when each arrived and how "
                   "the challenger did on it (kept with the version, where later runs seek a "
                   "change in its world from).",
    "reason": "The sentence that explains the decision.",
    "version": "The version deploy published (vNNNN).",
    "result": "deployed, or rejected (infra validation failed, the InferenceService was not "
              "Ready, or another run moved the champion meanwhile).",
    "prediction_sample": "Evaluation rows as a V2 request, and the challenger's predictions for "
                         "them: what infra validation requires the served version to answer.",
    "serving_image": "The image the InferenceService runs (the one this pipeline was compiled "
                     "for).",
    "serving_service_account": "The service account the InferenceService runs as (empty: the "
                               "namespace's default).",
    "serving_resources": "CPU and memory of the serving container, e.g. '1,2Gi' (empty: none).",
    "unpromoted_version": "A version deploy published but could not promote (it lost the race).",
    "status": "The run's status as the alert reports it.",
    "alert_report": "The alert as sent (Markdown).",
    "run_status": "KFP's final status of the run (the exit handler's input).",
    "failure_report": "The failure alert, or a note that the run did not fail (Markdown).",
    "model_report": "The model's life: every run, decision, version and drift, this run "
                    "included (HTML).",
}


def describe(name: str) -> str:
    """The description of a component input or output, from the table or :data:`STAGE_VALUES`."""
    if name in BY_NAME:
        return BY_NAME[name].description
    if name in STAGE_VALUES:
        return STAGE_VALUES[name]
    raise KeyError(f"{name!r} has no description: add it to PARAMETERS or STAGE_VALUES")


def docstring(summary: str, inputs: list[str], outputs: list[str] = ()) -> str:
    """A Google-style docstring (what KFP reads descriptions from) for ``inputs`` and ``outputs``."""
    lines = [summary.strip(), "", "Args:"]
    lines += [f"    {name}: {describe(name)}" for name in inputs]
    if outputs:
        lines += ["", "Returns:"]
        lines += [f"    {name}: {describe(name)}" for name in outputs]
    return "\n".join(lines) + "\n"


def pipeline_signature() -> inspect.Signature:
    """The pipeline function's signature: one keyword parameter per row of the table."""
    return inspect.Signature([
        inspect.Parameter(p.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=p.default,
                          annotation=p.kind) for p in PARAMETERS])


def _default_text(parameter: Parameter) -> str:
    if parameter.required:
        return "(required)"
    if parameter.default == "":
        return "empty"
    return f"`{parameter.default}`"


def markdown_table() -> str:
    """The README's parameter table."""
    lines = ["| parameter | CLI flag | default | meaning |", "|---|---|---|---|"]
    for p in PARAMETERS:
        flag = (f"`{p.flag} NAME=VALUE` (repeatable)" if p.cli_pairs else
                f"`{p.flag} JSON`" if p.cli_json else f"`{p.flag}`")
        required = " (required)" if p.cli_required else ""
        lines.append(f"| `{p.name}` | {flag}{required} | {_default_text(p)} | "
                     f"{p.description.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
