"""The ``retrain`` command: run the compiled pipeline locally, inspect the registry, compile.

    retrain run --source-uri data/ --registry-uri registry/ --model-name customers \\
        --label-column will_buy --timestamp-column event_time [--json]
    retrain submit --host http://localhost:8080 --source-uri gs://... [run flags]
    retrain schedule --host URL --cron "0 0 * * *" [--name N] [run flags] | --list | --disable N
    retrain registry show|list|rollback --registry-uri registry/ --model-name customers
    retrain schema --source-uri data/ --label-column will_buy [--timestamp-column ...] > schema.json
    retrain compile [--output pipelines/retrain_pipeline.yaml] [--image REPO/kfp-retrain:TAG]
    retrain demo-data --output .retrain/demo-data
    retrain demo                         # one more month of the built-in demo (make run)

The run flags are the pipeline's parameters, one flag each (:data:`components.params.PARAMETERS`).
``run`` exits 0 for every outcome the pipeline decides (deployed, rejected, invalid-data,
no-new-data, skipped), 1 with a one-line error when a run fails outright, 2 when a parameter is
refused, and 3 when the run decided but its alert was not delivered (said on stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from app import summary
from components.outcomes import AlertDelivery
from components.params import (
    DEFAULT_THRESHOLDS,
    PARAMETERS,
    SECRET_PARAMETERS,
    InvalidParameterError,
    check_parameters,
)
from pipelines import COMPILED_PIPELINE

DEFAULT_WORKDIR = Path(".retrain")
# `retrain run` exit codes: 0 the pipeline decided (any status), 1 the run failed outright,
# 2 a parameter was refused, 3 the run decided but its alert was not delivered.
EXIT_ALERT_NOT_DELIVERED = 3


# -- parsing -----------------------------------------------------------------------------------
def _threshold(text: str) -> tuple[str, float]:
    """``psi_drift=0.3`` -> ``("psi_drift", 0.3)``, for ``--validation-threshold``."""
    name, sep, value = text.partition("=")
    try:
        return name.strip(), float(value) if sep else float("nan")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=NUMBER, got {text!r}") from None


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
        else:
            options.update(type=p.kind,
                           default=None if p.required or p.cli_required else p.default)
        parser.add_argument(p.flag, **options)


def _add_registry_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--registry-uri", required=True, help="registry root (folder or gs://)")
    parser.add_argument("--model-name", required=True, help="model name in the registry")


def _add_cluster_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", required=True,
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
                     help="print the outcome as one JSON object on the last line")


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
    serve.add_argument("--ready-file", default="",
                       help="write the port here once listening (for scripts and tests)")


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


def _add_tools(commands) -> None:
    schema = commands.add_parser("schema", help="print the schema inferred from a source, to "
                                                "edit and pass as --schema-uri")
    schema.add_argument("--source-uri", required=True, help="folder of CSV/Parquet files")
    schema.add_argument("--label-column", required=True)
    schema.add_argument("--timestamp-column", default="")

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

    demo = commands.add_parser("demo", help="run the pipeline on the next month of demo data")
    demo.add_argument("--workdir", default=str(DEFAULT_WORKDIR))
    demo.add_argument("--pipeline", default=str(COMPILED_PIPELINE))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="retrain", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    _add_run(commands)
    _add_submit_and_schedule(commands)
    _add_registry(commands)
    _add_serve(commands)
    _add_inferenceservice(commands)
    _add_tools(commands)
    return parser


def pipeline_arguments(args: argparse.Namespace) -> dict:
    """The pipeline parameters named by the run flags, checked as the stages check them."""
    arguments = {p.name: dict(getattr(args, p.name)) if p.cli_pairs else getattr(args, p.name)
                 for p in PARAMETERS}
    check_parameters(arguments, f"retrain {args.command}")
    return arguments


def _print_json_last(payload: dict, enabled: bool) -> None:
    if enabled:
        sys.stdout.flush()
        print(json.dumps(payload, sort_keys=True, default=str))


# -- commands ----------------------------------------------------------------------------------
def command_run(args: argparse.Namespace) -> int:
    from app.local_runner import run_compiled_pipeline

    arguments = pipeline_arguments(args)
    record = run_compiled_pipeline(args.pipeline, arguments, pipeline_root=args.pipeline_root,
                                   stream_logs=args.verbose,
                                   warm_worker=not args.no_warm_worker)
    if not args.json:
        print("\n".join(summary.run_lines(record)))
    _print_json_last(record, args.json)
    if record.get("alert_delivery") == AlertDelivery.FAILED:
        print(f"error: the run ended {record['status']}, but its alert was not delivered: "
              f"{record.get('alert_delivery_reason')}", file=sys.stderr)
        return EXIT_ALERT_NOT_DELIVERED
    return 0


def _warn_about_secret_parameters(arguments: dict) -> None:
    """A secret passed as a run parameter is stored in the clear by the KFP backend."""
    for name in SECRET_PARAMETERS:
        if arguments.get(name):
            print(f"warning: --{name.replace('_', '-')} becomes a run parameter the KFP UI and "
                  "API show to anyone who can see the run; compile with --webhook-secret and "
                  "leave it empty instead", file=sys.stderr)


def command_registry(args: argparse.Namespace) -> int:
    from components.registry import Registry

    registry = Registry(args.registry_uri, args.model_name)
    if args.registry_command == "rollback":
        serving = registry.model_json("serving.json")
        pointer = registry.rollback(args.to, before_move=(
            lambda version: _serve_rollback(registry, version, serving)) if serving else None)
        print(f"{args.model_name}: champion is now {pointer.version} ({pointer.reason})")
        return 0
    if args.registry_command == "history":
        moves = registry.history()
        _print_json_last({"model_name": args.model_name, "history": moves}, args.json)
        if not args.json:
            print("\n".join(summary.history_lines(moves)) or f"{args.model_name}: no moves yet")
        return 0
    pointer = registry.champion()
    if args.registry_command == "show":
        metadata = registry.metadata(pointer.version) if pointer else None
        payload = {"model_name": args.model_name, "champion": None}
        if pointer is not None:
            payload = {"model_name": args.model_name, "champion": pointer.__dict__,
                       "metadata": metadata}
        _print_json_last(payload, args.json)
        if not args.json:
            print("\n".join(summary.champion_lines(args.model_name, pointer, metadata)))
        return 0
    versions = registry.version_list()
    _print_json_last({"model_name": args.model_name, "versions": versions}, args.json)
    if not args.json:
        print("\n".join(summary.version_lines(versions)))
    return 0


def _serve_rollback(registry, version: str, serving: dict) -> None:
    """Move the InferenceService back before the pointer (a rollback's ``before_move``)."""
    from components.steps import serve_on_cluster

    target = _target_from(serving)
    served = serve_on_cluster(registry, version, target)
    print(f"InferenceService {served['namespace']}/{served['name']} serves {version} "
          f"(Ready after {served['seconds_to_ready']} s)")


def _target_from(serving: dict):
    from dataclasses import fields

    from components.kserve import ServingTarget

    return ServingTarget(**{f.name: serving[f.name] for f in fields(ServingTarget)
                            if f.name in serving})


def command_inferenceservice(args: argparse.Namespace) -> int:
    import yaml

    from components.kserve import ServingTarget, inference_service
    from components.params import BY_NAME
    from components.registry import version_number
    from pipelines.cluster import check_image_tag

    BY_NAME["model_name"].check(args.model_name, "retrain inferenceservice")
    BY_NAME["serving_namespace"].check(args.namespace, "retrain inferenceservice")
    BY_NAME["canary_traffic_percent"].check(args.canary_traffic_percent,
                                            "retrain inferenceservice")
    version_number(args.version)
    check_image_tag(args.image)
    manifest = inference_service(
        registry_uri=args.registry_uri, model_name=args.model_name, version=args.version,
        target=ServingTarget.with_resources(
            args.resources, namespace=args.namespace, image=args.image,
            canary_traffic_percent=args.canary_traffic_percent,
            service_account=args.service_account))
    print(yaml.safe_dump(manifest, sort_keys=False), end="")
    return 0


def command_submit(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    from app.remote import submit

    arguments = pipeline_arguments(args)
    _warn_about_secret_parameters(arguments)
    run_name = args.run_name or f"{args.model_name}-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}"
    result = submit(args.host, pipeline_file=args.pipeline, pipeline_name=args.pipeline_name,
                    experiment=args.experiment, run_name=run_name, params=arguments,
                    version_name=args.version_name or None)
    print(f"run {result['run_id']} started: {result['url']}")
    return 0


def command_schedule(args: argparse.Namespace) -> int:
    from app import remote

    if args.list:
        schedules = remote.list_schedules(args.host, args.experiment)
        for item in schedules:
            print(f"{item['name']}  {item['status']}  cron '{item['cron']}'  "
                  f"max concurrency {item['max_concurrency']}  id {item['recurring_run_id']}")
        if not schedules:
            print(f"no recurring runs in experiment {args.experiment!r}")
        return 0
    if args.disable or args.delete:
        action, name = ("disable", args.disable) if args.disable else ("delete", args.delete)
        ids = remote.change_schedule(args.host, args.experiment, name, action)
        print(f"{action}d recurring run {name!r} ({', '.join(ids)})")
        return 0
    missing = [flag for flag, value in (("--cron", args.cron), ("--source-uri", args.source_uri),
                                        ("--registry-uri", args.registry_uri),
                                        ("--model-name", args.model_name),
                                        ("--label-column", args.label_column)) if not value]
    if missing:
        raise InvalidParameterError(f"retrain schedule needs {', '.join(missing)} to create a "
                                    "recurring run")
    from app.cron import CronError, next_run_times, to_kfp_cron

    try:
        kfp_cron = to_kfp_cron(args.cron)
    except CronError as error:
        raise InvalidParameterError(str(error)) from None
    arguments = pipeline_arguments(args)
    _warn_about_secret_parameters(arguments)
    print(f"KFP cron: '{kfp_cron}' (seconds first); next runs (UTC): "
          + ", ".join(t.strftime("%Y-%m-%d %H:%M:%S") for t in next_run_times(kfp_cron)))
    result = remote.schedule(
        args.host, name=args.name or f"{args.model_name}-retrain", cron=args.cron,
        pipeline_file=args.pipeline, pipeline_name=args.pipeline_name,
        experiment=args.experiment, params=arguments,
        max_concurrency=args.max_concurrency, catchup=args.catchup,
        version_name=args.version_name or None)
    if result["replaced"]:
        print(f"replaced {len(result['replaced'])} recurring run(s) of the same name")
    print(f"recurring run {result['recurring_run_id']} created: {result['url']}")
    return 0


def command_serve(args: argparse.Namespace) -> int:
    from app.serving.server import ServeOptions, serve
    from components.params import BY_NAME

    BY_NAME["model_name"].check(args.model_name, "retrain serve")
    for flag, value, low in (("--port", args.port, 0), ("--max-batch-rows", args.max_batch_rows, 1),
                             ("--max-request-mb", args.max_request_mb, 0.001),
                             ("--reload-seconds", args.reload_seconds, 0)):
        if value < low:
            raise InvalidParameterError(f"{flag} of retrain serve must be at least {low}. Got "
                                        f"{value!r} instead.")
    serve(ServeOptions(registry_uri=args.registry_uri, model_name=args.model_name,
                       version=args.version, host=args.host, port=args.port,
                       reload_seconds=args.reload_seconds,
                       allow_version_skew=args.allow_version_skew,
                       max_request_mb=args.max_request_mb, max_batch_rows=args.max_batch_rows,
                       ready_file=args.ready_file))
    return 0


def command_schema(args: argparse.Namespace) -> int:
    from components.steps import source_schema

    print(json.dumps(source_schema(source_uri=args.source_uri, label_column=args.label_column,
                                   timestamp_column=args.timestamp_column), indent=2))
    return 0


def command_compile(args: argparse.Namespace) -> int:
    from pipelines.cluster import DEFAULT_IMAGE, ClusterOptions, check_image_tag

    image = args.image or DEFAULT_IMAGE
    check_image_tag(image)
    options = ClusterOptions(
        webhook_secret=args.webhook_secret, gcs_secret=args.gcs_secret,
        serving_service_account=args.serving_service_account,
        resources={stage: {"cpu": cpu, "memory": memory}
                   for stage, cpu, memory in args.resources})
    from pipelines.retrain_pipeline import compile_pipeline

    print(f"compiled {compile_pipeline(args.output, image=image, options=options)}")
    return 0


def command_demo_data(args: argparse.Namespace) -> int:
    from app.demo_data import write_demo_data

    paths = write_demo_data(args.output)
    print(f"wrote {len(paths)} files to {args.output}")
    return 0


def command_demo(args: argparse.Namespace) -> int:
    """One step of the demo: the first run bootstraps v1, each next run takes one more month."""
    from app import demo
    from app.local_runner import run_compiled_pipeline

    step = demo.next_demo_run(args.workdir)
    if step is None:
        print("the demo has used all its months; `make clean` starts it over")
        return 0
    arguments, number, total = step
    print(f"demo run {number}/{total}: data up to {arguments['cutoff']}")
    record = run_compiled_pipeline(args.pipeline, arguments,
                                   pipeline_root=Path(args.workdir) / "pipeline_root")
    demo.record_demo_run(args.workdir)
    print("\n".join(summary.run_lines(record)))
    print(f"registry: {arguments['registry_uri']}; logs: {record['log']}")
    return 0


COMMANDS = {"run": command_run, "submit": command_submit, "schedule": command_schedule,
            "registry": command_registry, "schema": command_schema, "serve": command_serve,
            "inferenceservice": command_inferenceservice,
            "compile": command_compile, "demo-data": command_demo_data, "demo": command_demo}


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
