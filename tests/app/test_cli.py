"""The CLI: flags are the parameter table, refused parameters exit 2 before anything runs."""

import json

import pytest

from app.cli import build_parser, main
from app.commands import pipeline_arguments
from components.data.schema import check_schema
from components.params import PARAMETERS
from components.records import VersionMetadata

RUN = ["run", "--source-uri", "data", "--registry-uri", "reg", "--model-name", "m",
       "--label-column", "y"]


def test_run_flags_are_the_parameter_table():
    """Check that `retrain run` with only the required flags gives every table default."""
    arguments = pipeline_arguments(build_parser().parse_args(RUN))
    assert arguments == {p.name: p.default for p in PARAMETERS} | {
        "source_uri": "data", "registry_uri": "reg", "model_name": "m", "label_column": "y"}


def test_help_is_plain_text_for_every_command():
    """Check that ``retrain --help`` and each command's help show no reST markup from the
    docstrings they are built from."""
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for help_text in [parser.format_help()] + [sub.format_help() for sub in commands.values()]:
        assert "``" not in help_text
        assert ":mod:" not in help_text and ":func:" not in help_text


def test_repeated_threshold_flags_make_one_dict():
    """Check that --validation-threshold NAME=VALUE flags become validation_thresholds."""
    args = build_parser().parse_args([*RUN, "--validation-threshold", "psi_drift=0.3",
                                      "--validation-threshold", "js_drift=0.2"])
    assert pipeline_arguments(args)["validation_thresholds"] == {"psi_drift": 0.3,
                                                                 "js_drift": 0.2}


@pytest.mark.parametrize("flags, message", [
    (["--threshold", "-0.1"], "The 'threshold' parameter of retrain run must be -1 (the "
                              "metric's default) or a number of at least 0. Got -0.1 instead."),
    (["--cutoff", "soon"], "The 'cutoff' parameter of retrain run must be an ISO 8601 "
                           "timestamp (or empty). Got 'soon' instead."),
    (["--validation-threshold", "psi_drfit=0.3"], "'psi_drift'"),
    (["--window-files", "0"], "The 'window_files' parameter of retrain run must be an int"),
], ids=["threshold", "cutoff", "threshold-name", "window-files"])
def test_refused_parameters_exit_2_before_running(tmp_path, capsys, flags, message):
    """Check that a refused parameter exits 2 with the message and never creates the registry."""
    code = main(["run", "--source-uri", str(tmp_path), "--registry-uri", str(tmp_path / "reg"),
                 "--model-name", "m", "--label-column", "y",
                 "--pipeline-root", str(tmp_path / "root"), *flags])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "reg").exists()
    assert not (tmp_path / "root").exists()


def test_schema_command_prints_an_editable_schema(demo_folder, capsys):
    """Check that `retrain schema` writes a starting contract from a source folder: every
    column required with its type, the ranges and categories seen kept apart as `observed`
    (statistics, never enforced)."""

    assert main(["schema", "--source-uri", str(demo_folder), "--label-column", "will_buy",
                 "--timestamp-column", "event_time"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert check_schema(schema, "stdout") is schema
    assert schema["label"] == {"name": "will_buy", "task": "classification", "classes": [0, 1]}
    assert {c["name"] for c in schema["columns"]} == {
        "age", "income", "purchases_last_year", "days_since_last_purchase", "avg_basket_value",
        "web_visits_last_month", "region", "membership"}
    age = next(c for c in schema["columns"] if c["name"] == "age")
    assert set(age) == {"name", "type", "nullable", "required", "observed"}
    assert age["required"] is True
    assert age["observed"]["min"] < age["observed"]["max"]
    region = next(c for c in schema["columns"] if c["name"] == "region")
    assert set(region["observed"]) == {"domain"}




def test_inferenceservice_prints_a_manifest_kserve_accepts(capsys, crd_validator):
    """Check `retrain inferenceservice`: YAML that KServe's CRD schema accepts, serving the
    version named, on the image named, in the namespace named."""
    import yaml


    assert main(["inferenceservice", "--registry-uri", "gs://acme/registry", "--model-name",
                 "Customers_EU", "--version", "v0012", "--image", "reg.io/kfp-retrain:2.0.0",
                 "--namespace", "ml", "--canary-traffic-percent", "25", "--service-account",
                 "retrain-serving", "--resources", "1,2Gi"]) == 0
    manifest = yaml.safe_load(capsys.readouterr().out)
    crd_validator.validate(manifest)
    assert (manifest["metadata"]["name"], manifest["metadata"]["namespace"]) == (
        "customers-eu", "ml")
    predictor = manifest["spec"]["predictor"]
    assert (predictor["canaryTrafficPercent"], predictor["serviceAccountName"]) == (
        25, "retrain-serving")
    [container] = predictor["containers"]
    assert container["resources"] == {"requests": {"cpu": "1", "memory": "2Gi"},
                                      "limits": {"cpu": "1", "memory": "2Gi"}}
    assert "v0012" in container["args"]
    assert container["image"] == "reg.io/kfp-retrain:2.0.0"


@pytest.mark.parametrize("flags, message", [
    (["--image", "kfp-retrain:latest"], "needs an immutable tag"),
    (["--namespace", "ML_team"], "The 'serving_namespace' parameter of retrain "
                                 "inferenceservice must be empty or a Kubernetes name")],
    ids=["moving-tag", "bad-namespace"])
def test_inferenceservice_refuses_what_a_cluster_would(capsys, flags, message):
    """Check that a moving image tag or an invalid namespace is refused with exit 2."""
    base = {"--image": "reg.io/kfp-retrain:2.0.0", "--namespace": "ml"}
    base.update(dict(zip(flags[::2], flags[1::2], strict=True)))
    assert main(["inferenceservice", "--registry-uri", "r", "--model-name", "m", "--version",
                 "v0001", *[x for pair in base.items() for x in pair]]) == 2
    assert message in capsys.readouterr().err


def test_registry_history_lists_every_pointer_move(tmp_path, capsys):
    """Check `retrain registry history --json`: deploys and rollbacks, oldest first."""
    from components.registry import ChampionPointer, Registry

    store = Registry(str(tmp_path), "m")
    for number in (1, 2):
        store.publish(b"model", VersionMetadata(run_id=f"r{number}", created_at="now"))
    store.move_champion(ChampionPointer("v0001"), None)
    store.append_history(action="deploy", from_version=None, to_version="v0001",
                         reason="cold start", run_id="r1")
    store.move_champion(ChampionPointer("v0002", previous="v0001"), "v0001")
    store.append_history(action="deploy", from_version="v0001", to_version="v0002",
                         reason="better", run_id="r2")
    store.rollback()
    assert main(["registry", "history", "--json", "--registry-uri", str(tmp_path),
                 "--model-name", "m"]) == 0
    moves = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["history"]
    assert [(m["action"], m["from"], m["to"]) for m in moves] == [
        ("deploy", None, "v0001"), ("deploy", "v0001", "v0002"), ("rollback", "v0002", "v0001")]
    assert all(set(m) >= {"time", "from", "to", "reason", "run_id"} for m in moves)
    assert main(["registry", "history", "--registry-uri", str(tmp_path), "--model-name",
                 "m"]) == 0
    assert "rollback v0002 -> v0001" in capsys.readouterr().out


def test_registry_show_reads_as_text_and_keeps_every_digit_in_json(tmp_path, capsys):
    """Check `retrain registry show`: the champion's metrics at four decimals in text, whole in
    ``--json``, and a first champion's previous version said as none."""
    from components.registry import ChampionPointer, Registry

    store = Registry(str(tmp_path), "m")
    store.publish(b"model", VersionMetadata(run_id="r1", created_at="now", strategy="full",
                                            model_type="hgb",
                                            metrics={"accuracy": 0.8804307307089051}))
    store.move_champion(ChampionPointer("v0001"), None)
    assert main(["registry", "show", "--registry-uri", str(tmp_path), "--model-name", "m"]) == 0
    text = capsys.readouterr().out
    assert "m: champion v0001 (previous none)" in text
    assert "strategy full, model hgb, metrics accuracy 0.8804\n" in text
    assert main(["registry", "show", "--json", "--registry-uri", str(tmp_path),
                 "--model-name", "m"]) == 0
    assert "0.8804307307089051" in capsys.readouterr().out


@pytest.mark.parametrize("where, message", [
    ("no-registry", "there is no registry at {root}/nowhere (nothing is there)"),
    ("typo", "the registry {root}/registry has no model 'custmers'; it has: customers, other")],
    ids=["no-registry", "model-typo"])
@pytest.mark.parametrize("command", ["list", "show", "history", "rollback"])
def test_registry_commands_refuse_a_typo_naming_what_exists(tmp_path, capsys, where, message,
                                                             command):
    """Check that a registry or model that does not exist is an error (exit 1) naming what
    does exist, never an empty listing."""
    from components.registry import Registry

    for model in ("customers", "other"):
        Registry(str(tmp_path / "registry"), model).publish(
            b"model", VersionMetadata(run_id="r", created_at="now"))
    uri = str(tmp_path / ("nowhere" if where == "no-registry" else "registry"))
    assert main(["registry", command, "--registry-uri", uri, "--model-name",
                 "custmers" if where == "typo" else "customers"]) == 1
    assert capsys.readouterr().err == f"error: RegistryError: {message.format(root=tmp_path)}\n"


def test_show_without_a_champion_says_how_its_runs_ended(tmp_path, capsys):
    """Check that `registry show` of a model with runs but no champion says how many and how
    the last one ended, in text and JSON."""
    from components.records import RunRecord
    from components.registry import Registry

    store = Registry(str(tmp_path), "m")
    for number, status in ((1, "invalid-data"), (2, "rejected")):
        store.write_run_record(f"run-{number}", RunRecord.of(
            status=status, reason=f"reason {number}", run_id=f"run-{number}", model_name="m",
            new_rows=10))
    args = ["registry", "show", "--registry-uri", str(tmp_path), "--model-name", "m"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert text.startswith("m: no champion yet; 2 run(s) recorded, the last (run-2, ")
    assert text.endswith("ended rejected: reason 2\n")
    assert main([*args, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["champion"], shown["runs"], shown["last_run"]["status"]) == (None, 2,
                                                                               "rejected")
