"""What each ``retrain`` command does, once :mod:`app.cli` has parsed its flags."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from app import summary
from components.outcomes import AlertDelivery, RunStatus
from components.params import PARAMETERS, SECRET_PARAMETERS, InvalidParameterError, check_parameters

# `retrain run` exit codes: 0 the pipeline decided (any status), 1 the run failed outright,
# 2 a parameter was refused, 3 the run decided but its alert was not delivered, 4 it ended in a
# status named by --fail-on.
EXIT_ALERT_NOT_DELIVERED = 3
EXIT_FAIL_ON = 4  # the run ended in a status named by --fail-on


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
    from app.local_runner import PipelineRunError, run_compiled_pipeline

    arguments = pipeline_arguments(args)
    fail_on = fail_on_statuses(args.fail_on)
    try:
        record = run_compiled_pipeline(args.pipeline, arguments,
                                       pipeline_root=args.pipeline_root,
                                       stream_logs=args.verbose,
                                       warm_worker=not args.no_warm_worker,
                                       keep_runs=args.keep_runs)
    except PipelineRunError as error:
        _print_json_last(error.record, args.json)  # one object on every outcome
        raise
    if not args.json:
        print("\n".join(summary.run_lines(record)))
    _print_json_last(record, args.json)
    if record.get("alert_delivery") == AlertDelivery.FAILED:
        print(f"error: the run ended {record['status']}, but its alert was not delivered: "
              f"{record.get('alert_delivery_reason')}", file=sys.stderr)
        return EXIT_ALERT_NOT_DELIVERED
    if record["status"] in fail_on:
        print(f"error: the run ended {record['status']} (--fail-on {args.fail_on}): "
              f"{record['reason']}", file=sys.stderr)
        return EXIT_FAIL_ON
    return 0


def fail_on_statuses(text: str) -> set[str]:
    """``invalid-data,rejected`` -> the statuses; refuses one a run never ends with."""
    statuses = {part.strip() for part in text.split(",") if part.strip()}
    unknown = statuses - set(RunStatus.RECORDED)
    if unknown:
        raise InvalidParameterError(
            f"--fail-on of retrain run must name statuses among "
            f"{{{', '.join(sorted(RunStatus.RECORDED))}}}. Got {', '.join(sorted(unknown))!r} "
            "instead.")
    return statuses


def _warn_about_secret_parameters(arguments: dict) -> None:
    """A secret passed as a run parameter is stored in the clear by the KFP backend."""
    for name in SECRET_PARAMETERS:
        if arguments.get(name):
            print(f"warning: --{name.replace('_', '-')} becomes a run parameter the KFP UI and "
                  "API show to anyone who can see the run; compile with --webhook-secret and "
                  "leave it empty instead", file=sys.stderr)


def command_registry(args: argparse.Namespace) -> int:
    from components.registry import Registry
    from components.serving.kserve import cluster_follower

    registry = Registry(args.registry_uri, args.model_name)
    registry.require_model()
    if args.registry_command == "rollback":
        pointer = registry.rollback(args.to, before_move=cluster_follower(registry, print))
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
        runs = registry.run_records() if pointer is None else []
        payload = {"model_name": args.model_name, "champion": None, "runs": len(runs),
                   "last_run": ({key: getattr(runs[-1], key) for key in
                                 ("run_id", "status", "reason", "finished_at")}
                                if runs else None)}
        if pointer is not None:
            payload = {"model_name": args.model_name, "champion": pointer.__dict__,
                       "metadata": metadata.to_dict()}
        _print_json_last(payload, args.json)
        if not args.json:
            print("\n".join(summary.champion_lines(args.model_name, pointer, metadata, runs)))
        return 0
    versions = registry.version_list()
    _print_json_last({"model_name": args.model_name, "versions": versions}, args.json)
    if not args.json:
        print("\n".join(summary.version_lines(versions)))
    return 0


def command_inferenceservice(args: argparse.Namespace) -> int:
    import yaml

    from components.params import BY_NAME
    from components.registry import version_number
    from components.serving.kserve import ServingTarget, inference_service
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
    from components.params import BY_NAME
    from components.serving.server import ServeOptions, serve

    BY_NAME["model_name"].check(args.model_name, "retrain serve")
    for flag, value, low in (("--port", args.port, 0), ("--max-batch-rows", args.max_batch_rows, 1),
                             ("--max-request-mb", args.max_request_mb, 0.001),
                             ("--reload-seconds", args.reload_seconds, 0),
                             ("--batch-threads", args.batch_threads, 1),
                             ("--max-queued-batches", args.max_queued_batches, 0)):
        if value < low:
            raise InvalidParameterError(f"{flag} of retrain serve must be at least {low}. Got "
                                        f"{value!r} instead.")
    serve(ServeOptions(registry_uri=args.registry_uri, model_name=args.model_name,
                       version=args.version, host=args.host, port=args.port,
                       reload_seconds=args.reload_seconds,
                       allow_version_skew=args.allow_version_skew,
                       max_request_mb=args.max_request_mb, max_batch_rows=args.max_batch_rows,
                       ready_file=args.ready_file, batch_threads=args.batch_threads,
                       max_queued_batches=args.max_queued_batches,
                       v1_predict_proba=args.v1_predict_proba))
    return 0


def command_report(args: argparse.Namespace) -> int:
    from components.life_report import write_report
    from components.records import utc_now_iso
    from components.registry import Registry

    if args.last < 0:
        raise InvalidParameterError(f"--last of retrain report must be at least 0. Got "
                                    f"{args.last} instead.")
    registry = Registry(args.registry_uri, args.model_name)
    registry.require_model()
    output = args.output or str(Path(".retrain") / "reports" / f"{args.model_name}.html")
    size = write_report(registry, output, last=args.last or None, generated_at=utc_now_iso())
    print(f"wrote {output} ({size / 1024:.0f} KiB)")
    return 0


def command_schema(args: argparse.Namespace) -> int:
    from components.stages.ingest import source_schema

    print(json.dumps(source_schema(source_uri=args.source_uri, label_column=args.label_column,
                                   timestamp_column=args.timestamp_column, task=args.task),
                     indent=2))
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

    paths = write_demo_data(args.output, task=args.task)
    label = "spend_next_month" if args.task == "regression" else "will_buy"
    print(f"wrote {len(paths)} files to {args.output} (label {label}, {args.task})")
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
