"""The cluster scripts check their prerequisites before touching anything."""

import subprocess
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def _stub(folder: Path, name: str, body: str = "exit 0") -> None:
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def _run(script: str, path_dir: Path):
    return subprocess.run(["/bin/bash", str(SCRIPTS / script)], capture_output=True, text=True,
                          env={"PATH": str(path_dir)}, timeout=30)


@pytest.mark.parametrize("missing", ["docker", "kind", "kubectl"])
def test_cluster_up_names_the_missing_tool(tmp_path, missing):
    """Check that each missing prerequisite is named, and nothing runs."""
    for tool in ("docker", "kind", "kubectl"):
        if tool != missing:
            _stub(tmp_path, tool, f"echo {tool} >> {tmp_path}/called")
    completed = _run("cluster-up.sh", tmp_path)
    assert completed.returncode == 1
    assert f"'{missing}' is not installed" in completed.stderr
    assert not (tmp_path / "called").exists()


def test_cluster_up_needs_a_running_docker_engine(tmp_path):
    """Check that a docker client without an engine is reported as such."""
    _stub(tmp_path, "docker", "exit 1")
    _stub(tmp_path, "kind")
    _stub(tmp_path, "kubectl")
    completed = _run("cluster-up.sh", tmp_path)
    assert completed.returncode == 1
    assert "its engine is not running" in completed.stderr


def test_cluster_down_names_missing_kind(tmp_path):
    """Check that cluster-down without kind says so."""
    completed = _run("cluster-down.sh", tmp_path)
    assert completed.returncode == 1
    assert "'kind' is not installed" in completed.stderr


def test_no_module_imports_a_higher_layer():
    """Check the code map's layer check: no import (by statement or by module name) goes up the
    layers, no stage imports another, and there is no import circle."""
    completed = subprocess.run(["python3", str(SCRIPTS / "code_map.py"), "--check"],
                               capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stdout.split("## Circles")[-1]
    assert completed.stdout.endswith("## Upward imports\nnone\n")


@pytest.mark.parametrize("module, target, found", [
    ("components.serving.infra_validation", "app.cli", True),
    ("components.runtime.warm_worker", "components.steps", True),
    ("components.stages.deploy", "components.stages.evaluate", True),
    ("app.cli", "components.steps", False),
    ("components.steps", "components.stages.ingest", False)],
    ids=["components-to-app", "runtime-to-steps", "stage-to-stage", "app-down", "steps-down"])
def test_the_layer_check_finds_an_upward_import(module, target, found):
    """Check that the check names an import of a higher layer or of another stage, and only
    those."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("code_map", SCRIPTS / "code_map.py")
    code_map = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(code_map)
    assert bool(code_map.upward_imports({module: {target}})) is found
