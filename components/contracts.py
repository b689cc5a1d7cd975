"""Each stage's contract, declared once, and the graph of the pipeline that wires them.

A stage's contract is its step function (:mod:`components.steps`) plus which of the step's
keyword parameters are artifacts. Everything else is derived:

- a step parameter named in the parameter table (:mod:`components.params`) is a pipeline
  parameter, typed and described there;
- a step parameter named in :data:`reads` or :data:`writes` is an input or output artifact, of the
  KFP kind given; the step receives its path;
- any other step parameter is a value handed on from an earlier stage or from the run (its type
  is the step's annotation);
- the step's result is a dataclass whose fields marked :func:`components.records.named_output`
  are the stage's named outputs, on which the pipeline branches; its ``artifact_metadata`` fills
  the metadata-only artifacts (:data:`logs`: KFP ``Metrics`` and ``ClassificationMetrics``).

:data:`GRAPH` is the pipeline: the order of the stages and the conditions between them. An input
is wired by name: a pipeline parameter, a value of the run (:data:`RUN_VALUES`), or the output of
an earlier stage of the same name; anything else is given explicitly with :class:`From`. The KFP
pipeline (:mod:`pipelines.retrain_pipeline`), the in-process runner
(:mod:`components.runtime.inprocess`) and the component tests all walk this one graph, so none of
them can decide differently by construction.

Nothing here imports KFP: :mod:`components.kfp_components` makes components of the contracts.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from components import steps
from components.outcomes import DeployResult, GateDecision, IngestOutcome, ValidateDecision
from components.params import BY_NAME
from components.records import NAMED_OUTPUT

# Values every run has, wired by name like a pipeline parameter: the run's id and scheduled time,
# and what the pipeline was compiled for (the image, the serving account and resources).
RUN_VALUES = ("run_id", "scheduled_time", "serving_image", "serving_service_account",
              "serving_resources")
# The exit handler's input: KFP's final status of the run, handed to the step as its state and
# error message.
FINAL_STATUS = "run_status"


class GraphError(ValueError):
    """The graph names an input nothing provides, or one several stages provide."""


@dataclass(frozen=True)
class StageContract:
    """One stage: its step and which of its parameters are artifacts.

    Attributes:
        name: The component's name (``ingest``, ``alert_on_failure``).
        summary: One line: what the component does (its description in the KFP UI).
        step: The step function; its keyword parameters are the stage's inputs and the paths of
            the artifacts it writes.
        reads: Input artifacts by name, with their KFP kind (``Dataset``, ``Artifact``, ...).
        writes: Output artifacts the step writes at a path it is given, with their kind.
        logs: Output artifacts that hold only metadata (``Metrics``, ``ClassificationMetrics``),
            filled from the result's ``artifact_metadata``.
        cached: Whether KFP may replay the task from its cache.
    """

    name: str
    summary: str
    step: typing.Callable
    reads: Mapping[str, str] = field(default_factory=dict)
    writes: Mapping[str, str] = field(default_factory=dict)
    logs: Mapping[str, str] = field(default_factory=dict)
    cached: bool = True

    @functools.cached_property
    def _signature(self) -> inspect.Signature:
        return inspect.signature(self.step)

    @functools.cached_property
    def _hints(self) -> dict:
        return typing.get_type_hints(self.step)

    @property
    def inputs(self) -> list[str]:
        """What the step takes, output paths excepted: parameters, values, input artifacts."""
        return [name for name in self._signature.parameters if name not in self.writes]

    def required(self, name: str) -> bool:
        """Whether the step needs ``name`` (an input with a default is wired only when given)."""
        return self._signature.parameters[name].default is inspect.Parameter.empty

    def value_type(self, name: str) -> type:
        """The type of a value input: the table's for a pipeline parameter, else the step's."""
        if name in BY_NAME:
            return BY_NAME[name].kind
        return typing.get_origin(self._hints[name]) or self._hints[name]

    @property
    def result_type(self) -> type:
        return self._hints["return"]

    @property
    def named_outputs(self) -> dict[str, type]:
        """The stage's named outputs and their types, from the result's marked fields."""
        hints = typing.get_type_hints(self.result_type)
        return {f.name: hints[f.name] for f in fields(self.result_type)
                if f.metadata.get(NAMED_OUTPUT)}

    @property
    def outputs(self) -> list[str]:
        """Everything a later stage can take by name: artifacts written, then named outputs."""
        return [*self.writes, *self.logs, *self.named_outputs]


CONTRACTS: dict[str, StageContract] = {contract.name: contract for contract in (
    StageContract(
        "ingest", "Reads the new rows after the champion's watermark, and the history the "
        "strategy needs.", steps.ingest_step,
        writes={"new_data": "Dataset", "history": "Dataset", "ingest_report": "Artifact"},
        cached=False),  # new data must be read, never replayed
    StageContract(
        "validate", "Checks the new rows against the schema, measures drift, and decides "
        "whether to retrain.", steps.validate_step,
        reads={"new_data": "Dataset", "ingest_report": "Artifact"},
        writes={"validation_report": "Artifact", "report": "Markdown", "drift_report": "HTML",
                "schema": "Artifact"}),
    StageContract(
        "preprocess", "Cleans rows, sets any holdout rows apart (a run too large to "
        "cross-fit), and holds out the newest training rows.", steps.preprocess_step,
        reads={"new_data": "Dataset", "history": "Dataset", "schema": "Artifact",
               "ingest_report": "Artifact"},
        writes={"train_data": "Dataset", "validation_data": "Dataset",
                "evaluation_data": "Dataset", "clean_history": "Dataset"}),
    StageContract(
        "retrain", "Fits the challenger (finetune, full, window, or auto: the best of them) and "
        "logs its trace.", steps.retrain_step,
        reads={"train_data": "Dataset", "validation_data": "Dataset",
               "clean_history": "Dataset", "schema": "Artifact"},
        writes={"challenger": "Model", "training_trace": "Markdown", "cross_fitted": "Dataset"},
        logs={"training_metrics": "Metrics"}),
    StageContract(
        "evaluate", "Compares champion and challenger on the same rows, every new one among "
        "them; the deploy gate decides.", steps.evaluate_step,
        reads={"challenger": "Model", "evaluation_data": "Dataset", "cross_fitted": "Dataset",
               "ingest_report": "Artifact", "validation_report": "Artifact"},
        writes={"comparison": "Markdown", "decision_record": "Artifact",
                "prediction_sample": "Artifact", "judged_rows": "Dataset",
                "evaluation_report": "HTML"},
        logs={"metrics": "Metrics", "classification_metrics": "ClassificationMetrics"}),
    StageContract(
        "deploy", "Publishes vNNNN, checks it serves evaluate's predictions, serves it, moves "
        "the pointer.", steps.deploy_step,
        reads={"challenger": "Model", "decision_record": "Artifact",
               "prediction_sample": "Artifact", "evaluation_data": "Dataset",
               "judged_rows": "Dataset"}),
    StageContract(
        "alert", "Records the outcome and alerts the team: logged, written as Markdown, POSTed "
        "if a URL is set.", steps.alert_step,
        reads={"decision_record": "Artifact", "validation_report": "Artifact"},
        writes={"alert_report": "Markdown"}),
    StageContract(
        "alert_on_failure", "Exit handler: alerts when any stage failed outright, naming the "
        "stage and the cause; writes the model's life page.", steps.failure_alert_step,
        writes={"failure_report": "Markdown", "model_report": "HTML"}),
)}


# -- the graph ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class From:
    """An output of an earlier stage, given to an input of another name."""

    stage: str
    output: str


@dataclass(frozen=True)
class Task:
    """One stage's task; ``given`` wires inputs that are not taken by name (a :class:`From` or a
    constant), and the optional inputs it should receive."""

    stage: str
    given: Mapping[str, object] = field(default_factory=dict)

    @property
    def contract(self) -> StageContract:
        return CONTRACTS[self.stage]


@dataclass(frozen=True)
class Case:
    """The tasks that run when the switched output equals ``value`` (None: no case matched)."""

    value: str | None
    name: str  # the condition's name in the KFP UI
    body: tuple


@dataclass(frozen=True)
class Switch:
    """Branch on a named output. When no case matches and there is no ``otherwise``, the run ends
    there, with the switched value as its status."""

    on: From
    cases: tuple[Case, ...]
    otherwise: Case | None = None


def alert(status: str, reason: From, **given) -> Task:
    """The alert task of a run that ends with ``status`` for ``reason``."""
    return Task("alert", {"status": status, "reason": reason, **given})


DECISION_RECORD = From("evaluate", "decision_record")

GRAPH: tuple = (
    Task("ingest"),
    Switch(From("ingest", "outcome"), (Case(IngestOutcome.NEW_DATA, "new-data", (
        Task("validate"),
        # "skipped" (the retrain_when policy said no) takes neither case: validate has recorded
        # the run, and nobody is alerted.
        Switch(From("validate", "decision"), (
            Case(ValidateDecision.RETRAIN, "retrain", (
                Task("preprocess"),
                Task("retrain"),
                Task("evaluate", {"preprocess_counts": From("preprocess", "counts")}),
                Switch(From("evaluate", "decision"), (
                    Case(GateDecision.DEPLOY, "deploy", (
                        Task("deploy"),
                        Switch(From("deploy", "result"), (
                            Case(DeployResult.REJECTED, "champion-changed", (
                                alert(DeployResult.REJECTED, From("deploy", "reason"),
                                      decision_record=DECISION_RECORD,
                                      unpromoted_version=From("deploy", "version")),)),)),
                    )),),
                    otherwise=Case(None, "reject", (
                        alert(DeployResult.REJECTED, From("evaluate", "reason"),
                              decision_record=DECISION_RECORD),))),
            )),
            Case(ValidateDecision.INVALID_DATA, "invalid-data", (
                alert(ValidateDecision.INVALID_DATA, From("validate", "summary"),
                      validation_report=From("validate", "validation_report")),)),
        )),
    )),)),
)
# Runs when the graph ends, whatever happened: alerts when a stage failed outright.
EXIT_HANDLER = Task("alert_on_failure")


def task_inputs(task: Task, *, parameters: Mapping, run_values: Mapping, done: Mapping) -> dict:
    """Every input of ``task``, from what is given, the pipeline's parameters, the run's values
    and the outputs of the stages ``done`` before it (stage name -> output name -> value).

    The values are whatever the caller keeps: KFP channels, paths, plain values.
    """
    contract, inputs = task.contract, {}
    for name in contract.inputs:
        if name in task.given:
            given = task.given[name]
            inputs[name] = done[given.stage][given.output] if isinstance(given, From) else given
        elif not contract.required(name):
            continue  # optional: only where the graph gives it
        elif name in BY_NAME:
            inputs[name] = parameters[name]
        elif name in RUN_VALUES:
            inputs[name] = run_values[name]
        elif name == FINAL_STATUS:  # KFP fills it in the exit handler by itself
            if name in run_values:
                inputs[name] = run_values[name]
        else:
            inputs[name] = _earlier_output(task.stage, name, done)
    return inputs


def _earlier_output(stage: str, name: str, done: Mapping):
    providers = [outputs for outputs in done.values() if name in outputs]
    if len(providers) != 1:
        raise GraphError(f"the input {name!r} of {stage} is an output of "
                         f"{len(providers)} earlier stages; give it with From(stage, output)")
    return providers[0][name]
