"""The ``retrain`` command: run the compiled pipeline locally, inspect the registry, compile.

    retrain run --source-uri data/ --registry-uri registry/ --model-name customers \\
        --label-column will_buy --timestamp-column event_time [--json]
    retrain submit --host http://localhost:8080 --source-uri gs://... [run flags]
    retrain schedule --host URL --cron "0 0 * * *" [--name N] [run flags] | --list | --disable N
    retrain registry show|list|rollback --registry-uri registry/ --model-name customers
    retrain report --registry-uri registry/ --model-name customers [--output FILE] [--last N]
    retrain schema --source-uri data/ --label-column will_buy [--timestamp-column ...] > schema.json
    retrain compile [--output pipelines/retrain_pipeline.yaml] [--image REPO/kfp-retrain:TAG]
    retrain demo-data --output .retrain/demo-data [--task regression]
    retrain demo                         # one more month of the built-in demo (make run)

The run flags are the pipeline's parameters, one flag each (:data:`components.params.PARAMETERS`).
``run`` exits 0 for every outcome the pipeline decides (deployed, rejected, invalid-data,
no-new-data, skipped), 1 with a one-line error when a run fails outright, 2 when a parameter is
refused, and 3 when the run decided but its alert was not delivered (said on stderr).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from app import commands
from app.run_scope import DEFAULT_KEEP_RUNS
from components.params import DEFAULT_THRESHOLDS, PARAMETERS, InvalidParameterError
from pipelines import COMPILED_PIPELINE

# Where local runs keep their artifacts and logs, and the demo its data and registry, by default:
# .retrain/ in the folder the command runs in (`--pipeline-root`, `--workdir`).
DEFAULT_WORKDIR = Path(".retrain")


# -- parsing -----------------------------------------------------------------------------------
def _threshold(text: str) -> tuple[str, float]:
    """``psi_drift=0.3`` -> ``("psi_drift", 0.3)``, for ``--validation-threshold``."""
    name, sep, value = text.partition("=")
    try:
        return name.strip(), float(value) if sep else float("nan")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=NUMBER, got {text!r}") from None


def _json_object(text: str) -> dict:
    """``'{"num_leaves": 15}'`` -> a dict, for ``--model-config``."""
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r} ({error})") \
            from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def _resources(text: str) -> tuple[str, str, str]:
    """``retrain=2,4Gi`` -> ``("retrain", "2", "4Gi")``, for ``--resources``."""
    stage, sep, amounts = text.partition("=")
    cpu, comma, memory = amounts.partition(",")
    if not (sep and comma and cpu.strip() and memory.strip()):
        raise argparse.ArgumentTypeError(f"expected STAGE=CPU,MEMORY (e.g. retrain=2,4Gi), "
                                         f"got {text!r}")
    return stage.strip(), cpu.strip(), memory.strip()


def _add_pipeline_flags(parser: argparse.ArgumentParser, *, required: bool) -> None:
    """One flag per pipeline parameter (shared by run, submit and schedule)."""
    parser.add_argument("--pipeline", default=str(COMPILED_PIPELINE), help="compiled pipeline YAML")
    for p in PARAMETERS:
        options = {"dest": p.name, "help": p.description.replace("%", "%%"),
                   "required": required and (p.required or p.cli_required)}
        if p.cli_pairs:
            options.update(action="append", default=[], metavar="NAME=VALUE", type=_threshold,
                           help=f"{options['help']} Repeatable; names: "
                                + ", ".join(DEFAULT_THRESHOLDS))
        elif p.cli_json:
            options.update(type=_json_object, default=dict(p.default), metavar="JSON")
        else:
            options.update(type=p.kind,
                           default=None if p.required or p.cli_required else p.default)
        parser.add_argument(p.flag, **options)


def _add_registry_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--registry-uri", required=True, help="registry root (folder or gs://)")
    parser.add_argument("--model-name", required=True, help="model name in the registry")


def _add_cluster_flags(parser: argparse.ArgumentParser) -> None:
    # --kfp-host: `serve` has a --host of its own (the address it listens on); --host stays.
    parser.add_argument("--kfp-host", "--host", dest="host", required=True,
                        help="KFP API endpoint, e.g. http://localhost:8080 (token: $KFP_TOKEN)")
    parser.add_argument("--experiment", default="retrain", help="created if missing")
    parser.add_argument("--pipeline-name", default="retrain-pipeline",
                        help="uploaded as a new version when it exists")
    parser.add_argument("--version-name", default="", help="default: v<UTC time>")


def _add_run(commands) -> None:
    run = commands.add_parser("run", help="run the compiled pipeline locally (kfp.local)")
    _add_pipeline_flags(run, required=True)
    run.add_argument("--pipeline-root", default=str(DEFAULT_WORKDIR / "pipeline_root"),
                     help="folder for the run's artifacts and logs")
    run.add_argument("--verbose", action="store_true", help="stream the stages' logs")
    run.add_argument("--no-warm-worker", action="store_true",
                     help="run each stage wholly in its own process, as on a cluster (slower: "
                          "every stage imports its libraries itself)")
    run.add_argument("--json", action="store_true",
                     help="print the outcome as one JSON object on the last line, a failed "
                          "run's too (status failed, the stage and the cause)")
    run.add_argument("--fail-on", default="", metavar="STATUS[,STATUS]",
                     help="exit 4 when the run ends in one of these statuses (e.g. "
                          "invalid-data,rejected), so a scheduler notices; empty: exit 0 on "
                          "every status the pipeline decides")
    run.add_argument("--keep-runs", type=int, default=DEFAULT_KEEP_RUNS,
                     help="runs whose artifacts and logs the local --pipeline-root keeps, the "
                          "newest (0: all); the registry is never touched")


def _add_submit_and_schedule(commands) -> None:
    submit = commands.add_parser("submit", help="upload the pipeline to KFP and start a run")
    _add_cluster_flags(submit)
    submit.add_argument("--run-name", default="", help="default: <model-name>-<UTC time>")
    _add_pipeline_flags(submit, required=True)

    schedule = commands.add_parser(
        "schedule", help="create (or replace) a recurring run on KFP; list, disable, delete")
    _add_cluster_flags(schedule)
    schedule.add_argument("--name", default="", help="recurring run name (default: "
                                                     "<model-name>-retrain)")
    schedule.add_argument("--cron", default="",
                          help="5-field ('0 0 * * *') or KFP's 6-field seconds-first cron")
    schedule.add_argument("--max-concurrency", type=int, default=1)
    schedule.add_argument("--catchup", action="store_true",
                          help="run missed schedules after a pause (off by default)")
    actions = schedule.add_mutually_exclusive_group()
    actions.add_argument("--list", action="store_true", help="list the experiment's schedules")
    actions.add_argument("--disable", metavar="NAME", help="disable the recurring run NAME")
    actions.add_argument("--delete", metavar="NAME", help="delete the recurring run NAME")
    _add_pipeline_flags(schedule, required=False)


def _add_registry(commands) -> None:
    registry = commands.add_parser("registry", help="inspect or roll back the model registry")
    registry_commands = registry.add_subparsers(dest="registry_command", required=True)
    show = registry_commands.add_parser("show", help="the champion and its metadata")
    _add_registry_flags(show)
    show.add_argument("--json", action="store_true")
    listing = registry_commands.add_parser("list", help="every version, oldest first")
    _add_registry_flags(listing)
    listing.add_argument("--json", action="store_true")
    rollback = registry_commands.add_parser("rollback", help="make an earlier version champion "
                                                             "(and its InferenceService, if any)")
    _add_registry_flags(rollback)
    rollback.add_argument("--to", default=None, help="version to restore (default: previous)")
    history = registry_commands.add_parser("history", help="every move of the champion "
                                                           "pointer: deploys and rollbacks")
    _add_registry_flags(history)
    history.add_argument("--json", action="store_true")


def _add_serve(commands) -> None:
    serve = commands.add_parser("serve", help="serve the champion (or a version) behind KServe's "
                                              "V1 and V2 protocols")
    _add_registry_flags(serve)
    serve.add_argument("--version", default="", help="serve this version (default: follow the "
                                                     "champion)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (a pod: "
                                                           "0.0.0.0)")
    serve.add_argument("--port", type=int, default=8080, help="0 picks a free one")
    serve.add_argument("--reload-seconds", type=float, default=5.0,
                       help="how often the champion pointer is read (0: never)")
    serve.add_argument("--allow-version-skew", action="store_true",
                       help="load a model saved by another scikit-learn minor version")
    serve.add_argument("--max-request-mb", type=float, default=16.0)
    serve.add_argument("--max-batch-rows", type=int, default=10_000)
    serve.add_argument("--v1-predict-proba", action="store_true",
                       default=os.environ.get("PREDICT_PROBA", "").lower() == "true",
                       help="V1 predictions are each row's class probabilities (in the model's "
                            "class order, as /v2/models/<name> lists them), as KServe's sklearn "
                            "server does with PREDICT_PROBA=true, which also sets this")
    serve.add_argument("--batch-threads", type=int, default=1,
                       help="threads predicting requests over 64 KiB; smaller ones have a "
                            "thread of their own, so they never wait behind a batch")
    serve.add_argument("--max-queued-batches", type=int, default=8,
                       help="requests over 64 KiB waiting for a thread; beyond that the answer "
                            "is 503 with Retry-After")
    serve.add_argument("--ready-file", default="",
                       help="write the port here once listening, whole or not at all (for "
                            "scripts and tests)")


def _add_inferenceservice(commands) -> None:
    isvc = commands.add_parser("inferenceservice", help="print the KServe InferenceService that "
                                                        "serves a version (YAML)")
    _add_registry_flags(isvc)
    isvc.add_argument("--version", required=True, help="the version to serve, e.g. v0007")
    isvc.add_argument("--image", required=True, help="this project's image (immutable tag)")
    isvc.add_argument("--namespace", required=True)
    isvc.add_argument("--canary-traffic-percent", type=int, default=100)
    isvc.add_argument("--service-account", default="")
    isvc.add_argument("--resources", default="", metavar="CPU,MEMORY",
                      help="requests = limits of the serving container, e.g. 1,2Gi")


def _add_report(commands) -> None:
    report = commands.add_parser("report", help="write the model's life as one HTML page: "
                                                "runs, decisions, versions, drift, stages")
    _add_registry_flags(report)
    report.add_argument("--output", default="",
                        help="the page (default: .retrain/reports/<model-name>.html)")
    report.add_argument("--last", type=int, default=0,
                        help="only the newest N runs (default: every run recorded)")


def _add_tools(commands) -> None:
    schema = commands.add_parser("schema", help="print the schema inferred from a source, to "
                                                "edit and pass as --schema-uri")
    schema.add_argument("--source-uri", required=True, help="folder of CSV/Parquet files")
    schema.add_argument("--label-column", required=True)
    schema.add_argument("--timestamp-column", default="")
    schema.add_argument("--task", choices=("auto", "classification", "regression"),
                        default="auto", help="what the label is; auto: inferred from it")

    compile_ = commands.add_parser("compile", help="compile the pipeline to YAML")
    compile_.add_argument("--output", default=str(COMPILED_PIPELINE))
    compile_.add_argument("--image", default="",
                          help="component image with an immutable tag (never :latest); "
                               "default: the one the committed YAML names")
    compile_.add_argument("--webhook-secret", default="",
                          help="Kubernetes secret whose key 'webhook-url' alerts read")
    compile_.add_argument("--gcs-secret", default="",
                          help="Kubernetes secret with a service-account key.json (clusters "
                               "without Workload Identity)")
    compile_.add_argument("--resources", action="append", default=[], type=_resources,
                          metavar="STAGE=CPU,MEMORY",
                          help="requests = limits for a stage, 'default', or 'serving' (the "
                               "InferenceService's container) (repeatable)")
    compile_.add_argument("--serving-service-account", default="",
                          help="service account of the InferenceService (it reads the "
                               "registry)")

    demo_data = commands.add_parser("demo-data", help="write the deterministic demo data")
    demo_data.add_argument("--output", default=str(DEFAULT_WORKDIR / "demo-data"))
    demo_data.add_argument("--task", choices=("classification", "regression"),
                           default="classification",
                           help="the label: will_buy (classification) or spend_next_month, a "
                                "number (regression); the same drifting customers")

    demo = commands.add_parser("demo", help="run the pipeline on the next month of demo data")
    demo.add_argument("--workdir", default=str(DEFAULT_WORKDIR))
    demo.add_argument("--pipeline", default=str(COMPILED_PIPELINE))


class _DefaultsShown(argparse.HelpFormatter):
    """``--help`` says each flag's default, where it has one worth saying."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.option_strings and action.default not in (None, False, "", [], argparse.SUPPRESS) \
                and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _DefaultsShown)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="retrain", description=__doc__.split("\n\n")[0].replace("``", ""))
    commands = parser.add_subparsers(dest="command", required=True)
    _add_run(commands)
    _add_submit_and_schedule(commands)
    _add_registry(commands)
    _add_serve(commands)
    _add_inferenceservice(commands)
    _add_report(commands)
    _add_tools(commands)
    return parser


COMMANDS = {"run": commands.command_run, "submit": commands.command_submit,
            "schedule": commands.command_schedule, "registry": commands.command_registry,
            "schema": commands.command_schema, "serve": commands.command_serve,
            "inferenceservice": commands.command_inferenceservice,
            "report": commands.command_report,
            "compile": commands.command_compile, "demo-data": commands.command_demo_data,
            "demo": commands.command_demo}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except InvalidParameterError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # one line for the user; the log holds the traceback
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"error: {type(error).__name__}: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
