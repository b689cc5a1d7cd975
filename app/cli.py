"""The ``retrain`` command: run the compiled pipeline locally, inspect the registry, compile.

    retrain run --source-uri data/ --registry-uri registry/ --model-name customers \\
        --label-column will_buy --timestamp-column event_time [--json]
    retrain submit --host http://localhost:8080 --source-uri gs://... [run flags]
    retrain schedule --host URL --cron "0 0 * * *" [--name N] [run flags] | --list | --disable N
    retrain registry show|list|rollback --registry-uri registry/ --model-name customers
    retrain schema --source-uri data/ --label-column will_buy [--timestamp-column ...] > schema.json
    retrain compile [--output pipelines/retrain_pipeline.yaml]
    retrain demo-data --output .retrain/demo-data
    retrain demo                         # one more month of the built-in demo (make run)

Flags map one-to-one to the pipeline's parameters. ``run`` exits 0 for every outcome the pipeline
decides (deployed, rejected, invalid-data, no-new-data, skipped), 1 with a one-line error when a run
fails outright, and 2 when a parameter is refused.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from components.params import (
    DEFAULT_THRESHOLDS,
    GATE_METRICS,
    MODEL_TYPES,
    RETRAIN_POLICIES,
    STRATEGIES,
    InvalidParameterError,
    check_run_parameters,
)
from pipelines import COMPILED_PIPELINE

DEFAULT_PIPELINE = COMPILED_PIPELINE
DEFAULT_WORKDIR = Path(".retrain")


def _add_registry_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--registry-uri", required=True, help="registry root (folder or gs://)")
    parser.add_argument("--model-name", required=True, help="model name in the registry")


def _add_pipeline_flags(parser: argparse.ArgumentParser, *, required: bool) -> None:
    """One flag per pipeline parameter (shared by run, submit and schedule)."""
    parser.add_argument("--pipeline", default=str(DEFAULT_PIPELINE), help="compiled pipeline YAML")
    parser.add_argument("--source-uri", required=required, help="folder of CSV/Parquet files")
    parser.add_argument("--registry-uri", required=required,
                        help="registry root (folder or gs://)")
    parser.add_argument("--model-name", required=required, help="model name in the registry")
    parser.add_argument("--label-column", required=required)
    parser.add_argument("--timestamp-column", default="",
                        help="event-time column; omit to treat each file as a batch")
    parser.add_argument("--cutoff", default="", help="latest event time to consume (ISO 8601)")
    parser.add_argument("--strategy", default="auto", help=f"one of {', '.join(STRATEGIES)}")
    parser.add_argument("--model-type", default="hgb", help=f"one of {', '.join(MODEL_TYPES)}")
    parser.add_argument("--metric", default="accuracy",
                        help=f"one of {', '.join(GATE_METRICS)}")
    parser.add_argument("--threshold", type=float, default=0.80)
    parser.add_argument("--min-improvement", type=float, default=0.0)
    parser.add_argument("--validation-fraction", type=float, default=0.2)
    parser.add_argument("--window-days", type=int, default=90)
    parser.add_argument("--window-files", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--min-rows", type=int, default=100)
    parser.add_argument("--retrain-when", default="always",
                        help=f"trigger policy: one of {', '.join(RETRAIN_POLICIES)}")
    parser.add_argument("--schema-uri", default="",
                        help="schema.json the new data must meet (default: the champion's)")
    parser.add_argument("--validation-threshold", action="append", default=[],
                        metavar="NAME=VALUE", type=_threshold,
                        help="override a validation/drift threshold (repeatable); names: "
                             + ", ".join(DEFAULT_THRESHOLDS))
    parser.add_argument("--alert-webhook-url", default="",
                        help="empty: the cluster's secret, if compiled with one")


def _add_cluster_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", required=True,
                        help="KFP API endpoint, e.g. http://localhost:8080 (token: $KFP_TOKEN)")
    parser.add_argument("--experiment", default="retrain", help="created if missing")
    parser.add_argument("--pipeline-name", default="retrain-pipeline",
                        help="uploaded as a new version when it exists")
    parser.add_argument("--version-name", default="", help="default: v<UTC time>")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="retrain", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

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

    registry = commands.add_parser("registry", help="inspect or roll back the model registry")
    registry_commands = registry.add_subparsers(dest="registry_command", required=True)
    show = registry_commands.add_parser("show", help="the champion and its metadata")
    _add_registry_flags(show)
    show.add_argument("--json", action="store_true")
    listing = registry_commands.add_parser("list", help="every version, oldest first")
    _add_registry_flags(listing)
    listing.add_argument("--json", action="store_true")
    rollback = registry_commands.add_parser("rollback", help="make an earlier version champion")
    _add_registry_flags(rollback)
    rollback.add_argument("--to", default=None, help="version to restore (default: previous)")

    schema = commands.add_parser("schema", help="print the schema inferred from a source, to "
                                                "edit and pass as --schema-uri")
    schema.add_argument("--source-uri", required=True, help="folder of CSV/Parquet files")
    schema.add_argument("--label-column", required=True)
    schema.add_argument("--timestamp-column", default="")

    compile_ = commands.add_parser("compile", help="compile the pipeline to YAML")
    compile_.add_argument("--output", default=str(DEFAULT_PIPELINE))
    compile_.add_argument("--image", default="",
                          help="component image with an immutable tag (never :latest)")
    compile_.add_argument("--webhook-secret", default="",
                          help="Kubernetes secret whose key 'webhook-url' alerts read")
    compile_.add_argument("--gcs-secret", default="",
                          help="Kubernetes secret with a service-account key.json (clusters "
                               "without Workload Identity)")
    compile_.add_argument("--resources", action="append", default=[], type=_resources,
                          metavar="STAGE=CPU,MEMORY",
                          help="requests = limits for a stage or 'default' (repeatable)")

    demo_data = commands.add_parser("demo-data", help="write the deterministic demo data")
    demo_data.add_argument("--output", default=str(DEFAULT_WORKDIR / "demo-data"))

    demo = commands.add_parser("demo", help="run the pipeline on the next month of demo data")
    demo.add_argument("--workdir", default=str(DEFAULT_WORKDIR))
    demo.add_argument("--pipeline", default=str(DEFAULT_PIPELINE))
    return parser


def pipeline_arguments(args: argparse.Namespace) -> dict:
    """The pipeline parameters named by ``retrain run`` flags."""
    return {
        "source_uri": args.source_uri, "registry_uri": args.registry_uri,
        "model_name": args.model_name, "label_column": args.label_column,
        "timestamp_column": args.timestamp_column, "cutoff": args.cutoff,
        "strategy": args.strategy, "model_type": args.model_type, "metric": args.metric,
        "threshold": args.threshold, "min_improvement": args.min_improvement,
        "validation_fraction": args.validation_fraction, "window_days": args.window_days,
        "window_files": args.window_files, "epochs": args.epochs, "min_rows": args.min_rows,
        "retrain_when": args.retrain_when, "schema_uri": args.schema_uri,
        "validation_thresholds": dict(args.validation_threshold),
        "alert_webhook_url": args.alert_webhook_url,
    }


def _threshold(text: str) -> tuple[str, float]:
    """``psi_drift=0.3`` -> ``("psi_drift", 0.3)``, for ``--validation-threshold``."""
    name, sep, value = text.partition("=")
    try:
        return name.strip(), float(value) if sep else float("nan")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=NUMBER, got {text!r}") from None


def check_arguments(arguments: dict) -> None:
    """Refuse bad parameters before any stage starts."""
    constrained = {k: v for k, v in arguments.items()
                   if k not in ("timestamp_column", "cutoff", "alert_webhook_url",
                                "schema_uri")}
    check_run_parameters(**constrained)
    if arguments["cutoff"]:
        from datetime import datetime

        try:  # the common ISO 8601 forms, without importing pandas (0.9 s) into the CLI
            datetime.fromisoformat(arguments["cutoff"].strip())
        except ValueError:
            from components.stages.ingest import resolve_cutoff

            resolve_cutoff(arguments["cutoff"], "")  # what ingest accepts, or its error


def summary_lines(record: dict) -> list[str]:
    """A short human summary of a run record."""
    champion, challenger = record.get("champion") or {}, record.get("challenger") or {}
    metric = record.get("metric") or "accuracy"
    lines = [f"status: {record['status']}", f"reason: {record['reason']}",
             f"new rows: {record.get('new_rows', 0)}"]
    before = (champion.get("metrics") or {}).get(metric)
    after = (challenger.get("metrics") or {}).get(metric)
    if before is not None or after is not None:
        lines.append(f"{metric}: champion {champion.get('version') or '(none)'} "
                     f"{_fmt(before)} -> challenger ({challenger.get('strategy')}) {_fmt(after)}")
    if record.get("drift"):
        lines.append(f"drift: {', '.join(record['drift'])}")
    errors = [f for f in record.get("findings") or [] if f.get("severity") == "error"]
    warnings = [f for f in record.get("findings") or [] if f.get("severity") == "warning"]
    if errors or warnings:
        lines.append(f"findings: {len(errors)} error(s), {len(warnings)} warning(s)")
    if challenger.get("version"):
        lines.append(f"new champion: {challenger['version']}")
    elif champion.get("version"):
        lines.append(f"champion stays: {champion['version']}")
    return lines


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def command_run(args: argparse.Namespace) -> int:
    from app.local_runner import run_compiled_pipeline

    arguments = pipeline_arguments(args)
    check_arguments(arguments)
    record = run_compiled_pipeline(args.pipeline, arguments, pipeline_root=args.pipeline_root,
                                   stream_logs=args.verbose,
                                   warm_worker=not args.no_warm_worker)
    if not args.json:
        print("\n".join(summary_lines(record)))
    _print_json_last(record, args.json)
    return 0


def _print_json_last(payload: dict, enabled: bool) -> None:
    if enabled:
        sys.stdout.flush()
        print(json.dumps(payload, sort_keys=True, default=str))


def command_registry(args: argparse.Namespace) -> int:
    from components.registry import Registry

    registry = Registry(args.registry_uri, args.model_name)
    if args.registry_command == "rollback":
        pointer = registry.rollback(args.to)
        print(f"{args.model_name}: champion is now {pointer.version} ({pointer.reason})")
        return 0
    pointer = registry.champion()
    if args.registry_command == "show":
        if pointer is None:
            payload = {"model_name": args.model_name, "champion": None}
        else:
            payload = {"model_name": args.model_name, "champion": pointer.__dict__,
                       "metadata": registry.metadata(pointer.version)}
        if args.json:
            _print_json_last(payload, True)
        elif pointer is None:
            print(f"{args.model_name}: no champion yet")
        else:
            meta = payload["metadata"]
            print(f"{args.model_name}: champion {pointer.version} (previous {pointer.previous}), "
                  f"watermark {pointer.watermark}")
            print(f"  strategy {meta['strategy']}, model {meta['model_type']}, "
                  f"metrics {json.dumps(meta['metrics'])}")
        return 0
    versions = []
    for version in registry.versions():
        meta = registry.metadata(version)
        versions.append({"version": version, "champion": bool(pointer and
                                                              pointer.version == version),
                         "created_at": meta["created_at"], "strategy": meta["strategy"],
                         "model_type": meta["model_type"], "metrics": meta["metrics"],
                         "parent_version": meta["parent_version"], "run_id": meta["run_id"]})
    if args.json:
        _print_json_last({"model_name": args.model_name, "versions": versions}, True)
    else:
        for row in versions:
            mark = "*" if row["champion"] else " "
            print(f"{mark} {row['version']}  {row['created_at']}  {row['strategy']:<8} "
                  f"accuracy {_fmt(row['metrics'].get('accuracy'))}")
    return 0


def command_submit(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    from app.remote import submit

    arguments = pipeline_arguments(args)
    check_arguments(arguments)
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
    check_arguments(arguments)
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


def command_schema(args: argparse.Namespace) -> int:
    import tempfile

    import pandas as pd

    from components.schema import infer_schema
    from components.stages.ingest import ingest

    with tempfile.TemporaryDirectory(prefix="retrain-schema-") as folder:
        result = ingest(args.source_uri, timestamp_column=args.timestamp_column,
                        cutoff=pd.Timestamp.max.tz_localize("UTC"), watermark=None,
                        new_data_path=f"{folder}/new.parquet",
                        history_path=f"{folder}/history.parquet")
        schema = infer_schema(result.new_data_path, label_column=args.label_column,
                              timestamp_column=args.timestamp_column)
    print(json.dumps(schema, indent=2))
    return 0


def command_compile(args: argparse.Namespace) -> int:
    import os

    from components.image import IMAGE_ENV, check_image_tag

    if args.image:
        check_image_tag(args.image)
        os.environ[IMAGE_ENV] = args.image  # read when the components are defined, just below
    from pipelines.retrain_pipeline import STAGES, ClusterOptions, compile_pipeline

    resources = {}
    for stage, cpu, memory in args.resources:
        if stage != "default" and stage not in STAGES:
            raise InvalidParameterError(f"--resources names stage {stage!r}; use one of "
                                        f"default, {', '.join(STAGES)}")
        resources[stage] = {"cpu": cpu, "memory": memory}
    options = ClusterOptions(webhook_secret=args.webhook_secret, gcs_secret=args.gcs_secret,
                             resources=resources)
    print(f"compiled {compile_pipeline(args.output, options)}")
    return 0


def _resources(text: str) -> tuple[str, str, str]:
    """``retrain=2,4Gi`` -> ``("retrain", "2", "4Gi")``, for ``--resources``."""
    stage, sep, amounts = text.partition("=")
    cpu, comma, memory = amounts.partition(",")
    if not (sep and comma and cpu.strip() and memory.strip()):
        raise argparse.ArgumentTypeError(f"expected STAGE=CPU,MEMORY (e.g. retrain=2,4Gi), "
                                         f"got {text!r}")
    return stage.strip(), cpu.strip(), memory.strip()


def command_demo_data(args: argparse.Namespace) -> int:
    from app.demo_data import write_demo_data

    paths = write_demo_data(args.output)
    print(f"wrote {len(paths)} files to {args.output}")
    return 0


def command_demo(args: argparse.Namespace) -> int:
    """One step of the demo: the first run bootstraps v1, each next run takes one more month."""
    from app import demo_data
    from app.local_runner import run_compiled_pipeline

    workdir = Path(args.workdir)
    data_dir, state_path = workdir / "demo-data", workdir / "demo-state.json"
    if not data_dir.exists():
        demo_data.write_demo_data(data_dir)
    state = json.loads(state_path.read_text()) if state_path.exists() else {"runs": 0}
    cutoffs = demo_data.demo_cutoffs()
    if state["runs"] >= len(cutoffs):
        print(f"the demo has used all {len(cutoffs)} months; `make clean` starts it over")
        return 0
    cutoff = cutoffs[state["runs"]]
    arguments = {
        "source_uri": str(data_dir), "registry_uri": str(workdir / "registry"),
        "model_name": "customers", "label_column": demo_data.LABEL_COLUMN,
        "timestamp_column": demo_data.TIMESTAMP_COLUMN, "cutoff": cutoff,
    }
    print(f"demo run {state['runs'] + 1}/{len(cutoffs)}: data up to {cutoff}")
    record = run_compiled_pipeline(args.pipeline, arguments,
                                   pipeline_root=workdir / "pipeline_root")
    state["runs"] += 1
    state_path.write_text(json.dumps(state))
    print("\n".join(summary_lines(record)))
    print(f"registry: {workdir / 'registry'}; logs: {record['log']}")
    return 0


COMMANDS = {"run": command_run, "submit": command_submit, "schedule": command_schedule,
            "registry": command_registry, "schema": command_schema,
            "compile": command_compile,
            "demo-data": command_demo_data, "demo": command_demo}


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
