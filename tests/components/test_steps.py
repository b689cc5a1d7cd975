"""The steps (artifact I/O around each stage) with a champion in the registry: retrain continues
it, evaluate compares against it, deploy promotes over it or loses the race."""

import json
import shutil
from pathlib import Path

import pytest

from app import demo_data
from components import steps
from components.ml.comparison import percent
from components.outcomes import DeployResult, GateDecision
from components.records import DecisionRecord, VersionMetadata
from components.registry import ChampionPointer, Registry
from components.runtime.inprocess import parameters, run_stages
from components.stages.evaluate import nested_pair_level

COLUMNS = dict(label_column=demo_data.LABEL_COLUMN, timestamp_column=demo_data.TIMESTAMP_COLUMN)
CUTOFFS = demo_data.demo_cutoffs()
# The deploy step's pipeline parameters and run values where a test does not set them.
DEPLOY_DEFAULTS = {**{name: parameters()[name] for name in (
    "max_evaluation_rows", "serving_namespace", "canary_traffic_percent",
    "serving_timeout_seconds")}, "serving_image": "", "serving_service_account": "",
    "serving_resources": ""}


def _run_steps(source, registry_uri, work, cutoff, run_id, strategy="auto"):
    """ingest, validate, preprocess, retrain and evaluate into ``work``; returns the paths,
    with what retrain (``training``) and evaluate (``outcome``) returned."""
    run = run_stages(parameters(source_uri=str(source), registry_uri=registry_uri,
                                model_name="customers", cutoff=cutoff, strategy=strategy,
                                threshold=0.5, epochs=3, **COLUMNS), work, run_id,
                     deploy=False, quiet=False)
    return {**run.paths, "training": run.outcomes["retrain"].training,
            "outcome": run.outcomes["evaluate"]}


def _deploy(p, registry_uri, run_id, *, infra_validation=True, **given):
    """deploy_step on a run's paths; ``given`` replaces any of its arguments. Without the infra
    validation where a test is about something else (it starts a server, two to four seconds in a
    test process)."""
    arguments = {**DEPLOY_DEFAULTS, **COLUMNS, "registry_uri": registry_uri,
                 "model_name": "customers", "challenger": p["challenger"],
                 "decision_record": p["decision_record"],
                 "prediction_sample": p["prediction_sample"] if infra_validation else "",
                 "evaluation_data": p["evaluation_data"], "judged_rows": p["judged_rows"],
                 "run_id": run_id}
    return steps.deploy_step(**{**arguments, **given})


@pytest.fixture(scope="module")
def month(tmp_path_factory, demo_folder):
    """A registry whose champion v0001 was trained on the initial quarter, and a run over the
    next two months that fine-tuned a challenger and evaluated it against v0001."""
    root = tmp_path_factory.mktemp("steps")
    source = root / "source"
    source.mkdir()
    for name in ("customers_2025-01_initial.csv", "customers_2025-04.csv",
                 "customers_2025-05.csv"):
        shutil.copy(demo_folder / name, source)
    registry_uri = str(root / "registry")
    first = _run_steps(source, registry_uri, root / "first", CUTOFFS[0], "run-1")
    assert _deploy(first, registry_uri, "run-1").version == "v0001"
    second = _run_steps(source, registry_uri, root / "second", CUTOFFS[2], "run-2",
                        strategy="finetune")
    return {"root": root, "registry_uri": registry_uri, "paths": second}


@pytest.fixture
def registry(month, tmp_path):
    """A copy of the module's registry, so each test can change it freely."""
    copy = tmp_path / "registry"
    shutil.copytree(month["registry_uri"], copy)
    return str(copy)


def test_retrain_continues_the_champion_and_keeps_its_schema(month):
    """Check that a fine-tune is recorded as such and its schema is the union with v0001's."""
    p = month["paths"]
    training = json.loads((month["root"] / "second" / "challenger" / "training.json").read_text())
    assert training == p["training"].to_dict()
    assert (training["strategy"], training["requested_strategy"]) == ("finetune", "finetune")
    assert len(training["trace"]) == 3
    assert training["classes"] == [0, 1]
    schema = json.loads((month["root"] / "second" / "challenger" / "schema.json").read_text())
    parent = Registry(month["registry_uri"], "customers").version_json("v0001", "schema.json")
    counts = json.loads((month["root"] / "second" / "decision_record").read_text())["data"]
    assert counts["train_rows"] + counts["validation_rows"] + counts["holdout_rows"] == 400
    # refitted on its training and selection rows; the holdout rows are never trained on
    assert schema["rows"] == parent["rows"] + counts["train_rows"] + counts["validation_rows"]
    # what each learned from, a batch (file and month) at a time: the fine-tune its parent's too
    parent_batches = Registry(month["registry_uri"], "customers").metadata(
        "v0001").training_batches
    assert sum(parent_batches.values()) == parent["rows"]
    assert set(parent_batches) == {"customers_2025-01_initial.csv 2025-01",
                                   "customers_2025-01_initial.csv 2025-02",
                                   "customers_2025-01_initial.csv 2025-03"}
    assert sum(training["training_batches"].values()) == schema["rows"]
    assert all(training["training_batches"][name] == rows
               for name, rows in parent_batches.items())
    web = {c["name"]: c for c in schema["columns"]}["web_visits_last_month"]
    old = {c["name"]: c for c in parent["columns"]}["web_visits_last_month"]
    assert web["max"] >= old["max"]
    assert web["min"] <= old["min"]


def test_evaluate_compares_against_the_champion_on_the_same_rows(month):
    """Check the decision record: both models scored, the data window, and the verdict."""
    p = month["paths"]
    record = DecisionRecord.from_dict(json.loads((month["root"] / "second" /
                                                  "decision_record").read_text()))
    assert record.champion.version == "v0001"
    assert record.decision == p["outcome"].decision
    assert record.champion.metrics == p["outcome"].champion
    assert record.challenger.metrics == p["outcome"].challenger
    assert record.data["new_rows"] == 400
    gate = record.gate
    assert gate["rows"] == record.data["evaluation_rows"] == gate["evaluation"]["rows"]
    assert all(type(record.data[key]) is int for key in (
        "new_rows", "train_rows", "validation_rows", "holdout_rows", "evaluation_rows",
        "history_rows"))
    assert gate["ci_low"] <= gate["delta"] <= gate["ci_high"]
    assert 0 <= gate["p_value"] <= 1
    assert "exact McNemar" in gate["method"]
    # The 400 new rows are two months: the newest is also judged alone, and the two tests share
    # the gate's error at the level for the newest month's share of the rows where exactly one
    # model is right (between the gate's 95% and halving's 97.5%).
    newest, evaluation = gate["newest_batch"], gate["evaluation"]
    assert newest["rows"] == evaluation["newest_batch_rows"] == 200 < gate["rows"]
    assert evaluation["newest_batch_share_of"] == "the rows where exactly one model is right"
    level = nested_pair_level(0.95, evaluation["newest_batch_share"])
    assert gate["confidence"] == newest["confidence"] == level and 0.95 < level < 0.975
    shown = f"({percent(level)} CI"
    assert f"on {gate['rows']} rows: {gate['delta']:+.3f} {shown}" in record.reason
    assert f"; on the {newest['rows']} rows of the newest batch ({newest['batch']}): " \
           f"{newest['delta']:+.3f} {shown}" in record.reason
    assert record.data["watermark_before"].startswith("2025-03-31")
    comparison = (month["root"] / "second" / "comparison").read_text()
    assert "| metric | champion v0001 | challenger (finetune, hgb) |" in comparison
    assert f"Evaluation rows: {gate['rows']} ({gate['evaluation']['cross_fitted_rows']} " \
           "cross-fitted" in comparison
    assert shown in comparison
    assert f"On the newest batch alone ({newest['batch']}, {newest['rows']} rows): " in comparison
    # deploy when the interval's lower bound is above min_improvement (0 here), or when the
    # freshness rule finds a refit not worse by more than its margin
    fresh = gate.get("freshness")
    expected = GateDecision.DEPLOY if gate["ci_low"] > 0 or (
        fresh and gate["delta"] >= 0 and fresh["ci_low"] > -fresh["margin"]) \
        else GateDecision.REJECT
    assert record.decision == expected


def test_deploy_promotes_over_the_champion_it_compared(month, registry):
    """Check that deploy publishes v0002, moves pointer and watermark, and records the run."""
    result = _deploy(month["paths"], registry, "run-2")
    assert (result.result, result.version) == (DeployResult.DEPLOYED, "v0002")
    pointer = Registry(registry, "customers").champion()
    assert (pointer.version, pointer.previous) == ("v0002", "v0001")
    assert pointer.watermark.startswith("2025-05-31")
    record = Registry(registry, "customers").run_record("run-2")
    assert (record.status, record.challenger["version"]) == ("deployed", "v0002")


def test_deploy_that_lost_the_race_changes_nothing(month, registry):
    """Check that a champion moved by another run makes deploy end rejected, unpromoted."""
    store = Registry(registry, "customers")
    store.move_champion(ChampionPointer("v0001", reason="someone else"), "v0001")
    before = (store.root + "/champion.json")
    before_bytes = open(before, "rb").read()
    rival = store.publish(b"rival", VersionMetadata(run_id="rival", created_at="now"))
    store.move_champion(ChampionPointer(rival, previous="v0001"), "v0001")
    moved = open(before, "rb").read()
    result = _deploy(month["paths"], registry, "run-2", infra_validation=False)
    assert result.result == DeployResult.REJECTED
    assert result.reason == "champion changed during the run"
    assert result.version == "v0003"  # published, not promoted
    assert open(before, "rb").read() == moved != before_bytes
    assert store.run_record("run-2") is None  # the alert step records a rejected run


def _fails_once(method, counter, *, after: bool):
    """The real method, failing once after (or before) its side effect; calls are counted in a
    file, as a separate retried process would see them."""

    def replacement(*args, **kwargs):
        calls = int(counter.read_text()) if counter.exists() else 0
        counter.write_text(str(calls + 1))
        if calls == 0 and not after:
            raise ConnectionError("lost before the side effect")
        result = method(*args, **kwargs)
        if calls == 0:
            raise ConnectionError("lost after the side effect")
        return result

    return replacement


@pytest.mark.parametrize("method, after", [("record_publication", False),
                                           ("record_publication", True),
                                           ("move_champion", True),
                                           ("write_run_record", True)],
                         ids=["before-noting-the-version", "after-publishing",
                              "after-moving-the-pointer", "after-recording-the-run"])
def test_a_retried_deploy_promotes_once(month, registry, tmp_path, monkeypatch, method, after):
    """Check that a deploy failing once around a side effect and retried (as KFP does) publishes
    at most the version it needs, promotes it once, and ends deployed, not 'champion changed'."""
    counter = tmp_path / "calls"
    monkeypatch.setattr(Registry, method, _fails_once(getattr(Registry, method), counter,
                                                      after=after))
    with pytest.raises(ConnectionError):
        _deploy(month["paths"], registry, "run-2", infra_validation=False)
    result = _deploy(month["paths"], registry, "run-2", infra_validation=False)  # the retry
    assert (result.result, result.reason) == (DeployResult.DEPLOYED,
                                                    month["paths"]["outcome"].reason)
    store = Registry(registry, "customers")
    pointer = store.champion()
    assert (pointer.version, pointer.previous) == (result.version, "v0001")
    published = [v for v in store.versions() if store.metadata(v).run_id == "run-2"]
    expected = 2 if (method, after) == ("record_publication", False) else 1
    assert len(published) == expected  # only a crash before the version was noted repeats it
    assert store.run_record("run-2").status == "deployed"


def _tampered_sample(month, tmp_path, change) -> str:
    sample = json.loads((month["root"] / "second" / "prediction_sample").read_text()) \
        if (month["root"] / "second" / "prediction_sample").exists() else None
    assert sample is not None
    change(sample)
    path = tmp_path / "sample.json"
    path.write_text(json.dumps(sample))
    return str(path)


@pytest.mark.parametrize("change, reason", [
    (lambda s: s["predict"].__setitem__(0, 1 - s["predict"][0]),
     "infra validation failed: row 0: served"),
    (lambda s: s["predict_proba"][3].__setitem__(0, s["predict_proba"][3][0] + 0.01),
     "infra validation failed: row 3: served probabilities")],
    ids=["another-class", "other-probabilities"])
def test_a_version_that_does_not_serve_evaluates_predictions_is_not_promoted(
        month, registry, tmp_path, change, reason):
    """Check infra validation: when the served answers differ from evaluate's, the deploy ends
    rejected with the reason, and the pointer stays on the champion."""
    before = Registry(registry, "customers").champion()
    result = _deploy(month["paths"], registry, "run-2",
                     prediction_sample=_tampered_sample(month, tmp_path, change))
    assert result.result == DeployResult.REJECTED
    assert result.reason.startswith(reason)
    assert Registry(registry, "customers").champion() == before
    assert result.version in Registry(registry, "customers").versions()  # published only


def test_a_version_the_server_cannot_load_is_not_promoted(month, registry, tmp_path):
    """Check infra validation of a model saved by another scikit-learn minor: the fresh server
    refuses it, and the deploy says why."""
    record = json.loads(open(month["paths"]["decision_record"]).read())
    record["challenger"]["libraries"]["scikit-learn"] = "1.5.2"
    path = tmp_path / "decision.json"
    path.write_text(json.dumps(record))
    result = _deploy(month["paths"], registry, "run-2", decision_record=str(path))
    assert result.result == DeployResult.REJECTED
    assert "infra validation failed: the server exited" in result.reason
    assert "saved with scikit-learn 1.5.2" in result.reason
    assert Registry(registry, "customers").champion().version == "v0001"


SERVING = dict(serving_namespace="ml", serving_timeout_seconds=10,
               serving_image="reg.io/kfp-retrain:1.0.0")


def test_deploy_serves_on_the_cluster_before_the_pointer_moves(month, registry, kubernetes,
                                                               crd_validator):
    """Check that with a serving namespace, deploy creates the InferenceService (valid for
    KServe's CRD), waits until it is Ready, and only then moves the pointer; and that a
    rollback moves the InferenceService back, then the pointer, with both in the history."""
    from app.cli import main

    result = _deploy(month["paths"], registry, "run-2", **SERVING)
    assert (result.result, result.version) == (DeployResult.DEPLOYED, "v0002")
    calls = [(method, body) for method, _, body, _ in kubernetes.calls]
    assert [method for method, _ in calls][:2] == ["GET", "POST"]
    created = calls[1][1]
    crd_validator.validate(created)
    assert created["metadata"]["annotations"]["retrain.kfp/model-version"] == "v0002"
    store = Registry(registry, "customers")
    assert store.champion().version == "v0002"
    assert store.model_json("serving.json")["namespace"] == "ml"
    assert main(["registry", "rollback", "--registry-uri", registry, "--model-name",
                 "customers"]) == 0
    service = kubernetes.services[("ml", "customers")]
    assert service["metadata"]["annotations"]["retrain.kfp/model-version"] == "v0001"
    assert store.champion().version == "v0001"
    assert [(m["action"], m["from"], m["to"], m["run_id"]) for m in store.history()] == [
        ("deploy", None, "v0001", "run-1"), ("deploy", "v0001", "v0002", "run-2"),
        ("rollback", "v0002", "v0001", "")]


@pytest.mark.parametrize("failure", ["api-error", "never-ready"])
def test_a_cluster_that_does_not_serve_it_leaves_the_champion(month, registry, kubernetes,
                                                              failure):
    """Check that an API error, or an InferenceService that is not Ready in time, ends the
    deploy rejected with the reason, and the pointer where it was."""
    if failure == "api-error":
        kubernetes.fail_next["POST"] = 500
        expected = "not served: InferenceService ml/customers: the Kubernetes API answered 500"
        serving = SERVING
    else:
        kubernetes.ready_after = None
        expected = "not served: InferenceService ml/customers was not Ready with v0002 after 1 s"
        serving = {**SERVING, "serving_timeout_seconds": 1}
    result = _deploy(month["paths"], registry, "run-2", infra_validation=False, **serving)
    assert result.result == DeployResult.REJECTED
    assert result.reason.startswith(expected)
    store = Registry(registry, "customers")
    assert store.champion().version == "v0001"
    assert [m["to"] for m in store.history()] == ["v0001"]  # the bootstrap's deploy only


def test_a_rollback_the_cluster_refuses_changes_nothing(month, registry, kubernetes, capsys):
    """Check that a rollback whose InferenceService patch fails exits 1 and leaves the pointer."""
    from app.cli import main

    _deploy(month["paths"], registry, "run-2", infra_validation=False, **SERVING)
    kubernetes.fail_next["PATCH"] = 500
    assert main(["registry", "rollback", "--registry-uri", registry, "--model-name",
                 "customers"]) == 1
    assert "answered 500" in capsys.readouterr().err
    assert Registry(registry, "customers").champion().version == "v0002"


# -- registry damage: named, with the way out; derived files never block ----------------------
def _run_on(month, registry, run_id, *, deploy=True):
    """The month's run again, its stages on ``registry`` (a damaged copy)."""
    source = month["root"] / "source"
    return run_stages(parameters(source_uri=str(source), registry_uri=registry,
                                 model_name="customers", cutoff=CUTOFFS[2], threshold=0.5,
                                 epochs=3, **COLUMNS),
                      month["root"] / run_id, run_id, deploy=deploy, quiet=False)


@pytest.mark.parametrize("name, damage, problem", [
    ("champion.json", lambda text: text[: len(text) // 2], "it is cut short"),
    ("versions/v0001/metadata.json", lambda text: "{garbage", "it is not JSON (Expecting "),
    ("versions/v0001/schema.json", lambda text: "[1, 2]", "it holds a JSON array, not a JSON object"),
    ("versions/v0001/statistics.json", lambda text: "\udcff", "it is not text (not UTF-8)")],
    ids=["pointer-truncated", "metadata-garbage", "schema-a-list", "statistics-not-text"])
def test_a_damaged_registry_file_is_named_with_the_way_out(month, registry, name, damage,
                                                          problem):
    """Check that a run on a registry with a damaged file fails naming the file, what is wrong
    with it and what to do, in the exception and in the stage's journal, and changes nothing."""
    from components.registry import RegistryDamageError

    path = Path(registry) / "customers" / name
    path.write_bytes(damage(path.read_text()).encode(errors="surrogateescape"))
    before = {p: p.read_bytes() for p in Path(registry).rglob("*.json")
              if "runs" not in p.parts}
    with pytest.raises(RegistryDamageError) as error:
        _run_on(month, registry, "run-damaged")
    message = str(error.value)
    assert message.startswith(f"{path} is damaged: {problem}")
    assert "; to go on: " in message
    assert error.value.uri == str(path)
    [failed] = [e for e in Registry(registry, "customers").stage_entries("run-damaged").values()
                if e.state == "failed"]
    assert failed.message == message
    assert failed.error_type == "RegistryDamageError"
    assert before == {p: p.read_bytes() for p in before}


def test_rollback_to_a_version_replaces_a_damaged_pointer(month, registry):
    """Check the way out a damaged champion.json names: `retrain registry rollback --to`
    points the champion at the version again, with the watermark it was trained up to."""
    from app.cli import main

    pointer_file = Path(registry) / "customers" / "champion.json"
    intact = json.loads(pointer_file.read_text())
    pointer_file.write_text(pointer_file.read_text()[:20])
    assert main(["registry", "rollback", "--registry-uri", registry, "--model-name",
                 "customers", "--to", "v0001"]) == 0
    repaired = Registry(registry, "customers").champion()
    assert repaired.version == "v0001"
    assert repaired.watermark == intact["watermark"]
    assert repaired.reason == "rollback to v0001, replacing a damaged champion.json"


def test_an_unreadable_rolling_holdout_is_left_out_with_a_warning(month, registry):
    """Check that a corrupt holdout.parquet (derived from runs) does not stop the run: the gate
    compares on this run's holdout rows and the decision record says why; a deploy writes the
    rolling holdout anew from its run's holdout rows, and the run record keeps the warning."""
    import pandas as pd

    pool = Path(registry) / "customers" / "holdout.parquet"
    pool.write_bytes(b"not parquet at all")
    run = _run_on(month, registry, "run-pool", deploy=False)
    record = json.loads(Path(run.paths["decision_record"]).read_text())
    [warning] = record["warnings"]
    assert warning.startswith(f"the rolling holdout {pool} cannot be read (ArrowInvalid: ")
    assert record["gate"]["evaluation"]["earlier_rows"] == 0
    assert run.status in (GateDecision.DEPLOY, DeployResult.REJECTED)
    result = _deploy(run.paths, registry, "run-pool", infra_validation=False)
    assert result.result == DeployResult.DEPLOYED
    assert len(pd.read_parquet(pool)) == len(pd.read_parquet(run.paths["evaluation_data"]))
    assert Registry(registry, "customers").run_record("run-pool").warnings == [warning]


def test_a_write_that_fails_names_the_object_and_the_cause(tmp_path, monkeypatch):
    """Check that a full disk during a registry write is a StorageError naming the path and
    the cause, and the old object stays."""
    import errno
    import os

    from components.storage import LocalStorage, StorageError

    target = tmp_path / "champion.json"
    target.write_bytes(b"old")

    def full(*_):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(StorageError) as error:
        LocalStorage().write_bytes(str(target), b"new")
    assert str(error.value) == (f"cannot write {target}: No space left on device (the disk is "
                                "full: free space, then run again); the object was left as it "
                                "was")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["champion.json"]


def test_history_rows_a_later_gate_judges_on_are_never_trained_on(tmp_path, demo_folder,
                                                                  monkeypatch):
    """Check the one rule of the holdout: a run too large to cross-fit holds out rows, its
    deploy puts them in the rolling holdout, and the next run's history leaves exactly those
    out of training (a run small enough to cross-fit would hold none out)."""
    import pandas as pd

    from components.data import roles

    monkeypatch.setattr(roles, "CROSS_FIT_LIMIT", 100)  # every run is "too large" here
    source = tmp_path / "source"
    source.mkdir()
    for name in ("customers_2025-01_initial.csv", "customers_2025-04.csv"):
        shutil.copy(demo_folder / name, source)
    registry_uri = str(tmp_path / "registry")
    first = run_stages(parameters(source_uri=str(source), registry_uri=registry_uri,
                                  model_name="customers", cutoff=CUTOFFS[0], threshold=0.5,
                                  **COLUMNS), tmp_path / "first", "run-1")
    assert first.version == "v0001"
    pool = pd.read_parquet(Path(registry_uri) / "customers" / "holdout.parquet")
    assert len(pool) == first.outcomes["preprocess"].counts["holdout_rows"] > 0
    second = run_stages(parameters(source_uri=str(source), registry_uri=registry_uri,
                                   model_name="customers", cutoff=CUTOFFS[1], strategy="full",
                                   threshold=0.5, **COLUMNS), tmp_path / "second", "run-2",
                        deploy=False)
    counts = second.outcomes["preprocess"].counts
    history = pd.read_parquet(second.paths["clean_history"])
    assert counts["history_holdout_rows"] == len(pool)
    assert counts["history_rows"] == len(history) > 0
    kinds = first.outcomes["retrain"].training.feature_kinds
    hashes = [roles.content_hashes(frame, kinds, **COLUMNS) for frame in (history, pool)]
    assert not set(hashes[0]) & set(hashes[1])


def test_a_version_keeps_the_rows_its_promotion_was_judged_on(month, registry):
    """Check that deploy keeps, with the version, the rows the gate judged its promotion on:
    when each arrived and whether the challenger was right on it (what a later run seeks a
    change in its world from); and that a damaged copy is left out with a warning naming it."""
    import pandas as pd

    from components.registry import JUDGED_FILE

    result = _deploy(month["paths"], registry, "run-2", infra_validation=False)
    store = Registry(registry, "customers")
    judged = pd.read_parquet(store.version_uri(result.version, JUDGED_FILE))
    record = json.loads(Path(month["paths"]["decision_record"]).read_text())
    assert len(judged) == record["gate"]["rows"]
    assert {"row_hash", COLUMNS["timestamp_column"], "__right"} <= set(judged.columns)
    assert judged["__right"].mean() == pytest.approx(record["challenger"]["metrics"]["accuracy"])
    Path(store.version_uri(result.version, JUDGED_FILE)).write_bytes(b"not parquet")
    damaged = store.judged_rows(result.version)
    assert damaged.data is None
    assert damaged.warning.startswith(f"{store.version_uri(result.version, JUDGED_FILE)} cannot "
                                      "be read (")
