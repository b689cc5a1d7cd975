"""The retraining pipeline: the graph of :mod:`components.contracts` made into KFP tasks.

ingest -> validate -> preprocess -> retrain -> evaluate -> deploy (if the gate passes) or alert.
Every branch is a condition on a named output a stage returns (:mod:`components.outcomes`); an
exit handler alerts when a stage fails. The pipeline's parameters are those of
:data:`components.params.PARAMETERS`, and what it is compiled for (the image, cluster options)
is passed to :func:`build_pipeline`: nothing is read from the environment.
"""

from __future__ import annotations

from pathlib import Path

from kfp import compiler, dsl

from components import params
from components.contracts import EXIT_HANDLER, GRAPH, From, Switch, Task, task_inputs
from components.kfp_components import make_components
from pipelines import COMPILED_PIPELINE, PIPELINE_NAME
from pipelines.cluster import DEFAULT_IMAGE, ClusterOptions

DESCRIPTION = ("Retrains a tabular scikit-learn model on new data and deploys it only when it "
               "beats the champion; otherwise alerts the team.")
SUMMARY = "Retrain, evaluate against the champion, deploy or alert."

__all__ = ["COMPILED_PIPELINE", "build_pipeline", "compile_pipeline"]


class _Wiring:
    """The components on one image, the cluster options, the parameters' channels and the run's
    values: what turns a graph node into KFP tasks."""

    def __init__(self, image: str, options: ClusterOptions, parameters: dict):
        self.stages = make_components(image)
        self.options = options
        self.parameters = parameters
        serving = options.resources.get("serving") or {}
        self.run_values = {
            "run_id": dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            "scheduled_time": dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER,
            "serving_image": image,
            "serving_service_account": options.serving_service_account,
            "serving_resources": ",".join(filter(None, (serving.get("cpu"),
                                                        serving.get("memory")))),
        }

    def task(self, node: Task, done: dict):
        """The task of ``node``, its inputs wired from ``done`` (stage -> output -> channel)."""
        contract = node.contract
        inputs = task_inputs(node, parameters=self.parameters, run_values=self.run_values,
                             done=done)
        task = self.options.apply(getattr(self.stages, contract.name)(**inputs), contract.name)
        if not contract.cached:
            task.set_caching_options(False)
        done[contract.name] = {name: task.outputs[name] for name in contract.outputs}
        return task

    def nodes(self, nodes: tuple, done: dict) -> None:
        for node in nodes:
            if isinstance(node, Task):
                self.task(node, done)
            else:
                self.switch(node, done)

    def switch(self, switch: Switch, done: dict) -> None:
        """Each case under its condition (If, then Elif), ``otherwise`` under Else; each sees
        only the outputs of the stages before it, not those of another case."""
        channel = _channel(switch.on, done)
        for index, case in enumerate(switch.cases):
            condition = dsl.If if index == 0 else dsl.Elif
            with condition(channel == case.value, name=case.name):
                self.nodes(case.body, dict(done))
        if switch.otherwise:
            with dsl.Else(name=switch.otherwise.name):
                self.nodes(switch.otherwise.body, dict(done))


def _channel(output: From, done: dict):
    return done[output.stage][output.output]


def _wire(wiring: _Wiring) -> None:
    on_failure = wiring.task(EXIT_HANDLER, {})
    with dsl.ExitHandler(on_failure):
        wiring.nodes(GRAPH, {})


def build_pipeline(image: str = DEFAULT_IMAGE, options: ClusterOptions | None = None):
    """The pipeline with its components on ``image`` and ``options`` applied."""
    options = options or ClusterOptions()
    names = [parameter.name for parameter in params.PARAMETERS]

    def retrain_pipeline(*channels):  # KFP passes one channel per parameter, in order
        _wire(_Wiring(image, options, dict(zip(names, channels, strict=True))))

    retrain_pipeline.__signature__ = params.pipeline_signature()
    retrain_pipeline.__doc__ = params.docstring(SUMMARY, names)
    return dsl.pipeline(name=PIPELINE_NAME, description=DESCRIPTION)(retrain_pipeline)


def compile_pipeline(output_path: str | Path = COMPILED_PIPELINE, *, image: str = DEFAULT_IMAGE,
                     options: ClusterOptions | None = None) -> Path:
    """Compile the pipeline to YAML (deterministic: the same arguments give the same bytes)."""
    compiler.Compiler().compile(build_pipeline(image, options), package_path=str(output_path))
    return Path(output_path)
