"""The pipeline's graph run in one process, for simulations and as the bench's floor.

The product is the compiled YAML (``retrain run`` runs it through kfp.local); this walks the same
graph (:data:`components.contracts.GRAPH`) and calls the same step functions the components
call, without a process per stage: what a year of monthly runs over a ground-truth stream needs
to be cheap (:mod:`app.concept_streams`, ``make bench`` part 8). The conditions are the graph's,
so both decide alike by construction (a test checks it on a real run too). No alert is sent:
the outcome that would alert is returned.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from components.contracts import CONTRACTS, GRAPH, StageContract, Switch, Task, task_inputs
from components.outcomes import GateDecision
from components.params import PARAMETERS


@dataclass
class StageRun:
    """Where one run's artifacts are, what each stage returned, and how the run ended."""

    paths: dict[str, str]
    outcomes: dict[str, object] = field(default_factory=dict)  # stage -> the step's result
    status: str = ""
    reason: str = ""

    @property
    def version(self) -> str:
        """The version deploy published, if it ran."""
        deploy = self.outcomes.get("deploy")
        return deploy.version if deploy else ""


class _RunEnded(Exception):  # noqa: N818 - control flow, not an error
    """The walk reached the run's end: an alert, a case-less branch or a stop."""

    def __init__(self, status: str, reason: str = ""):
        super().__init__(status)
        self.status, self.reason = status, reason


def parameters(**given) -> dict:
    """The pipeline's parameters: the table's defaults, with ``given`` ones in their place."""
    unknown = set(given) - {p.name for p in PARAMETERS}
    if unknown:
        raise TypeError(f"not pipeline parameters: {', '.join(sorted(unknown))}")
    return {p.name: given.get(p.name, p.default) for p in PARAMETERS}


def call_step(contract: StageContract, inputs: dict, paths: dict):
    """Run a stage as its step function, here (metadata-only artifacts are the components')."""
    return contract.step(**inputs, **{name: paths[name] for name in contract.writes})


def run_stages(params: dict, work: str | Path, run_id: str, *, deploy: bool = True,
               infra_validation: bool = False, quiet: bool = True,
               call: Callable = call_step) -> StageRun:
    """One run of the pipeline's stages over ``params`` (see :func:`parameters`), artifacts in
    ``work``. ``deploy=False`` stops after evaluate; ``infra_validation`` starts the model
    server on the published version as deploy does in the pipeline (about a second). ``call``
    runs one stage given its inputs and output paths, and returns what it returned (its named
    outputs as attributes): the step by default; the component tests call the components."""
    output = contextlib.ExitStack()
    if quiet:
        output.enter_context(contextlib.redirect_stdout(io.StringIO()))
        output.enter_context(contextlib.redirect_stderr(io.StringIO()))
    with output:
        walk = _Walk(params, Path(work), run_id, call, deploy=deploy,
                     infra_validation=infra_validation)
        try:
            walk.nodes(GRAPH)
        except _RunEnded as end:
            walk.run.status, walk.run.reason = end.status, end.reason
        return walk.run


class _Walk:
    """The graph walked once: each task called as its step, each switch taking its one case."""

    def __init__(self, params: dict, work: Path, run_id: str, call: Callable, *, deploy: bool,
                 infra_validation: bool):
        work.mkdir(parents=True, exist_ok=True)
        artifacts = [name for contract in CONTRACTS.values()
                     for name in (*contract.writes, *contract.logs)]
        self.run = StageRun({name: str(work / name) for name in artifacts})
        self.params, self.call = params, call
        self.deploy, self.infra_validation = deploy, infra_validation
        self.run_values = {"run_id": run_id, "scheduled_time": "", "serving_image": "",
                           "serving_service_account": "", "serving_resources": ""}
        self.done: dict[str, dict] = {}

    def nodes(self, nodes: tuple) -> None:
        for node in nodes:
            if isinstance(node, Task):
                self.task(node)
            else:
                self.switch(node)

    def task(self, node: Task) -> None:
        contract = node.contract
        inputs = task_inputs(node, parameters=self.params, run_values=self.run_values,
                             done=self.done)
        if contract.name == "alert":
            raise _RunEnded(inputs["status"], inputs["reason"])
        if contract.name == "deploy":
            if not self.deploy:
                raise _RunEnded(GateDecision.DEPLOY, self.run.reason)
            if not self.infra_validation:
                inputs["prediction_sample"] = ""
        paths = {name: self.run.paths[name] for name in (*contract.writes, *contract.logs)}
        result = self.run.outcomes[contract.name] = self.call(contract, inputs, paths)
        self.run.reason = getattr(result, "reason", self.run.reason)
        self.done[contract.name] = {
            **paths, **{name: getattr(result, name) for name in contract.named_outputs}}

    def switch(self, switch: Switch) -> None:
        value = self.done[switch.on.stage][switch.on.output]
        case = next((case for case in switch.cases if case.value == value), switch.otherwise)
        if case is None:
            raise _RunEnded(value, self.run.reason)
        self.nodes(case.body)
