"""The KFP components, made from the stage contracts (:mod:`components.contracts`).

Each component is a lightweight component on the project's own image (``kfp.local``'s
SubprocessRunner runs only those, and local runs of the compiled YAML are the default way to run
this pipeline). Its signature is written from the contract, so no parameter is typed twice, and
its body is the same three lines for every stage: hand the arguments to :func:`run_stage`, which
calls the step with the artifacts' paths, fills the artifacts' metadata and returns the named
outputs. KFP reads a component's source with :func:`inspect.getsource`, so the generated source
is registered in :mod:`linecache` under a name of its own; it is what the KFP UI shows.
"""

from __future__ import annotations

import inspect
import linecache
from collections import namedtuple
from types import SimpleNamespace

from kfp import dsl
from kfp.dsl import (
    HTML,
    Artifact,
    ClassificationMetrics,
    Dataset,
    Input,
    Markdown,
    Metrics,
    Model,
    Output,
    PipelineTaskFinalStatus,
)

from components.contracts import CONTRACTS, FINAL_STATUS, StageContract
from components.params import docstring

ARTIFACT_KINDS = {kind.__name__: kind for kind in (
    Artifact, Dataset, Model, Metrics, ClassificationMetrics, Markdown, HTML)}


def _parameter_text(contract: StageContract, name: str) -> str:
    if name in contract.reads:
        optional = "" if contract.required(name) else " = None"
        return f"{name}: Input[{contract.reads[name]}]{optional}"
    if name == FINAL_STATUS:
        return f"{name}: PipelineTaskFinalStatus"
    optional = "" if contract.required(name) else \
        f" = {inspect.signature(contract.step).parameters[name].default!r}"
    return f"{name}: {contract.value_type(name).__name__}{optional}"


def component_source(contract: StageContract) -> str:
    """The component function's source: the contract's signature and the three-line body."""
    inputs = [_parameter_text(contract, name) for name in contract.inputs]
    outputs = [f"{name}: Output[{kind}]" for name, kind in {**contract.writes,
                                                            **contract.logs}.items()]
    # Python wants the inputs with a default last.
    parameters = [text for text in inputs if " = " not in text] + outputs + \
        [text for text in inputs if " = " in text]
    named = contract.named_outputs
    returns = ""
    if named:
        spelled = ", ".join(f"{name}={kind.__name__}" for name, kind in named.items())
        returns = f" -> NamedTuple({contract.result_type.__name__!r}, {spelled})"
    lines = [f"def {contract.name}(", *(f"    {text}," for text in parameters), f"){returns}:",
             f'    """{contract.summary}"""',
             "    arguments = dict(locals())",
             "    from components.kfp_components import run_stage",
             "",
             f"    return run_stage({contract.name!r}, arguments)", ""]
    return "\n".join(lines)


def component_function(contract: StageContract):
    """The component's plain function (what ``python_func`` calls), with its inputs and outputs
    described in its docstring (where KFP reads descriptions from)."""
    source = component_source(contract)
    filename = f"<component {contract.name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    namespace = {"__name__": __name__, "NamedTuple": __import__("typing").NamedTuple,
                 "Input": Input, "Output": Output,
                 "PipelineTaskFinalStatus": PipelineTaskFinalStatus, **ARTIFACT_KINDS}
    # dont_inherit: the annotations must be types, not this module's postponed strings.
    exec(compile(source, filename, "exec", dont_inherit=True), namespace)  # noqa: S102
    function = namespace[contract.name]
    function.__doc__ = docstring(contract.summary, contract.inputs,
                                 [*contract.writes, *contract.logs, *contract.named_outputs])
    return function


STAGE_FUNCTIONS = tuple(component_function(contract) for contract in CONTRACTS.values())


def run_stage(stage: str, arguments: dict):
    """A component's body: call the stage's step with its arguments (an artifact's path in its
    place), fill the output artifacts' metadata, and return the named outputs."""
    contract = CONTRACTS[stage]
    kwargs = {name: _plain(value) for name, value in arguments.items()
              if name not in contract.logs}
    result = contract.step(**kwargs)
    for name, metadata in result.artifact_metadata().items():
        _annotate(arguments[name], metadata)
    names = list(contract.named_outputs)
    if not names:
        return None
    # A tuple for KFP's executor (it reads the values by position), named for readers.
    return namedtuple(contract.result_type.__name__, names)(
        *(getattr(result, name) for name in names))


def _plain(value):
    """What a step takes for a component argument: a path for an artifact, a final status as
    its state and message, anything else as it is."""
    if isinstance(value, Artifact):
        return value.path
    if isinstance(value, PipelineTaskFinalStatus):
        return {"state": value.state, "error_message": value.error_message or ""}
    return value


def _annotate(artifact: Artifact, metadata: dict) -> None:
    if isinstance(artifact, ClassificationMetrics):
        if metadata["confusion_matrix"][0]:  # a regressor has none: evaluation_report instead
            artifact.log_confusion_matrix(*metadata["confusion_matrix"])
        if metadata.get("roc"):
            artifact.log_roc_curve(*metadata["roc"])
    elif isinstance(artifact, Metrics):
        for name, value in metadata.items():
            artifact.log_metric(name, value)
    else:
        artifact.metadata.update(metadata)


def interface(function) -> tuple[list[str], list[str]]:
    """A component function's input names and output names (artifacts it writes, values it
    returns)."""
    from kfp.dsl.types.type_annotations import is_artifact_wrapped_in_Output

    signature = inspect.signature(function)
    outputs = [name for name, parameter in signature.parameters.items()
               if is_artifact_wrapped_in_Output(parameter.annotation)]
    inputs = [name for name in signature.parameters if name not in outputs]
    returned = getattr(signature.return_annotation, "_fields", ())
    return inputs, outputs + list(returned)


def make_components(image: str) -> SimpleNamespace:
    """Every stage as a KFP component on ``image``: ``components.ingest``, ``.validate``, ..."""
    return SimpleNamespace(**{
        function.__name__: dsl.component(base_image=image, install_kfp_package=False)(function)
        for function in STAGE_FUNCTIONS})
